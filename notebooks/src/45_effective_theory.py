# %% [markdown]
# # Effective theory at initialization: criticality, and depth over width
#
# Daniel A. Roberts, Sho Yaida & Boris Hanin, *The Principles of Deep Learning Theory*, Cambridge
# University Press 2022 ([arXiv 2106.10165](https://arxiv.org/abs/2106.10165)).
#
# **The question.** A freshly initialized network is a random function: every draw of the weights gives
# another one. What does that distribution look like, layer by layer, and which initializations let a
# signal pass through many layers without dying out or blowing up? The book answers with an *effective
# theory*: at infinite width every preactivation is Gaussian and its variance (the *kernel* `K^l`) obeys a
# one-line recursion from layer to layer; at finite width the distribution is *nearly* Gaussian, and the
# deviation is controlled by the depth-to-width ratio `L / n`.
#
# **The idea.** For an MLP with weights `N(0, C_W / fan_in)` and biases `N(0, C_b)`, the kernel follows
# `K^{l+1} = C_b + C_W <sigma(z)^2>_{K^l}`, the mean taken over `z ~ N(0, K^l)`. For ReLU that is
# `C_b + C_W K^l / 2`: with `C_W = 2`, `C_b = 0` (*criticality*) the variance is preserved across depth;
# otherwise it grows or shrinks by `C_W / 2` per layer, exponentially. For tanh, criticality is
# `C_W = 1`, `C_b = 0`, where the kernel decays only like a power, `1 / (2 l)`. At finite width the
# fourth cumulant appears: the excess kurtosis of one preactivation grows like `L / n` (for ReLU, exactly
# `3 ((1 + 5/n)^(l-1) - 1) ~ 15 (l - 1) / n`, derived in `wb.dynamics.theory`). A residual connection
# `z^{l+1} = xi z^l + gamma (W sigma(z^l) + b)` changes the recursion to
# `K^{l+1} = xi^2 K^l + gamma^2 (C_b + C_W <sigma^2>)`, which moves the critical line: for ReLU
# `xi^2 + gamma^2 C_W / 2 = 1`.
#
# **What is checked here.** No training: thousands of networks are drawn at once (weights stacked
# `[draws, out, in]`, one batched product per layer, `wb.dynamics.theory.measure`) and their
# preactivations measured at one real input, a Fashion-MNIST image. Beside every measurement the book's
# closed form: the kernel recursion, criticality, the finite-width kurtosis, the residual critical line.
# Every check compares a measurement with its formula within 4 standard errors, tolerances fixed before the
# laptop run. The claim shows at laptop scale (**claim shown**).

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

info = wb.setup()
theory = wb.dynamics.theory
DEVICE = wb.device()  # the networks are drawn here (a GPU in paper mode)

# %% tags=["parameters"]
DRAWS = wb.by_mode(smoke=100, laptop=1_000, paper=10_000)  # independent networks per configuration
DEPTH = wb.by_mode(smoke=6, laptop=20, paper=50)  # hidden layers of the variance experiment
WIDTH = wb.by_mode(smoke=16, laptop=64, paper=256)
CW_RELU = [1.6, 2.0, 2.4]  # below, at and above ReLU's critical C_W = 2
CW_TANH = [0.8, 1.0, 1.2]  # tanh: critical C_W = 1
TANH_WIDTH = wb.by_mode(smoke=32, laptop=128, paper=512)
KURT_WIDTHS = wb.by_mode(smoke=[8, 16], laptop=[16, 32, 64], paper=[32, 64, 128, 256])  # each: L = n / 2 layers
KURT_DRAWS = wb.by_mode(smoke=100, laptop=2_000, paper=20_000)
KURT_CHECKED = 0.25  # the kurtosis checks use layers with (l - 1) / n up to this (heavier tails beyond)
NTK_WIDTHS = wb.by_mode(smoke=[8], laptop=[16, 32, 64], paper=[32, 64, 128])
NTK_DEPTHS = wb.by_mode(smoke=[2, 4], laptop=[2, 4, 8, 16], paper=[2, 4, 8, 16, 32])
NTK_DRAWS = wb.by_mode(smoke=50, laptop=500, paper=4_000)
XIS = wb.by_mode(smoke=[0.0, 0.6], laptop=[0.0, 0.2, 0.4, 0.6, 0.8, 0.9], paper=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5,
                                                                                  0.6, 0.7, 0.8, 0.9, 0.95])
RES_CWS = wb.by_mode(smoke=[1.0, 2.0], laptop=[0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3.2, 3.6],
                     paper=[float(c) for c in np.linspace(0.2, 3.8, 19)])
