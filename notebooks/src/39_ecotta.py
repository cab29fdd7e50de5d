# %% [markdown]
# # EcoTTA: adapt at test time, for a long time, in little memory
#
# Junha Song, Jungsoo Lee, In So Kweon & Sungha Choi, *EcoTTA: Memory-Efficient Continual Test-time
# Adaptation via Self-distilled Regularization*, CVPR 2023 ([arXiv 2303.01904](https://arxiv.org/abs/2303.01904)).
#
# **The question.** A deployed classifier meets images unlike its training data (noise, blur, fog,
# compression), one kind after another, without labels and without end. Test-time adaptation updates
# the model on the test batches themselves: TENT, for example, minimizes the entropy of the predictions
# by training BatchNorm's scale and shift. Two things go wrong in that setting. Kept up for a long time,
# the unsupervised updates drift, errors feed on themselves and the model ends worse than if it had not
# adapted at all. And the backward pass needs the activations of every layer it goes through, which an
# edge device may not have the memory for. Can a method adapt continually, keep its gain and stay cheap?
#
# **The idea.** Freeze the trained network and cut it into a few parts. Beside each part sit a small
# *meta network* (a BatchNorm and one conv-BN-ReLU block) whose output replaces the part's output; only
# the meta networks learn. A frozen convolution needs to keep only its weight for the gradient to pass
# through it to an earlier meta network, not its input activations, so the memory of a step shrinks.
# Before deployment the meta networks are warmed up on labelled source data. At test time they minimize
# the entropy of the confident predictions (EATA's filter) plus a *self-distilled regularization*: the
# L1 distance between each meta network's output and the frozen part's own output, which keeps the
# adapted features close to what the source model computed and so holds back the drift.
#
# **What is checked here.** A ResNet-20 trained on clean CIFAR-10 meets the paper's continual stream:
# the CIFAR-10-C corruptions at severity 5 in the order of the paper's tables, one pass each, never
# reset (14 of its 15: `frost` is not made by `wb.data`). Four methods see exactly the same batches:
# no adaptation, BatchNorm re-estimation on each test batch, TENT and EcoTTA (`wb.shift`). TENT's
# collapse is a matter of how many updates it has made, so the stream is built to give many updates
# for little computation, and repeated: small batches (32) of 192 images per corruption, the 14
# corruptions repeated for 6 rounds with the same images (504 updates, two thirds of one pass of the
# paper's stream in CoTTA's batches of 200), and TENT at its own CIFAR learning rate (Adam, 1e-3), not
# a raised one. Three streams (seeds: which test images, the corruptions' random draws and the batch
# order); one source model. Measured: accuracy per corruption and per round, and the memory one
# adaptation step keeps for its backward pass, on the same batch for every method
# (`wb.shift.peak_memory`). EcoTTA's warm-up on source data is counted with the costs.
#
# Paper mode asserts the claim: TENT's accuracy falls round after round, below BatchNorm
# re-estimation, while EcoTTA keeps its level, above no adaptation and above TENT at the end of the
# stream, in every seed and by more than the spread, with less than half of TENT's activation memory.
# At laptop scale EcoTTA falls too (half as fast as TENT), so laptop mode is **mechanism only**: it
# asserts what it measured -- TENT's collapse, EcoTTA no worse than no adaptation over the stream, and
# the memory.

# %%
import time

import pandas as pd
import plotly.express as px
import torch

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

from workbench.shift import stream as st

info = wb.setup()

