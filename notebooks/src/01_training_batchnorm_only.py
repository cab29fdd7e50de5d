# %% [markdown]
# # Training BatchNorm and only BatchNorm
#
# Frankle, Schwab & Morcos, *Training BatchNorm and Only BatchNorm: On the Expressive Power of
# Random Features in CNNs*, ICLR 2021 ([arXiv 2003.00152](https://arxiv.org/abs/2003.00152)).
#
# **The question.** A BatchNorm layer normalizes each channel and then applies a learned
# scale γ and shift β. How much can a network do with *only* those two numbers per
# channel, when every convolution keeps its random initial weights?
#
# **The claim.** Surprisingly much: a ResNet whose convolutions are frozen at random reaches
# accuracy far above chance when only γ and β train, far above a control that trains the
# same number of randomly chosen convolution weights instead, and more so the deeper the
# network. Part of the trick: BatchNorm learns to *switch off* a large share of the random
# features by driving γ to zero.
#
# **The experiment.** CIFAR-10, CIFAR ResNets of several depths, four policies that decide
# which parameters train:
#
# | policy | what trains |
# | --- | --- |
# | `bn_only` | γ and β of every BatchNorm (stem and shortcuts included) |
# | `random_per_channel` | 2 random weights per output channel of every convolution: exactly as many as `bn_only` |
# | `random_anywhere` | the same count, chosen uniformly over all convolution weights |
# | `full` | everything (the usual training) |
#
# The output layer stays at its random initialization in the paper's headline setting
# (the abstract: everything but γ and β is frozen); `TRAIN_OUTPUT_TOO` below adds the
# variant in which the output layer trains as well (on by default in paper mode; set it to
# `True` on a laptop for about three more minutes).

# %%
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
DEPTHS = wb.by_mode(smoke=[8], laptop=[8, 14, 32], paper=[14, 32, 56, 110])  # laptop: ResNet-56 alone took 15 min
POLICIES = ["bn_only", "random_per_channel", "random_anywhere", "full"]
TRAIN_SUBSET = wb.by_mode(smoke=1000, laptop=10_000, paper=None)
TEST_SUBSET = wb.by_mode(smoke=500, laptop=2_000, paper=None)
# laptop: a short one-cycle schedule; frozen-feature policies want a large learning rate
RECIPE = wb.by_mode(
    smoke=dict(epochs=1, batch_size=128, schedule="onecycle", weight_decay=0.0, lr=0.1),
    laptop=dict(epochs=3, batch_size=128, schedule="onecycle", weight_decay=0.0, lr=0.2),
    paper=wb.train.recipe("open_lth", precision="auto"),
)
LR_BY_POLICY = wb.by_mode(smoke=None, laptop={"bn_only": 2.0, "random_per_channel": 2.0, "random_anywhere": 2.0},
                          paper=None)
TRAIN_OUTPUT_TOO = wb.by_mode(smoke=True, laptop=False, paper=True)  # also bn_only with a trained output layer ...
LR_WITH_OUTPUT = wb.by_mode(smoke=None, laptop={"bn_only": 0.05}, paper=None)  # ... at a rate the output layer survives
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=True, paper=True)
SEED = 0

# %% [markdown]
# ## How few parameters are we talking about?
#
# For a CIFAR ResNet of base width W with n blocks per stage and projection shortcuts,
# BatchNorm holds 2W(14n + 7) parameters: under 0.7% of the network at every depth.

# %%
params = wb.bn_only.parameter_table()
params["bn_percent"] = (100 * params["bn_fraction"]).round(3)
params[["model", "total", "bn_only", "output_layer", "bn_percent"]]

# %% [markdown]
# ## Train every depth under every policy
#
# Each run is cached: re-running this cell reads the results from disk. Every policy of
# one depth starts from the *same* random network (same seed).

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=SEED)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=SEED)
table, runs = wb.bn_only.compare(DEPTHS, POLICIES, train, test, seed=SEED, lr_by_policy=LR_BY_POLICY, **RECIPE)
if TRAIN_OUTPUT_TOO:
    extra, extra_runs = wb.bn_only.compare(DEPTHS, ["bn_only"], train, test, seed=SEED, train_output=True,
                                           lr_by_policy=LR_WITH_OUTPUT, **RECIPE)
    extra["policy"] = "bn_only+output"
    table = pd.concat([table, extra], ignore_index=True)