RES_DEPTH = wb.by_mode(smoke=6, laptop=12, paper=30)
RES_WIDTH = wb.by_mode(smoke=16, laptop=32, paper=128)
RES_DRAWS = wb.by_mode(smoke=50, laptop=300, paper=2_000)
XI_OFF = 0.6  # the skip strength at which the plain MLP's C_W = 2 is checked to explode
TOL_SE = 4  # every check: within (or beyond) this many standard errors, fixed before the laptop run
SEED = 0
CHECK_CLAIM = wb.by_mode(smoke=False, laptop=True, paper=True)

# %% [markdown]
# ## The input: one real image
#
# A single Fashion-MNIST test image, flattened to 784 numbers and normalized with the dataset's mean and
# standard deviation. For one input only its mean square `q0 = |x|^2 / n_0` matters to the statistics
# (the first layer's `W x` has i.i.d. entries of variance `C_W q0`), so any image would do; the first
# layer's kernel is `K^1 = C_b + C_W q0`.

# %%
images = wb.load("fashion_mnist", "test", subset=10, seed=0)
img = images.images[0].float() / 255
x = ((img - images.mean[0]) / images.std[0]).flatten()
q0 = float((x * x).mean())
print(f"input: a {images.classes[int(images.labels[0])]!r}, {x.numel()} pixels, q0 = |x|^2 / n0 = {q0:.3f}")
px.imshow(img[0].numpy(), color_continuous_scale="gray", title="the input", width=260, height=280).update_layout(
    coloraxis_showscale=False, margin=dict(l=10, r=10, t=40, b=10))

# %% [markdown]
# ## 1. Criticality: the variance across depth
#
# `DRAWS` ReLU MLPs of `DEPTH` hidden layers of `WIDTH` neurons (and a scalar output) at each `C_W`, with
# `C_b = 0`. `K^l` is the mean of `z^2` over the layer's neurons and the draws; its standard error comes
# from the spread over draws (neurons of one network are not independent). For ReLU the recursion is exact
# at any width (`z^l` is symmetric, so `E[relu(z)^2] = E[z^2] / 2`): the lines are the book's
# `K^{l+1} = C_W K^l / 2`, with nothing fitted.

# %%
relu = {c: theory.measure(x, DEPTH, WIDTH, "relu", c_w=c, draws=DRAWS, device=DEVICE, seed=SEED + i)
        for i, c in enumerate(CW_RELU)}
rows = []
for c, s in relu.items():
    t = s.table()
    rows.append(t.assign(c_w=c, activation="relu"))
relu_table = pd.concat(rows)
fig = go.Figure()
for c, t in relu_table.groupby("c_w"):
    name = f"C_W = {c}" + (" (critical)" if c == 2.0 else "")
    fig.add_trace(go.Scatter(x=t.layer, y=t.K, error_y=dict(array=t.K_se), mode="markers", name=name + ", measured"))
    fig.add_trace(go.Scatter(x=t.layer, y=t.K_theory, mode="lines", name=name + ", K^{l+1} = C_W K^l / 2",
                             line=dict(dash="dot")))
fig.update_layout(title=f"ReLU MLPs, width {WIDTH}, {DRAWS} draws each: the preactivation variance K^l",
                  xaxis_title="layer l (the last is the output)", yaxis_title="K^l", yaxis_type="log")

# %%
growth = pd.DataFrame([dict(c_w=c, measured=s.log_growth()[0], se=s.log_growth()[1], theory=np.log(c / 2))
                       for c, s in relu.items()])
growth["z"] = (growth.measured - growth.theory) / growth.se
growth["K_first"] = [s.K[0] for s in relu.values()]
growth["K_last_hidden"] = [s.K[-2] for s in relu.values()]
growth["K_last_hidden_theory"] = [s.table().K_theory.iloc[-2] for s in relu.values()]
growth.round(4)

# %% [markdown]
# `measured`: the growth of `log K` per layer from the first to the last hidden layer (with its standard
# error); `theory`: `log(C_W / 2)`. Twenty layers at 20% off criticality already change the variance by a
# factor of `1.2^20 = 38` or `0.8^20 = 0.012`.
#
# ### tanh: criticality is a power law
#
# For tanh the kernel at `C_W = 1` decays towards the fixed point `K* = 0`, slowly: `K^l ~ 1 / (2 l)`. Below
# it (`C_W = 0.8`) it vanishes exponentially; above it (`C_W = 1.2`) it settles at a nonzero fixed point.
# The recursion's Gaussian mean `<tanh(z)^2>_K` is computed by Gauss-Hermite quadrature. Unlike ReLU, the
# infinite-width recursion is not exact at finite width: the measured kernel sits below it by a correction
# of order `L / n` (width `TANH_WIDTH` here).

