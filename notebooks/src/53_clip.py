# %% [markdown]
# # CLIP: learn from captions by matching them, not by predicting them
#
# Alec Radford, Jong Wook Kim, Chris Hallacy, Aditya Ramesh, Gabriel Goh, Sandhini Agarwal, Girish
# Sastry, Amanda Askell, Pamela Mishkin, Jack Clark, Gretchen Krueger & Ilya Sutskever, *Learning
# Transferable Visual Models From Natural Language Supervision*, ICML 2021
# ([arXiv 2103.00020](https://arxiv.org/abs/2103.00020)).
#
# **The question.** Image classifiers learn a fixed list of classes; a new concept needs new labels.
# Captions name far more concepts, and come for free with images on the web. What is the most
# *efficient* way to learn from them, so that the trained model can then classify with any list of
# class names written in words (zero-shot), on tasks it was never trained for?
#
# **The idea.** Two towers, one for images and one for text, map both into one space. The
# contrastive objective asks only which of the batch's `B` captions belongs to which of its `B`
# images: a symmetric cross-entropy over the `B x B` cosine similarities scaled by a learned
# temperature (InfoNCE). The alternatives the paper tried first predict the caption from the image:
# its exact words with a language model, or, cheaper, its *bag of words*. Predicting which words
# appear asks for detail the task does not need (every word of a caption, for every image);
# matching asks only for what tells this caption from the others. Zero-shot classification then
# embeds one prompt per class ("a photo of a {class}"), or the mean of several (prompt ensembling),
# and picks the class whose text is most similar to the image.
#
# **What is checked here.** The paper's data (400 million web image-text pairs) cannot be had on a
# laptop, so the captions come from generated scenes (`wb.data.make_scenes`): one or two real
# Fashion-MNIST garments, each tinted one of six colours, small or large, on one of four textured
# grounds, with several phrasings per scene ("a small red coat and a large white bag on sand",
# "a coat and a bag on sand", "a photo of a small red coat", "a red coat left of a white bag").
# They keep what matters to the claim: captions that name several attributes of several objects,
# a vocabulary wider than any one task, and combinations that can be held out. They lose natural
# language (a closed grammar of 60-odd words, no synonyms), real scenes and the long tail of concepts.
#
# One model, `clip_tiny` (a ResNet-8 image tower, a 2-layer text transformer, 64-d joint space),
# trained with the same data, batch, recipe, steps and seeds by:
#
# * **contrastive** (`wb.vl.ImageTextContrastive`): CLIP's objective, a phrasing drawn per scene;
# * **bag of words** (`wb.vl.CaptionWords`): predict which content words the caption holds (a linear
#   word head on the same image embedding, binary cross-entropy per word), the paper's cheaper
#   predictive baseline. Its zero-shot score of a prompt is the log-probability it gives the prompt's
#   words (`wb.vl.efficiency.word_scores`).
#
# Compute is counted as training steps x batch; the image tower is the same in both, the text
# tower is the contrastive run's extra (measured below). Zero-shot accuracy is measured after every
# epoch on held-out single-object scenes (which garment is it, ten classes). Then, for the trained
# models: zero-shot on colour-garment combinations never seen in training; prompt ensembling; and
# zero-shot on tasks nobody trained them for (the garment's colour, the ground) against a linear
# probe given a few labelled examples per class.
#
# At this scale the compute claim shows (3.1x fewer steps to the bag-of-words objective's final
# zero-shot accuracy, 3 seeds), held-out combinations transfer, and zero-shot matches a 4-shot
# linear probe on colour; prompt ensembling does not show robustly (positive in every seed of one
# run, within its spread in another) and is asserted in paper mode only.

# %%
import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None
from workbench.data import scenes as S
from workbench.vl import efficiency as E

info = wb.setup()

