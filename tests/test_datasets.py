"""Datasets (Market-1501, Duke, MSMT17, CUHK03 767/700, generic), P x K sampling, augmentations."""
from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from osnet_edge.errors import OsnetEdgeError
from osnet_edge.training.datasets import (DatasetError, combine_train, cuhk03, dukemtmcreid, format_stats, generic,
                                          load_dataset, market1501, msmt17, parse_spec)
from osnet_edge.training.synthetic_dataset import make_market_dataset, render_identity_images


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    info = make_market_dataset(root, num_ids=10, images_per_id=6, cams=3, size=(64, 32), num_distractors=4,
                               num_junk=3)
    return root, info


def _img(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 8, 3), value, np.uint8))


def test_synthetic_dataset_layout_is_market_like(market):
    root, info = market
    names = sorted(p.name for p in (root / "bounding_box_test").glob("*.jpg"))
    assert sum(n.startswith("-1_") for n in names) == 3 and sum(n.startswith("0000_") for n in names) == 4
    assert all(cv2.imread(str(p)).shape == (64, 32, 3) for p in list((root / "query").glob("*.jpg"))[:3])
    train_ids = {p.name[:4] for p in (root / "bounding_box_train").glob("*.jpg")}
    test_ids = {p.name[:4] for p in (root / "query").glob("*.jpg")}
    assert len(train_ids) == info["train_ids"] == 5 and not train_ids & test_ids
    # deterministic for a seed, and identities differ
    a, pa, _ = render_identity_images(3, 2, cams=2, seed=4)
    b, _, _ = render_identity_images(3, 2, cams=2, seed=4)
    assert all((x == y).all() for x, y in zip(a, b))
    assert np.abs(a[0].astype(int) - a[2].astype(int)).mean() > 5
    with pytest.raises(OsnetEdgeError, match="already holds"):
        make_market_dataset(root, num_ids=4, images_per_id=2, cams=2)


def test_market1501_protocol_rules(market):
    root, _ = market
    ds = market1501(root)
    assert {s.pid for s in ds.train} == set(range(5))  # relabelled 0..N-1
    assert all(s.pid != -1 for s in ds.query + ds.gallery)  # junk dropped
    assert sum(s.pid == 0 for s in ds.gallery) == 4  # distractors kept
    assert {s.camid for s in ds.train + ds.query + ds.gallery} == {0, 1, 2}  # 0-based cameras
    st = ds.stats()
    assert st["query"]["images"] == len(ds.query) and st["train"]["ids"] == 5
    table = format_stats([ds])
    assert "market1501" in table and str(len(ds.gallery)) in table
    # the Market-1501-v15.09.15 sub-folder is found from its parent, as torchreid does
    assert len(load_dataset(f"market:{root}").train) == len(ds.train)


def test_dataset_errors_name_the_path(tmp_path, market):
    with pytest.raises(DatasetError, match=str(tmp_path / "nope")):
        market1501(tmp_path / "nope")
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp_path / "m" / split).mkdir(parents=True)
    _img(tmp_path / "m" / "bounding_box_train" / "0001_c1s1_000001_00.jpg")
    _img(tmp_path / "m" / "query" / "0002_c1s1_000001_00.jpg")
    with pytest.raises(DatasetError, match="no images found in .*bounding_box_test"):
        market1501(tmp_path / "m")
    _img(tmp_path / "m" / "bounding_box_test" / "0002_c2s1_000001_00.jpg")
    _img(tmp_path / "m" / "bounding_box_test" / "person_7.jpg")
    with pytest.raises(DatasetError, match="person_7.jpg"):
        market1501(tmp_path / "m")
    with pytest.raises(DatasetError, match="NAME:PATH"):
        parse_spec("market1501")
    with pytest.raises(DatasetError, match="unknown dataset 'viper'"):
        parse_spec("viper:/x")
    assert issubclass(DatasetError, OsnetEdgeError)


