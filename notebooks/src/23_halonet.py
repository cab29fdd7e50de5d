# %% [markdown]
# # HaloNet: local self-attention in place of the convolution
#
# Vaswani, Ramachandran, Srinivas, Parmar, Hechtman & Shlens, *Scaling Local Self-Attention for
# Parameter Efficient Visual Backbones*, CVPR 2021 ([arXiv 2103.12731](https://arxiv.org/abs/2103.12731)).
#
# **The question.** A convolution mixes a fixed neighbourhood with weights that do not depend on the
# image, and its parameters grow with the square of its kernel size. Self-attention weighs its
# neighbourhood by content, and its parameters (the query, key and value projections) do not grow
# with the neighbourhood at all. Can a backbone built from self-attention beat convolutional
# networks *per parameter*, and what does it cost per image?
#
# **The idea.** Attending to the whole image is too expensive at high resolution, and attending to a
# window centred on every pixel (as a convolution does) maps badly onto hardware. HaloNet cuts the
# image into non-overlapping `block x block` query blocks; all queries of a block share one window of
# keys: the block grown by `halo` pixels on every side. The paper builds a family of such networks
# (HaloNet H0-H7) and reports that they match or beat EfficientNets of the same parameter count on
# ImageNet, and that hybrids with convolutions in the early, high-resolution stages keep most of the
# accuracy at a fraction of the training time.
#
# **What is checked here.**
# 1. The mechanism, on a real CIFAR-10 image and a trained network (`wb.models.halonet`): what one
#    query attends to (its block's window, read from the layer's `hook_pattern`), and the identity
#    behind the design: with a halo that covers the image, blocked local attention *is* global
#    attention.
# 2. The comparison at an equal parameter count and an equal training budget: a HaloNet hybrid
#    (ResNet-20's layout, convolutions in stages 1-2, halo attention in stage 3; 261,128 parameters)
#    against ResNet-20 (272,474), three seeds, the same data, recipe and steps: accuracy against
#    parameters, and the measured cost per image for training and inference on this machine,
#    relative to ResNet-20 in the same process. The all-attention HaloNet (291,770 parameters) is
#    timed too; on a CPU it costs far too much per image to train in laptop mode.
#
# Why a hybrid: on a CPU the blocked attention over tens of thousands of tiny per-block matrices is
# memory-bound, and the 32x32 first stage dominates (`benchmarks/bench_attention.py`). The paper's
# own hybrids put convolutions first for the same reason (section 4, "convolution-attention
# hybrids").

# %%
import functools

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None
from workbench.models import halonet as H

info = wb.setup()

# %% tags=["parameters"]
HYBRID = dict(width=22, attn_stages=(3,), block=4, halo=2, heads=4)  # 261,128 parameters (ResNet-20: 272,474)
FULL = dict(width=28)  # attention in every stage: 291,770 parameters
VARIANTS = wb.by_mode(smoke=["resnet20", "hybrid"], laptop=["resnet20", "hybrid"],
                      paper=["resnet20", "hybrid", "halonet"])  # "halonet": attention everywhere (slow on a CPU)
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])
TRAIN_SUBSET = wb.by_mode(smoke=300, laptop=3_000, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=200, laptop=1_000, paper=None)
EPOCHS = wb.by_mode(smoke=1, laptop=3, paper=100)
BATCH_SIZE = wb.by_mode(smoke=64, laptop=64, paper=128)  # 3,000 images in batches of 64: 47 steps per epoch
LR = wb.by_mode(smoke=0.05, laptop=0.05, paper=0.1)  # SGD's peak rate, scaled with the batch
TIMING_BATCH = wb.by_mode(smoke=8, laptop=64, paper=128)  # images per timed step
TIMING_REPEATS = wb.by_mode(smoke=1, laptop=3, paper=5)
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")  # paper: one run per GPU on Ray
CHECK_TRADEOFF = wb.by_mode(smoke=False, laptop=True, paper=True)  # equal parameters, the measured cost per image
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # the accuracy claim (see "Reading the results")

# %% [markdown]
# ## What each network costs
#
# Parameters and multiply-adds of one 32x32 image (`wb.models.summary`). An attention layer from
# `c` to `c'` channels has `3 c c'` weights (query, key, value) and a few relative-position
# embeddings; a 3x3 convolution `9 c c'`. So at ResNet-20's parameter count the attention stages can
# be wider: the hybrid has 22, 44 and 88 channels against ResNet-20's 16, 32 and 64.

