"""A small Market-1501-layout dataset of rendered people, for tests, demos and INT8 calibration.

No real data may be downloaded at run time, yet training, evaluation and quantisation need crops
whose identity is learnable and whose camera changes make matching non-trivial. Each identity is
a fixed set of attributes (skin, hair, upper/lower clothing colours, a clothing pattern, a bag,
body build); each camera has its own illumination (gain + colour cast), blur, background texture
and a preferred viewpoint (front / back / side). Per image the pose, scale and position jitter.

    from osnet_edge.training.synthetic_dataset import make_market_dataset
    info = make_market_dataset("data/synth", num_ids=40, images_per_id=12, cams=4)

writes, as Market-1501 does:
    bounding_box_train/0001_c1s1_000151_00.jpg   training identities
    query/                                       one image per (test identity, camera)
    bounding_box_test/                           the other images of the test identities,
                                                 plus distractors (pid 0000) and junk (pid -1)
Torch-free (numpy + OpenCV).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

SPLITS = ("bounding_box_train", "query", "bounding_box_test")

# clothing colours drawn from a palette with distinct hues, so identities differ in more than noise
_PALETTE = np.array([
    [30, 30, 200], [40, 160, 40], [200, 60, 30], [20, 200, 220], [180, 40, 180], [200, 200, 40],
    [240, 240, 240], [25, 25, 25], [120, 120, 120], [40, 90, 150], [150, 100, 40], [90, 40, 120],
    [60, 140, 230], [160, 220, 140], [100, 60, 200], [30, 110, 90], [210, 150, 200], [70, 70, 140],
], np.float32)  # BGR
_SKIN = np.array([[90, 130, 190], [70, 110, 170], [120, 160, 220], [50, 80, 120], [100, 150, 200]], np.float32)
_HAIR = np.array([[20, 20, 20], [30, 50, 90], [60, 110, 160], [160, 160, 160], [20, 30, 60]], np.float32)
PATTERNS = ("plain", "hstripes", "vstripes", "check", "logo", "two_tone")
VIEWS = ("front", "back", "side")


@dataclass
class Identity:
    skin: np.ndarray
    hair: np.ndarray
    upper: np.ndarray
    upper2: np.ndarray
    lower: np.ndarray
    shoes: np.ndarray
    pattern: str
    long_hair: bool
    shorts: bool
    bag: int  # 0 none, 1 backpack, 2 shoulder bag
    bag_colour: np.ndarray
    build: float  # body width factor
    height: float


@dataclass
class Camera:
    gain: float
    cast: np.ndarray  # per-channel multiplier (BGR)
    blur: float
    bg: np.ndarray  # background colour
    bg_kind: int  # 0 gradient, 1 stripes (pavement), 2 noise blobs
    views: tuple  # viewpoint preference weights for (front, back, side)
    noise: float


def _pick(rng, arr):
    return arr[rng.integers(len(arr))].copy()


def _make_identity(rng) -> Identity:
    upper = _pick(rng, _PALETTE)
    upper2 = _pick(rng, _PALETTE)
    while np.abs(upper2 - upper).sum() < 120:
        upper2 = _pick(rng, _PALETTE)
    return Identity(
        skin=_pick(rng, _SKIN), hair=_pick(rng, _HAIR), upper=upper, upper2=upper2,
        lower=_pick(rng, _PALETTE), shoes=_pick(rng, _PALETTE[[6, 7, 8, 10]]),
        pattern=PATTERNS[rng.integers(len(PATTERNS))], long_hair=bool(rng.random() < 0.35),
        shorts=bool(rng.random() < 0.25), bag=int(rng.integers(3)), bag_colour=_pick(rng, _PALETTE),
        build=float(rng.uniform(0.8, 1.2)), height=float(rng.uniform(0.88, 1.0)))


def _make_camera(rng, index: int) -> Camera:
    cast = rng.uniform(0.75, 1.25, 3).astype(np.float32)
    views = np.roll(np.array([0.6, 0.25, 0.15]), index % 3)
    return Camera(gain=float(rng.uniform(0.6, 1.3)), cast=cast, blur=float(rng.choice([0.0, 0.6, 1.2])),
                  bg=rng.uniform(40, 210, 3).astype(np.float32), bg_kind=int(index % 3),
                  views=tuple(views), noise=float(rng.uniform(2, 8)))


def _background(rng, cam: Camera, h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.float32)
    img[:] = cam.bg
    if cam.bg_kind == 0:  # vertical gradient (sky to ground)
        img *= np.linspace(1.15, 0.7, h, dtype=np.float32)[:, None, None]
    elif cam.bg_kind == 1:  # paving stripes at a random phase
        period = int(rng.integers(6, 14))
        phase = int(rng.integers(period))
        rows = ((np.arange(h) + phase) // period) % 2
        img *= np.where(rows, 0.8, 1.05).astype(np.float32)[:, None, None]
    else:  # clutter blobs
        for _ in range(int(rng.integers(3, 7))):
            c = rng.uniform(30, 230, 3)
            x, y = int(rng.integers(w)), int(rng.integers(h))
            r = int(rng.integers(max(3, w // 10), max(4, w // 3)))
            import cv2

            cv2.circle(img, (x, y), r, tuple(float(v) for v in c), -1)
    return img


def _render(rng, ident: Identity, cam: Camera, size) -> np.ndarray:
    """One image of `ident` seen by `cam`, as HxWx3 uint8 BGR at size (H, W)."""
    import cv2

    h, w = size
    s = 2  # render at 2x and downsample: anti-aliased edges, like a real detector crop
    H, W = h * s, w * s
    img = _background(rng, cam, H, W)
    view = VIEWS[rng.choice(3, p=np.asarray(cam.views) / sum(cam.views))]
    scale = ident.height * rng.uniform(0.9, 1.0)
    cx = W / 2 + rng.uniform(-0.08, 0.08) * W
    top = H * (0.04 + rng.uniform(0, 0.05))
    body_h = H * 0.92 * scale
    bw = W * 0.36 * ident.build * (0.7 if view == "side" else 1.0)

    def box(x0, y0, x1, y1, colour):
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), tuple(float(v) for v in colour), -1)

    head_r = body_h * 0.075
    head_cy = top + head_r
    neck = head_cy + head_r
    torso_top, torso_bot = neck + body_h * 0.02, neck + body_h * 0.40
    leg_bot = top + body_h * 0.95
    stride = rng.uniform(-0.12, 0.12) * bw
    # legs (trousers or shorts + skin), shoes
    leg_w = bw * 0.42
    for side, dx in ((-1, -stride), (1, stride)):
        x0 = cx + side * bw * 0.04 + (0 if side > 0 else -leg_w) + dx
        if ident.shorts:
            mid = torso_bot + (leg_bot - torso_bot) * 0.4
            box(x0, torso_bot, x0 + leg_w, mid, ident.lower)
            box(x0 + leg_w * 0.15, mid, x0 + leg_w * 0.85, leg_bot, ident.skin)
        else:
            box(x0, torso_bot, x0 + leg_w, leg_bot, ident.lower)
        box(x0 - 1, leg_bot, x0 + leg_w + 2, leg_bot + body_h * 0.04, ident.shoes)
    # torso with the identity's pattern
    x0, x1 = cx - bw / 2, cx + bw / 2
    box(x0, torso_top, x1, torso_bot, ident.upper)
    th, tw = torso_bot - torso_top, x1 - x0
    if ident.pattern == "hstripes":
        for k in range(0, 6, 2):
            box(x0, torso_top + th * k / 6, x1, torso_top + th * (k + 1) / 6, ident.upper2)
    elif ident.pattern == "vstripes":
        for k in range(0, 4, 2):
            box(x0 + tw * k / 4, torso_top, x0 + tw * (k + 1) / 4, torso_bot, ident.upper2)
    elif ident.pattern == "check":
        for i in range(4):
            for j in range(3):
                if (i + j) % 2:
                    box(x0 + tw * j / 3, torso_top + th * i / 4, x0 + tw * (j + 1) / 3, torso_top + th * (i + 1) / 4,
                        ident.upper2)
    elif ident.pattern == "logo" and view != "back":
        box(cx - tw * 0.2, torso_top + th * 0.25, cx + tw * 0.2, torso_top + th * 0.55, ident.upper2)
    elif ident.pattern == "two_tone":
        box(x0, torso_top + th * 0.55, x1, torso_bot, ident.upper2)
    # arms
    arm_w = bw * 0.16
    if view != "side":
        box(x0 - arm_w, torso_top, x0, torso_top + th * 0.95, ident.upper)
        box(x1, torso_top, x1 + arm_w, torso_top + th * 0.95, ident.upper)
        box(x0 - arm_w, torso_top + th * 0.95, x0, torso_top + th * 1.12, ident.skin)
        box(x1, torso_top + th * 0.95, x1 + arm_w, torso_top + th * 1.12, ident.skin)
    else:
        box(cx - arm_w / 2, torso_top, cx + arm_w / 2, torso_top + th * 1.05, ident.upper)
    # bags: a backpack covers the back, shows at the side, and only its straps show from the front
    if ident.bag == 1:
        if view == "back":
            box(cx - tw * 0.35, torso_top + th * 0.1, cx + tw * 0.35, torso_top + th * 0.75, ident.bag_colour)
        elif view == "side":
            box(x0 - tw * 0.35, torso_top + th * 0.1, x0, torso_top + th * 0.7, ident.bag_colour)
        else:
            box(x0 + tw * 0.12, torso_top, x0 + tw * 0.22, torso_top + th * 0.6, ident.bag_colour)
            box(x1 - tw * 0.22, torso_top, x1 - tw * 0.12, torso_top + th * 0.6, ident.bag_colour)
    elif ident.bag == 2:
        bx = x1 + arm_w if view != "back" else x0 - arm_w - tw * 0.3
        box(bx, torso_top + th * 0.6, bx + tw * 0.3, torso_top + th * 0.95, ident.bag_colour)
    # head and hair
    cv2.circle(img, (int(cx), int(head_cy)), int(head_r), tuple(float(v) for v in ident.skin), -1)
    # hair: the top half of the head from the front/side, all of it from behind
    r = int(head_r * 1.05)
    cv2.ellipse(img, (int(cx), int(head_cy)), (r, r), 0, 180, 360 if view != "back" else 540,
                tuple(float(v) for v in ident.hair), -1)
    if ident.long_hair:
        box(cx - head_r * 1.05, head_cy, cx + head_r * 1.05, head_cy + head_r * (2.2 if view == "back" else 1.4),
            ident.hair)
        if view != "back":
            cv2.circle(img, (int(cx), int(head_cy + head_r * 0.15)), int(head_r * 0.8),
                       tuple(float(v) for v in ident.skin), -1)

    # the camera: illumination gain and colour cast, blur, sensor noise, then a detector-style resize
    img *= cam.gain * cam.cast * rng.uniform(0.9, 1.1)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    if cam.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), cam.blur)
    img += rng.normal(0, cam.noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_identity_images(num_ids: int, images_per_id: int, cams: int = 4, seed: int = 0, size=(128, 64)):
    """In-memory version: (images list of HxWx3 uint8 BGR, pids array, camids array (1-based))."""
    rng = np.random.default_rng(seed)
    cameras = [_make_camera(rng, c) for c in range(cams)]
    identities = [_make_identity(rng) for _ in range(num_ids)]
    images, pids, camids = [], [], []
    for pid, ident in enumerate(identities, start=1):
        for k in range(images_per_id):
            c = k % cams
            images.append(_render(rng, ident, cameras[c], size))
            pids.append(pid)
            camids.append(c + 1)
    return images, np.asarray(pids), np.asarray(camids)


def make_market_dataset(root, num_ids: int = 40, images_per_id: int = 12, cams: int = 4, seed: int = 0,
                        size=(128, 64), num_distractors: int = 0, num_junk: int = 0, jpeg_quality: int = 92) -> dict:
    """Write a Market-1501-layout dataset of rendered identities under `root`; return its statistics.

    num_ids identities in all: the first half (rounded up) train, the rest test (disjoint, as in
    Market-1501's 751/750 split). Each identity gets images_per_id images spread over `cams`
    cameras; for test identities one image per camera becomes a query (when another camera still
    holds one of its gallery images) and the others go to the gallery. num_distractors gallery
    images of pid 0000 (unrelated people) and num_junk of pid -1 (which readers must drop) mimic
    Market-1501's bounding_box_test. size is (H, W). Deterministic for a seed.
    """
    import cv2

    if num_ids < 2:
        raise InputError(f"make_market_dataset: num_ids must be >= 2 (train and test identities), got {num_ids}")
    if cams < 2:
        raise InputError(f"make_market_dataset: cams must be >= 2 (queries are matched across cameras), got {cams}")
    if images_per_id < 2:
        raise InputError(f"make_market_dataset: images_per_id must be >= 2, got {images_per_id}")
    h, w = (int(v) for v in size)
    if h < 16 or w < 8:
        raise InputError(f"make_market_dataset: size (H, W) must be at least (16, 8), got {size}")
    root = Path(root)
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
        stale = list((root / split).glob("*.jpg"))
        if stale:
            raise InputError(f"{root / split} already holds {len(stale)} images; pass an empty or new folder")

    rng = np.random.default_rng(seed)
    cameras = [_make_camera(rng, c) for c in range(cams)]
    identities = [_make_identity(rng) for _ in range(num_ids + num_distractors)]
    num_train = (num_ids + 1) // 2
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)]
    counts = {s: 0 for s in SPLITS}
    frame = 0

    def write(split, pid, cam, img):
        nonlocal frame
        frame += int(rng.integers(1, 40))
        seq = 1 + frame // 20000
        name = f"{pid:04d}" if pid >= 0 else "-1"
        path = root / split / f"{name}_c{cam}s{seq}_{frame:06d}_{int(rng.integers(0, 3)):02d}.jpg"
        if not cv2.imwrite(str(path), img, params):
            raise InputError(f"could not write {path}")
        counts[split] += 1

    for pid in range(1, num_ids + 1):
        ident = identities[pid - 1]
        cam_of = [(k % cams) + 1 for k in range(images_per_id)]
        imgs = [_render(rng, ident, cameras[c - 1], (h, w)) for c in cam_of]
        if pid <= num_train:
            for c, img in zip(cam_of, imgs):
                write("bounding_box_train", pid, c, img)
            continue
        queries = set()
        for c in sorted(set(cam_of)):
            first = cam_of.index(c)
            rest_other_cams = [j for j in range(images_per_id) if j != first and j not in queries and cam_of[j] != c]
            if rest_other_cams:
                queries.add(first)
        for j, (c, img) in enumerate(zip(cam_of, imgs)):
            write("query" if j in queries else "bounding_box_test", pid, c, img)
    for k in range(num_distractors):
        c = int(rng.integers(cams)) + 1
        write("bounding_box_test", 0, c, _render(rng, identities[num_ids + k], cameras[c - 1], (h, w)))
    for _ in range(num_junk):  # junk: a background-only or badly cut box, as Market-1501's -1 images
        c = int(rng.integers(cams)) + 1
        junk = np.clip(_background(rng, cameras[c - 1], h, w), 0, 255).astype(np.uint8)
        write("bounding_box_test", -1, c, junk)

    info = {"root": str(root), "num_ids": num_ids, "train_ids": num_train, "test_ids": num_ids - num_train,
            "cams": cams, "size": [h, w], "seed": seed, "images": counts,
            "distractors": num_distractors, "junk": num_junk}
    (root / "synthetic.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description="Write a synthetic Market-1501-layout dataset of rendered people.")
    p.add_argument("root")
    p.add_argument("--num-ids", type=int, default=40)
    p.add_argument("--images-per-id", type=int, default=12)
    p.add_argument("--cams", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"))
    p.add_argument("--distractors", type=int, default=0)
    p.add_argument("--junk", type=int, default=0)
    a = p.parse_args(argv)
    info = make_market_dataset(a.root, a.num_ids, a.images_per_id, a.cams, a.seed, tuple(a.size),
                               a.distractors, a.junk)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
