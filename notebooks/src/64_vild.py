# %% [markdown]
# # ViLD: open-vocabulary detection by distilling a vision-language model
#
# Xiuye Gu, Tsung-Yi Lin, Weicheng Kuo & Yin Cui, *Open-vocabulary Object Detection via Vision and
# Language Knowledge Distillation*, ICLR 2022 ([arXiv 2104.13921](https://arxiv.org/abs/2104.13921)).
#
# **The question.** A detector learns the categories its boxes are labelled with. Can it detect
# categories nobody labelled a box of ("novel"), given only their names, by borrowing from an
# image-text model (CLIP) trained on captions?
#
# **The idea.** Train the detector's region head on the labelled ("base") categories only, but
# make its region embeddings live in the image-text model's space: **ViLD-text** classifies each
# region by its similarity to the *text* embeddings of the base class names (plus a learned
# background embedding); **ViLD-image** distills the teacher's *image* embedding of each region's
# crop into the region embedding (L1), which carries knowledge of every category in the image,
# labelled or not. At test time the novel names' text embeddings are simply added to the classifier.
#
# **What is checked here.** The scenes of `wb.data.make_scenes` (one or two Fashion-MNIST garments
# on textured grounds, 32 px, with boxes) and the captioned-scene teacher `clip_tiny` trained
# exactly as notebook 53 trains it (the cache is shared). Three of the ten garments are **novel**:
# `dress`, `sneaker`, `bag`, fixed before any run: one from the tops (which have four base
# relatives), one from the footwear (two base relatives), and one with no relative at all. Their
# boxes are never labelled in training (their pixels stay: as in ViLD, they count as background for
# the classification loss). Four arms, same student (a ResNet-8 trunk, RoIAlign, a small head), same
# data, steps, recipe and seeds:
#
# * **supervised**: the same region head classified against a *fixed* classifier of the 7 base
#   classes (random orthonormal vectors, `vild_eval.fixed_classifier`): its class vectors carry no
#   names, so it cannot name a novel class at all: **novel AP 0 by construction**;
# * **ViLD-text**: base text embeddings as the classifier; **ViLD-image**: only the L1 distillation
#   (no labels at all); **ViLD**: both.
#
# Proposals are not learned: every ground-truth box jittered four times plus four random boxes
# (`wb.vl.proposals`), in training and test alike. The comparison is about **classifying regions,
# not finding them**; ViLD uses a trained region proposal network (and shows it finds novel objects
# fairly well even trained on base ones), which is not reproduced. AP is COCO box AP
# (`wb.vl.box_ap`, IoU 0.5:0.95) over the base or the novel classes of held-out test scenes, the
# detector choosing among all ten names.

# %%
import pandas as pd
import plotly.express as px
import torch

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None
from workbench.data import scenes as S
from workbench.vl import efficiency as E
from workbench.vl import vild_eval

info = wb.setup()

# %% tags=["parameters"]
# the teacher: notebook 53's contrastive clip_tiny, seed 0, with 53's settings (so the cache is shared)
T_SCENES = wb.by_mode(smoke=300, laptop=8_000, paper=100_000)
T_EVAL = wb.by_mode(smoke=100, laptop=1_000, paper=5_000)
T_EPOCHS = wb.by_mode(smoke=2, laptop=8, paper=30)
T_BATCH = wb.by_mode(smoke=32, laptop=128, paper=512)
T_WIDTH = wb.by_mode(smoke=8, laptop=16, paper=32)
SIZE = wb.by_mode(smoke=32, laptop=32, paper=64)
HELD_OUT = [("red", "coat"), ("blue", "sneaker"), ("yellow", "bag"), ("green", "dress"), ("purple", "trousers"),
            ("white", "sandal")]  # 53's held-out colour-garment combinations (part of its cache key)
# the detectors
NOVEL = [3, 7, 8]  # dress, sneaker, bag: never labelled in training
SCENES = wb.by_mode(smoke=200, laptop=2_000, paper=20_000)  # detection training scenes (1-2 garments)
TEST_SCENES = wb.by_mode(smoke=100, laptop=500, paper=2_000)
EPOCHS = wb.by_mode(smoke=1, laptop=3, paper=20)
BATCH_SIZE = 32
LR = 2e-3  # AdamW, one-cycle, no weight decay
WIDTH = wb.by_mode(smoke=8, laptop=16, paper=32)  # the student's ResNet-8 width
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1], paper=[0, 1, 2])
MIN_NOVEL_AP = 0.05  # "well above zero": novel AP at least this in every seed
BASE_TOL = 0.10  # base AP at most this far below the supervised arm's (means over seeds)
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # failed on the laptop pilot (see the reading)
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)