table

# %% [markdown]
# What to look at: BN-only stays well above chance and above both random controls, and its
# lead grows with depth, while the random controls do not improve with depth. At laptop
# scale (a few epochs on 10,000 images) full training of the deeper networks is far from
# converged, so do not read the `full` curve as the paper's; the GPU records below show
# full training at paper scale. With `TRAIN_OUTPUT_TOO` on, the `bn_only+output` variant shares one
# learning rate between γ, β and the output layer; at laptop scale the output layer only tolerates a
# rate far below what γ and β like (at lr 0.5 it fell to 10-16% at depths 32 and 56; see
# `LR_WITH_OUTPUT`), so there it trails the frozen-output runs.

# %%
wb.viz.accuracy_by_depth(table, title="Test accuracy against depth")

# %%
wb.viz.accuracy_by_depth(table, x="trainable", title="Test accuracy against the number of trained parameters")

# %% [markdown]
# ## Does BatchNorm switch features off?
#
# A channel with γ ≈ 0 outputs its shift β for every input; after the ReLU it is then a
# constant, and if β < 0 it is zero: the random feature has been disabled. Compare the
# distribution of γ after BN-only training with full training of the same network.

# %%
deepest = max(DEPTHS)
g = {p: torch.cat(list(wb.bn_only.gammas(runs[(deepest, p)].model).values())) for p in ("bn_only", "full")}
wb.viz.gamma_histogram(g, title=f"BatchNorm γ of resnet{deepest} after training")

# %%
sweep = pd.concat([wb.bn_only.gamma_fractions(runs[(deepest, p)].model).assign(policy=p) for p in ("bn_only", "full")])
px.line(sweep[sweep.layer == "all"], x="threshold", y="fraction", color="policy", markers=True, log_x=True,
        title="Fraction of channels with |γ| below a threshold", labels={"fraction": "fraction of channels"})

# %% [markdown]
# A few laptop epochs only begin this process; the 160-epoch GPU records below show how far
# it goes (the paper reports that BatchNorm disables around a third of the random features).

# %%
disabled = {p: wb.bn_only.disabled_features(runs[(deepest, p)].model, test, max_examples=1000)
            for p in ("bn_only", "full")}
for p, d in disabled.items():
    print(f"{p:8s}: {d.iloc[-1]['fraction']:.1%} of post-ReLU channels are zero on at least 99% of positions")
wb.viz.disabled_by_layer(disabled, title=f"Disabled channels per layer, resnet{deepest}")

# %% [markdown]
# ### Explore every run
#
# Pick a depth and a policy: the γ histogram of that run (against full training of the
# same network) and its disabled channels per layer.

# %%
from plotly.subplots import make_subplots
import plotly.graph_objects as go


def render(depth, policy):
    model = runs[(depth, policy)].model
    fig = make_subplots(rows=1, cols=2, subplot_titles=("BatchNorm γ", "disabled channels per layer"))
    for name, m in ((policy, model), ("full", runs[(depth, "full")].model)):
        gam = torch.cat(list(wb.bn_only.gammas(m).values())).numpy()
        fig.add_trace(go.Histogram(x=gam, name=name, opacity=0.6, histnorm="probability", nbinsx=50), row=1, col=1)
    d = wb.bn_only.disabled_features(model, test, max_examples=500)
    d = d[d.layer != "all"]
    fig.add_trace(go.Bar(x=d["layer"], y=d["fraction"], name=f"{policy} disabled"), row=1, col=2)
    acc = table[(table.depth == depth) & (table.policy == policy)]["test_acc"].iloc[0]
    fig.update_layout(barmode="overlay", height=380, title=f"resnet{depth}, {policy}: test accuracy {acc:.1%}")
    return fig


wb.viz.explorer(render, depth=DEPTHS, policy=POLICIES)

# %% [markdown]
# ## What do the networks look at?
#
# Integrated Gradients ([captum](https://captum.ai)) attributes each prediction to input
# pixels. The BN-only network reads its random features; the fully trained one learned its own.

# %%
imgs = test.images[:8]
x = test.normalize(imgs).to(wb.device())
maps = {p: wb.attribution.attribute(runs[(deepest, p)].model, x, method="integrated_gradients").cpu()
        for p in ("bn_only", "full")}
