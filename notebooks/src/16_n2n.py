# %% [markdown]
# # N2N learning: a policy that learns how to shrink a network
#
# Ashok, Rhinehart, Beainy & Kitani, *N2N Learning: Network to Network Compression via Policy
# Gradient Reinforcement Learning*, ICLR 2018 ([arXiv 1709.06030](https://arxiv.org/abs/1709.06030)).
#
# **The question.** A trained network is too big for its device. Which smaller network should
# replace it? Hand-made answers (halve every layer, drop the last stage) are guesses, and the space
# of reduced architectures is far too large to try them all.
#
# **The idea.** Let a policy learn it. Derive every candidate *student* from the *teacher*: first a
# recurrent controller reads the teacher's layers and decides, per layer, to keep or remove it; then
# a second controller decides, per remaining layer, how much of it to keep. Each sampled student is
# trained briefly by knowledge distillation from the teacher and scored by a reward that wants both a
# small student and an accurate one,
#
# $$R = C(2 - C)\cdot\frac{A_\text{student}}{A_\text{teacher}},\qquad C = 1 - \frac{\text{params}_\text{student}}{\text{params}_\text{teacher}},$$
#
# and the controllers follow the policy gradient (REINFORCE with a moving-average baseline
# $b$): $\nabla \approx \frac1m\sum_i (R_i - b)\,\nabla\log\pi(a_i)$. The paper reports compression
# of more than 10x for networks such as ResNet-34 with accuracy similar to the teacher's.
#
# **What is checked here.** A CIFAR-10 ResNet-20 of base width 8 (69 k parameters) is the teacher.
# Its "layers" are its nine residual blocks: removal drops a block with an identity skip (the two
# with a projection shortcut always stay), shrinkage keeps 100%, 75%, 50% or 25% of a block's inner
# filters (`wb.prune.n2n`). Each rollout distills its student for 10 steps and scores it on 500
# held-out *training* images; the test images only score the final students. The random policy (keep
# each block with probability 1/2, draw each ratio uniformly) gets the same number of rollouts, and
# the learned student is compared on the test set with random students of the same compression.
#
# **Status: mechanism only.** The paper's claim -- a student at least 3x smaller, within a few
# points of the teacher, better than a random policy's student of the same size -- is asserted in
# paper mode. At laptop scale a rollout's student trains on 640 images (a thirtieth of an epoch) and
# the claim does not show (see "Reading the results"). Asserted in laptop mode, the mechanism: in
# both stages the controller's mean reward over its last third of updates is above the random
# policy's mean reward at the same budget, by more than twice the standard error of the difference.
# Measured and shown: the learned student's size and test accuracy against the teacher's and against
# random students of its size.

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
N2N = wb.prune.n2n

# %% tags=["parameters"]
MODEL = wb.by_mode(smoke="resnet14", laptop="resnet20", paper="resnet56")
WIDTH = wb.by_mode(smoke=4, laptop=8, paper=16)  # base width of the teacher
TRAIN_SUBSET = wb.by_mode(smoke=500, laptop=20_000, paper=45_000)  # the teacher's and the students' training images
HELD_OUT = wb.by_mode(smoke=100, laptop=500, paper=5_000)  # training images left out: every rollout is scored here
TEST_SUBSET = wb.by_mode(smoke=200, laptop=2_000, paper=None)  # only the final students are scored here
EPOCHS = wb.by_mode(smoke=1, laptop=5, paper=60)  # the teacher
SEARCH_SEEDS = wb.by_mode(smoke=[0], laptop=[0], paper=[0, 1, 2])  # controller initialization and sampling
ROLLOUTS = wb.by_mode(smoke=2, laptop=8, paper=8)  # students per controller update
UPDATES = wb.by_mode(smoke={"removal": 2, "shrink": 2}, laptop={"removal": 12, "shrink": 10},
                     paper={"removal": 30, "shrink": 30})
DISTILL_STEPS = wb.by_mode(smoke=2, laptop=10, paper=200)  # distillation steps of each rollout's student
DISTILL_BATCH = wb.by_mode(smoke=32, laptop=64, paper=128)
CONTROLLER_LR = 0.03  # chosen on held-out rewards (see below), never on the test images
FINAL_STEPS = wb.by_mode(smoke=5, laptop=150, paper=6_000)  # the final students' distillation (batch 128)
RANDOM_STUDENTS = wb.by_mode(smoke=2, laptop=3, paper=3)  # random students of the learned compression, per seed
TOLERANCE = wb.by_mode(smoke=0.1, laptop=0.02, paper=0.02)  # a random student is at most this much smaller
SMALLER = 3  # the claim: at least 3x fewer parameters than the teacher
FEW_POINTS = 0.03  # the claim: within 3 points of the teacher (asserted in paper mode)
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)