# %%
def build(variant):
    if variant == "resnet20":
        return "resnet20", {}
    return "halonet", dict(HYBRID if variant == "hybrid" else FULL)


nets = {v: wb.create_model(build(v)[0], **build(v)[1]) for v in ("resnet20", "hybrid", "halonet")}
costs = wb.models.summary_table(nets, input_size=(3, 32, 32)).set_index("model")
costs

# %% [markdown]
# ## Train, on real data
#
# Every run: the laptop recipe (one-cycle SGD with Nesterov momentum, label smoothing,
# crop-and-flip) for `EPOCHS` epochs on `TRAIN_SUBSET` CIFAR-10 training images in batches of
# `BATCH_SIZE` (141 steps in laptop mode; the recipe's batch of 256 would leave 12 steps per epoch),
# test accuracy on `TEST_SUBSET` test images. The seed fixes the initialization and the data order.
# The budget was chosen for the time the hybrid costs per step on a CPU, before either network was
# trained. `wb.train.model_run` trains one configuration (cached by `wb.train_model`);
# `wb.sweep` keeps the records, so a rerun only does what is missing.

# %%
recipe = wb.train.recipe("laptop", epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR)
constants = dict(train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET, **recipe)


def run(variant, seed, **kw):
    model, kwargs = build(variant)
    return wb.train.model_run(model, seed=seed, model_kwargs=kwargs, **kw)


runs = wb.sweep(functools.partial(run, **constants), [dict(variant=v, seed=s) for v in VARIANTS for s in SEEDS],
                backend=BACKEND, folder=wb.sweep_folder("halonet", dict(constants, hybrid=HYBRID, full=FULL)))
runs[["variant", "seed", "test_acc", "train_loss", "params", "seconds"]]

# %% [markdown]
# ## What a query attends to
#
# The trained hybrid (seed `SEEDS[0]`) on one CIFAR-10 test image. Its first attention layer
# (`layer3.0.attn1`, the strided block of stage 3) attends on the 16x16 map of stage 2 in blocks of
# 4x4 pixels with a halo of 2: each query sees an 8x8 window, a quarter of the map. The weights come
# from the layer's `hook_pattern` (`wb.run_with_cache`); `H.window_to_image` puts one query's row of
# them back on the image, zero outside its window. Every query of the white block shares the dashed
# window; the weights inside it differ by query and by head, and are exactly zero on the padding
# beyond the image's edge.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
trained = wb.train_model("halonet", train, test, seed=SEEDS[0], model_kwargs=HYBRID, progress=False, **recipe).model.eval()
LAYERS = ["layer3.0.attn1", "layer3.0.attn2", "layer3.1.attn1", "layer3.2.attn2"]
IMAGE = 7
x_img = test.normalize(test.images[IMAGE:IMAGE + 1])
with torch.no_grad():
    logits, cache = wb.run_with_cache(trained, x_img, [f"{n}.hook_pattern" for n in LAYERS])
blk, halo = HYBRID["block"], HYBRID["halo"]


def side(layer):  # the attention map's side: 16 for the strided first block (it pools after attending), else 8
    return 16 if layer == "layer3.0.attn1" else 8