# %% tags=["parameters"]
SCENES = wb.by_mode(smoke=300, laptop=8_000, paper=100_000)  # training scenes (each with 3-4 phrasings)
EVAL_SCENES = wb.by_mode(smoke=100, laptop=1_000, paper=5_000)  # held-out scenes for each zero-shot test
SIZE = wb.by_mode(smoke=32, laptop=32, paper=64)  # scene side in pixels
MAX_OBJECTS = 2  # one or two garments per training scene
EPOCHS = wb.by_mode(smoke=2, laptop=8, paper=30)  # zero-shot accuracy is measured after each epoch
BATCH_SIZE = wb.by_mode(smoke=32, laptop=128, paper=512)  # the same for both objectives: B x B similarities
LR = 2e-3  # AdamW, one-cycle schedule, no weight decay, no augmentation (a flip would swap "left of")
WIDTH = wb.by_mode(smoke=8, laptop=16, paper=32)  # the image tower's ResNet-8 base width
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])
HELD_OUT = [("red", "coat"), ("blue", "sneaker"), ("yellow", "bag"), ("green", "dress"), ("purple", "trousers"),
            ("white", "sandal")]  # colour-garment combinations that never occur in training
PROMPT = "a {}"  # the single prompt; the ensemble is wb.vl.TEMPLATES
SHOTS = wb.by_mode(smoke=[1, 2], laptop=[1, 2, 4, 8, 16], paper=[1, 2, 4, 8, 16, 32])  # per class, linear probe
PROBE_DRAWS = wb.by_mode(smoke=1, laptop=3, paper=5)  # random draws of the few shots
MIN_RATIO = 2.0  # "several times less compute": contrastive reaches the target in at most half the steps
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=True, paper=True)
CHECK_ENSEMBLE = wb.by_mode(smoke=False, laptop=False, paper=True)  # did not show at laptop scale (see the reading)

# %% [markdown]
# ## The data: captioned scenes
#
# Training scenes hold one or two garments from Fashion-MNIST's training images; every zero-shot
# test uses scenes of one garment (so "which garment" has one answer) drawn from its *test*
# images. The `HELD_OUT` combinations (a red coat, a blue sneaker, ...) never occur in training:
# a red garment is never a coat, a coat is never red, but red things and coats both abound.

# %%
items = wb.load("fashion_mnist", "train", subset=20_000, seed=0)
test_items = wb.load("fashion_mnist", "test", subset=5_000, seed=0)
train_scenes = S.make_scenes(items, SCENES, size=SIZE, max_objects=MAX_OBJECTS, seed=0, exclude=HELD_OUT)
captions = wb.vl.caption_table(train_scenes, length=16)
single = S.make_scenes(test_items, EVAL_SCENES, size=SIZE, max_objects=1, seed=1, exclude=HELD_OUT, split="test")
unseen = S.make_scenes(test_items, EVAL_SCENES, size=SIZE, max_objects=1, seed=2, only=HELD_OUT, split="test")
shots_pool = S.make_scenes(items, EVAL_SCENES, size=SIZE, max_objects=1, seed=3, exclude=HELD_OUT)  # probe's labels
ITEMS, COLOURS = [w for w, _ in S.ITEM_WORDS], list(S.COLOURS)
print(f"{len(train_scenes):,} training scenes, {captions.shape[1]} phrasings each, vocabulary {len(S.VOCAB)} words")
for caps in train_scenes.captions[:3]:
    print(" | ".join(caps))
n = 8
fig = px.imshow(torch.cat([train_scenes.images[:n], unseen.images[:n]]).permute(0, 2, 3, 1).numpy(), facet_col=0,
                facet_col_wrap=n, facet_row_spacing=0.03, facet_col_spacing=0.01,
                title="Training scenes (top) and test scenes of held-out combinations (bottom)")
fig.for_each_annotation(lambda a: a.update(text=""))
fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False).update_layout(height=320)

