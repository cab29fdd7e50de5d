# %% [markdown]
# # DiMR: denoise coarse-to-fine, so that small patches need not cost the earth
#
# Qihao Liu, Zhanpeng Zeng, Ju He, Qihang Yu, Xiaohui Shen & Liang-Chieh Chen, *Alleviating Distortion in
# Image Generation via Multi-Resolution Diffusion Models*, 2024
# ([arXiv 2406.09416](https://arxiv.org/abs/2406.09416)).
#
# **The question.** A diffusion transformer (DiT) cuts the noisy image into patches and treats each patch as a
# token. The patch size sets a trade-off: large patches make few tokens, so attention is cheap, but each token
# must describe many pixels at once and fine detail gets lost, which shows as *distorted* samples (garbled
# parts, broken shapes); small patches keep the detail, but attention's cost grows with the square of the
# number of tokens. Can a transformer denoiser get the detail of small patches without paying for a full stack
# of them?
#
# **The idea.** DiMR (Diffusion with a Multi-Resolution network) refines the prediction from low to high
# resolution: a first transformer works on large patches (few tokens, the global layout), and its features,
# upsampled, condition the next branch that works on smaller patches and only has to add the detail. The
# paper also replaces DiT's adaptive layer norm (each block's scale, shift and gate computed from the time
# embedding by an MLP, many parameters) by **time-dependent layer normalization** (TD-LN): the normalization's
# scale and shift are interpolated between two learned vectors, by a learned function of the timestep.
# `wb.create_model("dit_tiny", multires=True)` is this in miniature (`workbench/models/restore.py`): a coarse
# transformer on patches of twice the side (a quarter of the tokens), its tokens upsampled and added to the fine
# patches' tokens, and TD-LN in every block.
#
# **What is checked here.** Unconditional generation of Fashion-MNIST garments. The images are 28x28; they are
# zero-padded to 32x32 (`wb.dense.pad_images`), so that 4-pixel patches and the coarse branch's 8-pixel
# patches tile them. Two denoisers at **equal compute**, trained with the same budget (steps, batch, Adam,
# cosine schedule, seeds, the same noise draws), with the same DDPM loss and schedule (T = 1000, linear betas):
#
# * **DiT**, single resolution: `dit_tiny` with 4-pixel patches and adaLN-Zero, its width chosen
#   (`wb.dense.width_for_macs`) so that one forward pass costs as many multiply-adds as DiMR's;
# * **DiMR**, multi-resolution: `dit_tiny(multires=True)`: the same fine branch plus the coarse one, with TD-LN.
#
# Each model draws `SAMPLES` images by DDIM (`DDIM_STEPS` steps, eta 0) from the same starting noise. The
# scores, in the features of a ResNet-8 trained on the (padded) Fashion-MNIST training images:
#
# * the **Frechet distance in a ResNet-8's features** between the samples and held-out test images (the
#   construction of FID, but with a small classifier trained here, not Inception: the numbers are not FIDs);
# * the share of **distorted** samples: samples to which that classifier gives no class at least
#   `THRESHOLD` (50%) of probability, garments it cannot place (`wb.dense.distorted_fraction`); and a
#   **patch-boundary score**, the mean pixel step across 4-pixel patch borders over the mean step inside patches
#   (`wb.dense.patch_boundary_score`: 1 for an image that ignores the patch grid).
#
# And what the multi-resolution model does inside: how much its noise prediction relies on the coarse pass at
# each noise level (the loss with the coarse pass cut off, `wb.dense.ablate_coarse`), and whether TD-LN
# learned a time dependence (`wb.dense.tdln_time_change`: how far its scale and shift move from t = 1 to T).

# %%
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

from workbench.dense import dimr
from workbench.train.cached import model_fingerprint

info = wb.setup()

