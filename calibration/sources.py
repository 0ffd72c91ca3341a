"""Calibration sets: person crops for INT8 range estimation, from a folder, a dataset split or a video + boxes.

Every source returns a CropSet: uint8 BGR crops (any size) plus identities/cameras when the source
knows them. Sampling is even over the whole source (one crop per equal stratum, its position in the
stratum drawn from the seed), so 300 crops from a 30,000-frame video come from all of it, not its first
minute, and the same seed gives the same crops. Batches are made by osnet_edge.preprocess.to_batch with
the artifact's own metadata: calibration sees exactly what the deployed model will see.

    from osnet_edge.calibration import load_source
    calib = load_source("crops/")                        # folder, recursive, .jpg/.jpeg/.png
    calib = load_source("market1501:/data/market1501")   # Market-1501 layout, train split
    calib = load_source("mot:/data/MOT17-04/img1,/data/MOT17-04/det/det.txt")   # frames or video + boxes
    for batch in calib.batches(meta, batch_size=32): ...
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osnet_edge.calibration.errors import CalibrationError
from osnet_edge.errors import InputError
from osnet_edge.calibration.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, frame_reader, read_mot_boxes
from osnet_edge.preprocess import crop_boxes, to_batch
from osnet_edge.training.datasets import MARKET_NAME

DEFAULT_SIZE = 300      # NNCF's default subset_size; crops sampled from a source, and the held-out set's size
MIN_CROPS = 32          # below this the activation ranges are noise: refused
RECOMMENDED_MIN = 100   # below this a warning: the ranges of rare activations are poorly estimated

MARKET_SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test",
                 "test": "bounding_box_test"}


@dataclass
class CropSet:
    """Crops (HxWx3 uint8 BGR, any size) and, when known, their identities and cameras."""

    crops: list
    source: str
    names: list = field(default_factory=list)     # file / frame+box each crop came from (for error messages)
    pids: np.ndarray | None = None
    camids: np.ndarray | None = None
    generated: bool = False                        # True for synthetic crops: never evidence of real accuracy

    def __len__(self):
        return len(self.crops)

    @property
    def has_identities(self) -> bool:
        return self.pids is not None

    def subset(self, idx) -> "CropSet":
        idx = [int(i) for i in idx]
        return CropSet([self.crops[i] for i in idx], self.source, [self.names[i] for i in idx] if self.names else [],
                       None if self.pids is None else self.pids[idx],
                       None if self.camids is None else self.camids[idx], self.generated)

    def check_size(self, batch_size: int = 1, minimum: int = MIN_CROPS, what: str = "calibration") -> "CropSet":
        """Refuse a set under `minimum` or under one batch; warn under RECOMMENDED_MIN."""
        n = len(self)
        need = max(int(minimum), int(batch_size))
        if n < need:
            why = f"one batch ({batch_size})" if batch_size > minimum else f"the minimum of {minimum}"
            raise CalibrationError(
                f"{what} set {self.source} has {n} crops, fewer than {why}; INT8 ranges estimated from so few "
                f"crops do not hold on real video. Give at least {max(need, DEFAULT_SIZE)} crops "
                f"(a folder of person crops, market1501:ROOT, or mot:VIDEO,BOXES.txt)")
        if n < RECOMMENDED_MIN:
            warnings.warn(f"{what} set {self.source} has only {n} crops (recommended: {DEFAULT_SIZE}, at least "
                          f"{RECOMMENDED_MIN}); INT8 accuracy may suffer", stacklevel=2)
        return self

    def batches(self, meta=None, batch_size: int = 32, input_size=(256, 128)):
        """Yield preprocessed batches (the one preprocessing, with the artifact's metadata when given)."""
        if batch_size < 1:
            raise CalibrationError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.preprocess(self.crops[start:start + batch_size], meta, input_size)

    @staticmethod
    def preprocess(crops, meta=None, input_size=(256, 128)) -> np.ndarray:
        if meta is None:
            return to_batch(crops, input_size)
        return to_batch(crops, meta.input_size, meta.mean, meta.std, meta.color_order, meta.input_format)


def even_sample(n_items: int, n: int, seed: int = 0) -> np.ndarray:
    """n sorted indices spread evenly over range(n_items): one per equal stratum, seeded position inside it."""
    if n_items <= n:
        return np.arange(n_items)
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, n_items, n + 1)
    lo, hi = np.floor(edges[:-1]).astype(int), np.floor(edges[1:]).astype(int)
    return lo + (rng.random(n) * np.maximum(hi - lo, 1)).astype(int)


def _progress(iterable, total, desc, progress):
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="crop", file=sys.stderr, leave=False)


def _read_images(paths, progress, desc) -> list:
    from osnet_edge.deps import require

    cv2 = require("cv2", "reading calibration images")
    crops = []
    for p in _progress(paths, len(paths), desc, progress):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            raise CalibrationError(f"calibration image {p} could not be read (corrupt or not an image)")
        crops.append(img)
    return crops


