"""`osnet-train` and `osnet-eval`.

    osnet-train --data market1501:/data/market1501 --arch osnet_x0_25 --recipe paper-scratch --output runs/x025
    osnet-train --data market1501:/data/m --data dukemtmcreid:/data/d --width 0.3 --recipe paper-finetune \
                --weights osnet_x1_0_imagenet.pth --epochs 60 --lr 0.001
    osnet-train ... --resume runs/x025/checkpoint.pth
    osnet-eval  --data market1501:/data/market1501 --weights runs/x025/model-best.pth   # or .onnx / .xml / .engine

Several GPUs (DistributedDataParallel, one process per GPU, --batch-size is per GPU):
    torchrun --nproc_per_node=4 -m osnet_edge.training.cli train --data market1501:/data/m --arch osnet_x1_0 ...
"""
from __future__ import annotations

import argparse
import json
import sys

from ..cli_convention import EXIT_INTERRUPTED, EXIT_USAGE, add_version, report
from ..deps import require
from ..errors import MissingDependencyError, OsnetEdgeError


def _csv(text):
    return tuple(t.strip() for t in text.split(",") if t.strip())


def build_train_parser() -> argparse.ArgumentParser:
    from .recipes import RECIPES

    p = argparse.ArgumentParser(prog="osnet-train", description="Train OSNet for person re-ID (flags override the "
                                "recipe; the defaults shown are what runs without --recipe: paper-scratch's values).")
    d = p.add_argument_group("data")
    d.add_argument("--data", action="append", required=True, metavar="NAME:PATH",
                   help="training dataset, repeatable: market1501, dukemtmcreid, msmt17, cuhk03, cuhk03_labeled, generic")
    d.add_argument("--eval-data", action="append", metavar="NAME:PATH",
                   help="evaluation dataset(s) (default: every --data with a query/gallery)")
    d.add_argument("--cam-pattern", help="generic layout: regex whose first group is the camera id (default c(\\d+))")
    m = p.add_argument_group("model")
    g = m.add_mutually_exclusive_group()
    g.add_argument("--arch", help="osnet_x1_0, osnet_x0_75, osnet_x0_5, osnet_x0_25, osnet_ibn_x1_0, osnet_ain_x*; "
                                  "without it (and --width), read from the --weights file when given")
    g.add_argument("--width", type=float, help="width multiplier beta in (0, 1] (plain OSNet)")
    m.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input height and width")
    m.add_argument("--weights", help="initial weights (torchreid zoo / ImageNet / ours); classifier is re-initialised")
    r = p.add_argument_group("recipe and optimisation")
    r.add_argument("--recipe", choices=sorted(RECIPES), help="named recipe with the paper's values")
    r.add_argument("--epochs", type=int, help="training epochs")
    r.add_argument("--batch-size", type=int, help="images per batch (per GPU under torchrun)")
    r.add_argument("--lr", type=float, help="initial learning rate")
    r.add_argument("--optimizer", choices=["sgd", "amsgrad", "adam", "adamw"], help="optimiser")
    r.add_argument("--weight-decay", type=float, help="L2 weight decay")
    r.add_argument("--momentum", type=float, help="SGD momentum")
    r.add_argument("--schedule", choices=["multistep", "cosine", "constant"],
                   help="learning-rate schedule: x gamma at each milestone, cosine to 0, or constant")
    r.add_argument("--milestones", type=_ints, help="comma-separated epochs, e.g. 150,225,300")
    r.add_argument("--gamma", type=float, help="multistep: factor applied to the lr at each milestone")
    r.add_argument("--warmup-epochs", type=int, help="epochs of linear lr warm-up from 1%%")
    r.add_argument("--fixbase-epochs", type=int, help="first epochs with the backbone frozen (only the classifier "
                                                      "trains); said at start when it covers the whole run")
    l = p.add_argument_group("losses and sampling")
    l.add_argument("--label-smooth", type=float, help="label smoothing epsilon of the cross-entropy")
    l.add_argument("--ce-weight", type=float, dest="weight_x", help="weight of the cross-entropy loss")
    l.add_argument("--triplet-weight", type=float, dest="weight_t", help="> 0 adds batch-hard triplet loss")
    l.add_argument("--margin", type=float, help="triplet loss margin")
    l.add_argument("--dml", action="store_true", default=None, help="deep mutual learning (two networks)")
    l.add_argument("--sampler", choices=["auto", "random", "identity"],
                   help="batch sampler: identity (P x K, for triplet loss), random, or auto (identity with triplet)")
    l.add_argument("--num-instances", type=int, help="K images per identity in a P x K batch")
    l.add_argument("--augment", type=_csv, help="comma list: flip,crop,patch,erase,color_jitter ('' for none)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--eval-every", type=int, help="epochs between evaluations (0: only at the end)")
    e.add_argument("--metric", choices=["euclidean", "cosine"], help="distance for retrieval")
    e.add_argument("--rerank", action="store_true", default=None, help="k-reciprocal re-ranking (Zhong et al. 2017)")
    o = p.add_argument_group("run")
    o.add_argument("--output", help="run folder (checkpoints, log.csv, curve.png)")
    o.add_argument("--resume", help="checkpoint.pth of a run to continue exactly")
    o.add_argument("--seed", type=int, help="random seed (sampling, augmentation, initialisation)")
    o.add_argument("--workers", type=int, help="data loading processes")
    o.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    o.add_argument("--threads", type=int, help="CPU threads for torch")
    o.add_argument("--no-amp", dest="amp", action="store_false", default=None, help="full precision on CUDA")
    o.add_argument("--keep-every", type=int, help="also keep checkpoint-epochN.pth every N epochs")
    o.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bars")
    o.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
    _show_defaults(p)
    return add_version(p)