def render_query(layer="layer3.0.attn1", qy=6, qx=5):
    s = side(layer)
    qy, qx = min(qy, s - 1), min(qx, s - 1)
    maps = H.window_to_image(cache[f"{layer}.hook_pattern"][0], s, s, blk, halo, (qy, qx))  # [heads, s, s]
    heads = maps.shape[0]
    fig = make_subplots(rows=1, cols=heads + 1, subplot_titles=[test.classes[int(test.labels[IMAGE])]]
                        + [f"head {h}" for h in range(heads)])
    fig.add_trace(go.Image(z=test.images[IMAGE].permute(1, 2, 0).numpy()), 1, 1)
    for h in range(heads):
        fig.add_trace(go.Heatmap(z=maps[h].numpy(), coloraxis="coloraxis"), 1, h + 2)
    by, bx, o = qy // blk * blk, qx // blk * blk, -0.5  # pixel i spans i - 0.5 .. i + 0.5
    for col, f in [(1, 32 / s)] + [(h + 2, 1) for h in range(heads)]:  # the image in its pixels, the maps in theirs
        fig.add_shape(type="rect", x0=bx * f + o, x1=(bx + blk) * f + o, y0=by * f + o, y1=(by + blk) * f + o,
                      line=dict(color="white", width=2), row=1, col=col)
        fig.add_shape(type="rect", x0=(bx - halo) * f + o, x1=(bx + blk + halo) * f + o, y0=(by - halo) * f + o,
                      y1=(by + blk + halo) * f + o, line=dict(color="white", width=2, dash="dash"), row=1, col=col)
        fig.add_shape(type="circle", x0=qx * f + o + 0.2 * f, x1=(qx + 1) * f + o - 0.2 * f, y0=qy * f + o + 0.2 * f,
                      y1=(qy + 1) * f + o - 0.2 * f, line=dict(color="red", width=2), row=1, col=col)
    fig.update_yaxes(autorange="reversed", showticklabels=False, scaleanchor="x")
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(coloraxis=dict(colorscale="Viridis"), height=300,
                      title=f"{layer}: the weights of query ({qy}, {qx}) on a {s}x{s} map (red), its block (white) "
                            f"and window (dashed)")
    return fig


render_query()

# %% [markdown]
# ### Explore the queries
#
# Move the query: within a block the window stays put (the block's halo, not a window centred on
# the pixel, as in a convolution); cross a block boundary and it jumps by `block` pixels.

# %%
wb.viz.explorer(render_query, layer=LAYERS, qy=list(range(16)), qx=list(range(16)))

# %% [markdown]
# **Blocked local attention with a covering halo is global attention.** On the trained layer
# `layer3.1.attn1` (an 8x8 map) with this image's own queries, keys and values: blocked attention
# with `halo = 8 - block` (every window covers the map) against `F.scaled_dot_product_attention` over
# all 64 pixels; and the layer's real halo (2) against the same, which must differ.

# %%
layer = trained.layer3[1].attn1
with torch.no_grad():
    _, feats = wb.run_with_cache(trained, x_img, ["layer3.0"])
    z = feats["layer3.0"]  # the layer's input [1, 88, 8, 8]
    q, k = layer.qk(z).view(1, 2, layer.heads, layer.dim_head, 8, 8).permute(1, 0, 2, 4, 5, 3)
    v = layer.v(z).view(1, layer.heads, -1, 8, 8).permute(0, 1, 3, 4, 2)
    glob = F.scaled_dot_product_attention(q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3)).view(*q.shape[:4], -1)
    covering = H.halo_attention(q, k, v, blk, 8 - blk)
    local = H.halo_attention(q, k, v, blk, halo)
identity = pd.Series({"covering halo vs global: max |difference|": float((covering - glob).abs().max()),
                      f"halo {halo} vs global: max |difference|": float((local - glob).abs().max()),
                      "largest output value": float(glob.abs().max())})
identity

# %% [markdown]
# ## Accuracy against parameters
#
# Final test accuracy of every run (mean and one standard deviation over seeds) against the
# network's parameter count, and the accuracy after each epoch.

# %%
table = runs.groupby("variant").agg(acc=("test_acc", "mean"), spread=("test_acc", "std"),
                                    train_loss=("train_loss", "mean"), params=("params", "first"),
                                    macs=("macs", "first"), seconds=("seconds", "mean"), runs=("seed", "count"))
fig = px.scatter(table.reset_index(), x="params", y="acc", error_y="spread", color="variant", text="variant",
                 labels={"params": "parameters", "acc": "test accuracy"},
                 title=f"CIFAR-10 accuracy against parameters ({EPOCHS} epochs on {TRAIN_SUBSET or 50_000} images, "
                       f"{len(SEEDS)} seed(s))")
fig.update_traces(textposition="top center")
fig

# %%
curves = runs.explode(["curve_epoch", "curve_test_acc"])[["variant", "seed", "curve_epoch", "curve_test_acc"]]
curves = curves.astype({"curve_epoch": int, "curve_test_acc": float})
px.line(curves, x="curve_epoch", y="curve_test_acc", color="variant", line_group="seed", markers=True,
        labels={"curve_epoch": "epoch", "curve_test_acc": "test accuracy"},
        title="Test accuracy after each epoch (one line per seed)")