def from_folder(path, n: int = DEFAULT_SIZE, seed: int = 0, progress: bool = True) -> CropSet:
    """Person crops under `path` (recursive, .jpg/.jpeg/.png), n of them evenly sampled in sorted path order."""
    root = Path(path)
    if not root.is_dir():
        raise CalibrationError(f"calibration folder {root} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CalibrationError(f"calibration folder {root} holds no .jpg/.jpeg/.png images (searched recursively)")
    files = [files[i] for i in even_sample(len(files), n, seed)]
    return CropSet(_read_images(files, progress, f"calibration {root.name}"), str(root),
                   [str(f.relative_to(root)) for f in files])


def from_market(root, split: str = "train", n: int | None = DEFAULT_SIZE, seed: int = 0,
                progress: bool = True) -> CropSet:
    """A Market-1501-style split (train | query | gallery), with identities and cameras.

    Junk images (pid -1) are skipped; distractors (pid 0) are kept only in the gallery, as the protocol does.
    n=None keeps every image (for evaluation); otherwise n are sampled evenly over the identity-sorted files,
    so the sample covers the identities evenly.
    """
    root = Path(root)
    if split not in MARKET_SPLITS:
        raise CalibrationError(f"unknown Market-1501 split {split!r}; choose one of {', '.join(MARKET_SPLITS)}")
    folder = root / MARKET_SPLITS[split]
    if not folder.is_dir():
        raise CalibrationError(f"{root} is not a Market-1501-style dataset: {folder} is missing "
                               f"(expected bounding_box_train/, query/, bounding_box_test/)")
    files, pids, cams = [], [], []
    for p in sorted(folder.iterdir()):
        m = MARKET_NAME.match(p.name)
        if p.suffix.lower() not in IMAGE_SUFFIXES or not m:
            continue
        pid = int(m.group(1))
        if pid == -1 or (pid == 0 and split != "gallery" and split != "test"):
            continue
        files.append(p)
        pids.append(pid)
        cams.append(int(m.group(2)) - 1)
    if not files:
        raise CalibrationError(f"{folder} holds no Market-1501-named images (like 0002_c1s1_000451_03.jpg)")
    idx = np.arange(len(files)) if n is None else even_sample(len(files), n, seed)
    files = [files[i] for i in idx]
    return CropSet(_read_images(files, progress, f"{root.name}/{split}"), f"market1501:{root}:{split}",
                   [f.name for f in files], np.asarray(pids)[idx], np.asarray(cams)[idx])


def from_mot(video, boxes, n: int = DEFAULT_SIZE, seed: int = 0, progress: bool = True) -> CropSet:
    """Crops cut from a video (or a MOT img1/ frame folder) at the boxes of a MOT det/gt text file.

    Boxes are sampled evenly over the whole sequence; gt ids (> 0) become identities (one camera).
    """
    table = read_mot_boxes(boxes)
    table = table[np.lexsort((table[:, 1], table[:, 0]))]
    table = table[even_sample(len(table), n, seed)]
    read, close = frame_reader(video)
    crops, names = [], []
    try:
        for row in _progress(table, len(table), f"calibration {Path(video).name}", progress):
            frame = read(row[0])
            try:
                crops.append(np.ascontiguousarray(crop_boxes(frame, row[None, 2:6])[0]))
            except InputError as exc:
                raise CalibrationError(f"{boxes}: frame {int(row[0])}, id {int(row[1])}: {exc}") from None
            names.append(f"frame {int(row[0])} id {int(row[1])}")
    finally:
        close()
    ids = table[:, 1].astype(int)
    pids = ids if (ids > 0).all() and len(np.unique(ids)) > 1 else None
    return CropSet(crops, f"mot:{video},{boxes}", names, pids,
                   None if pids is None else np.zeros(len(pids), int))


def generated(n: int = DEFAULT_SIZE, seed: int = 0) -> CropSet:
    """Generated person-like crops (osnet_edge.synthetic): for demos and smoke tests only, flagged generated."""
    from osnet_edge.synthetic import synthetic_crops

    return CropSet(list(synthetic_crops(n, seed=seed)), f"generated:{n}", [f"generated {i}" for i in range(n)],
                   generated=True)


def _is_mot_sequence(p: Path) -> bool:
    return (p / "img1").is_dir() and ((p / "det" / "det.txt").is_file() or (p / "gt" / "gt.txt").is_file())


def load_source(spec, n: int = DEFAULT_SIZE, seed: int = 0, progress: bool = True) -> CropSet:
    """A calibration set from a --calib SOURCE string (or a CropSet / list of crops, passed through).

    SOURCE forms:
      DIR                          folder of crops (recursive); a Market-1501 root uses its train split,
                                   a MOT sequence folder (img1/ + gt/gt.txt or det/det.txt) its boxes
      market1501:ROOT[:SPLIT]      Market-1501-style split (train | query | gallery), with identities
      mot:VIDEO_OR_FRAMES,BOXES    a video file or frame folder + a MOT det/gt text file
      generated[:N]                generated crops (demo only; the report says they are generated)
    """
    if isinstance(spec, CropSet):
        return spec
    if isinstance(spec, (list, tuple)) or (isinstance(spec, np.ndarray) and spec.ndim == 4):
        return CropSet(list(spec), "in-memory crops", [f"crop {i}" for i in range(len(spec))])
    text = str(spec)
    if text.startswith("generated"):
        count = text.partition(":")[2]
        return generated(int(count) if count else n, seed)
    if text.startswith("market1501:") or text.startswith("market:"):
        rest = text.partition(":")[2]
        root, _, split = rest.rpartition(":") if rest.rsplit(":", 1)[-1] in MARKET_SPLITS else (rest, "", "")
        return from_market(root, split or "train", n, seed, progress)
    if text.startswith("mot:"):
        video, sep, boxes = text[4:].rpartition(",")
        if not sep:
            raise CalibrationError(f"--calib {text}: write mot:VIDEO_OR_FRAME_FOLDER,BOXES.txt")
        return from_mot(video, boxes, n, seed, progress)
    p = Path(text)
    if p.is_dir():
        if (p / "bounding_box_train").is_dir() and (p / "query").is_dir():
            return from_market(p, "train", n, seed, progress)
        if _is_mot_sequence(p):
            gt = p / "gt" / "gt.txt"
            return from_mot(p / "img1", gt if gt.is_file() else p / "det" / "det.txt", n, seed, progress)
        return from_folder(p, n, seed, progress)
    if p.suffix.lower() in VIDEO_SUFFIXES:
        raise CalibrationError(f"--calib {text}: a video needs its boxes: mot:{text},BOXES.txt")
    raise CalibrationError(f"calibration source {text!r} not found; pass a folder of crops, market1501:ROOT, "
                           f"mot:VIDEO,BOXES.txt or (demo only) generated:N")


@dataclass
class Split:
    """Calibration crops and, disjoint from them, held-out crops for the fidelity report."""

    calib: CropSet
    held_out: CropSet                # with identities: the retrieval gallery
    query: CropSet | None = None     # retrieval queries (a dataset split with identities)


def calibration_split(spec, n_calib: int = DEFAULT_SIZE, n_holdout: int = DEFAULT_SIZE, seed: int = 0,
                      progress: bool = True, holdout=None) -> Split:
    """Calibration set and held-out set from one source, never sharing a crop.

    Market-1501 root: calibration from the train split, held-out = gallery (bounding_box_test) + query
    images of the test identities (no identity overlap with calibration). A generated source: another seed.
    Anything else: n_calib + n_holdout crops evenly sampled, then interleaved in proportion (n_calib :
    n_holdout), so both cover the whole source.
    holdout: a separate source for the held-out crops (a Market-1501 root gives gallery + queries); the whole
    of `spec` (n_calib crops) then calibrates.
    """
    if holdout is not None:
        calib = load_source(spec, n_calib, seed, progress)
        other = calibration_split(holdout, n_holdout, n_holdout, seed + 1, progress)
        if other.query is not None:
            return Split(calib, other.held_out, other.query)
        return Split(calib, other.calib if str(holdout).startswith("generated") else
                     load_source(holdout, n_holdout, seed + 1, progress))
    text = str(spec) if not isinstance(spec, (CropSet, list, tuple, np.ndarray)) else ""
    market_root = None
    if text.startswith("market1501:") or text.startswith("market:"):
        rest = text.partition(":")[2]
        market_root = rest.rpartition(":")[0] if rest.rsplit(":", 1)[-1] in MARKET_SPLITS else rest
    elif text and Path(text).is_dir() and (Path(text) / "bounding_box_train").is_dir() \
            and (Path(text) / "query").is_dir():
        market_root = text
    if market_root is not None:
        calib = from_market(market_root, "train", n_calib, seed, progress)
        gallery = from_market(market_root, "gallery", n_holdout, seed, progress)
        query = from_market(market_root, "query", None, seed, progress)
        keep = np.isin(query.pids, gallery.pids)  # queries whose identity the sampled gallery holds
        query = query.subset(np.nonzero(keep)[0])
        query = query.subset(even_sample(len(query), max(1, n_holdout // 3), seed))
        return Split(calib, gallery, query)
    if text.startswith("generated"):
        count = text.partition(":")[2]
        calib = generated(int(count) if count else n_calib, seed)
        return Split(calib, generated(n_holdout, seed + 1_000_003))
    both = load_source(spec, n_calib + n_holdout, seed, progress)
    n = len(both)
    k = round(n * n_holdout / (n_calib + n_holdout))
    i = np.arange(n)
    held = (i + 1) * k // n > i * k // n  # k positions spread evenly (every other one when k = n / 2)
    return Split(both.subset(np.nonzero(~held)[0]), both.subset(np.nonzero(held)[0]))
