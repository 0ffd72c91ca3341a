"""The training loop: train(config) from Python, `osnet-train` from the shell, `torchrun` for several GPUs.

    from osnet_edge.training.engine import train
    from osnet_edge.training.recipes import make_config
    result = train(make_config("paper-scratch", data=["market1501:/data/market1501"], arch="osnet_x0_25",
                               epochs=350, output="runs/x025"))
    result["best_mAP"], result["best"]        # model-best.pth: weights + metadata for osnet-export

Each run folder holds checkpoint.pth (every epoch, atomically: model, optimizer, scheduler, AMP
scaler, epoch, RNG states -> --resume continues exactly), model-best.pth (best mAP, weights and
metadata only), log.csv (one row per epoch), config.json and curve.png.

Several GPUs: `torchrun --nproc_per_node=4 -m osnet_edge.training.cli train --data ...` (or
`torchrun --nproc_per_node=4 $(which osnet-train) ...`); the batch size is per GPU, rank 0 writes
the files and evaluates. On CPU, torchrun with the gloo backend works the same way.

Beside it: distributed.py (torchrun's processes), rng.py (the RNG states that make --resume exact) and
runlog.py (log.csv and curve.png).
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from ..checkpoint import save_checkpoint
from ..errors import CheckpointError, InputError
from .distributed import Dist
from .recipes import TrainConfig, make_config
from .rng import rng_state, seed_everything, set_rng_state
from .runlog import LOG_FIELDS, CsvLog, plot_curve, truncate_log


# --------------------------------------------------------------------------- pieces


def _load_datasets(cfg: TrainConfig):
    from .datasets import combine_train, format_stats, load_dataset

    if not cfg.data:
        raise InputError("no training data: give at least one --data NAME:PATH (e.g. market1501:/data/market1501)")
    train_sets = [load_dataset(spec, cfg.cam_pattern) for spec in cfg.data]
    eval_sets = ([load_dataset(spec, cfg.cam_pattern, train=False) for spec in cfg.eval_data]
                 if cfg.eval_data is not None
                 else [d for d in train_sets if d.query and d.gallery])
    samples = combine_train(train_sets)
    shown = train_sets + [d for d in eval_sets if d not in train_sets]
    return samples, eval_sets, format_stats(shown, samples)


def _build_models(cfg: TrainConfig, num_classes: int):
    from ..models import build_model

    loss = "triplet" if cfg.weight_t > 0 else "softmax"
    kwargs = dict(width=cfg.width, num_classes=num_classes, loss=loss, input_size=cfg.input_size,
                  weights=cfg.weights)
    models = [build_model(cfg.arch if cfg.width is None else None, **kwargs)]
    if cfg.dml:  # the peer starts from its own random init (the RNG has moved on), or the same weights
        models.append(build_model(cfg.arch if cfg.width is None else None, **kwargs))
    return models


def _sampler(cfg: TrainConfig, samples, dist: Dist):
    from .sampler import IdentityBatchSampler, RandomBatchSampler

    kind = cfg.sampler
    if kind == "auto":
        kind = "identity" if cfg.weight_t > 0 else "random"
    if kind == "identity":
        return IdentityBatchSampler([s.pid for s in samples], cfg.batch_size, cfg.num_instances, cfg.seed,
                                    dist.rank, dist.world_size)
    if kind == "random":
        return RandomBatchSampler(len(samples), cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
    raise InputError(f"unknown sampler {cfg.sampler!r}; choose auto, random or identity")


def _unwrap(m):
    return m.module if hasattr(m, "module") else m


# --------------------------------------------------------------------------- the loop


def train(config: TrainConfig | dict | None = None, **overrides) -> dict:
    """Train OSNet per `config` (a TrainConfig, a dict, or keyword overrides of the defaults).

    Returns {'best_mAP', 'best_epoch', 'best', 'last', 'output', 'history', 'eval'}; the
    checkpoints carry arch, width, input size and normalisation for the export layer.
    """
    if config is None:
        cfg = make_config(**overrides)
    elif isinstance(config, dict):
        cfg = make_config(**{**config, **overrides})
    else:
        from dataclasses import replace

        cfg = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if cfg.epochs < 1:
        raise InputError(f"epochs must be >= 1, got {cfg.epochs}")
    cfg = as_run(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    dist = Dist(cfg.device)
    out = Path(cfg.output)
    created = not out.exists()
    try:
        return _train(cfg, dist, out)
    except BaseException:
        # a run that failed before its first checkpoint leaves no folder behind (nothing in it to resume)
        if created and dist.main and out.is_dir() and not (out / "checkpoint.pth").exists():
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise


def _train(cfg: TrainConfig, dist: Dist, out: Path) -> dict:
    ckpt_path, best_path = out / "checkpoint.pth", out / "model-best.pth"

    # resume: read first, so a wrong file fails before any work
    state = None
    if cfg.resume:
        from ..checkpoint import _read

        state = _read(cfg.resume)
        if not isinstance(state, dict) or "optimizer" not in state or "epoch" not in state:
            raise CheckpointError(f"{cfg.resume} is not a resumable checkpoint (it lacks optimizer/epoch state); "
                                  f"use it as --weights to start a new run from its weights")

    seed_everything(cfg.seed)
    samples, eval_sets, stats = _load_datasets(cfg)
    num_classes = len({s.pid for s in samples})
    if dist.main:
        print(stats)
    models = _build_models(cfg, num_classes)
    base = models[0]
    init = dict(getattr(base, "provenance", None) or {})
    init_weights = (f"{init['weights']} sha256:{init['sha256']}" if init.get("sha256") else "random init")
    if state is not None:
        meta = state.get("meta") or {}
        if meta.get("arch") and meta["arch"] != base.arch:
            raise CheckpointError(f"{cfg.resume} was trained as {meta['arch']}, but this run builds {base.arch}")
        if state.get("num_classes") not in (None, num_classes):
            raise CheckpointError(f"{cfg.resume} was trained on {state['num_classes']} identities; the data given "
                                  f"now has {num_classes}: pass the same --data to resume")
        base.load_state_dict(state["state_dict"])
        if cfg.dml:
            if "peer_state_dict" not in state:
                raise CheckpointError(f"{cfg.resume} holds no peer network: it was not trained with --dml")
            models[1].load_state_dict(state["peer_state_dict"])
    for m in models:
        m.to(dist.device)

    from .losses import ReidLoss
    from .optim import EpochScheduler, build_optimizer, set_backbone_trainable

    criterion = ReidLoss(num_classes, cfg.weight_x, cfg.weight_t, cfg.margin, cfg.label_smooth, cfg.weight_ml)
    params = [{"params": list(m.parameters())} for m in models]
    optimizer = build_optimizer(params, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    scheduler = EpochScheduler(optimizer, cfg.schedule, cfg.epochs, cfg.milestones, cfg.gamma, cfg.warmup_epochs)
    use_amp = bool(cfg.amp) and dist.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, best, history = 0, {"mAP": -1.0, "epoch": 0}, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"])
        best = dict(state.get("best") or best)
        history = list(state.get("history") or [])
        set_rng_state(state["rng"])
        if dist.main:
            print(f"resumed from {cfg.resume} at epoch {start_epoch}/{cfg.epochs}")
    ddp_models = models
    if dist.enabled:
        ddp_models = [torch.nn.parallel.DistributedDataParallel(
            m, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
            find_unused_parameters=cfg.fixbase_epochs > 0) for m in models]

    from .data import TrainSet, make_loader

    trainset = TrainSet(samples, base.input_size, cfg.augment, cfg.augment_options, cfg.seed, dist.rank)
    sampler = _sampler(cfg, samples, dist)
    loader = make_loader(trainset, sampler, cfg.workers, pin_memory=dist.device.type == "cuda")
    if len(sampler) == 0:
        raise InputError(f"batch size {cfg.batch_size} leaves no full batch in {len(samples)} training images")
    if dist.main and cfg.fixbase_epochs >= cfg.epochs > start_epoch:
        print(f"note: --fixbase-epochs {cfg.fixbase_epochs} >= --epochs {cfg.epochs}: every epoch of this run trains "
              f"the classifier only, the backbone stays frozen (pass --fixbase-epochs N < {cfg.epochs})",
              file=sys.stderr)
    log = None
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)  # only now: bad data, weights or --resume leave no empty folder
        if state is not None:
            truncate_log(out / "log.csv", start_epoch)
        log = CsvLog(out / "log.csv", resume=state is not None)
        (out / "config.json").write_text(cfg.to_json())
        print(f"training {base.arch} ({base.input_size[0]}x{base.input_size[1]}) on {len(samples)} images / "
              f"{num_classes} identities, {cfg.epochs} epochs, batch {cfg.batch_size} x {dist.world_size} "
              f"on {dist.device}{' (AMP)' if use_amp else ''}; output in {out}"
              + (f"; epochs 1-{cfg.fixbase_epochs} train the classifier only (fixbase)"
                 if 0 < cfg.fixbase_epochs < cfg.epochs else ""))

    from tqdm import tqdm

    last_eval = {}
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        trainset.set_epoch(epoch)
        for m in models:
            m.train()
            set_backbone_trainable(m, cfg.open_layers, train_all=epoch >= cfg.fixbase_epochs)
        lr = optimizer.param_groups[0]["lr"]
        sums = {"loss": 0.0, "ce": 0.0, "triplet": 0.0, "mutual": 0.0, "correct": 0.0, "n": 0}
        t0 = time.time()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}" + (" [fixbase]" if epoch < cfg.fixbase_epochs else ""),
                   leave=False, disable=not (cfg.progress and dist.main), dynamic_ncols=True, unit="batch")
        for x, pids, _cams in bar:
            x = x.to(dist.device, non_blocking=True)
            pids = pids.to(dist.device, non_blocking=True)
            ctx = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
            with ctx:
                outputs = [m(x) for m in ddp_models]
            losses, logits0 = [], None
            for i, o in enumerate(outputs):
                peer = None
                if cfg.dml:
                    peer_out = outputs[1 - i]
                    peer = peer_out[0] if isinstance(peer_out, tuple) else peer_out
                loss_i, parts, logits = criterion(o, pids, peer)
                losses.append(loss_i)
                if i == 0:
                    logits0, parts0 = logits, parts
            loss = sum(losses)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch + 1}: the loss became {loss.item()} (lr {lr:g} too high?)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            n = len(pids)
            sums["n"] += n
            sums["loss"] += float(losses[0].detach()) * n
            for k, v in parts0.items():
                sums[k] += float(v) * n
            sums["correct"] += float((logits0.argmax(1) == pids).sum())
            elapsed = max(time.time() - t0, 1e-9)
            bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.3f}", acc=f"{sums['correct'] / sums['n']:.3f}",
                            lr=f"{lr:.2e}", img_s=f"{sums['n'] * dist.world_size / elapsed:.0f}")
        bar.close()
        scheduler.step()
        epoch_s = time.time() - t0
        means = dist.all_mean([sums[k] / max(sums["n"], 1) for k in ("loss", "ce", "triplet", "mutual", "correct")])
        row = {"epoch": epoch + 1, "lr": lr, "loss": means[0], "ce": means[1], "triplet": means[2],
               "mutual": means[3], "acc": means[4], "images_per_s": sums["n"] * dist.world_size / max(epoch_s, 1e-9),
               "epoch_s": epoch_s}

        do_eval = eval_sets and ((cfg.eval_every and (epoch + 1) % cfg.eval_every == 0) or epoch + 1 == cfg.epochs)
        if do_eval and dist.main:
            last_eval = _evaluate(models, eval_sets, cfg)
            row.update({k: v for k, v in last_eval.items() if k in LOG_FIELDS})
        if dist.main:
            improved = do_eval and row.get("mAP", -1) > best["mAP"]
            if improved:
                best = {"mAP": float(row["mAP"]), "epoch": epoch + 1}
            history.append({k: (float(v) if isinstance(v, (int, float)) else v) for k, v in row.items()})
            msg = (f"epoch {epoch + 1}/{cfg.epochs}  loss {row['loss']:.4f}  acc {100 * row['acc']:.1f}%  "
                   f"lr {lr:.2e}  {row['images_per_s']:.0f} img/s")
            if epoch < cfg.fixbase_epochs:
                msg += "  [fixbase: backbone frozen]"
            if "mAP" in row:
                msg += f"  | mAP {100 * row['mAP']:.1f}%  rank-1 {100 * row['rank1']:.1f}%"
            print(msg, flush=True)
            log.write(row)
            # what the saved weights are: osnet-edge artifacts made from them carry it on (ModelMeta.provenance)
            base.provenance = {"trained": True, "trained_by": "osnet-train", "init": init_weights,
                               "data": list(cfg.data), "recipe": cfg.recipe, "epoch": epoch + 1}
            if improved:  # weights + metadata only: what osnet-export and Embedder read
                extra = {"epoch": epoch + 1, "mAP": best["mAP"], "num_classes": num_classes}
                if cfg.dml:
                    extra["peer_state_dict"] = {k: v.detach().cpu() for k, v in models[1].state_dict().items()}
                save_checkpoint(base, best_path, **extra)
            _save_resumable(ckpt_path, base, models, optimizer, scheduler, scaler, epoch + 1, best, history,
                            cfg, num_classes)
            if cfg.keep_every and (epoch + 1) % cfg.keep_every == 0:
                import shutil

                shutil.copyfile(ckpt_path, out / f"checkpoint-epoch{epoch + 1:03d}.pth")
        dist.barrier()

    curve = None
    if dist.main and (out / "log.csv").is_file():
        curve = plot_curve(out / "log.csv", out / "curve.png", f"{base.arch} {', '.join(cfg.data)}")
        (out / "result.json").write_text(json.dumps({"best_mAP": best["mAP"], "best_epoch": best["epoch"],
                                                     "last_eval": last_eval}, indent=2))
    if dist.enabled:
        torch.distributed.destroy_process_group()
    return {"best_mAP": best["mAP"], "best_epoch": best["epoch"], "best": str(best_path) if best_path.exists() else None,
            "last": str(ckpt_path), "output": str(out), "history": history, "eval": last_eval,
            "curve": str(curve) if curve else None, "models": models, "rank": dist.rank}


def as_run(cfg: TrainConfig) -> TrainConfig:
    """The configuration as it runs, so config.json records it: loader workers sized from the CPU cores
    when not given, and without --recipe the recipe whose values TrainConfig's defaults are (paper-scratch)."""
    from dataclasses import replace

    from .data import default_workers
    from .recipes import RECIPES

    recipe = cfg.recipe
    if recipe is None:
        defaults = TrainConfig()
        recipe = next((name for name, values in RECIPES.items()
                       if all(getattr(defaults, k) == v for k, v in values.items())), None)
    return replace(cfg, workers=default_workers() if cfg.workers is None else cfg.workers, recipe=recipe)


