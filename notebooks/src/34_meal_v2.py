# %% [markdown]
# # MEAL V2: an ensemble's averaged probabilities lift a plain student
#
# Zhiqiang Shen & Marios Savvides, *MEAL V2: Boosting Vanilla ResNet-50 to 80%+ Top-1 Accuracy on
# ImageNet without Tricks*, 2020 ([arXiv 2009.08453](https://arxiv.org/abs/2009.08453)).
#
# **The question.** A vanilla ResNet-50 trained on ImageNet labels stops near 76% top-1. The usual
# ways past that change the network (attention blocks, wider stems) or the recipe (AutoAugment,
# mixup, cosine schedules, label smoothing, extra data). Can the same network, trained the same
# plain way, get much further if only its *targets* change?
#
# **The idea.** Distil an ensemble of stronger teachers into the student, and nothing else:
#
# - the target of each image is the **mean of the teachers' softmax probabilities**
#   `p_T(x) = 1/K sum_k softmax(t_k(x))` (MEAL V2 eq. 1), a soft label richer than any one teacher's;
# - the student minimizes `KL(p_T(x) || softmax(s(x)))` **alone**: no one-hot labels at all;
# - the student **starts from its own trained weights** (a vanilla ResNet-50), not from scratch;
# - a small **discriminator** on the output probabilities learns to tell the teachers' from the
#   student's, and the student learns to fool it (MEAL V2 eq. 3), a regularizer on the outputs.
#
# With two ImageNet teachers (SENet-154 and ResNet-152) this takes the vanilla ResNet-50 to 80.67%.
#
# **What is checked here.** CIFAR-10 at laptop scale: two ResNet-14 teachers trained here (two, as
# in the paper), a thin ResNet-8 student trained on labels (the "vanilla" student), then continued
# for the same number of epochs in three ways from the same weights, data, learning-rate schedule
# and seeds (three):
#
# 1. **labels**: more training on the one-hot labels (the student's own recipe, label smoothing included);
# 2. **ensemble KD**: the KL to the teachers' mean probabilities only (`wb.transfer.Distillation`
#    with `alpha=1`, temperature 1, `wb.transfer.StartFrom` the vanilla weights);
# 3. **ensemble KD + discriminator**: the same with `wb.transfer.Discriminator`.
#
# The claim, made a check that can fail: ensemble distillation lifts the plain student clearly,
# above the labels-only continuation in every seed and by more than the spread over seeds, without
# any change to the network or the recipe. **At laptop scale it does not show** (see the reading
# below): the distilled students end level with the ones continued on labels. Laptop mode therefore
# asserts the mechanism -- distillation moves the student towards the ensemble: its KL divergence
# from the ensemble's probabilities on the test images falls below the vanilla student's and below
# that of the student continued on labels, in every seed -- and prints the claim's numbers; paper
# mode asserts the claim. Everything is a `wb.fit` run: the task, the starting weights and the
# discriminator are extensions of the one training loop, and in laptop mode the teachers' outputs are
# computed once per image (the continuation flips images but does not crop them, so every view the
# student sees is in the cache).

# %%
import pandas as pd
import plotly.express as px

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

info = wb.setup()

