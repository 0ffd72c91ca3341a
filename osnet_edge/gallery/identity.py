"""The model a gallery's embeddings came from. Embeddings of two models, two input sizes or two precisions
are not comparable, so a gallery stores the identity of the first artifact that wrote to it and refuses any
other. Torch-free."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import GalleryError


@dataclass(frozen=True)
class ModelIdentity:
    arch: str
    width: float
    input_size: tuple  # (H, W)
    feature_dim: int
    precision: str
    weights: str  # sha256 of the weights the artifact was exported from, else of the artifact file itself

    @classmethod
    def from_meta(cls, meta, artifact=None) -> "ModelIdentity":
        """From an artifact's ModelMeta (Embedder.meta). Artifacts that do not record their weights' sha256
        (random init, older exports) are identified by the artifact file's own sha256: only that file then
        matches the gallery."""
        prov = getattr(meta, "provenance", None) or {}
        weights = prov.get("sha256")
        if not weights:
            if artifact is None:
                raise GalleryError(f"model {meta.arch} records no weights sha256 and no artifact file was given to "
                                   f"identify it by")
            weights = "file:" + _artifact_sha256(Path(artifact))
        return cls(meta.arch, float(meta.width), tuple(int(v) for v in meta.input_size), int(meta.feature_dim),
                   meta.precision, str(weights))

    @classmethod
    def of_embedder(cls, embedder) -> "ModelIdentity":
        return cls.from_meta(embedder.meta, getattr(getattr(embedder, "backend", None), "path", None))

    def to_json(self) -> str:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> "ModelIdentity":
        try:
            d = json.loads(text)
            return cls(d["arch"], float(d["width"]), tuple(d["input_size"]), int(d["feature_dim"]), d["precision"],
                       d["weights"])
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryError(f"{source}: the stored model identity is unreadable ({exc})") from None

    def describe(self) -> str:
        h, w = self.input_size
        return f"{self.arch} {h}x{w} {self.precision} weights {self.weights[:17]}"

    def check(self, other: "ModelIdentity", db: str, artifact: str) -> None:
        """Refuse `other` (the artifact in hand) unless it is this gallery's model."""
        if other != self:
            raise GalleryError(f"gallery {db} holds embeddings of {self.describe()}; {artifact} is "
                               f"{other.describe()}: embeddings of different models are not comparable "
                               f"(use a gallery of its own for this model)")


def _artifact_sha256(path: Path) -> str:
    """An OpenVINO IR's weights live in its .bin: hash both files, so one IR is one identity."""
    import hashlib

    from osnet_edge.artifact_files import file_sha256

    parts = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" and path.with_suffix(".bin").is_file()
                      else [])
    if len(parts) == 1:
        return file_sha256(path)
    return hashlib.sha256("".join(file_sha256(p) for p in parts).encode()).hexdigest()
