"""The cross-camera gallery: entries, exact ranking = osnet_edge.evaluation's, filters, model identity, the
CLI on crops folders and on a video + tracks, and reliability (SIGKILL during add, two writers, bad files)."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("lancedb")

from osnet_edge.evaluation import compute_distance_matrix, evaluate_rank  # noqa: E402
from osnet_edge.gallery import Entry, Gallery, GalleryError, ModelIdentity, Query, track_entry  # noqa: E402
from osnet_edge.gallery.cli import main as gallery_main  # noqa: E402

DIM = 16
IDENT = ModelIdentity("osnet_x0_25", 0.25, (64, 32), DIM, "fp32", "sha-a")


def unit(rng, n, dim=DIM):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_track_entry_is_the_renormalised_mean():
    rng = np.random.default_rng(0)
    f = unit(rng, 5)
    e = track_entry(f, "cam1", 7, [3, 9, 5], "thumb.jpg")
    want = f.mean(0) / np.linalg.norm(f.mean(0))
    assert np.allclose(e.vector, want, atol=1e-6) and abs(np.linalg.norm(e.vector) - 1) < 1e-6
    assert (e.camera, e.track, e.t_first, e.t_last, e.crops, e.kind) == ("cam1", 7, 3.0, 9.0, 5, "track")
    with pytest.raises(GalleryError, match="camera cam1 track 7: row 1 is all zeros"):
        track_entry(np.array([[1, 0], [0, 0]], np.float32), "cam1", 7, [0, 1])


def test_exact_ranking_equals_evaluation(tmp_path):
    """Same embeddings: the gallery's per-query order is osnet_edge.evaluation's (argsort of its distances) with
    the query's camera left out, and rank-1 / mAP from the gallery's scores equal evaluate_rank's."""
    rng = np.random.default_rng(1)
    ng, nq = 300, 25
    gf, qf = unit(rng, ng), unit(rng, nq)
    g_pids, q_pids = rng.integers(0, 30, ng), rng.integers(0, 30, nq)
    g_cams, q_cams = rng.integers(0, 4, ng), rng.integers(0, 4, nq)
    g = Gallery(tmp_path / "g", IDENT)
    g.add_entries([Entry(v, f"c{c}", int(p), 0.0, 1.0, id=i) for i, (v, c, p) in enumerate(zip(gf, g_cams, g_pids))])
    dist = compute_distance_matrix(qf, gf)
    matches = g.search([Query(f"q{i}", f"c{c}", v) for i, (v, c) in enumerate(zip(qf, q_cams))], k=ng)
    for i, ms in enumerate(matches):
        order = np.argsort(dist[i], kind="stable")
        want = order[g_cams[order] != q_cams[i]]
        assert [m.id for m in ms] == want.tolist()
        assert np.allclose([m.score for m in ms], 1 - dist[i, want] / 2, atol=1e-5)
    # cross-camera protocol: a gallery of other cameras' entries only, distances from the gallery's scores
    gallery_dist = np.full((nq, ng), np.inf, np.float32)
    for i, ms in enumerate(matches):
        for m in ms:
            gallery_dist[i, m.id] = 2 - 2 * m.score
    other = gallery_dist.copy()
    other[~np.isfinite(other)] = 1e9  # same-camera items: never ranked, as the gallery excludes them
    masked = dist.copy()
    masked[g_cams[None, :] == q_cams[:, None]] = 1e9
    cmc_g, map_g = evaluate_rank(other, q_pids, g_pids, q_cams, g_cams)
    cmc_e, map_e = evaluate_rank(masked, q_pids, g_pids, q_cams, g_cams)
    assert cmc_g[0] == cmc_e[0] and abs(map_g - map_e) < 1e-9


def test_filters_cameras_and_time_window(tmp_path):
    rng = np.random.default_rng(2)
    x = unit(rng, 40)
    g = Gallery(tmp_path / "g", IDENT)
    g.add_entries([Entry(v, f"c{i % 4}", i, float(10 * i), float(10 * i + 5), id=i) for i, v in enumerate(x)])
    q = Query("q", "c0", x[0])
    got = g.search([q], k=40, after=100, before=200)[0]
    assert got and all(m.camera != "c0" and m.t_last >= 100 and m.t_first <= 200 for m in got)
    assert {m.id for m in got} == {i for i in range(40) if i % 4 and 10 * i + 5 >= 100 and 10 * i <= 200}
    assert {m.camera for m in g.search([q], k=40, cameras=["c2"])[0]} == {"c2"}
    same = g.search([q], k=1, same_camera=True)[0]
    assert same[0].id == 0 and same[0].score == pytest.approx(1.0, abs=1e-5)
    st = g.stats()
    assert st["entries"] == 40 and st["cameras"]["c1"] == {"entries": 10, "tracks": 10}


