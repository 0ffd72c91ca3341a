"""osnet-bench: latency, throughput and Mult-Adds of exported OSNet artifacts against PyTorch eager.

  osnet-bench osnet_x0_25.onnx osnet_x0_25_int8.xml --batch 1,8,32 --json out.json --plot out.png
  osnet-bench --sweep --format openvino --precision fp32 --seconds 1 --json sweep.json --plot sweep.png
  osnet-bench --table6
"""
from __future__ import annotations

import argparse
import sys

from osnet_edge.cli_convention import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, add_version, report
from osnet_edge.errors import OsnetEdgeError, UsageError

PROG = "osnet-bench"


def parse_int_list(text: str, what: str = "--batch") -> tuple[int, ...]:
    """'1,8,32' -> (1, 8, 32); anything else is one clear line."""
    try:
        values = tuple(int(v) for v in str(text).replace(" ", "").split(",") if v != "")
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{what} {text!r} is not a comma-separated list of positive integers (e.g. 1,8,32)")
    return tuple(dict.fromkeys(values))


def parse_float_list(text: str, what: str, low=0.0, high=1.0) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(",") if v != "")
    except ValueError:
        values = ()
    if not values or any(not (low < v <= high) for v in values):
        raise UsageError(f"{what} {text!r} is not a comma-separated list of numbers in ({low}, {high}] "
                         f"(e.g. 1,0.75,0.5,0.25)")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Latency (p50/p90/p99), throughput and Mult-Adds of OSNet artifacts, model only and end "
                    "to end, with the speed-up over PyTorch eager FP32 and the fraction of this machine's "
                    "matmul peak reached.",
        epilog="Ratios from one run are what results quote: absolute times on shared machines are noisy.")
    p.add_argument("artifacts", nargs="*", metavar="ARTIFACT",
                   help=".onnx (ONNX Runtime), .xml (OpenVINO IR), .engine/.plan (TensorRT), .pt/.pth (PyTorch)")
    p.add_argument("--batch", default=None, help="batch sizes, comma-separated (default 1,8,32; 32 with --sweep)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seconds", type=float, default=None, help="timed seconds per measurement (default 2)")
    g.add_argument("--iters", type=int, default=None, help="timed calls per measurement instead of --seconds")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved slices per measurement: the baseline and the artifacts of one architecture "
                        "take turns, so their ratio shares the machine's noise (default 3)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before each measurement (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for every backend and the PyTorch baseline (default: the backends' own)")
    p.add_argument("--streams", type=int, default=None,
                   help="CPU streams (ONNX Runtime, OpenVINO): concurrent single-core calls, each on a small chunk of "
                        "the batch (default: one per thread/core; 1: each batch in one call, every operator split "
                        "across the threads)")
    p.add_argument("--device", default=None, help="backend device (cpu, cuda, CPU, GPU, ...); default: best available")
    p.add_argument("--modes", default="model,e2e", help="model (pre-made tensors), e2e (uint8 crops), or both")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the PyTorch eager FP32 baseline (skipped anyway where torch is not installed)")
    p.add_argument("--exec-precision", choices=("bf16", "fp16", "fp32"), default=None,
                   help="execute below the artifacts' declared precision, e.g. bf16 on an AVX-512 BF16/AMX CPU "
                        "(OpenVINO IRs); each artifact must first keep min cosine >= 0.99 (bf16) / 0.999 (fp16) "
                        "against its declared precision. Default: what each artifact declares")
    p.add_argument("--no-probe", action="store_true", help="skip the matmul peak probe")
    p.add_argument("--profile", action="store_true",
                   help="after timing, show per-operator time of each artifact at the largest batch "
                        "(ONNX Runtime profiling, OpenVINO per-layer counters, torch.profiler)")
    p.add_argument("--json", metavar="OUT", help="write the run as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG plot")
    s = p.add_argument_group("sweep (paper Table 6 grid)")
    s.add_argument("--sweep", action="store_true", help="build, export and measure the β x ρ grid")
    s.add_argument("--format", default="onnx", help="sweep export format: onnx, openvino, trt, pytorch (default onnx)")
    s.add_argument("--precision", default="fp32", help="sweep precision: fp32, fp16, int8 (default fp32)")
    s.add_argument("--widths", default="1,0.75,0.5,0.25", help="sweep β values (default the paper's)")
    s.add_argument("--resolutions", default="1,0.75,0.5,0.25", help="sweep ρ values (default the paper's)")
    s.add_argument("--sweep-dir", default=None, help="keep the sweep's artifacts here (default: a temp folder)")
    s.add_argument("--no-verify", action="store_true",
                   help="skip the exporter's PyTorch parity check per point (faster; the speed does not depend on it)")
    s.add_argument("--calib", default=None, help="INT8 calibration source for --precision int8 (passed to the exporter)")
    p.add_argument("--table6", action="store_true",
                   help="print the paper's Table 6 (params, Mult-Adds) as counted here beside the published values")
    return add_version(p)


