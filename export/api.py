"""export_model(): one entry point over a registry of format writers, each artifact verified before it is kept.

A writer is a function `writer(model, tmp_path, meta, **options) -> list[Path]` that writes the artifact
(and any sidecar files) at a temporary path and returns the files it wrote, the loadable one first. It
never renames or verifies: export_model does both, once, for every format. Formats are added with
register_writer() (ONNX and OpenVINO here; TensorRT and INT8 in their own modules), so no class grows
a branch per format.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from osnet_edge.errors import ArtifactError, ModelConfigError, OsnetEdgeError
from osnet_edge.metadata import ModelMeta

# fmt -> writer; fmt keys are what --format accepts
WRITERS: dict[str, Callable] = {}
# fmt -> INT8 writer (same signature; gets calib and the other options), registered with int8=True
INT8_WRITERS: dict[str, Callable] = {}
# fmt -> artifact suffix (the Embedder picks its backend from it)
SUFFIXES: dict[str, str] = {}
# fmt -> one line saying why it is not available yet / how to get it (for formats without a writer)
PENDING: dict[str, str] = {
    "trt": "TensorRT export is not available in this build yet (it arrives with the TensorRT issue); "
           "use --format onnx or --format openvino",
}
INT8_PENDING = ("INT8 export is not available in this build yet (it arrives with the INT8 issue); "
                "export FP32/FP16 for now (--half for FP16)")

# minimum parity per precision: min cosine over every verified crop (issue 3)
# batch 1 and an odd batch above 32: broken OSNet exports give right batch-1 output and wrong larger batches
DEFAULT_VERIFY_BATCHES = (1, 33)
# INT8 (None): the parity on generated crops is reported, but the gate is the INT8 writer's fidelity report on
# held-out crops of the calibration source (issue 4): generated crops lie outside the calibrated range
PARITY_THRESHOLDS = {"fp32": 0.99999, "fp16": 0.999, "int8": None}


class VerificationError(ArtifactError):
    """An exported artifact's embeddings disagree with the PyTorch model; nothing was written."""


@dataclass
class ExportResult:
    path: Path                 # the loadable artifact (.onnx, .xml, .engine)
    meta: ModelMeta
    parity: dict = field(default_factory=dict)   # {"batch_1": {"min_cos", "mean_cos"}, ..., "min_cos", "mean_cos"}
    size_bytes: int = 0        # all files of the artifact together (.xml + .bin)
    files: list = field(default_factory=list)
    fmt: str = ""
    verified: bool = False

    @property
    def precision(self) -> str:
        return self.meta.precision

    def load_line(self) -> str:
        """The one line of Python that loads it."""
        return f'from osnet_edge import Embedder; emb = Embedder("{self.path}")'

    def summary(self) -> str:
        if self.verified:
            p = self.parity
            per = ", ".join(f"batch {k.split('_', 1)[1]}: min {v['min_cos']:.6f}" for k, v in p.items()
                            if k.startswith("batch_"))
            parity = f"min cosine {p['min_cos']:.6f}, mean {p['mean_cos']:.6f} ({per})"
        else:
            parity = "NOT VERIFIED (--no-verify)"
        m = self.meta
        return "\n".join([
            f"  path:      {self.path}" + (f" (+ {', '.join(Path(f).name for f in self.files[1:])})"
                                           if len(self.files) > 1 else ""),
            f"  size:      {self.size_bytes / 1e6:.2f} MB",
            f"  precision: {m.precision}   input: {m.input_size[0]}x{m.input_size[1]} {m.input_format}"
            f"   arch: {m.arch}",
            f"  parity:    {parity}",
            f"  weights:   {m.provenance_line()}",
            f"  load:      {self.load_line()}",
        ])


def register_writer(fmt: str, fn: Callable, suffix: str | None = None, *, int8: bool = False) -> None:
    """Add (or replace) the writer of a format.

    suffix: the loadable file's extension ('.engine'); may be omitted when the format already has one.
    int8=True registers fn as the format's INT8 writer (export_model(..., int8=True) calls it instead).
    """
    if suffix is None and fmt not in SUFFIXES:
        raise ValueError(f"register_writer({fmt!r}): give the artifact suffix, e.g. '.engine'")
    if suffix is not None:
        SUFFIXES[fmt] = suffix if suffix.startswith(".") else "." + suffix
    (INT8_WRITERS if int8 else WRITERS)[fmt] = fn
    PENDING.pop(fmt, None)


