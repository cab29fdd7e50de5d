# %% [markdown]
# # Re-labeling ImageNet: from single labels to multi-labels, from global to localized labels
#
# Yun, Oh, Heo, Han, Choe & Chun, *Re-labeling ImageNet*, CVPR 2021
# ([arXiv 2101.05022](https://arxiv.org/abs/2101.05022)), with Beyer et al. 2020, *Are we
# done with ImageNet?* ([arXiv 2006.07159](https://arxiv.org/abs/2006.07159)) for the ReaL labels.
#
# **The problem.** An ImageNet image often shows several classes, yet it carries one label.
# Training takes *random crops*, and a crop may not even contain the labelled object: its
# target is then simply wrong. Evaluation has the mirror problem: a model that names another
# object in the picture is counted wrong.
#
# **The fix.** A strong *annotator* network, applied at every location before its global
# pooling, gives a *label map*: class scores per position. For each random crop, LabelPooling
# pools the label map over the crop's box (RoI-align) and takes a softmax: a localized, multi-
# class target. The paper reports ResNet-50 top-1 from 77.5% to 78.9% on ImageNet with these
# targets.
#
# **Here.** (1) The whole mechanism on a generated multi-object dataset where the truth is
# known per pixel: how often crops get a wrong label, the label maps, and a student trained
# with single labels against one trained with LabelPooling (the targets' advantage shows; the
# students' is within the seed spread at this scale: **mechanism only**). (2) Real ImageNet labels: ReaL
# versus original accuracy of a real model's predictions, and a browser of suspected label
# errors with the votes of Mechanical Turk workers.

# %%
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None
from workbench.multilabel import synthetic as syn

info = wb.setup()
ml = wb.multilabel

# %% tags=["parameters"]
N_TRAIN = wb.by_mode(smoke=600, laptop=5_000, paper=50_000)
N_TEST = wb.by_mode(smoke=300, laptop=2_000, paper=10_000)
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2, 3, 4])
ANNOTATOR = dict(name="resnet20", width=16, epochs=wb.by_mode(smoke=1, laptop=20, paper=60))
STUDENT = dict(name="resnet8", width=16, epochs=wb.by_mode(smoke=1, laptop=15, paper=40))
CROP_SCALE = (0.08, 1.0)   # ImageNet's RandomResizedCrop range
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # the students' crop accuracy (see the end)

# %% [markdown]
# ## A multi-object world with known truth
#
# Each image holds one to three shapes of different classes. Its *single* label, as in
# ImageNet, is the class with the largest visible area; its *multi* label is every visible
# class; and every pixel knows its class.

# %%
train = syn.make_multi_shapes(N_TRAIN, seed=0)
test = syn.make_multi_shapes(N_TEST, seed=1)
names = train.classes
titles = [f"{names[int(l)]} | {', '.join(names[c] for c in np.nonzero(m.numpy())[0])}"
          for l, m in zip(train.labels[:12], train.multi[:12])]
print("single label | every visible class")
wb.viz.image_grid(train.images[:12], titles=titles, cols=6, title="Generated images: single label | all labels")

# %% [markdown]
# ### How often is a random crop's single label wrong?
#
# Random resized crops covering 8-100% of the image, as in ImageNet training. A crop's single
# label is *wrong* when the crop shows (almost) none of that class: under 5% of its pixels.

# %%
g = torch.Generator().manual_seed(0)
boxes = ml.random_boxes(len(train), CROP_SCALE, generator=g)
wrong = syn.crop_single_label_noise(train, boxes)
print(f"{wrong.float().mean():.1%} of random crops do not show the class of their single label")


# %% [markdown]
# ## The annotator and its label maps
#
# The annotator is a larger network trained the ordinary way (single labels, random crops)
# on the same images; no extra data. Its label map is its output layer applied at each
# position of its last feature map (8x8 here).

