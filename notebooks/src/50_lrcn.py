# %% [markdown]
# # LRCN: a CNN per frame, an LSTM across frames, for recognition and description
#
# Jeff Donahue, Lisa Anne Hendricks, Sergio Guadarrama, Marcus Rohrbach, Subhashini Venugopalan, Kate
# Saenko & Trevor Darrell, *Long-term Recurrent Convolutional Networks for Visual Recognition and
# Description*, CVPR 2015 ([arXiv 1411.4389](https://arxiv.org/abs/1411.4389)).
#
# **The question.** A convolutional network reads one image. Video is a sequence of images, and a
# sentence is a sequence of words. Is it enough to average what the CNN says about each frame, or does
# a model that is also deep *in time*, one that reads its inputs in order and keeps a state, do better
# where order matters? And can the same recurrent machinery, started from what a CNN sees, *write* a
# sequence: a caption?
#
# **The idea.** Put a CNN under an LSTM and train them together ("long-term recurrent convolutional
# networks"). For activity recognition the CNN turns every frame into a feature vector and the LSTM
# reads the vectors in order; its state after the last frame classifies the clip. The baseline is the
# same CNN with its per-frame predictions averaged over the clip (mean pooling), which sees the frames
# as a bag: shuffle or reverse them and it answers the same. For image description the CNN reads the
# image once and an LSTM language model emits one word per step, each step reading the previous word
# and the image features; it is trained to predict the next word of human captions (teacher forcing)
# and decodes greedily or by beam search.
#
# **What is checked here.** Two parts, each against the baseline that lacks the recurrent ingredient.
#
# 1. *Recognition* on generated clips (`wb.load("motion")`): a Fashion-MNIST garment moving over a
#    CIFAR-10 photograph in one of eight ways (left, right, up, down, towards, away, turning either
#    way). One frame cannot tell the motions apart, only their order can. The same clips labelled by
#    the garment (`wb.load("motion_items")`) are the control where one frame suffices.
#    `video_net(head="lstm")` (LRCN) against `video_net(head="mean")` (mean pooling), the same trunk,
#    data, steps and seeds. We also look inside: per-frame predictions over a clip (`hook_steps`), and
#    the exact reason mean pooling fails (it gives a clip and its reversal the same answer).
# 2. *Description* on generated captioned scenes (`wb.data.make_scenes`): `caption_lstm`, a ResNet
#    whose features are fed to an LSTM language model at every step (LRCN's captioner), trained with
#    teacher forcing (`wb.sequence.CaptionTask`) and decoded greedily. Its baseline is the same
#    language model that never sees the image (`image=False`): the **caption prior**, the best a
#    captioner can do by knowing only how captions usually go.
#
# The claims and their thresholds were fixed before the comparison runs; see "The claim, as a check
# that can fail". In laptop mode (one seed) the order claim and the description claim show plainly;
# the "one frame suffices" control passes its check only weakly (both heads learn little of the
# garments at this budget), see "Reading the results".

# %%
import dataclasses
import functools

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

from workbench.data.scenes import detokenize

info = wb.setup()