# %% tags=["parameters"]
STUDENT = wb.by_mode(smoke="resnet8", laptop="resnet8", paper="resnet20")  # the "vanilla" network
STUDENT_WIDTH = wb.by_mode(smoke=8, laptop=8, paper=16)  # a thin ResNet-8 (20 k parameters) on a laptop
TEACHER = wb.by_mode(smoke="resnet8", laptop="resnet14", paper="resnet56")  # deeper and twice as wide
TEACHER_WIDTH = 16
TEACHER_SEEDS = [10, 11]  # one teacher per seed: two, as the paper's SENet-154 and ResNet-152
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])  # the student's initialization and data order
TRAIN_SUBSET = wb.by_mode(smoke=300, laptop=4_000, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=200, laptop=2_000, paper=None)
TEACHER_EPOCHS = wb.by_mode(smoke=1, laptop=20, paper=160)
STUDENT_EPOCHS = wb.by_mode(smoke=1, laptop=20, paper=160)  # the vanilla student, on labels, to the end of its schedule
MORE_EPOCHS = wb.by_mode(smoke=1, laptop=8, paper=80)  # the continuation, the same for every variant
BATCH_SIZE = wb.by_mode(smoke=64, laptop=128, paper=128)  # 4,000 images in batches of 128: 32 steps per epoch
LR = wb.by_mode(smoke=0.05, laptop=0.1, paper=0.1)  # SGD's peak rate for teachers and the vanilla student
MORE_LR = wb.by_mode(smoke=0.02, laptop=0.05, paper=0.05)  # the continuation's peak rate (it starts trained)
MORE_AUGMENT = wb.by_mode(smoke="flip", laptop="flip", paper="crop_flip")  # the continuation's augmentation
CACHE_LOGITS = wb.by_mode(smoke=True, laptop=True, paper=False)  # run the teachers once per image (flips only)
VARIANTS = ["labels", "ensemble KD", "ensemble KD + discriminator"]
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")  # paper: one run per GPU on Ray
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # laptop: shown, not asserted (see the reading)

# %% [markdown]
# ## The teachers and the vanilla student, on real data
#
# Every network trains with the laptop recipe (one-cycle SGD with Nesterov momentum, crop-and-flip)
# in batches of `BATCH_SIZE` on `TRAIN_SUBSET` CIFAR-10 images (the recipe's 256 would leave 16 steps
# per epoch on 4,000 images). The teachers are ResNet-14s at twice the student's width, one per seed,
# trained `TEACHER_EPOCHS` epochs without the recipe's label smoothing, which erases much of what a
# teacher's probabilities say about the wrong classes (Müller, Kornblith & Hinton 2019, arXiv
# 1906.02629). The vanilla student keeps the whole recipe and trains `STUDENT_EPOCHS` epochs, to the
# end of its one-cycle schedule. The test set is scored once, at the end of each of these runs.
# `wb.transfer.ensemble_accuracy` scores the teachers' averaged probabilities; `wb.train_model` caches
# every run.
#
# The budget was chosen once, for the comparison's sake, before the comparison was run at it: a
# first pilot with teachers no deeper than the student (ResNet-8s of width 16, 15 epochs) gave
# teachers no better than the student they were to teach (57% against 58%; their ensemble 59.4%),
# so there was nothing to distil. Distillation needs teachers clearly ahead of the student: in a
# second pilot a ResNet-14 of width 16 reached 64.9% after 20 epochs, 11 points above the student
# after as many, at about twice the cost per epoch of those first teachers.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
recipe = wb.train.recipe("laptop", batch_size=BATCH_SIZE, lr=LR)
student_kwargs, teacher_kwargs = {"width": STUDENT_WIDTH}, {"width": TEACHER_WIDTH}
teachers = [wb.train_model(TEACHER, train, test, model_kwargs=teacher_kwargs, seed=s, progress=False,
                           **dict(recipe, epochs=TEACHER_EPOCHS, eval_every=TEACHER_EPOCHS, label_smoothing=0.0)
                           ).model.eval() for s in TEACHER_SEEDS]
vanilla = {s: wb.train_model(STUDENT, train, test, model_kwargs=student_kwargs, seed=s, progress=False,
                             **dict(recipe, epochs=STUDENT_EPOCHS, eval_every=STUDENT_EPOCHS)) for s in SEEDS}
ensemble = wb.transfer.ensemble_accuracy(teachers, test)
networks = pd.DataFrame(
    [{"network": f"teacher {i} ({TEACHER}, width {TEACHER_WIDTH})", "test_acc": a} for i, a in enumerate(ensemble["members"])]
    + [{"network": f"ensemble of {len(teachers)} teachers (mean probabilities)", "test_acc": ensemble["acc"]}]
    + [{"network": f"vanilla student ({STUDENT}, width {STUDENT_WIDTH}), seed {s}", "test_acc": r.test_acc}
       for s, r in vanilla.items()])
