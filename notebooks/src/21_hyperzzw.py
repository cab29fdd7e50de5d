# %% [markdown]
# # HyperZ·Z·W: kernels written by a slow network and bent by the input
#
# Harvie Zhang, *HyperZ·Z·W Operator Connects Slow-Fast Networks for Full Context Interaction*, 2024
# ([arXiv 2401.17948](https://arxiv.org/abs/2401.17948)).
#
# **The question.** A convolution applies the same kernel to every image; self-attention builds its
# weights from the input itself, which is what lets it relate distant parts of a sequence. Can a
# convolutional network get input-dependent ("fast") weights cheaply, and with them drop residual
# connections altogether?
#
# **The idea.** Two networks. A *slow* network, a small MLP over kernel coordinates (a
# multiplicative filter network: linear layers multiplied by sine functions of the coordinates),
# writes each layer's *hyper-kernel* `W`; its parameter count does not grow with the kernel size. A
# *fast* network multiplies `W` elementwise by a summary of the hidden activations `Z` (hence
# HyperZ·Z·W) and convolves `Z` with that context-dependent kernel. The paper's Terminator stacks
# blocks with several such branches of different kernel sizes, concatenates them and compresses the
# channels with a bottleneck, without residual connections. It reports competitive accuracy on
# pixel-level 1-D and 2-D image benchmarks with fewer parameters and faster convergence.
#
# **Our operator** (`wb.models.hyperzzw`, the module docstring has the details). For image `b` and
# a branch of kernel size `k`: `W_hat_b = W * (1 + tanh(alpha * (P_k(Z_b) - mean P_k(Z_b))))`, where
# `P_k` average-pools each channel of `Z_b` to `k x k`, then `Y_b = W_hat_b (*) Z_b`, a depthwise
# convolution. A spatially uniform input leaves `W_hat_b = W`. Left out of the full
# Terminator: the image-sized global branch, the slow network's own loss, the standardization layers.
#
# **What is checked here.** CIFAR-10, a small network of such blocks (three stages, three branches of
# 3x3, 5x5 and 7x7 kernels per block, no skip connections) against its **static twin**, in which each
# hyper-kernel is an ordinary learned depthwise convolution of the same size: the same fast network,
# the same multiply-adds apart from the slow network's few, the same data, recipe, steps and seeds
# (three). Measured: test accuracy after each epoch (accuracy and convergence), the parameter counts,
# and the mechanism: how much the generated kernels change from one image to the next, layer by
# layer, and what the trained network loses when the context term is switched off.
#
# Laptop and paper mode assert the claim as the paper states it for small networks: with fewer
# parameters than its static twin, the hyper network ends more accurate, by more than the spread over
# seeds. They also assert the mechanism. The comparison is at equal steps and multiply-adds, not equal
# wall time: on a CPU the hyper network's per-image kernels cost about twice the time per step.

# %%
import pandas as pd
import plotly.express as px
import torch

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None
import workbench.models.hyperzzw as hz

info = wb.setup()

# %% tags=["parameters"]
WIDTH = wb.by_mode(smoke=4, laptop=16, paper=32)  # channels of the first stage (then 2x and 4x)
DEPTH = wb.by_mode(smoke=1, laptop=1, paper=2)  # blocks per stage
KERNEL_SIZES = (3, 5, 7)  # one branch per size in every block
HIDDEN = 8  # the slow network's width
VARIANTS = ["hyper", "static"]  # "implicit": the slow network's kernel without the context term
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])
TRAIN_SUBSET = wb.by_mode(smoke=500, laptop=6_000, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=300, laptop=2_000, paper=None)
EPOCHS = wb.by_mode(smoke=1, laptop=3, paper=60)
KERNEL_IMAGES = wb.by_mode(smoke=64, laptop=500, paper=2_000)  # test images the kernels are measured on
MIN_SPREAD = 0.01  # the mechanism: a typical image moves every trained kernel by at least 1% of its size
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=True, paper=True)

# %% [markdown]
# ## What each variant costs
#
# Parameters and multiply-adds of one 32x32 image (`wb.models.summary`, torch's own FLOP counter).
# The fast networks are identical; the hyper variant adds the slow networks (run once per forward
# pass, whatever the batch) and one gain `alpha` per channel. Whether it has fewer parameters than
# its twin depends on the kernel sizes: a static `k x k` kernel costs `k^2` per channel, the slow
# network a fixed amount per branch.