# %% tags=["parameters"]
# recognition: per-frame CIFAR ResNet + temporal head, on the motion clips
HEADS = ["lstm", "mean"]  # LRCN and mean pooling over the same per-frame trunk
LABELS = ["motion", "motion_items"]  # only order tells / one frame suffices
TRAIN_CLIPS = wb.by_mode(smoke=64, laptop=15_000, paper=50_000)  # generated training clips, each seen EPOCHS times
TEST_CLIPS = wb.by_mode(smoke=64, laptop=1_000, paper=None)  # the registered test clips (None: all 1,000)
FRAME_SIZE = wb.by_mode(smoke=16, laptop=16, paper=32)  # laptop: frames averaged down 2x2 (4x cheaper)
WIDTH = wb.by_mode(smoke=4, laptop=8, paper=16)  # trunk width (ResNet-8); features are 4 x WIDTH per frame
HIDDEN = 64  # LSTM state
VIDEO_EPOCHS = wb.by_mode(smoke=1, laptop=2, paper=10)
VIDEO_LR = wb.by_mode(smoke=2e-3, laptop=2e-3, paper=1e-3)  # Adam's peak rate, one-cycle, batches of 32
SEEDS = wb.by_mode(smoke=[0], laptop=[0], paper=[0, 1, 2])  # laptop: one seed fits the budget
# description: captioned scenes
SCENE_SIZE = 32
MAX_OBJECTS = 2  # one or two garments per scene
TRAIN_SCENES = wb.by_mode(smoke=128, laptop=4_000, paper=20_000)
TEST_SCENES = wb.by_mode(smoke=64, laptop=500, paper=2_000)
CAPTION_WIDTH = wb.by_mode(smoke=4, laptop=16, paper=16)  # the captioner's ResNet-8 width
PHRASINGS = [0]  # train on the fullest phrasing: every object's size, colour and item, and the ground
CAPTION_EPOCHS = wb.by_mode(smoke=1, laptop=6, paper=30)
CAPTION_LR = 3e-3
CAPTION_SEEDS = wb.by_mode(smoke=[0], laptop=[0], paper=[0, 1, 2])  # laptop: one seed fits the budget
# the claims (fixed before the comparison runs)
MIN_ABOVE_CHANCE = 0.25  # LRCN on motion: at least 25 points above chance (12.5%)
NEAR_CHANCE = 0.10  # mean pooling on motion: at most 10 points above chance
MAX_ITEM_GAP = 0.05  # on motion_items the two heads within 5 points of each other
MIN_F1_GAIN = 0.15  # captions: content-word F1 at least 0.15 above the image-blind caption prior
BACKEND = "inprocess"  # the runs share large in-memory clip sets; on a GPU they run one after another
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=True, paper=True)
CHECK_MECHANISM = True  # exact, at any scale: mean pooling is blind to frame order, the prior to the image

# %% [markdown]
# ## Part 1: recognition
#
# ### The clips
#
# A clip is 8 frames of 32x32, stored as a filmstrip (`[3, 8 x 32, 32]`, frames top to bottom). Each
# clip draws its CIFAR-10 photograph, Fashion-MNIST garment, tint, start position, size, angle and
# speed, and its motion; `motion_items` is the same clips labelled by the garment. The test clips are
# `wb.load("motion", "test")` (CIFAR-10 and Fashion-MNIST *test* images). For training, the
# registered 5,000 clips are too few: in a pilot, LRCN trained for 8 epochs on 3,000 of them learned
# to recognise its training clips (38% right) and stayed at chance on the test clips. So we make
# `TRAIN_CLIPS` fresh ones from the training images with the same generator
# (`wb.data.motion_clips`, 15,000 in laptop mode) and show each only `VIDEO_EPOCHS` times. Laptop mode
# also averages each frame down to 16x16 (`FRAME_SIZE`), which makes every step four times cheaper
# and keeps the motion plainly visible. Never augment a filmstrip with crops or
# flips: a crop shifts frames into each other and a flip turns "left" into "right".
#
# **What the clips keep of real activity recognition, and what they lose** (the generator's
# docstring, `wb.data.video`): they keep classes that only the order of frames separates, real image
# content in every frame, several scales and rotations. They lose real motion (articulated bodies,
# camera motion, moving clutter), long clips, many objects, and the appearance cues real actions
# carry: in UCF-101 most classes can be guessed from one frame (a pool means swimming), which is why
# the paper's single-frame baseline is strong there and LRCN's gain is a few points. Our `motion`
# labels remove that cue on purpose; `motion_items` puts it back.

# %%
def downsample(ds):  # frames averaged down to FRAME_SIZE
    factor = 32 // FRAME_SIZE
    return ds if factor == 1 else dataclasses.replace(
        ds, images=F.avg_pool2d(ds.images.float(), factor).round().to(torch.uint8))


def clips(name, split):
    """Training clips generated afresh (TRAIN_CLIPS of them, cached), test clips from wb.load."""
    if split == "test":
        return downsample(wb.load(name, "test", subset=TEST_CLIPS, seed=0))
    label = "motion" if name == "motion" else "item"
    make = lambda: dataclasses.asdict(downsample(wb.data.motion_clips(  # noqa: E731
        wb.load("cifar10", "train"), wb.load("fashion_mnist", "train"), TRAIN_CLIPS, frames=8, seed=1, label=label)))
    key = {"clips": TRAIN_CLIPS, "label": label, "seed": 1, "frame_size": FRAME_SIZE}
    return wb.data.ImageDataset(**wb.cached(make, key=key, name="lrcn_clips"))