# %%
def train_cached(name, width, epochs, target, seed, annotator=None):
    def run():
        torch.manual_seed(100 + seed)
        model = wb.create_model(name, width=width)
        hist = syn.train_crops(model, train, target, epochs=epochs, annotator=annotator, seed=seed,
                               scale=CROP_SCALE if target != "annotator" else (0.35, 1.0))
        return {"state": model.state_dict(), "loss": torch.tensor(hist["loss"])}

    key = {"model": name, "width": width, "epochs": epochs, "target": target, "seed": seed, "n": N_TRAIN,
           "scale": CROP_SCALE, "annotator": wb.guidance.model_fingerprint(annotator) if annotator else None}
    out = wb.cached(run, key=key, name="relabel_student", version=2)  # 2: trained by wb.fit
    model = wb.create_model(name, width=width)
    model.load_state_dict(out["state"])
    return model.eval()


annotator = train_cached(ANNOTATOR["name"], ANNOTATOR["width"], ANNOTATOR["epochs"], "single", seed=0)
print("annotator:", {k: f"{v:.1%}" for k, v in syn.evaluate_multilabel(annotator, test).items()})
maps = ml.label_maps(annotator, test.normalize(test.images[:64]))


def render_map(image, cls):
    fig = px.imshow(maps[image, names.index(cls)].numpy(), color_continuous_scale="Viridis",
                    title=f"test image {image}: label map for '{cls}' (visible: "
                          f"{', '.join(names[c] for c in np.nonzero(test.multi[image].numpy())[0])})")
    fig.update_layout(height=380, width=420)
    return fig


wb.viz.image_grid(test.images[:8], test.labels[:8], names, cols=8, title="test images 0-7")

# %%
wb.viz.explorer(render_map, image=list(range(8)), cls=names)

# %% [markdown]
# ### One crop, two targets
#
# Move the slider through random crops of one image: the single label stays fixed, the
# LabelPooling target follows what the crop shows.

# %%
IMAGE = 0
crop_boxes = ml.random_boxes(12, CROP_SCALE, generator=torch.Generator().manual_seed(1))
one_map = ml.label_maps(annotator, train.normalize(train.images[IMAGE:IMAGE + 1])).expand(12, -1, -1, -1)
soft = ml.label_pooling(one_map, crop_boxes)
crops = ml.crop_resize(train.images[IMAGE:IMAGE + 1].expand(12, -1, -1, -1), crop_boxes, 32)


def render_crop(crop):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"crop {crop}", "targets"))
    fig.add_trace(go.Image(z=crops[crop].permute(1, 2, 0).numpy()), row=1, col=1)
    single = np.eye(len(names))[int(train.labels[IMAGE])]
    fig.add_trace(go.Bar(x=names, y=single, name="single label"), row=1, col=2)
    fig.add_trace(go.Bar(x=names, y=soft[crop].numpy(), name="LabelPooling"), row=1, col=2)
    fig.update_layout(height=360, barmode="group", yaxis2_range=[0, 1])
    return fig


wb.viz.explorer(render_crop, crop=list(range(12)))

# %% [markdown]
# ### Which target names what the crop shows?
#
# The mechanism itself, before any student: over the random training crops above that show any
# class (a class is shown when it covers at least 5% of the crop, the rule used above), how often
# is the single label a class the crop shows, and how often is the top class of the LabelPooling
# target (the annotator's label map pooled over the crop's box)?

# %%
shown = syn.crop_targets_shown(train, boxes, syn.dataset_label_maps(annotator, train))
print(f"of {shown['crops']:,} training crops showing a class: the single label is shown in {shown['single']:.1%}, "
      f"LabelPooling's top class in {shown['labelpool']:.1%}")

# %% [markdown]
# ## Students: single labels against LabelPooling
#
# The same small network, the same crops (same seed), trained once with the single label of
# each image and once with the LabelPooling targets. Tested on whole images, against the
# single label and against the full label set (top-1 is any visible class), and on random
# crops of the test images: is the top-1 class one the crop actually shows?

# %%
test_boxes = ml.random_boxes(len(test), CROP_SCALE, generator=torch.Generator().manual_seed(5))
rows = []
students = {}
for seed in SEEDS:
    for target in ("single", "labelpool"):
        model = train_cached(STUDENT["name"], STUDENT["width"], STUDENT["epochs"], target, seed,
                             annotator=annotator if target == "labelpool" else None)
        students[target, seed] = model
        crops_eval = syn.evaluate_crops(model, test, test_boxes)
        rows.append(dict(target=target, seed=seed, **syn.evaluate_multilabel(model, test),
                         crop_acc=crops_eval["crop_acc"]))