# %% tags=["parameters"]
TRAIN_SUBSET = wb.by_mode(smoke=256, laptop=6_400, paper=None)  # None: all 60,000 training images
TEST_SUBSET = wb.by_mode(smoke=64, laptop=1_000, paper=10_000)  # the real images the samples are compared with
CLASSIFIER_SUBSET = wb.by_mode(smoke=512, laptop=10_000, paper=None)  # the ResNet-8 that scores the samples
CLASSIFIER_EPOCHS = wb.by_mode(smoke=1, laptop=3, paper=15)
SIZE = 32  # Fashion-MNIST's 28x28 zero-padded to 32x32, a multiple of the patches (4 and, coarse, 8)
PATCH = 4
DEPTH = 4  # fine blocks (DiMR's coarse branch has DEPTH // 2 more, at a quarter of the tokens)
HEADS = 4
WIDTH = wb.by_mode(smoke=64, laptop=64, paper=128)  # DiMR's width; DiT's is chosen for equal multiply-adds
T = 1000  # diffusion steps, linear betas 1e-4 .. 0.02 (Ho et al.)
EPOCHS = wb.by_mode(smoke=1, laptop=5, paper=100)
BATCH_SIZE = 64
LR = wb.by_mode(smoke=1e-3, laptop=1e-3, paper=5e-4)  # Adam, cosine schedule with 5% warm-up
SAMPLES = wb.by_mode(smoke=32, laptop=500, paper=5_000)
DDIM_STEPS = wb.by_mode(smoke=5, laptop=25, paper=100)
THRESHOLD = 0.5  # a sample is distorted when the classifier's largest probability is below this
TS = [50, 250, 500, 750, 950]  # noise levels at which the mechanism is measured
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1], paper=[0, 1, 2])
MAX_MACS_GAP = 0.05  # equal compute: multiply-adds per forward pass within 5%
TDLN_MIN = 0.01  # check 4: TD-LN's mean change of scale and shift from t = 1 to T (exactly 0 at initialization)
CHECK_TRAINED = wb.by_mode(smoke=False, laptop=True, paper=True)  # smoke trains a few steps only
CHECK_MECHANISM = wb.by_mode(smoke=False, laptop=True, paper=True)
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # failed at laptop scale (see the checks' text)

# %% [markdown]
# ## The data: Fashion-MNIST, padded to 32x32
#
# `pad_images` puts each 28x28 image in the middle of a black 32x32 canvas (Fashion-MNIST's background is
# black already) and sets the normalization to `(x - 0.5) / 0.5`, pixels in [-1, 1] as diffusion models
# usually take them. The classifier that scores the samples trains on more images than the denoisers do.

# %%
train = dimr.pad_images(wb.load("fashion_mnist", "train", subset=TRAIN_SUBSET, seed=0), SIZE)
test = dimr.pad_images(wb.load("fashion_mnist", "test", subset=TEST_SUBSET, seed=0), SIZE)
clf_train = dimr.pad_images(wb.load("fashion_mnist", "train", subset=CLASSIFIER_SUBSET, seed=1), SIZE)
print(f"{len(train):,} training images for the denoisers, {len(test):,} test images, "
      f"{len(clf_train):,} for the classifier; {train.source}")
fig = px.imshow(test.images[:16, 0].cpu().numpy(), facet_col=0, facet_col_wrap=8, binary_string=True,
                facet_row_spacing=0.02, facet_col_spacing=0.01, title="Test images (padded to 32x32)")
fig.for_each_annotation(lambda a: a.update(text=test.classes[int(test.labels[int(a.text.split('=')[-1])])]))
fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False).update_layout(height=330)

# %% [markdown]
# ## The judge: a ResNet-8 trained on the real images
#
# Its penultimate features are where the Frechet distance is measured, and its confidence says whether a sample
# looks like any garment at all. Its test accuracy, and the share of *real* test images it would call
# distorted, set the scale for the samples' numbers.

# %%
classifier = wb.train.train_model("resnet8", clf_train, test, seed=0,
                                  **wb.train.recipe("laptop", epochs=CLASSIFIER_EPOCHS)).model
real = test.normalize(test.images)
real_conf = dimr.max_probability(classifier, real)
reference = {"accuracy": wb.evaluate(classifier, test)["acc"],
             "distorted (real test images)": dimr.distorted_fraction(real_conf, THRESHOLD),
             "patch-boundary score (real)": float(dimr.patch_boundary_score(test.images, PATCH).mean())}
half = len(test) // 2  # the Frechet distance between two halves of the real test images: the floor at this size
reference["Frechet distance, real vs real (half sets)"] = dimr.feature_frechet(classifier, real[:half], real[half:])
pd.Series(reference).round(4)

