# %% [markdown]
# # SparK: masked image modeling for a convnet, with the holes kept empty
#
# Keyu Tian, Yi Jiang, Qishuai Diao, Chen Lin, Liwei Wang and Zehuan Yuan, *Designing BERT for
# Convolutional Networks: Sparse and Hierarchical Masked Modeling*, ICLR 2023
# ([arXiv 2301.03580](https://arxiv.org/abs/2301.03580)).
#
# **The question.** Masked image modeling (hide most patches of an image, reconstruct them) made
# vision transformers learn good features without labels. A transformer simply drops the hidden
# patches. A convolutional network cannot: it slides over a grid, so the hidden patches have to be
# filled with something (zeros, say), and then the network sees the mask itself. Can a plain ResNet
# be pre-trained BERT-style, and does it matter how the holes are treated?
#
# **The idea.** Treat the visible pixels as a *sparse* image, like the occupied voxels of a point
# cloud, and encode it with sparse convolution: every layer computes only at visible positions, and
# hidden positions stay empty all the way up (BatchNorm too takes its statistics from the visible
# positions only). The mask is laid out at the encoder's coarsest resolution, so every hidden patch
# covers whole cells at every stage. A light UNet-like decoder fills the holes of each stage's
# feature map with a learned mask token, upsamples from the coarsest stage to the finest, and
# regresses the hidden patches' pixels (each patch normalized by its own mean and spread). After
# pre-training only the encoder is kept, an ordinary ResNet, and fine-tuned.
#
# The alternative SparK argues against, *dense* masking, runs the unchanged network on the image
# with zeros in the holes. Each convolution then smears the holes' edges into the visible features
# and fills the holes a little more, layer after layer (the paper's "mask pattern vanishing"), and
# BatchNorm's statistics mix holes and image. The network learns on images with a pattern of holes
# that it never sees again when it is fine-tuned.
#
# **What is checked here.** `wb.ssl.SparK` wraps the registered `resnet20` (its stages run under
# hooks that keep the holes empty; the backbone itself is not changed) and `wb.ssl.MaskedModeling`
# is the pre-training task of `wb.fit`. First the mechanism, on a fresh network: how much the
# visible features of each stage depend on the hidden pixels (gradients), and how far the holes are
# filled, in sparse and in dense mode. Then the claim: ResNet-20 pre-trained with sparse masking,
# with dense masking, and not pre-trained, all fine-tuned on the same labelled images with the same
# recipe and seeds; accuracy on the CIFAR-10 test set.
#
# Said plainly up front: at laptop scale (a few hundred pre-training steps on 5,000 images) the
# accuracy claim does **not** show; sparse pre-training ends no better than dense pre-training (see
# the reading below). Laptop mode therefore asserts the mechanism, the leak, and shows the
# accuracies without asserting them; paper mode asserts the claim.

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
WIDTH = wb.by_mode(smoke=4, laptop=8, paper=16)  # ResNet-20's first-stage channels (then 2x and 4x)
PATCH_SIZE = 4  # pixels; ResNet-20's total stride, SparK's rule (one patch per cell of the last feature map)
MASK_RATIO = 0.6  # SparK's share of hidden patches
UNLABELLED = wb.by_mode(smoke=256, laptop=5_000, paper=None)  # training images for pre-training (None: all 50,000)
LABEL_FRACTION = wb.by_mode(smoke=0.5, laptop=0.4, paper=0.1)  # of those, the share with labels for fine-tuning
TEST_SUBSET = wb.by_mode(smoke=200, laptop=2_000, paper=None)
PRE_EPOCHS = wb.by_mode(smoke=1, laptop=6, paper=200)
FT_EPOCHS = wb.by_mode(smoke=1, laptop=15, paper=100)
SEEDS = wb.by_mode(smoke=[0], laptop=[0, 1, 2], paper=[0, 1, 2])
LEAK_IMAGES = wb.by_mode(smoke=16, laptop=64, paper=256)  # test images the leak is measured on
BACKEND = wb.by_mode(smoke="inprocess", laptop="inprocess", paper="ray")  # paper: one run per GPU on Ray
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=False, paper=True)  # see "The claim" below: mechanism only on a laptop