# %% tags=["parameters"]
MODEL = "resnet20"
TRAIN_SUBSET = wb.by_mode(smoke=1_000, laptop=10_000, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=200, laptop=1_000, paper=None)  # clean test images for the source model's accuracy
EPOCHS = wb.by_mode(smoke=1, laptop=10, paper=60)  # source training (laptop recipe, batch 128, peak rate 0.1)
CORRUPTIONS = wb.by_mode(smoke=st.continual_order()[:3], laptop=st.continual_order(), paper=st.continual_order())
SEVERITY = 5
IMAGES_PER_DOMAIN = wb.by_mode(smoke=32, laptop=192, paper=None)  # None: all 10,000 test images per corruption
BATCH_SIZE = wb.by_mode(smoke=16, laptop=32, paper=200)  # test batch: one adaptation step each
ROUNDS = wb.by_mode(smoke=2, laptop=6, paper=10)  # the whole stream, repeated with the same images
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])  # streams: images, corruption draws, batch order
TENT_LR = 1e-3  # Adam, TENT's CIFAR setting
ECOTTA = dict(lr=1e-3, lam=0.5, entropy_margin=0.4)  # SGD with momentum 0.9; lambda; margin * ln(classes)
WARMUP_EPOCHS = wb.by_mode(smoke=1, laptop=1, paper=10)  # EcoTTA's meta networks on the source training images
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)  # smoke's one-epoch model is too weak to compare
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # laptop: EcoTTA falls too (mechanism only)

# %% [markdown]
# ## The source model
#
# A ResNet-20 trained on `TRAIN_SUBSET` clean CIFAR-10 images with the laptop recipe (one-cycle SGD with
# Nesterov momentum, label smoothing, crop-and-flip) for `EPOCHS` epochs, in batches of 128 at a peak
# rate of 0.1. `wb.train_model` caches it. Every method below wraps a copy of this one model.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
recipe = wb.train.recipe("laptop", epochs=EPOCHS, batch_size=128, lr=0.1)
warmup_recipe = wb.train.recipe("laptop", epochs=WARMUP_EPOCHS, batch_size=128, lr=0.1)


def source():
    return wb.train_model(MODEL, train, test, seed=0, progress=False, **recipe)


src = source()
source_steps = int(src.history.step.iloc[-1])
print(f"{MODEL}: {src.test_acc:.1%} on {len(test):,} clean test images after {EPOCHS} epochs on {len(train):,} "
      f"images ({source_steps:,} steps)")

# %% [markdown]
# ## The stream
#
# One test image under each corruption, in the order the stream meets them (severity 5,
# `st.corruption_domains`: the same images under every corruption, one seed per stream).

# %%
preview = st.corruption_domains(CORRUPTIONS, SEVERITY, subset=4, seed=SEEDS[0])
images = torch.stack([d.images[0] for d in preview.values()]).permute(0, 2, 3, 1).numpy()  # [domains, h, w, 3]
fig = px.imshow(images, facet_col=0, facet_col_wrap=7, facet_col_spacing=0.01,
                title=f"The stream, severity {SEVERITY}: {len(CORRUPTIONS)} corruptions, one after another")
fig.for_each_annotation(lambda a: a.update(text=CORRUPTIONS[int(a.text.split("=")[1])].replace("_", " ")))
fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False)

# %% [markdown]
# ## Four methods on the same stream
#
# Each method wraps a copy of the source model and is called on the test batches in order; the
# prediction of a batch comes from the forward pass that also computes its update (`wb.shift`):
#
# - **no adaptation**: the source model in eval mode;
# - **BN re-estimation**: every BatchNorm normalizes with the test batch's own statistics;
# - **TENT**: batch statistics, and one Adam step per batch on the mean prediction entropy, training
#   BatchNorm's scale and shift only;
# - **EcoTTA**: the frozen model with one meta network beside each of its three stages, warmed up for
#   `WARMUP_EPOCHS` epoch(s) on the `TRAIN_SUBSET` labelled source images (the original frozen), then one
#   SGD step per test batch on the entropy of the confident samples plus `lam` times the self-distilled
#   L1 regularization.
#
# `st.run_rounds` runs the whole stream `ROUNDS` times without a reset. No adaptation and BN
# re-estimation keep nothing from one batch to the next, so they run one round and repeat it (exactly
# what they would do again). One `wb.sweep` record per method and seed; EcoTTA warms up once and starts
# every seed from the warmed-up state (`reset()`).

# %%
METHODS = {"none": "no adaptation", "bn": "BN re-estimation", "tent": "TENT", "ecotta": "EcoTTA"}


