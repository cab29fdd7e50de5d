"""The architectures of issue 17 that need no new operator (MobileNetV2, SimpleNet, VGG,
Inception-ResNet) and wb.models.summary: reference counts, the paper's numbers, bad input."""
import pytest
import torch
from torch import nn

import workbench as wb
from workbench.models import count_parameters, create_model, hook_points, summary, summary_table
from workbench.models.mobilenetv2 import make_divisible


def test_mobilenetv2_matches_the_reference_counts():
    m = create_model("mobilenetv2", num_classes=1000)
    # torchvision's mobilenet_v2() has 3,504,872 parameters; the paper's table 3 says 300M multiply-adds
    assert count_parameters(m) == 3_504_872
    s = summary(m, (3, 224, 224))
    assert 295e6 < s.macs < 305e6
    assert s.macs == 300_774_272  # torch's counter on the reference layout (convolutions and the classifier)
    # width 0.5 and 1.4 rows of the paper's table 3: 1.95M parameters and 97M multiply-adds, 585M
    # multiply-adds (its 1.4 row keeps 1,792 channels in the last layer). The table's 6.9M parameters
    # at 1.4 is not checked: the authors' released 1.4 model has 6.06M, and this layout 6.11M.
    half = summary(create_model("mobilenetv2", num_classes=1000, width_mult=0.5), (3, 224, 224))
    wide = summary(create_model("mobilenetv2", num_classes=1000, width_mult=1.4), (3, 224, 224))
    assert abs(half.params / 1.95e6 - 1) < 0.02 and abs(half.macs / 97e6 - 1) < 0.03
    assert abs(wide.macs / 585e6 - 1) < 0.01 and wide.table["output"].iloc[-2].startswith("1792x")


def test_make_divisible_rounds_like_the_reference():
    assert [make_divisible(v) for v in (32, 16 * 0.5, 24 * 0.35, 1280 * 1.4, 3, 12.1)] == [32, 8, 8, 1792, 8, 16]


def test_mobilenetv2_block_structure_and_linear_bottleneck_switch():
    m = create_model("mobilenetv2_cifar", width_mult=0.5)
    blocks = [b for b in m.blocks]
    assert len(blocks) == 17 and sum(b.use_residual for b in blocks) == 10  # table 1: 17 bottlenecks, 10 with a skip
    x = torch.randn(4, 3, 32, 32)
    assert m(x).shape == (4, 10)
    cache = wb.run_with_cache(m, x, ["blocks.3.hook_project", "blocks.3.hook_expand"])[1]
    assert (cache["blocks.3.hook_project"] < 0).any()  # linear: the bottleneck keeps negative values
    assert cache["blocks.3.hook_expand"].shape[1] == 6 * cache["blocks.3.hook_project"].shape[1]
    r = create_model("mobilenetv2_cifar", width_mult=0.5, linear_bottleneck=False)
    r.load_state_dict(m.state_dict())
    proj = wb.run_with_cache(r, x, ["blocks.3.hook_project"])[1]["blocks.3.hook_project"]
    assert proj.min() >= 0 and proj.max() <= 6  # ReLU6 after the projection
    assert count_parameters(r) == count_parameters(m)  # the switch costs nothing: equal-cost comparison
    assert summary(r).macs == summary(m).macs


def test_mobilenetv2_bad_input_lists_valid_values():
    with pytest.raises(ValueError, match=r"width_mult must lie in \[0.05, 4.0\]"):
        create_model("mobilenetv2", width_mult=0)
    with pytest.raises(ValueError, match="expansion must be an integer in"):
        create_model("mobilenetv2_cifar", expansion=0)
    with pytest.raises(ValueError, match="total stride of 32.*at least 32x32"):
        create_model("mobilenetv2", num_classes=10)(torch.zeros(1, 3, 16, 16))
    assert create_model("mobilenetv2_cifar").min_input_size == 8