# %% [markdown]
# ## The teacher, on real data
#
# The laptop recipe (one-cycle SGD, label smoothing, crop-and-flip) on 20,000 CIFAR-10 images for
# 5 epochs, trained once and cached. The 500 held-out images come from the training split, after the
# teacher's images (`offset=`): the search never sees a test image.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=0)
held = wb.load("cifar10", "train").subset(HELD_OUT, seed=0, offset=len(train))
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
recipe = wb.train.recipe("laptop", epochs=EPOCHS)
teacher = wb.train.train_model(MODEL, train, None, model_kwargs={"width": WIDTH}, seed=0, **recipe).model.eval()
teacher_params = sum(p.numel() for p in teacher.parameters())
teacher_held = wb.evaluate(teacher, held)["acc"]
teacher_test = wb.evaluate(teacher, test)["acc"]
print(f"{MODEL} (width {WIDTH}): {teacher_params:,} parameters; {teacher_test:.2%} on {len(test):,} test images, "
      f"{teacher_held:.2%} on {len(held):,} held-out training images")

# %% [markdown]
# ## The action space: where the parameters are
#
# Each residual block is one decision. A block's cost grows with the square of its width, so the
# blocks of the last stage hold most of the parameters; the first stage's blocks are cheap. The
# reward only counts parameters, so a good policy should learn *which* blocks pay: the two with a
# projection shortcut (hatched) cannot be removed, only shrunk.

# %%
blocks = N2N.block_names(teacher)
layout = pd.DataFrame({"block": blocks, "removable": N2N.removable_blocks(teacher),
                       "parameters": [sum(p.numel() for p in teacher.get_submodule(b).parameters()) for b in blocks]})
layout["share"] = layout.parameters / teacher_params
fig = px.bar(layout, x="block", y="share", color="removable", pattern_shape="removable",
             pattern_shape_map={True: "", False: "/"}, hover_data=["parameters"],
             labels={"share": "share of the teacher's parameters"},
             title=f"{MODEL}: the parameters of each residual block")
fig

# %% [markdown]
# ## The two-stage search, and the random policy at the same budget
#
# For each search seed: the removal controller (a bidirectional LSTM over the blocks) runs
# `UPDATES["removal"]` updates of `ROLLOUTS` students each; the shrink controller (an LSTM that also
# reads its previous choice) then starts from the removal stage's best student, keeping its removed
# blocks. The random policy gets the same rollouts in each stage (in the shrink stage on the same
# removed blocks), so the two are compared at an equal budget of distilled students. Every rollout
# is distilled `DISTILL_STEPS` steps (batch `DISTILL_BATCH`) and scored on the held-out images.
#
# **The controller's learning rate** (Adam) was chosen in a pilot of the removal stage on this
# teacher and these held-out images (16 updates of 8 rollouts, seed 0), by the mean reward of the
# last four updates: 0.37 at 0.01 (still rising), 0.41 at 0.1 (collapsed within five updates onto
# removing one block of the last stage and keeping the other), 0.53 at 0.03; the random policy
# averaged 0.23. The controller's output layer starts at zero, so before its first update it *is*
# the random policy.
#
# Each search writes a checkpoint after every update into the cache, so a rerun (or a killed one)
# resumes where it stopped and a finished search is only read.

# %%
constants = dict(model=MODEL, width=WIDTH, train=TRAIN_SUBSET, held=HELD_OUT, epochs=EPOCHS, rollouts=ROLLOUTS,
                 updates=UPDATES, distill_steps=DISTILL_STEPS, distill_batch=DISTILL_BATCH, lr=CONTROLLER_LR)
folder = wb.sweep_folder("n2n", constants)
search = dict(rollouts_per_update=ROLLOUTS, distill_steps=DISTILL_STEPS, batch_size=DISTILL_BATCH,
              controller_lr=CONTROLLER_LR, teacher_acc=teacher_held)