costs = wb.models.summary_table({"teacher": teachers[0], "student": vanilla[SEEDS[0]].model}).set_index("model")
print(f"one teacher: {costs.loc['teacher', 'params']:,} parameters, {costs.loc['teacher', 'macs']:,} multiply-adds "
      f"per image; the student: {costs.loc['student', 'params']:,} and {costs.loc['student', 'macs']:,}")
networks.round(4)

# %% [markdown]
# ## Continue the vanilla student three ways
#
# Each run starts from the vanilla student of its seed (`wb.transfer.StartFrom`) and trains
# `MORE_EPOCHS` more epochs at peak rate `MORE_LR` (one cycle) with the augmentation `MORE_AUGMENT`
# (laptop: horizontal flips only), the same in every variant. Only the target differs: the labels
# (with the recipe's label smoothing), or the teachers' mean probabilities through
# `wb.transfer.Distillation(teachers, temperature=1, alpha=1, cache_logits=CACHE_LOGITS)` -- MEAL V2's
# loss. The one `distill` task serves every run: with the cache it runs the teachers once on every
# training and test image and its mirror image, then looks the images of each batch up by their
# pixels (paper mode crops, so it runs the teachers on every batch instead). `wb.sweep` keeps one
# record per run, so a rerun is instant; besides the accuracy, each record holds how far the
# student's predictions are from the ensemble's on the test images (KL divergence and top-1
# agreement), and `kl_at_start` is the same distance for the vanilla student the run started from.

# %%
more = dict(recipe, epochs=MORE_EPOCHS, lr=MORE_LR, augment=MORE_AUGMENT)
constants = dict(student=STUDENT, student_width=STUDENT_WIDTH, teacher=TEACHER, teacher_width=TEACHER_WIDTH,
                 teacher_seeds=TEACHER_SEEDS, train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET,
                 teacher_epochs=TEACHER_EPOCHS, student_epochs=STUDENT_EPOCHS, **more)
distill = wb.transfer.Distillation(teachers, temperature=1.0, alpha=1.0, cache_logits=CACHE_LOGITS)


def run(variant, seed):
    algorithms = [wb.transfer.StartFrom(vanilla[seed].model)]
    kw = dict(more, model_kwargs=student_kwargs)
    if variant != "labels":  # the ensemble's probabilities alone: no labels, so no label smoothing
        kw.update(task=distill, label_smoothing=0.0)
    if variant == "ensemble KD + discriminator":
        algorithms.append(wb.transfer.Discriminator(seed=seed))
    record = wb.train.run_record(STUDENT, train, test, seed, algorithms=algorithms, **kw)
    result = wb.train_model(STUDENT, train, test, seed=seed, progress=False, algorithms=algorithms, **kw)  # cached
    scores = distill.evaluate(result.model, wb.data.Loader(test, batch_size=1000, shuffle=False))
    return {**record, "start_acc": vanilla[seed].test_acc, "ensemble_kl": scores["kl"],
            "ensemble_agree": scores["agree"], "curve_d_acc": list(result.history.get("d_acc", []))}


runs = wb.sweep(run, [dict(variant=v, seed=s) for v in VARIANTS for s in SEEDS], backend=BACKEND,
                folder=wb.sweep_folder("meal_v2", constants))
ran = distill.teacher_images  # images the teachers ran on for the runs (before the evaluation below)
test_batches = wb.data.Loader(test, batch_size=1000, shuffle=False)
start_kl = {s: distill.evaluate(vanilla[s].model, test_batches)["kl"] for s in SEEDS}  # before the continuation
runs["gain"] = runs.test_acc - runs.start_acc
runs["start_kl"] = runs.seed.map(start_kl)
table = runs.groupby("variant", sort=False).agg(
    acc=("test_acc", "mean"), spread=("test_acc", "std"), gain_over_start=("gain", "mean"),
    kl_at_start=("start_kl", "mean"), kl_to_ensemble=("ensemble_kl", "mean"),
    agree_with_ensemble=("ensemble_agree", "mean"), runs=("seed", "count"))
print(f"the teachers ran on {ran:,} images for this session's runs (none where every run came from the cache)")
table.round(4)

# %% [markdown]
# ## What the targets do
#
# Test accuracy after every epoch of the continuation, one line per seed; the dotted line is where
# the vanilla students started (their mean), the dashed one the ensemble of teachers.

