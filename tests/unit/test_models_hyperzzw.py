"""HyperZ·Z·W (Zhang 2024): the operator's known answers, the static twin, the kernels' dependence on the
input, parameter and multiply-add counts, and the errors of bad input."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import workbench as wb
import workbench.models.hyperzzw as H  # registers the models

torch.set_num_threads(1)


def _reference(z, kernels, stride=1):
    """One image at a time, with F.conv2d."""
    k = kernels.shape[-1]
    return torch.cat([F.conv2d(z[b:b + 1], kernels[b].unsqueeze(1), stride=stride, padding=k // 2,
                               groups=z.shape[1]) for b in range(z.shape[0])])


def test_registered():
    assert {"hyperzzw_net", "hyperzzw_static_net"} <= set(wb.list_models("hyperzzw*"))


@pytest.mark.parametrize("k", [3, 5, 7])
def test_ones_context_is_plain_depthwise_conv(k):
    g = torch.Generator().manual_seed(k)
    z, w = torch.randn(3, 4, 9, 9, generator=g), torch.randn(4, 1, k, k, generator=g)
    plain = F.conv2d(z, w, padding=k // 2, groups=4)
    torch.testing.assert_close(H.hyperzzw(z, w, torch.ones(3, 4, k, k)), plain)
    torch.testing.assert_close(H.hyperzzw(z, w, None), plain)
    torch.testing.assert_close(H.hyperzzw(z, w, torch.full((3, 4, k, k), 2.5)), 2.5 * plain)  # a constant scales


@pytest.mark.parametrize("k,stride,size", [(3, 1, 8), (5, 1, 9), (7, 2, 8), (5, 2, 9), (3, 2, 7)])
def test_each_image_gets_its_own_kernel(k, stride, size):
    g = torch.Generator().manual_seed(size + k)
    z, w = torch.randn(3, 4, size, size, generator=g), torch.randn(4, 1, k, k, generator=g)
    ctx = torch.rand(3, 4, k, k, generator=g) * 2
    want = _reference(z, w[:, 0].unsqueeze(0) * ctx, stride)
    torch.testing.assert_close(H.hyperzzw(z, w, ctx, stride=stride), want)


@pytest.mark.parametrize("k,stride,size", [(3, 1, 6), (5, 1, 7), (5, 2, 7), (7, 2, 8), (7, 1, 5)])
def test_per_image_depthwise_gradients(k, stride, size):
    g = torch.Generator().manual_seed(k * size)
    z = torch.randn(2, 3, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: H.per_image_depthwise(a, b, stride), (z, w))
    up = torch.randn(H.per_image_depthwise(z, w, stride).shape, generator=g, dtype=torch.float64)
    gz, gw = torch.autograd.grad((H.per_image_depthwise(z, w, stride) * up).sum(), (z, w))
    rz, rw = torch.autograd.grad((_reference(z, w, stride) * up).sum(), (z, w))
    torch.testing.assert_close(gz, rz)
    torch.testing.assert_close(gw, rw)


def test_channels_last_input_gives_the_same_answer():
    conv = H.HyperZZWConv(4, 5, variant="hyper")
    z = torch.randn(2, 4, 8, 8)
    y = conv(z.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y, conv(z))
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_context_term_known_answer():
    z = torch.arange(16.0).view(1, 1, 4, 4)  # pooled to 2x2: [[2.5, 4.5], [10.5, 12.5]], mean 7.5
    want = torch.tensor([[[[-5.0, -3.0], [3.0, 5.0]]]])
    torch.testing.assert_close(H.context_term(z, 2), want)
    torch.testing.assert_close(H.context_term(torch.full((2, 3, 5, 5), 1.7), 3), torch.zeros(2, 3, 3, 3))


@pytest.mark.parametrize("k,stride", [(3, 1), (5, 1), (7, 2)])
def test_uniform_context_reduces_to_the_hyper_kernel(k, stride):
    """A spatially uniform input has no context: the operator is F.conv2d with the slow network's kernel."""
    torch.manual_seed(0)
    conv = H.HyperZZWConv(4, k, stride=stride, variant="hyper")
    z = torch.randn(3, 4, 1, 1).expand(3, 4, 8, 8).contiguous()  # each channel constant in space
    w = conv.kernel()
    assert tuple(w.shape) == (4, 1, k, k)
    torch.testing.assert_close(conv.kernels(z), w[:, 0].expand(3, 4, k, k))
    torch.testing.assert_close(conv(z), F.conv2d(z, w, stride=stride, padding=k // 2, groups=4))


def test_static_twin_is_an_ordinary_conv():
    torch.manual_seed(0)
    conv = H.HyperZZWConv(4, 5, stride=2, variant="static")
    z = torch.randn(3, 4, 9, 9)
    torch.testing.assert_close(conv(z), F.conv2d(z, conv.weight, stride=2, padding=2, groups=4))
    assert not hasattr(conv, "slow") and not hasattr(conv, "alpha")
    # the whole block: branches, normalisation, bottleneck -- an ordinary conv net
    net = wb.create_model("hyperzzw_static_net", width=4)
    block = net.blocks[0]
    x = torch.randn(2, 4, 8, 8)
    block.eval()
    ys = [F.conv2d(x, b.weight, padding=k // 2, groups=4) for k, b in zip(block.kernel_sizes, block.branches)]
    want = F.gelu(block.bn(block.bottleneck(F.gelu(block.bn_cat(torch.cat(ys, 1))))))
    torch.testing.assert_close(block(x), want)


def test_hyper_kernel_is_a_function_of_coordinates():
    slow = H.HyperKernel(5, channels=6, hidden=8, layers=2)
    w = slow()
    assert tuple(w.shape) == (6, 1, 5, 5)
    assert torch.allclose(slow.coords[0], torch.tensor([-1.0, -1.0])) and torch.allclose(slow.coords[-1], torch.ones(2))
    # its parameters do not grow with the kernel: 3 filters of 2 -> 8, 2 layers of 8 -> 8, 8 -> 6
    n = 3 * (2 * 8 + 8) + 2 * (8 * 8 + 8) + (8 * 6 + 6)
    assert sum(p.numel() for p in slow.parameters()) == n
    assert sum(p.numel() for p in H.HyperKernel(15, channels=6, hidden=8, layers=2).parameters()) == n
    assert "coords" not in slow.state_dict()


def test_generated_kernels_vary_with_the_input_only_when_hyper():
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    spreads = {}
    for variant in H.VARIANTS:
        torch.manual_seed(0)
        model = wb.create_model("hyperzzw_net", width=4, variant=variant)
        kernels = H.generated_kernels(model, x)
        assert list(kernels) == [f"blocks.{i}.{k}" for i in range(3) for k in (3, 5, 7)]
        assert tuple(kernels["blocks.2.7"].shape) == (6, 8, 7, 7)
        assert model.training  # the train flag is restored
        again = H.generated_kernels(model, x.flip(-1) + 0.5)
        changed = any(not torch.equal(kernels[n], again[n]) for n in kernels)
        table = H.kernel_variation(kernels)
        spreads[variant] = table.spread
        if variant == "hyper":
            assert changed and (table.spread > 1e-3).all()
        else:
            assert not changed and (table.spread == 0).all()
            for n, k in kernels.items():  # every image gets the one kernel W
                assert torch.equal(k, k[:1].expand_as(k))
    model = wb.create_model("hyperzzw_net", width=4)
    with pytest.raises(TypeError, match="HyperZZWNet"):
        H.generated_kernels(wb.create_model("resnet8"), x)
    assert set(H.generated_kernels(model, x[:1])) == set(kernels)


def test_without_context_convolves_every_image_with_w():
    torch.manual_seed(0)
    model = wb.create_model("hyperzzw_net", width=4)
    x = torch.randn(5, 3, 16, 16)
    off = H.without_context(model)
    kernels = H.generated_kernels(off, x)
    assert (H.kernel_variation(kernels).spread == 0).all()
    block = off.blocks[1]
    torch.testing.assert_close(kernels["blocks.1.5"][0], block.branches[1].kernel()[:, 0].detach())
    alphas = [m.alpha.detach() for m in model.modules() if isinstance(m, H.HyperZZWConv)]
    assert all(float(a.abs().sum()) > 0 for a in alphas)  # the original keeps its context: a copy was changed
    implicit = wb.create_model("hyperzzw_net", width=4, variant="implicit")
    implicit.load_state_dict({k: v for k, v in off.state_dict().items() if not k.endswith("alpha")})
    off.eval(), implicit.eval()
    torch.testing.assert_close(off(x), implicit(x))
    with pytest.raises(ValueError, match="variant 'hyper'"):
        H.without_context(implicit)


def test_kernel_variation_known_answer():
    m, d = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1), torch.tensor([0.3, 0.4]).view(1, 2, 1, 1)
    kernels = {"blocks.0.1": torch.cat([m + d, m - d]), "blocks.3.5": torch.ones(4, 2, 5, 5)}
    table = H.kernel_variation(kernels)
    assert table.spread.tolist() == pytest.approx([0.1, 0.0])  # std = |d| = 0.5, mean = |m| = 5
    assert table.block.tolist() == ["blocks.0", "blocks.3"] and table.kernel_size.tolist() == [1, 5]


def test_forward_backward_on_a_cifar_batch():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for variant in H.VARIANTS:
        model = wb.create_model("hyperzzw_net", width=8, depth=2, kernel_sizes=(3, 7), variant=variant)
        out = model(x)
        assert tuple(out.shape) == (8, 10)
        F.cross_entropy(out, y).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if variant == "hyper":
            assert model.blocks[0].branches[0].alpha.grad.abs().sum() > 0
    _, cache = wb.run_with_cache(model, x, names=["blocks.0.hook_branch7", "blocks.5.hook_out", "hook_pool"])
    assert tuple(cache["blocks.0.hook_branch7"].shape) == (8, 8, 32, 32)
    assert tuple(cache["blocks.5.hook_out"].shape) == (8, 32, 8, 8)
    assert tuple(cache["hook_pool"].shape) == (8, 32)
    names = wb.models.hook_points(model)
    assert {f"blocks.{i}" for i in range(6)} <= set(names) and "blocks.3.hook_concat" in names
    gray = wb.create_model("hyperzzw_net", in_chans=1, num_classes=3, width=4)
    assert tuple(gray(torch.randn(2, 1, 4, 4)).shape) == (2, 3)  # the smallest input: the total stride


def _params(variant, width, kernel_sizes, hidden=16, layers=2):
    """The parameter count in closed form."""
    total = 3 * 3 * 3 * width + 2 * width  # stem conv and BatchNorm
    cin, nb = width, len(kernel_sizes)
    for cout in (width, 2 * width, 4 * width):
        for k in kernel_sizes:
            if variant == "static":
                total += cin * k * k
            else:
                total += (layers + 1) * 3 * hidden + layers * (hidden + 1) * hidden + (hidden + 1) * cin
                total += cin if variant == "hyper" else 0  # alpha
        total += 2 * cin * nb + cin * nb * cout + 2 * cout  # bn_cat, bottleneck, bn
        cin = cout
    return total + (cin + 1) * 10


def test_parameter_counts():
    """The slow network costs the same for every kernel size; a static kernel grows with k^2. At the
    default sizes (3, 5, 7) the hyper network has more parameters than its static twin; from k = 11 on fewer."""
    for ks in [(3, 5, 7), (11, 13, 15)]:
        n = {v: wb.models.count_parameters(wb.create_model("hyperzzw_net", width=16, kernel_sizes=ks, variant=v))
             for v in H.VARIANTS}
        assert n == {v: _params(v, 16, ks) for v in H.VARIANTS}
        assert n["hyper"] - n["implicit"] == 3 * (16 + 16 + 32)  # alpha: one per channel and branch
    assert _params("hyper", 16, (3, 5, 7)) > _params("static", 16, (3, 5, 7))
    assert _params("hyper", 16, (11, 13, 15)) < _params("static", 16, (11, 13, 15))
    twin = wb.create_model("hyperzzw_static_net", width=16)
    assert wb.models.count_parameters(twin) == _params("static", 16, (3, 5, 7)) and twin.variant == "static"


def test_multiply_adds_differ_only_by_the_slow_network():
    """The fast network costs the same in every variant; the slow network runs once per forward pass."""
    def macs(variant):
        model = wb.create_model("hyperzzw_net", width=16, variant=variant).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, 32, 32))
        return counter.get_total_flops() // 2
    static, implicit, hyper = macs("static"), macs("implicit"), macs("hyper")
    slow = sum(k * k * (3 * 2 * 16 + 2 * 16 * 16 + 16 * c) for c in (16, 16, 32) for k in (3, 5, 7))
    assert implicit == hyper == static + slow
    assert slow / static < 0.07


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown variant 'dynamic'; valid variants: hyper, implicit, static"):
        wb.create_model("hyperzzw_net", variant="dynamic")
    with pytest.raises(ValueError, match=r"kernel size must be one of 3, 5, 7, 9, 11, 13, 15 .* got 4"):
        wb.create_model("hyperzzw_net", kernel_sizes=(3, 4))
    with pytest.raises(ValueError, match="got 17"):
        H.HyperKernel(17, channels=4)
    with pytest.raises(ValueError, match="must not repeat"):
        wb.create_model("hyperzzw_net", kernel_sizes=(3, 3))
    with pytest.raises(ValueError, match="non-empty tuple"):
        wb.create_model("hyperzzw_net", kernel_sizes=())
    with pytest.raises(ValueError, match="width must be an integer from 4 to 256, got 2"):
        wb.create_model("hyperzzw_net", width=2)
    with pytest.raises(ValueError, match="width must be an integer from 4 to 256, got 512"):
        wb.create_model("hyperzzw_static_net", width=512)
    with pytest.raises(ValueError, match="depth must be an integer from 1 to 8, got 0"):
        wb.create_model("hyperzzw_net", depth=0)
    with pytest.raises(ValueError, match="hidden must be an integer from 2 to 256"):
        wb.create_model("hyperzzw_net", hidden=1)
    model = wb.create_model("hyperzzw_net", width=4)
    with pytest.raises(ValueError, match="total stride of 4.*3x3.*at least 4x4"):
        model(torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"\[batch, 3, H, W\]"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"context must be \[batch, C, k, k\]"):
        H.hyperzzw(torch.randn(2, 4, 8, 8), torch.randn(4, 1, 3, 3), torch.ones(2, 4, 5, 5))
    with pytest.raises(ValueError, match="depthwise kernel"):
        H.hyperzzw(torch.randn(2, 4, 8, 8), torch.randn(4, 4, 3, 3))
    with pytest.raises(ValueError, match="unknown variant"):
        H.HyperZZWConv(4, 3, variant="Hyper")
