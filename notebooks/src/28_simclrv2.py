# %% [markdown]
# # SimCLRv2: big self-supervised models as semi-supervised learners
#
# Chen, Kornblith, Swersky, Norouzi & Hinton, *Big Self-Supervised Models are Strong
# Semi-Supervised Learners*, NeurIPS 2020 ([arXiv 2006.10029](https://arxiv.org/abs/2006.10029)).
#
# **The question.** Labels are expensive, images are not. If a network first learns from many
# unlabeled images and only then sees a few labels, how much of the labelled data can it do
# without? And does the answer depend on the size of the network?
#
# **The idea.** Three steps. (1) Pre-train a ResNet without labels by contrastive learning
# (SimCLR): two random views of every image, and a loss (NT-Xent) that asks each view to pick its
# partner out of all the other views of the batch, through a projection head -- SimCLRv2 makes the
# head deeper (three layers). (2) Fine-tune on the few labels, starting from the first layer of the
# head rather than from the encoder's output. (3) Distil: a student, possibly smaller, learns the
# fine-tuned teacher's predictions on all the unlabeled images, without any label. The paper's
# finding: the bigger the pre-trained network, the more it gains from few labels, and the distilled
# student keeps most of that gain.
#
# **What is checked here.** On CIFAR-10: SimCLR pre-training of ResNet-20 at two widths on
# `UNLABELED` images (labels never read), then fine-tuning on 1% and 10% of their labels,
# against the same network trained from scratch on the same labelled images with the same recipe
# and seeds; then distillation of the widest fine-tuned teacher into the narrowest network on the
# unlabeled images. The paper's claim is checked in paper mode. In laptop mode a few minutes of
# contrastive pre-training do not beat supervised training on the same labels (shown and said
# below), so laptop mode asserts the mechanism: pre-training without labels builds features far
# better than the same network's random ones, and the distilled student learns from unlabeled
# images alone what the teacher knows.

# %%
import functools

import pandas as pd
import plotly.express as px
import torch

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

info = wb.setup()

# %% tags=["parameters"]
UNLABELED = wb.by_mode(smoke=512, laptop=5_000, paper=None)  # pre-training images (None: all 50,000)
TEST_SUBSET = wb.by_mode(smoke=256, laptop=2_000, paper=None)
WIDTHS = wb.by_mode(smoke=[4, 8], laptop=[4, 8], paper=[16, 64])  # ResNet-20's base width: a small and a big encoder
PRETRAIN_EPOCHS = wb.by_mode(smoke=1, laptop=10, paper=500)
PRETRAIN_BATCH = wb.by_mode(smoke=128, laptop=128, paper=512)
FRACTIONS = wb.by_mode(smoke=[0.05, 0.1], laptop=[0.01, 0.1], paper=[0.01, 0.1])  # 1% and 10% of the labels
FINETUNE_EPOCHS = wb.by_mode(smoke=[2, 1], laptop=[60, 30], paper=[60, 30])  # per fraction: SimCLRv2's
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])  # fine-tuning seeds: the labelled subset and the run
DISTILL_EPOCHS = wb.by_mode(smoke=1, laptop=10, paper=200)
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")  # paper: one run per GPU on Ray
CHECK = wb.by_mode(smoke=None, laptop="mechanism", paper="claim")  # smoke: too short to mean anything

# %% [markdown]
# ## Step 1: pre-training without labels
#
# `ssl_encoder` is ResNet-20 with a three-layer projection head; `wb.ssl.Contrastive` is SimCLR's
# task for `wb.fit`: every batch gives two SimCLR views of each image (random resized crop, flip,
# colour jitter, grayscale, made on the whole batch with kornia) and the NT-Xent loss at
# temperature 0.5. The dataset carries labels, but this task never reads them. `train_model`
# caches the result, so a rerun is instant. Here is what one batch of views looks like:

# %%
train = wb.load("cifar10", "train", subset=UNLABELED, seed=0)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
task = wb.ssl.Contrastive(temperature=0.5, views="simclr")
x = train.normalize(train.images[:6])
views = torch.cat([x, *(wb.ssl.make_views(x, train.mean, train.std, seed, "simclr") for seed in (1, 2))])
wb.viz.image_grid(train.to_uint8(views), cols=6, titles=["image"] * 6 + ["view 1"] * 6 + ["view 2"] * 6,
                  title="six images (top) and two random SimCLR views of each")

