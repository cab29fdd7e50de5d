# %% [markdown]
# # GIST: fine-tune on text that describes *this* image, not just its class
#
# Kathleen M. Lewis, Emily Mu, Adrian V. Dalca & John Guttag, *GIST: Generating Image-Specific Text for
# Fine-grained Object Classification*, 2023 ([arXiv 2307.11315](https://arxiv.org/abs/2307.11315)).
#
# **The question.** A CLIP model can be fine-tuned contrastively for a classification task, but an
# image-only dataset gives it one text per class: its name. For fine-grained classes (two birds, two
# lesions that differ in a detail) the name says little. Can text written for *each image*, with no
# captioner and no human, make few-shot and full fine-tuning better?
#
# **The idea.** GIST asks a language model for many candidate descriptions of every class (what the
# class can look like), then lets the pretrained CLIP pick, for each training image, the candidates *of
# its own class* that fit it best (the label keeps the text on the right class; the similarity picks
# the visible details). CLIP is fine-tuned contrastively on these (image, matched description) pairs,
# and classifies with its fine-tuned encoders. The claim: fine-tuning on matched descriptions beats
# fine-tuning on class names, in full-shot and few-shot regimes.
#
# **What is checked here.** The data are notebook 53's captioned scenes (`wb.data.make_scenes`): one
# real Fashion-MNIST garment, tinted one of six colours, small or large, on one of four textured
# grounds. The fine-grained task is the four upper-body garments Fashion-MNIST itself confuses most
# (T-shirt, pullover, coat, shirt): 4-way classification of held-out test scenes.
#
# * **Pretraining** is notebook 53's contrastive `clip_tiny`, trained with exactly its recipe (the
#   same `wb.train_model` call, so the two notebooks share the cache): 504 steps on 8,000 captioned
#   scenes of all ten garments. We keep the four classes in: after that pretraining they are barely
#   told apart (about 35% zero-shot, chance 25%, while colour and ground are read almost perfectly),
#   so the fine-tuning has work to do, the shared cache saves the laptop budget, and the pretrained
#   model knows the attribute words the matching needs. Holding the classes out would leave their
#   names untrained words in the text tower, a different question (learning a new word from k images).
# * **Candidate descriptions** (no language model): the grammar's phrasings of a class with every
#   visible attribute it can name, written from the class alone: all 2 x 6 x 4 = 48 combinations
#   "a {size} {colour} {garment} on {ground}" (`wb.vl.gist.candidate_descriptions`). The grammar has
#   no words for one garment's position, so position is left out. The true attributes of an image are
#   never read: **the pretrained CLIP's similarities pick the matched descriptions**, as in GIST
#   (`wb.vl.gist.matched_caption_table`), and we measure how often they pick the true ones.
# * **Few-shot fine-tuning**: `k` scenes per class; two arms, the same pretrained weights, shots,
#   steps, learning rate, seed: **class names** ("a photo of a coat" for every coat) against
#   **matched descriptions** (each image's `MATCHES` best matches, one drawn per step). Both through
#   `wb.fit` by the task `wb.vl.ImageTextContrastive(skip_duplicates=True)`: InfoNCE in which a batch's
#   other pair whose caption is word for word the positive's is not a negative (with four classes in a batch of 4k
#   images, plain InfoNCE would push an image from its own class's name; masking duplicates treats
#   both arms alike and makes the class-name arm the usual contrastive fine-tuning with class prompts).
# * **Evaluation**: 4-way accuracy on held-out test scenes by zero-shot classification with the class
#   prompt "a photo of a {garment}" on the fine-tuned encoders (GIST classifies with the fine-tuned
#   image-text space); beside it, a linear probe on the fine-tuned image embeddings trained on the same
#   k shots. 3 seeds (pretraining seed, shots drawn, fine-tuning seed).
#
# At this scale the matching works (the best match names all three true attributes of 96% of the
# shots, chance 2%), but **the claim does not show**: fine-tuning on matched descriptions and on
# class names end within a point of each other, inside the spread over seeds, at 1, 5 and 10 shots.
# The notebook asserts the matching mechanism in laptop mode and the claim in paper mode only
# (status: mechanism only); the reading says why our descriptions cannot help here.