def adapter(method, model):
    return {"none": lambda: wb.shift.NoAdapt(model), "bn": lambda: wb.shift.BNAdapt(model),
            "tent": lambda: wb.shift.Tent(model, lr=TENT_LR),
            "ecotta": lambda: wb.shift.EcoTTA(model, **ECOTTA)}[method]()


def stream_run(method, seed):  # seed: the list of seeds still to run (packed, so EcoTTA warms up once)
    model = source().model.eval().to(wb.device())
    a, warm = adapter(method, model), {"warmup_steps": 0, "warmup_seconds": 0.0, "warmup_clean_acc": None}
    if method == "ecotta":
        start = time.perf_counter()
        res = a.warmup(train, **warmup_recipe)
        warm = {"warmup_steps": int(res.history.step.iloc[-1]), "warmup_seconds": time.perf_counter() - start,
                "warmup_clean_acc": wb.evaluate(a.net, test)["acc"]}
    records = []
    for s in seed:
        a.reset()  # the state at creation (EcoTTA: warmed up)
        domains = st.corruption_domains(CORRUPTIONS, SEVERITY, subset=IMAGES_PER_DOMAIN, seed=s, device=wb.device())
        start = time.perf_counter()
        rows = st.run_rounds(a, domains, ROUNDS, batch_size=BATCH_SIZE, seed=s)
        records.append({"round": rows["round"].tolist(), "domain": rows.domain.tolist(), "acc": rows.acc.tolist(),
                        "steps": int(rows.steps.iloc[-1]), "seconds": time.perf_counter() - start, **warm})
    return records


constants = dict(model=MODEL, train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET, corruptions=CORRUPTIONS,
                 severity=SEVERITY, images=IMAGES_PER_DOMAIN, batch=BATCH_SIZE, rounds=ROUNDS, tent_lr=TENT_LR,
                 warmup_epochs=WARMUP_EPOCHS, ecotta=ECOTTA, **recipe)
runs = wb.sweep(stream_run, {"method": list(METHODS), "seed": SEEDS}, pack="seed", backend=BACKEND,
                folder=wb.sweep_folder("ecotta_stream", constants))
rows = runs.explode(["round", "domain", "acc"]).astype({"round": int, "acc": float})
rows["method"] = rows.method.map(METHODS)
rows["position"] = rows.groupby(["method", "seed"]).cumcount()
per_round = rows.groupby(["method", "seed", "round"]).acc.mean().unstack("method")[list(METHODS.values())]
per_round.groupby("round").agg(["mean", "std"]).round(4)

# %% [markdown]
# ## Accuracy along the stream
#
# Accuracy on each corruption as the stream meets it (mean over the seeds; dotted lines: a new round
# begins with `gaussian_noise` again). The claim to look for: TENT starts above BN re-estimation and
# sinks, round after round; EcoTTA holds its level.

# %%
along = rows.groupby(["method", "position"], sort=False).agg(acc=("acc", "mean"), round=("round", "first"),
                                                             domain=("domain", "first")).reset_index()
fig = px.line(along, x="position", y="acc", color="method", hover_data=["round", "domain"],
              labels={"acc": "accuracy", "position": "position in the stream (corruption, round after round)"},
              title=f"{MODEL} on the continual CIFAR-10-C stream, {ROUNDS} rounds ({len(SEEDS)} seeds)")
for r in range(2, ROUNDS + 1):
    fig.add_vline(x=(r - 1) * len(CORRUPTIONS) - 0.5, line_dash="dot", line_color="grey")
fig

# %%
by_round = per_round.stack().rename("acc").reset_index().groupby(["method", "round"]).acc.agg(["mean", "std"])
px.line(by_round.reset_index(), x="round", y="mean", error_y="std", color="method", markers=True,
        labels={"mean": "mean accuracy over the round's corruptions"},
        title="Each round's mean accuracy (bars: one standard deviation over the seeds)")

# %% [markdown]
# ### Explore the corruptions
#
# Pick a corruption: each method's accuracy on it, round after round (mean over the seeds; bars: one
# standard deviation). Some corruptions are where TENT breaks first.

