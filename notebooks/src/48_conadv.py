# %% [markdown]
# # ConAdv: adversarial examples from last step's weights, for large batches
#
# Yong Liu, Xiangning Chen, Minhao Cheng, Cho-Jui Hsieh & Yang You, *Concurrent Adversarial Learning
# for Large-Batch Training*, ICLR 2022 ([arXiv 2106.00221](https://arxiv.org/abs/2106.00221)).
#
# **The question.** Training with a very large batch (tens of thousands of images per step, spread
# over hundreds of accelerators) finishes an epoch in few steps, but at a fixed number of epochs it
# tends to end at a worse test accuracy than a small batch, and the usual remedies (the learning rate
# scaled with the batch, warm-up, layer-wise optimizers such as LARS, heavy data augmentation) run out
# at some batch size. Adversarial training is a natural further remedy (it smooths the loss around
# every training image), but it costs two gradient computations *in sequence* per step: one to make
# the adversarial image with the current weights, one to train on it. More accelerators cannot hide
# that: every step takes at least twice as long. Can the two be taken apart?
#
# **The idea.** Make step `t`'s adversarial examples with the weights of step `t - tau` (`tau = 1`
# in the paper): those weights are known one step earlier, so the attack on the next batch can run on
# the workers *while* the current step is being taken, and only one gradient computation stays on the
# critical path of a step. The price is that the examples come from slightly stale weights: are they
# still strong? The paper's answer is that consecutive weights differ little, so the stale attack is
# nearly as strong as the fresh one, and that with it ResNet-50 on ImageNet trains well at batches of
# 32k to 96k images (its Algorithm 1 also keeps separate batch-norm statistics for the adversarial
# images, which this notebook does not).
#
# **What is checked here.** ResNet-8s on 2,048 CIFAR-10 images, at a small batch (64) and a large one
# (512, a quarter of the training set: 4 steps per epoch), for the same number of epochs, each with the
# learning rate scaled linearly with the batch, a warm-up of one epoch and a cosine decay
# (`wb.dynamics.large_batch`). Three arms at each batch, two seeds each: plain training, ordinary
# FGSM adversarial training (`StaleAdversarial(staleness=0)`: the attack with the current weights) and
# ConAdv (`staleness=1`), both training on the clean batch and its adversarial copy together at
# `2/255`. Three things are measured:
#
# 1. **strength**: during the ConAdv runs, at regular steps `t`, the loss increase at the current
#    weights `w_t` of the FGSM examples made with `w_{t-tau}` (`tau` = 1, 2, 4) against those made
#    with `w_t` itself, on the same images (the bar: at least 90% for `tau = 1`);
# 2. **cost**: gradient computations on the critical path per step, and the measured CPU seconds per
#    step on this one device (where nothing runs concurrently, so the stale attack is *not* cheaper);
# 3. **accuracy**: clean test accuracy per arm and batch size.
#
# At this scale the accuracy claim does not show (**mechanism only**): see "Reading the results". The
# paper's gap appears at ImageNet batches of 32k and more.

# %%
import time

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None
from workbench.dynamics import StaleAdversarial, fgsm, large_batch

info = wb.setup()

# %% tags=["parameters"]
MODEL = wb.by_mode(smoke="resnet8", laptop="resnet8", paper="resnet20")
TRAIN_SUBSET = wb.by_mode(smoke=256, laptop=2_048, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=200, laptop=1_000, paper=None)
BATCHES = wb.by_mode(smoke=[32, 64], laptop=[64, 512], paper=[128, 8_192])  # small, large
EPOCHS = wb.by_mode(smoke=2, laptop=4, paper=60)  # the same for every batch size
BASE_LR, BASE_BATCH = 0.1, 128  # the linear scaling rule: lr = BASE_LR * batch / BASE_BATCH
WARMUP_EPOCHS = wb.by_mode(smoke=0.5, laptop=1, paper=5)
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1], paper=[0, 1, 2])  # laptop: two, the CPU is shared
EPSILON = 2.0  # the FGSM radius in pixel levels (2/255)
MIX = "both"  # train on the clean batch and its adversarial copy together
ARMS = {"plain": None, "fresh": 0, "stale": 1}  # arm: staleness (None: no attack); stale is ConAdv, tau = 1
TAUS = [1, 2, 4]  # the staleness the probe measures
PROBES = wb.by_mode(smoke=4, laptop=12, paper=40)  # probed steps per ConAdv run, evenly spread
PROBE_IMAGES = wb.by_mode(smoke=32, laptop=128, paper=512)  # images of the batch the probe attacks
TIMING_STEPS, TIMING_REPEATS = wb.by_mode(smoke=(1, 1), laptop=(2, 2), paper=(10, 3))
STRENGTH_BAR = 0.9  # the bar: stale examples raise at least 90% of fresh FGSM's loss increase
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # the accuracy gap: paper scale only