def formats() -> list:
    return sorted(set(WRITERS) | set(PENDING))


def default_output(meta: ModelMeta, fmt: str, directory=".") -> Path:
    """osnet_x0_25_256x128_fp16.xml: the name says what the file is."""
    return Path(directory) / f"{meta.stem()}{SUFFIXES[fmt]}"


def export_model(model, fmt: str, output=None, *, half: bool = False, int8: bool = False, calib=None,
                 max_batch: int = 32, opset: int = 18, verify: bool = True, input_format: str | None = None,
                 crops=None, batch_sizes=None, min_cos: float | None = None, quiet: bool = False,
                 **options) -> ExportResult:
    """Export an OSNet to `fmt` ('onnx', 'openvino', 'trt', ...) and verify it against the model.

    output: file or folder (None: current folder, named like osnet_x0_25_256x128_fp16.onnx); an existing folder, a
    trailing slash or a suffix-less new path is a folder (created).
    half: FP16 weights/compute; int8 (+ calib, a calibration source): INT8, once its writer is registered.
    max_batch: the largest batch the artifact must serve (TensorRT profiles); ONNX/OpenVINO are dynamic.
    input_format: 'uint8_nhwc' (normalisation in the graph, host only resizes) or 'float_nchw';
    None: the format's default. verify: compare embeddings with PyTorch at batch 1 and at an odd batch > 32
    (crops / batch_sizes override the generated crops and (1, 33)); min_cos overrides the precision's
    threshold (PARITY_THRESHOLDS); a failure keeps nothing and raises VerificationError. Other keyword options go to the writer (e.g. workspace, device).
    """
    from osnet_edge.checkpoint import model_meta
    from osnet_edge.complexity import complexity

    fmt = fmt.lower()
    if fmt not in WRITERS:
        if fmt in PENDING:
            raise OsnetEdgeError(PENDING[fmt])
        raise ModelConfigError(f"unknown export format {fmt!r}; available: {', '.join(formats())}")
    if half and int8:
        raise ModelConfigError("choose one of --half (FP16) and --int8")
    if int8 and fmt not in INT8_WRITERS:
        raise OsnetEdgeError(INT8_PENDING if not INT8_WRITERS else
                             f"INT8 is not available for --format {fmt}; it is for: {', '.join(sorted(INT8_WRITERS))}")
    if int(max_batch) < 1:
        raise ModelConfigError(f"max_batch must be >= 1, got {max_batch}")
    writer = INT8_WRITERS[fmt] if int8 else WRITERS[fmt]
    precision = "int8" if int8 else "fp16" if half else "fp32"
    meta = model_meta(model, precision=precision)
    # carried so a device without torch (osnet-bench there) still reports the network's size and Mult-Adds
    cx = complexity(model, meta.input_size)
    meta.extra.update(params=int(cx.params), mult_adds=int(cx.mult_adds))
    fmt_default = getattr(writer, "default_input_format", "float_nchw")
    meta.input_format = input_format or fmt_default
    ModelMeta.__post_init__(meta)  # validate input_format early, with the schema's own message

    out = Path(output) if output is not None else Path(".")
    # a folder: one that exists, a trailing slash, or a new path without a suffix (`-o models`)
    if out.is_dir() or output is None or str(output).endswith(("/", os.sep)) or not (out.suffix or out.is_file()):
        out = default_output(meta, fmt, out)
    elif out.suffix.lower() != SUFFIXES[fmt]:
        raise ModelConfigError(f"output {out} does not end in {SUFFIXES[fmt]}, the suffix of the {fmt} format "
                               f"(the Embedder picks its backend from it)")
    try:  # a read-only or missing folder fails here, before minutes of exporting
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.stem}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise ArtifactError(f"could not write {out}: {exc.strerror or exc}; nothing was written") from None

    # temporary names share the final suffix so verification opens them with the right backend
    tmp_stem = f".{out.stem}.{secrets.token_hex(4)}.partial"
    tmp = out.parent / (tmp_stem + out.suffix)
    written: list = []
    try:
        # the INT8 writers print calibration progress and their fidelity report unless told to be quiet
        quiet_writer = {"quiet": quiet} if int8 else {}
        written = [Path(p) for p in writer(model, tmp, meta, opset=opset, half=half, int8=int8, calib=calib,
                                           max_batch=max_batch, **quiet_writer, **options)]
        if not written or not written[0].is_file():
            raise ArtifactError(f"the {fmt} writer produced no file at {tmp}")
        parity = {}
        if verify:
            from osnet_edge.export.verify import verify_artifact

            # bounded-batch formats (TensorRT profiles) check an odd batch near their max instead of 33
            near_max = getattr(writer, "verify_batches", None)
            sizes = tuple(batch_sizes) if batch_sizes else (near_max(int(max_batch)) if near_max
                                                            else DEFAULT_VERIFY_BATCHES)
            parity = verify_artifact(written[0], model, crops=crops, batch_sizes=sizes, quiet=quiet, label=out.name,
                                     **({"device": options["device"]} if options.get("device") else {}))
            need = PARITY_THRESHOLDS[precision] if min_cos is None else float(min_cos)
            if need is not None and parity["min_cos"] < need:
                raise VerificationError(
                    f"{fmt} {precision} export failed verification: min cosine {parity['min_cos']:.6f} < {need} "
                    f"(mean {parity['mean_cos']:.7f}; {_per_batch(parity)}). Nothing was written to {out}")
        # what was checked travels with the artifact (repr(Embedder), osnet-eval), recorded before the rename
        meta.provenance = {**meta.provenance, "parity": _parity_record(parity, verify, need if verify else None)}
        fidelity = _fidelity_record(written)
        if fidelity:
            meta.provenance["int8_fidelity"] = fidelity
        from osnet_edge.export.artifact_meta import rewrite_provenance

        rewrite_provenance(written, meta)
        finals = []
        for p in written:
            if not p.name.startswith(tmp_stem):
                raise ArtifactError(f"writer file {p} does not share the temporary stem {tmp_stem}")
            finals.append(out.parent / (out.stem + p.name[len(tmp_stem):]))
        from osnet_edge.atomic import durable_replace

        # companions (.bin, sidecars) first, the file the Embedder opens last: an interrupted rename never leaves
        # a new .xml over an old .bin (and the .xml records its .bin's sha256, which the runtime checks)
        for p, final in list(zip(written, finals))[::-1]:
            durable_replace(p, final)
    except BaseException as exc:
        for p in set(written) | {tmp} | set(out.parent.glob(tmp_stem + "*")):
            with contextlib.suppress(OSError):  # a folder gone read-only keeps its temporary; never its name
                Path(p).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:  # disk full, read-only folder, quota
            raise ArtifactError(f"could not write {out}: {exc.strerror}; nothing was written (any previous "
                                f"{out.name} is untouched)") from None
        raise
    res = ExportResult(path=finals[0], meta=meta, parity=parity, size_bytes=sum(f.stat().st_size for f in finals),
                       files=finals, fmt=fmt, verified=bool(verify))
    if not quiet and not verify:
        print("warning: --no-verify: the artifact was NOT compared with the PyTorch model", file=sys.stderr)
    return res


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _parity_record(parity: dict, verified: bool, threshold) -> dict:
    """The parity as provenance: min/mean cosine against the PyTorch model, the batches and the gate."""
    if not verified:
        return {"verified": False}
    return {"verified": True, "min_cos": float(parity["min_cos"]), "mean_cos": float(parity["mean_cos"]),
            "batches": sorted(int(k.split("_", 1)[1]) for k in parity if k.startswith("batch_")),
            "threshold": threshold}


