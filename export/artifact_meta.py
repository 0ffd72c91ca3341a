"""Rewrite the osnet-edge metadata of an artifact already written, without touching its graph or weights.

export_model learns the parity and the INT8 fidelity only after the writer has produced the (temporary)
artifact; they are recorded here in the artifact's own metadata before it gets its final name. Each format
keeps the metadata where its reader looks: ONNX metadata_props, the OpenVINO IR's rt_info (an attribute in
the .xml: edited as text, so the .bin is never re-serialised), a TensorRT engine's JSON sidecar.
"""
from __future__ import annotations

import json
from pathlib import Path

from osnet_edge.artifact_files import file_sha256
from osnet_edge.errors import ArtifactError
from osnet_edge.metadata import META_KEY, ModelMeta


def _with_provenance(text: str, meta: ModelMeta, where) -> str:
    """The artifact's own metadata JSON with meta.provenance set; everything else stays as the writer put it."""
    d = json.loads(text)
    if not isinstance(d, dict):
        raise ArtifactError(f"{where}: osnet-edge metadata is not a JSON object")
    d["provenance"] = meta.provenance
    return json.dumps(d, sort_keys=True)


def _onnx(path: Path, meta: ModelMeta) -> None:
    import onnx

    proto = onnx.load(str(path))
    entry = next((p for p in proto.metadata_props if p.key == META_KEY), None)
    if entry is None:
        raise ArtifactError(f"{path} has no {META_KEY} metadata_props entry to update")
    entry.value = _with_provenance(entry.value, meta, path)
    onnx.save(proto, str(path))


def _openvino(path: Path, meta: ModelMeta) -> None:
    import xml.etree.ElementTree as ET

    tree = ET.parse(path)
    node = tree.getroot().find(f"rt_info/{META_KEY}")
    if node is None:
        raise ArtifactError(f"{path} has no rt_info/{META_KEY} to update")
    d = json.loads(_with_provenance(node.get("value", "{}"), meta, path))
    # the .xml names its .bin by stem only: its digest lets the runtime tell a .bin of another model (same size)
    d.setdefault("extra", {})["bin_sha256"] = file_sha256(path.with_suffix(".bin"))
    node.set("value", json.dumps(d, sort_keys=True))
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _sidecar(path: Path, meta: ModelMeta) -> None:
    from osnet_edge.atomic import write_text

    # the sidecar holds backend facts (ModelMeta.extra) the caller's meta may lack: keep the file's own
    d = json.loads(_with_provenance(path.read_text(), meta, path))
    write_text(path, json.dumps(d, indent=2, sort_keys=True) + "\n")


def rewrite_provenance(files: list, meta: ModelMeta) -> None:
    """Store meta.provenance in the artifact `files` (the loadable one first, as writers return them)."""
    main = Path(files[0])
    suffix = main.suffix.lower()
    if suffix == ".onnx":
        _onnx(main, meta)
    elif suffix == ".xml":
        _openvino(main, meta)
    elif suffix in (".engine", ".plan"):
        sidecar = next((Path(f) for f in files if Path(f).name == main.name + ".json"), None)
        if sidecar is None:
            raise ArtifactError(f"{main.name}: the writer returned no JSON sidecar to record provenance in")
        _sidecar(sidecar, meta)
    else:
        raise ArtifactError(f"{main.name}: no way to record metadata in a {suffix} artifact")
