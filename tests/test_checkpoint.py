"""Checkpoints: torchreid's files as-is, our own, and every way a file can be wrong."""
import collections

import pytest
import torch

from osnet_edge import CheckpointError, build_model, load_checkpoint, save_checkpoint


class NotAWeight:  # a pickle that needs this class's code to load
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.fixture(scope="module")
def torchreid_x025(torchreid_osnet):
    torch.manual_seed(3)
    model = torchreid_osnet.osnet_x0_25(num_classes=751, pretrained=False)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
    return model.eval()


def _same_output(a, b):
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        return (a.eval()(x) - b.eval()(x)).abs().max().item() <= 1e-5


def test_torchreid_model_zoo_file(tmp_path, torchreid_x025):
    path = tmp_path / "osnet_x0_25_msmt17.pth"
    torch.save(torchreid_x025.state_dict(), path)
    model = build_model("osnet_x0_25", weights=str(path))
    assert _same_output(model, torchreid_x025)


def test_torchreid_training_checkpoint_with_module_prefix(tmp_path, torchreid_x025, capsys):
    sd = collections.OrderedDict(("module." + k, v) for k, v in torchreid_x025.state_dict().items())
    opt = torch.optim.SGD(torchreid_x025.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "model.pth.tar-60"
    torch.save({"state_dict": sd, "epoch": 60, "rank1": 0.9, "optimizer": opt.state_dict()}, path)
    model = build_model("osnet_x0_25", num_classes=751, weights=str(path))
    assert torch.equal(model.classifier.weight, torchreid_x025.classifier.weight)
    assert _same_output(model, torchreid_x025)


def test_other_class_count_drops_classifier_with_notice(tmp_path, torchreid_x025, capsys):
    path = tmp_path / "w.pth"
    torch.save(torchreid_x025.state_dict(), path)
    model = build_model("osnet_x0_25", num_classes=100, weights=str(path))
    assert "classifier dropped" in capsys.readouterr().err
    assert model.classifier.out_features == 100
    assert _same_output(model, torchreid_x025)


def test_our_checkpoint_carries_architecture(tmp_path):
    model = build_model(width=0.3, input_size=(192, 96))
    path = save_checkpoint(model, tmp_path / "ours.pth", epoch=3)
    again = build_model(weights=str(path))
    assert again.arch == "osnet_x0_3" and again.input_size == (192, 96)
    assert _same_output(model, again)
    blob = torch.load(path, weights_only=True)
    assert blob["meta"]["mean"] and blob["meta"]["feature_dim"] == 512 and blob["epoch"] == 3


def test_architecture_mismatch_names_likely_variant(tmp_path, torchreid_osnet_ain):
    path = tmp_path / "ain.pth"
    torch.save(torchreid_osnet_ain.osnet_ain_x0_5(num_classes=10, pretrained=False).state_dict(), path)
    with pytest.raises(CheckpointError, match="osnet_ain_x0_5") as err:
        build_model("osnet_x0_25", weights=str(path))
    assert "unexpected" in str(err.value) and "missing" in str(err.value)


def test_width_mismatch_lists_shapes(tmp_path):
    path = tmp_path / "x1.pth"
    torch.save(build_model("osnet_x0_5").state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatch") as err:
        build_model("osnet_x0_25", weights=str(path))
    assert "osnet_x0_5" in str(err.value)


def test_pickle_with_code_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": build_model("osnet_x0_25").state_dict(), "payload": NotAWeight()}, path)
    with pytest.raises(CheckpointError, match="arbitrary Python code"):
        build_model("osnet_x0_25", weights=str(path))
    assert "must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "text", "no_state_dict"])
def test_bad_files(tmp_path, kind):
    path = tmp_path / "w.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save(build_model("osnet_x0_25").state_dict(), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "no_state_dict":
        torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match=str(path.name) if kind != "missing" else "not found"):
        load_checkpoint(build_model("osnet_x0_25"), path)


def test_weights_without_arch_need_a_name(tmp_path, torchreid_x025):
    from osnet_edge import ModelConfigError

    path = tmp_path / "zoo.pth"
    torch.save(torchreid_x025.state_dict(), path)
    with pytest.raises(ModelConfigError, match="pass the variant"):
        build_model(weights=str(path))