# %% [markdown]
# ## Train both objectives at the same compute
#
# Every run: `clip_tiny` from the run's seed, `EPOCHS` passes over the scenes in batches of
# `BATCH_SIZE`, AdamW at `LR` on a one-cycle schedule, the same for both objectives (chosen once on a
# pilot of seed 0, before the comparison). `E.ZeroShotCurve` (an algorithm of `wb.fit`, acting at
# each epoch's end) writes the zero-shot garment accuracy into the history, prompt `PROMPT`. After
# training, `run` measures the trained model on the other tests (defined in the next sections);
# `wb.train_model` caches the models and `wb.sweep` the records, so a rerun is instant.

# %%
OBJECTIVES = {"contrastive": wb.vl.ImageTextContrastive, "bag of words": wb.vl.CaptionWords}
garments = single.as_dataset("first_item")
recipe = dict(epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR, optimizer="adamw", weight_decay=0.0, augment=None)


def train(objective, seed):
    kwargs = dict(context=16, width=WIDTH, word_head=objective == "bag of words", num_classes=0)
    return wb.train_model("clip_tiny", train_scenes.as_dataset("index"), model_kwargs=kwargs, seed=seed,
                          task=OBJECTIVES[objective](captions), progress=False,
                          algorithms=[E.ZeroShotCurve(garments, ITEMS, [PROMPT], length=16)], **recipe)


def combos(scenes):  # zero-shot among all 60 colour-garment combinations
    names = [f"{c} {w}" for c in COLOURS for w in ITEMS]
    labels = scenes.colours[:, 0] * len(ITEMS) + scenes.items[:, 0]
    return wb.data.ImageDataset(scenes.images, labels, names, "scenes/combination", "test", (0.5,) * 3, (0.25,) * 3)


TASKS = {  # zero-shot on attributes: the class word slots into prompts that name the garment
    "colour": (single.as_dataset("first_colour"), shots_pool.as_dataset("first_colour"),
               [f"a {{}} {w}" for w in ITEMS]),
    "ground": (single.as_dataset("ground"), shots_pool.as_dataset("ground"), [f"a {w} on {{}}" for w in ITEMS])}


def run(objective, seed):
    result = train(objective, seed)
    model, h = result.model, result.history
    acc = lambda data, templates: E.zero_shot_accuracy(model, data, templates=templates, length=16)  # noqa: E731
    rec = dict(curve_step=h["step"].tolist(), curve_acc=h["zero_shot_acc"].tolist(),
               seconds=float(h["seconds"].iloc[-1]),
               single_prompt=acc(garments, [PROMPT]), ensemble=acc(garments, list(wb.vl.TEMPLATES)),
               unseen_combos=acc(combos(unseen), [PROMPT]), seen_combos=acc(combos(single), [PROMPT]))
    for task, (test, pool, templates) in TASKS.items():
        rec[f"{task}_zero_shot"] = acc(test, templates)
        z_pool, z_test = wb.vl.embed_images(model, pool).cpu(), wb.vl.embed_images(model, test).cpu()
        for k in SHOTS:
            probe = [wb.ssl.linear_probe_features(z_pool[i], pool.labels[i].cpu(), z_test, test.labels.cpu(),
                                                  num_classes=test.num_classes)["test_acc"]
                     for i in (E.few_shot_indices(pool.labels, k, seed=d) for d in range(PROBE_DRAWS))]
            rec[f"{task}_probe_{k}"] = sum(probe) / len(probe)
    return rec


constants = dict(scenes=SCENES, eval_scenes=EVAL_SCENES, size=SIZE, max_objects=MAX_OBJECTS, width=WIDTH,
                 held_out=HELD_OUT, prompt=PROMPT, shots=SHOTS, probe_draws=PROBE_DRAWS, **recipe)
grid = [dict(objective=o, seed=s) for o in OBJECTIVES for s in SEEDS]
runs = wb.sweep(run, grid, backend=BACKEND, folder=wb.sweep_folder("clip", constants))
runs[["objective", "seed", "single_prompt", "ensemble", "unseen_combos", "seen_combos", "seconds"]].round(3)