# %%
def encoder_kwargs(width):
    return dict(backbone="resnet20", backbone_kwargs={"width": width}, proj_dim=64, proj_layers=3)


def pretrained(width):
    return wb.train_model("ssl_encoder", train, model_kwargs=encoder_kwargs(width), task=task, augment=None,
                          epochs=PRETRAIN_EPOCHS, batch_size=PRETRAIN_BATCH, lr=0.3 * PRETRAIN_BATCH / 256,
                          weight_decay=1e-4, seed=0)


runs = {w: pretrained(w) for w in WIDTHS}
curves = pd.concat([r.history.assign(width=w) for w, r in runs.items()])
px.line(curves, x="epoch", y="train_acc", color="width", markers=True,
        labels={"train_acc": "views that pick their partner (top-1 of 2B-1)"},
        title="Contrastive pre-training: how often a view finds its partner")

# %% [markdown]
# ## Did it learn anything? Frozen features against random ones
#
# Before any label is used for training, the features can be judged with the labels of the
# pre-training images: a k-nearest-neighbour vote (k = 20, cosine) and a linear probe (logistic
# regression on the frozen features, fitted to its optimum), each against the same network at its
# random initialization. Random convolutional features are not useless (a known surprise), so the
# comparison is to them, not to chance.

# %%
rows = []
for w, r in runs.items():
    torch.manual_seed(0)
    random_init = wb.create_model("ssl_encoder", **encoder_kwargs(w))
    for name, model in (("SimCLR", r.model), ("random init", random_init)):
        rows.append({"width": w, "encoder": name, "knn_acc": wb.ssl.knn_accuracy(model, train, test),
                     "probe_acc": wb.ssl.linear_probe(model, train, test)["test_acc"]})
frozen = pd.DataFrame(rows)
px.bar(frozen.melt(["width", "encoder"], var_name="protocol", value_name="test accuracy"), x="protocol",
       y="test accuracy", color="encoder", barmode="group", facet_col="width",
       title="Frozen features of the pre-training images' labels: SimCLR against random initialization")

# %%
frozen

# %% [markdown]
# ## Step 2: fine-tuning on 1% and 10% of the labels
#
# For each width, fraction and seed: a class-balanced labelled subset (`wb.ssl.label_subset`, a new
# subset per seed, so the spread includes the luck of the draw), then the same fine-tuning from the
# first layer of the projection head (SimCLRv2's choice) for SimCLRv2's epochs (60 at 1%, 30 at
# 10%), against the same network from its random initialization trained on the same images with
# the same recipe. `wb.sweep` keeps one record per run, so a rerun only does what is missing.

# %%
def finetune_recipe(fraction):
    epochs = dict(zip(FRACTIONS, FINETUNE_EPOCHS))[fraction]
    return wb.train.recipe("laptop", epochs=epochs, batch_size=64, lr=0.05, eval_every=1000)


def run(width, fraction, seed, start):
    labelled = wb.ssl.label_subset(train, fraction, seed=seed)
    if start == "SimCLR":
        encoder = pretrained(width).model
    else:
        torch.manual_seed(seed)
        encoder = wb.create_model("ssl_encoder", **encoder_kwargs(width))
    res = wb.ssl.fine_tune(encoder, labelled, test, seed=seed, head_layers=1, **finetune_recipe(fraction))
    return {"test_acc": res.test_acc, "labels": len(labelled)}


grid = [dict(width=w, fraction=f, seed=s, start=start) for w in WIDTHS for f in FRACTIONS for s in SEEDS
        for start in ("SimCLR", "scratch")]
constants = dict(unlabeled=UNLABELED, test=TEST_SUBSET, epochs=PRETRAIN_EPOCHS, batch=PRETRAIN_BATCH,
                 finetune=FINETUNE_EPOCHS)
records = wb.sweep(run, grid, backend=BACKEND, folder=wb.sweep_folder("simclrv2", constants))
table = records.groupby(["width", "fraction", "start"]).agg(acc=("test_acc", "mean"), spread=("test_acc", "std"),
                                                            labels=("labels", "first"), runs=("seed", "count"))
gain = (table.xs("SimCLR", level="start")["acc"] - table.xs("scratch", level="start")["acc"]).rename("gain")
table