wb.viz.attribution_grid(imgs, maps, test.classes, test.labels[:8], title="Integrated Gradients (brighter = more influence)")

# %% [markdown]
# ## Paper scale, from a GPU
#
# `scripts/paper_bn_only.py` ran the open_lth recipe (160 epochs, SGD with momentum, lr 0.1
# dropped 10x at epochs 80 and 120, batch 128, weight decay 1e-4) on a GPU, the four policies of
# one depth packed into a single network. Its records live in `results/bn_only/`; `complete`
# says whether a run finished all 160 epochs. The paper reports, for BN-only on CIFAR-10,
# about 48% (ResNet-14), 69.5% (ResNet-110) and 82% (ResNet-866).

# %%
records = wb.results.load_records("bn_only")
paper_bn_only = {"resnet14": 0.48, "resnet110": 0.695, "resnet866": 0.82}
if len(records):
    shown = records[["model", "policy", "epochs", "complete", "test_acc", "gamma_fraction_below", "disabled_fraction",
                     "device"]].copy()
    shown["paper_bn_only"] = [paper_bn_only.get(m) if p == "bn_only" else None
                              for m, p in zip(shown.model, shown.policy)]
    display(shown)
else:
    print("no paper-scale records yet: run scripts/paper_bn_only.py on a GPU")

# %% [markdown]
# ## The claims, as checks that can fail

# %%
trainable = table.groupby("depth").apply(lambda t: t.set_index("policy")["trainable"], include_groups=False)
assert (trainable["bn_only"] == trainable["random_per_channel"]).all()
assert (trainable["bn_only"] == trainable["random_anywhere"]).all()
print("equal budgets:", dict(zip(trainable.index, trainable["bn_only"])))

acc = table.pivot_table(index="depth", columns="policy", values="test_acc")
margin = acc["bn_only"] - acc[["random_per_channel", "random_anywhere"]].max(axis=1)
print(acc.round(3))
print("BN-only minus the better random control, per depth:", margin.round(3).to_dict())
gamma_bn = (g["bn_only"].abs() < 0.1).float().mean().item()
gamma_full = (g["full"].abs() < 0.1).float().mean().item()
print(f"|γ| < 0.1 in resnet{deepest}: BN-only {gamma_bn:.1%}, full {gamma_full:.1%}")
if CHECK_CLAIM:
    assert (acc["bn_only"] > 0.25).all(), "BN-only should be far above chance (10%)"
    assert (margin > 0.03).all(), f"BN-only should beat both random controls at every depth: {margin.to_dict()}"
    assert margin.mean() > 0.05, f"... by a wide margin on average: {margin.mean():.3f}"
    assert gamma_bn > gamma_full, "BN-only should drive more γ towards zero than full training"

# %%
if len(records):
    done = records[records.complete]
    for model, rows in done.groupby("model"):
        r = rows.set_index("policy")["test_acc"]
        if {"bn_only", "random_per_channel", "random_anywhere"} <= set(r.index):
            print(f"{model} (paper scale): BN-only {r['bn_only']:.1%}, controls {r['random_per_channel']:.1%} and "
                  f"{r['random_anywhere']:.1%}, full {r.get('full', float('nan')):.1%}")
            assert r["bn_only"] > max(r["random_per_channel"], r["random_anywhere"]) + 0.05


# %% [markdown]
# ## What to try next
#
# - Set `bn_init="open_lth"` in `wb.bn_only.compare` (γ drawn from U[0, 1]): does BN-only start better?
# - Compare `plain` networks (no skip connections) under BN-only.
# - Train with `k=4` random weights per channel: how many random weights match BN-only?

# %% [markdown]
# ## Exercises
#
# Write the function, run the cell: the check says what is right or wrong.

# %% [markdown]
# **1. The BN-only mask.** Write `bn_only_parameters(model)`: the set of parameter names that BN-only training updates (every BatchNorm's γ and β, shortcuts included; the output layer stays frozen as in the paper's headline setting). `model.named_modules()` and `isinstance(m, torch.nn.BatchNorm2d)` help.

# %%
def bn_only_parameters(model):
    raise NotImplementedError  # your code here


wb.exercises.check("bn_only_parameters", bn_only_parameters)
