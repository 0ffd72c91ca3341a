"""Model files handed over by others: every hostile artifact x every entry point that opens it (the Embedder,
osnet-export --weights, osnet-train --weights, osnet-eval, osnet-bench) ends in one line from the project's
error family. Nothing outside the artifact's folder is opened (inotify watches the folder the files point
into) and nothing is executed (a payload would create a marker file)."""
from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import pickle
import re
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from osnet_edge.errors import OsnetEdgeError

sys.path.insert(0, str(Path(__file__).parent))
from test_runtime_artifacts import INPUT, model, onnx_path, openvino_path  # noqa: E402

MARKER = "payload-ran"


class _Payload:
    """Unpickling this runs a shell command that creates MARKER: a loader that executes code would show it."""

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        return os.system, (f"touch {self.folder}/{MARKER}",)


# --------------------------------------------------------------------------- building the hostile files


def _onnx_variant(dst: Path, edit):
    import onnx

    proto = onnx.load(str(onnx_path()))
    edit(proto)
    dst.write_bytes(proto.SerializeToString())


def _set_meta(value):
    def edit(proto):
        for p in proto.metadata_props:
            if p.key == "osnet_edge":
                p.value = value(p.value) if callable(value) else value
    return edit


def _meta_field(**fields):
    return _set_meta(lambda v: json.dumps({**json.loads(v), **fields}))


def _input_dim(index, value):
    def edit(proto):
        proto.graph.input[0].type.tensor_type.shape.dim[index].dim_value = value
    return edit