# %% [markdown]
# ## Two denoisers at equal compute
#
# DiMR's width is the reference; `width_for_macs` tries DiT's widths (multiples of `HEADS`) and keeps the
# one whose forward pass costs the closest number of multiply-adds. DiMR spends part of its compute on the
# coarse branch (a quarter of the tokens) and saves adaLN's per-block projections; DiT spends it all on a
# wider fine branch.

# %%
common = dict(in_chans=1, img_size=SIZE, patch=PATCH, depth=DEPTH, heads=HEADS, steps=T)
dimr_macs = dimr.dit_macs(wb.create_model("dit_tiny", width=WIDTH, multires=True, **common))
dit_width, _ = dimr.width_for_macs(dimr_macs, widths=range(HEADS, 2 * WIDTH + 1, HEADS), multires=False,
                                   **common)
ARMS = {"DiT": dict(width=dit_width, multires=False), "DiMR": dict(width=WIDTH, multires=True)}
models_kw = {arm: dict(patch=PATCH, depth=DEPTH, heads=HEADS, **kw) for arm, kw in ARMS.items()}
costs = pd.DataFrame({arm: {"width": kw["width"],
                            "parameters": wb.models.count_parameters(wb.create_model("dit_tiny", **kw, **common)),
                            "multiply-adds per image": dimr.dit_macs(wb.create_model("dit_tiny", **kw, **common))}
                      for arm, kw in ARMS.items()}).T
costs

# %% [markdown]
# ## The experiment
#
# `wb.dense.train_diffusion` trains `dit_tiny` through `wb.fit` with the `Denoising` task (a batch draws its
# timesteps and noise from the seed and the step, so both models see the same draws) and caches the result.
# Each run then draws `SAMPLES` images (the same starting noise for both models), and records the scores and
# the mechanism's measurements; `wb.sweep` keeps one record per run.

# %%
schedule = wb.dense.NoiseSchedule(T)
FIT = dict(epochs=EPOCHS, optimizer="adam", lr=LR, weight_decay=0.0, schedule="cosine", warmup=0.05)


def trained(arm, seed):
    return dimr.train_diffusion(train, test, model_kwargs=models_kw[arm], noise=schedule, seed=seed,
                                batch_size=BATCH_SIZE, **FIT)


def samples(arm, seed):
    model = trained(arm, seed).model
    key = {"model": model_fingerprint(model), "n": SAMPLES, "ddim": DDIM_STEPS, "seed": seed}
    return wb.cached(lambda: dimr.generate(model, schedule, SAMPLES, mean=train.mean, std=train.std,
                                           steps=DDIM_STEPS, seed=seed), key=key, name="dimr_samples")


def run(arm, seed):
    result = trained(arm, seed)
    images = samples(arm, seed)
    fake = train.normalize(images)
    conf = dimr.max_probability(classifier, fake)
    record = {"frechet": dimr.feature_frechet(classifier, fake, real),
              "distorted": dimr.distorted_fraction(conf, THRESHOLD),
              "boundary": float(dimr.patch_boundary_score(images, PATCH).mean()),
              "curve_epoch": result.history["epoch"].tolist(), "curve_loss": result.history["test_loss"].tolist(),
              "loss_by_t": dimr.denoising_loss_by_t(result.model, real, schedule, TS).tolist()}
    if ARMS[arm]["multires"]:
        with dimr.ablate_coarse(result.model):
            record["loss_by_t_coarse_cut"] = dimr.denoising_loss_by_t(result.model, real, schedule, TS).tolist()
        record["tdln_change"] = dimr.tdln_time_change(result.model, 1, T)[1].tolist()
    return record


grid = [dict(arm=a, seed=s) for a in ARMS for s in SEEDS]
constants = dict(train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET, classifier_subset=CLASSIFIER_SUBSET,
                 classifier_epochs=CLASSIFIER_EPOCHS, size=SIZE, arms=models_kw, T=T, batch_size=BATCH_SIZE,
                 samples=SAMPLES, ddim=DDIM_STEPS, threshold=THRESHOLD, ts=TS, **FIT)
runs = wb.sweep(run, grid, folder=wb.sweep_folder("dimr", constants))
order = list(ARMS)
runs[["arm", "seed", "frechet", "distorted", "boundary"]]

# %% [markdown]
# ## What to look at
#
# ### The scores, per model
#
# Bars: the mean over seeds; dots: the seeds. Lower is better for all three. The dotted lines are the real
# test images' own values (for the Frechet distance: two halves of the test images against each other, the
# floor at this sample size).