# %%
def render_corruption(corruption=CORRUPTIONS[0]):
    shown = rows[rows.domain == corruption].groupby(["method", "round"], sort=False).acc.agg(["mean", "std"])
    return px.line(shown.reset_index(), x="round", y="mean", error_y="std", color="method", markers=True,
                   range_y=[0, 1], category_orders={"method": list(METHODS.values())},
                   labels={"mean": "accuracy"},
                   title=f"{corruption.replace('_', ' ')}, severity {SEVERITY}, round by round")


wb.viz.explorer(render_corruption, corruption=CORRUPTIONS)

# %% [markdown]
# ## Memory and cost
#
# The memory one adaptation step keeps for its backward pass, on the same batch for every method (the
# first `BATCH_SIZE` images of the stream): `wb.shift.peak_memory` counts the bytes of the tensors
# autograd saves, once per storage, the parameters excluded (on a GPU it also reports the allocator's
# peak). No adaptation and BN re-estimation have no backward pass. The last row is EcoTTA with its frozen
# layers keeping their inputs, as PyTorch does by default: the saving comes from the frozen layers, not
# from the meta networks being small.

# %%
model = source().model.eval().to(wb.device())
first = st.corruption_domains(CORRUPTIONS[:1], SEVERITY, subset=IMAGES_PER_DOMAIN, seed=SEEDS[0])[CORRUPTIONS[0]]
x = first.normalize(first.images[:BATCH_SIZE]).to(wb.device())
variants = {**{label: adapter(m, model) for m, label in METHODS.items()},
            "EcoTTA, frozen layers keeping their inputs": wb.shift.EcoTTA(model, low_memory=False, **ECOTTA)}
memory = pd.DataFrame([{"method": k, **wb.shift.peak_memory(a, x),  # the optimizer holds what trains
                        "trained parameters": sum(p.numel() for g in a.optimizer.param_groups for p in g["params"])
                        if a.optimizer else 0} for k, a in variants.items()]).set_index("method")
memory["saved MiB"] = memory.saved_bytes / 2**20
memory["of TENT's"] = memory.saved_bytes / memory.loc["TENT", "saved_bytes"]
px.bar(memory.reset_index(), x="method", y="saved MiB", text_auto=".1f",
       title=f"Activation memory of one adaptation step (batch of {len(x)}, {MODEL})")

# %%
costs = runs.assign(method=runs.method.map(METHODS)).groupby("method", sort=False).agg(
    adaptation_steps=("steps", "first"), seconds_per_stream=("seconds", "mean"), warmup_steps=("warmup_steps", "first"),
    warmup_seconds=("warmup_seconds", "first"), warmup_clean_acc=("warmup_clean_acc", "first"))
print(f"source training: {source_steps:,} steps; EcoTTA's warm-up adds {int(costs.loc['EcoTTA', 'warmup_steps']):,} "
      f"steps on {len(train):,} source images ({WARMUP_EPOCHS} epoch(s)); clean accuracy after it "
      f"{costs.loc['EcoTTA', 'warmup_clean_acc']:.1%} (source model {src.test_acc:.1%})")
memory.drop(columns="cuda_peak_bytes" if memory.cuda_peak_bytes.isna().all() else []).join(costs).round(3)

# %% [markdown]
# ## The claim, as a check that can fail
#
# At the stated budget (one source model; the same streams, batches and seeds for every method), with the
# spread the largest standard deviation over seeds of any method's round accuracy:
# 1. **long TENT runs collapse**: in every seed TENT's last round is below its first round and below BN
#    re-estimation, and on average its fall exceeds the spread;
# 2. **EcoTTA keeps the gain of adaptation**: in every seed its last round is above no adaptation and above
#    TENT's last round, on average by more than the spread, and it ends no lower than it started (within
#    the spread);
# 3. **with far less memory**: EcoTTA keeps less than half of the activation memory TENT keeps for one
#    step on the same batch.
#
# Every mode checks 3 (the memory does not depend on the training). Laptop mode checks 1 and, instead
# of 2, the mechanism it measured: EcoTTA over the whole stream is no worse than no adaptation in every
# seed. Paper mode checks all three.