def test_duke_and_combination(tmp_path, market):
    d = tmp_path / "DukeMTMC-reID"
    for split, names in (("bounding_box_train", ["0001_c2_f0046182.jpg", "0001_c5_f0046999.jpg", "0007_c8_f1.jpg"]),
                         ("query", ["0005_c1_f0000001.jpg"]), ("bounding_box_test", ["0005_c3_f0000002.jpg"])):
        for n in names:
            _img(d / split / n)
    duke = dukemtmcreid(tmp_path)
    assert len(duke.train) == 3 and {s.camid for s in duke.train} == {1, 4, 7}
    m = market1501(market[0])
    both = combine_train([m, duke])
    assert len({s.pid for s in both}) == m.num_train_pids + duke.num_train_pids  # identities never merge
    assert {s.dsetid for s in both} == {0, 1}
    duke_cams = {s.camid for s in both if s.dsetid == 1}
    assert min(duke_cams) > max(s.camid for s in both if s.dsetid == 0)
    assert "combined train" in format_stats([m, duke], both)


def test_msmt17_lists(tmp_path):
    root = tmp_path / "MSMT17_V1"
    lines = {"list_train.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0003/0003_011_05_0303noon_0100_1.jpg 3"],
             "list_val.txt": ["0004/0004_001_07_0303noon_0001_0.jpg 4"],
             "list_query.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0"],
             "list_gallery.txt": ["0000/0000_005_12_0303morning_0300_0.jpg 0"]}
    for name, ls in lines.items():
        root.mkdir(exist_ok=True)
        (root / name).write_text("\n".join(ls) + "\n")
        for rel in ls:
            _img(root / ("test" if name in ("list_query.txt", "list_gallery.txt") else "train") / rel.split()[0])
    ds = msmt17(tmp_path)
    assert [s.camid for s in ds.train] == [0, 4] and [s.pid for s in ds.train] == [0, 1]
    assert ds.gallery[0].camid == 11 and ds.gallery[0].path.endswith("0000_005_12_0303morning_0300_0.jpg")
    assert len(msmt17(tmp_path, with_val=True).train) == 3
    (root / "list_query.txt").write_text("garbage\n")
    with pytest.raises(DatasetError, match="list_query.txt:1"):
        msmt17(tmp_path)