# %%
def render(fraction):
    points = records[records.fraction == fraction]
    fig = px.strip(points, x="width", y="test_acc", color="start", hover_data=["seed"],
                   labels={"test_acc": "test accuracy", "width": "ResNet-20 width"},
                   title=f"{fraction:.0%} of the labels ({int(points.labels.iloc[0])} images): each seed a point")
    fig.update_xaxes(type="category")
    return fig


wb.viz.explorer(render, fraction=FRACTIONS)

# %% [markdown]
# The gain of pre-training (SimCLR minus scratch, mean over seeds), per width and label fraction;
# the paper's claim is that it is positive and large at 1%, and larger for the bigger network:

# %%
gain.unstack("fraction")

# %% [markdown]
# ## Step 3: distillation with unlabeled images
#
# The teacher is the widest network, pre-trained and fine-tuned on 10% of the labels (seed 0). The
# student is the narrowest ResNet-20, from scratch. It sees the unlabeled images only, with the
# teacher's softened predictions as targets (`wb.ssl.distill`: the labels of those images are
# replaced by the teacher's predictions first, so none leaks in). Against it: the same student
# trained on the 10% labelled images alone, with the same number of optimizer steps.

# %%
teacher = wb.ssl.fine_tune(pretrained(max(WIDTHS)).model, wb.ssl.label_subset(train, FRACTIONS[-1], seed=0), test, seed=0,
                           head_layers=1, **finetune_recipe(FRACTIONS[-1])).model