students_table = pd.DataFrame(rows)
students_table.groupby("target")[["single_label_acc", "multi_label_acc", "crop_acc"]].agg(["mean", "std"]).round(4)

# %% [markdown]
# ### Where does the student see each label?
#
# Integrated Gradients ([captum](https://captum.ai)) for every visible class of a few test
# images, on the LabelPooling student.

# %%
student = students["labelpool", SEEDS[0]]
imgs, maps_ig, titles = [], [], []
for i in range(4):
    for c in np.nonzero(test.multi[i].numpy())[0]:
        x = test.normalize(test.images[i:i + 1])
        maps_ig.append(wb.attribution.attribute(student, x, target=int(c), method="integrated_gradients")[0])
        imgs.append(test.images[i])
        titles.append(f"image {i}: {names[c]}")
fig = wb.viz.image_grid(torch.stack(imgs), titles=titles, cols=len(imgs), title="test images, one column per visible class")
fig

# %%
px.imshow(torch.stack(maps_ig).numpy(), facet_col=0, facet_col_wrap=len(imgs), color_continuous_scale="Inferno",
          title="Integrated Gradients per label (brighter = more influence)").update_layout(height=300)

# %% [markdown]
# ## Real ImageNet labels: ReaL against the original labels
#
# The bundled predictions are a cross-validated ImageNet model's top-1 guesses (Northcutt et
# al. 2021, cleanlab). They ship in *folder order*; the metrics align them with the labels by
# file name, and refuse predictions without names.

# %%
preds = ml.bundled_predictions()
orig_acc = ml.original_accuracy(preds.labels, preds.filenames)
real_acc = ml.real_accuracy(preds.labels, preds.filenames)
by_size = ml.accuracy_by_set_size(preds.labels, preds.filenames)
print(f"original top-1 {orig_acc:.2%}, ReaL top-1 {real_acc:.2%} (over the {by_size.images[by_size.set_size > 0].sum()}"
      f" images with a non-empty ReaL set)")
px.bar(by_size[by_size.set_size > 0].melt(id_vars=["set_size", "images"], value_vars=["original_acc", "multilabel_acc"],
                                          var_name="labels", value_name="accuracy"),
       x="set_size", y="accuracy", color="labels", barmode="group", hover_data=["images"],
       title="Top-1 accuracy by the number of ReaL labels of an image")

# %% [markdown]
# Where does the gain come from? Split the difference into (a) leaving out the images
# whose ReaL set is empty, (b) images with one ReaL label (relabelled or not), (c) images with
# several.

# %%
kept = by_size[by_size.set_size > 0]
orig_kept = float((kept.images * kept.original_acc).sum() / kept.images.sum())
w = kept.images / kept.images.sum()
part_single = float((w * (kept.multilabel_acc - kept.original_acc))[kept.set_size == 1].sum())
part_multi = float((w * (kept.multilabel_acc - kept.original_acc))[kept.set_size >= 2].sum())
parts = pd.Series({"excluding empty sets": orig_kept - orig_acc, "one-label images": part_single,
                   "multi-label images": part_multi})
print(parts.round(4).to_dict(), "sum", round(parts.sum(), 4), "= ReaL - original", round(real_acc - orig_acc, 4))
px.bar(parts, title="Where ReaL's gain over original accuracy comes from", labels={"value": "accuracy points"})

# %% [markdown]
# ## Suspected label errors and their votes
#
# Northcutt et al. asked Mechanical Turk workers about 5,440 validation images whose given
# label a model doubted: is it the given label, the model's guess, both, or neither? Move the
# slider through the images where workers sided with the guess. (No ImageNet images ship
# with the workbench; each row links to the image on labelerrors.com.)

# %%
votes = ml.mturk_votes()
simple = ml.class_names()
real_sets = ml.real_labels()
votes["real"] = [", ".join(simple[c] for c in real_sets[i]) or "(none)" for i in votes["index"]]
sided = votes[votes.votes_guessed > votes.votes_given].reset_index(drop=True)
print(f"{len(sided)} of {len(votes)} suspected errors: more votes for the model's guess than for the given label")


