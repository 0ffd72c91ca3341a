"""vtest.avi's two pseudo-cameras (osnet-crops: query/ = cam1, the earlier half of each walk; bounding_box_test/ =
cam2, the later half): cross-camera rank-1 / mAP through the gallery (per-crop entries of cam2, exact search,
the query's camera excluded) against osnet_edge.evaluation.evaluate (what osnet-eval prints) on the same model.

    .venv/bin/python benchmarks/results/gallery/vtest_equivalence.py /work/data/vtest_crops MODEL.onnx OUT.json
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from osnet_edge.evaluation import evaluate, evaluate_rank
from osnet_edge.gallery import Gallery
from osnet_edge.gallery.sources import crop_files
from osnet_edge.training.datasets import market1501

root, model, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
ds = market1501(root, train=False)
ref = evaluate(model, ds, progress=False)
with tempfile.TemporaryDirectory(dir="/work/data/gallery") as d:
    g = Gallery(Path(d) / "g", model)
    g.add_source(root / "bounding_box_test", camera="cam2", per="crop", progress=False)
    queries = g.queries_from_crops(crop_files(root / "query"), camera="cam1", per="crop")
    matches = g.search(queries, k=g.store.count(), exact=True)  # default: other cameras than the query's
index = {str(Path(s.path).resolve()): j for j, s in enumerate(ds.gallery)}
dist = np.full((len(queries), len(ds.gallery)), 4.0, np.float32)
for i, ms in enumerate(matches):
    for m in ms:
        dist[i, index[m.thumbnail]] = 2 - 2 * m.score
qs = {str(Path(s.path).resolve()): s for s in ds.query}
qs = [qs[str(Path(q.image).resolve())] for q in queries]
cmc, mAP = evaluate_rank(dist, [s.pid for s in qs], [s.pid for s in ds.gallery], [s.camid for s in qs],
                         [s.camid for s in ds.gallery])
res = {"model": model, "crops": str(root), "num_query": len(queries), "num_gallery": len(ds.gallery),
       "osnet_eval": {"rank1": ref.rank(1), "mAP": ref.mAP},
       "gallery": {"rank1": float(cmc[0]), "mAP": float(mAP)},
       "equal": bool(abs(cmc[0] - ref.rank(1)) < 1e-6 and abs(mAP - ref.mAP) < 1e-6)}
print(json.dumps(res, indent=1))
Path(out).write_text(json.dumps(res, indent=1) + "\n")