def _fidelity_record(written: list) -> dict | None:
    """A summary of the INT8 fidelity report an INT8 writer left among its files (None for FP32/FP16)."""
    import json

    from osnet_edge.export.fidelity import REPORT_SUFFIX

    path = next((Path(p) for p in written if str(p).endswith(REPORT_SUFFIX)), None)
    if path is None:
        return None
    r = json.loads(path.read_text())
    keep = ("passed", "n_crops", "held_out", "generated", "cosine_mean", "cosine_min", "top1_agreement",
            "top5_agreement", "thresholds", "gates_lowered")
    out = {k: r[k] for k in keep if k in r}
    if r.get("decisive"):
        out["decisive_top1"] = r["decisive"].get("top1_agreement")
    if r.get("correct_kept"):
        out["correct_kept"] = r["correct_kept"].get("share")
    if (r.get("extra") or {}).get("speedup"):
        out["speedup"] = r["extra"]["speedup"]["speedup"]
    if r.get("retrieval"):
        out["retrieval"] = {k: r["retrieval"][k] for k in ("fp32", "int8") if k in r["retrieval"]}
    return out


def _per_batch(parity: dict) -> str:
    return ", ".join(f"{k}: min {v['min_cos']:.6f}" for k, v in parity.items() if k.startswith("batch_"))