# %%
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None
from workbench.data import scenes as S
from workbench.vl import efficiency as E
from workbench.vl import gist as G

info = wb.setup()

# %% tags=["parameters"]
# pretraining: notebook 53's contrastive recipe, mode by mode (the same values, so the cache is shared)
SCENES = wb.by_mode(smoke=300, laptop=8_000, paper=100_000)
EVAL_SCENES = wb.by_mode(smoke=100, laptop=1_000, paper=5_000)
SIZE = wb.by_mode(smoke=32, laptop=32, paper=64)
EPOCHS = wb.by_mode(smoke=2, laptop=8, paper=30)
BATCH_SIZE = wb.by_mode(smoke=32, laptop=128, paper=512)
WIDTH = wb.by_mode(smoke=8, laptop=16, paper=32)
HELD_OUT = [("red", "coat"), ("blue", "sneaker"), ("yellow", "bag"), ("green", "dress"), ("purple", "trousers"),
            ("white", "sandal")]  # notebook 53's held-out combinations (never in any scene here either)
# few-shot fine-tuning on the four fine-grained classes
CLASSES = list(G.FINE_GRAINED)  # tshirt, pullover, coat, shirt
SHOTS = wb.by_mode(smoke=[1, 2], laptop=[1, 5, 10], paper=[1, 5, 10, 20])  # training scenes per class
POOL = wb.by_mode(smoke=100, laptop=400, paper=2_000)  # fine-grained training scenes the shots are drawn from
TEST = wb.by_mode(smoke=200, laptop=800, paper=4_000)  # held-out test scenes (Fashion-MNIST test images)
MATCHES = 3  # matched descriptions per image; one is drawn per step
FT_STEPS = wb.by_mode(smoke=5, laptop=30, paper=100)  # the same for both arms; one step sees every shot
FT_LR = 2e-5  # AdamW, one-cycle, no weight decay: chosen on the class-name arm of a seed-0 pilot (see the reading)
PROMPT = "a photo of a {}"  # the class-name arm's text and the zero-shot prompt after fine-tuning
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])
MIN_MATCH = 0.5  # the matching step names all three true attributes of at least half the shots (chance 1/48)
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # did not show at laptop scale (see the reading)
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)

# %% [markdown]
# ## The data: fine-grained scenes and their candidate descriptions
#
# The pretraining scenes are notebook 53's (one or two garments of all ten classes, several phrasings
# each). The fine-grained scenes hold one garment of the four classes: a pool from Fashion-MNIST's
# training images (the shots are drawn from it) and a test set from its test images. Every class
# gets the same 48 candidate descriptions, one per combination of size, colour and ground.

# %%
items = wb.load("fashion_mnist", "train", subset=20_000, seed=0)
test_items = wb.load("fashion_mnist", "test", subset=5_000, seed=0)
train_scenes = S.make_scenes(items, SCENES, size=SIZE, max_objects=2, seed=0, exclude=HELD_OUT)
captions = wb.vl.caption_table(train_scenes, length=16)
single = S.make_scenes(test_items, EVAL_SCENES, size=SIZE, max_objects=1, seed=1, exclude=HELD_OUT, split="test")
pool, pool_scenes, pool_attrs = G.fine_grained_scenes(items, POOL, CLASSES, size=SIZE, seed=10, exclude=HELD_OUT)
test, _, _ = G.fine_grained_scenes(test_items, TEST, CLASSES, size=SIZE, seed=11, exclude=HELD_OUT, split="test")
candidates, candidate_attrs = G.candidate_descriptions("coat")
print(f"pool {len(pool)} scenes, test {len(test)} scenes, classes {CLASSES}; "
      f"{len(candidates)} candidates per class, e.g. {candidates[:2]} ... {candidates[-1:]}")
n = 8
fig = px.imshow(pool.images[:n].permute(0, 2, 3, 1).numpy(), facet_col=0, facet_col_wrap=n,
                title="Fine-grained scenes (pool) with their true classes")
