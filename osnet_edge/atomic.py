"""One way to write a file so that a crash, Ctrl-C or power cut never leaves a half-written one: write a temporary
file beside the target, fsync it, rename it over the target, fsync the folder. Torch-free.

Without the two fsyncs a rename survives a crash but not a power cut: the filesystem may commit the rename before
the data (ext4 with delalloc, XFS), and the target comes back empty or short. What they cost per write is in
benchmarks/results/reliability/NOTES.md.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder (same suffix, so writers that infer the format from
    it still work); on success it replaces `path` durably, on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.partial{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        mask = os.umask(0)  # mkstemp makes 0600 files; give the mode a plain open() would
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        durable_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_path(path):
    """Flush a file's data (or a folder's entries) to the disk."""
    is_dir = Path(path).is_dir()
    if is_dir and os.name == "nt":  # Windows cannot open a folder to fsync it; NTFS journals renames itself
        return
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root):
    """fsync every file and folder under `root` (a folder written whole, then renamed into place)."""
    root = Path(root)
    if root.is_file():
        fsync_path(root)
        return
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(folder)


def durable_replace(src, dst):
    """os.replace(src, dst) that survives a power cut: src's data first, then the rename in dst's folder."""
    fsync_tree(src)
    os.replace(src, dst)
    fsync_path(Path(dst).parent)


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
