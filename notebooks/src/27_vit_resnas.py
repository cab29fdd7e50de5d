# %% [markdown]
# # ViT-ResNAS: search a multi-stage Vision Transformer under a multiply-add budget
#
# Liao, Karaman & Sze, *Searching for Efficient Multi-Stage Vision Transformers*, 2021
# ([arXiv 2109.00642](https://arxiv.org/abs/2109.00642)).
#
# **The question.** A plain Vision Transformer keeps the same number of tokens and the same width in
# every block. Convolutional networks learned long ago to shrink the feature map and widen the
# channels as they go deeper. Does a transformer gain from the same shape -- and if so, how deep and
# how wide should each stage be for a given compute budget?
#
# **The idea.** Two parts. *Residual spatial reduction*: between stages, halve the token grid and
# change the width with a strided 2x2 convolution over the normalized tokens, plus a shortcut that
# average-pools the tokens and projects them, so that the reduction is a residual block and deep
# multi-stage networks stay trainable. *Weight-sharing search*: one large network (the supernet) holds
# every candidate -- each stage's depth, width, heads and MLP size -- as the leading slices of its
# weights; it is trained once, sampling sub-networks as it goes, and an evolutionary search then ranks
# sub-networks by their accuracy with the shared weights, keeping only those within a multiply-add
# budget. The found network is trained from scratch. The paper reports that its searched networks
# beat DeiT (the single-stage ViT) at similar multiply-adds on ImageNet.
#
# **What is checked here.** On CIFAR-10 (32x32 images, patches of 4: an 8x8 token grid), the
# single-stage baseline is `vit_tiny`'s shape scaled to a laptop (`wb.nas.vit_tiny_arch`: 4 blocks of
# width 48, 2 heads). A 3-stage space (`wb.nas.vit_stage_space`: per stage 1-3 blocks, two widths, two
# head counts, MLP ratio 2 or 4) is searched with a weight-sharing supernet trained once
# (`wb.nas.SampleArch`: a uniformly drawn sub-network every batch) and regularized evolution whose
# members must cost no more multiply-adds than the baseline. The found network and the baseline are
# then trained from scratch with the same recipe, data and seeds (three). The claim: at no more
# multiply-adds, the searched multi-stage ViT is more accurate than the single-stage one, by more
# than the spread over seeds.

# %%
import functools

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None
from workbench import nas
from workbench.nas import experiments as nx

info = wb.setup()

# %% tags=["parameters"]
BASELINE = wb.by_mode(smoke=dict(depth=4, width=48, heads=2, mlp_ratio=2.0),  # vit_tiny's shape (6, 192, 3, 2), scaled
                      laptop=dict(depth=4, width=48, heads=2, mlp_ratio=2.0),
                      paper=dict(depth=6, width=192, heads=3, mlp_ratio=2.0))
SPACE = wb.by_mode(  # per stage: depth choices, width choices, head choices, MLP ratio choices
    smoke=dict(depths=((1, 2), (1, 2), (1,)), widths=((32, 48), (64, 96), (128,)), heads=((1, 2), (2, 4), (4,)),
               mlp_ratios=((2.0, 4.0), (2.0, 4.0), (2.0,))),
    laptop=dict(depths=((1, 2), (1, 2, 3), (1, 2)), widths=((32, 48), (64, 96), (128, 192)),
                heads=((1, 2), (2, 4), (4, 8)), mlp_ratios=((2.0, 4.0), (2.0, 4.0), (2.0, 4.0))),
    paper=dict(depths=((1, 2, 3), (2, 3, 4, 5), (1, 2, 3)), widths=((96, 128, 160), (192, 256, 320), (384, 448, 512)),
               heads=((2, 4), (4, 8), (8, 16)), mlp_ratios=((2.0, 3.0, 4.0),) * 3))
TRAIN_SUBSET = wb.by_mode(smoke=500, laptop=4_000, paper=45_000)  # training images (supernet and final networks)
VAL_SUBSET = wb.by_mode(smoke=200, laptop=1_000, paper=5_000)  # held-out training images the search scores on
TEST_SUBSET = wb.by_mode(smoke=300, laptop=2_000, paper=None)  # None: all 10,000
SUPERNET_EPOCHS = wb.by_mode(smoke=1, laptop=10, paper=100)
POPULATION = wb.by_mode(smoke=4, laptop=10, paper=50)
CYCLES = wb.by_mode(smoke=4, laptop=30, paper=450)
SAMPLE_SIZE = wb.by_mode(smoke=2, laptop=4, paper=10)
EPOCHS = wb.by_mode(smoke=1, laptop=10, paper=100)  # the final networks' training
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])
BATCH_SIZE = wb.by_mode(smoke=64, laptop=64, paper=128)  # 4,000 images: 63 steps per epoch
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")  # paper: one run per GPU on Ray
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=True, paper=True)

