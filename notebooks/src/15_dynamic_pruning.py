# %% [markdown]
# # Fire together, wire together: dynamic pruning with self-supervised gates
#
# Elkerdawy, Elhoushi, Zhang & Ray, *Fire Together Wire Together: A Dynamic Pruning Approach with
# Self-Supervised Mask Prediction*, CVPR 2022 ([arXiv 2110.08232](https://arxiv.org/abs/2110.08232)).
#
# **The question.** Static pruning removes the same channels for every image. But a picture of a
# truck and a picture of a frog hardly need the same feature detectors: could each input compute
# only the channels it needs, and so spend fewer multiply-adds *on average* than any fixed network
# of the same accuracy? Earlier dynamic methods learn their on/off gates with a sparsity penalty
# that must be balanced against the task loss, and the cost they end at is hard to predict.
#
# **The idea.** Put a tiny gate in front of each layer: from the layer's input it predicts which of
# the layer's output channels to compute. Train it as a *self-supervised* classifier. For each
# image, look at the layer's channels, rank them by their peak activation, and call "on" the fewest
# of them whose activations make up a share `r` of the layer's total (the "heatmap mass"); the gate
# learns to predict these on/off targets with a binary cross-entropy, on a detached input, so the
# gate loss never disturbs the network and the network's task loss never has to trade against it.
# `r` alone sets how much is computed, and it can be read off before training. At inference only
# the predicted channels are computed, so the cost differs from image to image.
#
# **What is checked here.** A CIFAR-10 ResNet-20 is trained dense; its gated twin
# (`wb.prune.GatedResNet`: a gate on the inner convolution `conv1` of every residual block, whose
# channels feed only the block's own `conv2`, so skipping them never breaks a residual addition)
# fine-tunes with the paper's mask loss (`wb.prune.MaskPrediction`, an algorithm of `wb.fit`). The
# baseline is static filter pruning of the same dense network (`wb.prune.channel_masks`, the
# smallest L1 filter norms) at the sparsity whose multiply-adds match the dynamic network's average
# on the test images, fine-tuned on the same images for the same steps with the same seeds; three
# seeds. Shown: what the targets alone would buy, accuracy against multiply-adds for both arms, and
# which channels fire for which class.
#
# The paper's claim, dynamic above static at equal average cost, is asserted only in paper mode: at
# the laptop scale below it does **not** hold (see "Reading the results"), so this notebook is
# *mechanism only*. Laptop mode asserts the mechanism: the gates predict their per-image targets
# better than any input-independent choice of channels, and the channels they fire differ between
# classes far beyond what label noise gives.

# %%
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

info = wb.setup()
P = wb.prune

# %% tags=["parameters"]
MODEL = wb.by_mode(smoke="resnet8", laptop="resnet20", paper="resnet56")  # the paper's CIFAR ResNet is ResNet-56
TRAIN_SUBSET = wb.by_mode(smoke=500, laptop=10_000, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=300, laptop=2_000, paper=None)
EPOCHS = wb.by_mode(smoke=1, laptop=4, paper=160)  # the dense network
FT_EPOCHS = wb.by_mode(smoke=1, laptop=1, paper=50)  # fine-tuning, the same for both arms
BATCH, LR, FT_LR = 128, 0.1, 0.05
THRESHOLD = 0.7  # r: the share of each layer's activation mass the fired channels must cover
SWEEP = wb.by_mode(smoke=[0.7], laptop=[1.0, 0.9, 0.7, 0.5], paper=[1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
GATE_WEIGHT = 10.0  # the mask loss's weight = the gates' learning-rate multiplier (the paper: 10x the backbone's)
GATE_STEPS = 0.5  # the share of fine-tuning steps that train the gates (the authors' code: the first half)
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])
SHUFFLES = 20  # label permutations for the class-selectivity check
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)

# %% [markdown]
# ## The dense network, on real data
#
# ResNet-20 trained with the laptop recipe (one-cycle SGD, label smoothing, crop and flip) on
# `TRAIN_SUBSET` CIFAR-10 images for `EPOCHS` epochs, in batches of 128. Cached: a second run loads
# it.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
recipe = wb.train.recipe("laptop", epochs=EPOCHS, batch_size=BATCH, lr=LR)
dense = wb.train_model(MODEL, train, test, seed=0, **recipe).model.eval()
dense_acc = wb.evaluate(dense, test)["acc"]
costs = P.channel_costs(dense)
print(f"dense {MODEL}: {dense_acc:.2%} on {len(test):,} test images, {costs.attrs['dense'] / 1e6:.1f} M multiply-adds "
      f"per image, {(costs.channels * costs.per_channel).sum() / costs.attrs['dense']:.0%} of them in the gated "
      f"channels (each block's conv1 filters and conv2 inputs)")