def _show_defaults(parser) -> None:
    """Append '(default: X)' with what runs when a flag is omitted: TrainConfig's value, not argparse's None."""
    from .data import default_workers
    from .recipes import TrainConfig

    defaults = TrainConfig().to_dict()
    defaults["workers"] = f"{default_workers()}, from this machine's CPU cores"
    defaults["recipe"] = "none; the values below are paper-scratch's"
    for action in parser._actions:
        value = defaults.get(action.dest)
        if action.help == argparse.SUPPRESS or action.nargs == 0 or value in (None, "", [], {}):
            continue  # switches, and options whose absence means 'not used' or 'automatic' (said in their help)
        if isinstance(value, list):
            value = (" " if action.dest == "input_size" else ",").join(map(str, value))
        action.help = f"{action.help or ''} (default: {value})".strip()


def _ints(text):
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def config_from_args(args):
    from .recipes import make_config

    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "recipe") and v is not None}
    if "input_size" in overrides:
        overrides["input_size"] = tuple(overrides["input_size"])
    if args.width is not None:
        overrides["arch"] = None
    if args.config:
        from pathlib import Path

        try:
            base = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise OsnetEdgeError(f"cannot read --config {args.config}: {exc}") from None
        base.update(overrides)
        overrides = base
    if overrides.get("weights") and "arch" not in overrides and "width" not in overrides:
        from ..checkpoint import checkpoint_arch

        # the variant comes from the file, as in osnet-export and build_model(weights=)
        overrides["arch"] = checkpoint_arch(overrides["weights"])[0]
    recipe = args.recipe or overrides.pop("recipe", None)
    overrides.pop("recipe", None)
    return make_config(recipe, **overrides)


