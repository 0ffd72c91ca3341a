"""MkDocs hook: show mkdocstrings the package as it is installed.

setup.py's package_dir maps osnet_edge.export, .calibration and .benchmarks from the top-level folders export/,
calibration/ and benchmarks/. griffe (mkdocstrings' reader: it parses the source, it never imports it) looks for
them inside osnet_edge/, so the build reads a tree of symlinks, .cache/griffe/osnet_edge, that joins the two.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]
MAPPED = ("export", "calibration", "benchmarks")   # setup.py package_dir: osnet_edge.<name> -> <name>/
TREE = ROOT / ".cache" / "griffe" / "osnet_edge"


def package_tree() -> Path:
    TREE.mkdir(parents=True, exist_ok=True)
    want = {p.name: p for p in (ROOT / "osnet_edge").iterdir() if p.name != "__pycache__"}
    want.update({name: ROOT / name for name in MAPPED})
    for link in TREE.iterdir():
        if link.name not in want or not link.is_symlink() or link.resolve() != want[link.name].resolve():
            link.unlink()
    for name, target in want.items():
        if not (TREE / name).is_symlink():
            (TREE / name).symlink_to(target)
    return TREE.parent


@event_priority(100)  # before mkdocstrings' on_config, which drops search paths that do not exist yet
def on_config(config, **_kwargs):
    package_tree()
    return config
