# %% [markdown]
# # Robustify a large model cheaply: a small robust teacher tunes a fraction of it
#
# Nishant Jain, Harkirat Behl, Yogesh Singh Rawat & Vibhav Vineet, *Efficiently Robustify Pre-trained
# Models*, ICCV 2023 ([arXiv 2309.07499](https://arxiv.org/abs/2309.07499)).
#
# **The question.** A large network trained on clean images loses much of its accuracy on the same
# images fogged, pixelated or compressed. The usual remedy is to fine-tune the whole network on
# corrupted or otherwise augmented images (AugMix and relatives). For a very large model that costs a
# full forward and backward pass through every parameter for many steps, and moving every weight can
# make the model forget what it was good at. Can the robustness be bought more cheaply?
#
# **The idea.** Robustness is cheap to teach a *small* network: its passes cost a fraction of the
# large one's. So (1) train a small model with the robust augmentation; (2) use it as a teacher:
# distil its outputs on augmented images into the large model, of which only a *small part* is
# tuned, the rest frozen. The large model keeps most of its weights, and so (the paper argues) its
# clean accuracy and its other properties, while the teacher's robust behaviour is transferred. The
# paper adds more (extra heads on the student, one chosen at test time by uncertainty; see its
# section 4); here only the core of the recipe is tested: a robust small teacher, a fraction of the
# large model tuned by distillation, on augmented data.
#
# **What is checked here.** A "large" pre-trained model, a ResNet-20 trained on clean CIFAR-10
# images, and a "small" one, a ResNet-8 of width 16 (29% of its parameters, 31% of its multiply-adds),
# pre-trained the same way on the same images: both play released pre-trained models. The robust
# augmentation: CIFAR-10-C corruptions of the **noise and blur families** applied to half of every
# training batch (`wb.shift.robustify.CorruptionAugment`). Robustness is measured on **held-out
# families**: weather (fog, snow) and digital (contrast, pixelate, JPEG), corruptions never seen in
# training, at severities 3 and 5, and on two unseen members of the training families. Three ways to
# robustify, three seeds each, every training run's compute counted in multiply-adds of all its forward
# and backward passes, teachers included (`wb.shift.robustify.training_macs`), and in seconds:
#
# - **(a) none**: the pre-trained model as it is;
# - **(b) full robust fine-tuning**: every parameter trained on the augmented data, and the same at
#   **equal compute** to (c);
# - **(c) the paper's**: the pre-trained small model robustified (fine-tuned with the augmentation), then
#   distilled into the large model's first stage (stem and first residual stage, 5% of its parameters)
#   on augmented data. As in the paper, the small model's pre-training is given, like the large
#   model's, and not counted: (c)'s cost is the teacher's robustification and the distillation.
#
# The claim in the form: (c) beats (a) on the held-out corruptions by more than the seed
# spread; it comes within the spread (or 1 point) of full fine-tuning (b) at at most 60% of its
# compute, and at equal compute it is at least as robust; and it keeps more clean accuracy than (b).
# At this scale it does not show (**mechanism only**). With the pre-trained, robustified ResNet-8 of
# width 16 as teacher, (c) was more robust than (a) in every seed, by 0.3 to 0.6 points at two threads
# (0.6 to 1.3 at one), within a point of full fine-tuning; but that margin is of the size that a change
# of thread count made vanish for the notebook's earlier design (a ResNet-8 of width 8 trained from
# scratch as teacher), and a pilot without any teacher gained almost as much. Every mode checks the mechanism's bookkeeping: only the
# tuned fraction moved, it is small, and the counted compute (the teacher's robustification included)
# is at most 60% of full fine-tuning's; paper mode asserts the transfer of robustness and the whole claim.

# %%
import functools

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None
from workbench.shift import robustify

info = wb.setup()

