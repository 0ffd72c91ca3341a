"""osnet-export: PyTorch OSNet -> verified ONNX / OpenVINO IR / TensorRT artifact.

    osnet-export --weights osnet_x0_25_msmt17.pth --arch osnet_x0_25 --format openvino --half
    osnet-export --width 0.25 --resolution 0.75 --format onnx -o models/
"""
from __future__ import annotations

import argparse
import sys

from osnet_edge.cli_convention import EXIT_INTERRUPTED, add_version, report
from osnet_edge.deps import require
from osnet_edge.errors import OsnetEdgeError, UsageError

# the random-init model is seeded so two exports without weights are the same file
SEED = 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="osnet-export",
        description="Export an OSNet to ONNX, OpenVINO IR or a TensorRT engine. The artifact is compared with "
                    "the PyTorch model (batch 1 and 33) and kept only if it matches; it carries its own "
                    "metadata, so Embedder(path) needs nothing else.")
    m = p.add_argument_group("model")
    m.add_argument("--weights", help="torchreid or osnet-edge checkpoint (.pth); without it a seeded, randomly "
                                     "initialised network is exported (for plumbing tests only)")
    g = m.add_mutually_exclusive_group()
    g.add_argument("--arch", help="variant, e.g. osnet_x0_25, osnet_ain_x1_0 (default: from the checkpoint, "
                                  "else osnet_x1_0)")
    g.add_argument("--width", type=float, help="width multiplier beta in (0, 1] (paper Table 6)")
    m.add_argument("--family", default=None, choices=["osnet", "osnet_ibn", "osnet_ain"],
                   help="with --width: the OSNet family (default osnet)")
    r = m.add_mutually_exclusive_group()
    r.add_argument("--resolution", type=float, metavar="RHO",
                   help="resolution multiplier rho: input 256*rho x 128*rho (paper Table 6)")
    r.add_argument("--imgsz", type=int, nargs=2, metavar=("H", "W"), help="input height and width")
    o = p.add_argument_group("artifact")
    o.add_argument("--format", default="onnx", help="onnx | openvino | trt (default onnx)")
    o.add_argument("--half", action="store_true", help="FP16 (must keep min cosine >= 0.999)")
    o.add_argument("--int8", action="store_true", help="INT8 post-training quantization (needs --calib)")
    o.add_argument("--calib", metavar="SOURCE", help="INT8 calibration crops: a folder of crops, a dataset, "
                                                     "or a video with boxes")
    o.add_argument("--max-drop", type=float, default=None, metavar="X",
                   help="INT8: largest accepted accuracy drop (see the INT8 docs)")
    from osnet_edge.export.gates import GATES

    for gate in GATES:  # one flag per INT8 fidelity gate; a value looser than the default is reported as lowered
        o.add_argument(gate.flag, type=float, default=None, metavar="X",
                       help=f"INT8 fidelity gate: {gate.help}"
                            + (f" (default {gate.default:g})" if gate.default is not None else ""))
    o.add_argument("--equalize", action="store_true",
                   help="INT8 (OpenVINO/ONNX): equalize the Lite 3x3 layers' activation ranges before quantizing "
                        "(exact in FP32; see benchmarks/results/int8/NOTES.md)")
    o.add_argument("--int8-activations", choices=["shifted", "symmetric", "asymmetric"], default=None,
                   help="ONNX/TensorRT INT8: 'shifted' (default): asymmetric ranges written as INT8 with zero point "
                        "0 and a shift folded into the next convolution's bias, TensorRT's form with all 256 levels "
                        "after ReLU; 'symmetric': INT8 over each range (128 levels after ReLU); 'asymmetric': UINT8 "
                        "with a zero point (ONNX Runtime only)")
    o.add_argument("--qat", action="store_true",
                   help="INT8 (OpenVINO/ONNX): when post-training INT8 misses the fidelity gates, fine-tune it "
                        "(NNCF quantization-aware training distilled to the FP32 embeddings on the --calib crops; "
                        "minutes on a CPU, progress shown)")
    o.add_argument("--qat-epochs", type=int, default=None, metavar="N",
                   help="epochs of --qat fine-tuning over the calibration crops (default 10)")
    o.add_argument("--holdout", metavar="SOURCE", default=None,
                   help="INT8: held-out crops for the fidelity report (default: crops of --calib never calibrated "
                        "on; an osnet-crops/Market-1501 folder holds out its test identities)")
    o.add_argument("--workspace", type=float, default=None, metavar="GiB", help="TensorRT builder workspace")
    o.add_argument("--max-batch", type=int, default=32, metavar="N",
                   help="largest batch the artifact serves (TensorRT profile; ONNX/OpenVINO are dynamic)")
    o.add_argument("--opset", type=int, default=18, metavar="K",
                   help="ONNX opset (default 18; >= 18, or >= 17 with --onnx-exporter torchscript)")
    o.add_argument("--onnx-exporter", choices=["dynamo", "torchscript"], default=None,
                   help="torch's ONNX exporter: dynamo (default; torch.export-based) or torchscript (legacy, "
                        "deprecated in torch; kept while it is still shipped)")
    o.add_argument("--input-format", choices=["uint8_nhwc", "float_nchw"], default=None,
                   help="uint8_nhwc: the graph takes resized uint8 BGR crops and normalises itself (default for "
                        "ONNX/OpenVINO; faster end to end); float_nchw: normalised RGB NCHW float input")
    o.add_argument("--device", default=None, help="device to verify (and build, for TensorRT) on")
    t = p.add_argument_group("TensorRT")
    t.add_argument("--calib-method", choices=["entropy", "minmax"], default=None,
                   help="INT8 calibrator (default entropy)")
    t.add_argument("--qdq", action="store_true", help="INT8 from the Q/DQ ONNX (explicit quantization) "
                                                      "instead of TensorRT's calibrator")
    t.add_argument("--opt-batch", type=int, default=None, metavar="N", help="profile's optimal batch (default max/2)")
    t.add_argument("--min-batch", type=int, default=None, metavar="N", help="profile's smallest batch (default 1)")
    t.add_argument("--dla-core", type=int, default=None, metavar="K", help="Jetson Orin DLA core")
    t.add_argument("--timing-cache", default=None, metavar="FILE", help="timing cache reused across builds")
    o.add_argument("--no-verify", action="store_true", help="skip the parity check (experts only)")
    o.add_argument("-o", "--output", default=None, help="output file or folder (default: current folder, named "
                                                        "like osnet_x0_25_256x128_fp16.xml; a path without a "
                                                        "suffix or ending in / is a folder, created if new)")
    return add_version(p)