# %% [markdown]
# ## The data and the teacher
#
# Training scenes from Fashion-MNIST's training images, test scenes from its test images. The
# teacher is trained (or read from the cache) exactly as in notebook 53.

# %%
items = wb.load("fashion_mnist", "train", subset=20_000, seed=0)
test_items = wb.load("fashion_mnist", "test", subset=5_000, seed=0)
t_scenes = S.make_scenes(items, T_SCENES, size=SIZE, max_objects=2, seed=0, exclude=HELD_OUT)
t_single = S.make_scenes(test_items, T_EVAL, size=SIZE, max_objects=1, seed=1, exclude=HELD_OUT, split="test")
ITEMS = [w for w, _ in S.ITEM_WORDS]
teacher = wb.train_model(
    "clip_tiny", t_scenes.as_dataset("index"), model_kwargs=dict(context=16, width=T_WIDTH, word_head=False,
                                                                 num_classes=0),
    seed=0, task=wb.vl.ImageTextContrastive(wb.vl.caption_table(t_scenes, length=16)), progress=False,
    algorithms=[E.ZeroShotCurve(t_single.as_dataset("first_item"), ITEMS, ["a {}"], length=16)],
    epochs=T_EPOCHS, batch_size=T_BATCH, lr=2e-3, optimizer="adamw", weight_decay=0.0, augment=None).model.eval()
text = wb.vl.class_embeddings(teacher, ITEMS, ["a {}"], 16).detach()  # [10, D]
BASE = [c for c in range(10) if c not in NOVEL]
print("base:", [ITEMS[c] for c in BASE], "| novel:", [ITEMS[c] for c in NOVEL], "| embedding dim", text.shape[1])

train_scenes = S.make_scenes(items, SCENES, size=SIZE, max_objects=2, seed=10)
test_scenes = S.make_scenes(test_items, TEST_SCENES, size=SIZE, max_objects=2, seed=11, split="test")
train_data = wb.vl.DetectionData.from_scenes(train_scenes, hide=NOVEL)  # novel boxes unlabelled
test_data = wb.vl.DetectionData.from_scenes(test_scenes)
targets = vild_eval.scene_targets(test_scenes)
print(f"{len(train_data)} training scenes: {int((train_data.labels >= 0).sum())} labelled boxes, "
      f"{int(sum((train_scenes.items == c).sum() for c in NOVEL))} novel garments left unlabelled")
n = 8
px.imshow(test_scenes.images[:n].permute(0, 2, 3, 1).numpy(), facet_col=0, title="Test scenes",
          facet_col_spacing=0.01).update_xaxes(showticklabels=False).update_yaxes(showticklabels=False)

# %% [markdown]
# ## Four detectors at the same budget
#
# Each arm: a `wb.vl.ViLDStudent` from the seed, `EPOCHS` passes in batches of `BATCH_SIZE`, AdamW
# at `LR` (one-cycle), trained by `wb.fit` with `wb.vl.ViLDTask`; the arms differ only in the loss
# weights and in the classifier (base text embeddings, or the fixed one). Then `wb.vl.detect` on the
# test scenes, scoring every region against all ten names (the supervised arm: its seven base
# vectors), and AP over base and novel classes. `wb.sweep` caches the records.

# %%
ARMS = {"supervised": (1.0, 0.0), "ViLD-text": (1.0, 0.0), "ViLD-image": (0.0, 1.0), "ViLD": (1.0, 1.0)}
recipe = dict(epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR, optimizer="adamw", weight_decay=0.0)


def run(arm, seed):
    text_w, image_w = ARMS[arm]
    torch.manual_seed(seed)
    student = wb.vl.ViLDStudent(text.shape[1], width=WIDTH)
    fixed = vild_eval.fixed_classifier(len(BASE), text.shape[1], seed=seed)
    base_vectors = fixed if arm == "supervised" else text[BASE]
    task = wb.vl.ViLDTask(teacher, base_vectors, BASE, SIZE, text_weight=text_w, image_weight=image_w)
    res = wb.fit(student, wb.vl.DetectionLoader(train_data, BATCH_SIZE, seed=seed), task=task, seed=seed,
                 progress=False, **recipe)
    vectors, names = (fixed, BASE) if arm == "supervised" else (text, list(range(10)))
    dets = wb.vl.detect(student, test_data, vectors, names, score_threshold=0.0)
    rec = dict(base_ap=vild_eval.subset_ap(dets, targets, BASE)["AP"],
               novel_ap=vild_eval.subset_ap(dets, targets, NOVEL)["AP"] if arm != "supervised" else 0.0,
               base_ap50=vild_eval.subset_ap(dets, targets, BASE)["AP50"],
               novel_ap50=vild_eval.subset_ap(dets, targets, NOVEL)["AP50"] if arm != "supervised" else 0.0,
               seconds=float(res.history["seconds"].iloc[-1]), final_loss=float(res.history["train_loss"].iloc[-1]))
    for c in range(10):
        rec[f"ap_{ITEMS[c]}"] = vild_eval.subset_ap(dets, targets, [c])["AP"] if c in names else 0.0
    return rec