# %% tags=["parameters"]
LARGE, LARGE_KWARGS = "resnet20", {}  # the "large" pre-trained model (width 16: 272k parameters, 40.8M MACs)
SMALL, SMALL_KWARGS = "resnet8", {"width": 16}  # the small pre-trained model, the teacher (78k, 12.5M MACs)
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])  # seeds of the robustification runs
TRAIN_SUBSET = wb.by_mode(smoke=300, laptop=4_000, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=200, laptop=1_000, paper=None)  # images per test set (the same in every set)
BATCH_SIZE = 128
PRETRAIN_EPOCHS = wb.by_mode(smoke=1, laptop=6, paper=60)  # clean pre-training of both models (lr 0.1)
PRETRAIN_LR = 0.1
TEACHER_EPOCHS = wb.by_mode(smoke=1, laptop=1, paper=5)  # robustify the pre-trained small model: the augmentation
TEACHER_LR = 0.02  # peak rate of the teacher's robust fine-tuning (one cycle)
FULL_FT_EPOCHS = wb.by_mode(smoke=2, laptop=2, paper=10)  # (b): every parameter of the large model
DISTILL_EPOCHS = wb.by_mode(smoke=1, laptop=1, paper=5)  # (c): the tuned fraction, from the teacher
FT_LR = 0.05  # peak rate of every fine-tuning run, (b) and (c) alike (one cycle)
TUNED_BLOCKS = ["stem", "layer1"]  # (c)'s tuned fraction: the first stage, where low-level corruptions act
TEMPERATURE, ALPHA = 2.0, 0.5  # distillation: softmax temperature; weight of the teacher's term (1 - ALPHA: labels)
TRAIN_CORRUPTIONS = ["gaussian_noise", "impulse_noise", "gaussian_blur", "motion_blur"]  # noise and blur families
P_CLEAN = 0.5  # share of each training batch left clean
HELD_OUT = ["fog", "snow", "contrast", "pixelate", "jpeg_compression"]  # weather and digital: never trained on
SEEN_FAMILY = ["shot_noise", "defocus_blur"]  # unseen corruptions of the training families
SEVERITIES = wb.by_mode(smoke=[3], laptop=[3, 5], paper=[1, 2, 3, 4, 5])
MAX_SHARE = 0.6  # (c)'s compute must be at most this share of full fine-tuning's
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")
CHECK_TRANSFER = wb.by_mode(smoke=False, laptop=False, paper=True)  # laptop: see the reading
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # laptop: did not show (see the reading)

# %% [markdown]
# ## The data: clean training images, corrupted test images
#
# Training uses `TRAIN_SUBSET` clean CIFAR-10 images; the corruptions of the training families are made
# on the fly from them. The test sets are the same `TEST_SUBSET` test images, clean and corrupted
# (`wb.load("cifar10", "test", corruption=..., severity=...)`, the CIFAR-10-C definitions of
# `wb.data.corruptions`). Top: what the augmentation does to training images (severity 3). Bottom:
# the held-out corruptions the networks are tested on.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)


@functools.lru_cache(maxsize=None)
def test_sets(test_subset, corruptions, severities):
    """{domain: test set}: clean and every corruption at every severity, the same images."""
    sets = {"clean": wb.load("cifar10", "test", subset=test_subset, seed=0)}
    for c in corruptions:
        for s in severities:
            sets[f"{c}/{s}"] = wb.load("cifar10", "test", subset=test_subset, seed=0, corruption=c, severity=s)
    return sets


sets = test_sets(TEST_SUBSET, tuple(HELD_OUT + SEEN_FAMILY), tuple(SEVERITIES))
rows = {"clean (train)": train.images[:4]}
rows.update({f"train: {c}": wb.data.corruptions.corrupt(train.images[:4], c, 3) for c in TRAIN_CORRUPTIONS})
rows["clean (test)"] = sets["clean"].images[:4]
rows.update({f"held out: {c}": sets[f"{c}/{SEVERITIES[0]}"].images[:4] for c in HELD_OUT})
wb.viz.image_grid(torch.cat(list(rows.values())), titles=[n if i == 0 else "" for n in rows for i in range(4)], cols=4,
                  title="Training images and their corruptions; test images and the held-out corruptions (severity 3)")

