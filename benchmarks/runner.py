"""Measure artifacts through the Embedder: model only, end to end, and the PyTorch eager baseline.

One row per (artifact, batch, mode). mode "model" times emb.run_batch on a batch made once by
emb.preprocess (the one preprocessing); mode "e2e" times emb.embed on uint8 BGR crops of varied
sizes (resize + normalise + inference + L2). The baseline is the same architecture at the same
input size in PyTorch eager FP32 (what torchreid's FeatureExtractor runs), opened through the same
Embedder from a checkpoint, at the same thread count, so every row carries a speed-up ratio
measured in the same run.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from osnet_edge.errors import ArtifactError, OsnetEdgeError
from osnet_edge.runtime import Embedder
from osnet_edge.runtime.base import backend_class
from osnet_edge.benchmarks.measure import time_interleaved

MODES = ("model", "e2e")


def bench_crops(n: int, seed: int = 0) -> list:
    """n varied-size uint8 BGR person-like crops, as a detector would hand them over.

    The SDK's own generator (osnet_edge.synthetic) when present; otherwise crops with the size
    statistics of pedestrian boxes in 720p-1080p video (height 64-384 px, aspect w/h 0.3-0.6),
    since resize cost, not pixel content, is what end-to-end timing depends on.
    """
    try:
        from osnet_edge.synthetic import synthetic_crops
    except ImportError:
        synthetic_crops = None
    if synthetic_crops is not None:
        return list(synthetic_crops(n, seed=seed))
    import numpy as np

    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        h = int(rng.integers(64, 385))
        w = max(16, int(h * rng.uniform(0.3, 0.6)))
        crops.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return crops


def check_artifact(path) -> Path:
    """Fail early, with one line, on a missing file or an unknown format (before any timing starts)."""
    p = Path(path)
    if not p.exists():
        raise ArtifactError(f"artifact not found: {p}")
    if p.is_dir():
        raise ArtifactError(f"{p} is a folder; pass a model file (.onnx, .xml, .engine/.plan, .pt/.pth)")
    backend_class(p)  # raises ArtifactError naming the supported suffixes
    return p


@dataclass
class Complexity:
    params: int | None
    mult_adds: int | None


def complexity_of(meta) -> Complexity:
    """Params and Mult-Adds at the artifact's input size: counted on the architecture its metadata names, or,
    without torch (a camera-end box), as the exporter recorded them in the metadata."""
    if meta is None or meta.arch == "unknown":
        return Complexity(None, None)
    from osnet_edge.deps import available

    if not available("torch"):
        return Complexity(meta.extra.get("params"), meta.extra.get("mult_adds"))
    from osnet_edge.complexity import complexity
    from osnet_edge.models import build_model

    model = build_model(meta.arch, input_size=meta.input_size)
    c = complexity(model, meta.input_size)
    return Complexity(c.params, c.mult_adds)


@dataclass
class Settings:
    batches: tuple = (1, 8, 32)
    seconds: float | None = 2.0
    iters: int | None = None
    warmup: int = 3
    rounds: int = 3  # interleaved slices per measurement (see measure.time_interleaved)
    threads: int | None = None
    device: str | None = None
    baseline: bool = True
    modes: tuple = MODES
    peak_gflops: float | None = None  # the machine probe's, for the peak fraction
    precision: str | None = None  # explicit execution precision (e.g. "bf16"); None: what each artifact declares
    streams: int | None = None  # CPU streams of ONNX Runtime / OpenVINO backends; None: the backends' default

    def timing_kwargs(self) -> dict:
        return {"warmup": self.warmup, "iters": self.iters, "seconds": None if self.iters else self.seconds,
                "rounds": self.rounds}


def _row(name, emb, cx: Complexity, mode, timing, settings: Settings, baseline=False, **extra) -> dict:
    m = emb.meta
    thr = timing.throughput
    gflops = 2.0 * cx.mult_adds * thr / 1e9 if cx.mult_adds else None
    row = {
        "artifact": name, "path": str(emb.backend.path), "backend": "pytorch-eager" if baseline else emb.backend.name,
        "device": emb.backend.describe(), "arch": m.arch, "width": m.width, "input_size": list(m.input_size),
        "precision": m.precision, "executes": emb.execution_precision, "input_format": m.input_format,
        "streams": emb.streams,
        "baseline": baseline,
        "batch": timing.batch, "mode": mode, **timing.to_dict(),
        "params": cx.params, "mult_adds": cx.mult_adds,
        "gflops": float(f"{gflops:.4g}") if gflops is not None else None,
        "peak_fraction": round(gflops / settings.peak_gflops, 4) if gflops and settings.peak_gflops else None,
        "speedup": 1.0 if baseline else None,
    }
    row.update(extra)
    return row


def open_embedder(path, settings: Settings) -> Embedder:
    """Open an artifact; a backend's own exception still becomes one line naming the file."""
    try:
        opts = {} if settings.streams is None else {"streams": settings.streams}
        emb = Embedder(path, device=settings.device, threads=settings.threads, precision=settings.precision, **opts)
    except OsnetEdgeError:
        raise
    except Exception as exc:
        raise ArtifactError(f"{path}: could not be opened ({type(exc).__name__}: {str(exc).strip()[:300]})") from None
    emb.batch_size = max(settings.batches)  # e2e of batch B is one preprocess + one backend call
    return emb