# %%
arch = dict(width=WIDTH, depth=DEPTH, kernel_sizes=KERNEL_SIZES, hidden=HIDDEN)
models = {v: wb.create_model("hyperzzw_net", variant=v, **arch) for v in ("hyper", "implicit", "static")}
costs = wb.models.summary_table(models, input_size=(3, 32, 32)).set_index("model")
costs

# %%
blocks = pd.concat([wb.models.summary(m, (3, 32, 32)).table.assign(variant=v) for v, m in models.items()])
px.bar(blocks, x="block", y="params", color="variant", barmode="group",
       title=f"Parameters per block (width {WIDTH}, kernels {KERNEL_SIZES}, slow network width {HIDDEN})")

# %% [markdown]
# ## Train the hyper network and its static twin, on real data
#
# Every run: the laptop recipe (one-cycle SGD with Nesterov momentum, label smoothing, crop-and-flip,
# batch 256) for `EPOCHS` epochs on `TRAIN_SUBSET` CIFAR-10 training images, test accuracy on
# `TEST_SUBSET` test images after every epoch. The seed fixes the initialization and the data order,
# the same for both variants. `wb.train_model` caches each run.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
recipe = wb.train.recipe("laptop", epochs=EPOCHS)
runs = {(v, s): wb.train_model("hyperzzw_net", train, test, model_kwargs={**arch, "variant": v}, seed=s,
                               progress=False, **recipe)
        for v in VARIANTS for s in SEEDS}
curves = pd.concat([r.history.assign(variant=v, seed=s) for (v, s), r in runs.items()])
final = curves[curves.epoch == EPOCHS].pivot_table(index="seed", columns="variant", values="test_acc")
final.assign(**{"hyper - static": final["hyper"] - final["static"]} if {"hyper", "static"} <= set(final) else {})

# %% [markdown]
# ## Accuracy and convergence
#
# Test accuracy after each epoch, mean over seeds (bars: one standard deviation). The paper's claim
# for small networks: the hyper network converges faster and ends higher than its baselines.

# %%
by_epoch = curves.groupby(["variant", "epoch"]).test_acc.agg(["mean", "std"]).reset_index()
px.line(by_epoch, x="epoch", y="mean", error_y="std", color="variant", markers=True,
        labels={"mean": "test accuracy"}, title=f"HyperZ·Z·W against its static twin (CIFAR-10, {len(SEEDS)} seeds)")

# %%
summary = curves[curves.epoch == EPOCHS].groupby("variant").agg(
    acc=("test_acc", "mean"), spread=("test_acc", "std"), train_loss=("train_loss", "mean"))
summary.join(costs[["params", "macs"]]).round(4)

# %% [markdown]
# ## The mechanism: how much the kernels change with the input
#
# For each branch, the kernels the trained network convolves `KERNEL_IMAGES` test images with
# (`hz.generated_kernels`), and their *spread*: the norm of their standard deviation across the
# images over the norm of their mean (`hz.kernel_variation`; 0 for a kernel that ignores the input,
# 0.1 when a typical image moves it by a tenth of its size). The same measured at initialization
# (the network each run started from) shows what training did to it. The static twin's spread is 0
# by construction, and is checked to be.

# %%
probe = test.subset(KERNEL_IMAGES, seed=1)
x = probe.normalize(probe.images)
rows, kernels = [], {}
for (v, s), r in runs.items():
    kernels[v, s] = hz.generated_kernels(r.model, x)
    rows.append(hz.kernel_variation(kernels[v, s]).assign(variant=v, seed=s, stage="trained"))
    torch.manual_seed(s)  # the network this run started from (train_model builds it the same way)
    start = wb.create_model("hyperzzw_net", num_classes=train.num_classes, in_chans=3, variant=v, **arch)
    rows.append(hz.kernel_variation(hz.generated_kernels(start, x)).assign(variant=v, seed=s, stage="initial"))
spread = pd.concat(rows)
spread_mean = spread.groupby(["variant", "stage", "branch"], sort=False).spread.agg(["mean", "std"]).reset_index()
px.bar(spread_mean[spread_mean.variant == "hyper"], x="branch", y="mean", error_y="std", color="stage",
       barmode="group", labels={"mean": "spread of the kernels across images"},
       title="How much each branch's kernel changes from image to image (hyper variant)").update_xaxes(tickangle=45)

