"""osnet-train as a newcomer meets it: a torchreid zoo file without a classifier fine-tunes (the classifier starts
untrained, as --help says), fixbase epochs covering the whole run are said at start, and a failed run leaves no
empty run folder behind."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

SIZE = (64, 32)   # conftest's reid_data: rendered identities at this size, shared with the INT8 tests


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory):
    """A torchreid model-zoo style file: a bare state_dict, no metadata, no classifier keys."""
    from osnet_edge.models import build_model

    torch.manual_seed(0)
    sd = {k: v for k, v in build_model("osnet_x0_25").state_dict().items() if not k.startswith("classifier.")}
    path = tmp_path_factory.mktemp("zoo") / "osnet_x0_25_market_noclassifier.pth"
    torch.save(sd, path)
    return path


def _train(argv, capsys):
    from osnet_edge.training.cli import train_main

    rc = train_main(argv)
    return rc, capsys.readouterr()


def _args(data, out, *more):
    return ["--data", f"market1501:{data}", "--output", str(out), "--input-size", *map(str, SIZE), "--batch-size", "16",
            "--workers", "0", "--threads", "1", "--no-progress", *more]


def test_build_model_takes_a_classifier_less_zoo_file(zoo_file, capsys):
    from osnet_edge.models import build_model

    model = build_model("osnet_x0_25", num_classes=7, weights=zoo_file)
    err = capsys.readouterr().err
    assert model.classifier.weight.shape[0] == 7
    assert f"{zoo_file.name} has no classifier" in err and "starts untrained" in err
    ref = torch.load(zoo_file, weights_only=True)
    assert torch.equal(model.state_dict()["conv1.conv.weight"], ref["conv1.conv.weight"])


def test_paper_finetune_from_a_zoo_file_says_fixbase_covers_the_run(reid_data, zoo_file, tmp_path, capsys):
    out = tmp_path / "run"
    rc, cap = _train(_args(reid_data, out, "--recipe", "paper-finetune", "--weights", str(zoo_file), "--epochs", "1",
                           "--eval-every", "0"), capsys)
    assert rc == 0, cap.err
    assert "--fixbase-epochs 10 >= --epochs 1" in cap.err and "backbone stays frozen" in cap.err
    assert "has no classifier" in cap.err
    assert "[fixbase: backbone frozen]" in cap.out
    assert (out / "checkpoint.pth").is_file() and (out / "model-best.pth").is_file()


def test_a_failed_run_leaves_no_folder(reid_data, tmp_path, capsys):
    from osnet_edge.models import build_model

    other = tmp_path / "osnet_x0_5.pth"
    torch.save(build_model("osnet_x0_5").state_dict(), other)
    out = tmp_path / "runs" / "x025"
    rc, cap = _train(_args(reid_data, out, "--arch", "osnet_x0_25", "--weights", str(other), "--epochs", "1"), capsys)
    assert rc == 1 and cap.err.startswith("osnet-train: error: ") and "osnet_x0_5" in cap.err
    assert not out.exists()
    rc, cap = _train(_args(tmp_path / "missing", out, "--epochs", "1"), capsys)
    assert rc == 1 and "folder not found" in cap.err
    assert not out.exists()
    kept = tmp_path / "mine"  # a folder the user made is theirs: kept even when the run fails
    kept.mkdir()
    assert _train(_args(tmp_path / "missing", kept, "--epochs", "1"), capsys)[0] == 1
    assert kept.is_dir()