data = {(name, split): clips(name, split) for name in LABELS for split in ("train", "test")}
sample = data["motion", "test"]
frames = wb.data.filmstrip_frames(sample.images[:6], 8)  # [6, T, 3, H, W]
side = FRAME_SIZE + 2
mosaic = F.pad(frames, (1, 1, 1, 1), value=255).permute(0, 3, 1, 4, 2).reshape(6 * side, 8 * side, 3)
items = data["motion_items", "test"]
fig = px.imshow(mosaic.numpy(), title="Six test clips, one per row, frames left to right")
fig.update_yaxes(tickvals=[side * (i + 0.5) for i in range(6)],
                 ticktext=[f"{sample.classes[int(sample.labels[i])]} · {items.classes[int(items.labels[i])]}"
                           for i in range(6)])
fig.update_xaxes(tickvals=[side * (t + 0.5) for t in range(8)], ticktext=[f"t={t}" for t in range(8)])
fig.update_layout(height=520, width=700)

# %% [markdown]
# ### Training LRCN and mean pooling
#
# Both models are `video_net` with the same per-frame trunk (a ResNet-8 of width `WIDTH`, its
# pooled features `4 x WIDTH` per frame); `head="lstm"` reads the features in order with an LSTM of
# `HIDDEN` units and classifies its last state, `head="mean"` classifies every frame and averages the
# logits. Same data, initialization seed, data order, optimizer (Adam, one-cycle), steps. `run` trains
# one (cached by `wb.train_model`) and records its test accuracy, the accuracy on the test clips played
# **backwards**, and the per-step predictions (`hook_steps`: after each frame, what the LSTM would
# answer if the clip stopped there; for mean pooling, what each frame alone says).

# %%
def video_model(name, head, seed, **c):
    recipe = dict(epochs=c["epochs"], batch_size=32, optimizer="adam", lr=c["lr"], weight_decay=0.0,
                  schedule="onecycle", warmup=0.1, augment=None, progress=False)
    kwargs = dict(head=head, frames=8, frame_size=c["frame_size"], width=c["width"], hidden=c["hidden"])
    return wb.train_model("video_net", data[name, "train"], data[name, "test"], model_kwargs=kwargs, seed=seed,
                          **recipe)


