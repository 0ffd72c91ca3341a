"""The documentation cannot drift from the code.

- The README's worked path (torchreid zoo file -> ONNX / FP16 IR / INT8 IR -> Embedder -> osnet-bench) runs end to
  end, its commands through the commands' own main() (as the console scripts call them), on a generated
  torchreid-style zoo file and generated crops.
- Every ```python block of docs/*.md runs, page by page, against the artifacts the worked path wrote.
- The site's strict build fails on a broken link and on an API name that does not exist.

What this test changes in the README's commands, and why (nothing else):
- input size 64x32 instead of the default 256x128 (`--imgsz 64 32` and the file names that follow): time;
- every INT8 gate set to let anything pass: the zoo file is the `trained` fixture (conftest.py), a tiny network
  trained for seconds, below the default gates (test_int8.py measures its spread); the report is still written;
- osnet-bench timed for 2 calls at batch 1,2 without the matmul probe: time.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
BENCH_FAST = ["--iters", "2", "--warmup", "0", "--rounds", "1", "--no-probe", "--threads", "1"]


def fenced(text: str, lang: str) -> list:
    return [body for kind, body in FENCE.findall(text) if kind == lang]


def worked_path_text() -> str:
    text = (ROOT / "README.md").read_text()
    start, end = text.index("<!-- worked-path"), text.index("<!-- /worked-path -->")
    return text[start:end]


def commands(block: str) -> list:
    """The command lines of a bash block: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]


def _gate_flags() -> list:
    try:
        from osnet_edge.export.gates import GATES
    except ImportError:  # before the gate table existed: the two flags
        return ["--min-cosine", "0", "--min-top1", "0"]
    return [a for g in GATES for a in (g.flag, "0" if g.kind == "min" else "1")]


def _mains():
    from osnet_edge.benchmarks.cli import main as bench
    from osnet_edge.export.cli import main as export

    return {"osnet-export": export, "osnet-bench": bench}


def adapt(argv: list) -> list:
    """The changes the module docstring lists, to one README command."""
    prog, args = argv[0], [a.replace("256x128", "64x32") for a in argv[1:]]
    if prog == "osnet-export":
        args += ["--imgsz", "64", "32"] + (_gate_flags() if "--int8" in args else [])
    if prog == "osnet-bench":
        args[args.index("--batch") + 1] = "1,2"
        args += BENCH_FAST
    return [prog] + args


def _frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def worked_path(trained, reid_data, tmp_path_factory):
    """Runs the README's worked path in a fresh folder; returns the folder, each command's exit status and the
    Python block's namespace."""
    import cv2

    work = tmp_path_factory.mktemp("readme")
    torch.save(trained.state_dict(), work / "osnet_x0_25_msmt17.pth")   # torchreid's zoo files: a bare state_dict
    (work / "crops").symlink_to(reid_data, target_is_directory=True)    # an osnet-crops / Market-1501 folder
    cv2.imwrite(str(work / "frame.jpg"), _frame())
    text = worked_path_text()
    mains, statuses, namespace = _mains(), [], {}
    import os

    here = os.getcwd()
    os.chdir(work)
    try:
        for kind, body in FENCE.findall(text):
            if kind == "bash":
                for argv in commands(body):
                    argv = adapt(argv)
                    statuses.append((argv, mains[argv[0]](argv[1:])))
            elif kind == "python":
                exec(compile(body.replace("256x128", "64x32"), "README.md", "exec"), namespace)
    finally:
        os.chdir(here)
    return work, statuses, namespace


@pytest.mark.slow
def test_readme_worked_path_runs(worked_path):
    work, statuses, ns = worked_path
    assert [argv[0] for argv, _ in statuses] == ["osnet-export"] * 3 + ["osnet-bench"]
    assert all(rc == 0 for _, rc in statuses), statuses
    models = work / "models"        # `-o models`: a new folder without a suffix is a folder
    for name in ("fp32.onnx", "fp16.xml", "int8.xml", "int8.fidelity.json"):
        assert (models / f"osnet_x0_25_64x32_{name}").is_file(), name
    assert ns["feats"].shape == (2, 512) and ns["emb"].meta.precision == "int8"
    assert np.allclose((ns["feats"] ** 2).sum(1), 1, atol=1e-4)
    import json

    rows = json.loads((work / "bench.json").read_text())["rows"]
    assert {r["artifact"] for r in rows if not r.get("baseline")} >= {f"osnet_x0_25_64x32_{n}" for n in
                                                                        ("fp32.onnx", "fp16.xml", "int8.xml")}