# %%
tanh = {c: theory.measure(x, DEPTH, TANH_WIDTH, "tanh", c_w=c, draws=DRAWS, device=DEVICE, seed=SEED + 10 + i)
        for i, c in enumerate(CW_TANH)}
fig = go.Figure()
for c, s in tanh.items():
    t = s.table().iloc[:-1]  # hidden layers
    fig.add_trace(go.Scatter(x=t.layer, y=t.K, error_y=dict(array=t.K_se), mode="markers", name=f"C_W = {c}, measured"))
    fig.add_trace(go.Scatter(x=t.layer, y=t.K_theory, mode="lines", line=dict(dash="dot"),
                             name=f"C_W = {c}, recursion"))
ls = np.arange(1, DEPTH + 1)
fig.add_trace(go.Scatter(x=ls, y=1 / (2 * ls), mode="lines", line=dict(color="black", dash="dash"), name="1 / (2 l)"))
fig.update_layout(title=f"tanh MLPs, width {TANH_WIDTH}: the kernel at, below and above criticality",
                  xaxis_title="layer l", yaxis_title="K^l", xaxis_type="log", yaxis_type="log")

# %% [markdown]
# ## 2. The finite-width correction: excess kurtosis against depth over width
#
# At criticality (ReLU, `C_W = 2`), for each width `n` in `KURT_WIDTHS`, `KURT_DRAWS` networks of `n / 2`
# hidden layers. At layer `l` the excess kurtosis `E[z^4] / E[z^2]^2 - 3` of one preactivation across
# draws (estimated from all the layer's neurons, which share one distribution; standard error by the
# delta method over draws). The first layer is exactly Gaussian. The exact answer
# `3 ((1 + 5/n)^(l-1) - 1)` depends on `l` and `n` almost only through `(l - 1) / n`: plotted against it, the
# widths fall onto one curve, `3 (exp(5 (l-1)/n) - 1)`, whose slope at zero is the book's leading order,
# `15 (l - 1) / n`.

