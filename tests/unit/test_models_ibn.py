"""IBN-Net blocks as a resnet_cifar option (Pan et al. 2018, arXiv 1807.09441)."""
import pytest
import torch
from torch import nn

from workbench.models import count_parameters, create_model
from workbench.models.resnet_cifar import IBN, BasicBlock


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _randomize(module: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = torch.randn(m.running_mean.shape, generator=g)
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5


def _as_ibn_state(state: dict) -> dict:
    """A plain model's state dict under IBN-a names (``...bn1.x`` -> ``...bn1.BN.x`` where bn1 became IBN)."""
    return {k.replace(".bn1.", ".bn1.BN.") if k.startswith(("layer1", "layer2")) else k: v for k, v in state.items()}


def test_default_is_unchanged_and_kwargs_stay_out_of_the_cache_key():
    torch.manual_seed(0)
    a = create_model("resnet20")
    torch.manual_seed(0)
    b = create_model("resnet20", ibn=None)
    assert a.model_kwargs == {}  # train_model's key holds only the kwargs given: existing keys are unchanged
    assert list(a.state_dict()) == list(b.state_dict())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not any(isinstance(m, (IBN, nn.InstanceNorm2d)) for m in a.modules())


@pytest.mark.parametrize("train", [True, False])
def test_ibn_with_no_instance_channels_is_batchnorm_exactly(train):
    bn, ibn = nn.BatchNorm2d(6), IBN(6, ratio=0.0)
    _randomize(bn)
    ibn.BN.load_state_dict(bn.state_dict())
    assert ibn.IN is None and ibn.n_in == 0
    x = _x(4, 6, 5, 5)
    assert torch.equal(bn.train(train)(x), ibn.train(train)(x))


@pytest.mark.parametrize("train", [True, False])
def test_resnet_with_zero_ratio_equals_the_plain_resnet_with_the_same_weights(train):
    torch.manual_seed(3)
    plain = create_model("resnet8", width=8)
    torch.manual_seed(3)
    ibn = create_model("resnet8", width=8, ibn="a", ibn_ratio=0.0)
    _randomize(plain)
    ibn.load_state_dict(_as_ibn_state(plain.state_dict()))
    x = _x(4, 3, 8, 8)
    assert torch.equal(plain.train(train)(x), ibn.train(train)(x))


def test_instance_part_normalizes_each_image_and_channel():
    ibn = IBN(8, ratio=0.5).train()
    x = _x(3, 8, 6, 6) * 5 + 2
    out = ibn(x)
    a = out[:, :4]  # the IN part, before any trained affine (gamma 1, beta 0)
    assert torch.allclose(a.mean((2, 3)), torch.zeros(3, 4), atol=1e-5)
    assert torch.allclose(a.var((2, 3), unbiased=False), torch.ones(3, 4), atol=1e-3)
    # with an affine: gamma (x - mean) / sqrt(var + eps) + beta per image and channel; BN on the rest
    _randomize(ibn, seed=5)
    out = ibn(x)
    xi = x[:, :4]
    mu, var = xi.mean((2, 3), keepdim=True), xi.var((2, 3), unbiased=False, keepdim=True)
    hand = (xi - mu) / torch.sqrt(var + 1e-5) * ibn.IN.weight.view(1, -1, 1, 1) + ibn.IN.bias.view(1, -1, 1, 1)
    assert torch.allclose(out[:, :4], hand, atol=1e-5)
    xb = x[:, 4:]
    mu, var = xb.mean((0, 2, 3), keepdim=True), xb.var((0, 2, 3), unbiased=False, keepdim=True)
    hand = (xb - mu) / torch.sqrt(var + 1e-5) * ibn.BN.weight.view(1, -1, 1, 1) + ibn.BN.bias.view(1, -1, 1, 1)
    assert torch.allclose(out[:, 4:], hand, atol=1e-5)


def test_placement_of_ibn_a_and_b():
    a = create_model("resnet20", ibn="a")
    for s, expect in ((1, True), (2, True), (3, False)):
        for blk in getattr(a, f"layer{s}"):
            assert isinstance(blk.bn1, IBN) == expect and blk.inorm is None
    assert a.layer1[0].bn1.n_in == 8 and a.layer2[0].bn1.n_in == 16  # half the channels
    assert isinstance(a.stem[1], nn.BatchNorm2d)
    b = create_model("resnet20", ibn="b")
    assert isinstance(b.stem[1], nn.InstanceNorm2d) and b.stem[1].affine
    with_in = [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3) if getattr(b, f"layer{s}")[i].inorm is not None]
    assert with_in == ["layer1.2", "layer2.2"]  # after the addition, the last block of each early stage
    assert not any(isinstance(m, IBN) for m in b.modules())
    three = create_model("resnet20", ibn="a", ibn_stages=3, ibn_ratio=0.25)
    assert all(isinstance(blk.bn1, IBN) for s in (1, 2, 3) for blk in getattr(three, f"layer{s}"))
    assert three.layer3[0].bn1.n_in == 16


def test_parameter_counts_closed_form():
    plain = count_parameters(create_model("resnet20"))
    assert count_parameters(create_model("resnet20", ibn="a")) == plain  # IN + BN affine = one BN's
    assert count_parameters(create_model("resnet20", ibn="b")) == plain + 2 * 16 + 2 * 32  # two added INs


def test_ibn_b_network_ignores_the_input_contrast():
    """The stem's IN follows a bias-free convolution, so scaling the image by a > 0 leaves every later
    activation unchanged (up to IN's eps): the appearance invariance the paper builds on."""
    torch.manual_seed(0)
    b = create_model("resnet8", ibn="b").eval()
    torch.manual_seed(0)
    plain = create_model("resnet8").eval()
    x = _x(4, 3, 8, 8)
    assert torch.allclose(b(3 * x), b(x), atol=1e-4)
    assert not torch.allclose(plain(3 * x), plain(x), atol=1e-2)


def test_ibn_models_train_a_step():
    for kind in ("a", "b"):
        m = create_model("resnet8", ibn=kind, width=4)
        m(_x(2, 3, 8, 8)).sum().backward()
        assert all(p.grad is not None for p in m.parameters())


def test_bad_arguments_name_the_valid_values():
    with pytest.raises(ValueError, match="ibn is one of"):
        create_model("resnet20", ibn="c")
    with pytest.raises(ValueError, match=r"ibn_ratio .* \[0, 1\]"):
        create_model("resnet_cifar", ibn="a", ibn_ratio=1.5)
    with pytest.raises(ValueError, match="ibn_stages"):
        create_model("resnet20", ibn="a", ibn_stages=4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        IBN(4, ratio=-0.1)


def test_block_level_option_matches_the_module():
    blk = BasicBlock(4, 4, ibn="b")
    assert isinstance(blk.inorm, nn.InstanceNorm2d) and isinstance(blk.bn1, nn.BatchNorm2d)