# %% [markdown]
# ## The baseline and the space
#
# The baseline is one stage: `vit_tiny_arch(**BASELINE)` is `wb.models.vit_tiny`'s layout (the unit
# test checks it computes exactly what `vit_tiny` computes). Its multiply-adds per image
# (`wb.models.summary`, torch's own counter) are the search's budget. The space's networks have three
# stages on 8x8, 4x4 and 2x2 token grids, joined by residual spatial reductions.

# %%
baseline = nas.vit_tiny_arch(**BASELINE)
space = nas.vit_stage_space(**SPACE)
supernet_kwargs = {k: [list(v) for v in vs] for k, vs in SPACE.items()}
budget = wb.models.summary(nx.nas_vit_stages(baseline)).macs
probe = nx.nas_vit_supernet(**supernet_kwargs)
smallest = {k: min(v) for k, v in space.choices.items()}
pd.DataFrame([{"network": "baseline (one stage)", "MACs": budget},
              {"network": "smallest of the space", "MACs": probe.macs(smallest)},
              {"network": "largest of the space", "MACs": probe.macs(probe.max_arch)}]).assign(
    **{"architectures in the space": [1, space.size(), space.size()]})

# %% [markdown]
# ## The supernet, trained once
#
# Every batch trains the sub-network `SampleArch` draws uniformly from the space (ViT-ResNAS trains
# several sub-networks per batch; one is the simplest form). AdamW with a cosine schedule, label
# smoothing and crop-and-flip (the workbench's transformer recipe), `SUPERNET_EPOCHS` epochs on
# `TRAIN_SUBSET` images. `wb.train_model` caches the weights.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
val = nx.load_resized("cifar10", "train", VAL_SUBSET, offset=TRAIN_SUBSET)  # held out from the training images
recipe = wb.train.recipe("adamw", batch_size=BATCH_SIZE)
supernet_run = wb.train_model("nas_vit_supernet", train, None, model_kwargs=supernet_kwargs, seed=0, progress=False,
                              algorithms=[nas.SampleArch(seed=0)], **recipe, epochs=SUPERNET_EPOCHS)
supernet = supernet_run.model.eval()
px.line(supernet_run.history, x="epoch", y=["train_loss", "train_acc"], markers=True,
        title="The supernet's training (a new random sub-network every batch)")

# %% [markdown]
# ## Evolution under the multiply-add budget
#
# A candidate's score is its accuracy on the `VAL_SUBSET` held-out images with the shared weights
# (`wb.nas.evaluate`, cached per architecture). Regularized evolution with `max_cost=budget`: a member
# over the budget ranks below every member within it, so the population is pushed to the budget and
# kept there. Every candidate evaluated:

# %%
def score(arch):
    return nas.evaluate(supernet, arch, val)


evo = nas.evolution(space, score, population=POPULATION, cycles=CYCLES, sample_size=SAMPLE_SIZE, seed=0,
                    max_cost=budget)
evo["within budget"] = evo.cost <= budget
assert evo["within budget"].any(), "no candidate within the budget: raise CYCLES or the baseline's size"
found = evo[evo["within budget"]].sort_values("score").iloc[-1]
fig = px.scatter(evo, x="cost", y="score", color="order", symbol="within budget", hover_data=["key"],
                 labels={"cost": "multiply-adds per image", "score": "proxy accuracy (shared weights)",
                         "order": "evaluation"},
                 title=f"Every candidate of the search (the line: the baseline's {budget / 1e6:.2f}M multiply-adds)")
fig.add_vline(x=budget, line_dash="dash")
fig.add_trace(go.Scatter(x=[found.cost], y=[found.score], mode="markers", name="found",
                         marker=dict(size=16, symbol="star", color="red")))
fig