results = {}
for seed in SEARCH_SEEDS:
    for policy in ("controller", "random"):
        results[(seed, "removal", policy)] = N2N.n2n_search(
            teacher, train, held, stage="removal", policy=policy, updates=UPDATES["removal"], seed=seed,
            checkpoint_dir=folder / f"removal-{policy}-{seed}", progress=True, **search)
    removed = results[(seed, "removal", "controller")].best_removal  # both shrink searches start here
    for policy in ("controller", "random"):
        results[(seed, "shrink", policy)] = N2N.n2n_search(
            teacher, train, held, stage="shrink", removal_actions=removed, policy=policy, updates=UPDATES["shrink"],
            seed=seed, checkpoint_dir=folder / f"shrink-{policy}-{seed}", progress=True, **search)
history = pd.concat([r.history.assign(seed=s, stage=st, policy=p) for (s, st, p), r in results.items()],
                    ignore_index=True)
curves = history.groupby(["seed", "stage", "policy", "update"]).reward.mean().reset_index()
fig = px.line(curves, x="update", y="reward", color="policy", facet_col="stage", line_dash="seed", markers=True,
              category_orders={"stage": ["removal", "shrink"]},
              labels={"reward": f"mean reward of the update's {ROLLOUTS} students"},
              title="REINFORCE against the random policy, at the same number of distilled students")
fig

# %% [markdown]
# ### What the removal controller learned
#
# The probability of keeping each block after the last update (the blocks with a projection
# shortcut are always kept), and the students each search rated best on the held-out images.

# %%
keep = pd.DataFrame({f"seed {s}": results[(s, "removal", "controller")].policy.keep_logits().sigmoid().detach().numpy()
                     for s in SEARCH_SEEDS}, index=blocks)
keep.loc[~layout.removable.to_numpy()] = 1.0  # the blocks with a projection shortcut are never removed
fig = px.bar(keep.rename_axis("block").reset_index().melt(id_vars="block", var_name="search", value_name="p"),
             x="block", y="p", color="search", barmode="group", labels={"p": "P(keep)"},
             title="The removal policy after learning: the probability of keeping each block")
fig

# %%
def describe(removal, shrink):
    """One student as a row of per-block choices: 'removed' or the share of conv1 filters kept."""
    return {b: ("removed" if not k else f"{r:.0%}") for b, k, r in zip(blocks, removal, shrink)}


best = pd.DataFrame([{"seed": s, "stage": st, "policy": p, "reward": r.best_reward,
                      "compression": 1 - N2N.student_params(teacher, r.best_removal, r.best_shrink) / teacher_params,
                      **describe(r.best_removal, r.best_shrink)} for (s, st, p), r in results.items()])
best.round(3)

# %% [markdown]
# ### Explore the search
#
# Every rollout up to the chosen update, in the plane of compression and held-out accuracy after
# its short distillation; the grey curves are students of equal reward. The random policy's
# students stay scattered; the controller's gather where the reward is high.

# %%
def render_search(stage, update):
    seen = history[(history.stage == stage) & (history["update"] <= update)]
    fig = px.scatter(seen, x="compression", y="acc", color="policy", symbol="policy", opacity=0.7,
                     hover_data=["update", "rollout", "reward", "seed"],
                     labels={"acc": "held-out accuracy after the short distillation"},
                     title=f"{stage} stage: every rollout up to update {update}")
    cs = [i / 100 for i in range(1, 100)]
    for level in (0.2, 0.4, 0.6, 0.8):
        acc = [level * teacher_held / (c * (2 - c)) for c in cs]
        fig.add_trace(go.Scatter(x=cs, y=acc, mode="lines", line=dict(color="lightgray", dash="dot"),
                                 name=f"R = {level}", hoverinfo="name", showlegend=False))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, max(1.1 * teacher_held, float(history.acc.max()) + 0.05)])
    return fig


wb.viz.explorer(render_search, stage=["removal", "shrink"], update=list(range(max(UPDATES.values()))))

# %% [markdown]
# ## The learned student against random students of the same size
#
# The search's answer is the student of highest held-out reward from the shrink stage. It is
# distilled `FINAL_STEPS` steps (batch 128) and scored on the test images. Beside it,
# `RANDOM_STUDENTS` random students of the same compression (`wb.prune.n2n.random_like`: blocks
# removed in a random order until the student is as compressed as the learned one after removal,
# then random blocks shrunk until it is as compressed as the learned one; never larger, at most
# `TOLERANCE` smaller), distilled the same way; a random draw may land on the learned student itself
# (the column "same as learned"). Every final distillation is cached.

