"""Re-ID datasets read from local folders: Market-1501, DukeMTMC-reID, MSMT17, CUHK03 (767/700), and a
generic one-folder-per-identity layout. Torch-free: a dataset is three lists of Samples.

    ds = load_dataset("market1501:/data/market1501")
    ds.train, ds.query, ds.gallery          # [Sample(path, pid, camid, dsetid), ...]
    print(format_stats([ds]))               # identities / images / cameras per split (paper Table 2)

Training identities are relabelled 0..N-1 (sorted), cameras are 0-based; query and gallery keep
the dataset's own ids, because evaluation only compares them. Nothing is downloaded: a missing
folder, an empty split or a file name that does not parse is an error naming the path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class Sample:
    path: str
    pid: int
    camid: int
    dsetid: int = 0


@dataclass
class ReidDataset:
    name: str
    root: str
    train: list = field(default_factory=list)
    query: list = field(default_factory=list)
    gallery: list = field(default_factory=list)
    cuhk03_metric: bool = False  # evaluate with CUHK03's single-gallery-shot protocol by default

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({s.camid for s in self.train})

    def stats(self) -> dict:
        out = {}
        for split in ("train", "query", "gallery"):
            items = getattr(self, split)
            out[split] = {"ids": len({s.pid for s in items}), "images": len(items),
                          "cameras": len({s.camid for s in items})}
        return out


class DatasetError(InputError):
    """A dataset folder that is missing, empty or holds files that do not parse."""


# --------------------------------------------------------------------------- helpers


def _dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: folder not found: {path}")
    return path


def _images(folder: Path) -> list:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return files


def _relabel(samples: list) -> list:
    """Training ids -> 0..N-1 in sorted order (deterministic, unlike a set's order)."""
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [replace(s, pid=mapping[s.pid]) for s in samples]


def _nonempty(samples: list, where, what: str) -> list:
    if not samples:
        raise DatasetError(f"{what}: no images found in {where}")
    return samples


def _find_root(root: Path, candidates: tuple, markers: tuple, name: str) -> Path:
    """The dataset's own folder: `root` itself, or a known sub-folder (e.g. Market-1501-v15.09.15)."""
    if not root.exists():
        raise DatasetError(f"{name}: dataset folder not found: {root}")
    for sub in ("",) + candidates:
        d = root / sub if sub else root
        if all((d / m).exists() for m in markers):
            return d
    raise DatasetError(f"{name}: {root} does not hold {', '.join(markers)} "
                       f"(looked in {root} and its sub-folders {', '.join(candidates) or '(none)'})")


# --------------------------------------------------------------------------- Market-1501 / Duke

# Market-1501 / DukeMTMC-reID / osnet-crops file names: {pid}_c{camera}[s{sequence}_{frame}]_..., e.g.
# 0002_c1s1_000451_03.jpg; -1_... is junk, 0000_... a distractor. Groups: identity, camera, frame (or None).
MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)(?:s\d+_(\d+))?")


def _market_split(folder: Path, name: str, relabel: bool, max_cam: int) -> list:
    out = []
    for p in _images(folder):
        m = MARKET_NAME.match(p.name)
        if not m:
            raise DatasetError(f"{name}: cannot parse identity and camera from {p} "
                               f"(expected names like 0002_c1s1_000451_03.jpg)")
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1:  # junk boxes: excluded from every protocol
            continue
        if not 0 <= pid < 2 ** 31 or not 1 <= cam <= max_cam:  # ids beyond int32 are not ids: a damaged name
            raise DatasetError(f"{name}: {p} has identity {pid} / camera {cam} outside the dataset's range "
                               f"(cameras 1..{max_cam})")
        out.append(Sample(str(p), pid, cam - 1))
    _nonempty(out, folder, name)
    return _relabel(out) if relabel else out


def _market_like(name: str, root, subdirs: tuple, max_cam: int, train: bool = True) -> ReidDataset:
    # evaluation reads query and gallery only: a test-only copy of the dataset is enough for it
    markers = ("bounding_box_train", "query", "bounding_box_test") if train else ("query", "bounding_box_test")
    d = _find_root(Path(root), subdirs, markers, name)
    train = _market_split(d / "bounding_box_train", name, True, max_cam) if train else []
    return ReidDataset(name, str(d), train, _market_split(d / "query", name, False, max_cam),
                       _market_split(d / "bounding_box_test", name, False, max_cam))