# %% [markdown]
# ## The targets: which channels "fire" for one image
#
# For one test image and one block: each `conv1` channel's peak activation, as a share of the
# block's total, ranked. The target keeps channels from the top until their shares add up to `r`
# (`wb.prune.mass_targets`); the rest are the channels the gate should learn to skip for this image.

# %%
BLOCK = list(costs.block)[-1]
_, acts = wb.run_with_cache(dense, test.normalize(test.images[:1]), names=[f"{BLOCK}.hook_relu1"])
act = acts[f"{BLOCK}.hook_relu1"]  # [1, channels, h, w]
heat = act.abs().amax(dim=(2, 3))[0]
share = (heat / heat.sum()).sort(descending=True)
keep = P.mass_targets(act, THRESHOLD)[0][share.indices]
ranked = pd.DataFrame({"rank": range(len(heat)), "channel": share.indices.tolist(), "share": share.values.tolist(),
                       "cumulative": share.values.cumsum(0).tolist(), "target": ["fire" if k else "skip" for k in keep]})
fig = px.bar(ranked, x="rank", y="share", color="target", hover_data=["channel", "cumulative"],
             title=f"{BLOCK}, one '{test.classes[int(test.labels[0])]}': {int(keep.sum())} of {len(heat)} channels "
                   f"carry {THRESHOLD:.0%} of the activation mass")
fig.add_scatter(x=ranked["rank"], y=ranked.cumulative, name="cumulative share", mode="lines")
fig.add_hline(THRESHOLD, line_dash="dot", annotation_text=f"r = {THRESHOLD}")

# %% [markdown]
# ## What the targets alone would buy
#
# Before any gate is trained: the dense network computing only its target channels, image by image
# (an oracle, since finding them needs the very activations it saves), for several `r`; beside it,
# static L1 filter pruning of the same network at the same multiply-adds, neither fine-tuned
# (`wb.prune.target_sweep`). `r = 1` skips only channels that are zero everywhere for the image.

# %%
sweep = wb.cached(lambda: P.target_sweep(dense, test, SWEEP),
                  key={"dense": wb.train.model_fingerprint(dense), "test": wb.train.data_fingerprint(test), "r": SWEEP},
                  name="ftwt_target_sweep", version=1)
sweep.round(4)

# %% [markdown]
# ## Equal budgets: dynamic against static, three seeds
#
# Per seed, both arms start from the dense weights and fine-tune for `FT_EPOCHS` epoch(s) on the same
# images with the same recipe (learning rate `FT_LR`) and seed (`wb.prune.compare_equal_cost`):
#
# * **dynamic**: the gated twin, gates trained with the mask loss at `r = THRESHOLD` for the first
#   half of the steps while the network trains under their decisions;
# * **static**: L1 filter pruning at the sparsity whose cost is the dynamic network's mean cost on
#   the test images, rounded up to the next reachable network (so static is never the cheaper one),
#   fine-tuned with the pruned filters held at zero.
#
# Multiply-adds count every convolution and the classifier; the gates' own (a linear layer per
# block, about 0.03% of the network) are charged to the dynamic arm. Here the skipped channels are
# computed and zeroed: the savings are counted, not timed.

# %%
ft = wb.train.recipe("laptop", epochs=FT_EPOCHS, batch_size=BATCH, lr=FT_LR)
pairs = {seed: P.compare_equal_cost(dense, train, test, threshold=THRESHOLD, seed=seed, weight=GATE_WEIGHT,
                                    gate_steps=GATE_STEPS, **ft) for seed in SEEDS}
results = pd.DataFrame([p.record() for p in pairs.values()])
results.round(4)

# %% [markdown]
# ## What to look at
#
# Accuracy against mean multiply-adds (relative to dense). Lines: the oracle targets and static
# pruning without fine-tuning, from the sweep. Points: the fine-tuned networks, one per seed.

# %%
fig = go.Figure()
fig.add_scatter(x=sweep.target_macs, y=sweep.target_acc, mode="lines+markers", name="targets (oracle), no training",
                text=[f"r = {r}" for r in sweep.threshold])
fig.add_scatter(x=sweep.static_macs, y=sweep.static_acc, mode="lines+markers", name="static L1, no fine-tuning",
                line_dash="dash")