# %%
def final(removal, shrink, seed):
    key = dict(constants, removal=list(removal), shrink=list(shrink), steps=FINAL_STEPS, seed=seed, test=TEST_SUBSET,
               teacher=wb.train.model_fingerprint(teacher))
    return wb.cached(lambda: N2N.distill_student(teacher, train, test, removal, shrink, steps=FINAL_STEPS, seed=seed),
                     key=key, name="n2n_final")


rows = []
for seed in SEARCH_SEEDS:
    learned = results[(seed, "shrink", "controller")]
    rows.append({"seed": seed, "student": "N2N (learned)", "draw": 0, "same as learned": True,
                 **final(learned.best_removal, learned.best_shrink, seed),
                 **describe(learned.best_removal, learned.best_shrink)})
    for draw in range(RANDOM_STUDENTS):
        r_keep, r_shrink = N2N.random_like(teacher, learned.best_removal, learned.best_shrink, seed=draw,
                                           tolerance=TOLERANCE)
        rows.append({"seed": seed, "student": "random, same compression", "draw": draw,
                     "same as learned": (r_keep, r_shrink) == (learned.best_removal, learned.best_shrink),
                     **final(r_keep, r_shrink, seed), **describe(r_keep, r_shrink)})
finals = pd.DataFrame(rows)
finals["times smaller"] = teacher_params / finals.params
finals["below teacher"] = teacher_test - finals.acc
finals.round(4)

# %%
fig = px.strip(finals, x="student", y="acc", color="student", facet_col="seed",
               hover_data=["params", "compression", "draw"], labels={"acc": "test accuracy"},
               title=f"Students of {MODEL} after {FINAL_STEPS} distillation steps (test set)")
fig.add_hline(y=teacher_test, line_dash="dash", line_color="gray",
              annotation_text=f"teacher ({teacher_params:,} parameters)")
fig

# %% [markdown]
# ## The claim, as checks that can fail
#
# 1. Learning, the mechanism (laptop and paper mode): for each seed and stage, the mean reward of the
#    controller's rollouts over its last third of updates is above the mean reward of all the random
#    policy's rollouts (the same number of students, the same held-out images), by more than twice
#    the standard error of that difference.
# 2. The claim (paper mode): each seed's learned student is at least `SMALLER`x smaller than the
#    teacher, within `FEW_POINTS` of the teacher's test accuracy, at least as accurate as the best
#    random student of its compression and ahead of their mean by more than their spread (max - min).