# %%
curves = runs.explode(["curve_epoch", "curve_test_acc"])[["variant", "seed", "curve_epoch", "curve_test_acc"]]
curves = curves.astype({"curve_epoch": int, "curve_test_acc": float})
fig = px.line(curves, x="curve_epoch", y="curve_test_acc", color="variant", line_group="seed", markers=True,
              labels={"curve_epoch": "epoch of the continuation", "curve_test_acc": "test accuracy"},
              title=f"{STUDENT} continued from its vanilla weights: labels against the ensemble's probabilities")
fig.add_hline(y=runs.start_acc.mean(), line_dash="dot", annotation_text="vanilla student")
fig.add_hline(y=ensemble["acc"], line_dash="dash", annotation_text=f"ensemble of {len(teachers)} teachers")
fig

# %%
fig = px.strip(runs, x="variant", y="test_acc", color="variant", hover_data=["seed", "start_acc"],
               labels={"test_acc": "final test accuracy"}, title="Final test accuracy per seed")
fig.add_hline(y=runs.start_acc.mean(), line_dash="dot", annotation_text="vanilla student")
fig

# %% [markdown]
# ### Explore a seed
#
# Pick a seed and a measure: the continuation of that seed's vanilla student in each variant, epoch
# by epoch (`d_acc`: how often the discriminator told the teachers' probabilities from the student's,
# on the training batches; 0.5 is a coin).

# %%
def render(seed=SEEDS[0], measure="test accuracy"):
    rows = runs[runs.seed == seed]
    column = {"test accuracy": "curve_test_acc", "training loss": "curve_train_loss", "d_acc": "curve_d_acc"}[measure]
    long = rows[rows[column].map(len) > 0].explode(["curve_epoch", column])
    return px.line(long.astype({"curve_epoch": int, column: float}), x="curve_epoch", y=column, color="variant",
                   markers=True, labels={"curve_epoch": "epoch of the continuation", column: measure},
                   title=f"seed {seed}: {measure} during the continuation")


wb.viz.explorer(render, seed=SEEDS, measure=["test accuracy", "training loss", "d_acc"])

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | data | ImageNet: 1.28 M training images at 224 x 224 | CIFAR-10: 4,000 training and 2,000 test images at 32 x 32 |
# | teachers | SENet-154 and ResNet-152 (v1s), trained elsewhere (the released code loads Gluon weights) | two ResNet-14s of width 16 (175 k parameters), 20 epochs here: 64.65% and 63.5%, together 66.45% |
# | student and its start | vanilla ResNet-50 (25.6 M parameters), about 76% top-1 on its usual recipe | ResNet-8 of width 8 (20 k parameters) after 20 epochs on labels: 52.7% (mean of 3 seeds) |
# | distillation | 180 epochs of SGD in batches of 512 (the released training command), weight decay weakened or removed, no one-hot labels (abstract) | 8 more epochs (256 steps) of SGD, batch 128, flips only, no one-hot labels |
# | headline | ResNet-50 to 80.67% top-1 at 224 x 224; ResNet-18 69.76% -> 73.19% (abstract) | labels 56.33%, ensemble KD 57.13% (ahead by less than the seed spread), with the discriminator 57.57% (mechanism only) |
#
# The paper's gain comes from a student large enough to follow its teachers and 180 epochs of full
# ImageNet to do it in; here the student is about 1,300 times smaller than a ResNet-50 and gets 256
# steps, and it ends still far from the ensemble (it agrees with the ensemble's top class on 69% of
# the test images).

# %% [markdown]
# ## The claim, as a check that can fail
#
# Laptop and paper mode, the mechanism. Distillation moves the student towards the ensemble: its KL
# divergence from the ensemble's probabilities on the test images ends lower than the vanilla
# student's it started from and lower than that of the student continued on labels, in every seed.
# Paper mode, the claim (printed in every mode): continued on the ensemble's probabilities alone, the
# student ends more accurate than when continued on the labels -- in every seed, and on average by
# more than the spread over seeds (the larger of the two variants' standard deviations, at least half
# a point). The variant with the discriminator is shown beside it and not asserted.