def test_simplenet_has_the_papers_parameter_count():
    m = create_model("simplenet")
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 13 and not any(True for mod in m.modules() if isinstance(mod, nn.Linear) and mod is not m.fc)
    # the paper's 5.48M: the 13 convolutions' weights (biases and BatchNorm add 0.3%)
    assert sum(c.weight.numel() for c in convs) == 5_482_176
    assert abs(count_parameters(m) / 5.48e6 - 1) < 0.005
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    im = create_model("simplenet_imagenet")
    assert abs(count_parameters(im) / 5.75e6 - 1) < 0.005  # the authors' SimpleNetV1-5m: 5.75M
    assert im.min_input_size == 32 and im(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    small = create_model("simplenet", scale=0.25)
    assert [c.out_channels for c in small.modules() if isinstance(c, nn.Conv2d)][:3] == [16, 32, 32]


def test_simplenet_and_vgg_bad_input():
    with pytest.raises(ValueError, match="stride_mode 1 or 2"):
        create_model("simplenet_imagenet", stride_mode=0)
    with pytest.raises(ValueError, match=r"scale must lie in \[0.05, 4\]"):
        create_model("simplenet", scale=10)
    with pytest.raises(ValueError, match="total stride of 16"):
        create_model("simplenet")(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"VGG depth must be one of \[11, 16\]"):
        wb.models.VGG(depth=13)


def test_vgg_counts():
    # VGG-16 with BN for CIFAR: 14.7M in the conv layers, as every CIFAR port reports
    m = create_model("vgg16")
    convs = sum(mod.weight.numel() for mod in m.modules() if isinstance(mod, nn.Conv2d))
    assert convs == 14_710_464
    assert len(hook_points(m)) == 13 + 1


def test_inception_resnet_scale_zero_is_the_identity_and_the_twin_costs_the_same():
    torch.manual_seed(0)
    block = wb.models.InceptionBlock("B", 32, residual=True, scale=0.0).eval()
    x = torch.rand(2, 32, 8, 8)  # a block's input is a ReLU output, so non-negative
    assert torch.equal(block(x), x)
    res, twin = create_model("inception_resnet"), create_model("inception_cifar")
    assert summary(res).macs == summary(twin).macs
    extra = sum(b.up[1].weight.numel() * 2 for b in twin.modules() if isinstance(b, wb.models.InceptionBlock))
    assert count_parameters(twin) - count_parameters(res) == extra - sum(
        b.up.bias.numel() for b in res.modules() if isinstance(b, wb.models.InceptionBlock))
    out = res(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    names = hook_points(res)
    assert "stage_a.0.hook_branch" in names and "reduction_b" in names and names[0] == "stem"


def test_inception_resnet_scale_multiplies_the_branch():
    torch.manual_seed(1)
    a = wb.models.InceptionBlock("A", 16, residual=True, scale=1.0).eval()
    b = wb.models.InceptionBlock("A", 16, residual=True, scale=0.2).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 16, 8, 8)
    ca = wb.run_with_cache(a, x, ["hook_branch"])[1]["hook_branch"]
    cb = wb.run_with_cache(b, x, ["hook_branch"])[1]["hook_branch"]
    torch.testing.assert_close(cb, 0.2 * ca)


def test_inception_resnet_bad_input():
    with pytest.raises(ValueError, match="multiple of 4"):
        create_model("inception_resnet", width=10)
    with pytest.raises(ValueError, match=r"scale must lie in \[0, 1\]"):
        create_model("inception_resnet", scale=2)
    with pytest.raises(ValueError, match="valid kinds: A, B, C"):
        wb.models.InceptionBlock("D", 16)


def test_summary_rows_add_up_and_match_layer_macs():
    m = create_model("resnet20")
    s = summary(m)
    assert s.params == count_parameters(m) == s.table["params"].sum()
    assert s.macs == sum(wb.models.layer_macs(m).values()) == s.table["macs"].sum()
    assert list(s.table["block"])[:2] == ["stem", "layer1.0"] and list(s.table["block"])[-1] == "fc"
    assert s.table.set_index("block").loc["layer2.0", "output"] == "32x16x16"
    assert s.activations == s.table["activations"].sum() > 0
    fig = s.figure("params")
    assert len(fig.data) >= 1 and "parameters" in fig.layout.title.text
    with pytest.raises(ValueError, match="metric must be"):
        s.figure("flops")
    with pytest.raises(ValueError, match=r"input_size must be \(channels, height, width\)"):
        summary(m, (32, 32))
    assert "multiply-adds" in str(s) and "<table" in s._repr_html_()


def test_summary_counts_hand_written_matmuls_and_a_rest_row():
    class Odd(nn.Module):  # a parameter used by torch.matmul outside any listed block
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(12, 5))

        def forward(self, x):
            return torch.matmul(x.flatten(1), self.w)

    s = summary(Odd(), (3, 2, 2))
    assert s.macs == 12 * 5 and s.params == 60
    assert list(s.table["block"]) == ["(rest)"]


def test_summary_counts_attention_products_on_every_path():
    # one block of width 48 on 64 patches + the class token: the linear maps, plus 2 T^2 w for the
    # scores and the weighted sum; the same whether the fused kernel or two matmuls compute them
    m = create_model("vit_tiny", dim=48, depth=1, heads=2).eval()
    t, w, hidden = 65, 48, 96
    linear = 48 * 3 * 16 * 64 + t * (3 * w * w + w * w + 2 * w * hidden) + w * 10
    assert summary(m, (3, 32, 32)).macs == linear + 2 * t * t * w
    explicit = create_model("vit_tiny", dim=48, depth=1, heads=2, attn_mask="elm").eval()
    assert summary(explicit, (3, 32, 32)).macs == linear + 2 * t * t * w