# %% [markdown]
# ## The mechanism: does a hidden position reach a visible one?
#
# A fresh `spark_mim` model (ResNet-20 and the decoder), `LEAK_IMAGES` test images, a random mask
# hiding `MASK_RATIO` of the 4x4-pixel patches of each. `wb.ssl.mask_leak` measures, for each stage
# of the encoder (`layer1` at full resolution, `layer2` at half, `layer3` at a quarter):
#
# * `grad_leak`: the share of the squared gradient of the stage's visible outputs, with respect to
#   the encoder's input, that falls on hidden pixels: how much the visible features depend on what
#   sits in the holes (with zeros in the holes, that is the mask pattern);
# * `hidden_nonzero`: the share of hidden cells with a non-zero activation (how far the holes are
#   filled); `hidden_activity`: their mean |activation| relative to the visible cells'.
#
# Sparse masking must give exactly 0 in every column (the unit tests check it on every layer);
# dense masking does not.

# %%
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=0)
probe = test.subset(LEAK_IMAGES, seed=1)
x = probe.normalize(probe.images)
torch.manual_seed(0)
fresh = wb.create_model("spark_mim", backbone_kwargs={"width": WIDTH}, patch_size=PATCH_SIZE)
visible = wb.ssl.random_patch_mask(len(x), fresh.grid(x), MASK_RATIO, seed=0, step=0)
leak = pd.concat([wb.ssl.mask_leak(fresh, x, visible, mode).assign(mode=mode) for mode in wb.ssl.MODES])
leak.pivot_table(index=["stage", "stride"], columns="mode",
                 values=["grad_leak", "hidden_nonzero", "hidden_activity"]).round(3)

# %%
px.bar(leak, x="stage", y="grad_leak", color="mode", barmode="group",
       labels={"grad_leak": "share of the visible features' input gradient on hidden pixels"},
       title=f"How much the mask pattern reaches the visible features (fresh ResNet-20 x{WIDTH}, {len(x)} images)")

# %% [markdown]
# ### Explore: the holes, stage by stage
#
# For one test image: the masked input, then the mean |activation| over channels of the chosen
# stage, in sparse and in dense mode. In sparse mode the holes stay black at every stage; in dense
# mode the convolutions fill them from their edges, faster in the coarser stages, where each cell
# sees more of the image.

# %%
def render_holes(stage="layer1", image=0):
    i = list(fresh.stages).index(stage)
    shown = wb.ssl.upsample_mask(visible[image:image + 1], (32, 32))
    panels = {"masked input": (x[image:image + 1] * shown).abs().mean(1)[0]}
    with torch.no_grad():
        fresh.eval()
        for mode in wb.ssl.MODES:
            f = fresh.encode(x[image:image + 1] * shown, visible[image:image + 1], mode)[i]
            panels[f"{mode}: {stage}"] = f.abs().mean(1)[0]
    size = max(p.shape[-1] for p in panels.values())
    imgs = torch.stack([torch.nn.functional.interpolate(p[None, None], size=size)[0, 0] / p.max().clamp_min(1e-8)
                        for p in panels.values()])
    fig = px.imshow(imgs.numpy(), facet_col=0, color_continuous_scale="gray",
                    title=f"test image {image}: mean |activation| of {stage} (each panel scaled to its maximum)")
    fig.for_each_annotation(lambda a: a.update(text=list(panels)[int(a.text.split("=")[1])]))
    return fig


wb.viz.explorer(render_holes, stage=list(fresh.stages), image=list(range(min(8, len(x)))))

