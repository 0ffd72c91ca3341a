"""Checks a model file handed over by someone else passes before any engine opens it: the file, and every file it
names, is a regular file inside the artifact's folder, of a plausible size, and nothing in it is executed.

Engines check some of this themselves, but in messages that blame the wrong thing ("truncated or not an ONNX
model" for data stored outside the folder) or only after reading. Torch-free, and no onnx package: the ONNX
walk reads the protobuf wire format directly (a camera box has onnxruntime alone).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .errors import ArtifactError

# the osnet-edge metadata document is ~1 KiB; anything near this is not ours
MAX_METADATA_BYTES = 1 << 20


def model_file(path, what: str = "model file", error=ArtifactError) -> Path:
    """`path` as a regular file that stays inside its folder (a symlink may point within the folder only)."""
    p = Path(path)
    if p.is_dir():
        raise error(f"{p} is a folder, not a {what} (give the file inside it)")
    if not p.exists():
        raise error(f"{what} not found: {p}" + (" (a symlink to nothing)" if p.is_symlink() else ""))
    inside_folder(p, p.parent, what, error)
    if not p.is_file():
        raise error(f"{p} is not a regular file (a device, pipe or socket?); a {what} is a plain file")
    return p


def inside_folder(target: Path, folder: Path, what: str, error=ArtifactError) -> Path:
    """The real path of `target`, refused when it (through .., an absolute path or a symlink) leaves `folder`."""
    real, root = os.path.realpath(target), os.path.realpath(folder)
    if os.path.commonpath([real, root]) != root:
        raise error(f"{what} {target} leads outside its folder {folder} (to {real}); refused: an artifact "
                    f"reads nothing outside its own folder")
    return Path(real)


def companion(path: Path, name: str, what: str) -> Path:
    """A file an artifact names (ONNX external data, an IR's .bin): relative, inside the folder, a regular file."""
    if not name:
        raise ArtifactError(f"{path}: {what} names no file")
    if os.path.isabs(name) or Path(name).drive or "\x00" in name:
        raise ArtifactError(f"{path}: {what} {name!r} is an absolute path; refused: an artifact reads nothing "
                            f"outside its own folder")
    target = path.parent / name
    inside_folder(target, path.parent, f"{path.name}: {what}")
    if not target.is_file():
        raise ArtifactError(f"{path}: {what} {name} is missing or not a regular file")
    return target


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_metadata_text(text, source) -> str:
    if not isinstance(text, str):
        raise ArtifactError(f"{source}: osnet-edge metadata is not text ({type(text).__name__})")
    if len(text) > MAX_METADATA_BYTES:
        raise ArtifactError(f"{source}: osnet-edge metadata is {len(text)} bytes; refused (ours is ~1 KiB, the "
                            f"limit is {MAX_METADATA_BYTES})")
    return text


# ---------------------------------------------------------------------------------------------------- ONNX

def _fields(buf: bytes, start: int = 0, end: int | None = None):
    """(field number, wire type, value) of one protobuf message; value: int, or (start, end) of a bytes field."""
    i, end = start, len(buf) if end is None else end
    while i < end:
        key, i = _varint(buf, i, end)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i, end)
        elif wt == 1:
            val, i = None, i + 8
        elif wt == 5:
            val, i = None, i + 4
        elif wt == 2:
            n, i = _varint(buf, i, end)
            val, i = (i, i + n), i + n
        else:
            raise ValueError(f"wire type {wt}")
        if i > end:
            raise ValueError("field runs past its message")
        yield num, wt, val