def input_size_from(args) -> tuple | None:
    if args.imgsz:
        return tuple(args.imgsz)
    if args.resolution is not None:
        if not 0 < args.resolution <= 4:
            raise UsageError(f"--resolution must be in (0, 4], got {args.resolution}")
        return int(round(256 * args.resolution)), int(round(128 * args.resolution))
    return None


def load_model(args):
    """The model to export, and whether its weights are real."""
    import torch

    from osnet_edge.models import build_model

    size = input_size_from(args)
    if args.weights:
        # without --arch/--width the variant comes from the file (ours: its metadata; torchreid's: its keys)
        model = build_model(args.arch, width=args.width, family=args.family, weights=args.weights, input_size=size)
        return model, True
    torch.manual_seed(SEED)
    model = build_model(args.arch or (None if args.width else "osnet_x1_0"), width=args.width, family=args.family,
                        input_size=size)
    return model, False


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from osnet_edge.export import INT8_WRITERS, PENDING, WRITERS, export_model

        fmt = args.format.lower()
        if args.half and args.int8:
            raise UsageError("choose one of --half (FP16) and --int8")
        # the formats and INT8 of later issues fail here, in one line, before any model is built
        if fmt not in WRITERS:
            if fmt in PENDING:  # known, but its package is missing here: a failure, not a usage error
                raise OsnetEdgeError(PENDING[fmt])
            raise UsageError(f"unknown --format {args.format!r}; available: "
                             f"{', '.join(sorted(set(WRITERS) | set(PENDING)))}")
        if args.int8 and fmt not in INT8_WRITERS:
            from osnet_edge.export.api import INT8_PENDING

            if not INT8_WRITERS:
                raise OsnetEdgeError(INT8_PENDING)
            raise UsageError(f"--int8 is not available for --format {fmt} (only {', '.join(sorted(INT8_WRITERS))})")
        if (args.qat or args.qat_epochs) and not (args.int8 and fmt in ("openvino", "onnx")):
            raise UsageError("--qat applies to --int8 with --format openvino or onnx")
        input_size_from(args)  # a bad --resolution before anything is built
        if args.int8_activations and not (args.int8 and fmt == "onnx"):
            raise UsageError("--int8-activations applies to --format onnx --int8 only (OpenVINO's NNCF picks "
                                 "its own scheme; TensorRT builds from the default, shifted)")
        writer = INT8_WRITERS[fmt] if args.int8 else WRITERS[fmt]
        if getattr(writer, "preflight", None):  # e.g. no GPU for TensorRT: say so before building anything
            writer.preflight(device=args.device, calib=args.calib)
        require("torch", "osnet-export (it builds the PyTorch model it exports)")
        model, trained = load_model(args)
        if not trained:
            banner = "!" * 78
            print(f"{banner}\n!! NO --weights: exporting a RANDOMLY INITIALISED {model.arch} (seed {SEED}).\n"
                  f"!! Its embeddings are meaningless; use it only to test the deployment plumbing.\n{banner}",
                  file=sys.stderr)
        options = {k: v for k, v in (("max_drop", args.max_drop), ("workspace", args.workspace),
                                     ("device", args.device), ("calib_method", args.calib_method),
                                     ("holdout", args.holdout), ("activations", args.int8_activations),
                                     ("opt_batch", args.opt_batch), ("min_batch", args.min_batch),
                                     ("dla_core", args.dla_core), ("timing_cache", args.timing_cache),
                                     ("onnx_exporter", args.onnx_exporter))
                   if v is not None}
        from osnet_edge.export.gates import GATES

        options.update({g.key: getattr(args, g.key) for g in GATES if getattr(args, g.key) is not None})
        if args.qdq:
            options["qdq"] = True
        if args.equalize:
            options["equalize"] = True
        if args.qat or args.qat_epochs:
            options.update(qat=True, qat_epochs=args.qat_epochs)
        print(f"exporting {model.arch} {model.input_size[0]}x{model.input_size[1]} to {fmt}"
              f"{' FP16' if args.half else ' INT8' if args.int8 else ' FP32'} ...", file=sys.stderr)
        res = export_model(model, fmt, args.output, half=args.half, int8=args.int8, calib=args.calib,
                           max_batch=args.max_batch, opset=args.opset, verify=not args.no_verify,
                           input_format=args.input_format, quiet=False, **options)
    except OsnetEdgeError as exc:
        return report("osnet-export", exc)
    except KeyboardInterrupt as exc:  # INT8 fine-tuning says which epoch and how to re-run
        print(f"osnet-export: {exc or 'interrupted; nothing was written'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"exported {res.fmt} artifact{'' if trained else ' (RANDOM WEIGHTS)'}:")
    print(res.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