def _external(dst: Path, location: str, outside: Path, length_extra: int = 0):
    """An ONNX whose weights live in a separate file at `location` (written into `outside` unless relative)."""
    import onnx
    from onnx import external_data_helper as edh

    proto = onnx.load(str(onnx_path()))
    edh.convert_model_to_external_data(proto, all_tensors_to_one_file=True, location="w.data", size_threshold=0)
    onnx.save(proto, str(outside / "staged.onnx"))  # writes outside/w.data
    proto = onnx.load(str(outside / "staged.onnx"), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
            if e.key == "length" and length_extra:
                e.value = str(int(e.value) + length_extra)
    (outside / "staged.onnx").unlink()
    dst.write_bytes(proto.SerializeToString())


def _ir(folder: Path, name: str, xml: bytes, bin_: bytes | None) -> Path:
    (folder / f"{name}.xml").write_bytes(xml)
    if bin_ is not None:
        (folder / f"{name}.bin").write_bytes(bin_)
    return folder / f"{name}.xml"


def _ir_meta(xml: bytes, value: str) -> bytes:
    escaped = value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return re.sub(rb'(<osnet_edge value=")[^"]*(")', lambda m: m.group(1) + escaped.encode() + m.group(2), xml)


def build_cases(root: Path) -> dict:
    """{case name: path}; root/art holds the artifacts, root/outside what they point at."""
    import torch

    from osnet_edge.checkpoint import save_checkpoint

    art, outside = root / "art", root / "outside"
    art.mkdir()
    outside.mkdir()
    good = save_checkpoint(model(), outside / "good.pth")
    data = good.read_bytes()
    c = {}

    def pth(name, payload: bytes) -> Path:
        (art / f"{name}.pth").write_bytes(payload)
        return art / f"{name}.pth"

    c["pth: text file"] = pth("text", b"hello world, this is not a checkpoint\n")  # was KeyError: 101
    c["pth: text of one letter"] = pth("eee", b"e" * 200)  # was IndexError: pop from empty list
    c["pth: JSON"] = pth("json", b'{"state_dict": {}}')
    c["pth: random bytes"] = pth("random", bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8)))
    c["pth: empty"] = pth("empty", b"")
    c["pth: truncated zip"] = pth("truncated", data[: len(data) // 2])
    c["pth: zip without data.pkl"] = pth("plainzip", _zip({"notes.txt": b"hello"}))
    c["pth: zip with a huge declared tensor"] = pth("hugetensor", _huge_tensor_zip())
    c["pth: zip member compressed (inflates to any size)"] = pth("deflated", _recompress(data))
    c["pth: zip member larger than the file"] = pth("bigmember", _lying_member(data))
    evil = art / "evil.pth"
    torch.save({"state_dict": model().state_dict(), "x": _Payload(root)}, evil)
    c["pth: pickle needing code (torch zip)"] = evil
    c["pth: pickle needing code (legacy pickle)"] = pth("evil_legacy", pickle.dumps(_Payload(root), protocol=2))
    os.symlink(good, art / "link.pth")
    c["pth: symlink leaving the folder"] = art / "link.pth"
    os.symlink(outside / "nothing.pth", art / "dangling.pth")
    c["pth: dangling symlink"] = art / "dangling.pth"
    (art / "folder.pth").mkdir()
    c["pth: folder named like a model"] = art / "folder.pth"
    os.mkfifo(art / "fifo.pth")
    c["pth: named pipe"] = art / "fifo.pth"

    shutil.copy(onnx_path(), outside / "good.onnx")
    onnx_bytes = onnx_path().read_bytes()
    _external(art / "ext_up.onnx", "../outside/w.data", outside)
    c["onnx: external data outside its folder (..)"] = art / "ext_up.onnx"
    _external(art / "ext_abs.onnx", str(outside / "w.data"), outside)
    c["onnx: external data at an absolute path"] = art / "ext_abs.onnx"
    os.symlink(outside / "w.data", art / "w.data")
    _external(art / "ext_link.onnx", "w.data", outside)
    c["onnx: external data through a symlink leaving the folder"] = art / "ext_link.onnx"
    shutil.copy(outside / "w.data", art / "inside.data")
    _external(art / "ext_short.onnx", "inside.data", outside, length_extra=10 ** 6)
    c["onnx: external data past the end of its file"] = art / "ext_short.onnx"
    _external(art / "ext_missing.onnx", "absent.data", outside)
    c["onnx: external data file missing"] = art / "ext_missing.onnx"
    _onnx_variant(art / "huge_dim.onnx", _input_dim(1, 10 ** 9))
    c["onnx: absurd input height (10^9)"] = art / "huge_dim.onnx"
    _onnx_variant(art / "zero_dim.onnx", _input_dim(2, 0))
    c["onnx: zero input width"] = art / "zero_dim.onnx"
    _onnx_variant(art / "bad_channels.onnx", _input_dim(3, 7))
    c["onnx: 7 input channels"] = art / "bad_channels.onnx"
    _onnx_variant(art / "meta_text.onnx", _set_meta("{not json"))
    c["onnx: metadata not JSON"] = art / "meta_text.onnx"
    _onnx_variant(art / "meta_list.onnx", _set_meta("[1, 2, 3]"))
    c["onnx: metadata a JSON list"] = art / "meta_list.onnx"
    _onnx_variant(art / "meta_huge_size.onnx", _meta_field(input_size=[10 ** 7, 10 ** 7]))
    c["onnx: metadata input_size 10^7 x 10^7"] = art / "meta_huge_size.onnx"
    _onnx_variant(art / "meta_str_size.onnx", _meta_field(input_size="abc"))
    c["onnx: metadata input_size a string"] = art / "meta_str_size.onnx"
    _onnx_variant(art / "meta_nan.onnx", _meta_field(mean=[float("nan")] * 3))
    c["onnx: metadata mean NaN"] = art / "meta_nan.onnx"
    _onnx_variant(art / "meta_std0.onnx", _meta_field(std=[0, 0, 0]))
    c["onnx: metadata std 0"] = art / "meta_std0.onnx"
    _onnx_variant(art / "meta_dim.onnx", _meta_field(feature_dim="wide"))
    c["onnx: metadata feature_dim a string"] = art / "meta_dim.onnx"
    _onnx_variant(art / "meta_big.onnx", _meta_field(extra={"pad": "x" * (2 << 20)}))
    c["onnx: metadata of 2 MiB"] = art / "meta_big.onnx"
    _onnx_variant(art / "meta_deep.onnx", _set_meta("[" * 100000 + "]" * 100000))
    c["onnx: metadata nested 10^5 deep"] = art / "meta_deep.onnx"
    _onnx_variant(art / "custom_op.onnx", _custom_op)
    c["onnx: node of an unknown op domain (a custom-op library)"] = art / "custom_op.onnx"
    (art / "half.onnx").write_bytes(onnx_bytes[: len(onnx_bytes) // 2])
    c["onnx: truncated"] = art / "half.onnx"
    os.symlink(outside / "good.onnx", art / "link.onnx")
    c["onnx: symlink leaving the folder"] = art / "link.onnx"
    (art / "folder.onnx").mkdir()
    c["onnx: folder named like a model"] = art / "folder.onnx"

    xml, bin_ = openvino_path().read_bytes(), openvino_path().with_suffix(".bin").read_bytes()
    assert b'shape="?,64,32,3"' in xml  # the Parameter's shape, which OpenVINO reads (not the port's dims)
    c["ir: .bin truncated"] = _ir(art, "ir_trunc", xml, bin_[: len(bin_) // 2])
    c["ir: .bin of another model"] = _ir(art, "ir_other", xml, bin_ + bin_[:4096])
    assert b"bin_sha256" in xml  # osnet-export records the .bin's digest
    c["ir: .bin of another model, same size"] = _ir(art, "ir_same_size", xml, bin_[::-1])
    _ir(outside, "ir_out", xml, bin_)
    os.symlink(outside / "ir_out.bin", art / "ir_binlink.bin")
    c["ir: .bin a symlink leaving the folder"] = _ir(art, "ir_binlink", xml, None)
    os.symlink(outside / "ir_out.xml", art / "ir_link.xml")
    shutil.copy(outside / "ir_out.bin", art / "ir_link.bin")
    c["ir: .xml a symlink leaving the folder"] = art / "ir_link.xml"
    c["ir: metadata not JSON"] = _ir(art, "ir_meta_text", _ir_meta(xml, "{not json"), bin_)
    c["ir: metadata of 2 MiB"] = _ir(art, "ir_meta_big", _ir_meta(xml, json.dumps({"pad": "x" * (2 << 20)})), bin_)
    c["ir: metadata input_size negative"] = _ir(art, "ir_meta_neg", _ir_meta(
        xml, json.dumps({"arch": "osnet_x0_25", "width": 0.25, "input_size": [-64, 32]})), bin_)
    c["ir: input height 10^9"] = _ir(art, "ir_dim", xml.replace(b'shape="?,64,32,3"', b'shape="?,1000000000,32,3"', 1), bin_)
    c["ir: .xml truncated"] = _ir(art, "ir_half", xml[: len(xml) // 2], bin_)
    (art / "folder.xml").mkdir()
    c["ir: folder named like a model"] = art / "folder.xml"
    return c


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


def _huge_tensor_zip() -> bytes:
    """A torch zip whose data.pkl declares a 2^31-element tensor over a 16-byte record."""
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    src, out = zipfile.ZipFile(io.BytesIO(buf.getvalue())), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            payload = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                payload = payload.replace(b"K\x04t", b"J\xff\xff\xff\x7ft").replace(
                    b"K\x00K\x04\x85", b"K\x00J\xff\xff\xff\x7f\x85")
                assert b"J\xff\xff\xff\x7f" in payload
            z.writestr(info, payload)
    return out.getvalue()


def _recompress(data: bytes) -> bytes:
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename))
    return out.getvalue()


def _lying_member(data: bytes) -> bytes:
    """The central directory claims the last member holds 2^32-2 bytes (a 'huge tensor' in the zip's header)."""
    buf = bytearray(data)
    z = zipfile.ZipFile(io.BytesIO(data))
    last = z.infolist()[-1].filename.encode()
    at = buf.rfind(b"PK\x01\x02")
    while at >= 0 and buf[at + 46:at + 46 + len(last)] != last:
        at = buf.rfind(b"PK\x01\x02", 0, at)
    struct.pack_into("<I", buf, at + 24, 0xFFFFFFFE)  # uncompressed size
    return bytes(buf)


def _custom_op(proto):
    import onnx

    out = proto.graph.output[0].name
    node = onnx.helper.make_node("Backdoor", [out + "_raw"], [out], domain="com.example.evil")
    for n in proto.graph.node:
        n.output[:] = [o + "_raw" if o == out else o for o in n.output]
    proto.graph.node.append(node)
    proto.opset_import.append(onnx.helper.make_opsetid("com.example.evil", 1))


# --------------------------------------------------------------------------- watching for reads outside


class _Opens:
    """inotify on a folder: which of its files were opened (by this process's Python, ORT or OpenVINO alike)."""

    IN_ACCESS, IN_OPEN = 0x1, 0x20

    def __init__(self, folder: Path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        if self.fd < 0 or self.libc.inotify_add_watch(self.fd, str(folder).encode(),
                                                      self.IN_OPEN | self.IN_ACCESS) < 0:
            pytest.skip("inotify unavailable")

    def names(self) -> set:
        names = set()
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            i = 0
            while i < len(buf):
                _, _, _, n = struct.unpack_from("iIII", buf, i)
                names.add(buf[i + 16:i + 16 + n].rstrip(b"\0").decode())
                i += 16 + n

    def close(self):
        os.close(self.fd)


# --------------------------------------------------------------------------- entry points


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    cases = build_cases(root)
    from osnet_edge.training.synthetic_dataset import make_market_dataset

    data = root / "market"
    make_market_dataset(data, num_ids=4, images_per_id=4, cams=2, size=INPUT, seed=2)
    watch = _Opens(root / "outside")
    watch.names()  # the events of building them
    yield root, cases, data, watch
    watch.close()


def _run_cli(main, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
    return rc, err.getvalue()


def _embedder(path, root, data):
    from osnet_edge import Embedder

    try:
        Embedder(path).embed(np.zeros((2,) + INPUT + (3,), np.uint8))
    except OsnetEdgeError as exc:
        return 1, f"Embedder: error: {exc}"
    return 0, ""


def _export(path, root, data):
    from osnet_edge.export.cli import main

    return _run_cli(main, ["--weights", str(path), "--format", "onnx", "-o", str(root / "exported")])


def _train(path, root, data):
    from osnet_edge.training.cli import train_main

    return _run_cli(train_main, ["--data", f"market1501:{data}", "--arch", "osnet_x0_25", "--weights", str(path),
                                 "--epochs", "1", "--batch-size", "8", "--workers", "0", "--input-size",
                                 str(INPUT[0]), str(INPUT[1]), "--output", str(root / "trained")])


def _eval(path, root, data):
    from osnet_edge.training.cli import eval_main

    return _run_cli(eval_main, ["--data", f"market1501:{data}", "--weights", str(path), "--no-progress"])


def _bench(path, root, data):
    from osnet_edge.benchmarks.cli import main

    return _run_cli(main, [str(path), "--no-probe", "--no-baseline", "--iters", "1", "--batch", "1"])


ENTRY_POINTS = {"Embedder": _embedder, "osnet-export --weights": _export, "osnet-train --weights": _train,
                "osnet-eval": _eval, "osnet-bench": _bench}
# the CLIs that take a checkpoint take only checkpoints
PTH_ONLY = {"osnet-export --weights", "osnet-train --weights"}


def test_every_hostile_artifact_is_refused_in_one_line_everywhere(hostile, capfd):
    root, cases, data, watch = hostile
    rows, failures = [], []
    for case, path in cases.items():
        for entry, call in ENTRY_POINTS.items():
            if entry in PTH_ONLY and path.suffix != ".pth":
                continue
            rc, err = call(path, root, data)
            opened = watch.names()
            lines = [ln for ln in err.splitlines() if "error" in ln]
            ok = (rc not in (0, None) and len(lines) == 1 and path.name in lines[0] and "Traceback" not in err
                  and not opened and not (root / MARKER).exists())
            rows.append((case, entry, lines[0] if lines else err.strip()[-200:]))
            if not ok:
                failures.append(f"{case} | {entry} | rc={rc} | opened outside: {sorted(opened)} | {err.strip()[-400:]}")
    assert len(cases) >= 30 and len(rows) >= 100
    assert not failures, "\n".join(failures)
    assert not any(root.glob("exported/*")) and not (root / MARKER).exists()
    if os.environ.get("OSNET_EDGE_HOSTILE_TABLE"):  # docs/reliability.md's table is printed from this
        Path(os.environ["OSNET_EDGE_HOSTILE_TABLE"]).write_text(json.dumps(rows, indent=1))


def test_symbolic_spatial_dims_are_served_at_the_metadata_size(tmp_path):
    """Named (symbolic) height/width are a legitimate dynamic graph: the metadata's size is what is fed."""
    from osnet_edge import Embedder

    def symbolic(proto):
        for i, name in ((1, "H"), (2, "W")):
            proto.graph.input[0].type.tensor_type.shape.dim[i].dim_param = name

    _onnx_variant(tmp_path / "sym.onnx", symbolic)
    crops = np.random.default_rng(0).integers(0, 256, (3,) + INPUT + (3,), np.uint8)
    np.testing.assert_allclose(Embedder(tmp_path / "sym.onnx").embed(crops), Embedder(onnx_path()).embed(crops),
                               atol=1e-6)


def test_symlink_within_the_folder_is_followed(tmp_path):
    from osnet_edge import Embedder

    shutil.copy(onnx_path(), tmp_path / "v3.onnx")
    os.symlink("v3.onnx", tmp_path / "latest.onnx")
    assert Embedder(tmp_path / "latest.onnx").embed(np.zeros(INPUT + (3,), np.uint8)).shape == (1, 512)