def test_model_identity_is_stored_and_enforced(tmp_path):
    g = Gallery(tmp_path / "g", IDENT)
    g.add_entries([Entry(unit(np.random.default_rng(3), 1)[0], "c1", 1, 0, 1)])
    assert Gallery(tmp_path / "g").identity == IDENT  # reopened: read from the table
    for other in (ModelIdentity("osnet_x0_25", 0.25, (64, 32), DIM, "int8", "sha-a"),
                  ModelIdentity("osnet_x0_25", 0.25, (128, 64), DIM, "fp32", "sha-a"),
                  ModelIdentity("osnet_x0_25", 0.25, (64, 32), DIM, "fp32", "sha-b")):
        with pytest.raises(GalleryError) as err:
            Gallery(tmp_path / "g", other)
        msg = str(err.value)
        assert "\n" not in msg and IDENT.describe() in msg and other.describe() in msg


# --------------------------------------------------------------------------- reliability

_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from osnet_edge.gallery import Entry, Gallery, ModelIdentity
    path, start, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    g = Gallery(path, ModelIdentity("osnet_x0_25", 0.25, (64, 32), 16, "fp32", "sha-a"))
    rng = np.random.default_rng(start)
    for b in range(batches):
        x = rng.standard_normal((200, 16)).astype(np.float32)
        ids = range(start + 200 * b, start + 200 * (b + 1))
        g.add_entries([Entry(v / np.linalg.norm(v), "c1", i, 0, 1, id=i) for v, i in zip(x, ids)])
        print("ack", ids[-1], flush=True)
""")


def _writer(path, start, batches):
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(start), str(batches)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ids(path):
    return set(Gallery(path).store.rows(columns=("id",)).column("id").to_pylist())


def test_sigkill_during_add_keeps_every_acknowledged_entry(tmp_path):
    path = tmp_path / "g"
    for kill_after in (2, 5):
        p = _writer(path, 10**6 * kill_after, 1000)
        acked = []
        for line in p.stdout:
            acked.append(int(line.split()[1]))
            if len(acked) == kill_after:
                break
        time.sleep(0.05)  # inside the next add
        p.send_signal(signal.SIGKILL)
        acked += [int(ln.split()[1]) for ln in p.communicate()[0].split("\n") if ln.startswith("ack")]
        assert p.returncode == -signal.SIGKILL
        ids = _ids(path)  # readable, and every acknowledged batch is whole
        start = 10**6 * kill_after
        assert set(range(start, max(acked) + 1)) <= ids
        assert len(ids & set(range(start, start + 200 * 1000))) % 200 == 0  # no half batch
    g = Gallery(path, IDENT)
    g.add_entries([Entry(unit(np.random.default_rng(4), 1)[0], "c2", 1, 0, 1)])  # still writable


def test_two_processes_add_at_once(tmp_path):
    """LanceDB appends from two processes both commit (a conflicting commit is retried): nothing is refused
    and nothing lost."""
    path = tmp_path / "g"
    procs = [_writer(path, s, 6) for s in (0, 10**6)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.count("ack") == 6
    assert _ids(path) == set(range(1200)) | set(range(10**6, 10**6 + 1200))


def test_bad_database_paths_are_refused_in_one_line(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"SQLite format 3\0" + b"\0" * 100)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_bytes(b"x")
    g = Gallery(tmp_path / "g", IDENT)
    g.add_entries([Entry(unit(np.random.default_rng(5), 1)[0], "c1", 1, 0, 1)])
    import lancedb
    import pyarrow as pa

    other = tmp_path / "other"
    lancedb.connect(str(other)).create_table("entries", data=pa.table({"a": [1, 2]}))
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(tmp_path / "g", broken)
    for m in (broken / "entries.lance" / "_versions").iterdir():
        m.write_bytes(b"\x00garbage" * 10)
    cases = {junk: "is a file, not a gallery", foreign: "folder of other files", other: "not written by osnet-gallery",
             broken: "cannot be read", tmp_path / "missing": "not found"}
    for path, words in cases.items():
        with pytest.raises(GalleryError) as err:
            Gallery(path, create=False)
        assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    assert junk.read_bytes().startswith(b"SQLite")  # refused, not overwritten
    with pytest.raises(GalleryError, match="is a file"):
        Gallery(junk, IDENT)


def test_missing_client_is_one_line_and_the_runtime_imports_without_it(tmp_path):
    code = textwrap.dedent("""
        import sys
        class NoLance:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("lancedb", "pyarrow"):
                    raise ModuleNotFoundError(f"No module named {name!r}")
        sys.meta_path.insert(0, NoLance())
        import osnet_edge, osnet_edge.gallery
        from osnet_edge.gallery.cli import main
        sys.exit(main(["stats", "--db", sys.argv[1]]))
    """)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "g")], capture_output=True, text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-2000:]  # a missing package: a failure
    assert "pip install 'osnet-edge[gallery]'" in lines[0] and "'lancedb'" in lines[0]


# --------------------------------------------------------------------------- the CLI, with a real artifact


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The test ONNX export, and a copy whose metadata names other weights (an incompatible model)."""
    onnx = pytest.importorskip("onnx")
    from test_runtime_artifacts import onnx_path

    from osnet_edge.metadata import META_KEY, ModelMeta

    a = onnx_path()
    m = onnx.load(str(a))
    for p in m.metadata_props:
        if p.key == META_KEY:
            meta = ModelMeta.from_json(p.value)
            meta.provenance = dict(meta.provenance, sha256="0" * 64, weights="other.pth")
            p.value = meta.to_json()
    b = tmp_path_factory.mktemp("other") / "other.onnx"
    onnx.save(m, str(b))
    return a, b


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    from osnet_edge.training.synthetic_dataset import make_market_dataset

    root = tmp_path_factory.mktemp("market") / "m"
    make_market_dataset(root, num_ids=12, images_per_id=6, cams=2, seed=5, size=(64, 32))
    return root