# %% [markdown]
# ## Zero-shot accuracy against compute
#
# The target accuracy is fixed before looking at the curves: **the bag-of-words objective's final
# zero-shot accuracy** (the last point of its mean curve over seeds). `E.steps_to_reach` finds
# the first step at which each mean curve reaches it (linearly interpolated between
# evaluations); the ratio of the two is how many times less compute the contrastive objective
# needs for the same zero-shot accuracy (the paper's figure 2 measures it in images seen; at one
# batch size, steps are proportional to it). The learning-rate schedule spans the whole run, so a
# point of the curve is a run's state part-way, not a shorter run's end.

# %%
curves = runs.explode(["curve_step", "curve_acc"]).astype({"curve_step": int, "curve_acc": float})
curves["images seen"] = curves.curve_step * BATCH_SIZE
mean_curve = curves.groupby(["objective", "curve_step", "images seen"]).curve_acc.agg(["mean", "std"]).reset_index()
target = float(mean_curve[mean_curve.objective == "bag of words"]["mean"].iloc[-1])  # its mean curve's last point
reach = {o: E.steps_to_reach(g.curve_step, g["mean"], target) for o, g in mean_curve.groupby("objective")}
ratio = reach["bag of words"] / reach["contrastive"]
by_run = {(r.objective, r.seed): E.steps_to_reach(r.curve_step, r.curve_acc, target) for r in runs.itertuples()}
per_seed = {s: by_run["bag of words", s] / by_run["contrastive", s] for s in SEEDS}
fig = px.line(mean_curve, x="images seen", y="mean", error_y="std", color="objective", markers=True,
              labels={"mean": "zero-shot accuracy (garment, 10 classes)"},
              title=f"Zero-shot accuracy against compute ({len(SEEDS)} seeds, batch {BATCH_SIZE}); "
                    f"the contrastive objective reaches the target in {ratio:.1f}x fewer steps")
fig.add_hline(y=target, line_dash="dash", annotation_text="target: bag of words, final")
fig.add_hline(y=0.1, line_dash="dot", annotation_text="chance")
for o, s in reach.items():
    if math.isfinite(s):
        fig.add_vline(x=s * BATCH_SIZE, line_dash="dot", line_color="grey")
fig

# %%
steps_table = pd.DataFrame({"steps to the target (mean curve)": reach,
                            "seconds per step (this run's wall clock)": runs.groupby("objective").seconds.mean()
                            / (EPOCHS * math.ceil(SCENES / BATCH_SIZE))})
models = {o: train(o, SEEDS[0]).model for o in OBJECTIVES}
steps_table["image tower + head parameters"] = [sum(p.numel() for n, p in models[o].named_parameters()
                                                    if not n.startswith("text")) for o in steps_table.index]
steps_table["text tower parameters"] = [sum(p.numel() for n, p in models[o].named_parameters()
                                            if n.startswith("text")) if o == "contrastive" else 0
                                        for o in steps_table.index]
print(f"target {target:.3f}; steps ratio bag of words / contrastive: {ratio:.2f} (per seed: "
      f"{ {s: round(r, 2) for s, r in per_seed.items()} })")
steps_table.round(4)

# %% [markdown]
# The text tower is the contrastive run's extra: its parameters sit in the table, and its cost per
# step is the difference of the two wall-clock rates (on a shared machine only a rough guide; the
# bag-of-words run trains no text tower: its word head is one linear layer). The ratio of steps is
# the compute the *image* tower spends; the wall-clock ratio, the whole model's on this CPU.
#
# ## Zero-shot on what training never showed
#
# **Held-out combinations.** Test scenes of the six `HELD_OUT` combinations, classified among all
# 60 colour-garment combinations with the prompt "a {colour} {garment}" (chance 1/60), beside
# single-garment test scenes of combinations seen in training.
#
# **Prompt ensembling.** Garment accuracy with the single prompt `PROMPT` against the mean
# embedding of the six `wb.vl.TEMPLATES` ("a {}", "a photo of a {}", "a {} on grass", ...).
#
# **Tasks it was not trained for.** Colour (six classes) and ground (four): zero-shot by prompts
# that name the garment ("a {colour} coat", mean over the ten garments; "a coat on {ground}"),
# against a logistic-regression probe on the frozen image embeddings given `k` labelled scenes per
# class (`wb.ssl.linear_probe_features`, mean over `PROBE_DRAWS` draws of the shots).