for i, a in enumerate(fig.layout.annotations):
    a.update(text=CLASSES[int(pool.labels[int(a.text.split("=")[1])])])
fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False).update_layout(height=230)

# %% [markdown]
# ## Pretraining (notebook 53) and the matching step
#
# `pretrained(seed)` is notebook 53's `train("contrastive", seed)`: the same scenes, captions, model,
# recipe and zero-shot curve, hence the same cache entry. The matching step then embeds every pool
# scene and the 48 candidates of its class with the pretrained model and keeps the `MATCHES` most
# similar (cosine) candidates, best first.

# %%
ITEMS = [w for w, _ in S.ITEM_WORDS]
MODEL_KWARGS = dict(context=16, width=WIDTH, word_head=False, num_classes=0)
recipe = dict(epochs=EPOCHS, batch_size=BATCH_SIZE, lr=2e-3, optimizer="adamw", weight_decay=0.0, augment=None)


def pretrained(seed):
    return wb.train_model("clip_tiny", train_scenes.as_dataset("index"), model_kwargs=MODEL_KWARGS, seed=seed,
                          task=wb.vl.ImageTextContrastive(captions), progress=False,
                          algorithms=[E.ZeroShotCurve(single.as_dataset("first_item"), ITEMS, ["a {}"], length=16)],
                          **recipe).model


pre = pretrained(SEEDS[0])
matched = G.matched_caption_table(pre, pool, CLASSES, top=MATCHES, length=16)
match_acc = G.attribute_accuracy(matched["attributes"][:, 0], pool_attrs)
print(f"seed {SEEDS[0]}: the best match names the true ... of a pool scene: "
      + ", ".join(f"{k} {v:.1%}" for k, v in match_acc.items()) + f" (chance: size 50%, colour 16.7%, ground 25%, "
      f"all {1 / 48:.1%})")
pd.DataFrame([{"class": CLASSES[int(pool.labels[i])], "true caption": pool_scenes.captions[i][0],
               **{f"match {j + 1}": matched["texts"][i][j] for j in range(MATCHES)},
               "best match right": bool((matched["attributes"][i, 0] == pool_attrs[i]).all())} for i in range(n)])

# %% [markdown]
# ## Fine-tune both arms at the same budget
#
# For each seed: the pretrained model of that seed, `k` shots per class drawn with that seed, and two
# fine-tuning runs from the same weights (`G.fine_tune_contrastive`, through `wb.train_model`, cached):
# `FT_STEPS` steps of AdamW at `FT_LR` (one-cycle), each step on all `4 k` shots. Only the text paired
# with each image differs. After fine-tuning: 4-way zero-shot accuracy with `PROMPT` on the test
# scenes, and a linear probe trained on the `4 k` shots' fine-tuned image embeddings
# (`wb.ssl.linear_probe_features`). The pretrained model's own zero-shot accuracy is the floor.

# %%
ARMS = ("class names", "matched descriptions")
FT = dict(epochs=FT_STEPS, batch_size=len(CLASSES) * max(SHOTS), lr=FT_LR, optimizer="adamw", weight_decay=0.0,
          augment=None, progress=False)
constants = dict(scenes=SCENES, eval_scenes=EVAL_SCENES, size=SIZE, width=WIDTH, epochs=EPOCHS,
                 batch_size=BATCH_SIZE, held_out=HELD_OUT, classes=CLASSES, pool=POOL, test=TEST, matches=MATCHES,
                 ft_steps=FT_STEPS, ft_lr=FT_LR, prompt=PROMPT)


def zero_shot(model):
    return E.zero_shot_accuracy(model, test, CLASSES, templates=[PROMPT], length=16)