def test_cli_add_search_stats_on_crops_folders(tmp_path, artifacts, market, capsys):
    model, other = artifacts
    db = tmp_path / "site"
    assert gallery_main(["add", "--db", str(db), "--model", str(model), "--per", "crop",
                         str(market / "bounding_box_test"), "--no-progress"]) == 0
    n_files = len(list((market / "bounding_box_test").glob("*.jpg")))
    assert f"+{n_files} entries" in capsys.readouterr().out
    out = tmp_path / "hits.json"
    assert gallery_main(["search", "--db", str(db), "--model", str(model), str(market / "query"), "--top", "3",
                         "--json", str(out), "--png", str(tmp_path / "png"), "--no-progress"]) == 0
    doc = json.loads(out.read_text())
    assert doc and all(len(q["matches"]) == 3 for q in doc)
    for q in doc:
        assert all(m["camera"] != q["camera"] for m in q["matches"])  # the query's own camera is excluded
        assert set(q["matches"][0]) >= {"track", "camera", "score"}
        assert [m["score"] for m in q["matches"]] == sorted((m["score"] for m in q["matches"]), reverse=True)
    assert len(list((tmp_path / "png").glob("*.png"))) == len(doc)
    assert gallery_main(["stats", "--db", str(db)]) == 0
    assert f"{n_files} entries" in capsys.readouterr().out
    for cmd in (["add", "--db", str(db), "--model", str(other), str(market / "query")],
                ["search", "--db", str(db), "--model", str(other), str(market / "query")]):
        assert gallery_main(cmd) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(other) in err[0] and "osnet_x0_25 64x32 fp32" in err[0], err
    assert gallery_main(["stats", "--db", str(db)]) == 0 and f"{n_files} entries" in capsys.readouterr().out


def test_cross_camera_metrics_through_gallery_equal_osnet_eval(tmp_path, artifacts, market):
    """Per-crop gallery of bounding_box_test, the query folder searched over all cameras but its own: rank-1 and
    mAP from the gallery's ranking equal osnet_edge.evaluation.evaluate's on the same artifact."""
    from osnet_edge.evaluation import evaluate
    from osnet_edge.gallery.sources import crop_files
    from osnet_edge.training.datasets import market1501

    model, _ = artifacts
    ds = market1501(market, train=False)
    ref = evaluate(str(model), ds, progress=False)
    g = Gallery(tmp_path / "g", str(model))
    g.add_source(market / "bounding_box_test", per="crop", progress=False)
    queries = g.queries_from_crops(crop_files(market / "query"), per="crop")
    matches = g.search(queries, k=g.store.count(), same_camera=True)
    import os

    paths = [os.path.realpath(s.path) for s in ds.gallery]
    dist = np.zeros((len(queries), len(paths)), np.float32)
    by_path = {p: j for j, p in enumerate(paths)}
    for i, ms in enumerate(matches):
        for m in ms:
            dist[i, by_path[os.path.realpath(m.thumbnail)]] = 2 - 2 * m.score
    q_index = {os.path.realpath(s.path): s for s in ds.query}
    qs = [q_index[os.path.realpath(q.image)] for q in queries]
    cmc, mAP = evaluate_rank(dist, [s.pid for s in qs], [s.pid for s in ds.gallery], [s.camid for s in qs],
                             [s.camid for s in ds.gallery])
    assert cmc[0] == pytest.approx(ref.rank(1), abs=1e-6) and mAP == pytest.approx(ref.mAP, abs=1e-5)


