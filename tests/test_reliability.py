"""Faults a camera box meets: power cuts (atomic writes fsync file and folder), a full disk and a read-only output
folder during an export, a video that ends or breaks mid-stream in osnet-crops and the tracker example. Each ends
in one line from the project's error family, with nothing half-written and any previous file untouched."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_crops import LANES, make_video  # noqa: E402
from test_runtime_artifacts import ARCH, INPUT, onnx_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _run_cli(main, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _error_lines(err: str) -> list:
    return [ln for ln in err.splitlines() if "error" in ln.lower() or "Traceback" in ln]


# --------------------------------------------------------------------------- power loss: fsync


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    from osnet_edge import atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))[1])
    target = tmp_path / "gallery.json"
    atomic.write_text(target, "{}")
    assert target.read_text() == "{}"
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert ".partial" in events[0][1] and events[0][1] != str(target)  # the temporary file's data, first
    assert events[2][1] == str(tmp_path)  # then the folder holding the new name


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    from osnet_edge.atomic import atomic_path

    target = tmp_path / "model.onnx"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_a_folder_renamed_into_place_is_synced_whole(tmp_path, monkeypatch):
    from osnet_edge.atomic import durable_replace

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    src = tmp_path / ".crops.partial"
    (src / "query").mkdir(parents=True)
    for name in ("a.jpg", "query/b.jpg"):
        (src / name).write_bytes(b"x")
    durable_replace(src, tmp_path / "crops")
    assert {Path(p).name for p in synced} >= {"a.jpg", "b.jpg", "query", ".crops.partial", tmp_path.name}


# --------------------------------------------------------------------------- disk full, read-only folder


@contextlib.contextmanager
def _small_filesystem(path: Path, size: str, read_only=False):
    """A tmpfs of `size` at path (needs mount rights); None where the container does not allow it."""
    path.mkdir()
    opts = f"size={size}" + (",ro" if read_only else "")
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        yield path if ok else None
    finally:
        if ok:
            subprocess.run(["umount", str(path)], check=False)


def _export(out: Path):
    from osnet_edge.export.cli import main

    return _run_cli(main, ["--arch", ARCH, "--imgsz", str(INPUT[0]), str(INPUT[1]), "--format", "onnx",
                           "-o", str(out)])


def test_disk_full_during_an_export_is_one_line_and_keeps_the_previous_file(tmp_path):
    with _small_filesystem(tmp_path / "mnt", "512k") as mnt:
        if mnt is not None:
            (mnt / "m.onnx").write_text("previous")  # a previous artifact; the new one (~0.9 MB) cannot fit
            rc, _, err = _export(mnt / "m.onnx")
            left = sorted(p.name for p in mnt.iterdir())
            previous = (mnt / "m.onnx").read_text()
        else:  # no mount rights: the same fault from a file size limit (EFBIG instead of ENOSPC), in a child
            out = tmp_path / "out"
            out.mkdir()
            (out / "m.onnx").write_text("previous")
            code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                    "resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10)); "
                    "from osnet_edge.export.cli import main; sys.exit(main(sys.argv[1:]))")
            p = subprocess.run([sys.executable, "-c", code, "--arch", ARCH, "--imgsz", str(INPUT[0]), str(INPUT[1]),
                                "--format", "onnx", "-o", str(out / "m.onnx")], capture_output=True, text=True)
            rc, err = p.returncode, p.stderr
            left, previous = sorted(q.name for q in out.iterdir()), (out / "m.onnx").read_text()
    lines = _error_lines(err)
    assert rc == 1 and len(lines) == 1 and "could not write" in lines[0] and "m.onnx" in lines[0], err
    assert left == ["m.onnx"] and previous == "previous"


def test_read_only_output_folder_is_one_line(tmp_path):
    with _small_filesystem(tmp_path / "ro", "1m", read_only=True) as ro:
        if ro is None:
            if os.geteuid() == 0:
                pytest.skip("root ignores folder permissions and this container cannot mount a read-only tmpfs")
            ro = tmp_path / "ro"
            ro.chmod(0o555)
        rc, _, err = _export(ro / "m.onnx")
        lines = _error_lines(err)
        assert rc == 1 and len(lines) == 1 and "could not write" in lines[0], err
        assert list(ro.iterdir()) == []


# --------------------------------------------------------------------------- video that ends or breaks


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    full = d / "lanes.avi"
    make_video(full, LANES)
    data = full.read_bytes()
    (d / "ends.avi").write_bytes(data[: len(data) // 2])  # the stream stops mid-file (a copy cut short)
    broken = bytearray(data)
    mid = len(data) // 2
    broken[mid:mid + 20000] = np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes()
    (d / "broken.avi").write_bytes(bytes(broken))  # garbage in the middle of the stream
    # the boxes of the whole video, as a detector run on the complete file wrote them
    from osnet_edge.calibration.crops_cli import main

    rc, _, err = _run_cli(main, [str(full), "--out", str(d / "full_crops"), "--per-track", "4", "--no-progress",
                                 "--write-boxes", str(d / "det.txt")])
    assert rc == 0, err
    return d


@pytest.mark.parametrize("video", ["ends.avi", "broken.avi"])
def test_crops_from_a_video_that_ends_or_breaks(videos, video, tmp_path):
    from osnet_edge.calibration.crops_cli import main

    out = tmp_path / "crops"
    rc, _, err = _run_cli(main, [str(videos / video), "--out", str(out), "--boxes", str(videos / "det.txt"),
                                 "--per-track", "4", "--no-progress"])
    lines = _error_lines(err)
    if rc == 0:  # the decoder skipped the damage and every box's frame was there: a complete folder
        assert (out / "osnet_crops.json").is_file() and not lines
    else:
        assert len(lines) == 1 and video in lines[0] and "Traceback" not in err, err
        assert not out.exists() and not list(tmp_path.glob(".crops*"))
    if video == "ends.avi":
        assert rc != 0 and "ended at frame" in err  # the boxes ask for frames the cut file lacks


@pytest.mark.parametrize("video", ["ends.avi", "broken.avi"])
def test_tracker_example_on_a_video_that_ends_or_breaks(videos, video, tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    import track

    out = tmp_path / "tracks.txt"
    out.write_text("previous\n")
    rc, _, err = _run_cli(track.main, [str(videos / video), str(videos / "det.txt"), str(onnx_path()),
                                       "--out", str(out), "--draw", "", "--no-progress"])
    lines = _error_lines(err)
    if rc == 0:
        assert not lines and out.read_text() != "previous\n"
    else:
        assert len(lines) == 1 and video in lines[0] and "Traceback" not in err, err
        assert out.read_text() == "previous\n" and sorted(p.name for p in tmp_path.iterdir()) == ["tracks.txt"]
    if video == "ends.avi":
        assert rc != 0