# %%
fig = make_subplots(rows=1, cols=3, subplot_titles=("Frechet distance in a ResNet-8's features",
                                                    f"distorted (confidence < {THRESHOLD})",
                                                    "patch-boundary score"))
floors = [reference["Frechet distance, real vs real (half sets)"], reference["distorted (real test images)"],
          reference["patch-boundary score (real)"]]
for col, (metric, floor) in enumerate(zip(("frechet", "distorted", "boundary"), floors), start=1):
    means = runs.groupby("arm")[metric].mean().reindex(order)
    fig.add_trace(go.Bar(x=order, y=means, marker_color=px.colors.qualitative.Plotly[:2], showlegend=False),
                  row=1, col=col)
    fig.add_trace(go.Scatter(x=runs.arm, y=runs[metric], mode="markers", marker_color="black",
                             showlegend=False, text=[f"seed {s}" for s in runs.seed]), row=1, col=col)
    fig.add_hline(y=floor, line_dash="dot", row=1, col=col)
fig.update_layout(height=380, title=f"{SAMPLES} samples per run, {len(SEEDS)} seed(s), "
                  f"{int(costs['multiply-adds per image'].iloc[0] / 1e6)}-{int(costs['multiply-adds per image'].iloc[1] / 1e6)} M multiply-adds per forward pass")

# %%
table = runs.groupby("arm")[["frechet", "distorted", "boundary"]].agg(["mean", "std"]).reindex(order)
table.round(4)

# %% [markdown]
# ### Samples side by side, and an explorer
#
# The same starting noise for both models (seed and index): differences come from the networks alone. Sort by
# the classifier's confidence to see what the "distorted" samples look like.

# %%
sample_sets = {(a, s): samples(a, s) for a in order for s in SEEDS}
confidences = {k: dimr.max_probability(classifier, train.normalize(v)) for k, v in sample_sets.items()}


def render_samples(seed=SEEDS[0], show="as drawn", n=16):
    rows = []
    for arm in order:
        idx = torch.arange(n) if show == "as drawn" else confidences[(arm, seed)].argsort()[:n]
        rows.append(sample_sets[(arm, seed)][idx, 0])
    fig = px.imshow(torch.cat(rows).cpu().numpy(), facet_col=0, facet_col_wrap=n, binary_string=True,
                    facet_row_spacing=0.03, facet_col_spacing=0.005)
    fig.for_each_annotation(lambda a: a.update(text=""))
    return fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False).update_layout(
        height=250, title=f"top: {order[0]}, bottom: {order[1]} (seed {seed}, {show})")


wb.viz.explorer(render_samples, seed=SEEDS, show=["as drawn", "least confident first"])

# %% [markdown]
# ### Training curves
#
# The noise-prediction loss on the test images after each epoch (the same draws of `t` and noise for both).

# %%
curves = runs.explode(["curve_epoch", "curve_loss"]).astype({"curve_epoch": int, "curve_loss": float})
px.line(curves, x="curve_epoch", y="curve_loss", color="arm", line_dash="seed", markers=True,
        category_orders={"arm": order}, labels={"curve_epoch": "epoch", "curve_loss": "test denoising loss"},
        title="Denoising loss on the test images during training")

# %% [markdown]
# ### Inside DiMR: the coarse pass and TD-LN
#
# Left: the noise-prediction loss at fixed noise levels `t` on the test images, for DiT, for DiMR, and for
# DiMR with its coarse pass cut off (`ablate_coarse`: the upsampled coarse tokens replaced by zeros; the fine
# branch's weights unchanged). The gap between the last two is what the fine branch takes from the coarse one.
# Right: TD-LN's weight `w(t)` at `t = 1` against `t = T`, per layer: a layer whose weight does not move is a
# plain, time-blind layer norm.

# %%
loss_rows = []
for _, r in runs.iterrows():
    for t, v in zip(TS, r["loss_by_t"]):
        loss_rows.append({"model": r["arm"], "seed": r["seed"], "t": t, "loss": v})
    if isinstance(r.get("loss_by_t_coarse_cut"), list):
        for t, v in zip(TS, r["loss_by_t_coarse_cut"]):
            loss_rows.append({"model": "DiMR, coarse pass cut", "seed": r["seed"], "t": t, "loss": v})