def render_error(k):
    r = sided.iloc[k]
    fig = go.Figure(go.Bar(x=["given", "guessed", "both", "neither"],
                           y=[r.votes_given, r.votes_guessed, r.votes_both, r.votes_neither]))
    fig.update_layout(height=320, title=f"{r.filename}: given '{simple[r.given]}', guessed '{simple[r.guessed]}'; "
                                        f"ReaL: {r.real}")
    return fig


wb.viz.explorer(render_error, k=list(range(min(len(sided), 200))))


# %% [markdown]
# ## The claims, as checks that can fail

# %%
def gain(col):
    t = students_table.pivot(index="seed", columns="target", values=col)
    d = t["labelpool"] - t["single"]
    return d.mean(), (d.std() if len(d) > 1 else 0.0), d


for col in ("crop_acc", "multi_label_acc", "single_label_acc"):
    m, sd, _ = gain(col)
    print(f"LabelPooling minus single labels, {col}: {m:+.4f} (std over seeds {sd:.4f})")
print(f"ReaL minus original: {real_acc - orig_acc:+.4f}; multi-label images' share of it: "
      f"{part_multi / (real_acc - orig_acc):.0%}")
assert real_acc > orig_acc, "ReaL accuracy should exceed original accuracy for the bundled predictions"
assert part_multi > part_single and part_multi > parts["excluding empty sets"], \
    "the gain should come mostly from multi-label images"
if CHECK_MECHANISM:
    assert shown["labelpool"] > shown["single"], f"LabelPooling targets should name what crops show more often: {shown}"
if CHECK_CLAIM:
    m, sd, per_seed = gain("crop_acc")
    assert (per_seed > 0).all() and m > max(sd, 0.005), f"LabelPooling should name what crops show better: {per_seed}"


# %% [markdown]
# **Reading the results.** On a 2-core CPU in laptop mode (2026-12-07, three seeds, 15
# epochs) 34% of random training crops did not show their single label's object. The
# mechanism holds: among the training crops that show any class, LabelPooling's target names a
# class the crop shows more often than the single label does (93.5% against 91.9%; asserted).
# Whether that makes a better student is another matter at this scale: the LabelPooling student
# named the content of random test crops 85.5% of the time against 84.6% for the single-label
# student, +0.9 points but +/- 1.4 over seeds and ahead in two of three (-0.05, +2.4, +0.2), so
# the paper's claim is asserted in paper mode only (**mechanism only**). Before the crop training
# became a `wb.fit` run (one loop for every notebook) the same recipe, with its own crops and
# schedule, gave +1.3 +- 0.6 points, ahead in every seed (2026-11-26), and a 40-epoch pilot +2.0:
# a gain of about a point, no larger than the run-to-run variation of three seeds. On whole images
# the two tie (single label 83.2% vs 82.5%, any visible label 93.8% vs 93.5%). On ImageNet the
# paper reports +1.4 points for ResNet-50, where labels are noisier, classes far more numerous
# and training far longer. The ReaL half of the notebook is on real data and its checks hold:
# ReaL top-1 77.6% against 72.7% original, 58% of the gain from multi-label images.

# %% [markdown]
# ## What to try next
#
# - Make crops gentler (`CROP_SCALE = (0.35, 1.0)`): the single-label noise drops, and so
#   should LabelPooling's lead.
# - Use a weaker annotator (fewer epochs): how good must the label maps be to help?
# - `ml.labels_from_scores(threshold)` rebuilds ReaL at other operating points.

# %% [markdown]
# ## Exercises
#
# Write the function, run the cell: the check says what is right or wrong.

# %% [markdown]
# **1. ReaL accuracy.** Write `real_accuracy(predictions, label_sets)`: predictions is a list of top-1 classes, label_sets a list of lists of valid classes; count an image as right when its prediction is in its set, and leave out images whose set is empty.

# %%
def real_accuracy(predictions, label_sets):
    raise NotImplementedError  # your code here


wb.exercises.check("real_accuracy", real_accuracy)