constants = dict(teacher=dict(scenes=T_SCENES, epochs=T_EPOCHS, batch=T_BATCH, width=T_WIDTH), size=SIZE,
                 novel=NOVEL, scenes=SCENES, test_scenes=TEST_SCENES, width=WIDTH, **recipe)
grid = [dict(arm=a, seed=s) for a in ARMS for s in SEEDS]
runs = wb.sweep(run, grid, folder=wb.sweep_folder("vild", constants))
runs[["arm", "seed", "base_ap", "novel_ap", "base_ap50", "novel_ap50", "seconds"]].round(3)

# %%
long = runs.melt(id_vars=["arm", "seed"], value_vars=["base_ap", "novel_ap"], var_name="classes", value_name="AP")
long["classes"] = long["classes"].map({"base_ap": "base (7)", "novel_ap": "novel (3)"})
px.bar(long.groupby(["arm", "classes"]).AP.agg(["mean", "std"]).reset_index(), x="arm", y="mean", error_y="std",
       color="classes", barmode="group", labels={"mean": "box AP (IoU 0.5:0.95)"},
       title=f"Base and novel AP ({len(SEEDS)} seeds; supervised novel AP is 0 by construction)")

# %%
summary = runs.groupby("arm", sort=False)[["base_ap", "novel_ap", "base_ap50", "novel_ap50"]].agg(["mean", "std"])
summary.round(3)

# %% [markdown]
# ### Explore the classes
#
# Choose an arm: its AP per garment (mean over seeds); the novel ones are marked.

# %%
def render(arm="ViLD"):
    r = runs[runs.arm == arm]
    df = pd.DataFrame([dict(garment=w, AP=float(r[f"ap_{w}"].mean()),
                            split="novel" if c in NOVEL else "base") for c, w in enumerate(ITEMS)])
    return px.bar(df, x="garment", y="AP", color="split", range_y=[0, 1], title=f"{arm}: AP per garment")


wb.viz.explorer(render, arm=list(ARMS))

# %% [markdown]
# ## The claim, as a check that can fail
#
# Every mode: all AP are in [0, 1]. Fixed before the comparison (the pilot of seed 0), the claim:
#
# 1. **novel classes are detected**: ViLD's novel AP is at least `MIN_NOVEL_AP` in every seed
#    (the supervised detector's is 0 by construction);
# 2. **base classes are kept**: ViLD's mean base AP is at most `BASE_TOL` below the better of the
#    supervised and ViLD-text arms' mean base AP.
#
# Both failed on the laptop pilot (seed 0: ViLD's novel AP 0.038, base AP 0.052 against the
# supervised 0.236): at this budget the image distillation is barely learned and pulls the region
# head away from the text classifier. They are asserted in paper mode only (`CHECK_CLAIM`). What
# laptop mode asserts (`CHECK_MECHANISM`, chosen after seeing seed 0's pilot, checked on every seed)
# is the mechanism the text classifier gives: **ViLD-text**, trained on base labels only, names the
# novel garments from their names alone, novel AP at least `MIN_NOVEL_AP` in every seed, where the
# supervised detector cannot name them; and its base AP is within `BASE_TOL` of the supervised arm's.

# %%
m = runs.groupby("arm").mean(numeric_only=True)
vild = runs[runs.arm == "ViLD"].set_index("seed")
vild_text = runs[runs.arm == "ViLD-text"].set_index("seed")
print(f"novel AP per seed: ViLD {vild.novel_ap.round(3).to_dict()}, ViLD-text {vild_text.novel_ap.round(3).to_dict()}, "
      f"ViLD-image {runs[runs.arm == 'ViLD-image'].set_index('seed').novel_ap.round(3).to_dict()}")
print("mean base AP: " + ", ".join(f"{a} {m.loc[a, 'base_ap']:.3f}" for a in ARMS))
assert runs[["base_ap", "novel_ap"]].apply(lambda c: c.between(0, 1)).all().all()
assert (runs[runs.arm == "supervised"].novel_ap == 0).all()  # by construction: it has no vector for a novel name
if CHECK_MECHANISM:
    assert (vild_text.novel_ap >= MIN_NOVEL_AP).all(), \
        f"ViLD-text should name novel garments from their names: {vild_text.novel_ap.to_dict()}"
    assert m.loc["ViLD-text", "base_ap"] >= m.loc["supervised", "base_ap"] - BASE_TOL, \
        f"ViLD-text should keep base AP: {m.loc['ViLD-text', 'base_ap']:.3f} against {m.loc['supervised', 'base_ap']:.3f}"