# %%
spread.pivot_table(index=["block", "kernel_size"], columns=["variant", "stage"], values="spread").round(4)

# %% [markdown]
# **Does the trained network use it?** The same trained hyper networks with the context switched
# off (`hz.without_context`: every `alpha = 0`, so every image is convolved with the slow network's
# `W`), on the same test images.

# %%
ablation = pd.DataFrame([{"seed": s, "with context": wb.evaluate(runs["hyper", s].model, test)["acc"],
                          "without context": wb.evaluate(hz.without_context(runs["hyper", s].model), test)["acc"]}
                         for s in SEEDS if ("hyper", s) in runs]).set_index("seed")
ablation.assign(drop=ablation["with context"] - ablation["without context"])

# %% [markdown]
# ### Explore the kernels
#
# Pick a branch and a channel: the kernel averaged over the images (the first panel), then the
# kernels of the first five images, and their difference from the average (second row). The
# colour scale is shared, so a faint second row is a kernel the input barely moves.

# %%
def render_kernels(branch="blocks.0.7", channel=0, seed=SEEDS[0]):
    k = kernels["hyper", seed][branch][:, channel]  # [images, k, k]
    mean = k.mean(0, keepdim=True)
    panels = torch.cat([torch.cat([mean, k[:5]]), torch.cat([mean - mean, k[:5] - mean])])  # [12, k, k]
    top = float(panels.abs().max())
    fig = px.imshow(panels.numpy(), facet_col=0, facet_col_wrap=6, zmin=-top, zmax=top,
                    color_continuous_scale="RdBu_r", title=f"{branch}, channel {channel}, seed {seed}: "
                    "mean kernel, five images (top), and their differences from the mean (bottom)")
    names = (["mean"] + [f"image {i + 1}" for i in range(5)]
             + ["mean - mean"] + [f"image {i + 1} - mean" for i in range(5)])
    fig.for_each_annotation(lambda a: a.update(text=names[int(a.text.split("=")[1])]))
    return fig


branches = list(kernels["hyper", SEEDS[0]]) if ("hyper", SEEDS[0]) in kernels else []
wb.viz.explorer(render_kernels, branch=branches, channel=list(range(min(4, WIDTH))), seed=SEEDS)

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | network | Terminator: SFNE blocks with a global (image-sized) hyper-kernel branch and local branches, channel mixers, group-based standardization, a slow neural loss; no residual connections | three stages of one block each, three local HyperZ·Z·W branches (3, 5, 7), BatchNorm, a bottleneck; no residual connections |
# | benchmarks | sMNIST, pMNIST, sCIFAR-10 (pixel sequences), CIFAR-10, CIFAR-100, STL-10 (its results tables); no ImageNet | CIFAR-10, 6,000 training images, 2,000 test images |
# | headline (abstract) | superior accuracy with fewer parameters, faster convergence, stable zero-mean features | 38.0% against the static twin's 33.0% (3 seeds) with 9% fewer parameters; ahead after every epoch |
#
# The paper compares Terminator with published networks on the full datasets and with image-sized
# kernels; here a network a thousandth of the size meets its own static twin after three epochs on
# 6,000 images, with kernels of at most 7x7 (paper mode: all 50,000 images, 60 epochs, twice the
# width and depth).

# %% [markdown]
# ## The claim, as checks that can fail
#
# Every mode: the static twin's kernels are the same for every image (spread exactly 0) and the
# hyper network's are not. Laptop and paper mode, the claim: with fewer parameters than its static
# twin, the hyper network's final test accuracy is higher in every seed, and higher on average by more
# than the spread over seeds (the larger of the two variants' standard deviations). The mechanism: in
# every seed, every branch of the trained hyper network has a kernel spread of at least `MIN_SPREAD`
# across the test images, and switching the context off costs the trained network accuracy.