def train_main(argv=None) -> int:
    try:  # the parser's defaults already come from torch (DataLoader workers): check before building it
        require("torch", "osnet-train")
    except MissingDependencyError as exc:
        return report("osnet-train", exc)
    args = build_train_parser().parse_args(argv)
    cfg = None
    try:
        from .engine import train

        cfg = config_from_args(args)
        result = train(cfg)
    except OsnetEdgeError as exc:
        return report("osnet-train", exc)
    except KeyboardInterrupt:
        from pathlib import Path

        ckpt = Path(cfg.output) / "checkpoint.pth" if cfg is not None else None
        print("\nosnet-train: interrupted; " + (f"continue with --resume {ckpt}" if ckpt and ckpt.is_file()
                                                else "no epoch had finished, nothing was kept"), file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.get("best") and result.get("rank", 0) == 0:
        print(f"best mAP {100 * result['best_mAP']:.1f}% at epoch {result['best_epoch']}: {result['best']}")
    return 0


def build_eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osnet-eval", description="Evaluate a checkpoint or exported artifact "
                                "(rank-1/5/10/20 and mAP, Market-1501 protocol).")
    p.add_argument("--data", action="append", required=True, metavar="NAME:PATH", help="dataset(s) with query/gallery")
    p.add_argument("--weights", required=True, nargs="+", metavar="CKPT_OR_ARTIFACT",
                   help=".pth/.pt checkpoint, .onnx, .xml (OpenVINO), .engine/.plan (TensorRT); several: "
                        "features concatenated (DML ensemble)")
    p.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean",
                   help="distance for retrieval (default euclidean, as torchreid)")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (Zhong et al. 2017)")
    p.add_argument("--cuhk03-metric", action="store_true", default=None,
                   help="CUHK03 classic single-gallery-shot protocol (10 random draws, seeded by --seed)")
    p.add_argument("--max-rank", type=int, default=50, help="longest CMC curve computed (default 50)")
    p.add_argument("--cam-pattern", help="generic layout: regex whose first group is the camera id")
    p.add_argument("--batch-size", type=int, help="crops per inference call (default: the Embedder's)")
    p.add_argument("--device", help="backend device: cpu, cuda, CPU, GPU, ... (default: best available)")
    p.add_argument("--threads", type=int, help="CPU threads of the backend (default: the backend's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of the CUHK03 draws and the --visualize sample (default 0)")
    p.add_argument("--json", help="write the results here (and a CMC plot beside it as .png)")
    p.add_argument("--visualize", metavar="DIR",
                   help="write retrieval pictures here: for sampled queries, the top-k gallery matches (green border: "
                        "same identity, red: wrong), plus cmc.png; one sub-folder per dataset when several --data")
    p.add_argument("--visualize-k", type=_positive_int, default=10, metavar="K",
                   help="matches per picture (default 10)")
    p.add_argument("--visualize-n", type=_positive_int, default=20, metavar="N",
                   help="queries to picture, sampled evenly with --seed (default 20)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return add_version(p)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def eval_main(argv=None) -> int:
    args = build_eval_parser().parse_args(argv)
    try:
        import numpy as np

        from pathlib import Path

        from ..evaluation import evaluate
        from ..runtime import Embedder
        from ..visualize import check_output_dir, plot_cmc, write_ranked_results
        from .datasets import load_dataset

        if args.visualize:
            check_output_dir(args.visualize)  # before minutes of embedding, and before writing anything
        np.random.seed(args.seed)
        datasets = [load_dataset(s, args.cam_pattern, train=False) for s in args.data]
        embedders = [Embedder(w, device=args.device, batch_size=args.batch_size, threads=args.threads)
                     for w in args.weights]
        for w, emb in zip(args.weights, embedders):
            print(f"{w}: {emb.meta.arch} {emb.meta.precision}; {emb.meta.provenance_line()}")
        results = []
        for ds in datasets:
            res = evaluate(embedders, ds, metric=args.metric, rerank=args.rerank, max_rank=args.max_rank,
                           use_metric_cuhk03=args.cuhk03_metric, progress=args.progress, embedders=embedders,
                           keep_distmat=bool(args.visualize))
            print(f"{ds.name} ({ds.root}): {' + '.join(args.weights)}")
            print(f"  mAP     {100 * res.mAP:6.2f}%")
            for k in (1, 5, 10, 20):
                print(f"  rank-{k:<3}{100 * res.rank(k):6.2f}%")
            results.append(res)
            if args.visualize:
                names = [d.name for d in datasets]
                sub = ds.name if names.count(ds.name) == 1 else f"{ds.name}_{len(results)}"
                vis = Path(args.visualize) / (sub if len(datasets) > 1 else "")
                pics = write_ranked_results(res.distmat, ds.query, ds.gallery, vis, k=args.visualize_k,
                                            n=args.visualize_n, seed=args.seed, progress=args.progress)
                res.distmat = None  # num_query x num_gallery floats: free before the next dataset
                print(f"  wrote {len(pics)} retrieval pictures (top-{args.visualize_k}) to {vis}")
        if args.visualize and plot_cmc(results, Path(args.visualize) / "cmc.png"):
            print(f"wrote {Path(args.visualize) / 'cmc.png'}")
        if args.json:
            _write_results(results, args.json, {w: e.meta.provenance for w, e in zip(args.weights, embedders)})
    except OsnetEdgeError as exc:
        return report("osnet-eval", exc)
    return 0


def _write_results(results, path, provenance=None):
    from pathlib import Path

    from ..atomic import write_text
    from ..visualize import plot_cmc

    out = Path(path)
    write_text(out, json.dumps([dict(r.to_dict(), cmc=[float(v) for v in r.cmc], provenance=provenance or {})
                                for r in results], indent=2))
    print(f"wrote {out}")
    if plot_cmc(results, out.with_suffix(".png")):
        print(f"wrote {out.with_suffix('.png')}")


def main(argv=None) -> int:
    """`python -m osnet_edge.training.cli train|eval ...` (what torchrun launches)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("train", "eval"):
        print("usage: python -m osnet_edge.training.cli {train,eval} ...", file=sys.stderr)
        return EXIT_USAGE
    return train_main(argv[1:]) if argv[0] == "train" else eval_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