# %% [markdown]
# ## Pre-training, then fine-tuning, on real data
#
# Three variants, the same three seeds. With the same seed all three start from exactly the same
# ResNet-20 weights (`spark_mim` builds its backbone first; a unit test checks it):
#
# * **sparse**: `PRE_EPOCHS` epochs of SparK pre-training on `UNLABELLED` CIFAR-10 training images,
#   labels unused (AdamW, learning rate 2e-3 with a cosine schedule, weight decay 0.05, batches of
#   128, crop-and-flip; masks a pure function of seed and step);
# * **dense**: the same, with the plain encoder on the masked images;
# * **none**: no pre-training.
#
# Then each backbone (the decoder is dropped) is fine-tuned on the same class-balanced
# `LABEL_FRACTION` of those images with labels, with the laptop recipe (one-cycle SGD, label
# smoothing, crop-and-flip) for `FT_EPOCHS` epochs in batches of 64, and tested on `TEST_SUBSET`
# test images. The budget was fixed from a pilot before the three were compared: enough
# pre-training steps for the reconstruction loss to flatten (240 steps of 128), and enough
# fine-tuning steps (480 of 64) for the network without pre-training to learn well above chance.
# `wb.ssl.spark_run` does one run (the pre-training cached by `wb.train_model`, the fine-tuning by
# `wb.ssl.fine_tune`); `wb.sweep` keeps one record per run.

# %%
pretrain = dict(epochs=PRE_EPOCHS, batch_size=128, optimizer="adamw", lr=2e-3, weight_decay=0.05, schedule="cosine",
                warmup=0.1, augment="crop_flip")
finetune = wb.train.recipe("laptop", epochs=FT_EPOCHS, batch_size=64, lr=0.1)
constants = dict(pretrain=pretrain, finetune=finetune, unlabelled_subset=UNLABELLED, label_fraction=LABEL_FRACTION,
                 test_subset=TEST_SUBSET, backbone_kwargs={"width": WIDTH}, patch_size=PATCH_SIZE,
                 mask_ratio=MASK_RATIO)
VARIANTS = ["sparse", "dense", "none"]
runs = wb.sweep(functools.partial(wb.ssl.spark_run, **constants),
                [dict(mode=v, seed=s) for v in VARIANTS for s in SEEDS],
                backend=BACKEND, folder=wb.sweep_folder("spark", constants))
table = runs.groupby("mode").agg(acc=("test_acc", "mean"), spread=("test_acc", "std"), train_acc=("train_acc", "mean"),
                                 labels=("labels", "first"), runs=("seed", "count")).reindex(VARIANTS)
table

# %%
curves = runs.explode(["curve_epoch", "curve_test_acc"]).astype({"curve_epoch": int, "curve_test_acc": float})
px.line(curves, x="curve_epoch", y="curve_test_acc", color="mode", line_group="seed", markers=True,
        labels={"curve_epoch": "fine-tuning epoch", "curve_test_acc": "test accuracy"},
        title=f"Fine-tuning ResNet-20 x{WIDTH} on {int(table.labels.iloc[0]):,} labelled images (one line per seed)")

# %%
pre = runs[runs["mode"] != "none"].explode(["pretrain_loss", "pretrain_test_loss"])
pre = pre.assign(epoch=pre.groupby(["mode", "seed"]).cumcount() + 1).astype({"pretrain_test_loss": float})
px.line(pre, x="epoch", y="pretrain_test_loss", color="mode", line_group="seed", markers=True,
        labels={"pretrain_test_loss": "reconstruction loss on hidden test patches"},
        title="Pre-training: the loss on hidden patches of 500 test images (fixed masks)")

# %% [markdown]
# ## What the pre-trained networks reconstruct, and what leaks after training
#
# Test images with 60% of their patches hidden, filled in by the sparse and by the dense model of
# the first seed (each prediction rescaled with its true patch's mean and spread, as SparK's own
# figures do; the visible patches are the input's). Then `mask_leak` again, on the trained
# encoders: training does not make the dense encoder ignore the holes.

# %%
unlabelled = wb.load("cifar10", "train", subset=UNLABELLED, seed=0)
trained = {mode: wb.ssl.spark_pretrain(mode, SEEDS[0], unlabelled, test.subset(min(500, len(test)), seed=1),
                                       backbone_kwargs={"width": WIDTH}, patch_size=PATCH_SIZE, mask_ratio=MASK_RATIO,
                                       **pretrain).model.cpu() for mode in wb.ssl.MODES}