# %%
stages = pd.DataFrame(nas.stages_of(found.arch)).rename_axis("stage")
stages.index += 1
stages.assign(tokens=[(32 // 4 // 2 ** s) ** 2 + 1 for s in range(len(stages))])

# %% [markdown]
# ## The found network and the baseline, trained from scratch
#
# Both networks start from a fresh initialization and train with the same recipe (AdamW, cosine
# schedule, crop-and-flip) for `EPOCHS` epochs on the same `TRAIN_SUBSET` images, with each seed of
# `SEEDS` (initialization and data order), and are tested on `TEST_SUBSET` test images.
# `nx.network_run` trains one (cached by `wb.train_model`); `wb.sweep` keeps the records.

# %%
archs = {"searched (multi-stage)": dict(found.arch), "baseline (one stage)": baseline}
constants = dict(train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET, **recipe, epochs=EPOCHS)


def run(network, seed, archs, **kw):  # nx.network_run is wb.train.model_run for the models wb.nas registers
    return nx.network_run("nas_vit_stages", seed, model_kwargs=dict(arch=archs[network]), **kw)


runs = wb.sweep(functools.partial(run, archs=archs, **constants), {"network": list(archs), "seed": SEEDS},
                backend=BACKEND, folder=wb.sweep_folder("vit_resnas", dict(constants, archs=archs)))
table = runs.groupby("network", sort=False).agg(acc=("test_acc", "mean"), spread=("test_acc", "std"),
                                                train_loss=("train_loss", "mean"), params=("params", "first"),
                                                macs=("macs", "first"), seeds=("seed", "count"))
table

# %%
curves = runs.explode(["curve_epoch", "curve_test_acc"])[["network", "seed", "curve_epoch", "curve_test_acc"]]
curves = curves.astype({"curve_epoch": int, "curve_test_acc": float})
by_epoch = curves.groupby(["network", "curve_epoch"]).curve_test_acc.agg(["mean", "std"]).reset_index()
px.line(by_epoch, x="curve_epoch", y="mean", error_y="std", color="network", markers=True,
        labels={"curve_epoch": "epoch", "mean": "test accuracy"},
        title=f"Searched multi-stage ViT against the one-stage baseline at no more multiply-adds ({len(SEEDS)} seeds)")

# %% [markdown]
# ### Explore the budget
#
# The search above kept one budget. Move the slider: the best candidate the same search had already
# evaluated within a smaller or larger multiple of the baseline's multiply-adds, by its proxy score
# (no retraining: this is what the shared weights predict for the accuracy-multiply-add trade-off).

# %%
def render_budget(ratio=1.0):
    within = evo[evo.cost <= ratio * budget]
    fig = px.scatter(evo, x="cost", y="score", opacity=0.3, labels={"cost": "multiply-adds per image",
                                                                    "score": "proxy accuracy"})
    fig.add_vline(x=ratio * budget, line_dash="dash")
    if len(within):
        top = within.loc[within.score.idxmax()]
        shape = " | ".join(f"{s['depth']}x{s['width']}" for s in nas.stages_of(top.arch))
        fig.add_trace(go.Scatter(x=[top.cost], y=[top.score], mode="markers", marker=dict(size=16, symbol="star"),
                                 name="best within"))
        title = f"Within {ratio:g}x the baseline's multiply-adds: depth x width per stage {shape}, score {top.score:.3f}"
    else:
        title = f"No candidate within {ratio:g}x the baseline's multiply-adds"
    return fig.update_layout(title=title, showlegend=False)


wb.viz.explorer(render_budget, ratio=[0.5, 0.75, 1.0, 1.25, 1.5, 2.0])

# %% [markdown]
# ## The claim, as checks that can fail
#
# In every mode: the found network costs no more multiply-adds than the baseline (what the search
# promised). Laptop and paper mode, the claim: the searched multi-stage ViT is more accurate than the
# single-stage baseline in every seed, and on average by more than the spread over seeds (the larger
# standard deviation of the two networks).

# %%
acc = runs.pivot_table(index="seed", columns="network", values="test_acc")
gain = acc["searched (multi-stage)"] - acc["baseline (one stage)"]
spread = runs.groupby("network").test_acc.std().fillna(0).max()
macs = runs.groupby("network").macs.first()
print(f"multiply-adds: searched {macs['searched (multi-stage)']:,}, baseline {macs['baseline (one stage)']:,}")
print(f"test accuracy per seed: {acc.round(4).to_dict('index')}")
print(f"searched - baseline: {gain.mean():+.4f} (per seed {gain.round(4).tolist()}, spread over seeds {spread:.4f})")
assert macs["searched (multi-stage)"] <= macs["baseline (one stage)"], "the found network should fit the budget"
if CHECK_CLAIM:
    assert (gain > 0).all() and gain.mean() > spread, \
        "the searched multi-stage ViT should beat the one-stage baseline by more than the seed spread"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-06, 2 cores, 4.3 minutes from an empty cache) the
# supernet, a new random sub-network every batch for 10 epochs on 4,000 images, reached about 35%
# training accuracy. Evolution under the baseline's 6.56M multiply-adds found three stages of 1 block
# at width 48 (65 tokens), 2 blocks at width 64 (17 tokens) and 2 blocks at width 128 (5 tokens,
# 8 heads), MLP ratio 4 throughout: 6.50M multiply-adds, just under the budget, but 600k parameters
# against the baseline's 82k -- the late stages can be wide because they have few tokens. Trained
# from scratch for 10 epochs it reached 40.65% test accuracy (40.65%, 39.2%, 42.1% in seeds 0, 1, 2)
# against the one-stage baseline's 34.65% (34.8%, 33.45%, 35.7%): ahead by 5.85, 5.75 and 6.4
# points, far more than the spread over seeds (1.45 points). What this does not separate is the
# search from the shape, nor the multiply-adds from the parameters: a multi-stage network drawn at
# random within the budget may do as well (see below), and at equal multiply-adds the multi-stage
# network holds seven times the parameters, which the paper's comparison (at equal MACs) allows.
#
# The budget counts every product: `wb.models.summary` takes torch's FLOP counter, and adds the two
# products inside fused attention (`2 T^2 w` per block for `T` tokens of width `w`), which torch
# counts on a GPU but not on a CPU. They weigh most on the one-stage baseline (65 tokens in every
# block).

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | data | ImageNet, 224x224 | CIFAR-10, 32x32, 4,000 training images |
# | baseline | DeiT-Ti: one stage, 12 blocks of width 192, 72.2% top-1 | 4 blocks of width 48 (`vit_tiny`'s shape scaled down) |
# | search | a supernet trained with several sub-networks per batch, then evolutionary search under a MACs limit | a supernet with one sub-network per batch, 40 evaluations of regularized evolution under the baseline's multiply-adds |
# | result | ViT-ResNAS-Tiny: 8.6 points above DeiT-Ti at slightly more MACs; ViT-ResNAS-Small about as accurate as DeiT-B at 6.3x fewer MACs (abstract) | searched 40.65% against 34.65% (3 seeds, spread 1.45) at 6.50M against 6.56M multiply-adds (600k against 82k parameters) |
#
# The paper trains its networks for 300 epochs on 1.28 million images, with the whole DeiT recipe
# (strong augmentation, distillation-free); here 10 epochs on 4,000 images, so only the comparison
# of the two shapes at an equal budget carries over.

# %% [markdown]
# ## What to try next
#
# - `SPACE["depths"] = ((1,), (1, 2, 3), (1, 2))` with `SPACE["widths"][0] = (32,)`: a thin first
#   stage. Where does the search then spend the budget?
# - `BASELINE = dict(depth=4, width=64, heads=2, mlp_ratio=2.0)` (8.7M multiply-adds): a larger
#   budget. Does the gap between the two shapes grow or shrink?
# - `EPOCHS = 30`: on small data a single-stage ViT learns slowly; does the baseline catch up when
#   both are trained longer?
# - Search or shape? Add `"random (multi-stage)": space.sample(1)` to `archs` (check that its
#   multiply-adds are within `budget`, or draw again): a multi-stage network nobody searched for.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **What a transformer block costs.** `vit_block_macs(tokens, width, mlp_ratio)` -> int: the
# multiply-adds of one pre-norm block on `tokens` tokens of `width` channels: the `qkv` map (`width` to
# `3 width`), the attention scores `q k^T` and the weighted sum of the values (each `tokens x tokens x
# width`, whatever the number of heads), the output projection (`width` to `width`) and the MLP
# (`width` to `int(width * mlp_ratio)` and back). One multiply-add per weight per token for the linear
# maps; ignore biases, normalization, softmax and activations.

# %%
def vit_block_macs(tokens, width, mlp_ratio):
    raise NotImplementedError  # your code here


wb.exercises.check("vit_block_macs", vit_block_macs)
