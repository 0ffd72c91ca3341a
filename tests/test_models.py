"""The OSNet family against torchreid 0.2.5's own osnet.py / osnet_ain.py (read from its sdist)."""
import pytest
import torch

from osnet_edge import ModelConfigError, build_model
from osnet_edge.models import VARIANTS, scaled_channels

TORCHREID_CHANNELS = {1.0: (64, 256, 384, 512), 0.75: (48, 192, 288, 384), 0.5: (32, 128, 192, 256),
                      0.25: (16, 64, 96, 128)}


def _randomize_norms(model, seed=0):
    """Non-trivial BN running stats and affine params, so equal outputs mean equal computation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) and m.affine:
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_matches_torchreid(name, torchreid_osnet, torchreid_osnet_ain):
    ref_mod = torchreid_osnet_ain if "ain" in name else torchreid_osnet
    torch.manual_seed(0)
    ref = getattr(ref_mod, name)(num_classes=10, pretrained=False)
    _randomize_norms(ref)
    ours = build_model(name, num_classes=10)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(our_sd) == list(ref_sd)
    assert {k: tuple(v.shape) for k, v in our_sd.items()} == {k: tuple(v.shape) for k, v in ref_sd.items()}
    ours.load_state_dict(ref_sd)
    x = torch.randn(2, 3, 128, 64)
    ref.eval(), ours.eval()
    with torch.no_grad():
        a, b = ref(x), ours(x)
    assert b.shape == (2, 512)
    assert (a - b).abs().max().item() <= 1e-5
    # training mode: logits, and (logits, features) for metric losses
    ref.train(), ours.train()
    ours.loss = ref.loss = "triplet"
    torch.manual_seed(1)
    with torch.no_grad():
        (ya, va), (yb, vb) = ref(x), ours(x)
    assert yb.shape == (2, 10) and vb.shape == (2, 512)
    assert (ya - yb).abs().max().item() <= 1e-5 and (va - vb).abs().max().item() <= 1e-5


@pytest.mark.parametrize("width", [1.0, 0.75, 0.5, 0.25])
def test_named_widths_reproduce_torchreid_channels(width):
    assert scaled_channels(width) == TORCHREID_CHANNELS[width]


@pytest.mark.parametrize("width", [0.3, 0.1, 0.05, 0.9])
def test_any_width_builds_and_runs(width):
    model = build_model(width=width).eval()
    for m in model.modules():  # gate hidden width never reaches zero
        if isinstance(m, torch.nn.Conv2d):
            assert m.out_channels >= 1 and m.in_channels >= 1
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 32))
    assert out.shape == (1, 512)
    assert model.width == pytest.approx(width)


def test_name_and_width_agree():
    assert build_model("osnet_x0_25").arch == "osnet_x0_25"
    assert build_model(width=0.25).arch == "osnet_x0_25"
    assert build_model(width=0.3).arch == "osnet_x0_3"
    assert build_model("osnet_x0_3").width == pytest.approx(0.3)
    assert build_model(width=0.5, family="osnet_ain").arch == "osnet_ain_x0_5"


def test_eval_without_classifier_and_train_needs_one():
    model = build_model("osnet_x0_25")
    assert model.classifier is None
    with pytest.raises(RuntimeError, match="num_classes"):
        model.train()(torch.randn(2, 3, 64, 32))


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="osnet_x2_0"), "width must be in"),
    (dict(name="resnet50"), "osnet_x1_0, osnet_x0_75"),
    (dict(width=0), r"\(0, 1\]"),
    (dict(width=1.5), r"\(0, 1\]"),
    (dict(width="wide"), "must be a number"),
    (dict(name="osnet_x0_25", input_size=(8, 8)), "too small"),
    (dict(name="osnet_x0_25", width=0.5), "conflicts"),
])
def test_bad_config_is_one_clear_error(kwargs, match):
    with pytest.raises(ModelConfigError, match=match):
        build_model(kwargs.pop("name", None), **kwargs)


def test_smallest_accepted_input_runs():
    from osnet_edge.models.factory import MIN_INPUT_SIZE

    model = build_model("osnet_x0_25", input_size=(MIN_INPUT_SIZE, MIN_INPUT_SIZE)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, MIN_INPUT_SIZE, MIN_INPUT_SIZE)).shape == (1, 512)
    with pytest.raises(ModelConfigError):
        build_model("osnet_x0_25", input_size=(MIN_INPUT_SIZE - 1, 64))