shown = x[:6]
filled = {mode: wb.ssl.reconstruction(m, shown, visible[:6], mode) for mode, m in trained.items()}
rows = torch.cat([shown * wb.ssl.upsample_mask(visible[:6], (32, 32)), filled["sparse"], filled["dense"], shown])
pixels = (rows * torch.tensor(probe.std).view(1, 3, 1, 1) + torch.tensor(probe.mean).view(1, 3, 1, 1)).clamp(0, 1)
fig = px.imshow(pixels.permute(0, 2, 3, 1).numpy(), facet_col=0, facet_col_wrap=6, facet_row_spacing=0.02,
                title="rows: masked input, sparse model's fill, dense model's fill, original")
fig.for_each_annotation(lambda a: a.update(text=""))
fig

# %%
leak_trained = pd.concat([wb.ssl.mask_leak(m, x, visible, mode).assign(mode=mode) for mode, m in trained.items()])
leak_trained.pivot_table(index=["stage", "stride"], columns="mode", values=["grad_leak", "hidden_nonzero"]).round(3)

# %% [markdown]
# ## The claim, as a check that can fail
#
# The mechanism, in every mode: in sparse mode nothing of the hidden positions reaches the encoder's
# features (`grad_leak`, `hidden_nonzero` and `hidden_activity` exactly 0 at every stage, fresh and
# after pre-training); in dense mode the mask pattern reaches the visible features of every stage
# (`grad_leak > 0`) and the holes are filled (`hidden_nonzero > 0`), also after pre-training.
#
# The claim, as the paper states it (paper mode; `CHECK_CLAIM`): sparse pre-training fine-tunes to
# a higher accuracy than dense pre-training, ahead in every seed and by more than the spread over
# seeds. In laptop mode the accuracies are shown but not asserted: see the reading below.

# %%
cols = ["grad_leak", "hidden_nonzero", "hidden_activity"]
for name, frame in (("fresh", leak), ("pre-trained", leak_trained)):
    sparse, dense = frame[frame["mode"] == "sparse"], frame[frame["mode"] == "dense"]
    print(f"{name}: sparse max {sparse[cols].to_numpy().max():.3g}; dense grad_leak per stage "
          f"{dense.grad_leak.round(3).tolist()}, hidden_nonzero {dense.hidden_nonzero.round(3).tolist()}")
    assert (sparse[cols] == 0).all().all(), f"{name}: a hidden position reached the sparse encoder's features"
    assert (dense.grad_leak > 0).all() and (dense.hidden_nonzero > 0).all(), \
        f"{name}: the dense encoder should see the mask pattern at every stage"
per_seed = runs.pivot_table(index="seed", columns="mode", values="test_acc").reindex(columns=VARIANTS)
gain = per_seed["sparse"] - per_seed["dense"]
spread = per_seed[["sparse", "dense"]].std().max() if len(SEEDS) > 1 else 0.0
print(f"fine-tuned test accuracy per seed:\n{per_seed.round(4)}")
print(f"sparse - dense: {gain.round(4).to_dict()} (mean {gain.mean():+.4f}, spread over seeds {spread:.4f})")
if CHECK_CLAIM:
    assert (gain > 0).all() and gain.mean() > spread, \
        f"sparse masking should fine-tune better than dense masking by more than the seed spread: {gain.to_dict()}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-06, 2 cores, 11.1 minutes from an empty cache)
