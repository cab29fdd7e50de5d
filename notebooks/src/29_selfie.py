# %% [markdown]
# # Selfie: pre-train a ResNet's early layers by filling in masked patches
#
# Trieu H. Trinh, Minh-Thang Luong & Quoc V. Le, *Selfie: Self-supervised Pretraining for Image
# Embedding*, 2019 ([arXiv 1906.02940](https://arxiv.org/abs/1906.02940)).
#
# **The question.** BERT learns language by filling in masked words, choosing among the whole
# vocabulary. Images have no vocabulary: a missing patch could be any of infinitely many pixel
# arrays. Can a convolutional network still learn from images without labels by filling in blanks,
# and does that help when only a few labelled images are available?
#
# **The idea.** Do not generate the missing patch, *choose* it. Cut the image into a grid of
# patches, encode every patch with the first layers of the ResNet (the *patch network*), and hide
# some of them. A small transformer with a learned query token pools the visible patches into one
# vector `u`; adding the embedding of a masked location gives the query for that location. The
# network must pick the patch that was there among the image's masked patches (the others are
# *distractors*) by dot products: a contrastive predictive (CPC) loss, a classification with no
# label but the image itself. Afterwards the patch network's weights start a full ResNet, which is
# trained on the labels as usual. The paper reports the largest gains with the fewest labels (11
# points on ImageNet with 5% of the labels) and steadier runs: a smaller spread over seeds.
#
# **What is checked here.** `wb.ssl.Selfie` is the pre-training task of `wb.fit`; the network
# (`selfie_net`) is built around the registered ResNet-20, whose stem and first two of three stages
# form the patch network (as the paper pre-trains the first three of ResNet-50's four stages).
# CIFAR-10 images cut into 4x4 patches of 8x8, a quarter of them masked (4 per image, 3
# distractors each). Pre-training uses the `TRAIN_SUBSET` images without their labels; then ResNet-20
# is trained on 5%, 10% and 100% of those images' labels (class-balanced,
# `wb.ssl.label_subset`), once from the pre-trained patch network and once from scratch, with the
# same recipe, the same number of images seen and the same seeds (three). The paper's claim: the
# gain is largest with the least labelled data, and the pre-trained runs vary less across seeds.
# In laptop mode the claim does not show: the pre-trained start gains about the same at every share
# of the labels (see the end). What laptop mode asserts is the mechanism, that the pre-training task
# is learned; paper mode asserts the claim.

# %%
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

info = wb.setup()

# %% tags=["parameters"]
WIDTH = 16  # ResNet-20's width (16, 32, 64 channels in its three stages)
STAGES = 2  # stages of ResNet-20 that form the patch network (with the stem)
PATCH = 8  # 32x32 images in 4x4 patches of 8x8 (the paper's patch size on CIFAR-10)
MASK_RATIO = 0.25  # 4 of the 16 patches masked: each query has 3 distractors (chance 25%)
FRACTIONS = [0.05, 0.1, 1.0]  # shares of the labels, class-balanced
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2, 3, 4])
TRAIN_SUBSET = wb.by_mode(smoke=500, laptop=5_000, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=300, laptop=2_000, paper=None)
PRE_EPOCHS = wb.by_mode(smoke=1, laptop=10, paper=100)  # pre-training epochs over the unlabeled images
FULL_EPOCHS = wb.by_mode(smoke=1, laptop=4, paper=30)  # epochs with 100% of the labels; fraction f: FULL_EPOCHS / f
BATCH_SIZE = wb.by_mode(smoke=64, laptop=64, paper=128)
LR = wb.by_mode(smoke=0.05, laptop=0.05, paper=0.1)  # SGD's peak rate, scaled with the batch (0.2 at 256)
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")  # paper: one run per GPU on Ray
MIN_LIFT = wb.by_mode(smoke=0.0, laptop=1.2, paper=1.2)  # the mechanism: pretext top-1 at least 1.2x chance
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # laptop: not shown at this scale (see the end)

# %% [markdown]
# ## What the pre-training task sees
#
# Four training images, each cut into its 16 patches; the masked ones are blanked. The network
# sees the others, and for each blank it must choose, among the image's masked patches, the one
# that was there. Which patches are masked is a pure function of the run's seed and step
# (`wb.ssl.selfie_masks`), so a resumed run sees the same masks.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
grid = 32 // PATCH
masked_count = wb.ssl.num_masked(grid * grid, MASK_RATIO)
masked, visible = wb.ssl.selfie_masks(4, grid * grid, masked_count, seed=0, step=0)
shown = train.images[:4].clone()
for b, row in enumerate(masked.tolist()):
    for n in row:
        r, c = divmod(n, grid)
        shown[b, :, r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] = 128