# %% [markdown]
# ## The pre-trained models and the cost of each network
#
# Both models are trained once on clean images (`PRETRAIN_EPOCHS` epochs, the laptop recipe, seed 0):
# they play the released pre-trained models, the same for every method and seed, and their cost is not
# counted. Below: parameters and multiply-adds of a forward pass per image of both networks, and the
# share of the large model's parameters that (c) tunes (`wb.shift.robustify.trainable_names`).

# %%
recipe = wb.train.recipe("laptop", batch_size=BATCH_SIZE)
pretrained = wb.train_model(LARGE, train, test, model_kwargs=LARGE_KWARGS, seed=0, progress=False,
                            **dict(recipe, epochs=PRETRAIN_EPOCHS, lr=PRETRAIN_LR, eval_every=PRETRAIN_EPOCHS))
large = pretrained.model.eval()
small_pretrained = wb.train_model(SMALL, train, test, model_kwargs=SMALL_KWARGS, seed=0, progress=False,
                                  **dict(recipe, epochs=PRETRAIN_EPOCHS, lr=PRETRAIN_LR, eval_every=PRETRAIN_EPOCHS))
small_net = small_pretrained.model.eval()
tuned = robustify.trainable_names(large, TUNED_BLOCKS)
share = robustify.trainable_fraction(large, tuned)
costs = wb.models.summary_table({f"large: {LARGE}": large, f"small: {SMALL} {SMALL_KWARGS}": small_net})
costs = costs.set_index("model")
print(f"pre-trained {LARGE}: clean test accuracy {pretrained.test_acc:.1%}; pre-trained {SMALL} {SMALL_KWARGS}: "
      f"{small_pretrained.test_acc:.1%}; (c) tunes {len(tuned)} tensors in "
      f"{TUNED_BLOCKS}: {share:.1%} of its parameters")
costs

# %% [markdown]
# ## Compute, counted before anything is trained
#
# Per image, a training step of a block costs its forward multiply-adds, as much again to pass the
# gradient to its input (needed in every block above the lowest tuned one) and as much again for its
# weights' gradient (tuned blocks only); a teacher adds a forward pass (`robustify.step_macs`, rule in
# the module docstring). Tuning the *first* stage saves only the weight gradients of the frozen
# stages: the gradient still passes through the whole network. The saving comes mostly from the
# cheap teacher and the fewer steps. Steps: `epochs x ceil(TRAIN_SUBSET / BATCH_SIZE)`. The equal-compute
# variant of (b) gets as many full steps as fit in (c)'s total.