# %%
TESTS = {"seen_combos": "combinations seen (60-way)", "unseen_combos": "held-out combinations (60-way)",
         "single_prompt": f"garment, prompt '{PROMPT}'", "ensemble": "garment, 6 prompts ensembled"}
long = runs.melt(id_vars=["objective", "seed"], value_vars=list(TESTS), var_name="test", value_name="accuracy")
long["test"] = long["test"].map(TESTS)
px.bar(long.groupby(["objective", "test"]).accuracy.agg(["mean", "std"]).reset_index(), x="test", y="mean",
       error_y="std", color="objective", barmode="group", labels={"mean": "zero-shot accuracy"},
       title=f"Zero-shot tests of the trained models (mean and spread over {len(SEEDS)} seeds)")

# %%
rows = []
for (o, s), r in runs.set_index(["objective", "seed"]).iterrows():
    for task in TASKS:
        rows.append(dict(objective=o, seed=s, task=task, shots=0, accuracy=r[f"{task}_zero_shot"], how="zero-shot"))
        rows += [dict(objective=o, seed=s, task=task, shots=k, accuracy=r[f"{task}_probe_{k}"], how="linear probe")
                 for k in SHOTS]
probes = pd.DataFrame(rows)
probe_mean = probes.groupby(["objective", "task", "how", "shots"]).accuracy.mean().reset_index()
fig = px.line(probe_mean[probe_mean.how == "linear probe"], x="shots", y="accuracy", color="objective",
              facet_col="task", markers=True, log_x=True,
              title="Linear probe given k scenes per class (lines) against zero-shot (dashed)")
for i, task in enumerate(TASKS):
    for o, colour in zip(OBJECTIVES, px.colors.qualitative.Plotly):
        zs = probe_mean[(probe_mean.how == "zero-shot") & (probe_mean.task == task)
                        & (probe_mean.objective == o)].accuracy
        fig.add_hline(y=float(zs.iloc[0]), line_dash="dash", line_color=colour, col=i + 1)
fig

# %%
measured = [c for c in runs.columns if c.endswith(("zero_shot", "combos", "prompt", "ensemble")) or "_probe_" in c]
summary = runs.groupby("objective")[measured].agg(["mean", "std"]).T.unstack()
summary.round(3)

# %% [markdown]
# ### Explore the prompts
#
# Choose a prompt template: the zero-shot garment accuracy per class of both seed-0 models with
# that prompt. The bag-of-words model scores only the words it predicts, so templates that add a
# ground word shift every class alike and leave it unchanged; the contrastive model reads the whole
# sentence, and some phrasings suit it better than others.

# %%
def render_prompt(template=PROMPT):
    rows = []
    for o, m in models.items():
        pred = E.zero_shot_scores(m, garments, ITEMS, [template], length=16).argmax(1).cpu()
        right = pred == garments.labels.cpu()
        rows += [dict(objective=o, garment=w, accuracy=float(right[garments.labels.cpu() == c].float().mean()))
                 for c, w in enumerate(ITEMS)]
    return px.bar(pd.DataFrame(rows), x="garment", y="accuracy", color="objective", barmode="group",
                  title=f"Zero-shot garment accuracy per class, prompt '{template}' (seed {SEEDS[0]})",
                  range_y=[0, 1])


wb.viz.explorer(render_prompt, template=list(wb.vl.TEMPLATES))