px.imshow(shown.permute(0, 2, 3, 1).numpy(), facet_col=0, facet_col_wrap=4,
          title=f"The encoder's view: {masked_count} of {grid * grid} patches masked per image").update_xaxes(
    showticklabels=False).update_yaxes(showticklabels=False)

# %% [markdown]
# ## Pre-training without labels
#
# `selfie_net`: ResNet-20's stem and first `STAGES` stages encode each patch (global average
# pooling gives a 32-dimensional vector), a two-block transformer pools the visible ones. AdamW
# with a cosine schedule, horizontal flips only (padded crops would leave black borders that give a
# patch's position away), `PRE_EPOCHS` epochs over the `TRAIN_SUBSET` images; the labels are never
# read. `acc` is the top-1 of the queries among each image's masked patches; test masks are fixed.

# %%
net_kwargs = dict(backbone="resnet20", backbone_kwargs={"width": WIDTH}, stages=STAGES, patch_size=PATCH)
pre_recipe = dict(epochs=PRE_EPOCHS, batch_size=128, optimizer="adamw", lr=2e-3, weight_decay=0.05,
                  schedule="cosine", warmup=0.1, augment="flip", eval_every=max(1, PRE_EPOCHS // 5))
pre = wb.train_model("selfie_net", train, test, model_kwargs=net_kwargs, seed=0, task=wb.ssl.Selfie(MASK_RATIO),
                     progress=False, **pre_recipe)
chance = 1 / masked_count
torch.manual_seed(0)
untrained = wb.create_model("selfie_net", **net_kwargs).to(wb.device())  # the network pre-training started from
start = wb.ssl.Selfie(MASK_RATIO).evaluate(untrained, wb.data.Loader(test, batch_size=500, shuffle=False,
                                                                     device=wb.device()))
pretext = pre.history.dropna(subset=["test_acc"])
fig = px.line(pre.history.melt(id_vars="epoch", value_vars=["train_acc", "test_acc"]).dropna(), x="epoch", y="value",
              color="variable", markers=True, labels={"value": "top-1 among the masked patches"},
              title="Selfie's pre-training task: choosing the right patch for a masked location")
fig.add_hline(y=chance, line_dash="dot", annotation_text=f"chance (1 in {masked_count})")
fig

# %%
pd.DataFrame({"top-1 (test)": [start["acc"], float(pretext.test_acc.iloc[-1])], "chance": chance,
              "loss (test)": [start["loss"], float(pretext.test_loss.iloc[-1])]},
             index=["untrained", f"after {PRE_EPOCHS} epochs"]).round(4)

# %% [markdown]
# ## Fine-tuning with 5%, 10% and 100% of the labels
#
# `wb.ssl.selfie_setup(pre.model)` gives `wb.train_model` a `setup` that loads the pre-trained patch
# network (stem, `layer1`, `layer2` with their BatchNorm statistics) into a fresh ResNet-20; the
# third stage and the classifier keep the seed's initialization, exactly as in the run from
# scratch. Every run: the laptop recipe (one-cycle SGD with Nesterov momentum, label smoothing,
# crop-and-flip) in batches of `BATCH_SIZE`, and the same number of images seen whatever the
# fraction: `FULL_EPOCHS / fraction` epochs (about 320 steps of 64 in laptop mode). We chose that
# budget before comparing the two starts, from the runs from scratch alone: enough steps that the
# 5% runs fit their 250 images and the 100% runs pass 45% test accuracy. `wb.sweep` keeps one
# record per run, so a rerun is instant.

# %%
setup, pretrained_key = wb.ssl.selfie_setup(pre.model)
subsets = {f: wb.ssl.label_subset(train, f, seed=0) if f < 1 else train for f in FRACTIONS}


def run(fraction, start, seed):
    epochs = max(1, round(FULL_EPOCHS / fraction))
    recipe = wb.train.recipe("laptop", epochs=epochs, batch_size=BATCH_SIZE, lr=LR)
    init = dict(setup=setup, setup_key=pretrained_key) if start == "selfie" else {}
    record = wb.train.run_record("resnet20", subsets[fraction], test, seed, model_kwargs={"width": WIDTH},
                                 eval_every=epochs, **init, **recipe)
    curves = [k for k in record if k.startswith("curve_")]  # evaluated once, at the end: no curves to keep
    kept = {k: v for k, v in record.items() if k not in curves}
    return {**kept, "labelled": len(subsets[fraction]), "epochs": epochs}


constants = dict(train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET, width=WIDTH, full_epochs=FULL_EPOCHS,
                 batch_size=BATCH_SIZE, lr=LR, pretrained=pretrained_key)
runs = wb.sweep(run, dict(fraction=FRACTIONS, start=["scratch", "selfie"], seed=SEEDS), backend=BACKEND,
                folder=wb.sweep_folder("selfie", constants))
acc = runs.pivot_table(index=["fraction", "seed"], columns="start", values="test_acc")
acc.assign(gain=acc["selfie"] - acc["scratch"]).round(4)

# %% [markdown]
# ## Does pre-training help, and where most?
#
# Test accuracy against the share of labels, one point per seed and the mean; then the gain of the
# pre-trained start over the start from scratch, with the spread over seeds.

# %%
stats = runs.groupby(["fraction", "start"]).test_acc.agg(["mean", "std"]).reset_index()
fig = px.line(stats, x="fraction", y="mean", error_y="std", color="start", markers=True, log_x=True,
              labels={"fraction": "share of the labels", "mean": "test accuracy"},
              title=f"ResNet-20 on CIFAR-10, Selfie-pre-trained patch network or from scratch ({len(SEEDS)} seeds)")
for start_name, group in runs.groupby("start"):
    fig.add_trace(go.Scatter(x=group.fraction, y=group.test_acc, mode="markers", opacity=0.4, showlegend=False,
                             marker=dict(size=6), name=f"{start_name} (seeds)"))
fig

# %%
by_fraction = runs.groupby(["fraction", "start"]).test_acc.agg(["mean", "std"]).unstack("start")
summary = pd.DataFrame({
    "labelled images": runs.groupby("fraction").labelled.first(),
    "epochs": runs.groupby("fraction").epochs.first(),
    "scratch": by_fraction[("mean", "scratch")], "selfie": by_fraction[("mean", "selfie")],
    "gain": by_fraction[("mean", "selfie")] - by_fraction[("mean", "scratch")],
    "spread scratch": by_fraction[("std", "scratch")], "spread selfie": by_fraction[("std", "selfie")]})
summary.round(4)

# %% [markdown]
# ### Explore one share of the labels
#
# Pick a share: the test accuracy of every seed from each start, and the test accuracy after the
# run's last epoch against its training accuracy (how much the run over-fits its labelled images).

# %%
def render_fraction(fraction=FRACTIONS[0]):
    rows = runs[runs.fraction == fraction]
    fig = px.scatter(rows, x="train_acc", y="test_acc", color="start", symbol="seed", hover_data=["seed"],
                     labels={"train_acc": "training accuracy (last epoch)", "test_acc": "test accuracy"},
                     title=f"{fraction:.0%} of the labels ({int(rows.labelled.iloc[0])} images): one point per run")
    return fig.update_traces(marker_size=11)


wb.viz.explorer(render_fraction, fraction=FRACTIONS)

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper (ResNet-50; the abstract's numbers) | here (laptop mode, ResNet-20, 3 seeds) |
# | --- | --- | --- |
# | ImageNet 224x224, 5% of the labels (60 images a class) | supervised 35.6%, Selfie 46.7% (+11.1 points) | |
# | CIFAR-10, 5% of the labels | gains in every setting, spread reduced (table 1) | scratch 35.65 ± 1.3, Selfie 35.4 ± 1.25 (249 images) |
# | CIFAR-10, 10% | (table 1) | 40.8 ± 0.5, 41.6 ± 2.6 (500 images) |
# | CIFAR-10, 100% | (table 1) | 47.3 ± 0.65, 47.8 ± 1.9 (5,000 images) |
# | pretext top-1 among the distractors | not reported as such | 35.9% on test images (chance 25%) |
#
# The paper's CIFAR-10 and ImageNet 32x32 rows are in its table 1; they are not copied here because
# this notebook's authors could not check them against the paper at writing time: read them there.
# The paper pre-trains ResNet-50's first three stages on all 50,000 CIFAR-10 images (or all of
# ImageNet) for many epochs and fine-tunes for full schedules; here ResNet-20's first two stages
# are pre-trained for `PRE_EPOCHS` epochs on 5,000 images and fine-tuned for about 320 steps. The
# abstract's headline, a gain of 11 points with 5% of the labels, is ImageNet's at 224x224.

# %% [markdown]
# ## The claim, as a check that can fail
#
# The mechanism, in laptop and paper mode: the pretext task is learned, its top-1 among the
# distractors on the test images at least `MIN_LIFT` times chance, above the untrained network's.
# The claim, asserted in paper mode (`CHECK_CLAIM`): the gain of the pre-trained start is largest
# at the smallest share of labels, larger there than the spread over seeds, and the pre-trained
# runs vary less there than the runs from scratch. In laptop mode it is measured and printed, not
# asserted: at this scale it does not show (see the reading below).

# %%
lift = float(pretext.test_acc.iloc[-1]) / chance
least = min(FRACTIONS)
gain = summary["gain"]
spread_least = max(summary.loc[least, "spread scratch"], summary.loc[least, "spread selfie"])
print(f"pretext top-1 on the test images: {pretext.test_acc.iloc[-1]:.2%} = {lift:.2f}x chance "
      f"({chance:.0%}); untrained: {start['acc']:.2%}")
print("gain of the pre-trained start per share of labels:", gain.round(4).to_dict())
print(f"spread over seeds at {least:.0%}: scratch {summary.loc[least, 'spread scratch']:.4f}, "
      f"selfie {summary.loc[least, 'spread selfie']:.4f}")
print(f"pre-trained start ahead in {int((acc['selfie'] > acc['scratch']).sum())} of {len(acc)} (share, seed) pairs")
if MIN_LIFT:  # smoke mode trains one epoch: it only checks that everything runs
    assert lift >= MIN_LIFT and pretext.test_acc.iloc[-1] > start["acc"], \
        f"the pretext task should be learned: top-1 {pretext.test_acc.iloc[-1]:.3f} against chance {chance:.3f}"
if CHECK_CLAIM:
    assert gain.idxmax() == least and gain[least] > spread_least, \
        f"the gain should be largest with the fewest labels and exceed the seed spread: {gain.to_dict()}"
    assert summary.loc[least, "spread selfie"] < summary.loc[least, "spread scratch"], \
        "the pre-trained runs should vary less across seeds with the fewest labels"

# %% [markdown]
# **Reading the results.** In laptop mode (2 idle cores, an empty cache: 12.9 minutes, most of it
# the 18 fine-tuning runs) the pre-training task was learned, slowly: the untrained network picks
# the right patch 25.1% of the time (chance, 1 in 4), after 10 epochs on 5,000 unlabelled images
# 35.9% of the time on test images (loss 1.294 against log 4 = 1.386), 1.44 times chance. That is
# well above chance (about 8,000 test queries: a standard error of half a point) but far from
# solved, and the design says why it is hard: the pooled context `u` is shared by all masked
# locations of an image, so which patch goes where is told only by the location embedding against
# the patch's vector, what a patch at that place usually looks like.
#
# The pre-trained patch network did not help measurably. With 5% of the labels it is 0.3 points
# behind (35.4% against 35.65% from scratch), with 10% 0.85 points ahead (41.6% against 40.8%) and
# with 100% 0.5 points ahead (47.8% against 47.3%), every gap inside the larger spread over seeds (1.3,
# 2.6 and 1.9 points), ahead in 5 of the 9 (share, seed) pairs. Neither of the paper's claims shows: the
# gain is not largest with the fewest labels, and the pre-trained runs do not vary less (spread 1.25
# against 1.3 points at 5%, larger at 10% and 100%). A one-thread pilot of the same notebook had the
# pre-trained start ahead by 1.4-1.5 points at every share: at this scale the effect is the size of
# the noise between runs on different thread counts. With 249 labelled images every run fits its
# training set (training accuracy 100%) and the test accuracy is decided by what the last stage
# learns from so few examples, which the pre-training does not touch; the paper's large gain with
# few labels is on ImageNet, with a ResNet-50 pre-trained on 1.3 million images.

# %% [markdown]
# ## What to try next
#
# - `PRE_EPOCHS = 50` with `TRAIN_SUBSET = None` (all 50,000 images, unlabelled, the 5% then 2,500
#   labelled images): the pretext top-1 was still rising after 10 epochs; is a better-trained patch
#   network a better start?
# - `MASK_RATIO = 0.5`: 8 masked patches, 7 distractors each, less context to pool.
# - `STAGES = 1`: pre-train only the stem and the first stage; the paper argues the transfer is
#   in the early layers, so how much of the effect do they carry?

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **Selfie's loss.** `queries` and `patches` are float tensors `[B, M, D]`: for each of `B` images,
# the queries `v_i` of its `M` masked locations and the patch network's vectors `h_j` of its `M`
# masked patches, in the same order. Return, as a float, the mean over the `B x M` queries of the
# cross-entropy of the scores `v_i . h_j`: query `i` chooses among its own image's `M` patches,
# and the right one is `j = i`.

# %%
def selfie_loss(queries, patches):
    raise NotImplementedError  # your code here


wb.exercises.check("selfie_loss", selfie_loss)
