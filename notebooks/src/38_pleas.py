# %% [markdown]
# # PLeaS: merging two networks with permutations and least squares
#
# Anshul Nasery, Jonathan Hayase, Pang Wei Koh & Sewoong Oh, *PLeaS -- Merging Models with Permutations
# and Least Squares*, 2024, CVPR 2025 ([arXiv 2407.02447](https://arxiv.org/abs/2407.02447)).
#
# **The question.** Two networks of the same architecture, trained separately, each know something.
# Can one network be built from the two, without training it again, that keeps what they know -- and
# can it be smaller than the two of them together?
#
# **The idea.** Averaging the two networks' weights fails: a hidden layer's channels can be listed in
# any order without changing the function, and two independent trainings order them differently, so
# the average mixes unrelated channels. PLeaS works in two steps. *Permutations*: each layer's
# channels of network B are matched to those of network A (a linear assignment on the correlation of
# their activations); where the merged model must be smaller than both together, only the best
# matched pairs are merged. *Least squares*: the merged network's weights are then computed layer by
# layer, in forward order, as the least-squares solution that makes each layer's output on the
# *merged* network's own inputs match the average of the two aligned networks' features. Each layer
# so corrects the errors of the layers before it, which a plain average of aligned weights cannot do.
#
# **What is checked here.** Two ResNet-20s trained on the same CIFAR-10 images from different seeds
# (three such pairs), merged without any training:
# naive averaging; permutation-aligned averaging, with and without REPAIR (the BatchNorm statistics
# re-estimated on training images); and PLeaS -- at the networks' own width, and at smaller widths
# where the merged network keeps only part of each layer's channels. Every merge sees the same 500
# training images, without their labels (matching, REPAIR and least squares). Laptop mode asserts the claim: naive averaging
# collapses, alignment recovers most of the loss, and the least-squares step recovers more, at equal
# width and when merging into a smaller network, in every pair and by more than the spread over pairs.

# %%
import pandas as pd
import plotly.express as px

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

from workbench.transfer import merge as mg

info = wb.setup()

# %% tags=["parameters"]
MODEL = wb.by_mode(smoke="resnet8", laptop="resnet20", paper="resnet20")
WIDTH = wb.by_mode(smoke=8, laptop=16, paper=64)  # base width of both networks (paper: 4x, easier to align)
SEEDS = wb.by_mode(smoke=[0, 1], laptop=[0, 1, 2], paper=[0, 1, 2, 3, 4, 5])  # one trained network per seed
PAIRS = wb.by_mode(smoke=[(0, 1)], laptop=[(0, 1), (0, 2), (1, 2)], paper=[(0, 1), (2, 3), (4, 5)])  # (A, B) merged
TRAIN_SUBSET = wb.by_mode(smoke=500, laptop=5_000, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=300, laptop=2_000, paper=None)
EPOCHS = wb.by_mode(smoke=1, laptop=12, paper=100)
BATCH_SIZE = wb.by_mode(smoke=64, laptop=128, paper=128)  # 5,000 images in batches of 128: 40 steps per epoch
LR = wb.by_mode(smoke=0.05, laptop=0.1, paper=0.1)  # SGD's peak rate, scaled with the batch (the recipe's 0.2 at 256)
FIT_IMAGES = wb.by_mode(smoke=128, laptop=500, paper=5_000)  # training images every merge sees (no labels used)
WIDTHS = wb.by_mode(smoke=[0.5, 1.0], laptop=[0.5, 0.75, 1.0], paper=[0.5, 0.75, 1.0, 1.5])  # merged / one network's
PATH_T = [0.0, 0.25, 0.5, 0.75, 1.0]  # points of the interpolation path
PATH_IMAGES = wb.by_mode(smoke=300, laptop=1_000, paper=10_000)  # test images each point of the path is scored on
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")  # paper: one configuration per GPU on Ray
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=True, paper=True)

# %% [markdown]
# ## The two networks, and why their average fails
#
# Each network trains with the laptop recipe (one-cycle SGD with Nesterov momentum, label smoothing,
# crop-and-flip) for `EPOCHS` epochs on `TRAIN_SUBSET` CIFAR-10 images in batches of `BATCH_SIZE`
# (the recipe's 256 leaves too few steps on 5,000 images; the peak rate is scaled with the batch).
# A and B of a pair differ only in the seed: initialization and data order. `wb.train_model` caches
# each run. The channels of a CIFAR ResNet fall into groups that must be permuted together: one
# group per residual stream (the stem or shortcut and every block output of a stage are added to one
# another) and one inside each block.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
fit_images = train.subset(FIT_IMAGES, seed=1)  # what every merge may look at: matching, REPAIR, least squares
recipe = wb.train.recipe("laptop", epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR)
model_kwargs = dict(width=WIDTH)