def run(seed, shots, arm):
    model = pretrained(seed)
    idx = E.few_shot_indices(pool.labels, shots, seed=seed)
    data = wb.data.ImageDataset(pool.images[idx], pool.labels[idx], CLASSES, "scenes/fine-grained", "train")
    match = G.matched_caption_table(model, data, CLASSES, top=MATCHES, length=16)
    table = match["captions"] if arm == "matched descriptions" else G.class_name_table(data.labels, CLASSES, PROMPT)
    res = G.fine_tune_contrastive(model, data, table, name="clip_tiny", model_kwargs=MODEL_KWARGS,
                                  init_key=f"53_clip contrastive seed {seed} {sorted(constants.items())}",
                                  seed=seed, **FT)
    z_train, z_test = wb.vl.embed_images(res.model, data).cpu(), wb.vl.embed_images(res.model, test).cpu()
    probe = wb.ssl.linear_probe_features(z_train, data.labels.cpu(), z_test, test.labels.cpu(),
                                         num_classes=len(CLASSES))["test_acc"]
    right = G.attribute_accuracy(match["attributes"][:, 0], pool_attrs[idx])
    return dict(accuracy=zero_shot(res.model), probe=probe, pretrained=zero_shot(model),
                final_loss=float(res.history["train_loss"].iloc[-1]),
                **{f"match_{k}": v for k, v in right.items()})


grid = [dict(seed=s, shots=k, arm=a) for s in SEEDS for k in SHOTS for a in ARMS]
runs = wb.sweep(run, grid, backend=BACKEND, folder=wb.sweep_folder("gist", constants))
runs[["seed", "shots", "arm", "accuracy", "probe", "pretrained", "match_all", "final_loss"]].round(3)

# %% [markdown]
# ## What to look at
#
# Accuracy after fine-tuning against the number of shots per class, both arms (mean and spread over
# seeds), with the pretrained model's zero-shot accuracy and chance; then the gain of matched
# descriptions over class names seed by seed.

# %%
mean = runs.groupby(["shots", "arm"])[["accuracy", "probe"]].agg(["mean", "std"])
long = runs.melt(id_vars=["seed", "shots", "arm"], value_vars=["accuracy", "probe"], var_name="how",
                 value_name="acc").replace({"how": {"accuracy": f"zero-shot, '{PROMPT}'", "probe": "linear probe"}})
agg = long.groupby(["shots", "arm", "how"]).acc.agg(["mean", "std"]).reset_index()
fig = px.line(agg, x="shots", y="mean", error_y="std", color="arm", facet_col="how", markers=True, log_x=True,
              labels={"mean": "4-way test accuracy", "shots": "shots per class"},
              title=f"Fine-grained accuracy after fine-tuning ({len(SEEDS)} seeds, {FT_STEPS} steps)")
fig.add_hline(y=float(runs.pretrained.mean()), line_dash="dash", annotation_text="pretrained, zero-shot")
fig.add_hline(y=1 / len(CLASSES), line_dash="dot", annotation_text="chance")
fig

# %%
wide = runs.pivot_table(index=["shots", "seed"], columns="arm", values=["accuracy", "probe"])
gain = (wide["accuracy", "matched descriptions"] - wide["accuracy", "class names"]).rename("gain")
probe_gain = (wide["probe", "matched descriptions"] - wide["probe", "class names"]).rename("probe gain")
summary = pd.DataFrame({
    "class names": mean["accuracy", "mean"].xs("class names", level="arm"),
    "matched descriptions": mean["accuracy", "mean"].xs("matched descriptions", level="arm"),
    "gain (mean)": gain.groupby("shots").mean(), "gain (spread)": gain.groupby("shots").std(),
    "gain per seed": gain.groupby("shots").apply(lambda g: [round(v, 3) for v in g]),
    "probe gain (mean)": probe_gain.groupby("shots").mean(),
    "pretrained": runs.groupby("shots").pretrained.mean(),
    "best match names all 3 attributes": runs.groupby("shots").match_all.mean()})
summary.round(3)

# %% [markdown]
# ### Explore the matching step
#
# Choose a pool scene: the pretrained model's cosine similarity to each of the 48 candidate
# descriptions of the scene's class, the `MATCHES` chosen ones in colour, the scene's true
# description outlined. The matching is right where the top bar is the outlined one.

# %%
pool_emb = wb.vl.embed_images(pre, pool).cpu()