# %%
steps_per_epoch = -(-len(train) // BATCH_SIZE)
teacher_macs = robustify.training_macs(small_net, None, TEACHER_EPOCHS * steps_per_epoch, BATCH_SIZE)
distill_macs = robustify.training_macs(large, tuned, DISTILL_EPOCHS * steps_per_epoch, BATCH_SIZE, teachers=[small_net])
full_step = robustify.training_macs(large, None, 1, BATCH_SIZE)
full_macs = full_step * FULL_FT_EPOCHS * steps_per_epoch
ours_macs = teacher_macs + distill_macs
EQUAL_STEPS = max(1, int(ours_macs // full_step))  # full fine-tuning steps within (c)'s compute
budget = pd.DataFrame([
    {"method": "(b) full fine-tuning", "steps": FULL_FT_EPOCHS * steps_per_epoch, "GMACs": full_macs / 1e9},
    {"method": "(b=) full fine-tuning, equal compute", "steps": EQUAL_STEPS, "GMACs": EQUAL_STEPS * full_step / 1e9},
    {"method": "(c) small teacher", "steps": TEACHER_EPOCHS * steps_per_epoch, "GMACs": teacher_macs / 1e9},
    {"method": "(c) distil into the first stage", "steps": DISTILL_EPOCHS * steps_per_epoch,
     "GMACs": distill_macs / 1e9},
    {"method": "(c) in all", "steps": None, "GMACs": ours_macs / 1e9}]).set_index("method")
budget["share of (b)"] = budget.GMACs / (full_macs / 1e9)
budget.round(3)

# %% [markdown]
# ## The runs
#
# Every fine-tuning run starts from the pre-trained weights (`wb.transfer.StartFrom`), sees the same
# images with the same augmentation (`CorruptionAugment(TRAIN_CORRUPTIONS, severities 1-5, half the
# batch clean)` on top of the usual crops and flips) and the same one-cycle recipe at peak rate
# `FT_LR`; the seed fixes the data order and the corruptions drawn. The teacher of seed `s` is the
# pre-trained small model fine-tuned with seed `s` on the same augmented data (`TEACHER_EPOCHS` at peak
# rate `TEACHER_LR`, every parameter). (c) trains only the parameters `tuned` (`fit(params=...)`) on
# `(1 - ALPHA) CE(labels) + ALPHA T^2 KL(teacher || student)` (`wb.transfer.Distillation`), the
# teacher seeing the same corrupted batch. BatchNorm's running
# statistics are buffers and follow the new data in every method (in (c) too). Each network is then
# evaluated unchanged on every test set.

# %%
augment = robustify.CorruptionAugment(train.mean, train.std, TRAIN_CORRUPTIONS, severities=(1, 2, 3, 4, 5),
                                      p_clean=P_CLEAN)
finetune = dict(recipe, lr=FT_LR)
constants = dict(large=LARGE, small=SMALL, small_kwargs=SMALL_KWARGS, train_subset=TRAIN_SUBSET,
                 test_subset=TEST_SUBSET, pretrain_epochs=PRETRAIN_EPOCHS, teacher_epochs=TEACHER_EPOCHS,
                 teacher_lr=TEACHER_LR, small_pretrained=True,
                 full_ft_epochs=FULL_FT_EPOCHS, distill_epochs=DISTILL_EPOCHS, ft_lr=FT_LR, tuned=TUNED_BLOCKS,
                 temperature=TEMPERATURE, alpha=ALPHA, corruptions=TRAIN_CORRUPTIONS, p_clean=P_CLEAN,
                 held_out=HELD_OUT, seen=SEEN_FAMILY, severities=SEVERITIES)
METHODS = ["(a) none", "(b) full fine-tuning", "(b=) full FT, equal compute", "(c) small teacher alone",
           "(c) teacher -> first stage"]


def teacher_kwargs():
    return dict(recipe, epochs=TEACHER_EPOCHS, lr=TEACHER_LR, eval_every=TEACHER_EPOCHS,
                algorithms=[wb.transfer.StartFrom(small_net), augment], model_kwargs=SMALL_KWARGS)


def method_kwargs(method, seed):
    """(registry name, fit arguments) of a method's training run."""
    start = [wb.transfer.StartFrom(large), augment]
    if method == "(b) full fine-tuning":
        return LARGE, dict(finetune, epochs=FULL_FT_EPOCHS, eval_every=FULL_FT_EPOCHS, algorithms=start)
    if method == "(b=) full FT, equal compute":
        return LARGE, dict(finetune, epochs=FULL_FT_EPOCHS, eval_every=FULL_FT_EPOCHS, max_steps=EQUAL_STEPS,
                           algorithms=start)
    if method == "(c) small teacher alone":
        return SMALL, teacher_kwargs()
    teacher = wb.train_model(SMALL, train, test, seed=seed, progress=False, **teacher_kwargs()).model.eval()
    task = wb.transfer.Distillation(teacher, temperature=TEMPERATURE, alpha=ALPHA)
    return LARGE, dict(finetune, epochs=DISTILL_EPOCHS, eval_every=DISTILL_EPOCHS, algorithms=start, task=task,
                       params=tuned, label_smoothing=0.0)


def run(method, seed):
    evaluate = functools.partial(wb.shift.evaluate_stream, batch_size=500)
    if method == "(a) none":
        acc = evaluate(wb.shift.NoAdapt(large), sets)
        return {"seconds": 0.0, "macs": 0.0, "moved_outside": 0, "domain_acc": dict(zip(acc.domain, acc.acc))}
    name, kw = method_kwargs(method, seed)
    model_kwargs = kw.pop("model_kwargs", LARGE_KWARGS)
    record = wb.train.run_record(name, train, test, seed, model_kwargs=model_kwargs, **kw)
    model = wb.train_model(name, train, test, seed=seed, model_kwargs=model_kwargs, progress=False, **kw).model
    acc = evaluate(wb.shift.NoAdapt(model), sets)
    moved = 0  # parameters outside the tuned fraction that changed (must be 0 for (c))
    if name == LARGE and "params" in kw:
        before = dict(large.named_parameters())
        moved = sum(int(not torch.equal(p.detach().cpu(), before[n].detach().cpu()))
                    for n, p in model.named_parameters() if n not in kw["params"])
    macs = {"(b) full fine-tuning": full_macs, "(b=) full FT, equal compute": EQUAL_STEPS * full_step,
            "(c) small teacher alone": teacher_macs, "(c) teacher -> first stage": distill_macs}[method]
    return {"seconds": record["seconds"], "macs": macs, "moved_outside": moved,
            "domain_acc": dict(zip(acc.domain, acc.acc))}


grid = [dict(method=m, seed=s) for m in METHODS for s in (SEEDS[:1] if m == "(a) none" else SEEDS)]  # (a): one model
runs = wb.sweep(run, grid, backend=BACKEND,
                folder=wb.sweep_folder("robustify", constants))
acc = pd.DataFrame([{"method": r.method, "seed": r.seed, "domain": d, "acc": a}
                    for r in runs.itertuples() for d, a in r.domain_acc.items()])
acc["corruption"] = acc.domain.str.split("/").str[0]
acc["severity"] = acc.domain.str.split("/").str[1].fillna(0).astype(int)
acc["group"] = acc.corruption.map(lambda c: "clean" if c == "clean" else "held out" if c in HELD_OUT
                                  else "seen families")
per_run = acc.groupby(["method", "seed", "group"]).acc.mean().unstack("group")
# (c)'s total cost: its teacher's run and its distillation run, seed by seed
cost = runs.set_index(["method", "seed"])[["macs", "seconds"]]
teacher_cost = cost.loc["(c) small teacher alone"]
ours = cost.loc["(c) teacher -> first stage"]
cost.loc[[("(c) teacher -> first stage", s) for s in SEEDS], ["macs", "seconds"]] = (ours + teacher_cost).values
per_run = per_run.join(cost)
per_run[["clean", "held out", "seen families", "macs", "seconds"]].round(4)

# %% [markdown]
# ## Robustness against compute
#
# The paper's figure 1 plots ImageNet-C accuracy against training time. Here: the mean accuracy over
# the held-out corruptions (both severities) of every run against its training compute (for (c) the
# teacher's run included), and the clean accuracy beside it.

# %%
points = per_run.reset_index()
points["GMACs"] = points.macs / 1e9
fig = make_subplots(rows=1, cols=2, subplot_titles=["held-out corruptions", "clean test images"])
for i, (m, g) in enumerate(points.groupby("method", sort=False)):
    colour = px.colors.qualitative.Plotly[METHODS.index(m)]
    for col, y in ((1, "held out"), (2, "clean")):
        fig.add_trace(go.Scatter(x=g.GMACs, y=g[y], mode="markers", name=m, legendgroup=m, showlegend=col == 1,
                                 marker=dict(color=colour, size=10), hovertext=[f"seed {s}" for s in g.seed]),
                      row=1, col=col)
fig.update_xaxes(title="training compute (GMACs)")
fig.update_yaxes(title="accuracy")
fig.update_layout(height=420, width=900, title=f"Accuracy against training compute ({len(SEEDS)} seeds; "
                                               f"the small teacher is evaluated on its own)")
fig

# %% [markdown]
# Accuracy per test set (mean over seeds, bars one standard deviation):

# %%
by_domain = acc.groupby(["method", "domain"]).acc.agg(["mean", "std"]).reset_index()
order = ["clean"] + [f"{c}/{s}" for c in HELD_OUT + SEEN_FAMILY for s in SEVERITIES]
fig = px.bar(by_domain, x="domain", y="mean", error_y="std", color="method", barmode="group",
             category_orders={"domain": order, "method": METHODS}, labels={"mean": "test accuracy"},
             title="Accuracy per test set (held-out corruptions, then unseen members of the training families)")
fig.add_vline(x=len(HELD_OUT) * len(SEVERITIES) + 0.5, line_dash="dot")
fig

# %% [markdown]
# The same as a table: mean over seeds and the spread (std) per group of test sets, compute and seconds.

# %%
summary = per_run.groupby("method", sort=False).agg(["mean", "std"])
summary = summary.reindex(METHODS)
summary.columns = [f"{a} {b}" for a, b in summary.columns]
summary["GMACs mean"] = summary["macs mean"] / 1e9
summary[["clean mean", "clean std", "held out mean", "held out std", "seen families mean", "seen families std",
         "GMACs mean", "seconds mean"]].round(4)

# %% [markdown]
# ### Explore a corruption
#
# Pick a held-out (or seen-family) corruption and a severity: four clean test images above the same
# images corrupted, and the accuracy of each method on that test set (bars: one standard deviation).

# %%
def render(corruption=HELD_OUT[0], severity=SEVERITIES[-1]):
    domain = f"{corruption}/{severity}"
    fig = make_subplots(rows=3, cols=4, row_heights=[0.22, 0.22, 0.56], vertical_spacing=0.08,
                        specs=[[{}] * 4, [{}] * 4, [{"colspan": 4}, None, None, None]],
                        subplot_titles=["clean"] + [""] * 3 + [domain] + [""] * 3 + ["test accuracy"])
    for row, d in ((1, "clean"), (2, domain)):
        for i, img in enumerate(wb.viz.to_rgb_array(sets[d].images[:4])):
            fig.add_trace(go.Image(z=img, hoverinfo="skip"), row=row, col=i + 1)
    for i, m in enumerate(METHODS):
        a = acc[(acc.domain == domain) & (acc.method == m)].acc
        fig.add_trace(go.Bar(x=[m], y=[a.mean()], error_y=dict(array=[a.std() if len(a) > 1 else 0]),
                             marker_color=px.colors.qualitative.Plotly[i], showlegend=False), row=3, col=1)
    for row in (1, 2):
        fig.update_xaxes(visible=False, row=row)
        fig.update_yaxes(visible=False, row=row)
    fig.update_yaxes(range=[0, 1], row=3, col=1)
    fig.update_layout(height=620, width=820, title=f"{domain}: the images and how each method does")
    return fig


wb.viz.explorer(render, corruption=HELD_OUT + SEEN_FAMILY, severity=SEVERITIES)

# %% [markdown]
# ## The claim, as a check that can fail
#
# Per run: the clean accuracy and the mean accuracy over the held-out corruptions (every held-out
# corruption at every severity in `SEVERITIES`). The spread of a comparison is the larger of the two
# methods' standard deviations over seeds; (a) is one model (nothing random to repeat), spread 0.
#
# 1. Every mode, the mechanism: (c) changed no parameter outside its tuned fraction (`moved_outside`
#    is 0), the fraction is below 10% of the parameters, and (c)'s counted compute, its teacher's
#    included, is at most `MAX_SHARE` of full fine-tuning's.
# 2. Paper mode, the transfer of robustness: (c) is more accurate on the held-out corruptions than (a)
#    in every seed and by more than the spread, although only the first stage moved and only the small
#    teacher (and the labels) guided it. With the notebook's earlier teacher (a ResNet-8 of width 8
#    trained from scratch) this held at one thread (+0.6 to +1.1 points per seed) and failed at two
#    threads with the same code and seeds (+0.06, 0.0 and -0.06 points). With the pre-trained teacher it
#    holds at both, by +0.6 to +1.3 points at one thread and +0.3 to +0.6 at two: by no more than the
#    swing the order of the sums makes, and hardly more than the same runs without the teacher, so
#    laptop mode prints it and asserts only check 1.
# 3. Paper mode, the rest of the claim: (c) is at most `max(spread, 1 point)` below full fine-tuning
#    (b) on the held-out corruptions; at equal compute it is at least as accurate as full fine-tuning
#    (b=) (within the spread); its clean accuracy is above (b)'s (less forgetting). In laptop mode it
#    is printed, not asserted: the timed run met the first and last parts and missed the second.

# %%
means = per_run.groupby("method").mean()
stds = per_run.groupby("method").std().fillna(0)
A, B, BEQ, C = "(a) none", "(b) full fine-tuning", "(b=) full FT, equal compute", "(c) teacher -> first stage"
gain = per_run.loc[C, "held out"] - means.loc[A, "held out"]  # per seed
spread = lambda col, *ms: max(stds.loc[m, col] for m in ms)  # noqa: E731
print(means[["clean", "held out", "seen families"]].round(4).to_string())
print(f"(c) - (a) on held-out, per seed: {gain.round(4).to_dict()}; spread {spread('held out', C):.4f}")
print(f"(c) - (b) held-out: {means.loc[C, 'held out'] - means.loc[B, 'held out']:+.4f} (spread "
      f"{spread('held out', B, C):.4f}); (c) - (b=): {means.loc[C, 'held out'] - means.loc[BEQ, 'held out']:+.4f} "
      f"(spread {spread('held out', BEQ, C):.4f})")
print(f"clean: (c) {means.loc[C, 'clean']:.4f}, (b) {means.loc[B, 'clean']:.4f}, (a) {means.loc[A, 'clean']:.4f}")
print(f"compute: (c) {ours_macs / 1e9:.1f} GMACs = {ours_macs / full_macs:.0%} of (b)'s {full_macs / 1e9:.1f}; "
      f"tuned share {share:.1%}")
assert int(runs[runs.method == C].moved_outside.max()) == 0, "(c) must leave the frozen parameters unchanged"
assert share < 0.10, f"(c) should tune a small fraction of the large model, not {share:.1%}"
assert ours_macs <= MAX_SHARE * full_macs, f"(c) should cost at most {MAX_SHARE:.0%} of full fine-tuning"
print(f"seconds: (c) {means.loc[C, 'seconds']:.1f} s (teacher included) against (b) {means.loc[B, 'seconds']:.1f} s "
      f"and (b=) {means.loc[BEQ, 'seconds']:.1f} s")
if CHECK_TRANSFER:
    assert (gain > 0).all() and gain.mean() > spread("held out", C), \
        f"(c) should beat the un-robustified model on held-out corruptions in every seed, beyond the spread: " \
        f"{gain.to_dict()}"
if CHECK_CLAIM:
    assert means.loc[C, "held out"] >= means.loc[B, "held out"] - max(spread("held out", B, C), 0.01), \
        "(c) should come within the spread (or 1 point) of full robust fine-tuning on held-out corruptions"
    assert means.loc[C, "held out"] >= means.loc[BEQ, "held out"] - spread("held out", BEQ, C), \
        "at equal compute (c) should be at least as robust as full fine-tuning"
    assert means.loc[C, "clean"] > means.loc[B, "clean"], "(c) should keep more clean accuracy than full fine-tuning"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-07, 5.7 minutes on 2 cores from an empty cache) the
# pre-trained ResNet-20 reached 49.1% clean accuracy and 36.3% on the held-out corruptions (mean over five
# corruptions at severities 3 and 5); the pre-trained ResNet-8 of width 16, 46.5% clean. Full robust
# fine-tuning (b), 64 steps, 999 GMACs: 49.7% clean, 37.6% held-out, +1.3, +1.1 and +1.4 points above (a)
# in the three seeds. At equal multiply-adds, 38 steps (b=): 49.6% clean, 37.1% held-out. The paper's
# recipe (c), 595 GMACs in all (60% of (b): the teacher's robustification 152, the distillation 444),
# tuning 5.3% of the parameters: 50.0% clean and 36.75% held-out, **+0.6, +0.3 and +0.3 points** above
# (a) in the three seeds (spread 0.2), 0.8 points below (b) and 0.4 below (b=); on clean images it kept
# more than (b) (50.0% against 49.7%). In seconds (c) took 12.8 s (teacher included) against (b)'s
# 16.2 s and (b=)'s 10.2 s: a backward pass through the frozen stages above the tuned one is not free.
#
# So robustness does reach the first stage, a little, and laptop mode still does not assert it. The
# margin is small and moves with the arithmetic: the same code and seeds at *one* thread (whose sums run
# in another order) gave a pre-trained ResNet-20 of 50.3% / 37.3% and gains of +1.3, +0.6 and +1.2 for
# (c) (and +1.1 to +1.9 for (b)), and the earlier design of this notebook (a ResNet-8 of width 8 trained
# from scratch as the teacher) gained +0.6 to +1.1 at one thread and nothing at two. And little of it is
# the teacher's: the robustified teacher (one epoch at rate 0.02) reached 45.1% clean and 33.0% held-out,
# below its student on every test set, and in the one-thread pilot the same runs with `ALPHA = 0` (labels
# only, no teacher) gained +1.0, +0.3 and +1.4 points (mean 0.9) against +1.3, +0.6 and +1.2 (mean 1.0)
# with it. A teacher robustified for two epochs at rate 0.05 (49.0% clean, 35.7% held-out, still below
# the student) gave +1.2 at seed 0, no more, and would cost 75% of (b). What moves the first stage is
# mostly the corrupted images themselves, with BatchNorm statistics that follow them.
#
# Why, at this scale: the paper's teachers are strong networks, pre-trained at ImageNet scale and then
# robustified (see its section 4). Here one epoch of corrupted images does not lift a 78k-parameter
# network, still learning, above a 272k-parameter one on corruption families it never saw, so the
# teacher knows nothing the student lacks; and the forgetting the paper guards against (transfer and zero-shot abilities of
# converged models) has no counterpart in the clean accuracy of a network that is still learning.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | models | large pre-trained models (CNNs and transformers, uni- and multi-modal, CLIP among them) on ImageNet; smaller pre-trained models, robustified, as teachers (see the paper's section 4) | ResNet-20 and ResNet-8 of width 16, both pre-trained on 4,000 clean CIFAR-10 images; the ResNet-8 robustified for one epoch |
# | robustification | strong augmentation of the small teacher; complete fine-tuning with AugMix and WiSE as the baselines (figure 1; see its tables for ImageNet-C, -R, -S, -A) | CIFAR-10-C noise and blur corruptions on half of each batch |
# | robustness | ImageNet-C/R/S/A: the method improves over the pre-trained models (see its tables for the numbers) | held-out weather and digital corruptions, severities 3 and 5 |
# | cost | figure 1: better ImageNet-C accuracy than AugMix and WiSE complete fine-tuning in much less training time (the Pareto front) | multiply-adds of every pass, teacher included, and seconds |
# | other properties | transfer learning and zero-shot accuracy preserved, which full fine-tuning loses (see its tables) | clean accuracy only |
#
# Scale: the paper tunes models of up to hundreds of millions of parameters on 1.28 million images; here
# the "large" model has 272k parameters and is far from converged, so what compares is the direction
# of the effects and the compute ratio, not the accuracies.

# %% [markdown]
# ## What to try next
#
# - `TUNED_BLOCKS = ["layer3", "fc"]`: tune the *last* stage instead. The gradient then stops at
#   layer 3, so a step costs far less (see the compute table), but corruptions act on low-level
#   features: does robustness still transfer?
# - `ALPHA = 0.0` (labels only, no teacher): is it the teacher or just the augmented data that makes
#   the first stage robust? And `ALPHA = 1.0`: the teacher alone.
# - `TEACHER_EPOCHS = 2`: a longer-robustified teacher (in the pilot, seed 0: 49.0% clean and 35.7%
#   held-out against 44.9% and 33.8% after one epoch), at 75% of full fine-tuning's compute in all:
#   does a better teacher transfer more? And `SMALL_KWARGS = {"width": 8}`: a 4x cheaper teacher.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **The cost of tuning a fraction.** `block_macs` lists the forward multiply-adds per image of a
# network's blocks, input first; `trainable` says for each block whether its weights train. Return
# the multiply-adds of one training step per image: the forward pass, plus for every block *above* the
# lowest trainable one the cost of passing the gradient to its input (its forward cost), plus for every
# trainable block the cost of its weights' gradient (its forward cost again). With nothing trainable
# it is the forward pass alone.

# %%
def step_macs(block_macs, trainable):
    raise NotImplementedError  # your code here


wb.exercises.check("step_macs", step_macs)
