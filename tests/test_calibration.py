"""Calibration sets: folder / Market-1501 split / MOT video + boxes, even seeded sampling, the one preprocessing."""
import warnings

import cv2
import numpy as np
import pytest

from osnet_edge.calibration import (DEFAULT_SIZE, CalibrationError, CropSet, calibration_split, even_sample,
                                    from_folder, from_market, from_mot, load_source, read_mot_boxes)
from osnet_edge.metadata import ModelMeta
from osnet_edge.preprocess import to_batch


def _img(value, h=40, w=20):
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (value % 256, (value * 7) % 256, (value * 13) % 256)
    return img


@pytest.fixture
def crop_folder(tmp_path):
    root = tmp_path / "crops"
    for i in range(60):
        sub = root / f"cam{i % 3}" / ("deep" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"{i:03d}.{'png' if i % 4 == 0 else 'jpg'}"), _img(i))
    (root / "notes.txt").write_text("not an image")
    return root


def test_even_sample_is_spread_and_seeded():
    a = even_sample(1000, 10, seed=1)
    assert len(a) == 10 and np.all(np.diff(a) > 0)
    # one index per stratum of 100: every tenth of the source is represented
    assert np.array_equal(a // 100, np.arange(10))
    assert np.array_equal(a, even_sample(1000, 10, seed=1))
    assert not np.array_equal(a, even_sample(1000, 10, seed=2))
    assert np.array_equal(even_sample(5, 10), np.arange(5))


def test_folder_recursive_sampled_deterministic(crop_folder):
    cs = from_folder(crop_folder, n=20, seed=0, progress=False)
    assert len(cs) == 20 and not cs.has_identities and not cs.generated
    assert any(n.endswith(".png") for n in cs.names) and any("deep" in n for n in cs.names)
    assert all(c.dtype == np.uint8 and c.shape == (40, 20, 3) for c in cs.crops)
    assert cs.names == from_folder(crop_folder, n=20, seed=0, progress=False).names
    assert cs.names != from_folder(crop_folder, n=20, seed=5, progress=False).names
    assert len(from_folder(crop_folder, n=300, progress=False)) == 60  # the whole folder when smaller


def test_folder_errors_name_the_problem(tmp_path, crop_folder):
    with pytest.raises(CalibrationError, match="does not exist"):
        from_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no .jpg"):
        from_folder(tmp_path / "empty")
    (crop_folder / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CalibrationError, match="broken.jpg"):
        from_folder(crop_folder, n=1000, progress=False)


def test_batches_use_the_one_preprocessing(crop_folder):
    cs = from_folder(crop_folder, n=10, progress=False)
    meta = ModelMeta(arch="osnet_x0_25", width=0.25, input_size=(64, 32))
    batches = list(cs.batches(meta, batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), to_batch(cs.crops, (64, 32)))
    meta.input_format = "uint8_nhwc"
    b = next(cs.batches(meta, batch_size=3))
    assert b.dtype == np.uint8 and b.shape == (3, 64, 32, 3)


def test_too_few_crops_refused_or_warned(crop_folder):
    cs = from_folder(crop_folder, n=20, progress=False)
    with pytest.raises(CalibrationError, match="fewer than the minimum of 32"):
        cs.check_size()
    with pytest.raises(CalibrationError, match="one batch"):
        cs.check_size(batch_size=50, minimum=8)
    with pytest.warns(UserWarning, match="only 60 crops"):
        from_folder(crop_folder, n=300, progress=False).check_size()


@pytest.fixture
def market(tmp_path):
    root = tmp_path / "market"
    names = {"bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000452_01.jpg", "0007_c3s2_000100_01.jpg",
                                    "-1_c1s1_000001_00.jpg", "0000_c1s1_000002_00.jpg"],
             "query": ["0010_c1s1_000001_00.jpg", "0011_c2s1_000001_00.jpg"],
             "bounding_box_test": ["0010_c2s1_000002_00.jpg", "0011_c3s1_000003_00.jpg", "0000_c4s1_000004_00.jpg",
                                   "-1_c1s1_000005_00.jpg"]}
    for split, files in names.items():
        (root / split).mkdir(parents=True)
        for i, f in enumerate(files):
            cv2.imwrite(str(root / split / f), _img(i))
    return root


def test_market_split_identities(market):
    train = from_market(market, "train", progress=False)
    assert list(train.pids) == [2, 2, 7] and list(train.camids) == [0, 1, 2]  # junk -1 and distractor 0 skipped
    gallery = from_market(market, "gallery", progress=False)
    assert sorted(gallery.pids.tolist()) == [0, 10, 11]  # distractors stay in the gallery, junk does not
    assert load_source(f"market1501:{market}:query", progress=False).pids.tolist() == [10, 11]
    assert load_source(str(market), progress=False).source.endswith(":train")
    with pytest.raises(CalibrationError, match="bounding_box_train"):
        from_market(market / "query")