def reverse_clips(images):  # filmstrips played backwards
    n, ch, th, w = images.shape
    return images.view(n, ch, 8, th // 8, w).flip(2).reshape(n, ch, th, w)


def run(name, head, seed, **c):
    res = video_model(name, head, seed, **c)
    test = data[name, "test"]
    x = test.normalize(test.images)
    with torch.no_grad():
        logits, cache = wb.probe.run_with_cache(res.model.eval(), x, ["heads.0.hook_steps"])
        backwards = res.model(test.normalize(reverse_clips(test.images)))
    record = {"acc": float((logits.argmax(1) == test.labels).float().mean()),
              "acc_reversed": float((backwards.argmax(1) == test.labels).float().mean()),
              "reversal_max_change": float((backwards - logits).abs().max())}
    if "heads.0.hook_steps" in cache:  # per-step logits [N, T, classes]: the mean and recurrent heads have them
        steps = cache["heads.0.hook_steps"].softmax(-1)
        record["true_class_prob_by_step"] = steps[torch.arange(len(test)), :, test.labels].mean(0).tolist()
        record["step_acc"] = (steps.argmax(-1) == test.labels[:, None]).float().mean(0).tolist()
    return {**record, "epochs_curve": [float(a) for a in res.history.test_acc]}


constants = dict(train_clips=TRAIN_CLIPS, test_clips=TEST_CLIPS, frame_size=FRAME_SIZE, width=WIDTH, hidden=HIDDEN,
                 epochs=VIDEO_EPOCHS, lr=VIDEO_LR)
runs = wb.sweep(functools.partial(run, **constants),
                [dict(name=n, head=h, seed=s) for n in LABELS for h in HEADS for s in SEEDS],
                backend=BACKEND, folder=wb.sweep_folder("lrcn_video", constants))
runs["chance"] = [1 / data[n, "test"].num_classes for n in runs.name]
runs[["name", "head", "seed", "acc", "acc_reversed", "chance"]].round(4)

# %% [markdown]
# ## What to look at
#
# Test accuracy of the two heads on the two labelings (dashed: chance, 1/8 for motions and 1/10 for
# garments).

# %%
summary = runs.groupby(["name", "head"], sort=False)[["acc", "acc_reversed"]].agg(["mean", "std"])
summary.columns = [" ".join(c) for c in summary.columns]
fig = px.bar(runs.groupby(["name", "head"], sort=False).acc.mean().reset_index(), x="name", y="acc", color="head",
             barmode="group", labels={"acc": "test accuracy", "name": "labels"},
             title=f"LRCN (lstm) and mean pooling, {len(SEEDS)} seed(s): test accuracy")
fig.add_hline(y=1 / 8, line_dash="dash", annotation_text="chance (motion)")
fig.add_hline(y=1 / 10, line_dash="dot", annotation_text="chance (items)", annotation_position="bottom right")
fig

# %%
summary.round(4)

# %% [markdown]
# ### Predictions frame by frame
#
# The probability given to the true class after each frame, averaged over the test clips. For the
# LSTM (`hook_steps` at step `t`: its answer had the clip stopped after frame `t`) evidence should
# pile up as frames arrive on `motion`. For mean pooling each point is what one frame alone says; the
# clip's answer is the average over frames.

# %%
curves = runs.dropna(subset=["true_class_prob_by_step"]).explode("true_class_prob_by_step")
curves = curves[["name", "head", "seed", "true_class_prob_by_step"]]
curves["frame"] = curves.groupby(["name", "head", "seed"]).cumcount()
curves = curves.astype({"true_class_prob_by_step": float})
px.line(curves, x="frame", y="true_class_prob_by_step", color="head", facet_col="name", line_group="seed",
        markers=True, labels={"true_class_prob_by_step": "p(true class) at this step"},
        title="Per-step predictions (hook_steps), mean over test clips")

# %% [markdown]
# ### Explore: one clip, frame by frame
#
# Pick a test clip and a head: the frames, and below them the class probabilities after each frame.

# %%
def render_clip(index=0, head="lstm", name="motion"):
    test = data[name, "test"]
    model = video_model(name, head, SEEDS[0], **constants).model.eval()
    x = test.normalize(test.images[index:index + 1])
    _, cache = wb.probe.run_with_cache(model, x, ["heads.0.hook_steps"])
    probs = cache["heads.0.hook_steps"][0].softmax(-1).T                 # [classes, T]
    strip = wb.data.filmstrip_frames(test.images[index:index + 1], 8)[0]  # [T, 3, H, W]
    row = strip.permute(2, 0, 3, 1).reshape(FRAME_SIZE, 8 * FRAME_SIZE, 3)
    fig = make_subplots(rows=2, cols=1, row_heights=[0.3, 0.7], vertical_spacing=0.08)
    fig.add_trace(go.Image(z=row.numpy()), 1, 1)
    fig.add_trace(go.Heatmap(z=probs.numpy(), x=[f"t={t}" for t in range(8)], y=test.classes, zmin=0, zmax=1,
                             colorscale="Blues"), 2, 1)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    true = test.classes[int(test.labels[index])]
    return fig.update_layout(height=520, width=700, title=f"{name} clip {index}: true {true}; "
                             f"{head} head's class probabilities after each frame")


wb.viz.explorer(render_clip, index=list(range(20)), head=HEADS, name=LABELS)

# %% [markdown]
# ## Part 2: description
#
# ### The scenes and their captions
#
# `wb.data.make_scenes` puts one or two (`MAX_OBJECTS`) Fashion-MNIST garments, each tinted one of six
# colours and small or large, on a textured ground (grass, sand, water, snow), and writes captions
# from a small grammar. We train on the fullest phrasing, e.g. "a small red coat and a large blue bag
# on sand": it names every object's size, colour and item and the ground. Training scenes use
# Fashion-MNIST training garments, test scenes its test garments and another seed.
#
# **What the scenes keep of real captioning, and what they lose** (`wb.data.scenes`): they keep
# compositional captions (attribute + object + count + ground), several objects per image, real
# object shapes, and a decoder that must choose words one at a time. They lose natural language (no
# synonyms, no paraphrase, one reference caption instead of five), real scenes and the long tail of
# real concepts; and the object order in a caption is the generator's slot order, which the picture
# does not show, so we score captions by **which** content words they name, not in which order.

# %%
garments = {split: wb.load("fashion_mnist", split) for split in ("train", "test")}
scene_args = dict(size=SCENE_SIZE, max_objects=MAX_OBJECTS)
scenes = {"train": wb.data.make_scenes(garments["train"], TRAIN_SCENES, seed=0, **scene_args),
          "test": wb.data.make_scenes(garments["test"], TEST_SCENES, seed=1, split="test", **scene_args)}
tables = {k: wb.vl.caption_table(s) for k, s in scenes.items()}
references = [c[0] for c in scenes["test"].captions]
pd.DataFrame({"scene": range(6), "caption (fullest phrasing)": references[:6]}).set_index("scene")

# %% [markdown]
# ### Training the captioner and the caption prior
#
# `caption_lstm` reads the image with a ResNet-8 (width `CAPTION_WIDTH`), projects its pooled features to `v` and
# concatenates `v` to the word embedding at every step of a one-layer LSTM (LRCN's "LRCN1u" layout);
# `image=False` is the same language model with `v = 0`, which never sees the pixels. Both train with
# `wb.sequence.CaptionTask` (next-word cross-entropy under teacher forcing, through `wb.fit`), the same
# steps and seed. Then each writes a caption for every test scene by greedy decoding
# (`wb.sequence.greedy_decode`), scored by `wb.sequence.caption_scores`: precision, recall and F1 of
# the content words (colours, items, sizes, grounds, counts) against the reference, and recall by kind.

# %%
def caption_model(image, seed, **c):
    return wb.train_model("caption_lstm", scenes["train"].as_dataset("index"), None,
                          model_kwargs=dict(image=image, width=c["width"]), seed=seed,
                          task=wb.sequence.CaptionTask(tables["train"], phrasings=c["phrasings"]),
                          epochs=c["epochs"], batch_size=64, optimizer="adam", lr=c["lr"], weight_decay=0.0,
                          schedule="onecycle", warmup=0.1, augment=None, progress=False)


def run_captions(image, seed, **c):
    res = caption_model(image, seed, **c)
    test = scenes["test"].as_dataset("index")
    x = test.normalize(test.images)
    task = wb.sequence.CaptionTask(tables["test"], phrasings=c["phrasings"])
    teacher = task.evaluate(res.model, wb.data.Loader(test, batch_size=500, shuffle=False, augment=None))
    decoded = detokenize(wb.sequence.greedy_decode(res.model, x))
    return {**wb.sequence.caption_scores(decoded, references), "test_loss": teacher["loss"],
            "next_word_acc": teacher["acc"], "distinct_captions": len(set(decoded)), "decoded": decoded}


caption_constants = dict(train_scenes=TRAIN_SCENES, test_scenes=TEST_SCENES, size=SCENE_SIZE, max_objects=MAX_OBJECTS,
                         phrasings=PHRASINGS, width=CAPTION_WIDTH, epochs=CAPTION_EPOCHS, lr=CAPTION_LR)
captions = wb.sweep(functools.partial(run_captions, **caption_constants),
                    [dict(image=i, seed=s) for i in (True, False) for s in CAPTION_SEEDS],
                    backend=BACKEND, folder=wb.sweep_folder("lrcn_captions", caption_constants))
captions["model"] = captions.image.map({True: "captioner (sees the image)", False: "caption prior (image-blind)"})
metric_cols = ["f1", "precision", "recall", "colour_recall", "item_recall", "size_recall", "ground_recall",
               "test_loss", "next_word_acc", "distinct_captions"]
captions.groupby("model")[metric_cols].mean().round(4)

# %%
scores = captions.melt(id_vars=["model", "seed"], value_vars=["f1", "colour_recall", "item_recall", "size_recall",
                                                               "ground_recall"], var_name="score")
px.bar(scores.groupby(["model", "score"], sort=False).value.mean().reset_index(), x="score", y="value", color="model",
       barmode="group", title="Greedy captions of the test scenes: content-word scores")

# %% [markdown]
# ### Explore: a scene and the two captions

# %%
decoded = {m: captions[captions.model == m].decoded.iloc[0] for m in captions.model.unique()}


def render_scene(index=0):
    img = scenes["test"].images[index].permute(1, 2, 0).numpy()
    lines = [f"reference: {references[index]}"] + [f"{m}: {d[index]}" for m, d in decoded.items()]
    return px.imshow(img, title="<br>".join(lines)).update_layout(height=480, width=640, margin=dict(t=110))


wb.viz.explorer(render_scene, index=list(range(30)))

# %% [markdown]
# ## The claim, as a check that can fail
#
# Fixed before the comparison runs, at the same budget for the two models of each pair:
#
# 1. on `motion` (only order tells), LRCN is at least `MIN_ABOVE_CHANCE` (25 points) above chance in
#    every seed, and mean pooling at most `NEAR_CHANCE` (10 points) above chance;
# 2. on `motion_items` (one frame suffices), the two heads are within `MAX_ITEM_GAP` (5 points) of
#    each other (mean over seeds), both above chance;
# 3. the captioner's greedy captions score a content-word F1 at least `MIN_F1_GAIN` (0.15) above the
#    image-blind caption prior's, in every seed.
#
# In every mode (`CHECK_MECHANISM`), exact: mean pooling's logits do not change when a clip is played
# backwards (a bag of frames has no order), the LSTM's do; the caption prior writes the same caption
# for every image.

# %%
acc = runs.pivot_table(index="seed", columns=["name", "head"], values="acc")
print(acc.round(4).to_string())
print(captions.pivot_table(index="seed", columns="model", values="f1").round(4).to_string())
if CHECK_MECHANISM:
    mean_runs, lstm_runs = runs[runs["head"] == "mean"], runs[runs["head"] == "lstm"]
    assert (mean_runs.reversal_max_change < 1e-4).all(), "mean pooling should give a reversed clip the same logits"
    assert (lstm_runs.reversal_max_change > 1e-3).all(), "the LSTM should read the frames' order"
    blind = captions[~captions.image.astype(bool)]
    assert (blind.distinct_captions == 1).all(), "the image-blind prior should write one caption for every image"
if CHECK_CLAIM:
    motion_lstm, motion_mean = acc["motion", "lstm"], acc["motion", "mean"]
    assert (motion_lstm - 1 / 8 >= MIN_ABOVE_CHANCE).all(), f"LRCN on motion: {motion_lstm.to_dict()}"
    assert (motion_mean - 1 / 8 <= NEAR_CHANCE).all(), f"mean pooling on motion: {motion_mean.to_dict()}"
    item_gap = abs(acc["motion_items", "lstm"].mean() - acc["motion_items", "mean"].mean())
    assert item_gap <= MAX_ITEM_GAP, f"the heads on motion_items differ by {item_gap:.3f}"
    assert (acc["motion_items"] > 0.1).all().all(), "both heads should learn the garments"
    f1 = captions.pivot_table(index="seed", columns="image", values="f1")
    assert (f1[True] - f1[False] >= MIN_F1_GAIN).all(), f"captioner vs prior F1: {f1.to_dict()}"

# %% [markdown]
# ## Reading the results
#
# Laptop mode, one seed (timed 2026-12-07 at two threads with the machine to itself: 5.3 minutes from an
# empty cache, generating the 30,000 training clips included; the one-thread pilot gave numbers a few
# points apart, as training at another thread count does).
#
# **Order.** On `motion` LRCN classifies 37.9% of the 1,000 test clips (chance 12.5%), mean pooling
# over the same per-frame trunk 12.6%: 25.4 points above chance against 0.1 (the bar, fixed before the
# runs, was 25 points: passed by 0.4 here and by 4.6 in the one-thread pilot; one seed, a thin margin,
# and a check that can fail on another machine's arithmetic). Mean pooling's answer is
# exactly the same for a clip played backwards (the check asserts logits equal to 1e-4; its accuracy on
# reversed clips is its accuracy, 12.6%), so it cannot tell "left" from "right", "towards" from "away" or
# the two turns apart, whatever it learns. LRCN's accuracy on reversed clips falls to 6.8%, *below*
# chance: a reversed clip is read as the opposite motion, which is what a model of order should do. The
# order is learned only from enough distinct clips: in the pilot, 3,000 clips seen 8 times were learned
# by heart (38% right on them, chance on the test clips), which is why the notebook generates 15,000.
#
# **Frame by frame** (`hook_steps`: the probability LRCN gives the true motion if the clip stopped after
# frame `t`): below chance for the first four frames (0.103, 0.085, 0.083, 0.097), then climbing (0.130,
# 0.182, 0.229, 0.252): its state gathers the motion as frames arrive, and it was trained to answer only
# at the end. Mean pooling's running average stays at 0.124-0.127, chance.
#
# **One frame suffices** (`motion_items`): at this budget both heads learned little of the garments
# (LRCN 17.3%, mean pooling 21.7%, chance 10%): 8x8-pixel Fashion-MNIST items in 16x16 frames after
# two epochs. They are within the 5 points we asked for (4.4, mean pooling ahead), so the check
# passes, but at a low level, on one seed and with little margin: "about equally well" is shown here
# only weakly, and the order of the two is not a result. A single frame carries everything, and LRCN's
# belief barely changes frame by frame (its probability for the true garment goes from 0.105 after one
# frame to 0.123 after eight).
#
# **Description.** Greedy captions of 500 test scenes: the captioner's content words score F1 0.546
# (precision 0.582, recall 0.524) against 0.364 for the image-blind prior, which writes the same
# caption for every scene ("a small purple trousers and a large yellow boot on snow"). The gain
# comes from what is easy to see at 32x32: the ground (recall 100% against 23%) and the colours (42%
# against 32%), and from writing as many objects as there are (the prior always writes two). The
# garments themselves it does **not** name better than the prior (item recall 15.9% against 21.5%):
# as in the recognition part, item identity at this resolution and budget is the weak spot.
# Teacher-forced next-word accuracy: 69.8% against 52.0%; 127 distinct captions for 500 scenes.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here, laptop mode |
# | --- | --- | --- |
# | recognition data | UCF-101 (101 actions) | 15,000 generated 8-frame clips (16x16 frames), 8 motions |
# | CNN per frame | CaffeNet-like, pre-trained on ImageNet | ResNet-8 of width 8, from scratch |
# | averaged single frames vs LRCN | LRCN ahead on RGB frames, on flow and on both (see the paper's table 1 for the accuracies) | `motion`: 12.6% vs 37.9% (chance 12.5%); `motion_items`: 21.7% vs 17.3% (chance 10%) |
# | description data | Flickr30k and COCO, several human captions per image | 4,000 generated scenes, one grammar caption each |
# | description score | BLEU and retrieval recall (see the paper's tables 3 and 4) | content-word F1 0.546 vs 0.364 for the image-blind prior |
#
# The scales and tasks differ in kind: UCF-101's classes can mostly be told from one frame, so the
# paper's gain from recurrence is a matter of points, where our `motion` labels are built so that
# only order tells (the gain is the whole result); our captions come from a grammar and are scored
# by the content words they name, not by n-gram overlap with human sentences.

# %% [markdown]
# ## What to try next
#
# - `TRAIN_CLIPS = 5_000` with `VIDEO_EPOCHS = 6` (the same steps over a third as many distinct clips,
#   about the registered training set): does LRCN still learn the motions, or does it learn its
#   training clips by heart, as it did in our pilot with 3,000 clips?
# - `HEADS = ["lstm", "gru", "tconv", "segments", "mean"]`: do a GRU, Temporal-Inception's temporal
#   convolutions and TS-LSTM's segment LSTMs (notebook 51) read order as well as LRCN's LSTM? Every one
#   but `mean` is order-aware.
# - `PHRASINGS = [0, 1, 2, 3]` (train on all four phrasings, one drawn per scene and step): greedy
#   decoding must then commit to one phrasing, and "a photo of a ..." names only the first object;
#   watch recall fall while precision holds. Or `MAX_OBJECTS = 4` for longer captions.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **The teacher-forced loss.** A captioner was fed `tokens[:, :-1]` (a batch of captions, `<bos>`
# first, `<eos>` after the last word, then padding id 0) and returned `logits` `[B, L - 1, vocab]`:
# at step `t`, its scores for the word after `tokens[:, t]`. Return the mean next-word cross-entropy
# over the **real** target words (the targets are `tokens[:, 1:]`; a target of 0 is padding and does
# not count), as a scalar tensor.

# %%
def caption_loss(logits, tokens):
    raise NotImplementedError  # your code here


wb.exercises.check("caption_loss", caption_loss)