# %% [markdown]
# ## Cost per image
#
# Seconds per image for a training step (forward, loss, backward) and for inference, on
# `TIMING_BATCH` test images, all networks in one process taking turns (`H.time_per_image`, best of
# `TIMING_REPEATS` rounds after a warm-up). What counts is the ratio to ResNet-20: the machine is
# shared and its absolute speed varies.

# %%
xb = test.normalize(test.images[:TIMING_BATCH])
yb = test.labels[:TIMING_BATCH].long()
timing_nets = {v: wb.create_model(build(v)[0], **build(v)[1]) for v in ("resnet20", "hybrid", "halonet")}
times = H.time_per_image(timing_nets, xb, yb, repeats=TIMING_REPEATS)
px.bar(times, x="model", y="relative", color="mode", barmode="group", text_auto=".1f",
       labels={"relative": "cost per image / ResNet-20's"},
       title=f"Cost per image relative to ResNet-20 ({torch.get_num_threads()} CPU thread(s), batch {TIMING_BATCH})")

# %%
cost = times.pivot_table(index="model", columns="mode", values="relative").add_suffix(" cost / ResNet-20")
trade = table.join(cost, how="left").join(costs[["macs"]].rename(columns={"macs": "macs per image"}), how="left")
trade["acc per 100k params"] = trade["acc"] / trade["params"] * 1e5
trade.round(4)

# %% [markdown]
# ## The claim, as checks that can fail
#
# Every mode, the mechanism: on the trained layer, blocked attention with a covering halo equals
# global attention (float32 rounding, below 1e-5 of the largest output) and the real halo does not;
# one query's weights sum to 1 over its window and are exactly 0 everywhere else on the map (the
# padding beyond the image's edge included).
# Laptop and paper mode, the measured trade-off: the hybrid has ResNet-20's parameter count (within
# 5%), and on this CPU a training step costs it more per image than ResNet-20's, more still with
# attention in every stage. Paper mode, the paper's claim at small scale: the hybrid at least as
# accurate as ResNet-20 at equal parameters, by more than the spread over seeds.

# %%
tol = 1e-5 * identity["largest output value"]
assert identity.iloc[0] < tol, f"a covering halo should give global attention: {identity.iloc[0]:.2e}"
assert identity.iloc[1] > 100 * tol, "a halo of 2 on an 8x8 map should not be global attention"
s16 = side("layer3.0.attn1")
for qy, qx in [(0, 0), (6, 5), (15, 15)]:
    m = H.window_to_image(cache["layer3.0.attn1.hook_pattern"][0], s16, s16, blk, halo, (qy, qx))
    inside = torch.zeros(s16, s16, dtype=torch.bool)
    by, bx = qy // blk * blk, qx // blk * blk
    inside[max(0, by - halo):by + blk + halo, max(0, bx - halo):bx + blk + halo] = True
    torch.testing.assert_close(m.sum((-2, -1)), torch.ones(m.shape[0]))
    assert (m[:, ~inside] == 0).all() and (m >= 0).all(), f"query ({qy}, {qx}) attends outside its window"
acc = runs.groupby("variant").test_acc
gap = acc.mean()["hybrid"] - acc.mean()["resnet20"]
spread = acc.std().fillna(0).max()
per_seed = runs.pivot_table(index="seed", columns="variant", values="test_acc")
rel = times.set_index(["model", "mode"]).relative
print(f"accuracy hybrid - ResNet-20: {gap:+.2%} (spread over seeds {spread:.2%}); per seed {per_seed.round(4).to_dict('index')}")
print(f"parameters: hybrid {costs.loc['hybrid', 'params']:,}, ResNet-20 {costs.loc['resnet20', 'params']:,}; "
      f"training cost per image / ResNet-20's: hybrid {rel['hybrid', 'train']:.1f}x, all-attention "
      f"{rel['halonet', 'train']:.1f}x; inference {rel['hybrid', 'inference']:.1f}x, {rel['halonet', 'inference']:.1f}x")
if CHECK_TRADEOFF:
    assert abs(costs.loc["hybrid", "params"] / costs.loc["resnet20", "params"] - 1) < 0.05, "not an equal parameter budget"
    assert rel["hybrid", "train"] > 1 and rel["halonet", "train"] > rel["hybrid", "train"], \
        f"on a CPU attention should cost more per image than convolution: {rel.to_dict()}"