# %%
kurt = {n: theory.measure(x, n // 2, n, "relu", draws=KURT_DRAWS, device=DEVICE, seed=SEED + 20 + n)
        for n in KURT_WIDTHS}
rows = []
for n, s in kurt.items():
    t = s.table().iloc[:-1]  # hidden layers (the output is one neuron: shown in the table below)
    rows.append(t.assign(width=n, ratio=(t.layer - 1) / n))
kurt_table = pd.concat(rows)
fig = go.Figure()
for n, t in kurt_table.groupby("width"):
    fig.add_trace(go.Scatter(x=t.ratio, y=t.excess_kurtosis, error_y=dict(array=t.excess_kurtosis_se), mode="markers",
                             name=f"n = {n}, measured"))
    fig.add_trace(go.Scatter(x=t.ratio, y=t.excess_kurtosis_exact, mode="lines", line=dict(dash="dot", width=1),
                             name=f"n = {n}, exact 3((1+5/n)^(l-1) - 1)"))
r = np.linspace(0, kurt_table.ratio.max(), 50)
fig.add_trace(go.Scatter(x=r, y=3 * (np.exp(5 * r) - 1), mode="lines", line=dict(color="black"),
                         name="3 (exp(5 (l-1)/n) - 1)"))
fig.add_trace(go.Scatter(x=r, y=15 * r, mode="lines", line=dict(color="black", dash="dash"), name="15 (l-1)/n"))
fig.add_vline(x=KURT_CHECKED, line_dash="dot", annotation_text="checked up to here")
fig.update_layout(title=f"ReLU at criticality: excess kurtosis of one preactivation ({KURT_DRAWS} draws per width)",
                  xaxis_title="(l - 1) / n: depth over width", yaxis_title="excess kurtosis")

# %%
cols = ["width", "layer", "ratio", "excess_kurtosis", "excess_kurtosis_se", "excess_kurtosis_exact",
        "excess_kurtosis_leading"]
kurt_table[np.isclose(kurt_table.ratio, 1 / 8) | np.isclose(kurt_table.ratio, 1 / 4)][cols].round(3)

# %% [markdown]
# The same depth-to-width ratio gives nearly the same kurtosis in every width (`ratio` = `(l - 1) / n`);
# `excess_kurtosis_leading` is the book's leading order `15 (l - 1) / n`, which the exact value exceeds by
# the higher orders in `L / n`.

# %%
output_kurt = pd.DataFrame([dict(width=n, depth=n // 2, ratio=(n // 2) / n, measured=s.kurtosis[-1],
                                 se=s.kurtosis_se[-1], exact=theory.exact_kurtosis([n // 2 + 1], n)[0])
                            for n, s in kurt.items()])
output_kurt.round(3)

# %% [markdown]
# The network's output `f` (one neuron, `L = n / 2` layers below it) has the same law, `3 ((1 + 5/n)^L - 1)`:
# at `L / n = 1/2` it is far from Gaussian, and with heavy tails its kurtosis is hard to measure (the
# standard error itself is unreliable there), which is why the checks stop at `(l - 1) / n = 1/4`.
#
# ### The neural tangent kernel and its spread
#
# The empirical NTK of the output at `x`, `Theta = sum over biases (df/db)^2 + sum over weights
# (df/dW)^2 / fan_in` (the book's learning-rate factors set to 1), one value per draw. Its mean follows an
# exact recursion for ReLU, `Theta^{l+1} = 1 + K^l / 2 + Theta^l` at criticality; its spread across draws
# (relative standard deviation) is a finite-width effect, measured here only.

# %%
ntk_rows = []
for n in NTK_WIDTHS:
    for L in NTK_DEPTHS:
        s = theory.measure(x, L, n, "relu", draws=NTK_DRAWS, ntk=True, device=DEVICE, seed=SEED + 100 + 7 * L + n)
        ntk_rows.append(dict(width=n, depth=L, ratio=L / n, ntk_mean=s.ntk_mean, ntk_se=s.ntk_mean_se,
                             ntk_theory=theory.ntk_recursion(x, L, "relu")[-1], rel_std=s.ntk_rel_std))
ntk = pd.DataFrame(ntk_rows)
ntk["z"] = (ntk.ntk_mean - ntk.ntk_theory) / ntk.ntk_se
px.scatter(ntk, x="ratio", y="rel_std", color=ntk.width.astype(str), log_x=True, hover_data=["depth"],
           labels={"ratio": "L / n", "rel_std": "std / mean of the NTK across draws", "color": "width"},
           title="The NTK's spread across draws grows with depth over width (measured only)")

# %%
ntk.round(3)

# %% [markdown]
# ## 3. A residual connection moves the critical line
#
# ReLU residual MLPs, `z^{l+1} = xi z^l + gamma (W relu(z^l) + b)` with `gamma = 1`, `C_b = 0`, over a grid
# of skip strengths `xi` and `C_W`: the colour is the measured growth of `log K` per layer (red: explodes,
# blue: vanishes), the black line the closed-form critical line `xi^2 + C_W / 2 = 1`. At `xi = 0` it is the
# plain MLP's `C_W = 2`; a stronger skip needs a smaller `C_W`, and at `xi = 1` only `C_W = 0` is critical.

# %%
res = []
for i, xi in enumerate(XIS):
    for j, c in enumerate(RES_CWS):
        s = theory.measure(x, RES_DEPTH, RES_WIDTH, "relu", c_w=c, residual=(xi, 1.0), draws=RES_DRAWS,
                           device=DEVICE, seed=SEED + 1000 + 100 * i + j)
        g, se = s.log_growth()
        res.append(dict(xi=xi, c_w=c, growth=g, se=se, theory=np.log(xi ** 2 + c / 2)))
res = pd.DataFrame(res)
heat = res.pivot(index="c_w", columns="xi", values="growth")
lim = float(np.abs(heat.to_numpy()).max())
fig = go.Figure(go.Heatmap(z=heat.to_numpy(), x=heat.columns, y=heat.index, colorscale="RdBu_r", zmin=-lim,
                           zmax=lim, colorbar_title="log K growth<br>per layer"))
xs = np.linspace(0, 1, 50)
fig.add_trace(go.Scatter(x=xs, y=[theory.residual_critical_cw("relu", v) for v in xs], mode="lines",
                         line=dict(color="black", width=3), name="xi^2 + C_W / 2 = 1"))
fig.update_layout(title=f"Residual ReLU MLPs (depth {RES_DEPTH}, width {RES_WIDTH}, {RES_DRAWS} draws per cell)",
                  xaxis_title="xi (skip strength)", yaxis_title="C_W", yaxis_range=[min(RES_CWS) - 0.2,
                                                                                    max(RES_CWS) + 0.2])

# %% [markdown]
# On the line itself (one more set of networks per `xi`, at exactly the critical `C_W`), and at the plain
# MLP's critical `C_W = 2` with a skip of strength `XI_OFF`:

# %%
on_line = []
for i, xi in enumerate(XIS):
    c = theory.residual_critical_cw("relu", xi)
    s = theory.measure(x, RES_DEPTH, RES_WIDTH, "relu", c_w=c, residual=(xi, 1.0), draws=RES_DRAWS,
                       device=DEVICE, seed=SEED + 5000 + i)
    g, se = s.log_growth()
    on_line.append(dict(xi=xi, c_w=c, growth=g, se=se, z=g / se))
on_line = pd.DataFrame(on_line)
off = theory.measure(x, RES_DEPTH, RES_WIDTH, "relu", c_w=2.0, residual=(XI_OFF, 1.0), draws=RES_DRAWS,
                     device=DEVICE, seed=SEED + 6000)
off_growth, off_se = off.log_growth()
print(f"xi = {XI_OFF}, C_W = 2: growth {off_growth:.4f} ± {off_se:.4f} per layer "
      f"(closed form log(xi^2 + 1) = {np.log(XI_OFF ** 2 + 1):.4f})")
on_line.round(4)

# %% [markdown]
# ## Explore depth, width and C_W
#
# A ReLU MLP's kernel (left: measured, with the closed form as a line) and its excess kurtosis (right:
# measured, with the exact finite-width formula) for one choice of depth, width and `C_W` (300 draws).
# Move `c_w` off 2 to see the exponential; move `depth` up or `width` down to see the kurtosis grow with
# `L / n` while the variance stays put.

# %%
from plotly.subplots import make_subplots  # noqa: E402


def render(depth=10, width=32, c_w=2.0):
    s = theory.measure(x, depth, width, "relu", c_w=c_w, draws=300, device=DEVICE, seed=SEED + 9000)
    t = s.table()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("K^l", "excess kurtosis"))
    fig.add_trace(go.Scatter(x=t.layer, y=t.K, error_y=dict(array=t.K_se), mode="markers", name="K measured"), 1, 1)
    fig.add_trace(go.Scatter(x=t.layer, y=t.K_theory, mode="lines", name="K closed form"), 1, 1)
    fig.add_trace(go.Scatter(x=t.layer, y=t.excess_kurtosis, error_y=dict(array=t.excess_kurtosis_se), mode="markers",
                             name="kurtosis measured"), 1, 2)
    fig.add_trace(go.Scatter(x=t.layer, y=t.excess_kurtosis_exact, mode="lines", name="kurtosis exact"), 1, 2)
    fig.update_yaxes(type="log", row=1, col=1)
    return fig.update_layout(title=f"ReLU, depth {depth}, width {width}, C_W = {c_w}: L / n = {depth / width:.2f}",
                             xaxis_title="layer", xaxis2_title="layer")


wb.viz.explorer(render, depth=[10, 5, 20, 40], width=[32, 8, 16, 64, 128], c_w=[2.0, 1.6, 1.8, 1.9, 2.1, 2.2, 2.4])

# %% [markdown]
# ## The claim, as checks that can fail
#
# Laptop and paper mode, every tolerance `TOL_SE = 4` standard errors (fixed before the laptop run):
#
# 1. **Criticality preserves the variance.** ReLU at `C_W = 2`: the measured `K^l` within 4 standard errors
#    of the closed form at every layer, and its growth per layer within 4 standard errors of 0.
# 2. **Off criticality it explodes or vanishes exponentially.** ReLU at `C_W = 1.6` and `2.4`: the growth
#    of `log K` per layer within 4 standard errors of `log(C_W / 2)` and more than 4 standard errors from 0
#    (in the right direction); `K^l` within 4 standard errors of the closed form at every layer. tanh:
#    `C_W = 0.8` shrinks over the last half of the layers by more than 4 standard errors, and the kernel at
#    criticality follows the power law: `2 L K^L` between 0.8 and 1.3 at the last hidden layer (the
#    infinite-width recursion: `2 l K^l -> 1`, checked to 1% at `l = 1000`), and the measured kernel within 4
#    standard errors plus a relative `L / n` (the order of the finite-width correction) of the recursion.
# 3. **The finite-width correction scales like `L / n`.** At every hidden layer with `(l - 1) / n <= 1/4`,
#    in every width, the measured excess kurtosis within 4 standard errors of the exact
#    `3 ((1 + 5/n)^(l-1) - 1)`; at equal `(l - 1) / n` (1/8 and 1/4) every two widths' kurtoses differ by
#    at most the exact formula's own difference plus 4 standard errors of the difference, while at equal
#    depth `l - 1 = 4` the narrowest width's is more than 3 times the widest's (exact: 5.6). The NTK mean
#    within 4 standard errors of its exact recursion in every configuration. (The first laptop run checked
#    "within a factor 1.35 of each other" at equal `(l - 1) / n`, a bound that ignored the sampling error, and
#    failed at 1/4 with 1.39; see the reading below.)
# 4. **A residual connection moves the critical line.** On the closed-form line `xi^2 + C_W / 2 = 1`, every
#    `xi`'s growth within 4 standard errors of 0; at `xi = XI_OFF` the plain MLP's `C_W = 2` grows by more
#    than 4 standard errors, within 4 of `log(1 + xi^2)`.
#
# Smoke mode checks that everything runs and the closed forms' own identities.

# %%
crit = relu[2.0]
z_crit = np.abs(crit.K - crit.table().K_theory) / crit.K_se
print(f"1. ReLU C_W = 2: largest |K - theory| / se over layers {z_crit.max():.2f}; growth "
      f"{growth.set_index('c_w').loc[2.0, 'measured']:.5f} ± {growth.set_index('c_w').loc[2.0, 'se']:.5f} per layer")
print("2. ReLU growth per layer (measured, se, theory):",
      {c: (round(g.measured, 4), round(g.se, 4), round(g.theory, 4)) for c, g in growth.set_index("c_w").iterrows()})
t_crit = tanh[1.0].table().iloc[:-1]
L_t = DEPTH
tanh_2lk = 2 * L_t * t_crit.K.iloc[-1]
low = tanh[0.8]
tanh_shrink = low.log_growth(first=DEPTH // 2, last=DEPTH)
tanh_gap = {c: float((np.abs(s.K - s.table().K_theory) / (TOL_SE * s.K_se + s.table().K_theory * DEPTH / TANH_WIDTH)
                      ).max()) for c, s in tanh.items()}
print(f"   tanh: 2 L K^L = {tanh_2lk:.3f} at L = {L_t}; C_W = 0.8 growth over the last half "
      f"{tanh_shrink[0]:.4f} ± {tanh_shrink[1]:.4f}; largest gap to the recursion in units of the allowance "
      f"{ {c: round(v, 2) for c, v in tanh_gap.items()} }")
checked = kurt_table[kurt_table.ratio <= KURT_CHECKED]
z_kurt = (checked.excess_kurtosis - checked.excess_kurtosis_exact).abs() / checked.excess_kurtosis_se
by_ratio = {r: kurt_table[np.isclose(kurt_table.ratio, r)] for r in (1 / 8, 1 / 4)}
spread_at_ratio = {r: round(float(v.excess_kurtosis.max() / v.excess_kurtosis.min()), 3) for r, v in by_ratio.items()}
pair_z = []  # every two widths at equal (l-1)/n: |measured difference - exact difference| / se of the difference
for r, v in by_ratio.items():
    v = v.reset_index(drop=True)
    for a in range(len(v)):
        for b in range(a + 1, len(v)):
            d = ((v.excess_kurtosis[a] - v.excess_kurtosis[b])
                 - (v.excess_kurtosis_exact[a] - v.excess_kurtosis_exact[b]))
            pair_z.append(abs(d) / np.hypot(v.excess_kurtosis_se[a], v.excess_kurtosis_se[b]))
at_depth = kurt_table[kurt_table.layer == 5].set_index("width").excess_kurtosis
depth_ratio = float(at_depth.loc[min(KURT_WIDTHS)] / at_depth.loc[max(KURT_WIDTHS)]) if len(at_depth) > 1 else np.nan
print(f"3. kurtosis vs exact, largest |gap| / se over {len(checked)} layers: {z_kurt.max():.2f}; "
      f"max/min across widths at equal (l-1)/n: {spread_at_ratio} (largest pairwise |gap - exact gap| / se "
      f"{max(pair_z, default=np.nan):.2f}); at l - 1 = 4, narrowest / widest: {depth_ratio:.2f}; "
      f"NTK mean, largest |z| {ntk.z.abs().max():.2f}")
print(f"4. on the critical line, largest |growth| / se: {on_line.z.abs().max():.2f}; xi = {XI_OFF}, C_W = 2: "
      f"{off_growth / off_se:.1f} standard errors above 0")
# the closed forms' identities (every mode)
assert np.allclose(theory.kernel_recursion(q0, 10, "relu"), 2 * q0)
assert abs(2 * 1000 * theory.kernel_recursion(1.0, 1000, "tanh")[999] - 1) < 0.01
assert np.isclose(theory.exact_kurtosis([5], 16)[0], 3 * ((1 + 5 / 16) ** 4 - 1))
assert all(np.isclose(xi ** 2 + theory.residual_critical_cw("relu", xi) / 2, 1) for xi in XIS)
if CHECK_CLAIM:
    assert z_crit.max() <= TOL_SE, f"ReLU at criticality should match the closed form: {z_crit.max():.2f} se"
    g = growth.set_index("c_w")
    assert abs(g.loc[2.0, "measured"]) <= TOL_SE * g.loc[2.0, "se"], "ReLU at criticality should preserve K"
    for c in (1.6, 2.4):
        assert abs(g.loc[c, "z"]) <= TOL_SE, f"C_W = {c}: the growth should be log(C_W / 2): {g.loc[c].to_dict()}"
        assert np.sign(g.loc[c, "measured"]) == np.sign(c - 2) and abs(g.loc[c, "measured"]) > TOL_SE * g.loc[c, "se"]
        s = relu[c]
        assert (np.abs(s.K - s.table().K_theory) <= TOL_SE * s.K_se).all(), f"C_W = {c}: K off the closed form"
    assert tanh_shrink[0] < -TOL_SE * tanh_shrink[1], f"tanh at C_W = 0.8 should vanish: {tanh_shrink}"
    assert 0.8 <= tanh_2lk <= 1.3, f"tanh at criticality: 2 L K^L should be near 1, got {tanh_2lk:.3f}"
    assert max(tanh_gap.values()) <= 1, f"tanh: the kernel off its recursion beyond the allowance: {tanh_gap}"
    assert z_kurt.max() <= TOL_SE, f"excess kurtosis off the exact formula: {z_kurt.max():.2f} se"
    assert max(pair_z) <= TOL_SE, f"kurtosis at equal L/n should agree across widths as the exact formula: {pair_z}"
    assert depth_ratio > 3, f"at equal depth the kurtosis should fall with width: {depth_ratio:.2f}"
    assert ntk.z.abs().max() <= TOL_SE, f"the NTK mean should follow its exact recursion: {ntk.z.abs().max():.2f} se"
    assert on_line.z.abs().max() <= TOL_SE, f"on the residual critical line K should be preserved: {on_line}"
    assert off_growth > TOL_SE * off_se and abs(off_growth - np.log(1 + XI_OFF ** 2)) <= TOL_SE * off_se, \
        f"xi = {XI_OFF}, C_W = 2 should explode like log(1 + xi^2): {off_growth:.4f} ± {off_se:.4f}"

# %% [markdown]
# **Reading the results.** In laptop mode (2026-12-07, 12 seconds on 2 cores from an empty cache; 1,000 draws per
# configuration, 2,000 for the kurtosis) the input is a Fashion-MNIST pullover with `q0 = 1.715`, so a ReLU
# network's first layer starts at `K^1 = 2 q0 = 3.43`. At criticality the measured kernel stays there: 3.45 in
# the first hidden layer, 3.50 in the twentieth (closed form 3.43 throughout), never more than 1.2 standard
# errors off, and its growth per layer is 0.0007 ± 0.0026. Twenty percent off criticality it runs away
# exponentially at exactly the book's rate: `log K` changes by -0.2201 ± 0.0033 per layer at `C_W = 1.6`
# (closed form `log 0.8 = -0.2231`) and by +0.1809 ± 0.0028 at `C_W = 2.4` (`log 1.2 = 0.1823`), so that after
# twenty layers the variance is 0.042 (closed form 0.040) or 128 (131) instead of 3.4.
#
# tanh at its criticality decays as a power law: `K^20 = 0.0271 ± 0.0003` at width 128 against the
# infinite-width recursion's 0.0278 and the asymptote `1 / (2 l) = 0.025`; `2 L K^L = 1.09` (the recursion:
# 1.11, slowly approaching 1). The measured tanh kernel sits 1-3% below the recursion in the deep layers, the
# finite-width correction the book computes at order `1 / n` (allowed for here as a relative `L / n`, 16%; the
# largest gap used 44% of that allowance). Below criticality (`C_W = 0.8`) it vanishes exponentially
# (-0.234 ± 0.001 per layer over the last ten layers); above it (`C_W = 1.2`) it settles at a nonzero fixed
# point (0.109; recursion 0.112).
#
# The finite-width correction follows depth over width. Over the 31 hidden layers checked (`(l - 1) / n <= 1/4`
# in widths 16, 32 and 64) the measured excess kurtosis is never more than 2.6 standard errors from the exact
# `3 ((1 + 5/n)^(l-1) - 1)`. At `(l - 1) / n = 1/8` the three widths give 2.22, 2.17 and 2.38 (exact 2.17, 2.36,
# 2.48), at 1/4 they give 5.52 ± 0.52, 5.50 ± 0.55 and 7.62 ± 1.15 (exact 5.90, 6.58, 7.00), while at the same
# depth `l - 1 = 4` width 16 has 5.3 times the kurtosis of width 64 (exact 5.6): the kurtosis is a function of
# `L / n`, not of `L`. The book's leading order `15 (l - 1) / n` (1.88 and 3.75 there) is the slope at zero;
# by `L / n = 1/4` the higher orders already add half as much again. The first laptop run asserted "within a
# factor 1.35 of each other" at equal `(l - 1) / n`, a bound drawn from the exact formula without the sampling
# error; it failed with 1.39 at 1/4, where the standard errors are 10-15%. The check was rewritten once, in the
# same 4-standard-error terms as all the others (largest pairwise gap beyond the exact one: 1.34 standard
# errors), with the same draws and seeds; the budget was not changed. At `L / n = 1/2` the output is far from
# Gaussian and heavy-tailed: width 64's estimate (388 ± 56 against an exact 30) is carried by a few extreme
# draws, and its standard error is no guide, which is why the checks stop at 1/4.
#
# The NTK's mean follows its exact ReLU recursion in all twelve configurations (largest gap 1.4 standard
# errors), while its spread across draws grows with `L / n` and, like the kurtosis, nearly collapses across
# widths at equal `L / n`: relative standard deviations 0.55, 0.59 and 0.65 at `L / n = 1/8`, 0.89, 0.89 and 0.86
# at 1/4, 1.38 and 1.54 at 1/2, and 4.3 at 1 (measured only; the book's `L / n` law for the NTK's fluctuations
# is not implemented here).
#
# The residual connection moves the critical line as the closed form says: on `xi^2 + C_W / 2 = 1` the measured
# growth is within 2.3 standard errors of zero for each of the six `xi` (0 to 0.9, `C_W` from 2 down to 0.38),
# and the heatmap changes colour along that line; with a skip of 0.6, the plain MLP's critical `C_W = 2` grows
# `log K` by 0.319 ± 0.009 per layer (closed form `log 1.36 = 0.308`), 37 standard errors from preserved.

# %% [markdown]
# ## The paper's numbers beside ours
#
# The book's results are formulas, not a table of benchmarks; the notebook measures each beside it.
#
# | | the book | here (laptop mode) |
# | --- | --- | --- |
# | ReLU criticality | `(C_b, C_W) = (0, 2)` (ch. 5) | growth of `log K` 0.0007 ± 0.0026 per layer at `C_W = 2`; -0.220 and +0.181 at 1.6 and 2.4 |
# | tanh criticality | `(C_b, C_W) = (0, 1)`, `K^l ~ 1 / (2 l)` (ch. 5, the `K* = 0` class) | `2 L K^L = 1.09` at `L = 20`, width 128 |
# | excess kurtosis, ReLU at criticality | leading order `15 (l - 1) / n` (ch. 4-5: the four-point vertex) | exact `3 ((1 + 5/n)^(l-1) - 1)` within 2.6 standard errors at 31 layers; 2.2-2.4 at `(l-1)/n = 1/8` |
# | excess kurtosis, tanh at criticality | `2 l / n` to leading order (ch. 5; see the book for the constant) | the leading-order recursion in `wb.dynamics.theory` gives it (unit tests); not measured here |
# | residual critical line (ReLU) | `xi^2 + gamma^2 C_W / 2 = 1` (the book's residual networks, ch. 11 style) | on the line, growth within 2.3 standard errors of 0 for 6 values of `xi` |
#
# The book has no experiment of fixed size to match; paper mode measures the same quantities with ten times
# the draws, width 256 (512 for tanh) and 50 layers, where the standard errors shrink by about three and the
# finite-width corrections by four.

# %% [markdown]
# ## What to try next
#
# - `KURT_WIDTHS = [128, 256]` with `KURT_DRAWS = 4_000`: the widths fall onto `3 (exp(5 L/n) - 1)` ever
#   closer as `n` grows, and the finite-`n` exact curves merge.
# - In the explorer, `c_w = 1.9` and `depth = 40`: 5% off criticality is invisible over 5 layers and a factor
#   of 8 over 40. How close to criticality must a 1,000-layer network be?
# - `theory.measure(x, 20, 64, "gelu", c_w=...)`: GELU and swish are measured only here; scan `C_W` for the
#   value at which the kernel is preserved, and compare with ReLU's 2.

# %% [markdown]
# ## Exercises
#
# Write the function, run the cell: the check says what is right or wrong.

# %% [markdown]
# **1. The variance recursion.** Write `kernel_recursion_relu(k1, c_w, c_b, depth)` returning the list
# `[K^1, ..., K^depth]` of a ReLU MLP's kernel from the first layer's `K^1 = k1`, with
# `K^{l+1} = c_b + c_w <relu(z)^2>` for `z ~ N(0, K^l)`.

# %%
def kernel_recursion_relu(k1, c_w, c_b, depth):
    raise NotImplementedError  # your code here


wb.exercises.check("kernel_recursion_relu", kernel_recursion_relu)

# %% [markdown]
# **2. The criticality condition.** Write `critical_cw(activation, xi=0.0, gamma=1.0)` returning the `C_W`
# (with `C_b = 0`) at which the kernel of a residual MLP `z^{l+1} = xi z^l + gamma (W sigma(z^l) + b)` neither
# grows nor shrinks near `K = 0`, for `activation` in `"relu"`, `"tanh"`, `"linear"` (`xi = 0`: the plain MLP).

# %%
def critical_cw(activation, xi=0.0, gamma=1.0):
    raise NotImplementedError  # your code here


wb.exercises.check("critical_cw", critical_cw)