fig.add_scatter(x=results.dynamic_macs, y=results.dynamic_acc, mode="markers", marker_size=11,
                name=f"dynamic (gates), fine-tuned, r = {THRESHOLD}", text=[f"seed {s}" for s in results.seed])
fig.add_scatter(x=results.static_macs, y=results.static_acc, mode="markers", marker_size=11, marker_symbol="square",
                name="static L1, fine-tuned at equal cost", text=[f"seed {s}" for s in results.seed])
fig.add_scatter(x=[1.0], y=[dense_acc], mode="markers", marker_symbol="star", marker_size=14, name="dense")
fig.update_layout(title=f"{MODEL} on CIFAR-10: accuracy against average multiply-adds",
                  xaxis_title="multiply-adds per image (share of dense, mean over the test images)",
                  yaxis_title="test accuracy")

# %% [markdown]
# ### The cost of each image
#
# A dynamic network's cost is a distribution, not a number: the multiply-adds of each test image
# under the first seed's gates, by class. The static network's cost is the dotted line.

# %%
first = pairs[SEEDS[0]]
per_image = first.report.per_input()
per_image["share of dense"] = per_image.macs / first.report.dense_macs
fig = px.box(per_image, x="class", y="share of dense", points=False, color="correct",
             title="Multiply-adds per test image under the gates (first seed), by class and by whether it was right")
fig.add_hline(results.static_macs.iloc[0], line_dash="dot", annotation_text="static network")

# %% [markdown]
# ### Which channels fire for which class
#
# For each block, the share of each class's test images for which each channel fires (first
# seed). A channel lit for one class and dark for another is what static pruning cannot express.
# Choose the block.

# %%
def render_block(block):
    rates = first.report.per_class(block)
    order = rates.mean(axis=0).sort_values(ascending=False).index  # most used channels first
    return px.imshow(rates[order], aspect="auto", zmin=0, zmax=1, color_continuous_scale="Viridis",
                     labels={"x": "channel (most used first)", "y": "class", "color": "fires for"},
                     title=f"{block}: share of each class's images for which each conv1 channel fires")


wb.viz.explorer(render_block, block=list(reversed(costs.block)))

# %% [markdown]
# How different the classes are, per block: the mean over channels of (highest minus lowest firing
# rate over the classes), against the same with the labels shuffled (what sampling noise alone
# gives), and how well the gates predict their targets against the best rule that ignores the
# image (each channel always on or always off).

# %%
summary = first.report.summary()
summary[["block", "channels", "fired", "lowest_class", "highest_class", "selectivity", "shuffled", "gate_acc",
         "constant_acc"]].round(3)

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | CIFAR (abstract; Table 1 for ResNet-56, VGG-16, MobileNet) | accuracy similar to the best earlier methods at 15% and 24% larger FLOPs reductions | see the table above: dynamic against static at equal cost, per seed |
# | ImageNet (abstract; Figure 1, ResNet-34) | a smaller accuracy drop than dynamic and static rivals, up to 13% more FLOPs reduction | not run |
# | gates (the authors' code) | on every conv layer: pooled input, a softmax and a 1x1 conv; trained in the first half of 200 epochs from a pretrained network | on each block's conv1: pooled, standardized input and a linear layer; trained in the first half of one epoch |
#
# Scale differs in every direction: the authors' script fine-tunes ResNet-56 with its gates on all
# 50,000 CIFAR images for 200 epochs (about 78,000 steps, the gates learning in the first 39,000);
# here ResNet-20 sees 10,000 images for 79 steps, and its gates learn in 39.

# %% [markdown]
# ## The claim, as checks that can fail
#
# Every mode: the equal-cost bookkeeping, each static network costs at least its dynamic partner's
# mean (unless that is above dense) and at most 3% of the dense cost more. Laptop and paper mode,
# the mechanism, in every seed:
# 1. the gates learned their per-image targets: their agreement with the targets, averaged over
#    blocks, is above that of the best input-independent choice of channels;
# 2. the channels fired differ between classes: in the last block, the selectivity is above its
#    value under every one of `SHUFFLES` label permutations.
#
# Paper mode, the claim: dynamic above static in every seed, by more than the spread over seeds.