# %% [markdown]
# ## The data and the learning-rate schedules
#
# `wb.dynamics.large_batch(batch, n_train)` returns `fit`'s arguments for a batch: the peak rate
# `BASE_LR * batch / BASE_BATCH` (Goyal et al.'s linear scaling rule), reached by a linear warm-up over
# `WARMUP_EPOCHS` and followed by half a cosine to zero. Per epoch the large batch takes eight times
# fewer steps, each at an eight times larger rate: the same area under the curve per epoch, in fewer,
# bigger moves.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
schedules = {b: large_batch(b, len(train), base_lr=BASE_LR, base_batch=BASE_BATCH, warmup_epochs=WARMUP_EPOCHS,
                            epochs=EPOCHS) for b in BATCHES}
rows = []
for b, kw in schedules.items():
    spe = -(-len(train) // b)  # steps per epoch, the last batch partial
    total = spe * EPOCHS
    rows += [dict(batch=str(b), epoch=s / spe, lr=wb.train.lr_at(s, total, kw["lr"], kw["schedule"], kw["warmup"]))
             for s in range(total)]
print(f"{len(train):,} training images, {len(test):,} test images;",
      {b: f"peak lr {kw['lr']:g}, {-(-len(train) // b) * EPOCHS} steps" for b, kw in schedules.items()})
px.line(pd.DataFrame(rows), x="epoch", y="lr", color="batch", markers=True, line_shape="hv",
        title="Learning rate per step: the linear scaling rule, warm-up, cosine decay")

# %% [markdown]
# ## The probe: how strong are examples made with stale weights?
#
# A `wb.fit` callback (it only observes: it attacks copies and evaluates in eval mode, so the run
# trains exactly as without it). At the arrival of batch `t`, before ConAdv replaces it, it takes the
# first `PROBE_IMAGES` images and measures, at the current weights `w_t` (eval mode, as the attack
# itself sees the model):
#
# * the clean loss `L(w_t; x)`;
# * the increase `L(w_t; x + fgsm(w_t)) - L(w_t; x)` of **fresh** FGSM, the one-step attack that is
#   best for exactly this loss to first order;
# * the increase `L(w_t; x + fgsm(w_{t-tau})) - L(w_t; x)` of **stale** FGSM for each `tau` in
#   `TAUS` (weights kept from earlier steps), and how far the weights moved in one step
#   (`wb.dynamics.StalenessProbe`, a callback that only observes).
#
# The strength ratio of a run is the mean stale increase over its probed steps divided by the mean
# fresh increase.

# %% [markdown]
# ## The runs
#
# Every configuration (batch, arm, seed): a fresh `MODEL` from the seed, SGD with momentum 0.9 and
# weight decay `5e-4`, crop-and-flip, `EPOCHS` epochs with the batch's schedule. The adversarial arms
# add `StaleAdversarial` at the batch's arrival: FGSM at `EPSILON`/255 with the current weights
# (`staleness=0`) or last step's (`staleness=1`), the step then trains on the clean batch and its
# adversarial copy together. The probe rides along the ConAdv runs. `wb.sweep` keeps one record per
# configuration (so the probe's rows are kept with the run, and a rerun is instant); `train_model`'s
# own weight cache is off, since a cached model would skip the probe.
#
# The budget (4 epochs of 2,048 images, two seeds) was fixed from a one-seed pilot before the
# comparison.

# %%
def run(batch, arm, seed):
    staleness = ARMS[arm]
    probe = wb.dynamics.StalenessProbe(train.mean, train.std, EPSILON, TAUS, PROBES, PROBE_IMAGES) if staleness == 1 else None
    algorithms = ([probe] if probe else []) + \
        ([StaleAdversarial(train.mean, train.std, EPSILON, staleness=staleness, mix=MIX)] if staleness is not None
         else [])
    res = wb.train_model(MODEL, train, test, seed=seed, cache=False, algorithms=algorithms, progress=False,
                         **schedules[batch])
    h = res.history
    return dict(test_acc=float(h.test_acc.iloc[-1]), train_acc=float(h.train_acc.iloc[-1]), steps=int(h.step.iloc[-1]),
                curve_epoch=h.epoch.tolist(), curve_test_acc=h.test_acc.tolist(),
                adv_gap=h.adv_gap.tolist() if "adv_gap" in h else [],
                probe=probe.rows if probe else [], probe_seconds=probe.seconds if probe else 0.0)


grid = [dict(batch=b, arm=a, seed=s) for b in BATCHES for a in ARMS for s in SEEDS]
constants = dict(model=MODEL, train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET, epochs=EPOCHS, base_lr=BASE_LR,
                 base_batch=BASE_BATCH, warmup_epochs=WARMUP_EPOCHS, epsilon=EPSILON, mix=MIX, taus=TAUS,
                 probes=PROBES, probe_images=PROBE_IMAGES)
runs = wb.sweep(run, grid, backend=BACKEND, folder=wb.sweep_folder("conadv", constants))
ARM_NAMES = {"plain": "plain", "fresh": "fresh FGSM", "stale": "ConAdv (stale, tau=1)"}
runs["batch size"], runs["arm name"] = runs.batch.astype(str), runs.arm.map(ARM_NAMES)

# %% [markdown]
# ### Clean test accuracy per arm and batch size
#
# One point per seed; the table gives the mean and the spread (standard deviation over seeds).

# %%
order = {"arm name": list(ARM_NAMES.values()), "batch size": [str(b) for b in BATCHES]}
fig = px.strip(runs, x="arm name", y="test_acc", color="batch size", category_orders=order, stripmode="overlay",
               title=f"{MODEL} on {len(train):,} CIFAR-10 images, {EPOCHS} epochs: clean test accuracy "
                     f"({len(SEEDS)} seeds)", labels={"test_acc": "clean test accuracy"})
fig.add_hline(y=0.1, line_dash="dot", annotation_text="chance")
fig

# %%
accuracy = runs.groupby(["arm", "batch"]).test_acc.agg(["mean", "std"]).unstack("batch").reindex(list(ARMS))
accuracy.round(4)

# %% [markdown]
# ### Do the stale examples stay strong?
#
# Per probed step of the ConAdv runs: the stale attack's loss increase divided by the fresh attack's
# (1: as strong; the dotted line is the 90% bar), and the same pooled over the run as the ratio
# of mean increases (the table, with the spread over seeds). The last column of the table is how far
# the weights moved in one step, relative to their norm.

# %%
probe_rows = pd.DataFrame([dict(row, batch=r.batch, seed=r.seed) for r in runs.itertuples() for row in r.probe])
probe_rows["batch size"] = probe_rows.batch.astype(str)
for tau in TAUS:
    probe_rows[f"stale{tau}"] = probe_rows[f"stale{tau}"].astype(float)
    probe_rows[f"ratio{tau}"] = probe_rows[f"stale{tau}"] / probe_rows.fresh
per_step = probe_rows.melt(id_vars=["batch size", "seed", "step"], value_vars=[f"ratio{t}" for t in TAUS],
                           var_name="tau", value_name="ratio").dropna()
per_step["tau"] = per_step.tau.str.replace("ratio", "tau = ")
fig = px.line(per_step.groupby(["batch size", "tau", "step"]).ratio.mean().reset_index(), x="step", y="ratio",
              color="tau", facet_col="batch size", markers=True, category_orders=order,
              title="Stale FGSM's loss increase / fresh FGSM's, at the current weights (mean over seeds)")
fig.add_hline(y=STRENGTH_BAR, line_dash="dot").update_xaxes(matches=None)

# %%
def pooled(df):
    out = {f"tau={t}": df[f"stale{t}"].mean() / df.fresh[df[f"stale{t}"].notna()].mean() for t in TAUS}
    return pd.Series({**out, "fresh increase": df.fresh.mean(), "move per step": df.move.mean()})


strength_runs = probe_rows.groupby(["batch", "seed"]).apply(pooled)
strength = strength_runs.groupby("batch").agg(["mean", "std"])
strength.round(3)

# %% [markdown]
# The same effect seen from inside the training: the history's `adv_gap`, the mean loss of the
# adversarial copy minus the clean batch's under the weights being trained (batch statistics), per
# epoch, for fresh and stale examples.

# %%
gaps = runs[runs.adv_gap.map(len) > 0].explode(["curve_epoch", "adv_gap"]).astype({"adv_gap": float})
px.line(gaps.groupby(["batch size", "arm name", "curve_epoch"]).adv_gap.mean().reset_index(), x="curve_epoch",
        y="adv_gap", color="arm name", facet_col="batch size", markers=True, category_orders=order,
        labels={"curve_epoch": "epoch", "adv_gap": "adversarial - clean loss"},
        title="How much the training examples' attack raises the training loss (mean over seeds)")

# %% [markdown]
# ## What a step costs
#
# `critical_path_gradients`: the gradient computations per step that must run one after the other (2
# for fresh FGSM, whose attack needs the current weights; 1 for ConAdv, whose attack on the next batch
# can run concurrently with this step on other workers). Then the measured CPU seconds per step on
# this one device, for each arm and batch (`TIMING_STEPS` steps, best of `TIMING_REPEATS`, the arms
# taken in turn; on a GPU, wall seconds): here nothing runs concurrently, so the stale attack costs
# what the fresh one costs, and both cost about three plain steps (one attack pass, then a step on
# twice the images).

# %%
def clock():  # CPU seconds of this process on a CPU (pauses of a shared machine do not count), else wall
    if wb.device().type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def seconds_per_step(batch, staleness):
    algorithms = [] if staleness is None else [StaleAdversarial(train.mean, train.std, EPSILON, staleness, MIX)]
    model = wb.create_model(MODEL, num_classes=train.num_classes)
    start = clock()
    wb.fit(model, train, algorithms=algorithms, progress=False, seed=0, stop_after_steps=TIMING_STEPS,
           **schedules[batch])
    return (clock() - start) / TIMING_STEPS


timing = {}
for _ in range(TIMING_REPEATS):
    for b in BATCHES:
        for arm, staleness in ARMS.items():
            t = seconds_per_step(b, staleness)
            timing[(b, arm)] = min(t, timing.get((b, arm), float("inf")))
cost = pd.DataFrame([dict(batch=b, arm=arm, seconds_per_step=timing[(b, arm)],
                          x_plain=timing[(b, arm)] / timing[(b, "plain")],
                          critical_path_gradients=1 if s is None else StaleAdversarial(
                              train.mean, train.std, EPSILON, s).critical_path_gradients)
                     for b in BATCHES for arm, s in ARMS.items()])
cost.round(3)

# %% [markdown]
# ### Explore the staleness
#
# Pick the batch size and `tau`: the loss increase of fresh FGSM and of FGSM made with `w_{t-tau}`,
# per probed step (mean over seeds), and the learning rate at that step. The stale attack falls
# behind where the learning rate, and so the move between consecutive weights, is largest.

# %%
def render(batch=BATCHES[-1], tau=TAUS[0]):
    df = probe_rows[probe_rows.batch == batch].groupby("step")[["fresh", f"stale{tau}", "lr"]].mean().reset_index()
    fig = go.Figure()
    fig.add_scatter(x=df.step, y=df.fresh, name="fresh FGSM (w_t)", mode="lines+markers")
    fig.add_scatter(x=df.step, y=df[f"stale{tau}"], name=f"stale FGSM (w_t-{tau})", mode="lines+markers")
    fig.add_scatter(x=df.step, y=df.lr, name="learning rate", yaxis="y2", line=dict(dash="dot"))
    return fig.update_layout(title=f"batch {batch}, tau = {tau}: loss increase at the current weights",
                             xaxis_title="step", yaxis_title="loss increase",
                             yaxis2=dict(title="learning rate", overlaying="y", side="right"), height=400)


wb.viz.explorer(render, batch=BATCHES, tau=TAUS)

# %% [markdown]
# ## The claim, as a check that can fail
#
# Every mode: the bookkeeping (fresh FGSM puts 2 gradient computations per step on the critical path,
# ConAdv 1), the attack stays within `EPSILON`/255 of the clean images, and the probe measured every
# `tau` at both batch sizes.
#
# Laptop and paper mode, the mechanism:
#
# 1. **strength at the small batch**: pooled over its probed steps, the `tau = 1` examples raise at
#    least `STRENGTH_BAR` (90%) of fresh FGSM's loss increase, in the mean over seeds;
# 2. **strength falls with staleness**: at both batch sizes, the `tau = 1` ratio is above the `tau = 4`
#    ratio in every seed;
# 3. **the stale examples still attack during training**: the ConAdv runs' `adv_gap` is positive in
#    every epoch and seed;
# 4. **no saving on one device**: a ConAdv step costs at least 1.5 plain steps here (the saving needs
#    the attack on a second worker).
#
# The pilot (one seed) found the large batch's `tau = 1` ratio near 0.8-0.84, under the 90% bar, so
# laptop mode reports it and does not assert it there; paper mode asserts the bar at both batch sizes
# and the paper's accuracy claim: at the large batch, ConAdv ends above plain training by more than
# the spread, and closes at least half of plain training's gap to the small batch.

# %%
small, large = BATCHES
adv = StaleAdversarial(train.mean, train.std, EPSILON, staleness=0)
x, y = train.images[:16].cpu(), train.labels[:16].cpu()
x_norm = wb.data.to_float(x, train.mean, train.std)
probe_model = wb.create_model(MODEL, num_classes=train.num_classes)
x_adv = fgsm(probe_model, x_norm, y, train.mean, train.std, EPSILON)
moved = ((x_adv - x_norm) * torch.tensor(train.std).view(1, 3, 1, 1)).abs().max().item() * 255
print(f"critical-path gradients: fresh {adv.critical_path_gradients}, stale "
      f"{StaleAdversarial(train.mean, train.std, EPSILON, staleness=1).critical_path_gradients}; "
      f"largest pixel change of the attack: {moved:.3f} levels")
print("strength ratio, mean over seeds:", strength.xs("mean", axis=1, level=1).round(3).to_dict("index"))
acc_mean = runs.groupby(["arm", "batch"]).test_acc.mean()
acc_std = runs.groupby(["arm", "batch"]).test_acc.std().fillna(0.0)
print("accuracy:", acc_mean.round(4).to_dict())
stale_arm = "stale"
per_step_cost = cost.set_index(["batch", "arm"]).x_plain
print("ConAdv step / plain step on this device:", per_step_cost.xs(stale_arm, level="arm").round(2).to_dict())
assert adv.critical_path_gradients == 2 and \
    StaleAdversarial(train.mean, train.std, EPSILON, staleness=1).critical_path_gradients == 1
assert moved <= EPSILON + 1e-3, f"FGSM moved a pixel by {moved} levels, more than epsilon"
assert strength_runs.notna().all().all(), "the probe should measure every tau at both batch sizes"
if CHECK_MECHANISM:
    s1 = strength.loc[small, ("tau=1", "mean")]
    assert s1 >= STRENGTH_BAR, f"at batch {small}, stale examples raise only {s1:.1%} of fresh FGSM's loss increase"
    falls = strength_runs["tau=1"] > strength_runs[f"tau={max(TAUS)}"]
    assert falls.all(), f"staler examples should be weaker in every run: {strength_runs.round(3).to_dict()}"
    stale_gaps = runs[runs.arm == stale_arm].adv_gap.explode().astype(float)
    assert (stale_gaps > 0).all(), f"the stale examples should raise the training loss: {stale_gaps.tolist()}"
    assert (per_step_cost.xs(stale_arm, level="arm") >= 1.5).all(), "on one device a ConAdv step does the attack too"
if CHECK_CLAIM:
    s_large = strength.loc[large, ("tau=1", "mean")]
    assert s_large >= STRENGTH_BAR, f"at batch {large} stale examples raise only {s_large:.1%} of fresh FGSM's"
    gain = acc_mean[(stale_arm, large)] - acc_mean[("plain", large)]
    assert gain > max(acc_std[(stale_arm, large)], acc_std[("plain", large)]), f"ConAdv should beat plain: {gain}"
    gap = acc_mean[("plain", small)] - acc_mean[("plain", large)]
    assert gain >= gap / 2, f"ConAdv should close at least half of the large batch's gap {gap:.4f}: {gain:.4f}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-07, 3.9 minutes on 2 cores from an empty cache) the
# mechanism shows and the accuracy claim does not.
#
# *Strength.* At the batch of 64, examples made with last step's weights raise 96.4% of the loss
# increase of fresh FGSM (spread 0.9 points over the two seeds); with `tau = 2` and `4` the share falls
# to 90.3% and 79.3%. At the batch of 512 it is 84.3% (spread 1.8), under the 90% bar, and 66.8%
# and 43.4% for `tau` 2 and 4. The reason is in the last column of the strength table: the linear
# scaling rule makes each of the large batch's steps move the weights by 1.1% of their norm, against
# 0.2% at the batch of 64. The explorer shows where: in the first run of this notebook (at one thread)
# the stale share at the large batch dropped to 65-70% while the learning rate was at its peak of 0.4
# (steps 3-6) and climbed back above 90% once the cosine brought the rate under about 0.2 (from step
# 10). Inside training the same holds: the ConAdv runs' adversarial copies raise the training loss in
# every epoch and seed (asserted; the `adv_gap` column).
#
# *Cost.* Fresh FGSM puts two gradient computations in sequence on every step, ConAdv one. On this
# one CPU that saving does not appear, as expected: nothing runs concurrently, so a ConAdv step costs
# what a fresh one costs, 2.72 plain steps at batch 64 (0.260 s against 0.096 s) and 3.02 at 512 (2.81 s
# against 0.93 s), the attack's pass plus a step on twice the images. The paper's speed-up needs the
# attack on workers of its own. `StaleAdversarial(..., concurrent=True)` makes the next batch's
# examples on a worker thread (a side CUDA stream on a GPU) while the step trains, the same run to the
# bit (tested); on a CPU, whose cores one step already keeps busy, it is slower, not faster
# (`benchmarks/bench_dynamics_training.py`: 1.9x plain per step against 1.7x in turn, adversarial batch
# alone); it can only pay on a device that one step leaves partly idle.
#
# *Accuracy.* The large batch loses 15 points at this scale (plain training: 36.5% at 64, 21.9% at
# 512, 16 steps in all), and adversarial training does not win any of it back: at 512, fresh FGSM ends at
# 20.8% and ConAdv at 20.5%, both within the spread over seeds (1.0 to 2.7 points); at 64 they cost 2.5
# and 2.2 points (34.0% and 34.3%). The gap here comes from too few steps on too few images, not from the
# sharp minima of batches of tens of thousands that adversarial training is meant to smooth; the paper's
# effect lives at ImageNet batches of 32k and more, which this notebook only reaches in paper mode
# (**mechanism only**). Two seeds, not three, to keep the laptop run short; the asserted mechanism rests
# on twelve probed steps per run, and the accuracy comparison is not asserted at this scale.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper (ResNet-50, ImageNet, TPU v3) | here (laptop mode, ResNet-8, 2,048 CIFAR-10 images) |
# | --- | --- | --- |
# | ConAdv alone, largest batch | 75.3% top-1 at a batch of 96k (abstract) | 20.5% at 512 (34.3% at 64) |
# | ConAdv with data augmentation | 76.2% top-1 at 96k (abstract) | not run |
# | the baselines at 32k-96k (LARS, distributed adversarial learning) | see the paper's ImageNet tables | plain 21.9%, fresh FGSM 20.8% at 512 (36.5% and 34.0% at 64) |
# | stale examples' strength | not measured as such in the paper | 96.4% of fresh FGSM's loss increase at 64, 84.3% at 512 (`tau = 1`) |
# | cost per step | one sequential gradient computation, with workers for the attack | 1 on the critical path (fresh: 2); 2.7-3.3 plain steps on one CPU |
# | staleness | `tau = 1`, separate batch-norm statistics for adversarial images (Algorithm 1) | `tau = 1`, shared batch norm; probe at `tau` = 1, 2, 4 |
#
# The paper's batches are 32k to 96k images of ImageNet's 1.28 million, trained on large TPU v3
# slices; here the "large" batch is 512 of 2,048 images, and the whole run is 16 steps
# long. The large-batch generalization gap the paper closes is a matter of scale that a laptop does
# not reach: what shows here is the mechanism (stale examples and their cost), not the gap.

# %% [markdown]
# ## What to try next
#
# - `TAUS = [1, 2, 4, 8]` and `EPOCHS = 8`: how fast does the stale attack weaken with the staleness,
#   and does it recover late in training, when the cosine schedule makes the steps small?
# - `BASE_LR = 0.05`: halve the scaled learning rate; the large batch's steps shrink, and the stale
#   examples should come closer to fresh ones (the probe's `move per step` says by how much).
# - `MIX = "adversarial"`: train on the adversarial copy alone, as in Goodfellow et al.'s FGSM
#   training, and compare its cost in clean accuracy at each batch size.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **The linear scaling rule with warm-up.** Return the learning rate at `step` (0-based) for a batch
# of `batch` images, when `base_lr` is the rate that suits a batch of `base_batch`: the peak
# `base_lr * batch / base_batch`, reached by a linear warm-up over the first `warmup_steps` steps
# (`peak * (step + 1) / warmup_steps` while `step < warmup_steps`; no warm-up when `warmup_steps` is
# 0), and held at the peak afterwards.

# %%
def linear_scaled_lr(base_lr, base_batch, batch, warmup_steps, step):
    raise NotImplementedError  # your code here


wb.exercises.check("linear_scaled_lr", linear_scaled_lr)