# %% [markdown]
# ## The claim, as a check that can fail
#
# Every mode: the curves and tests ran, and accuracies are shares. Laptop and paper mode (fixed
# before the laptop run; the target is the bag-of-words objective's final accuracy), checks 1, 2
# and 4; check 3 was planned for laptop mode too, failed there (see the reading: the gain is
# smaller than its spread over three seeds), and is asserted in paper mode only:
#
# 1. **compute**: the contrastive objective reaches the target in at most `1 / MIN_RATIO` of the
#    steps the bag-of-words objective needs (mean curves over seeds), and in every seed reaches it
#    in fewer steps;
# 2. **held-out combinations**: the contrastive model classifies scenes of combinations it never
#    saw at least 5 times more often right than chance (1/60), in every seed;
# 3. **prompt ensembling**: the six-prompt ensemble beats the single prompt on average over seeds by
#    more than the spread of that gain over seeds;
# 4. **tasks it was not trained for**: the contrastive model's zero-shot colour and ground accuracy
#    is at least that of a one-shot linear probe on its own embeddings (mean over seeds and draws).

# %%
contrastive = runs[runs.objective == "contrastive"].set_index("seed")
gain = contrastive.ensemble - contrastive.single_prompt
spread = gain.std() if len(gain) > 1 else 0.0
print(f"steps to reach {target:.3f}: {reach}; ratio {ratio:.2f}; per seed {per_seed}")
print(f"held-out combinations (chance {1 / 60:.3f}): {contrastive.unseen_combos.round(3).to_dict()}")
print(f"ensemble - single prompt per seed: {gain.round(4).to_dict()} (spread {spread:.4f})")
for task in TASKS:
    print(f"{task}: zero-shot {contrastive[f'{task}_zero_shot'].mean():.3f}, "
          + ", ".join(f"{k}-shot probe {contrastive[f'{task}_probe_{k}'].mean():.3f}" for k in SHOTS))
assert runs.curve_acc.map(lambda c: all(0 <= a <= 1 for a in c) and len(c) == EPOCHS).all()
assert 0 < target <= 1 and not math.isnan(ratio)
if CHECK_CLAIM:
    assert ratio >= MIN_RATIO, f"the contrastive objective should need at most 1/{MIN_RATIO} of the steps: {ratio:.2f}"
    assert all(r > 1 for r in per_seed.values()), f"in every seed the contrastive run should be faster: {per_seed}"
    assert (contrastive.unseen_combos > 5 / 60).all(), f"held-out combinations near chance: {contrastive.unseen_combos}"
    for task in TASKS:
        assert contrastive[f"{task}_zero_shot"].mean() >= contrastive[f"{task}_probe_1"].mean(), \
            f"{task}: zero-shot should match a one-shot probe"
if CHECK_ENSEMBLE:
    assert gain.mean() > spread, f"prompt ensembling should add accuracy beyond the spread: {gain.to_dict()}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-07; 6.2 minutes at two threads from an empty cache,
