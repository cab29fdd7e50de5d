import pytest
import torch

import workbench as wb
from workbench.models import count_parameters, create_model, hook_points, list_models
from workbench.probe import run_with_cache


def resnet_params(n: int, w: int, cin: int, classes: int, skip: bool = True) -> int:
    """Closed-form parameter count of a CIFAR ResNet with projection shortcuts at stage changes."""
    stem = 9 * cin * w + 2 * w
    s1 = n * (18 * w * w + 4 * w)
    s2 = (18 + 36) * w * w + 8 * w + (n - 1) * (72 * w * w + 8 * w)
    s3 = (72 + 144) * w * w + 16 * w + (n - 1) * (288 * w * w + 16 * w)
    shortcuts = (2 * w * w + 4 * w) + (8 * w * w + 8 * w) if skip else 0
    return stem + s1 + s2 + s3 + shortcuts + 4 * w * classes + classes


def test_registry_lists_and_rejects():
    names = list_models()
    for n in ("resnet14", "resnet20", "resnet32", "resnet56", "resnet110", "plain20", "mlp", "vit_tiny"):
        assert n in names
    assert list_models("plain*") == sorted(n for n in names if n.startswith("plain"))
    with pytest.raises(ValueError, match="valid names: .*resnet20"):
        create_model("resnet21")
    with pytest.raises(TypeError, match="takes: num_classes, in_chans, width"):
        create_model("resnet20", widht=32)
    with pytest.raises(ValueError, match="6n\\+2"):
        create_model("resnet_cifar", depth=21)


@pytest.mark.parametrize("depth", [8, 14, 20, 32, 56, 110])
def test_resnet_parameter_counts(depth):
    n = (depth - 2) // 6
    assert count_parameters(create_model(f"resnet{depth}")) == resnet_params(n, 16, 3, 10)
    assert count_parameters(create_model(f"plain{depth}")) == resnet_params(n, 16, 3, 10, skip=False)
    assert count_parameters(create_model(f"resnet{depth}", width=32, in_chans=1, num_classes=7)) == \
        resnet_params(n, 32, 1, 7)


def test_resnet20_matches_published_size():
    # He et al. 2016, table 6: ResNet-20 has 0.27M parameters
    assert round(count_parameters(create_model("resnet20")) / 1e6, 2) == 0.27


@pytest.mark.parametrize("n,w", [(1, 16), (2, 16), (3, 16), (9, 16), (3, 32)])
def test_batchnorm_parameter_count_closed_form(n, w):
    model = create_model("resnet_cifar", depth=6 * n + 2, width=w)
    bn = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    assert bn == 2 * w * (14 * n + 7)  # Frankle et al. 2020 / open_lth


@pytest.mark.parametrize("name", ["resnet8", "plain8", "mlp", "vit_tiny"])
@pytest.mark.parametrize("chans,size", [(3, 32), (1, 28)])
def test_forward_shapes_for_one_and_three_channels(name, chans, size):
    kwargs = {"in_chans": chans, "num_classes": 7}
    if name in ("mlp", "vit_tiny"):
        kwargs["img_size"] = size
    model = create_model(name, **kwargs).eval()
    out = model(torch.randn(2, chans, size, size))
    assert out.shape == (2, 7)
    out.sum().backward()


def test_plain_has_no_shortcuts_and_resnet_does():
    r, p = create_model("resnet20"), create_model("plain20")
    assert all(b.skip for s in (r.layer1, r.layer2, r.layer3) for b in s)
    assert not any(b.skip or b.shortcut is not None for s in (p.layer1, p.layer2, p.layer3) for b in s)
    assert r.layer2[0].shortcut is not None and r.layer1[0].shortcut is None


def test_identity_shortcut_really_adds_the_input():
    block = create_model("resnet8").layer1[0].eval()
    for m in (block.conv2,):
        torch.nn.init.zeros_(m.weight)  # branch output = bn2(0) = beta = 0
    x = torch.rand(2, 16, 8, 8)
    assert torch.allclose(block(x), torch.relu(x))


def test_hook_points_and_run_with_cache_shapes():
    model = create_model("resnet20").eval()
    names = hook_points(model)
    for n in ("stem", "layer1", "layer1.0", "layer1.0.hook_out", "layer3.2.hook_branch", "hook_pool"):
        assert n in names
    x = torch.randn(4, 3, 32, 32)
    out, cache = run_with_cache(model, x, ["layer1", "layer2.0", "layer3", "hook_pool"])
    assert cache["layer1"].shape == (4, 16, 32, 32)
    assert cache["layer2.0"].shape == (4, 32, 16, 16)
    assert cache["layer3"].shape == (4, 64, 8, 8)
    assert torch.allclose(model.fc(cache["hook_pool"]), out, atol=1e-6)
    assert torch.equal(cache["layer3"], cache["layer3"].clamp(min=0))  # post-ReLU


def test_run_with_cache_removes_hooks_even_on_error():
    model = create_model("resnet8")

    def count():
        return sum(len(m._forward_hooks) for m in model.modules())

    run_with_cache(model, torch.randn(2, 3, 32, 32), ["layer1", "layer2"])
    assert count() == 0
    with pytest.raises(ValueError):
        run_with_cache(model, torch.randn(2, 3, 16, 16, 1), ["layer1", "layer2"])
    assert count() == 0


def test_unknown_hook_lists_available_names():
    with pytest.raises(ValueError, match="available hook points: stem, layer1"):
        run_with_cache(create_model("resnet8"), torch.randn(1, 3, 32, 32), ["layer4"])


def test_vit_and_mlp_hooks():
    vit = create_model("vit_tiny", depth=2).eval()
    _, cache = run_with_cache(vit, torch.randn(3, 3, 32, 32), ["blocks.0", "blocks.1.hook_attn", "hook_pool"])
    assert cache["blocks.0"].shape == (3, 65, 192) and cache["hook_pool"].shape == (3, 192)
    mlp = create_model("mlp", depth=3, width=64)
    _, cache = run_with_cache(mlp, torch.randn(3, 3, 32, 32))
    assert set(cache) == {"hook_in", "layers.0", "layers.1", "layers.2"}


def test_bad_inputs_name_the_fix():
    model = create_model("resnet8")
    with pytest.raises(TypeError, match="to_float"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="in_chans=1"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="img_size=28"):
        create_model("mlp")(torch.zeros(1, 3, 28, 28))


def test_strided_projection_is_the_strided_convolution_and_survives_channels_last():
    """torch 2.13's CPU kernel of a 1x1 stride-2 convolution corrupted memory on channels-last 8-channel inputs
    of 64x64; the shortcut computes the same function on every second pixel instead."""
    from workbench.models.resnet_cifar import StridedPointwise
    torch.manual_seed(0)
    ours = StridedPointwise(8, 16, 2)
    ref = torch.nn.Conv2d(8, 16, 1, stride=2, bias=False)
    ref.weight.data.copy_(ours.weight.data)
    x = torch.randn(3, 8, 32, 32)
    assert torch.equal(ours(x), ref(x))
    ours.bias = torch.nn.Parameter(torch.randn(16))  # what folding BatchNorm into it adds
    ref.bias = torch.nn.Parameter(ours.bias.detach().clone())
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    m = create_model("resnet8", width=8).to(memory_format=torch.channels_last)
    m(torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)).sum().backward()  # used to crash
