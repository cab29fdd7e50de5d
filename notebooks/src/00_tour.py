# %% [markdown]
# # A tour of the ResNet Paper Workbench
#
# Every notebook in this workbench takes one paper about residual networks, states its
# claim, and makes the claim happen on real data. This tour shows the pieces they share:
# data as tensors, a registry of models with named places to look inside, one fast
# training loop, and a cache that makes re-running a notebook instant.
#
# The question of this tour is the one behind the whole field: **how good does a small
# residual network get on CIFAR-10 when you train it for a few minutes on a laptop?**
# He et al. ([arXiv 1512.03385](https://arxiv.org/abs/1512.03385)) report 91.25% for a
# ResNet-20 after 164 epochs; we will see how far a few epochs go.
#
# **Modes.** Set `WORKBENCH_MODE` before starting Jupyter (or pass `mode=` to `wb.setup`):
# `smoke` runs in seconds (it only checks that everything works), `laptop` takes a few
# minutes on a CPU, `paper` wants a GPU.

# %%
try:
    import workbench as wb
except ModuleNotFoundError as e:  # a kernel without the workbench: say what to install
    raise ModuleNotFoundError(f"'{e.name}' is not installed in this kernel's environment. From the repository run "
                              "`bash scripts/workbench.sh lab`, or in this kernel: %pip install -e <repository>") from None

info = wb.setup()

# %% tags=["parameters"]
MODEL = "resnet20"
EPOCHS = wb.by_mode(smoke=3, laptop=6, paper=30)
TRAIN_SUBSET = wb.by_mode(smoke=2500, laptop=None, paper=None)  # None: all 50,000 images
TEST_SUBSET = wb.by_mode(smoke=500, laptop=None, paper=None)
MIN_TEST_ACC = wb.by_mode(smoke=0.2, laptop=0.75, paper=0.9)    # the claim checked at the end
SEED = 0

# %% [markdown]
# ## The data
#
# `wb.load` returns the images as a `uint8` tensor `[N, 3, 32, 32]` in memory. It reads a
# local mirror when `WORKBENCH_DATA_DIR` points to one, and otherwise downloads
# `uoft-cs/cifar10` from the Hugging Face hub once; decoded tensors are cached.

# %%
train = wb.load("cifar10", "train", subset=TRAIN_SUBSET, seed=SEED)
test = wb.load("cifar10", "test", subset=TEST_SUBSET, seed=SEED)
print(train)
print(test)
wb.viz.image_grid(train.images[:16], train.labels[:16], train.classes, cols=8, title="CIFAR-10 training images")

# %% [markdown]
# ## The model
#
# `wb.create_model` builds any registered architecture. A CIFAR ResNet of depth 6n+2 has
# a stem, three stages of n basic blocks (16, 32 and 64 channels) and a linear
# classifier. Every block and stage is a named *hook point* where activations can be read.

# %%
print(wb.list_models())
model = wb.create_model(MODEL, num_classes=train.num_classes)
print(f"{MODEL}: {wb.models.count_parameters(model):,} parameters")
print("hook points:", wb.models.hook_points(model)[:8], "...")

# %% [markdown]
# ## Training
#
# `wb.train.train_model` builds the model with a seed and trains it with `wb.fit`, using
# the `laptop` recipe: SGD with Nesterov momentum, a one-cycle learning rate, label
# smoothing, random crops and flips done on whole batches of tensors. The result (weights
# and history) is cached: run this cell again and it returns at once.

# %%
recipe = wb.train.recipe("laptop", epochs=EPOCHS)
print(recipe)
result = wb.train.train_model(MODEL, train, test, seed=SEED, live=True, **recipe)
result.history

# %%
result.plot()

# %% [markdown]
# ## Looking inside
#
# `wb.run_with_cache` runs the model and returns the activations at the named places.
# Here: how strongly each stage's channels respond, on average, to a batch of test
# images. The hooks are removed afterwards, whatever happens.

# %%
import plotly.express as px
import torch

x = test.normalize(test.images[:256]).to(wb.device())
logits, cache = wb.run_with_cache(result.model.eval(), x, ["stem", "layer1", "layer2", "layer3"])
for name, act in cache.items():
    print(f"{name:7s} {tuple(act.shape)}  mean activation {act.mean():.3f}  zero fraction {(act == 0).float().mean():.2f}")
px.bar(x=list(cache), y=[(a == 0).float().mean().item() for a in cache.values()],
       labels={"x": "hook point", "y": "fraction of zero activations"}, title="Sparsity after each ReLU stage")

# %%
pred = logits.argmax(1).cpu()
wb.viz.image_grid(test.images[:16], test.labels[:16], test.classes, predictions=pred[:16],
                  title="test images: label → prediction")

# %% [markdown]
# ### Explore: what each stage sees
#
# Pick a test image and a stage: the stage's activations averaged over channels, and the
# network's class probabilities for that image.

# %%
from plotly.subplots import make_subplots
import plotly.graph_objects as go

probs = logits.detach().softmax(1).cpu()


def render_stage(image, stage):
    fig = make_subplots(rows=1, cols=3, subplot_titles=("image", f"{stage}: mean over channels", "probabilities"),
                        column_widths=[0.25, 0.35, 0.4])
    fig.add_trace(go.Image(z=wb.viz.to_rgb_array(test.images[image:image + 1])[0]), row=1, col=1)
    fig.add_trace(go.Heatmap(z=cache[stage][image].detach().mean(0).cpu().numpy(), colorscale="Viridis", showscale=False),
                  row=1, col=2)
    fig.add_trace(go.Bar(x=test.classes, y=probs[image].numpy()), row=1, col=3)
    fig.update_yaxes(autorange="reversed", row=1, col=2)
    fig.update_layout(height=330, showlegend=False, yaxis3_range=[0, 1],
                      title=f"label: {test.classes[int(test.labels[image])]}, prediction: "
                            f"{test.classes[int(pred[image])]}")
    return fig


wb.viz.explorer(render_stage, image=list(range(16)), stage=list(cache))

# %% [markdown]
# ## The claim, as a check that can fail

# %%
final = wb.evaluate(result.model, test)
print(f"test accuracy {final['acc']:.2%} after {EPOCHS} epochs (mode {info['mode']}); "
      f"He et al. report 91.25% after 164 epochs")
assert final["acc"] >= MIN_TEST_ACC, f"expected at least {MIN_TEST_ACC:.0%}, got {final['acc']:.2%}"


# %% [markdown]
# ## What to try next
#
# - Change `MODEL` to `"plain20"` (the same network without skip connections) or
#   `"resnet56"` and compare the curves.
# - Set `EPOCHS` higher: where does the accuracy saturate on your machine?
# - Open the paper notebooks listed in `notebooks/catalog.yml`.

# %% [markdown]
# ## Exercises
#
# Write the function, run the cell: the check says what is right or wrong.

# %% [markdown]
# **1. Blocks per stage.** A CIFAR ResNet of depth 6n + 2 has a stem convolution, three stages of n blocks with two convolutions each, and an output layer. Write `blocks_per_stage(depth)`; raise `ValueError` for a depth that is not 6n + 2 with n >= 1.

# %%
def blocks_per_stage(depth):
    raise NotImplementedError  # your code here


wb.exercises.check("blocks_per_stage", blocks_per_stage)