# %%
first_round, last_round = per_round.xs(1, level="round"), per_round.xs(ROUNDS, level="round")
spread = float(per_round.groupby("round").std().max().max()) if len(SEEDS) > 1 else 0.0
whole = rows.groupby(["method", "seed"]).acc.mean().unstack("method")
tent_fall = first_round["TENT"] - last_round["TENT"]
eco_gain = last_round["EcoTTA"] - last_round["no adaptation"]
eco_vs_tent = last_round["EcoTTA"] - last_round["TENT"]
eco_drift = last_round["EcoTTA"] - first_round["EcoTTA"]
ratio = memory.loc["EcoTTA", "saved_bytes"] / memory.loc["TENT", "saved_bytes"]
print(f"TENT, first round - last round, per seed: {tent_fall.round(4).to_dict()}")
print(f"EcoTTA's last round - no adaptation: {eco_gain.round(4).to_dict()}; - TENT's last round: "
      f"{eco_vs_tent.round(4).to_dict()}; - its own first round: {eco_drift.round(4).to_dict()}")
print(f"spread over seeds: {spread:.4f}; EcoTTA keeps {ratio:.2f} of TENT's activation memory")
assert ratio < 0.5, f"EcoTTA should keep less than half of TENT's activation memory, keeps {ratio:.2f}"
if CHECK_MECHANISM:
    assert (whole["EcoTTA"] >= whole["no adaptation"]).all(), f"EcoTTA should be no worse than no adaptation: {whole}"
    assert (tent_fall > 0).all() and tent_fall.mean() > spread, \
        f"TENT should fall round after round: {tent_fall.to_dict()}"
    assert (last_round["TENT"] < last_round["BN re-estimation"]).all(), \
        f"TENT's last round should be below BN re-estimation: {last_round.round(4).to_dict()}"
if CHECK_CLAIM:
    assert (eco_gain > 0).all() and eco_gain.mean() > spread, f"EcoTTA should keep its gain: {eco_gain.to_dict()}"
    assert (eco_vs_tent > 0).all() and eco_vs_tent.mean() > spread, \
        f"EcoTTA should end above TENT: {eco_vs_tent.to_dict()}"
    assert eco_drift.mean() > -spread, f"EcoTTA should not fall round after round: {eco_drift.to_dict()}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-07, 7.7 minutes on 2 cores from an empty cache) the
