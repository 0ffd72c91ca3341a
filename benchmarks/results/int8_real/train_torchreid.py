"""Train an OSNet (osnet_x0_25 by default) with torchreid 0.2.5's OWN model code and losses on the osnet-crops
tracklets of vtest.avi.

The model (models/osnet.py), CrossEntropyLoss (label smoothing) and TripletLoss (batch-hard) and the
RandomIdentitySampler are torchreid's source files, read from its sdist (.cache/torchreid-0.2.5.tar.gz, as
tests/conftest.py does) and run as they are; only torchvision's transforms are replaced by their cv2
equivalents (Resize, RandomHorizontalFlip, Random2DTranslation: enlarge 1.125x and crop, p=0.5; ImageNet
normalisation), since torchvision is not installed beside this torch. The optimizer/scheduler are what
torchreid's build_optimizer('amsgrad') / build_lr_scheduler('cosine') construct.

    nice -n 5 .venv/bin/python benchmarks/results/int8_real/train_torchreid.py --data /work/data/vtest_crops \
        --loss triplet --epochs 60 --out /work/data/int8_torchreid/tr_tri

The checkpoint is torchreid's state_dict (what users of torchreid have); osnet-export --weights reads it as-is.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
SDIST = ROOT / ".cache" / "torchreid-0.2.5.tar.gz"
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def torchreid_module(relpath: str):
    with tarfile.open(SDIST) as tar:
        src = tar.extractfile(f"torchreid-0.2.5/torchreid/reid/{relpath}").read().decode()
    spec = importlib.util.spec_from_loader("torchreid_" + relpath.replace("/", "_")[:-3], loader=None)
    mod = importlib.util.module_from_spec(spec)
    exec(compile(src, f"torchreid/{relpath}", "exec"), mod.__dict__)
    return mod


def transform(img_bgr, h, w, rng: random.Random):
    """torchreid's ['random_flip', 'random_crop'] train transforms, in its order, with cv2 for PIL."""
    img = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.uniform(0, 1) > 0.5:
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        nw, nh = int(round(w * 1.125)), int(round(h * 1.125))
        img = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=cv2.INTER_LINEAR)
        x1, y1 = int(round(rng.uniform(0, nw - w))), int(round(rng.uniform(0, nh - h)))
        img = img[y1:y1 + h, x1:x1 + w]
    x = (img.astype(np.float32) / 255.0 - MEAN) / STD
    return x.transpose(2, 0, 1).astype(np.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="osnet-crops / Market-1501 root")
    p.add_argument("--loss", choices=["softmax", "triplet"], default="triplet")
    p.add_argument("--arch", default="osnet_x0_25", help="a constructor of torchreid's models/osnet.py or osnet_ain.py")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--imgsz", type=int, nargs=2, default=(256, 128))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    random.seed(a.seed), np.random.seed(a.seed), torch.manual_seed(a.seed)
    osnet = torchreid_module("models/osnet_ain.py" if a.arch.startswith("osnet_ain") else "models/osnet.py")
    ce_mod = torchreid_module("losses/cross_entropy_loss.py")
    tri_mod = torchreid_module("losses/hard_mine_triplet_loss.py")
    sampler_mod = torchreid_module("data/sampler.py")

    from osnet_edge.calibration import from_market

    train = from_market(a.data, "train", n=None, progress=False)
    pids = sorted(set(train.pids.tolist()))
    label = {q: i for i, q in enumerate(pids)}
    data_source = [(i, label[q], 0, 0) for i, q in enumerate(train.pids.tolist())]
    h, w = a.imgsz
    model = getattr(osnet, a.arch)(num_classes=len(pids), loss=a.loss, pretrained=False)
    ce = ce_mod.CrossEntropyLoss(num_classes=len(pids), eps=0.1, use_gpu=False, label_smooth=True)
    tri = tri_mod.TripletLoss(margin=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=5e-4, betas=(0.9, 0.999), amsgrad=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
    sampler = sampler_mod.RandomIdentitySampler(data_source, batch_size=32, num_instances=4)
    rng = random.Random(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = []
    t0 = time.time()
    seen = 0
    for epoch in range(a.epochs):
        model.train()
        idx = list(iter(sampler))
        losses = []
        for s in range(0, len(idx) - 31, 32):  # drop_last=True, as torchreid's train loader
            b = idx[s:s + 32]
            x = torch.from_numpy(np.stack([transform(train.crops[i], h, w, rng) for i in b]))
            y = torch.tensor([data_source[i][1] for i in b])
            if a.loss == "triplet":
                logits, feats = model(x)
                loss = ce(logits, y) + tri(feats, y)  # torchreid's ImageTripletEngine: weight_t=1, weight_x=1
            else:
                loss = ce(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
            seen += len(b)
        sched.step()
        el = time.time() - t0
        log.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(el, 1),
                    "img_per_s": round(seen / el, 1), "loadavg": open("/proc/loadavg").read().split()[:3]})
        print(json.dumps(log[-1]), flush=True)
    torch.save(model.state_dict(), out / "model.pth")
    # FP32 retrieval on the full test split (the project's evaluation), to put the model beside the others
    from osnet_edge import build_model
    from osnet_edge.evaluation import evaluate_rank
    from osnet_edge.export.fidelity import embedder_for

    m = build_model(a.arch, weights=str(out / "model.pth"), input_size=(h, w)).eval()
    emb = embedder_for(m)
    q = from_market(a.data, "query", n=None, progress=False)
    g = from_market(a.data, "gallery", n=None, progress=False)
    fq, fg = emb(q.crops), emb(g.crops)
    cmc, mAP = evaluate_rank(1 - fq @ fg.T, q.pids, g.pids, q.camids, g.camids)
    res = {"arch": a.arch, "loss": a.loss, "epochs": a.epochs, "imgsz": [h, w], "train_ids": len(pids),
           "train_crops": len(train),
           "seconds": round(time.time() - t0, 1), "mAP": float(mAP), "rank1": float(cmc[0]), "log": log}
    (out / "train.json").write_text(json.dumps(res, indent=1))
    print(f"done: mAP {100 * mAP:.1f} rank-1 {100 * cmc[0]:.1f} in {res['seconds'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