if CHECK_CLAIM:
    assert (vild.novel_ap >= MIN_NOVEL_AP).all(), f"ViLD's novel AP should be well above 0: {vild.novel_ap.to_dict()}"
    best_base = max(m.loc["supervised", "base_ap"], m.loc["ViLD-text", "base_ap"])
    assert m.loc["ViLD", "base_ap"] >= best_base - BASE_TOL, \
        f"ViLD should keep base AP: {m.loc['ViLD', 'base_ap']:.3f} against {best_base:.3f}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-07; 2.8 minutes at 2 threads from an empty cache, 53's
# teacher included; 2 seeds; 188 steps of 32 scenes per arm) the
# paper's claim does **not** show; a part of its mechanism does. The supervised detector with a fixed
# classifier reaches base AP 0.233 (spread 0.004; AP50 0.416) and, by construction, novel AP 0.
# **ViLD-text**, the same head classified against the teacher's text embeddings of the seven base
# names, keeps most of the base AP (0.167, spread 0.019; 0.066 below the supervised arm, within
# `BASE_TOL`) and, with the three novel names simply added to its classifier, detects dresses,
# sneakers and bags it never saw labelled: novel AP 0.138 and 0.120 in the two seeds (AP50 0.249 on
# average). That is the open-vocabulary mechanism: region embeddings trained into the teacher's
# text space generalize to names of unseen classes (here helped by close relatives: sneaker AP
# 0.21 in seed 0 with sandals and boots among the base; dress 0.01).
#
# The image distillation, the paper's main ingredient, did not work at this budget. **ViLD-image**
# alone gets AP 0.004 (base) and 0.009 (novel); **ViLD** (text + image, equal weights) 0.057 and
# 0.036 (0.038 and 0.034 per seed, below the `MIN_NOVEL_AP` of 0.05 fixed before the comparison),
# far below ViLD-text on both. In 188 steps the L1 term (its final value about 2 on a sum over 64
# dimensions) is barely reduced, and in the ViLD arm it pulls the region embeddings away from what
# the text classifier needs. Both planned checks failed, on the pilot and on the full run: status
# **mechanism only**. A longer schedule, a lower image weight (the paper's tuned weights), and
# a teacher better than 53's (it names a single garment right about a third of the time) are the
# untested suspects. Timing: the image arms cost about 18 and 20 seconds each at two threads (the
# teacher encodes every proposal's crop at every step), the text arms about 6.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | novel AP | LVIS rare categories: supervised on base only cannot name them; ViLD-text, ViLD-image and ViLD all detect them, ViLD (both) best (see the paper's table 3) | supervised 0 (by construction); ViLD-text 0.129; ViLD-image 0.009; ViLD 0.036 (box AP on 3 novel garments, 2 seeds) |
# | base AP | ViLD keeps most of the supervised detector's AP on common and frequent categories, a little below it (see the paper's table 3) | supervised 0.233; ViLD-text 0.167; ViLD-image 0.004; ViLD 0.057 (7 base garments) |
#
# The paper trains Mask R-CNN detectors (ResNet-50 FPN) with a region proposal network on LVIS
# (866 base, 337 rare novel categories) and distills CLIP ViT-B/32; here a ResNet-8 region head on
# 2,000 generated 32 px scenes, 7 base and 3 novel garments, jittered ground-truth proposals.

# %% [markdown]
# ## What to try next
#
# - `NOVEL = [1, 5, 9]` (trousers, sandal, boot): novel classes with different relatives among the base.
# - `EPOCHS = 10`: does ViLD-text's novel AP (learned from names alone) catch up with ViLD-image's?
# - In `ARMS`, weight ViLD-image by 0.5 or 2: the paper's trade-off between base and novel AP.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **ViLD-text's region scores.** `regions` `[P, D]` and `text` `[C, D]` are L2-normalized region and
# class-name embeddings, `background` `[D]` a learned vector, `temperature` a number. Return the
# `[P, 1 + C]` class probabilities of every region: column 0 the background, then the classes, a
# softmax over the dot products (the classes': cosine similarities; the background's: its dot product
# with the region, the background vector used as it is) divided by `temperature`.

# %%
def vild_region_probs(regions, text, background, temperature):
    raise NotImplementedError  # your code here


wb.exercises.check("vild_region_probs", vild_region_probs)
