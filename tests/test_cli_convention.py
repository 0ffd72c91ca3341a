"""One convention for every osnet-* command: --version, help text on every option, exit 2 for a usage error and 1
for a failure, each a single `PROG: error:` line, and an input known to be bad refused before any other output."""
from __future__ import annotations

import argparse
import importlib.util
import re

import numpy as np
import pytest

from osnet_edge._version import __version__


def _parsers():
    from osnet_edge.benchmarks.cli import build_parser as bench
    from osnet_edge.calibration.crops_cli import build_parser as crops
    from osnet_edge.export.cli import build_parser as export
    from osnet_edge.training.cli import build_eval_parser, build_train_parser

    out = {"osnet-export": export, "osnet-bench": bench, "osnet-train": build_train_parser,
           "osnet-eval": build_eval_parser, "osnet-crops": crops}
    if importlib.util.find_spec("osnet_edge.gallery") and importlib.util.find_spec("osnet_edge.gallery.cli"):
        from osnet_edge.gallery.cli import build_parser as gallery

        out["osnet-gallery"] = gallery
    return out


def _mains():
    from osnet_edge.benchmarks.cli import main as bench
    from osnet_edge.calibration.crops_cli import main as crops
    from osnet_edge.export.cli import main as export
    from osnet_edge.training.cli import eval_main, train_main

    out = {"osnet-export": export, "osnet-bench": bench, "osnet-train": train_main, "osnet-eval": eval_main,
           "osnet-crops": crops}
    if "osnet-gallery" in _parsers():
        from osnet_edge.gallery.cli import main as gallery

        out["osnet-gallery"] = gallery
    return out


COMMANDS = sorted(_parsers())


def _exit(main, argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse: --version, --help, a bad option
        return exc.code


@pytest.mark.parametrize("prog", COMMANDS)
def test_version_on_every_command(prog, capsys):
    assert _exit(_mains()[prog], ["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"{prog} {__version__}"


@pytest.mark.parametrize("prog", COMMANDS)
def test_every_option_has_help_text(prog):
    parser = _parsers()[prog]()
    assert parser.prog == prog
    bare, parsers = [], [parser]
    while parsers:  # a command with sub-commands (osnet-gallery add / search ...): each one's options too
        p = parsers.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
                continue
            text = re.sub(r"\s*\(default: [^)]*\)$", "", action.help or "")  # osnet-train appends what runs
            if action.help is not argparse.SUPPRESS and not text.strip():
                bare.append(f"{p.prog} " + ("/".join(action.option_strings) or action.dest))
    assert bare == [], f"{prog}: options without help text: {bare}"


@pytest.mark.parametrize("prog", COMMANDS)
def test_unknown_option_is_a_usage_error(prog, capsys):
    assert _exit(_mains()[prog], ["--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {prog}") and f"{prog}: error: " in err


def _one_error_line(capsys, prog):
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), cap.err
    return cap.out, err[0]


@pytest.mark.parametrize("prog, argv, needle", [
    ("osnet-export", ["--format", "tflite"], "unknown --format 'tflite'"),
    ("osnet-export", ["--format", "onnx", "--half", "--int8"], "one of --half"),
    ("osnet-export", ["--format", "onnx", "--resolution", "9"], "--resolution must be in"),
    ("osnet-export", ["--format", "onnx", "--qat"], "--qat applies to --int8"),
    ("osnet-bench", ["--batch", "1,x", "--sweep"], "--batch '1,x'"),
    ("osnet-bench", [], "nothing to measure"),
    ("osnet-crops", ["video.avi", "--out", "o", "--min-track", "1"], "--min-track and --per-track must be >= 2"),
    ("osnet-crops", ["video.avi", "--out", "o", "--test-frac", "1.5"], "--test-frac must be in (0, 1)"),
])
def test_command_line_errors_exit_2(prog, argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _exit(_mains()[prog], argv) == 2
    out, line = _one_error_line(capsys, prog)
    assert needle in line and out == ""
    assert list(tmp_path.iterdir()) == []


def test_failures_exit_1(tmp_path, capsys):
    """Inputs that are missing or unusable: the command line was fine, the run failed."""
    mains = _mains()
    cases = [("osnet-bench", [str(tmp_path / "nope.onnx")], "artifact not found"),
             ("osnet-crops", [str(tmp_path / "none.avi"), "--out", str(tmp_path / "o"), "--no-progress"], "none.avi"),
             ("osnet-eval", ["--data", f"market1501:{tmp_path / 'no_data'}", "--weights", "x.onnx"], "no_data"),
             ("osnet-export", ["--weights", str(tmp_path / "none.pth"), "--format", "onnx", "-o", str(tmp_path)],
              "none.pth")]
    for prog, argv, needle in cases:
        assert _exit(mains[prog], argv) == 1, prog
        _out, line = _one_error_line(capsys, prog)
        assert needle in line, (prog, line)


def test_bench_refuses_a_bad_artifact_before_printing_anything(tmp_path, capsys):
    """A truncated artifact that exists and has a known suffix: refused before the machine header, the probe or
    any table."""
    from osnet_edge.benchmarks.cli import main

    bad = tmp_path / "osnet_x0_25_64x32_fp32.onnx"
    bad.write_bytes(b"\x08\x07truncated")
    assert main([str(bad), "--iters", "1", "--no-probe"]) == 1
    out, line = _one_error_line(capsys, "osnet-bench")
    assert out == "" and bad.name in line


def test_embedder_names_none_and_empty_crops():
    from osnet_edge.errors import InputError
    from osnet_edge.preprocess import crop_boxes, resize_crops

    ok = np.zeros((20, 10, 3), np.uint8)
    with pytest.raises(InputError, match=r"^crop 1 is None \(a missing image\? cv2.imread returns None"):
        resize_crops([ok, None], (64, 32))
    with pytest.raises(InputError, match=r"^crop 0 is empty \(an array of shape \(0,\)\)"):
        resize_crops([np.array([])], (64, 32))
    with pytest.raises(InputError, match=r"^frame is None"):
        crop_boxes(None, [[0, 0, 5, 5]])