DOC_PAGES = sorted(p.name for p in DOCS.glob("*.md") if fenced(p.read_text(), "python"))


@pytest.fixture(scope="module")
def docs_folder(worked_path):
    """The worked path's folder, with its artifacts also under the default 256x128 names the pages use, and the
    MOT det file the osnet-crops page reads."""
    from osnet_edge.calibration.crops_dataset import write_mot

    work = worked_path[0]
    for f in (work / "models").iterdir():
        if "64x32" in f.name and not f.is_symlink():
            link = f.with_name(f.name.replace("64x32", "256x128"))
            if not link.exists():
                link.symlink_to(f.name)
    write_mot(work / "det.txt", [(1, -1, 10, 20, 60, 140, 0.9), (1, -1, 100, 30, 150, 150, 0.8),
                                 (2, -1, 12, 20, 62, 140, 0.9)])
    if not (work / "vtest_crops").exists():   # the osnet-crops folder the pages name
        (work / "vtest_crops").symlink_to("crops")
    return work


@pytest.mark.slow
@pytest.mark.parametrize("page", DOC_PAGES)
def test_docs_python_blocks_run(page, docs_folder, monkeypatch):
    from osnet_edge.synthetic import synthetic_crops

    import cv2

    from osnet_edge import Embedder

    if page == "gallery.md":
        pytest.importorskip("lancedb")
    monkeypatch.chdir(docs_folder)
    frame = _frame()
    boxes = np.array([[10, 20, 60, 140], [100, 30, 150, 150]], float)
    shifted = boxes + [4, 0, 4, 0]
    crops = list(synthetic_crops(6, seed=1))
    paths = []   # the crops as image files: a.jpg, crop_1.jpg, ...
    for i, crop in enumerate(crops):
        paths.append(str(docs_folder / ("a.jpg" if i == 0 else f"crop_{i}.jpg")))
        cv2.imwrite(paths[-1], crop)
    with Embedder(docs_folder / "models" / "osnet_x0_25_256x128_fp32.onnx") as emb:
        feats = emb.embed(crops)
    # the given names docs/index.md lists
    namespace = {"crops": crops, "frame": frame, "boxes": boxes, "paths": paths, "feats": feats,
                 "ts": np.arange(len(crops)) * 0.04,
                 "frames_and_detections": [(frame, boxes), (frame, shifted), (frame, shifted[:1])]}
    for i, body in enumerate(fenced((DOCS / page).read_text(), "python")):
        exec(compile(body, f"docs/{page} block {i + 1}", "exec"), namespace)


def test_every_page_is_in_the_nav():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {next(iter(entry.values())) for entry in nav}
    assert listed == {p.name for p in DOCS.glob("*.md")}


# ------------------------------------------------------------------------------------------- the strict build

def _make_test_mkdocs_args() -> list:
    """The arguments `make test` gives mkdocs (mkdocs 1.6 counts no warnings under -q, so --strict passes)."""
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "mkdocs build" in line)
    return shlex.split(line.split("mkdocs", 1)[1], comments=True)


def _build(tmp_path, page_text: str):
    """`make test`'s mkdocs build with the project's configuration (theme, plugins, validation, hook) on one page."""
    import yaml

    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "index.md").write_text(page_text)
    (docs / "other.md").write_text("# Other\n")
    cfg.update(docs_dir=str(docs), site_dir=str(tmp_path / "site"), nav=[{"Home": "index.md"}, {"Other": "other.md"}],
               hooks=[str(ROOT / h) for h in cfg["hooks"]])
    for plugin in cfg["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            python = plugin["mkdocstrings"]["handlers"]["python"]
            python["paths"] = [str(ROOT / p) for p in python["paths"]]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "mkdocs", *_make_test_mkdocs_args(), "-f", str(tmp_path / "mkdocs.yml")],
                          capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
                          cwd=tmp_path)


def test_strict_build_fails_on_a_broken_link_and_a_missing_api_name(tmp_path):
    assert "--strict" in _make_test_mkdocs_args()
    ok = _build(tmp_path, "# Home\n\nSee [the other page](other.md).\n\n::: osnet_edge.preprocess.to_batch\n")
    assert ok.returncode == 0, ok.stderr[-2000:]
    broken = _build(tmp_path, "# Home\n\nSee [a page that is not there](no_such_page.md).\n")
    assert broken.returncode != 0 and "no_such_page.md" in broken.stderr, broken.stderr[-2000:]
    missing = _build(tmp_path, "# Home\n\n::: osnet_edge.preprocess.no_such_function\n")
    assert missing.returncode != 0 and "no_such_function" in missing.stderr, missing.stderr[-2000:]