# ResNet-20 reached 68.1% on clean test images and 49.7% on the corrupted stream without adaptation.
# Re-estimating BatchNorm's statistics on each batch of 32 lifts that to 56.0%, every round alike. TENT
# starts above it (57.2% in round 1, 57.5% in round 2) and then falls, round after round, in every seed:
# 54.8%, 51.4%, 48.1% and 45.8% in round 6, below BN re-estimation from round 3 on and by the end below
# no adaptation too (45.8% against 49.7%; a fall of 8.3 to 16.3 points per seed, spread over seeds 4.3).
# The long run collapses as the paper says it does.
#
# EcoTTA (one meta network per stage, 25,792 trained parameters against TENT's 1,568; warmed up for 79
# steps on the 10,000 source images, which cost it 1.9 points of clean accuracy: 66.2%) starts highest
# (58.2%) and falls more slowly: 57.8%, 57.1%, 55.4%, 54.3% and 53.3% in round 6, 7.5 points above TENT's
# last round (4.5 to 12.1 per seed) and 3.6 above no adaptation, but 2.7 below BN re-estimation and still
# falling (5 points from round 1 to round 6 in every seed). Over the whole stream it scores 56.0%, level
# with BN re-estimation (56.0%) and above TENT (52.5%) and no adaptation (49.7%). So at this scale the
# self-distilled regularization slows the drift but does not stop it, and the claim's "without the
# collapse" is not shown: hence mechanism only. Several things differ from the paper and each may
# matter: a weak source model (68% clean, against about 95%), one epoch of warm-up, batches of 32 whose
# statistics the meta networks' BatchNorms also rely on, and `lam = 0.5` and the learning rate taken from
# the tool's defaults, not tuned for this model (we did not tune them on the stream).
#
# The memory claim holds as the paper argues it: on the same batch of 32, one TENT step keeps 47.5 MiB of
# activations for its backward pass, EcoTTA 19.0 MiB (0.40 of TENT's). The meta networks are not why:
# EcoTTA with PyTorch's default saving (frozen layers keeping their inputs) keeps 33.5 MiB (0.71); the rest
# of the saving is the frozen convolutions keeping only their weights, BatchNorms their scale and ReLUs a
# one-byte mask. Per corruption (round 1), BN re-estimation loses to no adaptation on the mildest ones
# (brightness, pixelate, JPEG; glass blur and snow too), where the source statistics were already right
# and a batch of 32 estimates them worse; EcoTTA loses clearly only on JPEG (65.8% against 69.8%), and it
# gains most on contrast, fog and the blurs. (A first run on another machine, at one thread, gave the same
# picture within 2 points: TENT 56.2% -> 46.1%, EcoTTA 56.1% -> 50.6%.)

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | source model | WideResNet-28 (and WideResNet-40 with AugMix, ResNet-50) trained on all of CIFAR-10 | ResNet-20 trained on 10,000 CIFAR-10 images for 10 epochs |
# | stream | CIFAR-10-C, 15 corruptions at severity 5, 10,000 images each, one pass, never reset | 14 of the 15 (no frost), 192 images each, batches of 32, the stream repeated 6 times |
# | error over one pass (here: round 1), no adaptation / BN re-estimation / TENT / EcoTTA | 43.5% / 20.4% / 20.7% / see its table (WideResNet-28; the baselines as CoTTA, arXiv 2203.13591, reports them in its table 1; EcoTTA's CIFAR-10-C table gives every method's error per corruption and its memory) | 50.3% / 44.0% / 42.8% / 41.8% |
# | error in the last round, TENT / EcoTTA | (the paper's main tables run one pass) | round 6: 54.2% / 46.7% |
# | memory | EcoTTA with WideResNet-40 and ResNet-50 takes 80% and 86% less memory than CoTTA (abstract); every method's memory in MB in its CIFAR and ImageNet tables | one step on the same batch of 32: EcoTTA 19.0 MiB of saved activations, TENT 47.5 MiB (0.40) |
#
# The paper's source models are trained to about 95% clean accuracy and see 150,000 corrupted images (in
# CoTTA's protocol, batches of 200: 750 updates); here a ResNet-20 at 68% sees 2,688 images per
# round in batches of 32, six times (504 updates). Paper mode trains the source model on all of
# CIFAR-10 and runs all 10,000 test images per corruption in batches of 200: its first round is the
# paper's stream (without frost), and it goes on for 10 rounds.

# %% [markdown]
# ## What to try next
#
# - `ECOTTA = dict(lr=1e-3, lam=0.0, entropy_margin=0.4)` and then `lam=2.0`: EcoTTA without its
#   self-distilled regularization, and with four times more of it. How much of the slower fall is the
#   regularization, and does a stronger one stop it (at what cost in the early rounds)?
# - `TENT_LR = 1e-4`: a ten times smaller rate. Does TENT still fall, only later, or does it lose its
#   early gain over BN re-estimation?
# - `BATCH_SIZE = 128` with `IMAGES_PER_DOMAIN = 768`: the same number of updates on four times the
#   images. Larger batches give better batch statistics; does TENT fall more slowly?

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **The confident-sample entropy.** `logits` is a float tensor `[batch, classes]`, `margin` a number.
# Return EcoTTA's (and EATA's) entropy loss: the prediction entropy `H = -sum_c p_c ln p_c` of each row
# (`p` the softmax of the row), averaged over only the rows with `H < margin * ln(classes)`; `0.0` when no
# row qualifies.

# %%
def confident_entropy(logits, margin):
    raise NotImplementedError  # your code here


wb.exercises.check("confident_entropy", confident_entropy)