loss_by_t = pd.DataFrame(loss_rows)
dimr_runs = runs[runs.arm == "DiMR"]
tdln = pd.DataFrame([{"seed": s, "layer": i, "TD-LN change": v}
                     for s, ch in zip(dimr_runs.seed, dimr_runs.tdln_change) for i, v in enumerate(ch)])
fig = make_subplots(rows=1, cols=2, subplot_titles=("denoising loss at fixed t (log scale)",
                                                    "TD-LN: change of scale and shift from t = 1 to T"))
for i, (name, part) in enumerate(loss_by_t.groupby("model", sort=False)):
    mean = part.groupby("t").loss.mean()
    fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines+markers", name=name,
                             marker_color=px.colors.qualitative.Plotly[i]), row=1, col=1)
for s, part in tdln.groupby("seed"):
    fig.add_trace(go.Bar(x=part.layer, y=part["TD-LN change"], name=f"TD-LN, seed {s}"), row=1, col=2)
fig.update_yaxes(type="log", row=1, col=1).update_xaxes(title_text="t", row=1, col=1)
fig.update_xaxes(title_text="layer: the fine blocks' two norms each, then the coarse blocks'", row=1, col=2)
fig.update_layout(height=400)

# %%
pivot = loss_by_t.pivot_table(index="t", columns="model", values="loss")
pivot["coarse cut / DiMR"] = pivot["DiMR, coarse pass cut"] / pivot["DiMR"]
pivot.round(4)

# %% [markdown]
# ## The claim, as checks that can fail
#
# Every mode: the two models' multiply-adds per forward pass lie within `MAX_MACS_GAP` (5%) of each other.
# Laptop and paper mode: training lowered both models' test loss below the untrained 1.0.
#
# **The paper's claim**, chosen before the comparison ran (the spread: the larger standard deviation over
# seeds of the two models):
#
# 1. DiMR's mean Frechet distance in the ResNet-8's features is below DiT's by more than the spread;
# 2. DiMR's mean share of distorted samples is below DiT's.
#
# **The mechanism**, also chosen before the comparison ran:
#
# 3. in every seed, cutting DiMR's coarse pass raises its denoising loss at every measured `t` (the fine
#    branch relies on what the coarse one hands it);
# 4. in every seed, TD-LN learned a time dependence: the mean over layers of its change of scale and shift
#    from `t = 1` to `T` exceeds `TDLN_MIN` (it is exactly 0 at initialization).
#
# A first laptop run found check 4 failing for a reason in the model rather than in the idea: `dit_tiny`'s
# TD-LN started with `a = b = 0`, so its weight was 0.5 at every `t`, its two scale (and shift) vectors got
# equal gradients and never parted, and the multi-resolution model was blind to the timestep. The
# initialization was fixed (`a = 4, b = -2`; a unit test now checks that the vectors part) and the run
# repeated with the same checks. Checks 1 and 2 **failed** again in that run (DiMR's samples further from the
# real images than DiT's, and more of them distorted; see the reading), so laptop mode prints them and asserts
# the mechanism, checks 3 and 4 (**mechanism only**); paper mode asserts all four. Printed beside them, not
# asserted: the patch-boundary score (fewer patch-aligned artefacts), a measure picked after the first run.

# %%
gap = abs(costs["multiply-adds per image"].iloc[0] / costs["multiply-adds per image"].iloc[1] - 1)
print(f"multiply-adds per forward pass: {costs['multiply-adds per image'].to_dict()} (gap {gap:.1%})")
assert gap <= MAX_MACS_GAP, f"the two models' compute differs by {gap:.1%}, more than {MAX_MACS_GAP:.0%}"
final = runs.curve_loss.map(lambda c: c[-1])
print(f"final test losses: {dict(zip(runs.arm + ' seed ' + runs.seed.astype(str), final.round(4)))}")
if CHECK_TRAINED:
    assert (final < 0.5).all(), f"training should lower the denoising loss well below 1.0: {final.tolist()}"

