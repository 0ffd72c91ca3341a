"""FP32 / FP16 OpenVINO IRs of a re-ID-trained checkpoint against PyTorch FP32 on held-out real crops, executed
as the artifact declares (f32, what osnet-edge now pins) and as OpenVINO's CPU plugin would by default on an
AVX-512 BF16 / AMX CPU (bf16).

    python benchmarks/results/precision/measure_precision.py CHECKPOINT DATA_ROOT [OUT.json]

DATA_ROOT: a Market-1501-layout folder (e.g. osnet-crops output); its query + bounding_box_test crops are used.
"""
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from osnet_edge import Embedder, build_model
from osnet_edge.benchmarks.probe import machine_info
from osnet_edge.export import export_model
from osnet_edge.export.fidelity_metrics import embedding_agreement
from osnet_edge.export.verify import reference_embeddings


def main(ckpt, root, out=None):
    model = build_model(weights=ckpt).eval()
    files = sorted(Path(root, "query").glob("*.jpg")) + sorted(Path(root, "bounding_box_test").glob("*.jpg"))
    crops = [cv2.imread(str(f)) for f in files]
    ref = reference_embeddings(model, crops)
    machine = machine_info()
    result = {"checkpoint": str(ckpt), "crops": len(crops), "data": str(root), "cpu": machine["cpu"],
              "isa_class": machine["isa_class"], "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for half in (False, True):
            # export unverified: the point is to measure each execution precision, not to gate on one
            res = export_model(model, "openvino", tmp, half=half, verify=False, quiet=True)
            for precision in ("fp32", "bf16"):
                try:
                    emb = Embedder(res.path, precision=None if precision == "fp32" else precision)
                except Exception as exc:  # e.g. bf16 on a CPU without it
                    result["rows"].append({"ir": res.meta.precision, "executes": precision, "error": str(exc)})
                    continue
                with emb:
                    a = embedding_agreement(ref, emb.embed(crops))
                    row = {"ir": res.meta.precision, "executes": emb.execution_precision,
                           "cosine_min": a["cosine_min"], "cosine_mean": a["cosine_mean"],
                           "top1_agreement": a["top1_agreement"], "top5_agreement": a["top5_agreement"]}
                result["rows"].append(row)
                print(f"{row['ir']} IR executing {row['executes']}: cosine min {row['cosine_min']:.6f} "
                      f"mean {row['cosine_mean']:.6f}  top-1 {100 * row['top1_agreement']:.1f}%  "
                      f"top-5 {100 * row['top5_agreement']:.1f}%", flush=True)
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(*sys.argv[1:4])