# %%
learning = []
for (seed, stage, policy), r in results.items():
    if policy == "controller":
        h = r.history
        last = h[h["update"] >= UPDATES[stage] - max(UPDATES[stage] // 3, 1)].reward
        rand = results[(seed, stage, "random")].history.reward
        se = (last.var() / len(last) + rand.var() / len(rand)) ** 0.5
        learning.append({"seed": seed, "stage": stage, "controller, first update": h[h["update"] == 0].reward.mean(),
                         "controller, last third": last.mean(), "random policy": rand.mean(),
                         "gap": last.mean() - rand.mean(), "2 SE": 2 * se})
learning = pd.DataFrame(learning)
print(learning.round(3).to_string(index=False))
versus = []
for seed in SEARCH_SEEDS:
    one = finals[finals.seed == seed]
    mine, rand = one[one.student == "N2N (learned)"].iloc[0], one[one.student != "N2N (learned)"].acc
    versus.append({"seed": seed, "times smaller": mine["times smaller"], "learned": mine.acc, "teacher": teacher_test,
                   "random mean": rand.mean(), "random best": rand.max(), "random spread": rand.max() - rand.min()})
versus = pd.DataFrame(versus)
print(versus.round(4).to_string(index=False))
if CHECK_MECHANISM:
    for _, row in learning.iterrows():
        assert row.gap > row["2 SE"], \
            f"seed {row.seed}, {row.stage} stage: the controller should out-earn the random policy: {row.to_dict()}"
if CHECK_CLAIM:
    for _, row in versus.iterrows():
        assert row["times smaller"] >= SMALLER, \
            f"seed {row.seed}: the learned student is only {row['times smaller']:.2f}x smaller"
        assert row.teacher - row.learned <= FEW_POINTS, \
            f"seed {row.seed}: the learned student is {row.teacher - row.learned:.2%} below the teacher"
        assert row.learned >= row["random best"] and row.learned - row["random mean"] > row["random spread"], \
            f"seed {row.seed}: the learned student should beat random students of its size: {row.to_dict()}"

# %% [markdown]
# **Reading the results.** (A laptop run on 2 cores, one search seed: a second costs another six
# minutes; paper mode runs three. A run on one thread trained slightly different networks, so its
# numbers differed; the picture did not.) The teacher reaches 61.4% on the test images, 56.6% on the
# held-out ones.
#
# *The mechanism shows.* The removal controller's mean reward rose from 0.18 (its first update, which
# is the random policy) to 0.37 over the last third of its updates, while the random policy averaged
# 0.16 on as many students (twice the standard error of the gap: 0.07). It learned what the
# parameter counts above predict: remove the removable blocks of the last stage (27% of the
# parameters each) and keep the cheap blocks of the first. The shrink controller, started on that
# student, rose from 0.36 to 0.49 against the random policy's 0.35 (2 SE: 0.02); its best student
# keeps 75% of the filters of every remaining block. At the same budget the random policy's best
# students earned 0.47 (removal) and 0.50 (shrink).
#
# *The claim does not show at this scale.* The learned student is 2.85x smaller, not 3x, and after
# 150 distillation steps it scores 52.55% on the test images, 8.85 points below the teacher -- not
# "within a few points". It is far better than random students of its size: the three drawn at
# random (each removing the whole first stage, where the parameters are cheap but the damage is
# large) scored 30.15%, 31.1% and 30.15%, 22 points below it. The gap to the teacher is the training
# budget, not the search: a rollout trains on a thirtieth of an epoch, enough to rank removals by
# what they cost but not to let a thinned network recover, and 150 final steps (one epoch, against
# the teacher's five) leave every student far below what its architecture can reach -- on a teacher
# of 69 k parameters that has little redundancy to give. The paper trains every student for epochs
# on teachers of millions of parameters; paper mode (ResNet-56 of width 16, 200-step rollouts,
# 6,000-step final students, three search seeds) asserts the claim.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper (its abstract; datasets as listed on its OpenReview page) | here (laptop mode) |
# | --- | --- | --- |
# | data | CIFAR-10, CIFAR-100, Caltech-256 | 20,000 CIFAR-10 training images, 500 held out; 2,000 test images |
# | teacher | networks such as ResNet-34 (21 M parameters) | ResNet-20, width 8 (69 k parameters), 5 epochs: 61.4% |
# | search | two recurrent policies (removal, then shrinkage), REINFORCE, students trained by distillation | the same; 96 removal and 80 shrink rollouts of 10 distillation steps each |
# | headline | more than 10x compression of ResNet-34 with accuracy similar to the teacher's | 2.85x, 8.85 points below the teacher; the controller out-earns the random policy in both stages |
#
# Only the abstract's headline is quoted: the paper's per-network tables could not be consulted
# here, so none of their entries appear. The difference in scale is of training more than of search:
# each of our rollouts trains on a thirtieth of an epoch, which ranks candidates but leaves the final
# student far from what its architecture can reach.

# %% [markdown]
# ## What to try next
#
# - `CONTROLLER_LR = 0.01` or `0.1`: the pilot's slow learner and its collapse, in the learning curves
#   and the explorer.
# - `DISTILL_STEPS = 30`: with better-trained rollouts, does the shrink controller learn to shrink?
# - `FINAL_STEPS = 800` (the teacher's own budget in steps of batch 128): how far below the teacher does
#   the learned student stay, and do the random students of its size catch up?

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **REINFORCE with a baseline.** `log_probs` is a tensor `[m]` of the log-probabilities of the `m`
# rollouts' actions under the policy (with a gradient), `rewards` a list of their `m` rewards and
# `baseline` a number. Return the scalar loss whose gradient *descent* step is N2N's policy-gradient
# *ascent* step: minus the mean over rollouts of `(reward - baseline) * log_prob`.

# %%
def reinforce_loss(log_probs, rewards, baseline):
    raise NotImplementedError  # your code here


wb.exercises.check("reinforce_loss", reinforce_loss)