spread = lambda metric: max(runs[runs.arm == a][metric].std() if len(SEEDS) > 1 else 0.0 for a in order)  # noqa: E731
means = runs.groupby("arm")[["frechet", "distorted"]].mean()
fd_gap = means.loc["DiT", "frechet"] - means.loc["DiMR", "frechet"]
dist_gap = means.loc["DiT", "distorted"] - means.loc["DiMR", "distorted"]
print(f"1. Frechet distance: DiT {means.loc['DiT', 'frechet']:.4f}, DiMR {means.loc['DiMR', 'frechet']:.4f} "
      f"(DiMR lower by {fd_gap:+.4f}; spread {spread('frechet'):.4f})")
print(f"2. distorted share: DiT {means.loc['DiT', 'distorted']:.3f}, DiMR {means.loc['DiMR', 'distorted']:.3f} "
      f"(DiMR lower by {dist_gap:+.3f})")
if CHECK_CLAIM:
    assert fd_gap > spread("frechet"), f"DiMR's Frechet distance should be lower by more than the spread: {fd_gap:.4f}"
    assert dist_gap > 0, f"DiMR should make fewer distorted samples: {means['distorted'].to_dict()}"

cut_rise = [(torch.tensor(r["loss_by_t_coarse_cut"]) / torch.tensor(r["loss_by_t"])) for _, r in dimr_runs.iterrows()]
tdln_mean = [sum(ch) / len(ch) for ch in dimr_runs.tdln_change]
print("3. loss with the coarse pass cut / with it, per seed and t " + str(TS) + ": "
      + "; ".join(str([round(float(v), 3) for v in r]) for r in cut_rise))
print(f"4. TD-LN's mean change of scale and shift from t = 1 to T, per seed: {[round(v, 4) for v in tdln_mean]}")
boundary = runs.groupby("arm")["boundary"].mean()
boundary_gap = boundary["DiT"] - boundary["DiMR"]
print(f"patch-boundary score: DiT {boundary['DiT']:.3f}, DiMR {boundary['DiMR']:.3f} (real images "
      f"{reference['patch-boundary score (real)']:.3f}; DiMR lower by {boundary_gap:+.3f}, spread {spread('boundary'):.3f})")
if CHECK_MECHANISM:
    assert all(bool((r > 1).all()) for r in cut_rise), "cutting the coarse pass should raise the loss at every t"
    assert all(v > TDLN_MIN for v in tdln_mean), f"TD-LN should learn a time dependence: {tdln_mean}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-07; 3.9 minutes at 2 threads from an empty cache) DiMR