def test_cuhk03_new_protocol(tmp_path):
    from scipy.io import savemat

    files = [f"{cp}_{pid:03d}_{view}_{k:02d}.png" for cp, pid in ((1, 1), (1, 2), (2, 1)) for view in (1, 2)
             for k in ((1, 2) if view == 1 else (6, 7))]
    labels = np.array([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
    for f in files:
        _img(tmp_path / "images_detected" / f)
    filelist = np.empty((len(files), 1), dtype=object)
    for i, f in enumerate(files):
        filelist[i, 0] = np.array([f])
    savemat(str(tmp_path / "cuhk03_new_protocol_config_detected.mat"),
            {"filelist": filelist, "labels": labels[:, None], "train_idx": np.arange(1, 9)[:, None],
             "query_idx": np.array([[9], [11]]), "gallery_idx": np.array([[10], [12]])})
    ds = cuhk03(tmp_path)
    assert len(ds.train) == 8 and {s.pid for s in ds.train} == {0, 1}
    assert [s.pid for s in ds.query] == [3, 3] and [s.camid for s in ds.query] == [0, 1]
    assert [s.camid for s in ds.gallery] == [0, 1]
    with pytest.raises(DatasetError, match="cuhk03_new_protocol_config_labeled.mat"):
        cuhk03(tmp_path, labeled=True)


def test_generic_layout(tmp_path):
    for split, ids in (("train", ("alice", "bob")), ("query", ("carol",)), ("gallery", ("carol", "dave"))):
        for pid in ids:
            for cam in (1, 2):
                _img(tmp_path / split / pid / f"{pid}_cam{cam}_0001.jpg")
    ds = generic(tmp_path, cam_pattern=r"cam(\d+)")
    assert {s.pid for s in ds.train} == {0, 1} and len(ds.query) == 2 and len(ds.gallery) == 4
    assert {s.camid for s in ds.query} == {0, 1}
    with pytest.raises(DatasetError, match=r"carol_cam1_0001.jpg.*pattern"):
        generic(tmp_path)  # default pattern c(\d+) does not match 'cam1'... in query it must
    assert len(load_dataset(f"generic:{tmp_path / 'train'}", cam_pattern=r"cam(\d+)").train) == 4


def test_identity_sampler_p_by_k():
    from osnet_edge.training.sampler import IdentityBatchSampler, RandomBatchSampler

    pids = [i // 5 for i in range(50)] + [10, 10]  # 10 identities x 5 images, one with only 2
    s = IdentityBatchSampler(pids, batch_size=16, num_instances=4, seed=3)
    s.set_epoch(0)
    batches = list(s)
    assert batches and all(len(b) == 16 for b in batches)
    for b in batches:
        counts = Counter(pids[i] for i in b)
        assert len(counts) == 4 and set(counts.values()) == {4}
    s.set_epoch(1)
    assert list(s) != batches  # reshuffled per epoch
    s.set_epoch(0)
    assert list(s) == batches  # and reproducible
    # DDP: ranks take disjoint shares of the same global list
    r0, r1 = (IdentityBatchSampler(pids, 16, 4, seed=3, rank=r, world_size=2) for r in (0, 1))
    assert not {tuple(b) for b in r0} & {tuple(b) for b in r1} and len(r0) == len(r1)
    rb = RandomBatchSampler(50, 8, seed=0)
    assert len(list(rb)) == len(rb) == 6 and len({i for b in rb for i in b}) == 48
    with pytest.raises(OsnetEdgeError, match="at least P=16"):
        IdentityBatchSampler(pids, batch_size=64, num_instances=4)


def test_augmentations_keep_shape_and_are_seeded():
    from osnet_edge.training.transforms import ColorJitter, RandomErasing, RandomPatch, TrainTransform

    imgs, _, _ = render_identity_images(4, 2, cams=2, seed=1, size=(64, 32))
    t = TrainTransform((64, 32), ("flip", "crop", "patch", "erase", "color_jitter"), {"patch": {"min_sample_size": 2}})
    outs = [t(im, np.random.default_rng(i)) for i, im in enumerate(imgs)]
    assert all(o.shape == (64, 32, 3) and o.dtype == np.uint8 for o in outs)
    t2 = TrainTransform((64, 32), ("flip", "crop", "patch", "erase", "color_jitter"), {"patch": {"min_sample_size": 2}})
    assert all((a == t2(im, np.random.default_rng(i))).all() for i, (a, im) in enumerate(zip(outs, imgs)))
    # erasing fills with the ImageNet mean colour (0 after normalisation)
    er = RandomErasing(p=1.0)(np.zeros((64, 32, 3), np.uint8), np.random.default_rng(0))
    assert set(map(tuple, er.reshape(-1, 3))) == {(0, 0, 0), (104, 116, 124)}
    # RandomPatch pastes a patch from another image once its pool is filled
    rp = RandomPatch(p=1.0, min_sample_size=1)
    white, black = np.full((64, 32, 3), 255, np.uint8), np.zeros((64, 32, 3), np.uint8)
    for i in range(5):
        rp(white, np.random.default_rng(i))
    pasted = [rp(black, np.random.default_rng(10 + i)) for i in range(5)]
    assert any((p == 255).any() for p in pasted) and all(p.shape == black.shape for p in pasted)
    cj = ColorJitter(p=1.0, brightness=0.4, contrast=0.3, saturation=0.3, hue=0.1)(imgs[0], np.random.default_rng(0))
    assert cj.shape == imgs[0].shape and not (cj == imgs[0]).all()
    with pytest.raises(OsnetEdgeError, match="unknown augmentation"):
        TrainTransform((64, 32), ("mixup",))
