"""Terminal table and JSON record of a benchmark run."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from osnet_edge._version import __version__

SCHEMA = "osnet-bench/1"


def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def _m(v):
    return None if v is None else v / 1e6


# header -> (width, getter); the run table and the sweep table pick from the same cells
_CELLS = {
    "artifact": (30, lambda r: r["artifact"]),
    "beta": (5, lambda r: "-" if r.get("beta") is None else str(r["beta"])),
    "rho": (5, lambda r: "-" if r.get("rho") is None else str(r["rho"])),
    "backend": (13, lambda r: r["backend"]),
    "prec": (4, lambda r: r["precision"]),
    # an INT8 artifact runs its quantized layers in INT8, the rest in float: "int8+fp32", never a bare "fp32"
    "exec": (9, lambda r: (f"int8+{r.get('executes') or 'fp32'}" if r["precision"] == "int8"
                           else r.get("executes") or r["precision"])),
    "str": (3, lambda r: str(r.get("streams") or "-")),
    "input": (7, lambda r: f"{r['input_size'][0]}x{r['input_size'][1]}"),
    "batch": (5, lambda r: str(r["batch"])),
    "mode": (5, lambda r: r["mode"]),
    "p50 ms": (8, lambda r: _fmt(r["p50_ms"], ".2f")),
    "p90 ms": (8, lambda r: _fmt(r["p90_ms"], ".2f")),
    "p99 ms": (8, lambda r: _fmt(r["p99_ms"], ".2f")),
    "crops/s": (9, lambda r: _fmt(r["throughput"], ".1f")),
    "x eager": (7, lambda r: _fmt(r.get("speedup"), ".2f")),
    "params": (7, lambda r: _fmt(_m(r["params"]), ".2f") + ("M" if r["params"] else "")),
    "MAdds": (8, lambda r: _fmt(_m(r["mult_adds"]), ".1f") + ("M" if r["mult_adds"] else "")),
    "paper": (7, lambda r: _fmt(r.get("paper_mult_adds_m"), ".1f")),
    "GFLOP/s": (8, lambda r: _fmt(r["gflops"], ".1f")),
    "%peak": (6, lambda r: _fmt(None if r["peak_fraction"] is None else 100 * r["peak_fraction"], ".1f")),
    "R1": (5, lambda r: _fmt(r.get("paper_r1"), ".1f")),
}


def _columns(*headers):
    return tuple((h, *_CELLS[h]) for h in headers)


COLUMNS = _columns("artifact", "backend", "prec", "exec", "str", "input", "batch", "mode", "p50 ms", "p90 ms", "p99 ms",
                   "crops/s", "x eager", "params", "MAdds", "GFLOP/s", "%peak")
SWEEP_COLUMNS = _columns("beta", "rho", "backend", "prec", "exec", "input", "mode", "batch", "p50 ms", "p99 ms", "crops/s",
                         "x eager", "params", "MAdds", "paper", "GFLOP/s", "%peak", "R1")


def format_table(rows, columns=COLUMNS) -> str:
    """Fixed-width table; long artifact names are shortened from the left (the stem's end says most)."""
    if not rows:
        return "(no rows measured)"
    # text columns (the first six) left-aligned, numbers right-aligned
    lines = ["  ".join(h.rjust(w) if i > 5 else h.ljust(w) for i, (h, w, _) in enumerate(columns))]
    lines.append("-" * len(lines[0]))
    for r in rows:
        cells = []
        for i, (_, w, get) in enumerate(columns):
            text = str(get(r))
            if len(text) > w:
                text = "…" + text[-(w - 1):]
            cells.append(text.rjust(w) if i > 5 else text.ljust(w))
        lines.append("  ".join(cells))
    return "\n".join(lines)


def format_machine(machine: dict, probe: dict | None, load_start=None) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in machine.get("libraries", {}).items())
    lines = [f"machine: {machine['cpu']} ({machine['arch']}, {machine.get('isa_class', '?')}), "
             f"{machine['usable_cores']} usable cores ({machine.get('physical_cores') or '?'} physical), "
             f"flags: {' '.join(machine['flags']) or '-'}",
             f"libraries: {libs}"]
    if probe:
        lines.append(f"matmul probe: {probe['gflops']:.1f} GFLOP/s float32 ({probe['n']}x{probe['n']}, "
                     f"{probe['library']}, {probe['threads'] or 'default'} threads) = 100% peak below")
    if load_start:
        lines.append(f"load average at start: {' '.join(str(v) for v in load_start)}")
    return "\n".join(lines)


def build_record(rows, *, machine, probe, settings: dict, load_start, load_end, command=None,
                 interrupted=False, kind="artifacts", extra=None) -> dict:
    return {
        "schema": SCHEMA,
        "tool": f"osnet-bench {__version__}",
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command if command is not None else " ".join(["osnet-bench", *sys.argv[1:]]),
        "interrupted": interrupted,
        "machine": machine,
        "probe": probe,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "settings": settings,
        "rows": rows,
        **(extra or {}),
    }


def write_json(record: dict, path) -> Path:
    """Write to a temporary file beside the target, then rename: a killed run leaves no half-file."""
    from osnet_edge.atomic import write_text

    return write_text(path, json.dumps(record, indent=1, default=str) + "\n")


def headline(rows) -> list[dict]:
    """Per architecture and input size, at the largest batch measured: the best backend end to end
    (speed-up over eager) and the best model-only fraction of the matmul peak: the numbers users quote."""
    out = []
    keys = list(dict.fromkeys((r["arch"], tuple(r["input_size"])) for r in rows if not r["baseline"]))
    for arch, size in keys:
        mine = [r for r in rows if r["arch"] == arch and tuple(r["input_size"]) == size and not r["baseline"]]
        b = max(r["batch"] for r in mine)
        e2e = [r for r in mine if r["batch"] == b and r["mode"] == "e2e" and r.get("speedup")]
        model = [r for r in mine if r["batch"] == b and r["mode"] == "model" and r.get("peak_fraction")]
        h = {"arch": arch, "input_size": list(size), "batch": b}
        if e2e:
            best = max(e2e, key=lambda r: r["speedup"])
            h.update(best_e2e_artifact=best["artifact"], best_e2e_speedup=best["speedup"],
                     best_e2e_throughput=best["throughput"])
        if model:
            best = max(model, key=lambda r: r["peak_fraction"])
            h.update(best_model_artifact=best["artifact"], best_model_peak_fraction=best["peak_fraction"],
                     best_model_gflops=best["gflops"])
        if e2e or model:  # without an eager baseline or a peak probe there is nothing to headline
            out.append(h)
    return out


def format_headline(items) -> str:
    lines = []
    for h in items:
        parts = [f"{h['arch']} {h['input_size'][0]}x{h['input_size'][1]} batch {h['batch']}:"]
        if "best_e2e_speedup" in h:
            parts.append(f"best end to end {h['best_e2e_artifact']} {h['best_e2e_speedup']:.2f}x eager "
                         f"({h['best_e2e_throughput']:.1f} crops/s);")
        if "best_model_peak_fraction" in h:
            parts.append(f"best model-only {h['best_model_artifact']} {h['best_model_gflops']:.1f} GFLOP/s = "
                         f"{100 * h['best_model_peak_fraction']:.1f}% of the matmul peak")
        lines.append(" ".join(parts))
    return "\n".join(lines)