def trained(seed):
    return wb.train_model(MODEL, train, test, seed=seed, model_kwargs=model_kwargs, progress=False, **recipe)


def network(seed):
    return trained(seed).model.eval()


ends = pd.DataFrame({"seed": SEEDS, "test accuracy": [trained(s).test_acc for s in SEEDS]}).set_index("seed")
a, b = network(PAIRS[0][0]), network(PAIRS[0][1])
print(f"{MODEL} (width {WIDTH}), {EPOCHS} epochs on {len(train):,} images:", ends["test accuracy"].round(4).to_dict())
pd.Series(mg.channel_groups(a), name="channels").to_frame().T

# %% [markdown]
# **Matching.** Weight matching (Git Re-Basin: a linear assignment per group on the weights, repeated
# until nothing changes) and activation matching (a linear assignment per group on the correlation of
# the channels over `FIT_IMAGES` images). Permuting B keeps its function exactly; the table says, per
# group, how often the two matchings agree and how well the matched channels correlate.

# %%
by_weights = mg.weight_matching(a, b)
perms, scores = mg.activation_matching(a, b, fit_images, return_scores=True)
x = fit_images.normalize(fit_images.images[:256]).to(wb.device())
shift = float((mg.permute(b, perms)(x) - b(x)).detach().abs().max())
print(f"largest change of B's logits after the permutation: {shift:.2e} (the same function)")
matching = pd.DataFrame({"channels": {g: len(p) for g, p in perms.items()},
                         "weight matching agrees": {g: float((by_weights[g] == p).float().mean())
                                                    for g, p in perms.items()},
                         "correlation of matched channels": {g: float(s.mean()) for g, s in scores.items()}})
matching.round(3)

# %% [markdown]
# ## The interpolation path
#
# Test accuracy of `(1 - t) A + t B` along `t` (on `PATH_IMAGES` test images), before and after
# aligning B by either matching, with and without REPAIR (the BatchNorm statistics re-estimated on
# the `FIT_IMAGES` images at every point). The ends are the two trained networks (REPAIR moves them a
# little: their statistics are then those of the `FIT_IMAGES` images, without augmentation).

# %%
path_test = test.subset(PATH_IMAGES, seed=0)


def path_run(seed_a, seed_b, matching, repair):
    a, b = network(seed_a), network(seed_b)
    perms = {"none": lambda: None, "weights": lambda: mg.weight_matching(a, b),
             "activations": lambda: mg.activation_matching(a, b, fit_images)}[matching]()
    p = mg.interpolation_path(a, b, path_test, PATH_T, perms=perms, repair=fit_images if repair else None)
    return {"t": p.t.tolist(), "acc": p.acc.tolist(), "loss": p.loss.tolist(), "barrier": mg.loss_barrier(p)}


constants = dict(model=MODEL, width=WIDTH, train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET, fit_images=FIT_IMAGES,
                 path_t=PATH_T, path_images=PATH_IMAGES, **recipe)
curves = [("none", False), ("none", True), ("activations", False), ("activations", True), ("weights", True)]
paths = wb.sweep(path_run, [dict(seed_a=PAIRS[0][0], seed_b=PAIRS[0][1], matching=m, repair=r) for m, r in curves],
                 backend=BACKEND, folder=wb.sweep_folder("pleas_paths", constants))
paths["curve"] = paths.matching.map({"none": "naive", "activations": "aligned (activations)",
                                     "weights": "aligned (weights)"}) + paths.repair.map({False: "", True: " + REPAIR"})
long = paths.explode(["t", "acc"]).astype({"t": float, "acc": float})
px.line(long, x="t", y="acc", color="curve", markers=True, labels={"acc": "test accuracy", "t": "t (0: A, 1: B)"},
        title=f"{MODEL} (width {WIDTH}) on CIFAR-10: accuracy of (1 - t) A + t B")

# %%
middle = [acc[t.index(0.5)] for t, acc in zip(paths.t, paths.acc)]
paths[["curve", "barrier"]].assign(**{"accuracy at t = 0.5": middle}).round(4)