def test_cli_add_video_with_tracks(tmp_path, artifacts, capsys):
    import cv2

    model, _ = artifacts
    video = tmp_path / "cam.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(6)
    rows = []
    for f in range(1, 21):
        frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        w.write(frame)
        rows.append(f"{f},1,{10 + f},10,30,60,1,-1,-1,-1")
        if f <= 12:
            rows.append(f"{f},2,100,20,30,60,1,-1,-1,-1")
    w.release()
    tracks = tmp_path / "tracks.txt"
    tracks.write_text("\n".join(rows) + "\n")
    db = tmp_path / "g"
    assert gallery_main(["add", "--db", str(db), "--model", str(model), str(video), "--tracks", str(tracks),
                         "--no-progress"]) == 0
    assert "+2 entries (2 tracks" in capsys.readouterr().out
    st = Gallery(db).stats()
    assert st["cameras"] == {"cam": {"entries": 2, "tracks": 2}}
    assert st["time"] == [pytest.approx(0.1), pytest.approx(2.0)]  # frames 1..20 at the video's 10 fps
    assert len(list((db / "thumbnails" / "cam").glob("*.jpg"))) == 2
    assert gallery_main(["search", "--db", str(db), "--model", str(model), "cam:2", "--same-camera",
                         "--json", str(tmp_path / "t.json")]) == 0
    hits = json.loads((tmp_path / "t.json").read_text())[0]["matches"]
    assert hits[0]["track"] == 2 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    (tmp_path / "dets.txt").write_text("1,-1,10,10,30,60,1\n")
    assert gallery_main(["add", "--db", str(db), "--model", str(model), str(video), "--tracks",
                         str(tmp_path / "dets.txt")]) == 1
    assert "detections file" in capsys.readouterr().err


def test_tracker_example_adds_its_tracks_to_a_gallery(tmp_path, artifacts):
    import importlib.util
    from pathlib import Path

    import cv2

    model, _ = artifacts
    video = tmp_path / "gate.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rows = []
    for f in range(1, 16):
        frame = np.full((120, 160, 3), 90, np.uint8)
        cv2.rectangle(frame, (10 + 2 * f, 10), (40 + 2 * f, 80), (0, 0, 230), -1)  # one red walker
        w.write(frame)
        rows.append(f"{f},-1,{10 + 2 * f},10,30,70,0.9")
    w.release()
    (tmp_path / "det.txt").write_text("\n".join(rows) + "\n")
    spec = importlib.util.spec_from_file_location("track_example", Path(__file__).parents[1] / "examples" / "track.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.track_video(video, tmp_path / "det.txt", model, tmp_path / "tracks.txt", progress=False,
                        gallery=str(tmp_path / "g"))
    assert r["gallery"] == {"tracks": r["tracks"], "entries": r["tracks"]} and r["tracks"] >= 1
    st = Gallery(tmp_path / "g").stats()
    assert st["cameras"]["gate"]["tracks"] == r["tracks"] and st["crops"] == r["detections"]
    assert st["time"] == [pytest.approx(0.1), pytest.approx(1.5)]


def test_approximate_index_keeps_filters_and_finds_planted_matches(tmp_path, capsys):
    rng = np.random.default_rng(7)
    x = unit(rng, 3000)
    g = Gallery(tmp_path / "g", IDENT)
    g.add_entries([Entry(v, f"c{i % 3}", i, float(i), float(i), id=i) for i, v in enumerate(x)])
    small = Gallery(tmp_path / "small", IDENT)
    small.add_entries([Entry(x[0], "c0", 0, 0, 0)])
    assert gallery_main(["index", "--db", str(tmp_path / "small")]) == 1
    assert "needs at least 1024" in capsys.readouterr().err
    assert gallery_main(["index", "--db", str(tmp_path / "g")]) == 0
    assert Gallery(tmp_path / "g").stats()["index"]["indexed"] == 3000
    # a query near entry i (another camera than the query's): found first, under the filter
    qs = [Query(f"q{i}", "c0", x[i] + 0.05 * unit(rng, 1)[0]) for i in (1, 2, 4, 5, 7)]
    for q, ms, want in zip(qs, g.search(qs, k=5, after=0, before=2000), (1, 2, 4, 5, 7)):
        assert ms[0].id == want and all(m.camera != "c0" and m.t_first <= 2000 for m in ms)
