"""Fill docs/reliability.md's tables (and the README's reliability summary) from the recorded results beside this
script (hostile*.json, fuzz*.txt, hang.json, soak.json; soak.png drawn): the pages show what was run, never
numbers typed in by hand.

    OSNET_EDGE_HOSTILE_TABLE=benchmarks/results/reliability/hostile.json .venv/bin/python -m pytest -q \
        tests/test_hostile_artifacts.py -k every
    .venv/bin/python benchmarks/results/reliability/tables.py
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[2] / "docs" / "reliability.md"
README = HERE.parents[2] / "README.md"


def _short(line: str) -> str:
    line = re.sub(r"/tmp/\S*?/(art|outside)(/|\b)", r"\1\2", line)
    line = re.sub(r"\(Weights only load failed.*", "(...)", line)
    return (line[:190] + " ...") if len(line) > 190 else line


def _hostile_rows() -> list:
    rows = json.loads((HERE / "hostile.json").read_text())
    if (HERE / "hostile_engines.json").exists():  # TensorRT engines + sidecars, through the TensorRT stand-ins
        rows += json.loads((HERE / "hostile_engines.json").read_text())
    return rows


def hostile() -> str:
    rows = _hostile_rows()
    cases: dict = {}
    for case, entry, line in rows:
        cases.setdefault(case, {"entries": [], "line": None})
        cases[case]["entries"].append(entry)
        if entry == "Embedder":
            cases[case]["line"] = line.removeprefix("Embedder: error: ")
    out = [f"{len(cases)} artifacts, {len(rows)} (artifact, entry point) runs, every one refused in one line. Engine "
           f"cases ran against the TensorRT stand-ins of tests/test_tensorrt_fake.py (no GPU here): the file and "
           f"sidecar checks are the backend's own code, the deserializer is the stand-in's.", "",
           "| hostile artifact | refused by | the line (Embedder) |", "|---|---|---|"]
    for case, c in cases.items():
        who = "all 5" if len(c["entries"]) == 5 else ", ".join(c["entries"])
        out.append(f"| {case} | {who} | {_short(c['line'] or '').replace('|', '/')} |")
    return "\n".join(out)


def hostile_row(rows: list) -> str:
    return (f"| hostile artifacts x entry points | 0 tracebacks over >= 30 artifacts and every CLI | "
            f"**{len({r[0] for r in rows})} artifacts, {len(rows)} (artifact, entry point) runs, 0 tracebacks**, "
            f"nothing opened outside the artifact's folder (inotify), no payload ran |")


def fuzz() -> str:
    out = ["| entry point | examples passed | failing | time | run |", "|---|---|---|---|---|"]
    notes = []
    for path in sorted(HERE.glob("fuzz*.txt")):  # fuzz.txt: the readers; fuzz_preprocess.txt: the rest
        text = path.read_text()
        for name, block in re.findall(r"tests/test_fuzz.py::(\w+):\n(.*?)(?=\ntests/test_fuzz.py::|\n=|\Z)", text,
                                      re.S):
            passing = sum(int(n) for n in re.findall(r"(\d+) passing", block))
            failing = sum(int(n) for n in re.findall(r"(\d+) failing", block))
            secs = sum(float(s) for s in re.findall(r"phase \(([\d.]+) seconds\)", block))
            out.append(f"| `{name.removeprefix('test_')}` | {passing} | {failing} | {secs:.0f} s | {path.name} |")
        summary = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
        notes.append(f"{path.name}: {summary[-1].strip('= ') if summary else '?'}; load average at start "
                     f"{' '.join(text.splitlines()[0].split()[:3])}.")
    return "\n".join(out + [""] + notes)


def hang() -> str:
    r = json.loads((HERE / "hang.json").read_text())
    return (f"{r['runs']} fresh-process runs ({r.get('parallel', 1)} at a time) of: {r['sequence']}; "
            f"**{r['hangs']} hangs**, {r['failures']} failures (limit {r['limit_s']:g} s a run, py-spy stacks of any "
            f"hang in `hangs/`); median run {r['median_run_s']} s, {r['wall_s'] / 60:.0f} min in all, load average "
            f"{' '.join(r['load_average_start'])} -> {' '.join(r['load_average_end'])}.")


def hang_row(r: dict) -> str:
    return (f"| hang (fresh processes, torch + OpenVINO INT8 2 streams + ONNX Runtime) | 0 hangs over >= 1,000 runs | "
            f"**{r['runs']:,} runs, {r['hangs']} hangs**, {r['failures']} failures |")


def soak() -> str:
    r = json.loads((HERE / "soak.json").read_text())
    out = [f"`embed_frame` on {r['frames']} real frames of {Path(r['video']).name}, {r['boxes_per_frame'][0]}-"
           f"{r['boxes_per_frame'][1]} boxes a frame, osnet_x0_25 256x128, CPU streams on. Growth: the largest RSS "
           f"after warm-up (the first 10% of a phase's crops) minus the RSS when warm-up ended, as a share of the "
           f"latter; the curves are `benchmarks/results/reliability/soak.png`.", "",
           "| backend | threads | crops | crops/s | RSS after warm-up | RSS max | growth | fds | Python threads | "
           "same embeddings start/end | load average at end |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, x in r["runs"].items():
        backend, threads = name.split(" threads=")
        out.append(f"| {backend} | {threads} | {x['crops']} | {x['crops_per_s']} | {x['rss_after_warmup_mb']} MB | "
                   f"{x['rss_max_mb']} MB | {x['rss_growth_after_warmup_pct']}% | {x['fds']} | {x['threads']} | "
                   f"{'yes' if x['same_embeddings_start_end'] else 'NO'} | {' '.join(x.get('load_average_end', []))} |")
    return "\n".join(out)


def soak_row(r: dict) -> str:
    runs = r["runs"].values()
    by_threads = {}
    for name, x in r["runs"].items():
        by_threads.setdefault(name.split(" threads=")[1], []).append(x["crops"])
    span = lambda c: f"{min(c):,}" if min(c) == max(c) else f"{min(c):,}-{max(c):,}"  # noqa: E731
    counts = "; ".join(f"{span(c)} crops for each of {len(c)} backends, {t} thread{'s' if t != '1' else ''}"
                       for t, c in sorted(by_threads.items()))
    growth = [x["rss_growth_after_warmup_pct"] for x in runs]
    same = all(x["same_embeddings_start_end"] for x in runs)
    flat = all(len(x["fds"]) == 1 for x in runs)
    return (f"| soak (`embed_frame` on vtest.avi) | RSS growth < 1% over 10^6 crops | **{counts}**: growth after "
            f"warm-up {min(growth):g}-{max(growth):g}%, fds {'flat' if flat else 'NOT flat'}, "
            f"{'same' if same else 'DIFFERENT'} embeddings at start and end |")


def plot_soak() -> None:
    """soak.png: RSS over crops, one curve per phase (the recorded samples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = json.loads((HERE / "soak.json").read_text())
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, x in r["runs"].items():
        c = [s[0] for s in x["samples"]]
        ax.plot(c, [s[1] for s in x["samples"]], label=name)
    ax.set_xlabel("crops embedded")
    ax.set_ylabel("RSS (MB)")
    ax.set_title("Soak: one Embedder, embed_frame on vtest.avi (osnet_x0_25 256x128)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(HERE / "soak.png", dpi=110)


def main() -> int:
    doc = DOC.read_text()
    for tag, fn in (("hostile-table", hostile), ("fuzz-table", fuzz), ("hang-table", hang), ("soak-table", soak)):
        try:
            body = fn()
        except FileNotFoundError as exc:
            print(f"skipped {tag}: {exc.filename} not recorded yet", file=sys.stderr)
            continue
        doc = re.sub(rf"<!-- {tag} -->.*?<!-- /{tag} -->", lambda m: f"<!-- {tag} -->\n{body}\n<!-- /{tag} -->",
                     doc, flags=re.S)
    if (HERE / "hostile.json").exists():
        doc = re.sub(r"^\| hostile artifacts x entry points.*$", lambda m: hostile_row(_hostile_rows()), doc,
                     flags=re.M)
    rows = (("| hang (fresh processes", "hang.json", hang_row), ("| soak (`embed_frame`", "soak.json", soak_row))
    for start, name, fn in rows:  # the summary table's rows, from the same files
        if (HERE / name).exists():
            row = fn(json.loads((HERE / name).read_text()))
            doc = re.sub(rf"^{re.escape(start)}.*$", lambda m: row, doc, flags=re.M)
    if (HERE / "soak.json").exists():
        plot_soak()
    DOC.write_text(doc)
    # the README's reliability section shows the same summary table, its "what" and "measured" columns
    table = re.search(r"^\| what \| goal \| measured \|\n(?:^\|.*\n)+", doc, flags=re.M).group(0)
    table = table.replace("see the table below", "a table in [Reliability](docs/reliability.md)")
    readme = re.sub(r"<!-- reliability-summary -->.*?<!-- /reliability-summary -->",
                    lambda m: f"<!-- reliability-summary -->\n{table}<!-- /reliability-summary -->",
                    README.read_text(), flags=re.S)
    README.write_text(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