# the machine to itself) the two objectives part early. After 504 steps of 128 scenes the contrastive
# model names the garment of a held-out scene from the prompt "a {garment}" 34.8% of the time (mean
# over 3 seeds, spread 3.5 points; chance 10%); the bag-of-words model, same image tower, same steps,
# 14.8% (spread 2.2). The target, fixed before the comparison, is that 14.8%: the contrastive mean
# curve crosses it after 162 steps, the bag-of-words curve only at its last evaluation, step 504:
# **3.1x fewer steps**, above the `MIN_RATIO` of 2 (per seed: 1.9x and 3.1x in seeds 1 and 2; in seed 0
# the bag-of-words run, at 12.3%, never reached the mean). The measure is coarse at the low end: the
# target is only five points above chance, and the bag-of-words curve stays near chance for its first
# half. The predictive model is not idle: it learned the easy words, colour (88% zero-shot) and ground
# (100%), while barely starting on shapes; predicting every word spends the image tower on what is
# easiest to predict, where matching captions needs what tells scenes apart.
#
# The text tower is the contrastive run's price: 110 K parameters beside the image tower's 81 K; in
# the timed run a contrastive step cost 0.115 s against 0.096 s for a bag-of-words step, 1.2x. Counted
# in wall clock, the advantage shrinks from 3.1x to about 2.6x; in the paper the text tower is a small
# share of a far larger image tower's cost.
#
# Held-out combinations transfer: scenes of a red coat, a blue sneaker and the four other
# combinations never shown in training are classified among all 60 colour-garment combinations
# 28.7% right by the contrastive model (25.9%, 32.0%, 28.3%; chance 1.7%), against 32.8% for
# combinations it saw; the gap is about the garment accuracy's spread, and colour is named right
# 98% of the time on single scenes, so most errors are the garment's. The bag-of-words model gets
# 7.3% of the held-out combinations right.
#
# Prompt ensembling is **not** shown robustly: in this run the six templates raised garment accuracy
# in every seed (+1.7, +0.6 and +2.3 points; mean +1.5, spread 0.9), but in the one-thread pilot with
# the same settings they moved it by +0.7, -0.6 and +3.8 (mean +1.3, spread 2.3). The check planned
# for laptop mode failed on the pilot and runs in paper mode only; one passing run does not put it
# back. Our templates differ from "a {}" mostly by a ground word, and the grammar has no paraphrase
# for an ensemble to average over; the paper averages 80 prompts written for real photographs.
#
# On tasks nobody trained for, zero-shot matches a few-shot probe on the same embeddings: colour
# 98.4% zero-shot, against 63.4% for a linear probe given one scene per colour, 93.3% with two and
# 98.5% with four; ground 100% zero-shot, 72.3%, 97.1% and 100% with one, two and four shots.
# Zero-shot is worth about four labelled examples per class here, as in the paper. Ground is easy
# (its textures differ in colour) and saturates every method; count was not tested (the captions
# count only garments of one kind).

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | compute to reach the predictive baseline's zero-shot accuracy | contrastive about 4x less than bag-of-words prediction, which is itself about 3x less than a transformer predicting the caption (figure 2, zero-shot ImageNet) | contrastive 3.1x fewer steps than bag-of-words prediction to reach the latter's final 14.8% (garment, 10 classes); about 2.6x in wall clock with the text tower |
# | prompt ensembling | 80 prompts add about 3.5 points on ImageNet over the single default prompt (section 3.1.4; with prompt engineering, almost 5 points on average over 36 datasets, figure 4) | 6 templates: +1.5 points (spread 0.9) in the timed run, +1.3 (spread 2.3) in the pilot: not robust |
# | zero-shot against few-shot linear probes | zero-shot matches the average of a 4-shot linear probe on the same features (figure 6) | colour: zero-shot 98.4%, 4-shot probe 98.5%; ground: 100% and 100% |
# | held-out attribute-object combinations | not tested as such in the paper | 28.7% on 6 held-out combinations among 60 (chance 1.7%), 32.8% on seen ones |
#
# The paper trains on 400 million web image-text pairs for 32 epochs with batch 32,768, ResNet and
# ViT image towers up to 300 M parameters; here a 78 K-parameter ResNet-8 and a 105 K-parameter
# text transformer see 8,000 generated scenes for 504 steps of 128.

# %% [markdown]
# ## What to try next
#
# - `EPOCHS = 24`: three times the compute. Does the bag-of-words objective start to tell the
#   garments apart, and does the ratio stay near what was measured here when the target is higher?
# - `MAX_OBJECTS = 4`: crowded scenes with longer captions: more words for the predictive
#   objective to spend itself on, more to tell one caption from another for the contrastive one.
# - `BATCH_SIZE = 32` with `EPOCHS = 32` (the same images seen): fewer negatives per step for the
#   contrastive loss; the paper relies on very large batches.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **CLIP's loss.** `img` and `txt` are L2-normalized embeddings `[B, D]` of `B` matching pairs
# (row `i` of each belongs together), `logit_scale` a number (the log of the inverse temperature).
# Return the symmetric InfoNCE loss, a scalar tensor: with `s = exp(logit_scale) * img @ txt.T`,
# the mean of the cross-entropy of each row of `s` against its matching column and of each column
# against its matching row.

# %%
def clip_loss(img, txt, logit_scale):
    raise NotImplementedError  # your code here


wb.exercises.check("clip_loss", clip_loss)