def _save_resumable(path, base, models, optimizer, scheduler, scaler, epoch, best, history, cfg, num_classes):
    extra = {"epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict() if scaler.is_enabled() else {}, "rng": rng_state(), "best": best,
             "history": history, "config": json.loads(cfg.to_json()), "num_classes": num_classes}
    if len(models) > 1:
        extra["peer_state_dict"] = {k: v.detach().cpu() for k, v in models[1].state_dict().items()}
    save_checkpoint(base, path, **extra)


def _evaluate(models, eval_sets, cfg) -> dict:
    """Evaluate through the same Embedder path as an exported artifact; DML adds the peer and the ensemble."""
    from ..evaluation import evaluate

    out = {}
    for i, ds in enumerate(eval_sets):
        res = evaluate(models[0], ds, metric=cfg.metric, rerank=cfg.rerank, progress=cfg.progress)
        print("  " + res.summary(), flush=True)
        if i == 0:  # the first evaluation set decides the best checkpoint
            out.update({k: v for k, v in res.to_dict().items() if k in ("mAP", "rank1", "rank5", "rank10", "rank20")})
        if len(models) > 1:
            peer = evaluate(models[1], ds, metric=cfg.metric, rerank=cfg.rerank, progress=False)
            ens = evaluate(models, ds, metric=cfg.metric, rerank=cfg.rerank, progress=False)
            print(f"  peer: mAP {100 * peer.mAP:.1f}%   ensemble (concatenated): mAP {100 * ens.mAP:.1f}% "
                  f"rank-1 {100 * ens.rank(1):.1f}%", flush=True)
            if i == 0:
                out["peer_mAP"], out["ensemble_mAP"] = peer.mAP, ens.mAP
    return out