# (width 64: 4 fine blocks on 4-pixel patches plus 2 coarse blocks on 8-pixel patches, TD-LN; 321,320
# parameters, 16.52 M multiply-adds per image) and DiT (width 68, 4 blocks, adaLN-Zero; 353,140 parameters,
# 16.69 M multiply-adds, 1.0% more) each trained for 500 steps of 64 images (6,400 padded Fashion-MNIST
# images, 5 epochs, 2 seeds) and drew 500 samples by 25-step DDIM. The judge, a ResNet-8 trained for 3 epochs
# on 10,000 images, reaches 75.6% test accuracy; it calls 30.0% of the *real* test images distorted
# (confidence below 0.5), the real images' patch-boundary score is 1.06, and two halves of the real test
# images lie 0.05 apart in its features.
#
# **The paper's claim did not show at this scale.** DiT's samples were *closer* to the real images: Frechet
# distance in the ResNet-8's features 17.5 (16.2 and 18.8 in the two seeds) against DiMR's 23.6 (23.0 and
# 24.2), a gap of 6.1 against a spread of 1.8 (check 1 fails); and DiMR made more distorted samples, 43.0%
# (45.8, 40.2) against DiT's 37.9% (35.6, 40.2) (check 2 fails). DiT also reached the lower test loss
# (0.073-0.075 against 0.081-0.084), and the gap sits at high noise: at t = 750 and 950 DiMR's loss is about
# twice DiT's (0.0080 against 0.0044, 0.0082 against 0.0042), at t = 50 and 250 they are within 10%. Both
# sets of samples are far from the real images (17-24 against a floor of 0.05): at 500 steps neither model
# has learned the garments well.
#
# **What did show: the mechanism.** DiMR leans on its coarse pass, most at high noise: cutting it (the fine
# branch's weights unchanged) multiplies the noise-prediction loss by 1.7-2.0 at t = 50, 1.9-2.1 at t = 250,
# 3.9-4.0 at t = 500 and 9.4-9.8 at t = 750 and 950, in both seeds (check 3): at high noise the global layout
# is what the prediction needs, and it comes from the coarse tokens. TD-LN learned a time dependence (check
# 4): its scale and shift move by 0.045 and 0.044 on average from t = 1 to T (0 at initialization). And DiT's
# samples carry a strong patch-grid artefact: the pixel steps across its 4-pixel patch borders are 2.14 times
# those inside patches (2.17, 2.10), against 1.06 for real images; DiMR's samples score 1.47 (1.51, 1.42).
# That is the kind of patch-aligned distortion the paper's multi-resolution design is meant to relieve (shown,
# not asserted: the measure was picked after a first run), but here it does not carry over into the features
# the classifier sees.
#
# **A defect found on the way.** The first laptop run of this notebook found TD-LN learning nothing: every
# layer's weight stayed at 0.5 for every `t`. `dit_tiny`'s TD-LN started with `a = b = 0`; then `w(t)` has no
# effect on the output, `a` and `b` get no gradient, and the two rows of each pair get the same gradient, so
# they stay equal for ever, and the multi-resolution model (whose only time input is TD-LN) never saw `t`.
# With `a = 4, b = -2` the weight runs from 0.12 to 0.88 over the schedule and the rows part. The fix did not
# close the gap: DiMR's test loss is 0.081-0.084 before and after it, and its Frechet distance was behind DiT's
# in both runs (19.7 against 16.4 in the first, with a judge trained at one thread), so the time-blindness is
# not what keeps DiMR behind here. What may be: TD-LN's time signal is one learned scalar
# per layer against adaLN's full time embedding, a thin channel for a model this small and this briefly
# trained; the paper pairs it with far larger models and far longer training.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | task | class-conditional ImageNet at 256x256 and 512x512, in a VAE's latent space | unconditional Fashion-MNIST, 32x32 pixels (28x28 padded) |
# | headline | FID 1.70 at 256x256 and 2.89 at 512x512 for DiMR-XL variants, below the earlier diffusion models compared (the abstract; see the paper's ImageNet tables) | Frechet distance in a ResNet-8's features (not FID): DiMR 23.6, DiT 17.5 (real vs real 0.05) |
# | multi-resolution against single resolution at similar compute | DiMR ahead of earlier diffusion transformers at their parameters and GFLOPs (see the paper's ImageNet tables) | DiMR behind DiT at equal multiply-adds (1.0% apart) in Frechet distance and distorted share (43.0% vs 37.9%); fewer patch-grid artefacts (boundary score 1.47 vs 2.14) |
# | TD-LN against adaLN | fewer parameters, FID as good or better (see the paper's ablation tables) | TD-LN learns a time dependence (after an initialization defect was fixed, see the reading); not ablated against adaLN |
# | size | hundreds of millions of parameters, long training on ImageNet | 0.32-0.35 M parameters, 500 steps of 64 images |
#
# The paper's models are a thousand times larger, trained for orders of magnitude more steps on natural images
# at 8-16x the side; here only the direction of the comparison can be set beside the paper's.

# %% [markdown]
# ## What to try next
#
# - `EPOCHS = 30` (about 4x the time): are the samples still improving, and does the ranking of the two
#   models hold when both are closer to converged?
# - `PATCH = 8` for both (the coarse branch then sees 16-pixel patches): the regime the paper worries about,
#   where large patches lose the detail; does the coarse-to-fine model suffer less?
# - `DEPTH = 2`: shallower fine branches; does the coarse pass matter more when the fine branch can do less?

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **Time-dependent layer normalization.** `x` is a float tensor `[B, N, D]` (tokens), `t` an integer tensor
# `[B]` of timesteps out of `T`. `gamma` and `beta` are `[2, D]`: two learned scale vectors and two learned
# shift vectors; `a` and `b` are floats. Normalize each token over its `D` features (zero mean, unit variance,
# the biased variance, `eps = 1e-5`, no affine parameters of its own), then scale and shift it with
# `w * gamma[0] + (1 - w) * gamma[1]` and `w * beta[0] + (1 - w) * beta[1]`, where
# `w = sigmoid(a * t / T + b)` per image.

# %%
def td_layer_norm(x, t, T, gamma, beta, a, b):
    raise NotImplementedError  # your code here


wb.exercises.check("td_layer_norm", td_layer_norm)