# %%
gap = results.dynamic_acc - results.static_acc
spread = max(results.dynamic_acc.std(), results.static_acc.std()) if len(SEEDS) > 1 else 0.0
last = list(costs.block)[-1]
shuffled = {s: max(p.report.selectivity(last, shuffle_seed=k) for k in range(SHUFFLES)) for s, p in pairs.items()}
print(f"dense {dense_acc:.2%}; dynamic - static, per seed: {gap.round(4).tolist()} (spread {spread:.4f})")
print(f"gate agreement {results.gate_acc.round(3).tolist()} vs constant rule {results.constant_acc.round(3).tolist()}")
print(f"{last} selectivity {[round(p.report.selectivity(last), 3) for p in pairs.values()]} vs most under shuffled "
      f"labels {[round(v, 3) for v in shuffled.values()]}")
for r in results.itertuples():
    assert r.static_macs >= min(r.dynamic_macs, 1.0) - 1e-12, f"seed {r.seed}: the static network is the cheaper one"
    assert r.static_macs - r.dynamic_macs < 0.03, f"seed {r.seed}: the static network costs too much more"
if CHECK_MECHANISM:
    assert (results.gate_acc > results.constant_acc).all(), "the gates should beat every input-independent rule"
    assert all(p.report.selectivity(last) > shuffled[s] for s, p in pairs.items()), \
        "the channels fired should differ between classes more than under shuffled labels"
if CHECK_CLAIM:
    assert (gap > 0).all() and gap.mean() > spread, f"dynamic should beat static at equal cost: {gap.tolist()}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-06, 2 cores, 4.0 minutes from an empty cache: the
# dense ResNet-20 at 56.95% on 2,000 test images) the targets alone looked promising: computing only
# each image's target channels kept 85% of the multiply-adds at 52.75% accuracy (`r = 0.9`) and 59%
# at 33.05% (`r = 0.7`), where static L1 pruning of the same network at the same cost, neither
# fine-tuned, fell to 46.4% and 14.25%. (`r = 1` saves nothing here: a channel is almost never zero
# over a whole feature map.) But after equal fine-tuning the order reverses. At `r = 0.7` the
# gated networks reached 47.1%, 48.1% and 47.7% at 61.6%, 61.1% and 61.3% of the dense cost; the
# static networks, pruned by 39-40% of every block's filters, 56.2%, 56.25% and 56.6% at 61.7%,
# 61.2% and 61.7%: dynamic minus static is -9.1, -8.15 and -8.9 points against a spread of 0.5, so
# the paper's claim is not shown here, and the opposite is. The mechanism works as described: the
# gates agree with their per-image targets on 78.7%, 78.6% and 79.0% of the decisions against
# 69.7%, 70.1% and 69.9% for the best input-independent rule (only the first two blocks, whose
# gates see little more than the pixels, do worse than it), and in the last block the firing rates
# differ between classes by 0.70-0.75 per channel on average against at most 0.13 with shuffled
# labels (the heat map above shows, channel by channel, how often each class fires it; in a
# one-thread run some channels fired for most vehicle images and few animal ones). What fails is the rest of the recipe at this scale: one decision in
# five disagrees with its target, so each image loses a somewhat random fifth of the channels it
# "needs", and 39 steps of gate training and 79 of fine-tuning are not enough for the network to
# absorb that, while the static network just keeps training a fixed, slightly smaller architecture
# (56.2-56.6%, next to the dense 56.95%). A side run with three fine-tuning epochs (seed 0, on one
# thread) kept the gap (53.5% against 61.3%). The authors' script trains the gates for the first
# half of 200 epochs on all 50,000 images, about 39,000 steps: that is the scale at which paper mode
# asserts the claim.

# %% [markdown]
# ## What to try next
#
# - `FT_EPOCHS = 3`: the gates train for longer, and the network has longer to settle on their
#   decisions; does the gap to static close?
# - `THRESHOLD = 0.9`: a milder cut (about 15% fewer multiply-adds here); is dynamic any closer to
#   static when the gates have less to get right?
# - `GATE_WEIGHT = 30`: the gates learn faster; does their agreement with the targets rise above
#   80%, and does the accuracy follow?
# - `GATE_STEPS = 1.0`: keep training the gates to the end, so the network never gets a stretch of
#   fixed gates to adapt to.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **The self-supervised targets.** `heat` is a float tensor `[batch, channels]` of non-negative
# activation peaks, `r` a share in (0, 1]. For each row, rank the channels by their share of the
# row's total (equal shares: lower channel index first) and mark as 1 the fewest top channels whose
# shares add up to at least `r`; every other channel, and any channel of zero heat, is 0. Return a
# float tensor of 0s and 1s of the shape of `heat`. (Compare sums with a tolerance of 1e-9.)

# %%
def mass_targets(heat, r):
    raise NotImplementedError  # your code here


wb.exercises.check("mass_targets", mass_targets)
