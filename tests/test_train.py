"""Training core: losses, schedules, recipes, CLI flags, exact resume, fixbase, DML, and the end-to-end run
(synthetic Market-layout data -> train osnet_x0_25 on CPU -> resume -> evaluate -> export ONNX -> evaluate)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from osnet_edge.errors import CheckpointError, OsnetEdgeError
from osnet_edge.training.losses import CrossEntropyLabelSmooth, ReidLoss, TripletLoss, mutual_kl
from osnet_edge.training.optim import EpochScheduler, build_optimizer, lr_factor
from osnet_edge.training.recipes import make_config

SIZE = (128, 64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """4 train identities x 8 images: cheap enough to train several times."""
    from osnet_edge.training.synthetic_dataset import make_market_dataset

    root = tmp_path_factory.mktemp("tiny")
    make_market_dataset(root, num_ids=8, images_per_id=8, cams=2, size=SIZE, seed=1)
    return root


def _cfg(data_root, out, **kw):
    base = dict(data=[f"market1501:{data_root}"], arch="osnet_x0_25", input_size=SIZE, epochs=2, batch_size=16,
                optimizer="amsgrad", lr=0.003, milestones=(100,), augment=("flip", "crop", "erase"), eval_every=0,
                workers=0, threads=1, output=str(out), progress=False, seed=5)
    base.update(kw)
    return make_config(**base)


# --------------------------------------------------------------------------- losses


def test_label_smoothing_cross_entropy():
    logits, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    assert CrossEntropyLabelSmooth(5, eps=0.0)(logits, y) == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    smooth = torch.full((6, 5), 0.1 / 5) + 0.9 * torch.nn.functional.one_hot(y, 5)
    expected = -(smooth * torch.log_softmax(logits, 1)).sum(1).mean()
    assert CrossEntropyLabelSmooth(5, eps=0.1)(logits, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_batch_hard_triplet_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(12, 8, generator=g), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    d = torch.cdist(f, f)
    expected = torch.stack([torch.relu(d[i][y == y[i]].max() - d[i][y != y[i]].min() + 0.3) for i in range(12)]).mean()
    assert TripletLoss(0.3)(f, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert TripletLoss(0.3)(f, torch.zeros(12, dtype=torch.long)).item() == 0.0  # no negatives: no triplets


def test_combined_loss_and_mutual_term():
    logits, feats, y = torch.randn(8, 4), torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    crit = ReidLoss(4, weight_x=1.0, weight_t=0.5)
    total, parts, _ = crit((logits, feats), y)
    assert total.item() == pytest.approx(parts["ce"].item() + 0.5 * parts["triplet"].item(), rel=1e-6)
    assert mutual_kl(logits, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert mutual_kl(logits, torch.randn(8, 4)).item() > 0
    _, parts, _ = crit((logits, feats), y, peer_logits=torch.randn(8, 4))
    assert "mutual" in parts


# --------------------------------------------------------------------------- schedules and recipes


def test_paper_recipes_and_schedules():
    s = make_config("paper-scratch")
    assert (s.optimizer, s.lr, s.epochs, s.milestones, s.batch_size, s.weight_decay) == \
           ("sgd", 0.065, 350, (150, 225, 300), 64, 5e-4)
    assert set(s.augment) == {"flip", "crop", "patch"} and s.label_smooth == 0.1
    f = make_config("paper-finetune", lr=0.001)  # flags override the recipe
    assert (f.optimizer, f.lr, f.epochs, f.fixbase_epochs, f.milestones) == ("amsgrad", 0.001, 150, 10, (60, 120))
    assert set(f.augment) == {"flip", "erase"}
    assert make_config("paper-dml").dml and make_config("paper-dml").weight_t > 0
    with pytest.raises(OsnetEdgeError, match="unknown recipe"):
        make_config("paper-magic")
    # multistep: x0.1 at 150/225/300
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = build_optimizer(params, "sgd", lr=0.065)
    sched = EpochScheduler(opt, "multistep", 350, (150, 225, 300))
    lrs = []
    for _ in range(350):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[149] == pytest.approx(0.065) and lrs[150] == pytest.approx(0.0065)
    assert lrs[225] == pytest.approx(0.00065) and lrs[349] == pytest.approx(0.000065)
    assert lr_factor(0, "cosine", 10) == 1 and lr_factor(10, "cosine", 10) == pytest.approx(0)
    assert lr_factor(0, "multistep", 10, (), warmup_epochs=5) == pytest.approx(0.01)
    assert isinstance(build_optimizer(params, "amsgrad", 0.0015), torch.optim.Adam)
    assert build_optimizer(params, "amsgrad", 0.0015).defaults["amsgrad"] is True


def test_cli_flags_override_recipe():
    from osnet_edge.training.cli import build_train_parser, config_from_args

    args = build_train_parser().parse_args(["--data", "market1501:/d", "--width", "0.3", "--recipe", "paper-finetune",
                                            "--epochs", "12", "--lr", "0.01", "--milestones", "4,8",
                                            "--augment", "flip,color_jitter", "--triplet-weight", "0.5"])
    cfg = config_from_args(args)
    assert (cfg.width, cfg.epochs, cfg.lr, cfg.milestones, cfg.optimizer) == (0.3, 12, 0.01, (4, 8), "amsgrad")
    assert cfg.augment == ("flip", "color_jitter") and cfg.weight_t == 0.5 and cfg.fixbase_epochs == 10


def test_help_shows_what_runs():
    from osnet_edge.training.cli import build_train_parser
    from osnet_edge.training.data import default_workers

    text = " ".join(build_train_parser().format_help().split())
    assert "(default: None)" not in text
    assert "--lr LR initial learning rate (default: 0.065)" in text and "(default: 150,225,300)" in text
    assert f"(default: {default_workers()}, from this machine's CPU cores)" in text


@pytest.mark.parametrize("cores, workers", [(1, 0), (2, 1), (3, 2), (16, 4)])
def test_loader_workers_sized_from_cores(monkeypatch, cores, workers):
    import os

    from osnet_edge.training.engine import as_run

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert as_run(make_config(data=["market1501:/d"])).workers == workers
    assert as_run(make_config(data=["market1501:/d"], workers=3)).workers == 3  # asked for: kept
    assert as_run(make_config(data=["market1501:/d"], lr=0.01)).recipe == "paper-scratch"
    assert as_run(make_config("paper-finetune", data=["market1501:/d"])).recipe == "paper-finetune"


# --------------------------------------------------------------------------- runs


def test_resume_continues_exactly(tiny, tmp_path):
    from osnet_edge.training.engine import train

    straight = train(_cfg(tiny, tmp_path / "a", epochs=2))
    first = train(_cfg(tiny, tmp_path / "b", epochs=1))
    resumed = train(_cfg(tiny, tmp_path / "b", epochs=2, resume=str(tmp_path / "b" / "checkpoint.pth")))
    a, b = straight["models"][0].state_dict(), resumed["models"][0].state_dict()
    assert first["history"][0]["loss"] == pytest.approx(straight["history"][0]["loss"], rel=1e-6)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)  # safe loader reads it all
    assert ckpt["epoch"] == 2 and ckpt["meta"]["arch"] == "osnet_x0_25" and ckpt["meta"]["input_size"] == list(SIZE)
    assert set(ckpt["rng"]) == {"torch", "cuda", "numpy", "python"}
    rows = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[1]["lr"]) > 0 and float(rows[1]["images_per_s"]) > 0
    with pytest.raises(CheckpointError, match="trained as osnet_x0_25"):
        train(_cfg(tiny, tmp_path / "c", arch="osnet_x0_5", resume=str(tmp_path / "b" / "checkpoint.pth")))
    with pytest.raises(CheckpointError, match="not a resumable checkpoint"):
        train(_cfg(tiny, tmp_path / "c", resume=str(tmp_path / "a" / "model-best.pth")))


def test_fixbase_freezes_backbone_and_dml_trains_two(tiny, tmp_path):
    from osnet_edge.models import build_model
    from osnet_edge.training.engine import train

    torch.manual_seed(5)  # the run seeds itself with seed 5 and builds the same initial network
    init = build_model("osnet_x0_25", num_classes=4, input_size=SIZE).state_dict()
    res = train(_cfg(tiny, tmp_path / "fb", epochs=1, fixbase_epochs=1, optimizer="sgd", lr=0.05))
    after = res["models"][0].state_dict()
    assert torch.equal(init["conv1.conv.weight"], after["conv1.conv.weight"])
    assert torch.equal(init["conv2.0.conv1.bn.running_mean"], after["conv2.0.conv1.bn.running_mean"])
    assert not torch.equal(init["classifier.weight"], after["classifier.weight"])

    res = train(_cfg(tiny, tmp_path / "dml", epochs=1, dml=True, weight_t=0.5, num_instances=4, eval_every=1))
    assert len(res["models"]) == 2 and "ensemble_mAP" in res["eval"] and "peer_mAP" in res["eval"]
    ckpt = torch.load(tmp_path / "dml" / "checkpoint.pth", weights_only=True)
    assert "peer_state_dict" in ckpt and ckpt["history"][0]["mutual"] > 0


def test_end_to_end_train_resume_evaluate_export(tmp_path):
    """Train osnet_x0_25 on rendered identities, resume, evaluate, export ONNX, evaluate the export."""
    from osnet_edge.evaluation import evaluate, evaluate_rank
    from osnet_edge.export import export_model
    from osnet_edge.models import build_model
    from osnet_edge.training.datasets import market1501
    from osnet_edge.training.engine import train
    from osnet_edge.training.synthetic_dataset import make_market_dataset

    data = tmp_path / "data"
    make_market_dataset(data, num_ids=32, images_per_id=8, cams=3, size=SIZE, num_distractors=6, num_junk=2, seed=3)
    run = tmp_path / "run"
    cfg = _cfg(data, run, epochs=7, augment=("flip", "crop"), seed=1)
    from dataclasses import replace

    train(replace(cfg, epochs=4))
    result = train(replace(cfg, resume=str(run / "checkpoint.pth")))
    assert [h["epoch"] for h in result["history"]] == list(range(1, 8))
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    for name in ("checkpoint.pth", "model-best.pth", "log.csv", "config.json", "curve.png"):
        assert (run / name).is_file(), name

    ds = market1501(data)
    qp, gp = np.array([s.pid for s in ds.query]), np.array([s.pid for s in ds.gallery])
    qc, gc = np.array([s.camid for s in ds.query]), np.array([s.camid for s in ds.gallery])
    rng = np.random.default_rng(0)
    chance = np.mean([evaluate_rank(rng.random((len(qp), len(gp))), qp, gp, qc, gc)[1] for _ in range(10)])

    torch_res = evaluate(run / "model-best.pth", ds, progress=False)  # the checkpoint through the Embedder
    assert torch_res.mAP == pytest.approx(result["best_mAP"], abs=1e-4)
    assert torch_res.mAP > 2 * chance + 0.05, (torch_res.mAP, chance)

    model = build_model(weights=str(run / "model-best.pth")).eval()  # the checkpoint carries its arch and size
    assert model.input_size == SIZE
    art = export_model(model, "onnx", tmp_path / "x025.onnx", quiet=True)
    onnx_res = evaluate(art.path, ds, progress=False)
    assert abs(onnx_res.mAP - torch_res.mAP) < 0.005
    assert abs(onnx_res.rank(1) - torch_res.rank(1)) <= 1.0 / len(ds.query) + 1e-9


def test_cli_train_and_eval(tiny, tmp_path, capsys):
    import json
    import shutil

    from osnet_edge.training.cli import eval_main, train_main

    out = tmp_path / "cli"
    rc = train_main(["--data", f"market1501:{tiny}", "--arch", "osnet_x0_25", "--input-size", "128", "64",
                     "--epochs", "1", "--batch-size", "16", "--optimizer", "amsgrad", "--lr", "0.003",
                     # no forked DataLoader worker here: forking this pytest process, which by now holds
                     # OpenVINO, ONNX Runtime, NNCF and torch.export threads, segfaulted it (osnet-train itself
                     # runs in a fresh process, where workers fork fine)
                     "--workers", "0", "--threads", "1", "--output", str(out), "--no-progress"])
    assert rc == 0 and (out / "model-best.pth").is_file()
    # what ran: no --recipe means TrainConfig's values, which are paper-scratch's; flags override them
    ran = json.loads((out / "config.json").read_text())
    assert ran["recipe"] == "paper-scratch" and ran["workers"] == 0 and ran["optimizer"] == "amsgrad"
    capsys.readouterr()
    # evaluation needs no training split: a test-only copy of the dataset is enough
    test_only = tmp_path / "test_only"
    for split in ("query", "bounding_box_test"):
        shutil.copytree(tiny / split, test_only / split)
    rc = eval_main(["--data", f"market1501:{test_only}", "--weights", str(out / "model-best.pth"), "--threads", "1",
                    "--json", str(tmp_path / "eval.json"), "--no-progress"])
    captured = capsys.readouterr()
    text = captured.out
    assert rc == 0 and "rank-1" in text and "mAP" in text and (tmp_path / "eval.png").is_file()
    assert "classifier" not in captured.err  # evaluation never needs the training classifier: nothing to say
    # where the weights came from, shown and recorded
    assert "model-best.pth sha256:" in text and "(osnet-train, epoch 1)" in text
    prov = json.loads((tmp_path / "eval.json").read_text())[0]["provenance"][str(out / "model-best.pth")]
    assert prov["trained"] is True and prov["init"] == "random init" and prov["data"] == [f"market1501:{tiny}"]
    assert train_main(["--data", f"market1501:{tmp_path / 'missing'}", "--output", str(out)]) == 1
    assert "folder not found" in capsys.readouterr().err


def test_torchrun_two_processes_on_cpu(tiny, tmp_path):
    """DistributedDataParallel through torchrun (gloo on CPU): both ranks step in lockstep, rank 0 writes."""
    import os
    import shutil
    import socket
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file() and not shutil.which("torchrun"):
        pytest.skip("torchrun not installed beside this Python")
    with socket.socket() as s:  # a free port: other test runs may share the machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [str(torchrun if torchrun.is_file() else shutil.which("torchrun")), "--nproc_per_node=2",
           f"--master_port={port}", "-m", "osnet_edge.training.cli", "train", "--data", f"market1501:{tiny}",
           "--arch", "osnet_x0_25", "--input-size", "128", "64", "--epochs", "1", "--batch-size", "8",
           "--optimizer", "amsgrad", "--lr", "0.003", "--workers", "0", "--threads", "1", "--output", str(out),
           "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "batch 8 x 2" in proc.stdout and proc.stdout.count("best mAP") == 1  # only rank 0 reports
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert len(rows) == 1 and rows[0]["mAP"]
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # DDP wrapper never leaks into files