# the mechanism is exactly as SparK describes it. In sparse mode nothing of the holes reaches the
# encoder: `grad_leak`, `hidden_nonzero` and `hidden_activity` are exactly 0 at every stage, fresh
# and after pre-training. In dense mode the first stage already has a non-zero activation in 99% of
# the hidden cells (a BatchNorm shift and the convolutions' reach fill the 4x4 holes at once), and
# 12%, 22% and 28% of the visible features' input gradient sits on hidden pixels in `layer1`,
# `layer2` and `layer3`. Pre-training makes it worse, not better: after 6 dense epochs that share
# is 29%, 61% and 77%. The dense encoder learns to read the pattern of holes; its reconstruction
# loss on hidden test patches ends a little lower than the sparse encoder's in every seed (0.686,
# 0.697, 0.700 against 0.693, 0.714, 0.726), helped by where the holes are, a cue that a fine-tuned
# network never gets again.
#
# The accuracy claim does not show at this scale, and the gap goes the other way. Fine-tuned on
# 2,000 labelled images for 15 epochs, the sparse-pretrained ResNet-20 reached 48.9% test accuracy
# (50.65, 46.95, 49.0 in seeds 0, 1, 2), the dense-pretrained one 51.75% (53.05, 51.35, 50.85) and the
# one without pre-training 48.9% (47.95, 49.5, 49.35). Dense is ahead of sparse in every seed, by 2.9
# points on average against a seed spread of 1.85; sparse pre-training did not beat no pre-training
# at all. 240 steps of masked modeling on 5,000 tiny images teach a ResNet-20 of 69,000 parameters
# little that fine-tuning on 2,000 labels does not learn anyway, and at this scale whatever dense
# pre-training gains (we did not isolate it) outweighs the cost of the leak. The paper
# measures its sparse-over-dense gain on ImageNet, fine-tuning ResNet-50 after hundreds of
# pre-training epochs: that is where the claim lives, and paper mode (all of CIFAR-10, width 16,
# 200 pre-training epochs) is where this notebook asserts it.

# %% [markdown]
# ## The paper's numbers beside ours
#
# | | the paper | here (laptop mode) |
# | --- | --- | --- |
# | encoder, data | ResNet-50 (and ResNet-101 to -200, ConvNeXt-S/B/L), 1.28M ImageNet images at 224x224, 32x32 patches, 60% hidden, 1,600 epochs of pre-training | ResNet-20 at width 8 (0.07M parameters), 5,000 CIFAR-10 images at 32x32, 4x4 patches, 60% hidden, 6 epochs |
# | fine-tuning | all of ImageNet, ResNet-50: 80.6% top-1 after SparK (the README's and the paper's ImageNet table) | 2,000 labelled images, 15 epochs: see the table above |
# | sparse against dense | the ablation study on ImageNet: replacing sparse masking by dense convolution on zero-masked images lowers ResNet-50's fine-tuning accuracy | 48.9% (sparse) against 51.75% (dense) and 48.9% (none), 3 seeds: not shown, reversed |
# | the leak | the "mask pattern vanishing" figure: dense convolution fills the holes after a few layers | `grad_leak` and `hidden_nonzero` above: exactly 0 in sparse mode, and in dense mode the holes filled already at the first stage |
#
# The paper's differences are fractions of a point to a point or two of ImageNet top-1, measured after
# 1,600 epochs of pre-training of a network 350 times larger on 250 times more images; here 240
# pre-training steps on 5,000 images, where the seed spread alone is 1-2 points.

# %% [markdown]
# ## What to try next
#
# - `PATCH_SIZE = 8`: larger holes (a quarter of the image side). The dense encoder needs more
#   layers to fill them, and reconstruction needs more than interpolation from the edges.
# - `PRE_EPOCHS = 30` with `UNLABELLED = 20_000`: a longer pre-training, where the two encoders'
#   features have time to differ; does the gap on fine-tuning appear?
# - `LABEL_FRACTION = 0.1`: fewer labels, where pre-training matters more.

# %% [markdown]
# ## Exercise
#
# Write the function, run the cell: the check says what is right or wrong.
#
# **SparK's sparse BatchNorm.** `x` is a batch of activations `[B, C, H, W]` and `visible` a bool
# mask `[B, 1, H, W]` (True where the position is visible). Return `[B, C, H, W]`: BatchNorm in
# training mode without affine parameters, whose per-channel mean and (biased) variance are taken
# over the visible positions of all images only, `(x - mean) / sqrt(var + 1e-5)` at visible
# positions, and exactly 0 at hidden ones.

# %%
def sparse_batch_norm(x, visible):
    raise NotImplementedError  # your code here


wb.exercises.check("sparse_batch_norm", sparse_batch_norm)