def _varint(buf, i, end):
    shift = result = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError("bad varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


# message -> {field: message type of that (repeated) field}; just the paths that can hold a TensorProto
_ONNX_PATHS = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _TENSOR_NAME = 13, 14, 8


def onnx_external_data(path: Path) -> list:
    """[(tensor name, {key: value})] of every tensor of an ONNX file stored outside it (external data)."""
    buf = path.read_bytes()
    found = []

    def walk(kind, start, end, depth):
        if depth > 64:
            raise ValueError("graphs nested too deep")
        if kind == "tensor":
            name, entry, external = "", {}, False
            for num, wt, val in _fields(buf, start, end):
                if num == _TENSOR_NAME and wt == 2:
                    name = buf[val[0]:val[1]].decode("utf-8", "replace")
                elif num == _TENSOR_EXTERNAL_DATA and wt == 2:
                    kv = {n: buf[v[0]:v[1]].decode("utf-8", "replace") for n, w, v in _fields(buf, *val) if w == 2}
                    entry[kv.get(1, "")] = kv.get(2, "")
                elif num == _TENSOR_DATA_LOCATION and wt == 0:
                    external = val == 1
            if entry or external:
                found.append((name, entry))
            return
        children = _ONNX_PATHS[kind]
        for num, wt, val in _fields(buf, start, end):
            if wt == 2 and num in children:
                walk(children[num], val[0], val[1], depth + 1)

    try:
        walk("model", 0, len(buf), 0)
    except (ValueError, IndexError) as exc:
        raise ArtifactError(f"{path} is truncated or not an ONNX model (its protobuf is malformed: {exc})") from None
    return found


def check_onnx(path: Path):
    """Every external-data tensor of an ONNX file: a relative file inside its folder, its bytes within the file."""
    for name, entry in onnx_external_data(path):
        target = companion(path, entry.get("location", ""), f"external data of tensor {name!r}")
        size = target.stat().st_size
        try:
            offset, length = int(entry.get("offset") or 0), int(entry.get("length") or 0)
        except ValueError:
            raise ArtifactError(f"{path}: external data of tensor {name!r} has a non-numeric offset/length") from None
        if offset < 0 or length < 0 or offset + length > size:
            raise ArtifactError(f"{path}: external data of tensor {name!r} asks for bytes {offset}..{offset + length} "
                                f"of {target.name}, which has {size}: truncated or another model's data")


# ---------------------------------------------------------------------------------------------------- OpenVINO

_CONST_DATA = re.compile(rb'<data\b[^>]*?\boffset="(\d+)"[^>]*?\bsize="(\d+)"')


def check_ir(xml: Path) -> Path:
    """The .bin beside an IR .xml: inside the folder, and exactly the size the .xml's constants end at. A .bin of
    another model of other layer sizes fails this even where every offset still fits (it would load garbage)."""
    bin_path = xml.with_suffix(".bin")
    if not (bin_path.exists() or bin_path.is_symlink()):
        raise ArtifactError(f"{xml}: its weights file {bin_path.name} is missing (an IR is .xml + .bin)")
    companion(xml, bin_path.name, "weights file")
    text = xml.read_bytes()
    if not text.rstrip().endswith(b"</net>"):
        raise ArtifactError(f"{xml} could not be read as OpenVINO IR: it is truncated, or not an IR (it does "
                            f"not end in </net>)")
    ends = [int(o) + int(s) for o, s in _CONST_DATA.findall(text)]
    size = bin_path.stat().st_size
    if ends and max(ends) > size:
        raise ArtifactError(f"{xml}: its weights file {bin_path.name} has {size} bytes but the IR's constants reach "
                            f"byte {max(ends)}: the .bin is truncated or belongs to another model")
    if ends and max(ends) < size:
        raise ArtifactError(f"{xml}: its weights file {bin_path.name} has {size} bytes but the IR's constants end at "
                            f"byte {max(ends)}: the .bin belongs to another model")
    return bin_path


def check_ir_digest(xml: Path, meta) -> None:
    """An IR written by osnet-export records its .bin's sha256: a same-size .bin of another model fails here."""
    want = (meta.extra or {}).get("bin_sha256") if meta is not None else None
    if want and file_sha256(xml.with_suffix(".bin")) != want:
        raise ArtifactError(f"{xml}: its weights file {xml.with_suffix('.bin').name} is not the one this IR was "
                            f"exported with (sha256 differs): it belongs to another model or was damaged")