steps = DISTILL_EPOCHS * -(-len(train) // 128)


def student():
    torch.manual_seed(0)
    return wb.create_model("resnet20", width=min(WIDTHS))


distilled = wb.ssl.distill(teacher, student(), train, test, temperature=1.0, seed=0, **wb.train.recipe(
    "laptop", epochs=DISTILL_EPOCHS, batch_size=128, lr=0.1, label_smoothing=0.0, eval_every=1000))
labelled = wb.ssl.label_subset(train, FRACTIONS[-1], seed=0)
alone = wb.ssl.fine_tune(student(), labelled, test, seed=0, **wb.train.recipe(
    "laptop", epochs=max(1, steps // -(-len(labelled) // 128)), batch_size=128, lr=0.1, eval_every=1000))
distill_table = pd.DataFrame([
    {"network": f"teacher: width {max(WIDTHS)}, SimCLR + 10% labels", "test_acc": wb.evaluate(teacher, test)["acc"]},
    {"network": f"student: width {min(WIDTHS)}, distilled on unlabeled images", "test_acc": distilled.test_acc},
    {"network": f"student: width {min(WIDTHS)}, 10% labels alone", "test_acc": alone.test_acc}])
px.bar(distill_table, x="network", y="test_acc", title="Distillation: what the student keeps of the teacher")

# %%
distill_table

# %% [markdown]
# ## The claim, as a check that can fail
#
# - **Paper mode** (the claim): at 1% of the labels the pre-trained network beats scratch at every
#   width by at least 5 points and by more than the seed spread, the gain is larger at the bigger
#   width, and the distilled student keeps at least half of the teacher's lead over the student
#   trained on the labels alone.
# - **Laptop mode** (the mechanism): at every width, the SimCLR features beat the same network's
#   random features by at least 5 points in the k-NN vote and in the linear probe; and the
#   distilled student, which never saw a label, reaches the teacher's accuracy within 3 points.
#   The semi-supervised gains are printed and not asserted (see "Reading the results").

# %%
knn = frozen.pivot(index="width", columns="encoder", values="knn_acc")
probe = frozen.pivot(index="width", columns="encoder", values="probe_acc")
spread = table["spread"].fillna(0).groupby(["width", "fraction"]).max()
teacher_acc, student_acc, alone_acc = distill_table["test_acc"]
print("k-NN gain of SimCLR over random features per width:", (knn["SimCLR"] - knn["random init"]).round(4).to_dict())
print("probe gain of SimCLR over random features per width:", (probe["SimCLR"] - probe["random init"]).round(4).to_dict())
print("fine-tuning gain of pre-training (mean over seeds):", gain.round(4).to_dict(), "largest spread:",
      spread.round(4).to_dict())
print(f"teacher {teacher_acc:.2%}, distilled student {student_acc:.2%}, student on the labels alone {alone_acc:.2%}")
if CHECK == "mechanism":
    assert (knn["SimCLR"] - knn["random init"] >= 0.05).all(), "SimCLR features should beat random ones in k-NN"
    assert (probe["SimCLR"] - probe["random init"] >= 0.05).all(), "SimCLR features should beat random ones in a probe"
    assert student_acc >= teacher_acc - 0.03, "the distilled student should reach the teacher's accuracy within 3 points"
if CHECK == "claim":
    one = gain.xs(FRACTIONS[0], level="fraction")
    assert (one >= 0.05).all() and (one > spread.xs(FRACTIONS[0], level="fraction")).all(), "pre-training should win widely at 1%"
    assert one[max(WIDTHS)] > one[min(WIDTHS)], "the bigger encoder should gain more"
    assert student_acc - alone_acc >= 0.5 * (teacher_acc - alone_acc), "the student should keep most of the gain"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-06, 2 cores, 10.5 minutes from an empty cache;
# 10 epochs of SimCLR on 5,000 images, 390 steps of batch 128) pre-training without labels clearly
# builds features: the k-NN vote on frozen features reached 33.7% (width 4) and 36.2% (width 8)
# against 17.8% and 23.4% for the same networks at random initialization, and the linear probe
# 34.1% and 39.8% against 22.8% and 29.5%. The distilled student (width 4), which saw no label,
# reached its teacher's accuracy (34.15% against 34.2%). So the mechanism holds, and is asserted.
#
# The paper's claim does not show at this budget, and the notebook says so rather than tune it:
# with 1% of the labels (50 images) pre-training gained 3.95 points at width 4 (20.5% against
# 16.5%, seed spread 1.5) but only 1.75 points at width 8 (21.9% against 20.2%, spread 1.9, within
# the spread), so the smaller network gained more, the reverse of the paper; with 10% (500 images)
# the gain vanished (+0.3 and -1.2 points). And the width-4 student trained for as many steps on
# the 500 labelled images alone reached 38.4%, ahead of both the teacher and the distilled student:
# a teacher fine-tuned from weak features has little to hand on. Four hundred steps of contrastive
# learning give features worth about as much as 500 labels; the paper's hundreds of epochs on a
# million images give features worth far more, which is where its claim lives.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper (ImageNet, top-1) | here (laptop mode, CIFAR-10) |
# | --- | --- | --- |
# | supervised only, 1% / 10% of the labels | ResNet-50: 25.4% / 56.4% (Zhai et al. 2019, quoted in SimCLR's table 7) | see the table above (scratch) |
# | pre-trained and fine-tuned, then distilled into ResNet-50 | 73.9% with 1%, 77.5% with 10% (the abstract; the teacher a ResNet-152 three times wider with selective kernels) | see above |
# | bigger encoders gain more | the gain of a wider, deeper network is largest with the fewest labels (section 3 and figure 1) | width 4 against width 8 |
#
# The paper pre-trains for 800 epochs on 1.28 million images with batches of 4,096; here one
# ResNet-20 sees `UNLABELED` images for `PRETRAIN_EPOCHS` epochs in batches of 128, a few hundred
# optimizer steps. Contrastive learning is known to need many steps and large batches, which is why
# laptop mode checks the mechanism and paper mode the claim.

# %% [markdown]
# ## What to try next
#
# - `PRETRAIN_EPOCHS = 40`: four times the pre-training. Does the 1% gain turn positive, and when?
# - `head_layers=0` in `run` (fine-tune from the encoder's output, as SimCLRv1): SimCLRv2 reports
#   that the middle of the head is the better place with few labels.
# - `wb.ssl.Contrastive(temperature=0.1)` or `views="crop_flip"`: SimCLR's ablations found colour
#   distortion essential; without it the views can be matched by their colour histograms.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **NT-Xent.** `nt_xent_loss(z1, z2, temperature)` -> a float: SimCLR's loss of two views `[N, D]`
# of `N` images (row `i` of `z1` and of `z2` are views of image `i`). Normalize the `2N`
# embeddings to unit length; for each of the `2N` anchors, the cross-entropy of picking its
# partner view among the `2N - 1` other embeddings, with similarities `z_i . z_k / temperature`;
# return the mean over the anchors.

# %%
def nt_xent_loss(z1, z2, temperature):
    raise NotImplementedError  # your code here


wb.exercises.check("nt_xent_loss", nt_xent_loss)