@dataclass
class Entry:
    """One thing to time: an opened Embedder with its label, complexity and extra row fields."""

    name: str
    emb: Embedder
    cx: Complexity
    baseline: bool = False
    extra: dict = field(default_factory=dict)


class Bench:
    """Runs the measurements; rows accumulate in self.rows so an interrupted run keeps what it has.

    Artifacts of the same architecture and input size form a group with one PyTorch eager
    baseline; a group's members are timed interleaved per (batch, mode), so ratios share the noise.
    """

    def __init__(self, settings: Settings, crops=None, progress=None):
        self.s = settings
        self.crops = crops if crops is not None else bench_crops(max(settings.batches), seed=0)
        self.rows: list[dict] = []
        self.progress = progress  # tqdm-like: .update(n), .set_description(str)
        self.grow_total = True  # run_artifacts adds its groups to the progress total (False: caller set it)
        self._tmp = tempfile.TemporaryDirectory(prefix="osnet-bench-")

    def close(self):
        self._tmp.cleanup()

    def jobs(self, n_artifacts: int, n_groups: int | None = None) -> int:
        """Progress steps: one per (batch, mode) per group."""
        return len(self.s.batches) * len(self.s.modes) * (n_artifacts if n_groups is None else n_groups)

    def _step(self, text):
        if self.progress is not None:
            self.progress.set_description(text)

    def baseline_entry(self, meta, cx) -> Entry:
        """PyTorch eager FP32 of the same architecture and input size, through the same Embedder."""
        from osnet_edge.checkpoint import save_checkpoint
        from osnet_edge.models import build_model

        model = build_model(meta.arch, input_size=meta.input_size)
        ckpt = Path(self._tmp.name) / f"{meta.arch}_{meta.input_size[0]}x{meta.input_size[1]}_eager.pth"
        save_checkpoint(model, ckpt)
        emb = Embedder(ckpt, device="cpu", threads=self.s.threads)
        emb.batch_size = max(self.s.batches)
        size = f"{meta.input_size[0]}x{meta.input_size[1]}"
        return Entry(f"{meta.arch} {size} eager fp32", emb, cx, baseline=True)

    def run_group(self, entries: list[Entry]) -> list[dict]:
        """Time every (batch, mode) for the entries interleaved; the baseline (if any) goes first."""
        base = next((e for e in entries if e.baseline), None)
        out = []
        for b in self.s.batches:
            crops = self.crops[:b]
            for mode in self.s.modes:
                self._step(f"{entries[-1].name} b={b} {mode}")
                fns = []
                for e in entries:
                    if mode == "model":
                        batch = e.emb.preprocess(crops)
                        fns.append(lambda e=e, batch=batch: e.emb.run_batch(batch))
                    else:
                        fns.append(lambda e=e: e.emb.embed(crops))
                timings = time_interleaved(fns, b, **self.s.timing_kwargs())
                ref = timings[entries.index(base)].throughput if base else None
                for e, t in zip(entries, timings):
                    row = _row(e.name, e.emb, e.cx, mode, t, self.s, baseline=e.baseline, **e.extra)
                    if ref and not e.baseline:
                        row["speedup"] = round(t.throughput / ref, 3)
                        row["baseline_throughput"] = round(ref, 2)
                    self.rows.append(row)
                    out.append(row)
                if self.progress is not None:
                    self.progress.update(1)
        return out

    def run_artifacts(self, paths, extras=None, embedders=None) -> list[dict]:
        """Open all artifacts (or take them opened: `embedders`, closed here too), group them by (arch, input
        size), measure each group with its baseline."""
        extras = extras or [{} for _ in paths]
        groups: dict = {}
        opened = list(embedders or [])
        try:
            for i, (path, extra) in enumerate(zip(paths, extras)):
                self._step(f"opening {Path(path).name}")
                emb = embedders[i] if embedders else open_embedder(path, self.s)
                if not embedders:
                    opened.append(emb)
                # a reduced execution precision (--exec-precision bf16) is timed only once it passed its own
                # gate against the artifact's declared precision, on crops other than the timed ones
                cos = emb.check_precision(bench_crops(max(self.s.batches), seed=1))
                if cos < 1.0:
                    extra = {**extra, "precision_min_cos": round(cos, 6)}
                key = (emb.meta.arch, tuple(emb.meta.input_size))
                if emb.meta.arch == "unknown":
                    key = ("unknown", str(path))
                groups.setdefault(key, []).append(
                    Entry(extra.pop("name", None) or Path(path).name, emb, complexity_of(emb.meta), extra=extra))
            if self.progress is not None and self.grow_total:
                self.progress.total = (self.progress.total or 0) + self.jobs(len(groups))
                self.progress.refresh()
            out = []
            for key, entries in groups.items():
                if self.s.baseline and key[0] != "unknown":
                    base = self.baseline_entry(entries[0].emb.meta, entries[0].cx)
                    opened.append(base.emb)
                    entries = [base, *entries]
                out += self.run_group(entries)
            return out
        finally:
            for emb in opened:
                emb.close()

    def run_artifact(self, path, name=None, **extra) -> list[dict]:
        """One artifact with its own baseline (the sweep's unit)."""
        return self.run_artifacts([path], [{"name": name, **extra}])
