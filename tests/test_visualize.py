"""Retrieval pictures and the CMC plot: border colours against correctness computed here, the crops in the
right places, even seeded sampling, `osnet-eval --visualize`, and bad output folders."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from osnet_edge import visualize as vis  # noqa: E402
from osnet_edge.training.datasets import market1501  # noqa: E402
from osnet_edge.training.synthetic_dataset import make_market_dataset  # noqa: E402

SIZE = (64, 32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    make_market_dataset(root, num_ids=12, images_per_id=6, cams=3, size=SIZE, num_distractors=4)
    return root


def _arrays(ds):
    return (np.array([s.pid for s in ds.query]), np.array([s.pid for s in ds.gallery]),
            np.array([s.camid for s in ds.query]), np.array([s.camid for s in ds.gallery]))


def _distances(ds, seed=0):
    """Random distances, true matches a little closer; the query identity's own-camera images closest of
    all, so a picture that failed to skip them would show them first."""
    qp, gp, qc, gc = _arrays(ds)
    rng = np.random.default_rng(seed)
    d = rng.random((len(qp), len(gp))).astype(np.float32)
    same = qp[:, None] == gp[None, :]
    d[same] -= 0.3
    d[same & (qc[:, None] == gc[None, :])] = -1.0
    return d


def _expected(d_row, qpid, qcam, gp, gc, k):
    """Top-k (closest first) without the same-identity same-camera items, computed without the module."""
    order = sorted(range(len(gp)), key=lambda j: (d_row[j], j))
    order = [j for j in order if not (gp[j] == qpid and gc[j] == qcam)][:k]
    return order, [bool(gp[j] == qpid) for j in order]


def _border_runs(img, y):
    """(colour, x_start, x_end) runs of exact black / green / red pixels along row y."""
    names = {vis.BLACK: "black", vis.GREEN: "green", vis.RED: "red"}
    runs, prev = [], None
    for x, px in enumerate(map(tuple, img[y])):
        name = names.get(tuple(int(v) for v in px))
        if name and prev and prev[0] == name and prev[2] == x - 1:
            prev[2] = x
        else:
            if prev:
                runs.append(tuple(prev))
            prev = [name, x, x] if name else None
    if prev:
        runs.append(tuple(prev))
    return [r for r in runs if r[2] - r[1] > 20]  # cell-wide borders, not text pixels


def test_pictures_mark_matches_and_show_the_ranked_crops(data, tmp_path):
    ds = market1501(data, train=False)
    qp, gp, qc, gc = _arrays(ds)
    d = _distances(ds)
    k = 5
    paths = vis.write_ranked_results(d, ds.query, ds.gallery, tmp_path / "pics", k=k, n=6, seed=3, progress=False)
    assert len(paths) == 6 and all(p.suffix == ".png" for p in paths)
    assert not list((tmp_path / "pics").glob(".*"))  # no temporary files left behind
    seen = set()
    for path in paths:
        qi = int(path.name[1:6])
        top, correct = _expected(d[qi], qp[qi], qc[qi], gp, gc, k)
        img = cv2.imread(str(path))
        runs = _border_runs(img, vis.HEADER + 1)
        assert [r[0] for r in runs] == ["black"] + ["green" if c else "red" for c in correct], path.name
        seen.update(correct)
        # each cell shows the gallery image ranked there (compared with all others, it is the closest)
        gallery_imgs = [cv2.imread(s.path) for s in ds.gallery]
        for (_, x0, x1), want in zip(runs[1:], top):
            b = vis.BORDER
            inner = img[vis.HEADER + b:vis.HEADER + vis.CELL[0] - b, x0 + b:x1 + 1 - b].astype(np.float32)
            size = (inner.shape[1], inner.shape[0])
            errs = [np.abs(cv2.resize(g, size, interpolation=cv2.INTER_AREA) - inner).mean() for g in gallery_imgs]
            assert int(np.argmin(errs)) == want
        q_img = cv2.resize(cv2.imread(ds.query[qi].path), size, interpolation=cv2.INTER_AREA).astype(np.float32)
        x0 = runs[0][1]
        shown = img[vis.HEADER + b:vis.HEADER + vis.CELL[0] - b, x0 + b:x0 + b + size[0]].astype(np.float32)
        assert np.abs(q_img - shown).mean() < 1.0
    assert seen == {True, False}  # the check saw both colours


def test_sampling_is_even_seeded_and_only_scored_queries(data, tmp_path):
    picks = vis.sample_queries(np.arange(100), 10, seed=0)
    assert len(set(picks)) == 10 and list(picks) == sorted(picks)
    assert np.all(np.diff(picks) >= 9) and np.all(np.diff(picks) <= 11)  # evenly spread
    assert list(picks) == list(vis.sample_queries(np.arange(100), 10, seed=0))
    assert any(list(vis.sample_queries(np.arange(100), 10, seed=s)) != list(picks) for s in (1, 2, 3))
    assert list(vis.sample_queries(np.arange(5), 10)) == [0, 1, 2, 3, 4]
    # a query whose identity is only under its own camera in the gallery is never pictured
    ds = market1501(data, train=False)
    qp, gp, qc, gc = _arrays(ds)
    gallery = [s for s in ds.gallery if not (s.pid == qp[0] and s.camid != qc[0])]
    d = np.random.default_rng(0).random((len(ds.query), len(gallery))).astype(np.float32)
    paths = vis.write_ranked_results(d, ds.query, gallery, tmp_path, k=3, n=len(ds.query), progress=False)
    scored = [i for i, q in enumerate(ds.query) if any(g.pid == q.pid and g.camid != q.camid for g in gallery)]
    assert 0 not in scored and len(scored) < len(ds.query)
    assert [int(p.name[1:6]) for p in paths] == scored
    assert not any(p.name.startswith("q00000_") for p in paths)


def test_bad_sizes_and_folders_are_named(data, tmp_path):
    ds = market1501(data, train=False)
    with pytest.raises(vis.InputError, match="distmat is 2x3"):
        vis.write_ranked_results(np.zeros((2, 3)), ds.query, ds.gallery, tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(vis.InputError, match="a_file is a file, not a folder"):
        vis.check_output_dir(blocker / "pics")
    with pytest.raises(vis.InputError, match="exists and is not a folder"):
        vis.check_output_dir(blocker)
    assert vis.check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking writes nothing


def test_cmc_plot_and_missing_matplotlib(tmp_path, monkeypatch, capsys):
    from osnet_edge.evaluation import EvalResult

    res = EvalResult(cmc=np.linspace(0.4, 1.0, 50, dtype=np.float32), mAP=0.3, num_query=10, num_gallery=20,
                     dataset="market1501")
    out = vis.plot_cmc([res], tmp_path / "cmc.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the bench extra were not installed
    assert vis.plot_cmc([res], tmp_path / "none.png") is None
    msg = capsys.readouterr().out.strip()
    assert len(msg.splitlines()) == 1 and "matplotlib" in msg and "osnet-edge[bench]" in msg
    assert not (tmp_path / "none.png").exists()


def test_visualize_imports_without_torch():
    code = "import sys; sys.modules['torch'] = None\nimport osnet_edge.visualize\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    from osnet_edge import build_model, save_checkpoint

    return save_checkpoint(build_model("osnet_x0_25", input_size=SIZE), tmp_path_factory.mktemp("ckpt") / "x.pth")


def test_osnet_eval_visualize(data, checkpoint, tmp_path, capsys):
    from osnet_edge.training.cli import eval_main

    out = tmp_path / "pics"
    rc = eval_main(["--data", f"market1501:{data}", "--weights", str(checkpoint), "--threads", "1", "--no-progress",
                    "--json", str(tmp_path / "eval.json"), "--visualize", str(out), "--visualize-k", "4",
                    "--visualize-n", "3"])
    text = capsys.readouterr().out
    assert rc == 0, text
    pics = sorted(out.glob("q*.png"))
    assert len(pics) == 3 and f"wrote 3 retrieval pictures (top-4) to {out}" in text
    runs = _border_runs(cv2.imread(str(pics[0])), vis.HEADER + 1)
    assert len(runs) == 1 + 4 and runs[0][0] == "black"
    assert (out / "cmc.png").is_file() and (tmp_path / "eval.png").is_file() and (tmp_path / "eval.json").is_file()


@pytest.mark.parametrize("make_bad", [lambda t: t / "f" / "pics", lambda t: t / "f"])
def test_osnet_eval_unwritable_visualize_folder(data, checkpoint, tmp_path, capsys, make_bad):
    from osnet_edge.training.cli import eval_main

    (tmp_path / "f").write_text("a file where a folder should be")
    bad = make_bad(tmp_path)
    rc = eval_main(["--data", f"market1501:{data}", "--weights", str(checkpoint), "--no-progress",
                    "--json", str(tmp_path / "eval.json"), "--visualize", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and err.startswith("osnet-eval: error: --visualize")
    assert str(bad) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # nothing written, not even the JSON