def render_match(scene=0):
    word = CLASSES[int(pool.labels[scene])]
    texts, attrs = G.candidate_descriptions(word)
    emb = wb.vl.class_embeddings(pre, texts, ["{}"], length=16).cpu()  # each description's normalized embedding
    sims = (emb @ pool_emb[scene]).tolist()
    chosen = set(matched["texts"][scene])
    true = (attrs == pool_attrs[scene]).all(1).nonzero().item()
    order = sorted(range(len(texts)), key=lambda j: -sims[j])
    fig = go.Figure(go.Bar(x=[texts[j] for j in order], y=[sims[j] for j in order],
                           marker_color=["crimson" if texts[j] in chosen else "lightgrey" for j in order],
                           marker_line_width=[3 if j == true else 0 for j in order], marker_line_color="black"))
    return fig.update_layout(title=f"Scene {scene} ({word}, truly '{texts[true]}'): similarity to each candidate",
                             yaxis_title="cosine similarity (pretrained)", height=420, xaxis_tickangle=60)


wb.viz.explorer(render_match, scene=list(range(min(16, len(pool)))))

# %% [markdown]
# ## The claim, as a check that can fail
#
# Fixed before the laptop run (the budget too: `FT_STEPS`, `FT_LR` from a seed-0 pilot of the
# class-name arm, `SHOTS`, `MATCHES`). Every mode: every run finished, accuracies are shares, the
# matching step picked descriptions of the image's own class only. Then:
#
# 1. **the claim** (planned for laptop mode too; it failed there, see the reading, and is asserted in
#    paper mode only): at every `k` in `SHOTS`, fine-tuning on matched descriptions beats fine-tuning
#    on class names in 4-way zero-shot test accuracy, on average over seeds by more than the spread
#    (standard deviation over seeds) of the per-seed gain;
# 2. **the mechanism** (laptop and paper mode): the pretrained model's best match names all three true
#    attributes (size, colour, ground) of at least `MIN_MATCH` of the shots (chance 1/48), in every
#    seed.

# %%
print(f"gain of matched descriptions over class names, zero-shot '{PROMPT}':")
for k, g in gain.groupby("shots"):
    print(f"  k={k}: per seed {g.round(3).tolist()}, mean {g.mean():+.3f}, spread {g.std() if len(g) > 1 else 0:.3f}")
print(f"best match names all three attributes: {runs.groupby('seed').match_all.mean().round(3).to_dict()}")
assert len(runs) == len(grid) and runs[["accuracy", "probe", "pretrained"]].apply(lambda c: c.between(0, 1)).all().all()
assert all(t in G.candidate_descriptions(CLASSES[int(c)])[0] for row, c in zip(matched["texts"], pool.labels)
           for t in row), "a matched description from another class"
if CHECK_CLAIM:
    for k, g in gain.groupby("shots"):
        spread = g.std() if len(g) > 1 else 0.0
        assert g.mean() > spread, f"k={k}: matched descriptions should beat class names beyond the spread: {g.tolist()}"
if CHECK_MECHANISM:
    assert (runs.groupby("seed").match_all.min() >= MIN_MATCH).all(), \
        f"the matching should name all true attributes of at least {MIN_MATCH:.0%} of the shots"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-07; 3.2 minutes at 2 threads from an empty cache, the