if CHECK_CLAIM:
    assert gap > spread, f"the hybrid should beat ResNet-20 at equal parameters by more than the seed spread: {gap:+.2%}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-06, 2 cores, 5.9 minutes from an empty cache) the
# hybrid reached 30.3% test accuracy after 3 epochs on 3,000 images (32.3%, 26.9% and 31.8% in seeds
# 0, 1 and 2) and ResNet-20 40.7% (39.8%, 40.5%, 41.8%): the attention network is 10.4 points behind,
# three times the larger spread over seeds (3.0 points), with 4% fewer parameters (261,128 against
# 272,474), and behind in every seed. Per parameter it is the worse network here, and the more
# expensive one: a training step costs it 3.7 times ResNet-20's time per image and inference 4.2
# times (for 1.7 times the multiply-adds: the attention's gathering of windows and its many small
# matrix products run far below a convolution's speed on a CPU); with attention in every stage the
# ratios are 23.3 and 22.0. So at 32 px, with minutes of training on a few thousand images, local
# self-attention does not win: the paper's claim is not shown at this scale, and this notebook is
# *mechanism only*. The mechanism holds exactly: on the trained layer, blocked attention with a
# covering halo matches global attention to 2.4e-7 (float32 rounding; outputs up to 1.08), the real
# halo of 2 differs from it by 0.21, and every query's weights are exactly zero outside its block's
# window. The paper sees its claim on ImageNet, with networks 20 to 250 times larger trained for
# hundreds of epochs (the table below); paper mode asserts it on all of CIFAR-10.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | networks | HaloNet H0-H7, 5.5M to 67M parameters, block 8, halo 3, ImageNet at 256-600 px | ResNet-20's layout at 0.26-0.29M parameters, block 4, halo 2, CIFAR-10 at 32 px |
# | accuracy per parameter | H0 77.9% top-1 at 5.5M parameters ... H7 84.9% at 67M, matching or beating EfficientNet B0-B7 of similar size (section 4, the HaloNet-vs-EfficientNet comparison) | hybrid 30.3% against ResNet-20's 40.7% at 0.26M against 0.27M parameters (3 seeds) |
# | hybrids | H7 with convolutions in stage 1: 84.6%, stages 1-2: 84.7%, 1-3: 83.8%, against 84.9% all attention, at 1.4x, 1.0x, 0.5x against 1.9x normalized train time (its convolution-attention hybrid table) | convolutions in stages 1-2, attention in stage 3 |
# | speed | measured on TPUs, where the blocked attention is one big batched matrix product | this CPU: the hybrid 3.7x ResNet-20's training cost per image, 4.2x its inference cost; all attention 23.3x and 22.0x |
#
# The paper trains for hundreds of epochs on 1.3M images at resolutions where a block of 8 and a halo
# of 3 leave many blocks per map; at 32 px, stage 3 has 8x8 pixels, so a 4x4 block with a halo of 2
# already sees most of the map, and the network trains for minutes on a few thousand images.

# %% [markdown]
# ## What to try next
#
# - `HYBRID = dict(width=26, attn_stages=(2, 3), block=4, halo=2, heads=4)` (275,792 parameters):
#   attention in two stages. How much slower per image, and does it change the accuracy?
# - `HYBRID = dict(width=22, attn_stages=(3,), block=8, halo=0, heads=4)`: stage 3 attends globally
#   (one 8x8 block), the strided block in four 8x8 blocks without overlap.
# - `EPOCHS = 15` with `TRAIN_SUBSET = 10_000`: attention layers are said to need more data than
#   convolutions; does the gap to ResNet-20 shrink with more of it?

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **A query's window.** In an `h x w` image cut into `block x block` query blocks with a halo of
# `halo` pixels, which pixels can the query at `(y, x)` attend to? Return `(y0, y1, x0, x1)`: the rows
# `y0 <= row < y1` and columns `x0 <= col < x1` of the image (the window cropped to the image: pixels
# beyond the edge are padding and get no weight).

# %%
def halo_window(y, x, h, w, block, halo):
    raise NotImplementedError  # your code here


wb.exercises.check("halo_window", halo_window)