# %%
per_seed = runs.pivot_table(index="seed", columns="variant", values="test_acc")
kl = runs.pivot_table(index="seed", columns="variant", values="ensemble_kl")
gain = per_seed["ensemble KD"] - per_seed["labels"]
stds = runs.groupby("variant").test_acc.std().fillna(0.0)
allowed = max(stds[["ensemble KD", "labels"]].max(), 0.005)
print(f"ensemble KD - labels per seed: {gain.round(4).to_dict()}; mean {gain.mean():+.2%} (spread {allowed:.2%})")
print(f"with the discriminator - labels: {(per_seed['ensemble KD + discriminator'] - per_seed['labels']).round(4).to_dict()}")
kl["vanilla (start)"] = pd.Series(start_kl)
print(f"KL to the ensemble per seed: {kl.round(3).to_dict('index')}")
if CHECK_MECHANISM:
    assert (kl["ensemble KD"] < kl["vanilla (start)"]).all() and (kl["ensemble KD"] < kl["labels"]).all(), \
        f"distillation should bring the student nearer the ensemble than it started and than labels do: {kl.to_dict()}"
if CHECK_CLAIM:
    assert (gain > 0).all() and gain.mean() > allowed, \
        f"ensemble distillation should beat more training on labels by more than the seed spread: {gain.to_dict()}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-07, 9.0 minutes on 2 cores from an empty cache) the
# two ResNet-14 teachers reach 64.65% and 63.5% on the 2,000 test images and their averaged
# probabilities 66.45%, about 14 points above the vanilla ResNet-8 students (52.25% to 53.4%). Eight
# more epochs on the labels take the students to 56.33% (spread 0.2 points); eight epochs on the
# ensemble's probabilities alone to 57.13% (spread 0.9): +0.05, +1.45 and +0.9 points against the
# labels seed by seed, +0.8 on average. **The claim does not show at this scale**: the distilled
# student is ahead in every seed, but by less than the spread over seeds, and most of either gain
# (3.7 to 4.5 points) is the second learning-rate cycle, whatever the target. The variant with the
# discriminator, shown beside it and not asserted, ends at 57.57%,
# ahead of the labels in every seed by 1.05 to 1.45 points: a hint that MEAL V2's full recipe does
# more here than the averaged probabilities alone, worth checking with more seeds before reading more
# into it. What does show is the mechanism: the distilled student's KL divergence from the ensemble
# falls from 0.41 (the vanilla student) to 0.29, against 0.38 after the labels, in every seed, and it
# agrees with the ensemble's top class on 69.2% of the test images against 66.7%. Distillation moves
# the student towards its teachers, but a 20 k-parameter network gets only part of the way in 256
# steps, so the ensemble's 14 extra points do not reach it. Teachers matter too: in a run with the
# teachers stopped after 12 epochs (59.3%) the distilled students ended 1.5 points *below* the labels
# in every seed. The paper sees the gain with a student a thousand times larger and 180 epochs of
# ImageNet: about 4.5 points for ResNet-50, 3.4 for ResNet-18.

# %% [markdown]
# ## What to try next
#
# - `MORE_EPOCHS = 24`: a longer continuation (the paper distils for 180 epochs). Does the distilled
#   student pull ahead once it has time to follow the ensemble (watch `kl_to_ensemble` fall)?
# - `STUDENT, STUDENT_WIDTH = "resnet14", 8`: a student with twice the depth, more able to follow
#   teachers 13 points ahead of it.
# - `TEACHER_SEEDS = [10]`: one teacher instead of two. Is the single teacher's target any worse
#   for the student, as the paper's argument for averaging the teachers' probabilities says?

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **The ensemble's target.** `teacher_logits` holds the logits of `K` teachers for a batch,
# `[batch, classes, K]`. Return MEAL V2's target `[batch, classes]`: each teacher's softmax over the
# classes at temperature `temperature` (the logits divided by it), averaged over the teachers.

# %%
def ensemble_soft_target(teacher_logits, temperature):
    raise NotImplementedError  # your code here


wb.exercises.check("ensemble_soft_target", ensemble_soft_target)