# three pretrainings of notebook 53 included) the pretrained `clip_tiny` tells the four garments apart only
# a little: 4-way zero-shot accuracy 34.1%, 30.1% and 33.1% in seeds 0-2 (mean 32.5%, chance 25%).
#
# **The matching step works.** Choosing among 48 candidates of the image's own class by cosine
# similarity alone, the pretrained model's best match names all three true attributes of 95-97% of the
# shots (96.7%, 96.7% and 95.0% per seed; chance 2.1%); over the 400 pool scenes of seed 0: size
# 93.0%, colour 100%, ground 100%. Its few errors are sizes (a large T-shirt matched as small).
#
# **The claim does not show.** After 30 steps at learning rate 2e-5, 4-way accuracy (zero-shot with
# "a photo of a {garment}", mean over 3 seeds):
#
# | shots per class | class names | matched descriptions | gain per seed (points) | mean gain (spread) |
# | --- | --- | --- | --- | --- |
# | 1 | 27.3% | 27.8% | +0.3, -0.5, +1.6 | +0.5 (1.1) |
# | 5 | 31.8% | 31.7% | -0.1, -0.6, +0.6 | -0.0 (0.6) |
# | 10 | 32.0% | 31.8% | 0.0, -1.4, +0.8 | -0.2 (1.1) |
#
# No gain exceeds its spread; the check planned for laptop mode fails at every shot count. A linear
# probe on the fine-tuned image embeddings, trained on the same shots, sits near chance for both arms
# (23-29%; matched minus names -0.2, +0.2 and -0.4 points on average at 1, 5 and 10 shots), and neither
# arm moves far from the pretrained model's 32.5%: one shot per class lowers it by about 5 points,
# five and ten leave it about where it was.
#
# Why: in GIST the language model's descriptions name features that *differ between classes* (a
# bird's wing bars, a lesion's border), and the matching picks the ones this image shows, so the text
# teaches the image tower where to look. Our grammar can only name size, colour and ground, and every
# class gets every combination: the matched description is right about the image, but nothing in it
# tells a coat from a shirt. The model already reads those attributes almost perfectly (that is why
# the matching works), so the extra text neither adds class information nor much contrast between
# same-class images. The classes themselves differ in collars, sleeves and buttons drawn 9 to 14
# pixels tall in a 32-pixel scene, which the ResNet-8 tower barely resolves (the near-chance probe).
#
# The budget was chosen before the comparison on a seed-0 pilot of the class-name arm at k = 1 and 5:
# learning rate 5e-4 for 50 steps collapsed it to chance (24.7%, 25.8%), 1e-4 for 30 steps gave 27.9%
# and 30.6%, 2e-5 for 30 steps 29.5% and 36.5% (kept), 5e-6 29.0% and 33.5%, 2e-5 for 60 steps 29.2% and
# 34.3%. At the collapsing rate the matched-description arm kept more (26.6% and 32.1%), a hint that
# varied text slows the forgetting of a too-strong fine-tuning; one seed, not checked.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | full-shot: GIST against CLIP linear probes and the best earlier image-text method | +4.1 and +1.1 points on average over four fine-grained datasets (abstract; per dataset see the paper's tables) | not run (few-shot only) |
# | few-shot: matched descriptions against class names | "similar improvements" across few-shot regimes (abstract; see the paper's few-shot table) | +0.5, -0.0, -0.2 points at 1, 5, 10 shots, each within its spread over 3 seeds: not shown |
# | matching picks the right details | shown by examples in the paper (no accuracy, its descriptions have no ground truth) | best match names all three true attributes of 95-97% of the shots (chance 2.1%) |
#
# The paper fine-tunes a web-pretrained CLIP on four fine-grained datasets of real images from
# different domains, with descriptions written by a large language model; here a 190 K-parameter
# `clip_tiny` pretrained on 8,000 generated scenes, with descriptions from a closed grammar whose only
# details are size, colour and ground.

# %% [markdown]
# ## What to try next
#
# - `MATCHES = 1` or `MATCHES = 10`: one best description per image, or many (with 10 of 48,
#   descriptions with wrong attributes enter): how much does the matching's precision matter?
# - `SIZE = 64` (pretraining then runs anew at that size, about four times the cost): garments four
#   times the area, so that collars and sleeves can be seen at all; does fine-tuning then separate the
#   classes, and do the arms part?
# - `SHOTS = [20, 50]`: toward the paper's full-shot regime, where it reports its largest gains.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **GIST's matching step.** `image_embeddings` is `[N, D]`, `text_embeddings` is `[C, M, D]` (`M`
# candidate descriptions for each of `C` classes), `labels` is `[N]` (each image's class). Return a
# tensor `[N]`: for each image, the index (`0..M-1`) of the candidate *of its own class* with the
# largest dot product with the image.

# %%
def match_best(image_embeddings, text_embeddings, labels):
    raise NotImplementedError  # your code here


wb.exercises.check("match_best", match_best)