def test_split_never_shares_crops(market, crop_folder):
    s = calibration_split(str(market), 300, 300, progress=False)
    assert set(s.calib.pids) & set(s.held_out.pids) - {0} == set()
    assert s.query is not None and set(s.query.pids) <= set(s.held_out.pids)
    f = calibration_split(str(crop_folder), 20, 20, progress=False)
    assert len(f.calib) == 20 and len(f.held_out) == 20 and not set(f.calib.names) & set(f.held_out.names)
    # unequal sizes keep their proportion, both spread over the whole folder; a smaller folder is shared out
    u = calibration_split(str(crop_folder), 40, 20, progress=False)
    assert len(u.calib) == 40 and len(u.held_out) == 20 and not set(u.calib.names) & set(u.held_out.names)
    from osnet_edge.export.quantize_openvino import CALIB_SIZE

    d = calibration_split(str(crop_folder), CALIB_SIZE, DEFAULT_SIZE, progress=False)
    assert len(d.calib) == 40 and len(d.held_out) == 20  # 60 crops at OpenVINO's default 600 : 300
    g = calibration_split("generated:4", 4, 3)
    assert g.calib.generated and len(g.held_out) == 3
    assert not any(np.array_equal(a, b) for a in g.calib.crops for b in g.held_out.crops if a.shape == b.shape)


def _mot_sequence(root, frames=12, w=160, h=120):
    (root / "img1").mkdir(parents=True)
    (root / "gt").mkdir()
    rows = []
    for f in range(1, frames + 1):
        frame = np.full((h, w, 3), 40, np.uint8)
        for pid, x in ((1, 10 + f), (2, 90)):
            cv2.rectangle(frame, (x, 20), (x + 20, 80), (60 * pid, 200, 255 - 60 * pid), -1)
            rows.append(f"{f},{pid},{x},20,21,61,1,1,1")
        rows.append(f"{f},3,0,0,30,30,0,1,1")   # 'consider' flag 0: ignored, as MOT does
        rows.append(f"{f},4,50,50,3,3,1,1,1")  # a 3x3 box: detector noise
        cv2.imwrite(str(root / "img1" / f"{f:06d}.jpg"), frame)
    (root / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    return root


def test_mot_frames_and_gt(tmp_path):
    seq = _mot_sequence(tmp_path / "MOT-01")
    table = read_mot_boxes(seq / "gt" / "gt.txt")
    assert set(table[:, 1].astype(int)) == {1, 2}
    cs = load_source(str(seq), n=10, progress=False)  # a MOT sequence folder is recognised
    assert len(cs) == 10 and set(cs.pids.tolist()) == {1, 2}
    assert all(c.shape == (61, 21, 3) for c in cs.crops)
    frames = sorted(int(n.split()[1]) for n in cs.names)
    assert frames[0] <= 2 and frames[-1] >= 11  # spread over the whole sequence, not its start


def test_mot_video_file(tmp_path):
    seq = _mot_sequence(tmp_path / "seq", frames=10)
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    if not writer.isOpened():
        pytest.skip("OpenCV has no MJPG writer here")
    for f in range(1, 11):
        writer.write(cv2.imread(str(seq / "img1" / f"{f:06d}.jpg")))
    writer.release()
    cs = from_mot(video, seq / "gt" / "gt.txt", n=6, progress=False)
    assert len(cs) == 6 and cs.source.startswith("mot:")
    ref = from_mot(seq / "img1", seq / "gt" / "gt.txt", n=6, progress=False)
    assert cs.names == ref.names  # same boxes whether frames come from the video or the frame folder
    bad = tmp_path / "late.txt"
    bad.write_text("50,1,10,10,20,40,1,1,1\n")
    with pytest.raises(CalibrationError, match="ended at frame 10"):
        from_mot(video, bad, progress=False)


def test_mot_and_source_errors(tmp_path):
    bad = tmp_path / "det.txt"
    bad.write_text("1,2,3\n")
    with pytest.raises(CalibrationError, match="det.txt:1"):
        read_mot_boxes(bad)
    with pytest.raises(CalibrationError, match="needs its boxes"):
        load_source(str(tmp_path / "clip.mp4"))
    with pytest.raises(CalibrationError, match="not found"):
        load_source(str(tmp_path / "missing"))
    with pytest.raises(CalibrationError, match="mot:VIDEO"):
        load_source("mot:onlyvideo.mp4")
    cs = load_source([_img(1), _img(2)])
    assert isinstance(cs, CropSet) and len(cs) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_source(cs) is cs
