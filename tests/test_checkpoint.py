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
    assert "classifier dropped (trained for 751 classes, this model has 100)" in capsys.readouterr().err
    assert model.classifier.out_features == 100
    assert _same_output(model, torchreid_x025)


def test_our_checkpoint_carries_architecture(tmp_path):
    model = build_model(width=0.3, input_size=(192, 96))
    path = save_checkpoint(model, tmp_path / "ours.pth", epoch=3)
    again = build_model(weights=str(path))
    assert again.arch == "osnet_x0_3" and again.input_size == (192, 96)
    assert _same_output(model, again)
    # an explicit size overrides the trained one (deploying a 128x64-trained network at 256x128)
    assert build_model(weights=str(path), input_size=(256, 128)).input_size == (256, 128)
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


def _zoo_model(name, torchreid_osnet, torchreid_osnet_ain, channels=None):
    """A torchreid model with non-trivial norms (equal outputs then mean equal computation)."""
    torch.manual_seed(7)
    if channels is not None:
        ref = torchreid_osnet.OSNet(751, blocks=[torchreid_osnet.OSBlock] * 3, layers=[2, 2, 2], channels=channels)
    else:
        ref = getattr(torchreid_osnet_ain if "ain" in name else torchreid_osnet, name)(num_classes=751, pretrained=False)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                m.running_mean.normal_(0, 0.1)
            if isinstance(m, torch.nn.InstanceNorm2d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
    return ref.eval()


@pytest.mark.parametrize("name", ["osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25", "osnet_ibn_x1_0",
                                  "osnet_ain_x1_0", "osnet_ain_x0_75", "osnet_ain_x0_5", "osnet_ain_x0_25"])
def test_zoo_file_without_arch_is_recognised(tmp_path, name, torchreid_osnet, torchreid_osnet_ain, capsys):
    ref = _zoo_model(name, torchreid_osnet, torchreid_osnet_ain)
    path = tmp_path / f"{name}_msmt17.pth"
    torch.save(ref.state_dict(), path)
    model = build_model(weights=str(path))
    assert model.arch == name
    assert _same_output(model, ref)
    assert "classifier" not in capsys.readouterr().err  # a feature extractor has no classifier to miss


def test_zoo_file_of_a_non_standard_width(tmp_path, torchreid_osnet, torchreid_osnet_ain):
    from osnet_edge.models import scaled_channels

    ref = _zoo_model(None, torchreid_osnet, torchreid_osnet_ain, channels=list(scaled_channels(0.3)))
    path = tmp_path / "custom.pth"
    torch.save({"state_dict": ref.state_dict(), "epoch": 10}, path)
    model = build_model(weights=str(path))
    assert model.arch == "osnet_x0_3" and model.width == pytest.approx(0.3)
    same = build_model(width=0.3).state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in same.items()}
    assert _same_output(model, ref)
    # the family of a file can still be forced (it must then fit, or the load says why)
    with pytest.raises(CheckpointError, match="does not fit osnet_ain_x0_3"):
        build_model(family="osnet_ain", weights=str(path))