# %%
trained = spread[spread.stage == "trained"]
hyper_spread, static_spread = trained[trained.variant == "hyper"], trained[trained.variant == "static"]
assert (static_spread.spread == 0).all(), "the static twin's kernels should not depend on the input"
assert (hyper_spread.spread > 0).all(), "the hyper network's kernels should depend on the input"
gain = final["hyper"] - final["static"]
stds = curves[curves.epoch == EPOCHS].groupby("variant").test_acc.std()
seed_spread = stds[["hyper", "static"]].max() if len(SEEDS) > 1 else 0.0
fewer = costs.loc["hyper", "params"] < costs.loc["static", "params"]
drop = ablation["with context"] - ablation["without context"]
worst = hyper_spread.sort_values("spread").iloc[0]
print(f"smallest kernel spread of a trained hyper branch: {worst.spread:.4f} ({worst.branch}, seed {worst.seed})")
print(f"accuracy lost without the context, per seed: {drop.round(4).to_dict()}")
print(f"parameters: hyper {costs.loc['hyper', 'params']:,}, static {costs.loc['static', 'params']:,}; "
      f"accuracy hyper - static per seed: {gain.round(4).to_dict()} (spread over seeds {seed_spread:.4f})")
if CHECK_MECHANISM:
    assert (hyper_spread.spread >= MIN_SPREAD).all(), \
        f"every trained hyper kernel should move with the input: smallest spread {worst.spread:.4f}"
    assert (drop > 0).all(), f"switching the context off should cost the trained network accuracy: {drop.to_dict()}"
if CHECK_CLAIM:
    assert fewer, "the hyper network should have fewer parameters than its static twin"
    assert (gain > 0).all() and gain.mean() > seed_spread, \
        f"the hyper network should beat its static twin by more than the seed spread: {gain.to_dict()}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-06, 2 cores, 4.1 minutes from an empty cache) the
# hyper network reached 38.0% test accuracy after three epochs on 6,000 images (37.75%, 37.8% and
# 38.35% in seeds 0, 1 and 2) and its static twin 32.9% (34.4%, 31.75%, 32.65%): the hyper network won
# by 3.35, 6.05 and 5.7 points, more than the spread over seeds (1.35 points, the twin's), with 14,034
# parameters against 15,482 (9% fewer) and the same fast network (3.97 M multiply-adds per image
# against 3.89 M; the difference is the slow networks, run once per batch). Its training loss ended
# lower too (1.854 against 1.896): the paper's faster convergence, counted in steps. Counted in
# seconds it is not: on a CPU each of its steps takes about twice as long as the twin's, since
# per-image kernels cannot use the batched depthwise convolution.
#
# The mechanism: a typical test image moves the trained kernels by 17% to 27% of their size (spread
# 0.17-0.27), more in the larger kernels of every block. Training levelled this across depth: at
# initialization the spread grows from 0.16-0.20 in the first block to 0.82-0.91 in the last; after
# training it is 0.18-0.27 everywhere. The trained networks rely on it: with the context switched off
# (every image convolved with the slow network's `W`) they lose 6.2 to 6.9 points, to 31-32%, below
# the static twin. That does not say how much of the gain is the context and how much the slow
# network's smooth kernels: the `"implicit"` variant below separates the two.

# %% [markdown]
# ## What to try next
#
# - `VARIANTS = ["hyper", "implicit", "static"]`: the slow network's kernel without the context term
#   separates the two halves of the idea (smooth implicit kernels, input-dependent kernels).
# - `KERNEL_SIZES = (3, 7, 11)`: larger kernels, where a static kernel costs more parameters than the
#   slow network that writes one (and the paper's argument for full context gets stronger).
# - `EPOCHS = 10` with `TRAIN_SUBSET = 20_000`: does the gap between the variants close or grow once
#   the networks are trained longer? (And at equal wall time: the static twin with twice the epochs.)

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **The fast network's step.** `z` is a batch of activations `[batch, C, H, W]`, `kernel` the
# hyper-kernel `[C, k, k]` (`k` odd) and `context` the multiplier of each image `[batch, C, k, k]`.
# Return `[batch, C, H, W]`: channel `c` of image `b` convolved with the kernel `kernel[c] * context[b, c]`,
# with zero padding `k // 2` on every side and stride 1, as `torch.nn.functional.conv2d` computes a
# convolution (cross-correlation, the kernel not flipped).

# %%
def hyperzzw_conv(z, kernel, context):
    raise NotImplementedError  # your code here


wb.exercises.check("hyperzzw_conv", hyperzzw_conv)