def _settings(args):
    from osnet_edge.benchmarks.runner import MODES, Settings

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UsageError(f"--modes {args.modes!r}: use model, e2e or model,e2e")
    default_batch = "32" if args.sweep else "1,8,32"
    if args.iters is not None and args.iters < 1:
        raise UsageError(f"--iters must be >= 1, got {args.iters}")
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError(f"--seconds must be > 0, got {args.seconds}")
    if args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.streams is not None and args.streams < 1:
        raise UsageError(f"--streams must be >= 1, got {args.streams}")
    return Settings(batches=parse_int_list(args.batch or default_batch), seconds=args.seconds or 2.0,
                    iters=args.iters, warmup=args.warmup, rounds=max(1, args.rounds), threads=args.threads, device=args.device,
                    baseline=not args.no_baseline, modes=modes, precision=args.exec_precision, streams=args.streams)


def _check_sweep_args(args):
    from osnet_edge.benchmarks.sweep import FORMATS

    fmt = {"tensorrt": "trt", "engine": "trt", "ov": "openvino", "torch": "pytorch"}.get(args.format.lower(),
                                                                                          args.format.lower())
    if fmt not in FORMATS:
        raise UsageError(f"--format {args.format!r} is not one of {', '.join(FORMATS)}")
    if args.precision not in ("fp32", "fp16", "int8"):
        raise UsageError(f"--precision {args.precision!r} is not one of fp32, fp16, int8")
    widths = parse_float_list(args.widths, "--widths")
    resolutions = parse_float_list(args.resolutions, "--resolutions")
    return fmt, widths, resolutions


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except OsnetEdgeError as exc:
        return report(PROG, exc)
    except KeyboardInterrupt:  # before timing started (opening the artifacts); later, _run keeps the rows
        print(f"\n{PROG}: interrupted before any measurement", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(args) -> int:
    from osnet_edge.deps import available, require

    measure = bool(args.artifacts or args.sweep)
    if not measure and not args.table6:
        raise UsageError("nothing to measure: pass ARTIFACT files, --sweep or --table6 (see --help)")
    if args.artifacts and args.sweep:
        raise UsageError("pass ARTIFACT files or --sweep, not both")
    # the whole command line, then every artifact, is checked before anything is printed or timed
    settings = _settings(args) if measure else None
    sweep_args = _check_sweep_args(args) if args.sweep else None
    if args.table6:
        require("torch", "osnet-bench --table6 (counting params and Mult-Adds)")
    if args.plot and measure:
        require("matplotlib", "osnet-bench --plot")

    from osnet_edge.benchmarks.runner import check_artifact, open_embedder

    paths = [check_artifact(a) for a in args.artifacts]  # a missing file or unknown suffix, all at once
    embedders = []
    try:
        for p in paths:  # a truncated or foreign file fails here, not after the machine header
            embedders.append(open_embedder(p, settings))
    except BaseException:
        for emb in embedders:
            emb.close()
        raise
    if args.table6:
        from osnet_edge.complexity import print_table6

        print_table6()
        if not measure:
            return EXIT_OK

    if args.sweep:
        require("torch", "osnet-bench --sweep (building and exporting the grid)")
    elif settings.baseline and not available("torch"):
        # a camera-end box: time the artifacts alone, Mult-Adds from their metadata
        print("note: torch is not installed: no PyTorch eager baseline (x eager left empty); params and "
              "Mult-Adds come from the artifacts' metadata", file=sys.stderr)
        settings.baseline = False
    return _run(args, settings, paths, sweep_args, embedders)


def _run(args, settings, paths, sweep_args, embedders=None) -> int:
    from tqdm import tqdm

    from osnet_edge.benchmarks.probe import load_average, machine_info, matmul_peak
    from osnet_edge.benchmarks.report import build_record, format_machine, format_table, write_json
    from osnet_edge.benchmarks.runner import Bench

    load_start = load_average()
    machine = machine_info()
    probe = None
    if not args.no_probe:
        print("probing this machine's float32 matmul peak ...", file=sys.stderr)
        probe = matmul_peak(threads=settings.threads)
        settings.peak_gflops = probe["gflops"]
    print(format_machine(machine, probe, load_start))

    bench = Bench(settings)
    total = 0
    if sweep_args:  # known up front: one group (artifact + baseline) per grid point
        total = bench.jobs(len(sweep_args[1]) * len(sweep_args[2]))
        bench.grow_total = False
    progress = tqdm(total=total, unit="meas", file=sys.stderr, dynamic_ncols=True)
    bench.progress = progress
    interrupted, failure = False, None
    try:
        if sweep_args:
            from osnet_edge.benchmarks.sweep import run_sweep

            fmt, widths, resolutions = sweep_args
            run_sweep(bench, fmt, args.precision, widths, resolutions, out_dir=args.sweep_dir, progress=progress,
                      calib=args.calib, verify=not args.no_verify)
        else:
            bench.run_artifacts(paths, embedders=embedders)
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:  # keep what was measured; the error is reported after the table
        failure = exc
    finally:
        progress.close()
        bench.close()

    profiles = []
    if args.profile and not interrupted and failure is None and paths:
        from osnet_edge.benchmarks.profile import format_profile, profile_artifact

        try:
            for path in paths:
                print(f"profiling {path.name} ...", file=sys.stderr)
                prof = profile_artifact(path, batch_size=max(settings.batches), threads=settings.threads,
                                        precision=settings.precision)
                profiles.append(prof)
        except KeyboardInterrupt:
            interrupted = True
        for prof in profiles:
            print()
            print(format_profile(prof))

    rows = bench.rows
    if probe is not None and not interrupted and failure is None:
        # probe again at the end: a probe taken while other jobs ran underestimates the peak (and would
        # inflate every %peak); the better of the two is the machine's practical peak
        again = matmul_peak(threads=settings.threads)
        probe["gflops_start"], probe["gflops_end"] = probe["gflops"], again["gflops"]
        if again["gflops"] > probe["gflops"]:
            probe.update({k: v for k, v in again.items() if k != "gflops_start"})
            for r in rows:
                if r.get("gflops"):
                    r["peak_fraction"] = round(r["gflops"] / probe["gflops"], 4)
        print(f"matmul probe: {probe['gflops_start']:.1f} GFLOP/s at start, {probe['gflops_end']:.1f} at end; "
              f"%peak uses {probe['gflops']:.1f}")
    if interrupted:
        print(f"\ninterrupted: {len(rows)} measurement(s) completed so far", file=sys.stderr)
    from osnet_edge.benchmarks.report import COLUMNS, SWEEP_COLUMNS, format_headline, headline

    print()
    print(format_table(rows, SWEEP_COLUMNS if sweep_args else COLUMNS))
    heads = headline(rows) if not sweep_args else []
    if heads:
        print()
        print(format_headline(heads))
    settings_d = {"batches": list(settings.batches), "seconds": None if settings.iters else settings.seconds,
                  "iters": settings.iters, "warmup": settings.warmup, "rounds": settings.rounds, "threads": settings.threads,
                  "streams": settings.streams, "device": settings.device, "modes": list(settings.modes), "baseline": settings.baseline}
    extra = {"headline": heads} if heads else {}
    if failure is not None:
        extra["error"] = f"{type(failure).__name__}: {failure}"
    if profiles:
        extra["profiles"] = profiles
    if sweep_args:
        settings_d.update(format=sweep_args[0], precision=args.precision, verified=not args.no_verify,
                          widths=list(sweep_args[1]),
                          resolutions=list(sweep_args[2]))
    record = build_record(rows, machine=machine, probe=probe, settings=settings_d, load_start=load_start,
                          load_end=load_average(), interrupted=interrupted,
                          kind="sweep" if sweep_args else "artifacts", extra=extra)
    print(f"load average: start {load_start}, end {record['load_average_end']}")
    if args.json:
        print(f"wrote {write_json(record, args.json)}")
    if args.plot and rows:
        from osnet_edge.benchmarks.plots import plot_run, plot_sweep

        title = f"osnet-bench on {machine['cpu']} ({machine['usable_cores']} cores)"
        path = plot_sweep(rows, args.plot, title) if sweep_args else plot_run(rows, args.plot, title)
        print(f"wrote {path}")
    if failure is not None:
        print(f"{PROG}: error after {len(rows)} measurement(s): {extra['error']}", file=sys.stderr)
        if not isinstance(failure, OsnetEdgeError):
            raise failure
        return EXIT_FAILURE
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
