"""Real embeddings for the recall measurement: the query/ and bounding_box_test/ crops of an osnet-crops folder
(vtest.avi's two pseudo-cameras) embedded by a model artifact, saved as an .npz (query, gallery, q_pids, g_pids).

    .venv/bin/python benchmarks/results/gallery/make_real.py /work/data/vtest_crops MODEL.onnx real.npz
"""
import sys
from pathlib import Path

import numpy as np

from osnet_edge import Embedder
from osnet_edge.evaluation import extract_features
from osnet_edge.gallery.sources import crop_files, parse_crop_name

root, model, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
emb = Embedder(model)
parts = {}
for split, key in (("query", "query"), ("bounding_box_test", "gallery")):
    files = crop_files(root / split)
    parts[key] = extract_features(emb, files, desc=split)
    parts[key[0] + "_pids"] = np.array([parse_crop_name(f)[0] for f in files])
np.savez(out, **parts)
print({k: v.shape for k, v in parts.items()})