# %% [markdown]
# ## Merging at the networks' width and below
#
# For every pair and every width: the merges of `mg.compare_merges`, all from the same activation
# matching on the same `FIT_IMAGES` images. At width 1 the merged network has the size of A;
# at 0.75 and 0.5 each layer keeps only the best-matched pairs (the rest are dropped); at 1.5 the
# best-matched half of the pairs is merged and the other channels of A and B are kept side by side.
# "aligned + REPAIR" is the plan applied to the weights (averaging the merged pairs) with the
# BatchNorm statistics re-estimated; "PLeaS" is the same plan with the least-squares step.

# %%
def merge_run(seed_a, seed_b, width):
    a, b = network(seed_a), network(seed_b)
    rows = mg.compare_merges(a, b, fit_images, test, width=width)
    return {"methods": rows.method.tolist(), "accs": rows.acc.tolist(), "params": rows.params.tolist()}


merges = wb.sweep(merge_run, [dict(seed_a=sa, seed_b=sb, width=w) for sa, sb in PAIRS for w in WIDTHS],
                  backend=BACKEND, folder=wb.sweep_folder("pleas_merges", constants))
rows = merges.explode(["methods", "accs", "params"]).rename(columns={"methods": "method", "accs": "acc"})
rows = rows.astype({"acc": float, "params": int})
rows["pair"] = rows.seed_a.astype(str) + "-" + rows.seed_b.astype(str)
end = pd.Series({f"{sa}-{sb}": (ends.loc[sa].iloc[0] + ends.loc[sb].iloc[0]) / 2 for sa, sb in PAIRS}, name="A and B")
rows.groupby(["width", "method"], sort=False).agg(acc=("acc", "mean"), spread=("acc", "std"), worst_pair=("acc", "min"),
                                                params=("params", "first")).round(4)

# %%
mean = rows.groupby(["width", "method"]).acc.agg(["mean", "std"]).reset_index()
fig = px.line(mean[mean.method.isin(["aligned + REPAIR", "PLeaS"])], x="width", y="mean", error_y="std", color="method",
              markers=True, labels={"mean": "test accuracy", "width": "merged width / one network's width"},
              title=f"Merging two {MODEL}s into one network of a chosen width ({len(PAIRS)} pairs)")
fig.add_hline(y=float(end.mean()), line_dash="dot", annotation_text="A and B (mean)")
naive = mean[mean.method == "naive"]
if len(naive):
    fig.add_hline(y=float(naive["mean"].iloc[0]), line_dash="dash", annotation_text="naive averaging")
fig

# %% [markdown]
# ### Explore the widths
#
# Pick a width: every method's accuracy in every pair, beside the two networks it came from.

# %%
def render_width(width=1.0):
    shown = rows[rows.width == width]
    fig = px.bar(shown, x="method", y="acc", color="pair", barmode="group", labels={"acc": "test accuracy"},
                 title=f"Merged at width {width} ({int(shown.params.iloc[0]):,} parameters)")
    fig.add_hline(y=float(end.mean()), line_dash="dot", annotation_text="A and B (mean)")
    return fig


wb.viz.explorer(render_width, width=WIDTHS)

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | networks | ResNets and ViTs fine-tuned from different pre-trained bases, on DomainNet and on fine-grained classification datasets, with shared and with different label spaces | two ResNet-20s (width 16) from different seeds on the same 5,000 CIFAR-10 images |
# | merged width | chosen per layer, from one model's size towards both models' (partial merging) | 0.5x, 0.75x, 1x one network's width (paper mode also 1.5x) |
# | headline (abstract) | up to 15 points above the best earlier merging method at the same compute | 14.4-15.3 points above aligned averaging with REPAIR at equal width, 20-30 points at 0.75x and 0.5x (3 pairs) |
#
# The paper merges large networks fine-tuned on different tasks, where the question is how much of each
# task survives; here two small networks trained on one task from different seeds, where the question
# is how much accuracy survives. Narrow networks are the hard case for permutation alignment (Git
# Re-Basin and REPAIR both report barriers that shrink as ResNet-20s get wider), so paper mode merges
# networks four times as wide, trained on all 50,000 images.

# %% [markdown]
# ## The claim, as a check that can fail
#
# In every pair, at the stated budget (the same trained networks, the same `FIT_IMAGES` training images for
# every merge, no training after merging), with `end` the mean accuracy of A and B and chance 10%:
# 1. **naive averaging collapses**: it keeps less than a third of the endpoints' accuracy above chance;
# 2. **alignment recovers most of it**: aligned averaging with REPAIR recovers more than half of what
#    naive averaging lost (`(aligned - naive) / (end - naive) > 0.5`);
# 3. **the least squares recover more**: PLeaS beats aligned averaging with REPAIR at width 1 and at
#    every smaller width, in every pair, and on average by more than the spread over pairs.