def test_summary_counts_multihead_attention_fast_path_and_a_timestep_model():
    """nn.MultiheadAttention's inference fast path is one fused operator the counter does not know: summary
    counts it as the separate products of the ordinary path (which torch counts itself), exactly. dit_tiny's
    forward also needs a timestep, which it supplies from example_args; its blocks are rows of the table."""
    from torch.utils.flop_counter import FlopCounterMode

    from workbench.models.summary import _EXTRA_FORMULAS

    mha = nn.MultiheadAttention(24, 3, batch_first=True)
    x = torch.randn(2, 10, 24)
    fused = lambda: torch._native_multi_head_attention(  # noqa: E731 (the fast path's operator, called directly)
        x, x, x, 24, 3, mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias,
        need_weights=False)
    counts = {}
    for name, run in (("ordinary", lambda: mha(x, x, x, need_weights=False)), ("fused", fused)):
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as c, torch.no_grad():
            run()
        counts[name] = c.get_total_flops()
    assert counts["fused"] == counts["ordinary"] > 0
    dit = create_model("dit_tiny", width=32, depth=2)
    s = summary(dit)
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as c, torch.no_grad():
        dit.train()(torch.zeros(1, 3, 32, 32), torch.ones(1, dtype=torch.long))
    assert s.macs == c.get_total_flops() // 2
    assert {"blocks.0", "blocks.1"} <= set(s.table["block"]) and s.table["macs"].sum() == s.macs


def test_summary_table_one_row_per_model():
    t = summary_table({"ResNet-20": create_model("resnet20"), "SimpleNet/4": create_model("simplenet", scale=0.25)})
    assert list(t["model"]) == ["ResNet-20", "SimpleNet/4"] and (t["macs"] > 0).all()
    with pytest.raises(ValueError, match="at least one model"):
        summary_table({})


def test_relu_information_falls_with_width_and_is_exact_by_hand():
    from workbench.models.mobilenetv2 import relu_information, relu_roundtrip
    pts = wb.data.spiral(400)
    assert pts.shape == (400, 2) and abs(float(pts.mean())) < 1e-6
    df = relu_information(pts, dims=(2, 3, 5, 15, 30), trials=8).groupby("dim").mean()
    assert df["lost"].is_monotonic_decreasing and df["linear_error"].is_monotonic_decreasing
    assert df.loc[2, "lost"] > 0.5 and df.loc[30, "lost"] == 0 and df.loc[30, "linear_error"] < 1e-3
    # by hand: with T = identity (dim 2), relu keeps only the positive quadrant, and pinv(T) = T
    x = torch.tensor([[1.0, 2.0], [-1.0, 3.0], [-2.0, -1.0]], dtype=torch.float64)
    t = torch.eye(2, dtype=torch.float64)
    assert torch.equal(torch.relu(x @ t.T) @ torch.linalg.pinv(t).T, torch.relu(x))
    back = relu_roundtrip(pts, 30, seed=3)
    assert back.shape == pts.shape
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        relu_roundtrip(pts, 0)
    with pytest.raises(ValueError, match="spiral needs n >= 2"):
        wb.data.spiral(1)


def test_model_run_record_and_divergence(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    kw = dict(dataset="shapes", train_subset=64, test_subset=32, epochs=2, batch_size=32, augment=None)
    rec = wb.train.model_run("resnet8", 0, model_kwargs={"width": 4}, **kw)
    assert not rec["diverged"] and rec["curve_epoch"] == [1, 2] and rec["curve_step"] == [2, 4]
    assert rec["params"] == count_parameters(create_model("resnet8", width=4)) and rec["macs"] > 0
    assert 0 <= rec["test_acc"] <= 1 and rec["train_loss"] == rec["curve_train_loss"][-1]
    bad = wb.train.model_run("resnet8", 0, model_kwargs={"width": 4}, lr=1e12, momentum=0.0, **kw)
    assert bad["diverged"] and 1 <= bad["diverged_step"] <= 4 and bad["test_acc"] is None


@pytest.mark.parametrize("cin,cout,t,stride", [(16, 24, 6, 2), (24, 24, 6, 1), (32, 16, 1, 1)])
def test_inverted_residual_exercise_matches_the_counter(cin, cout, t, stride):
    block = wb.models.InvertedResidual(cin, cout, stride, t)
    assert summary(block, (cin, 15, 15)).macs == wb.exercises.solution("inverted_residual_macs")(cin, cout, 15, 15, t, stride)


def test_plain_params_exercise_matches_simplenet():
    from workbench.models.simplenet import LAYOUTS
    assert wb.exercises.solution("plain_params")(list(LAYOUTS["cifar"]), 3, 10) == count_parameters(create_model("simplenet"))


def test_steps_to_reach_interpolates_between_logged_points():
    reach = wb.train.steps_to_reach
    assert reach([10, 20, 30], [2.0, 1.0, 0.5], 1.5) == 15.0
    assert reach([10, 20, 30], [2.0, 1.0, 0.5], 2.0) == 10.0  # reached at the first logged point
    assert reach([10, 20, 30], [2.0, 1.0, 0.5], 0.75) == 25.0
    assert reach([10, 20], [2.0, 1.0], 0.5) is None
    assert reach([10, 20], [2.0, float("nan")], 0.5) is None
    with pytest.raises(ValueError, match="same, non-zero length"):
        reach([1, 2], [1.0], 0.5)