def market1501(root, train: bool = True) -> ReidDataset:
    """Market-1501: bounding_box_train / query / bounding_box_test; pid -1 (junk) dropped, 0 (distractors) kept.
    train=False reads query and gallery only (bounding_box_train may be absent)."""
    return _market_like("market1501", root, ("Market-1501-v15.09.15", "market1501", "Market-1501"), 99, train)


def dukemtmcreid(root, train: bool = True) -> ReidDataset:
    """DukeMTMC-reID: same layout as Market-1501 (names like 0001_c2_f0046182.jpg), 8 cameras."""
    return _market_like("dukemtmcreid", root, ("DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID"), 99, train)


# --------------------------------------------------------------------------- MSMT17

_MSMT_VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2"),
                  "MSMT17": ("train", "test")}


def _msmt_list(list_path: Path, img_dir: Path, name: str) -> list:
    if not list_path.is_file():
        raise DatasetError(f"{name}: list file not found: {list_path}")
    out = []
    for n, line in enumerate(list_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, pid = parts[0], int(parts[1])
            cam = int(Path(rel).name.split("_")[2])  # 0000_000_01_0303morning_0015_0.jpg -> camera 01
        except (IndexError, ValueError):
            raise DatasetError(f"{name}: {list_path}:{n}: cannot parse {line.strip()!r} "
                               f"(expected 'pid_dir/pid_xxx_CC_....jpg PID')") from None
        out.append(Sample(str(img_dir / rel), pid, cam - 1))
    return _nonempty(out, list_path, name)


def msmt17(root, with_val: bool = False, train: bool = True) -> ReidDataset:
    """MSMT17 (V1 or V2) from its list files; with_val adds list_val.txt to training (off: the usual protocol).
    train=False reads query and gallery only (the train folder and its lists may be absent)."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"msmt17: dataset folder not found: {root}")
    want_train = train
    for sub in ("", *_MSMT_VERSIONS):
        d = root / sub if sub else root
        for version, (tr, te) in _MSMT_VERSIONS.items():
            present = ((d / tr).is_dir() and (d / "list_train.txt").is_file() if want_train
                       else (d / te).is_dir() and (d / "list_query.txt").is_file())
            if present and (sub in ("", version)):
                train = _msmt_list(d / "list_train.txt", d / tr, "msmt17") if want_train else []
                if with_val and want_train:
                    train += _msmt_list(d / "list_val.txt", d / tr, "msmt17")
                return ReidDataset("msmt17", str(d), _relabel(train),
                                   _msmt_list(d / "list_query.txt", _dir(d / te, "msmt17"), "msmt17"),
                                   _msmt_list(d / "list_gallery.txt", d / te, "msmt17"))
    raise DatasetError(f"msmt17: {root} holds neither MSMT17_V1/{{train,test,list_*.txt}} nor "
                       f"MSMT17_V2/{{mask_train_v2,mask_test_v2,list_*.txt}}")


# --------------------------------------------------------------------------- CUHK03 (767/700)


def cuhk03(root, labeled: bool = False) -> ReidDataset:
    """CUHK03 with the 767/700 protocol (Zhong et al.), detected (the paper's) or labeled boxes.

    Needs cuhk03_new_protocol_config_{detected,labeled}.mat and the images it lists in
    images_{detected,labeled}/ (names like 1_001_1_01.png). If those folders are missing but
    cuhk03_release/cuhk-03.mat is there, the images are extracted first (needs h5py).
    Evaluated with the Market-1501 protocol, as the 767/700 papers (and torchreid) do.
    """
    name = "cuhk03_labeled" if labeled else "cuhk03"
    kind = "labeled" if labeled else "detected"
    d = _find_root(Path(root), ("cuhk03",), (f"cuhk03_new_protocol_config_{kind}.mat",), name)
    img_dir = d / f"images_{kind}"
    if not img_dir.is_dir():
        raw = d / "cuhk03_release" / "cuhk-03.mat"
        if not raw.is_file():
            raise DatasetError(f"{name}: neither {img_dir} nor {raw} exists: unpack cuhk03_release.zip into {d}")
        extract_cuhk03_images(raw, d)
    from ..deps import require

    loadmat = require("scipy.io", "reading CUHK03's protocol files").loadmat
    cfg_path = d / f"cuhk03_new_protocol_config_{kind}.mat"
    try:
        cfg = loadmat(str(cfg_path))
        labels = cfg["labels"].flatten()
        files = [str(f[0]) if hasattr(f, "__len__") and not isinstance(f, str) else str(f)
                 for f in cfg["filelist"].flatten()]
        idx = {k: cfg[f"{k}_idx"].flatten().astype(int) - 1 for k in ("train", "query", "gallery")}
    except (KeyError, ValueError, OSError) as exc:
        raise DatasetError(f"{name}: {cfg_path} is not a CUHK03 new-protocol config ({exc})") from None

    def split(which):
        out = []
        for i in idx[which]:
            fname = files[i]
            try:
                cam = int(fname.split("_")[2])  # campair_pid_view_img.png: view 1 or 2 of the pair
            except (IndexError, ValueError):
                raise DatasetError(f"{name}: cannot parse the camera from {fname!r} in {cfg_path}") from None
            p = img_dir / fname
            out.append(Sample(str(p), int(labels[i]), cam - 1))
        return _nonempty(out, cfg_path, f"{name} {which}")

    train = split("train")
    missing = next((s.path for s in train if not Path(s.path).is_file()), None)
    if missing:
        raise DatasetError(f"{name}: {missing} is listed in {cfg_path.name} but missing")
    return ReidDataset(name, str(d), _relabel(train), split("query"), split("gallery"))


def extract_cuhk03_images(raw_mat, out_root) -> None:
    """Unpack cuhk-03.mat (MATLAB v7.3 = HDF5) into images_detected/ and images_labeled/ as PNGs named
    campair_pid_view_img.png (torchreid's names, which the 767/700 protocol files list)."""
    from ..deps import require

    h5py = require("h5py", "unpacking CUHK03's cuhk-03.mat (pip install h5py)")
    cv2 = require("cv2", "writing images")
    out_root = Path(out_root)
    with h5py.File(str(raw_mat), "r") as f:
        for kind in ("detected", "labeled"):
            dest = out_root / f"images_{kind}"
            tmp = out_root / f".images_{kind}.partial"
            tmp.mkdir(parents=True, exist_ok=True)
            for campair, ref in enumerate(f[kind][0]):
                cams = f[ref][:].T  # (num_pids, 10) references to images
                for pid in range(cams.shape[0]):
                    for k, img_ref in enumerate(cams[pid]):
                        img = f[img_ref][:].T if img_ref else None
                        if img is None or img.size == 0 or img.ndim < 3:
                            continue  # missing shots are stored as empty arrays
                        view = 1 if k < 5 else 2
                        cv2.imwrite(str(tmp / f"{campair + 1}_{pid + 1:03d}_{view}_{k + 1:02d}.png"),
                                    img[:, :, ::-1].copy())  # stored RGB
            tmp.rename(dest)  # only a complete folder gets the name the reader looks for


# --------------------------------------------------------------------------- generic layout

DEFAULT_CAM_PATTERN = r"c(\d+)"


def _generic_split(folder: Path, name: str, cam_re, need_cams: bool) -> list:
    out = []
    for id_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for p in _images(id_dir):
            if cam_re is None:
                cam = 0
            else:
                m = cam_re.search(p.stem)
                if not m:
                    if need_cams:
                        raise DatasetError(f"{name}: cannot parse a camera id from {p} with pattern "
                                           f"{cam_re.pattern!r} (set --cam-pattern; its first group is the camera)")
                    cam = 0
                else:
                    g = m.group("cam") if "cam" in cam_re.groupindex else m.group(1) if m.groups() else m.group(0)
                    try:
                        cam = int(g)
                    except ValueError:
                        raise DatasetError(f"{name}: camera {g!r} parsed from {p} is not an integer") from None
            out.append(Sample(str(p), id_dir.name, cam))
    return _nonempty(out, folder, name)


def generic(root, cam_pattern: str | None = DEFAULT_CAM_PATTERN) -> ReidDataset:
    """One folder per identity. Either ROOT/{train,query,gallery}/<identity>/*.jpg, or ROOT/<identity>/*.jpg
    (training only). The camera id is the first group of cam_pattern searched in the file name
    (default 'c(\\d+)', e.g. cam 3 in 'p12_c3_0001.jpg'); query and gallery need it (the protocol
    drops same-camera matches), training does not."""
    root = Path(root)
    name = "generic"
    if not root.is_dir():
        raise DatasetError(f"{name}: dataset folder not found: {root}")
    try:
        cam_re = re.compile(cam_pattern) if cam_pattern else None
    except re.error as exc:
        raise DatasetError(f"{name}: invalid camera pattern {cam_pattern!r} ({exc})") from None
    splits = {s: root / s for s in ("train", "query", "gallery")}
    if not any(p.is_dir() for p in splits.values()):
        train = _generic_split(root, name, cam_re, False)
        query, gallery = [], []
    else:
        train = _generic_split(_dir(splits["train"], name), name, cam_re, False) if splits["train"].is_dir() else []
        if splits["query"].is_dir() != splits["gallery"].is_dir():
            raise DatasetError(f"{name}: {root} has only one of query/ and gallery/; evaluation needs both")
        query = _generic_split(splits["query"], name, cam_re, True) if splits["query"].is_dir() else []
        gallery = _generic_split(splits["gallery"], name, cam_re, True) if splits["gallery"].is_dir() else []
    # identity folders are names: map them to integers (train relabelled; query/gallery share one map)
    test_ids = {pid: i for i, pid in enumerate(sorted({s.pid for s in query + gallery}))}
    query = [replace(s, pid=test_ids[s.pid]) for s in query]
    gallery = [replace(s, pid=test_ids[s.pid]) for s in gallery]
    cams = {c: i for i, c in enumerate(sorted({s.camid for s in train + query + gallery}))}
    fix = lambda items: [replace(s, camid=cams[s.camid]) for s in items]  # noqa: E731
    return ReidDataset(name, str(root), _relabel(fix(train)), fix(query), fix(gallery))


# --------------------------------------------------------------------------- registry, specs, combining

DATASETS = {
    "market1501": market1501,
    "dukemtmcreid": dukemtmcreid,
    "msmt17": msmt17,
    "cuhk03": cuhk03,
    "cuhk03_labeled": lambda root: cuhk03(root, labeled=True),
    "generic": generic,
}
_ALIASES = {"market": "market1501", "market-1501": "market1501", "duke": "dukemtmcreid",
            "dukemtmc": "dukemtmcreid", "cuhk03-labeled": "cuhk03_labeled", "cuhk03_detected": "cuhk03",
            "folder": "generic"}


def parse_spec(spec: str) -> tuple[str, str]:
    """'market1501:/data/market' -> ('market1501', '/data/market')."""
    name, sep, path = str(spec).partition(":")
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if not sep or not path:
        raise DatasetError(f"dataset spec {spec!r} must be NAME:PATH, e.g. market1501:/data/market1501 "
                           f"(names: {', '.join(DATASETS)})")
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r} in {spec!r}; known: {', '.join(DATASETS)}")
    return name, path


def load_dataset(spec: str, cam_pattern: str | None = None, train: bool = True) -> ReidDataset:
    """train=False: only query and gallery are needed (evaluation); the training split is not read."""
    name, path = parse_spec(spec)
    if name == "generic":
        return generic(path, cam_pattern) if cam_pattern is not None else generic(path)
    if name in ("market1501", "dukemtmcreid", "msmt17"):
        return DATASETS[name](path, train=train)
    return DATASETS[name](path)


def combine_train(datasets: list) -> list:
    """All datasets' training samples as one label space: identities and cameras are offset per
    dataset (torchreid's combination), and dsetid says where each sample came from."""
    out, pid_off, cam_off = [], 0, 0
    for k, ds in enumerate(datasets):
        out += [Sample(s.path, s.pid + pid_off, s.camid + cam_off, k) for s in ds.train]
        pid_off += max((s.pid for s in ds.train), default=-1) + 1
        cam_off += max((s.camid for s in ds.train), default=-1) + 1
    if not out:
        names = ", ".join(f"{d.name} ({d.root})" for d in datasets)
        raise DatasetError(f"no training images in {names}")
    return out


def format_stats(datasets: list, combined: list | None = None) -> str:
    """Identities / images / cameras per split, one row per dataset (as the paper's Table 2)."""
    head = f"{'dataset':<16}{'train ids':>10}{'train imgs':>11}{'query ids':>10}{'query imgs':>11}" \
           f"{'gallery ids':>12}{'gallery imgs':>13}{'cameras':>9}"
    lines = [head, "-" * len(head)]
    for ds in datasets:
        st = ds.stats()
        cams = len({s.camid for s in ds.train + ds.query + ds.gallery})
        lines.append(f"{ds.name:<16}{st['train']['ids']:>10}{st['train']['images']:>11}{st['query']['ids']:>10}"
                     f"{st['query']['images']:>11}{st['gallery']['ids']:>12}{st['gallery']['images']:>13}{cams:>9}")
    if combined is not None and len(datasets) > 1:
        lines.append(f"{'combined train':<16}{len({s.pid for s in combined}):>10}{len(combined):>11}")
    return "\n".join(lines)