# %%
acc = rows.pivot_table(index=["pair", "width"], columns="method", values="acc")
at1 = acc.xs(1.0, level="width")
chance = 1 / train.num_classes
kept = (at1["naive"] - chance) / (end - chance)
recovered = (at1["aligned + REPAIR"] - at1["naive"]) / (end - at1["naive"])
gain = (acc["PLeaS"] - acc["aligned + REPAIR"]).unstack("width")
compared = rows[rows.method.isin(["PLeaS", "aligned + REPAIR"])]
spread = compared.groupby(["width", "method"]).acc.std().groupby("width").max()  # the larger of the two methods'
print(f"naive averaging keeps {kept.round(3).to_dict()} of the accuracy above chance (pair: share)")
print(f"alignment + REPAIR recovers {recovered.round(3).to_dict()} of what naive averaging lost")
print(f"PLeaS - (aligned + REPAIR), per pair and width:\n{gain.round(4)}")
print(f"spread over pairs per width: {spread.round(4).to_dict()}")
if CHECK_CLAIM:
    assert (kept < 1 / 3).all(), f"naive averaging should collapse: it keeps {kept.to_dict()}"
    assert (recovered > 0.5).all(), f"alignment with REPAIR should recover most of the loss: {recovered.to_dict()}"
    small = [w for w in WIDTHS if w <= 1]
    assert (gain[small] > 0).all().all(), f"PLeaS should beat aligned averaging at every width <= 1, every pair: {gain}"
    assert (gain[small].mean() > spread[small]).all(), \
        f"PLeaS's gain should exceed the spread over pairs: {gain[small].mean().to_dict()}, {spread[small].to_dict()}"

# %% [markdown]
# **Reading the results.** In laptop mode (timed 2026-12-06: 9.2 minutes on 2 cores from an empty
# cache, three quarters of it training the three networks) the three ResNet-20s reached 58.95%,
# 61.95% and 59.05%. Their plain average is at chance in every pair (10.1%; 16.3% with REPAIR): the
# channels of two such networks do not line up by index. Aligning B by activation matching alone
# changes little (11.8%); the aligned average still has the collapsed variance that REPAIR repairs,
# and with both it reaches 43.7%, about two thirds of the way back (64-71% of what naive averaging
# lost). Weight matching helps these narrow BatchNorm networks much less: on the path between the
# first pair, its aligned average with REPAIR scores 26.9% at the midpoint against 45.0% for
# activation matching. The matched channels correlate only 0.25-0.46 on average: two ResNet-20s of
# width 16 trained for 12 epochs on 5,000 images learn features that are only partly the same, which
# is why averaging even aligned weights loses so much.
#
# PLeaS's least squares, from the same matching and the same 500 images, brings the merged network to
# 58.05% at the networks' own width, within 2 points of the endpoints' mean (60.0%) and 12.8-15.7
# points above aligned averaging with REPAIR in every pair (spread over pairs 1.6 points). Below one
# network's width the gap grows, because dropped channels cannot be averaged back but the next
# layer's least squares can make up for them: at width 0.75 (56% of one network's parameters) 55.25%
# against 36.2%, at width 0.5 (a quarter of the parameters) 50.8% against 24.7%. No training
# happened after the two networks were trained; every merge cost seconds.

# %% [markdown]
# ## What to try next
#
# - `WIDTH = 32` (or 64): wider networks are easier to align; does PLeaS's advantage shrink as
#   aligned averaging gets better?
# - `FIT_IMAGES = 200`: how many images do the matching and the least squares need? (The paper also
#   merges with images from another dataset when the training data is not available.)
# - `WIDTHS = [1.0, 1.25, 1.5, 1.75, 2.0]`: the paper's partial merging, from one network's size to
#   both networks side by side (at 2 the merge is exactly the ensemble of A and B).

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **Activation matching for one layer.** `a` and `b` are activations of one layer of two networks on
# the same inputs, float tensors of shape `[n, d]` (n samples of d units). Return the permutation
# `perm` (a list of d ints, `perm[i]` the unit of `b` matched to unit `i` of `a`) that maximizes the
# summed Pearson correlation between `a[:, i]` and `b[:, perm[i]]` over `i`.

# %%
def match_units(a, b):
    raise NotImplementedError  # your code here


wb.exercises.check("match_units", match_units)