def test_file_fitting_no_variant_names_the_closest(tmp_path, torchreid_x025):
    sd = torchreid_x025.state_dict()
    del sd["conv3.1.gate.fc1.bias"]
    sd["conv5.extra.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        build_model(weights=str(path))
    first, *keys = str(err.value).splitlines()
    assert first.startswith(f"{path} matches no OSNet variant; the closest is osnet_x0_25")
    assert keys == ["  missing: conv3.1.gate.fc1.bias", "  unexpected: conv5.extra.weight"]


def test_channels_of_no_width_are_named(tmp_path, torchreid_osnet, torchreid_osnet_ain):
    ref = _zoo_model(None, torchreid_osnet, torchreid_osnet_ain, channels=[16, 60, 96, 128])
    path = tmp_path / "odd.pth"
    torch.save(ref.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"channels \(16, 60, 96, 128\) come from no width multiplier\); "
                                              r"the closest is osnet_x0_25") as err:
        build_model(weights=str(path))
    assert "shape mismatch: conv2.0.conv1.conv.weight (15, 16, 1, 1) vs (16, 16, 1, 1)" in str(err.value)


def test_two_variants_that_fit_ask_for_the_name(tmp_path, torchreid_x025, monkeypatch):
    from osnet_edge.models import factory

    # a second family with the same structure: the key names and shapes cannot tell the two apart
    monkeypatch.setitem(factory.FAMILIES, "osnet_twin", dict(factory.FAMILIES["osnet"]))
    path = tmp_path / "zoo.pth"
    torch.save(torchreid_x025.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"fits osnet_x0_25 and osnet_twin_x0_25 equally: name the variant "
                                              r"\(--arch osnet_x0_25"):
        build_model(weights=str(path))
    assert build_model("osnet_x0_25", weights=str(path)).arch == "osnet_x0_25"


def test_width_for_channels_prefers_torchreid_and_short_widths():
    from osnet_edge.checkpoint import width_for_channels
    from osnet_edge.models import scaled_channels

    for w in (1.0, 0.75, 0.5, 0.25, 0.3, 0.6, 0.15, 0.9):
        assert width_for_channels(scaled_channels(w)) == pytest.approx(w)
    assert width_for_channels((16, 60, 96, 128)) is None


def test_provenance_of_weights(tmp_path, torchreid_x025):
    import hashlib

    from osnet_edge.checkpoint import model_meta

    random = build_model("osnet_x0_25")
    assert model_meta(random).provenance == {"weights": "random init", "trained": False}
    path = tmp_path / "osnet_x0_25_msmt17.pth"
    torch.save(torchreid_x025.state_dict(), path)
    zoo = build_model(weights=str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert model_meta(zoo).provenance == {"weights": path.name, "sha256": digest, "trained": True}
    # re-saved as ours, then loaded: the new file's hash, and the file it came from
    again = build_model(weights=str(save_checkpoint(zoo, tmp_path / "resaved.pth"))).provenance
    assert again["weights"] == "resaved.pth" and again["sha256"] != digest and again["trained"] is True
    assert again["derived_from"] == f"{path.name} sha256:{digest}"
    # our checkpoint of an untrained network stays untrained when loaded again
    ours = save_checkpoint(random, tmp_path / "ours.pth")
    assert model_meta(build_model(weights=str(ours))).provenance["trained"] is False


def test_export_cli_reads_the_arch_of_a_zoo_file(tmp_path, torchreid_osnet, torchreid_osnet_ain, capsys):
    """osnet-export --weights ZOO_FILE without --arch; the artifact records where its weights came from."""
    import hashlib

    from osnet_edge import Embedder
    from osnet_edge.export.cli import main

    ref = _zoo_model("osnet_ain_x0_25", torchreid_osnet, torchreid_osnet_ain)
    path = tmp_path / "osnet_ain_x0_25_msmt17.pth"
    torch.save(ref.state_dict(), path)
    assert main(["--weights", str(path), "--format", "openvino", "--imgsz", "64", "32",
                 "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    with Embedder(tmp_path / "osnet_ain_x0_25_64x32_fp32.xml") as emb:
        meta, text = emb.meta, repr(emb)
    assert meta.arch == "osnet_ain_x0_25"
    prov = meta.provenance
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and prov["trained"] is True
    assert prov["parity"]["verified"] and prov["parity"]["min_cos"] >= 0.99999 and prov["parity"]["batches"] == [1, 33]
    assert f"{path.name} sha256:{prov['sha256'][:12]}, parity min cos" in out
    assert f"{path.name} sha256:{prov['sha256'][:12]}, parity min cos" in text


def test_onnx_artifact_records_provenance(tmp_path):
    from osnet_edge import Embedder
    from osnet_edge.export import export_model

    model = build_model("osnet_x0_25", input_size=(64, 32))
    res = export_model(model, "onnx", tmp_path, opset=18, quiet=True)
    with Embedder(res.path) as emb:
        prov = emb.meta.provenance
    assert prov["weights"] == "random init" and prov["trained"] is False
    assert prov["parity"]["min_cos"] == pytest.approx(res.parity["min_cos"])
    assert "RANDOM INIT (untrained)" in emb.meta.provenance_line()


def test_metadata_without_provenance_still_loads():
    from osnet_edge.metadata import ModelMeta

    old = ModelMeta.from_json('{"arch": "osnet_x0_25", "width": 0.25, "input_size": [256, 128]}')
    assert old.provenance == {} and "provenance unknown" in old.provenance_line()
