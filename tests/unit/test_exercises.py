"""Every exercise check passes the reference solution and explains a known-wrong answer."""
import math

import pytest
import torch

import workbench as wb
from workbench import exercises as ex
from workbench.exercises import _solutions as ref


def _uncentered_cka(x, y):
    return float((y.T @ x).pow(2).sum() / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)))



def _erk_without_saturation(shapes, sparsity):
    raw = {n: sum(t) / math.prod(t) for n, t in shapes.items()}
    eps = (1 - sparsity) * sum(math.prod(t) for t in shapes.values()) / sum(raw[n] * math.prod(t) for n, t in shapes.items())
    return {n: eps * r for n, r in raw.items()}


def _targets_without_crossing(heat, r):
    share = heat / heat.sum(1, keepdim=True)
    ranked, order = torch.sort(share, dim=1, descending=True, stable=True)
    return torch.zeros_like(share).scatter(1, order, (torch.cumsum(ranked, 1) <= r + 1e-9).to(share.dtype))


def _share_with_dc(image, cutoff):  # a typical mistake: the image's mean (frequency zero) in the denominator
    power = torch.fft.fft2(image.double()).abs() ** 2
    h, w = image.shape
    radius = torch.sqrt(torch.fft.fftfreq(h, 1 / h)[:, None] ** 2 + torch.fft.fftfreq(w, 1 / w)[None, :] ** 2).round()
    keep = radius <= min(h, w) // 2
    return float(power[keep & (radius >= cutoff)].sum() / power[keep].sum())


WRONG = {
    "ensemble_soft_target": (lambda t, temp: torch.softmax(t.mean(2) / temp, 1), "averaged logits"),
    "confident_entropy": (lambda lg, m: float((lambda h: h.mean())(-(lg.softmax(1) * lg.log_softmax(1)).sum(1))),
                          "every row"),
    "ibn_normalize": (lambda x, n: torch.nn.functional.instance_norm(x, eps=1e-5), "last channels"),
    "cuda_blur": (lambda im, lab, f: torch.cat([torch.nn.functional.conv2d(
        im[i:i + 1].double(), f[lab[i]].double().unsqueeze(1), padding=f.shape[-1] // 2, groups=im.shape[1])
        for i in range(len(im))]), "not rescaled"),
    "sensitivity_at_specificity": (lambda s, y, spec: float((s[y == 1] > torch.quantile(s[y == 0].double(), spec))
                                                            .double().mean()), "specificity is at least spec"),
    "step_macs": (lambda m, t: 3 * sum(m), "3x the forward pass"),
    "annealed_std": (lambda step, eta, gamma=0.55: eta / (1 + step) ** gamma, "the variance"),
    "linear_drop_rates": (lambda n, p: [p * i / n for i in range(n, 0, -1)], "reversed"),
    "gradient_ratio": (lambda a, k: a * k, "not a \\* k"),
    "caption_loss": (lambda lg, tok: torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]),
                                                                        tok[:, 1:].reshape(-1)), "padding"),
    "segment_means": (lambda f, s: torch.stack([c.mean(1) for c in f.chunk(s, 1)], 1), r"torch\.chunk"),
    "magnitude_mask": (lambda w, d: (lambda k, m: m.scatter(0, w.flatten().topk(k).indices, 1.0).view(w.shape))(
        round(d * w.numel()), torch.zeros(w.numel())), "not by value"),
    "clip_loss": (lambda i, t, s: torch.nn.functional.cross_entropy(torch.tensor(float(s)).exp() * i @ t.T,
                                                                    torch.arange(len(i))), "one direction only"),
    "high_frequency_share": (lambda im, c: _share_with_dc(im, c), "frequency zero"),
    "skff_fuse": (lambda streams, scores: (torch.softmax(scores, 2)[..., None, None] * streams).sum(0),
                  "across the streams"),
    "linear_scaled_lr": (lambda base_lr, base_batch, batch, warmup_steps, step: base_lr * batch / base_batch * (
        min(1.0, step / warmup_steps) if warmup_steps else 1.0), "0-based"),
    "kernel_recursion_relu": (lambda k1, c_w, c_b, depth: list(__import__("itertools").accumulate(
        range(depth - 1), lambda k, _: c_b + c_w * k, initial=k1)), "K / 2, not K"),
    "critical_cw": (lambda activation, xi=0.0, gamma=1.0: {"relu": 2.0, "tanh": 1.0, "linear": 1.0}[activation],
                    r"1 - xi\^2"),
    "stroke_width": (lambda m, s: m if s == 0 else torch.nn.functional.max_pool2d(m, 3, 1, 1) if s > 0
                     else -torch.nn.functional.max_pool2d(-m, 3, 1, 1), "times"),
    "sparse_topk_target": (lambda p, k: torch.zeros_like(p).scatter(1, p.topk(k, 1).indices, p.topk(k, 1).values),
                           "renormalise"),
    "match_units": (lambda a, b: (lambda za, zb: (za.T @ zb).argmax(1).tolist())(
        (a - a.mean(0)) / a.std(0), (b - b.mean(0)) / b.std(0)), "linear assignment"),
    "least_squares_stitch": (lambda x, y: (lambda s: (s[:x.shape[1]].T, s[x.shape[1]]))(torch.linalg.lstsq(
        torch.cat([x.reshape(-1, x.shape[1]).double(), torch.ones(x.numel() // x.shape[1], 1, dtype=torch.float64)], 1),
        y.reshape(-1, y.shape[1]).double()).solution), "permute"),
    "backward_transfer": (lambda R: sum(R[-1][j] - R[j][j] for j in range(len(R) - 1)) / len(R), "divided by"),
    "roc_auc": (lambda s, y: float((s[y == 1][:, None] > s[y == 0][None, :]).double().mean()), "counts one half"),
    "grassmann_logits": (lambda x, s, sc: sc * torch.einsum("bd,cdk->bck", x, s).norm(dim=2), "not normalized"),
    "selfie_loss": (lambda q, h: float(torch.nn.functional.cross_entropy(
        q.reshape(-1, q.shape[2]) @ h.reshape(-1, h.shape[2]).T, torch.arange(q.shape[0] * q.shape[1]))),
                    "same image only"),
    "adaptive_search": (lambda zd, zq, ds, dr, k: (torch.nn.functional.normalize(zq[:, :dr], dim=1)
                                                   @ torch.nn.functional.normalize(zd[:, :dr], dim=1).T).argmax(1),
                        "rerank only the shortlist"),
    "sparse_batch_norm": (lambda x, v: torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-5) * v,
                          "include the hidden positions"),
    "nt_xent_loss": (lambda z1, z2, t: float(torch.nn.functional.cross_entropy(
        (lambda z: z @ z.T / t)(torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)),
        torch.cat([torch.arange(len(z1), 2 * len(z1)), torch.arange(len(z1))]))), "similarity with itself"),
    "symmetric_quantize": (lambda x, b: torch.clamp(torch.round(x / (x.abs().max() / 2 ** (b - 1))), -2 ** (b - 1),
                                                    2 ** (b - 1) - 1) * (x.abs().max() / 2 ** (b - 1)),
                           "drops -2\\^\\(bits-1\\)"),
    "ternary_quantize": (lambda w, r: torch.round(w / (w.abs().mean() if r == "absmean" else w.abs().median())) *
                         (w.abs().mean() if r == "absmean" else w.abs().median()), "clamp the rounded"),
    "pareto_mask": (lambda c, a: [not any(c2 <= x and a2 >= y for j, (c2, a2) in enumerate(zip(c, a)) if j != i)
                                  for i, (x, y) in enumerate(zip(c, a))], "strictly better"),
    "blocks_per_stage": (lambda d: (d - 2) // 2, "two and there are three stages"),
    "e2m1_round": (lambda x: torch.sign(x) * torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=x.dtype)[
                       (x.abs().clamp(max=6).unsqueeze(-1) - torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
                                                                          dtype=x.dtype)).abs().argmin(-1)],
                   "round half to even"),
    "hypervolume": (lambda pts, r: sum((r - c) * a for c, a in pts if c < r), "the sum of the rectangles"),
    "erk_densities": (lambda shapes, s: _erk_without_saturation(shapes, s), "above 1"),
    "best_levels": (lambda curves, need: [min(range(len(o)), key=lambda k: o[k][1]) for o in curves.values()],
                    "prunes only"),
    "ap_drop": (lambda w, r, k: torch.ones(w.numel(), dtype=w.dtype).index_fill_(
                    0, torch.sort((w - r).abs().flatten(), stable=True).indices[:k], 0.0).view(w.shape),
                "only negative weights"),
    "mass_targets": (_targets_without_crossing, "keep the channel that crosses r"),
    "reinforce_loss": (lambda lp, r, b: -(torch.as_tensor(r, dtype=lp.dtype) * lp).mean(), "baseline is missing"),
    "inverted_residual_macs": (lambda cin, cout, h, w, t, s: (0 if t == 1 else h * w * cin * cin * t)
                               + h * w * cin * t * (9 + cout), "the stride applies at the depthwise layer"),
    "plain_params": (lambda layout, cin, k: wb.exercises.solution("plain_params")(layout, cin, k) - sum(
        2 * (i[0] if isinstance(i, tuple) else i) for i in layout if i != "P"), "two parameters per channel"),
    "scaled_residual": (lambda x, b, s: x + torch.relu(s * b), "not on the branch alone"),
    "hyperzzw_conv": (lambda z, k, c: torch.nn.functional.conv2d(z, k.unsqueeze(1), padding=k.shape[-1] // 2,
                                                                 groups=z.shape[1]), "context is ignored"),
    "mobius_add": (lambda x, y, c: x + y, "Euclidean addition"),
    "equal_score_retention": (lambda v, g: ref.equal_score_retention(v, g) * v.shape[1] * v.shape[2], "1/N"),
    "manhattan_decay_matrix": (lambda h, w, g: g ** (torch.arange(h * w)[:, None] - torch.arange(h * w)[None, :]).abs()
                               .double(), "1-D decay"),
    "kendall_tau": (lambda a, b: sum((a[i] - a[j]) * (b[i] - b[j]) > 0 for i in range(len(a))
                                     for j in range(i + 1, len(a))) / (len(a) * (len(a) - 1) / 2),
                    "subtract the discordant"),
    "vit_block_macs": (lambda t, w, r: t * (4 * w * w + 2 * w * int(w * r)), "the linear maps only"),
    "halo_window": (lambda y, x, h, w, b, hl: (max(0, y - hl), min(h, y + hl + 1), max(0, x - hl), min(w, x + hl + 1)),
                    "centred on the query pixel"),
    "interpolate_pos_embed": (lambda pos, h, w: torch.nn.functional.interpolate(
        pos.reshape(1, pos.shape[1], math.isqrt(pos.shape[0]), math.isqrt(pos.shape[0])), size=(h, w),
        mode="bicubic", align_corners=False).reshape(pos.shape[1], h * w).T, "transpose first"),
    "best_allocation": (lambda loss, size, budget: [min(range(len(r)), key=r.__getitem__) for r in loss],
                        "budget ties the layers"),
    "bn_only_parameters": (lambda m: ref.bn_only_parameters(m) | {"fc.weight", "fc.bias"}, "output layer"),
    "linear_cka": (_uncentered_cka, "center each feature"),
    "guide_layer_mapping": (lambda t, g: [min(t - 1, (i + 1) * t // g) for i in range(g)], "expected"),
    "real_accuracy": (lambda p, s: sum(a in b for a, b in zip(p, s)) / len(p), "empty set are left out"),
    "composition_accuracy": (lambda a, s: sum(v * a[k] for k, v in s.items() if k in a), "largest size present"),
    "filter_normalize": (lambda d, w: d * (w.norm() / d.norm()), "whole tensor"),
    "hutchinson_trace": (lambda mv, zs: sum(float(z @ mv(z)) for z in zs), "summed over the probes"),
    "predict_by_description": (lambda sims: torch.stack([s.sum(1) for s in sims], 1).argmax(1), "summed"),
    "edge_mask": (lambda images, quantile: (lambda m: m > torch.quantile(m.flatten(), quantile))(
        torch.stack(torch.gradient(images.float().mean(1), dim=(1, 2))).pow(2).sum(0).sqrt()), "each image's own"),
    "receptive_field": (lambda layers: __import__("functools").reduce(
        lambda a, ks: (a[0] + (ks[0] - 1) * a[1] * ks[1], a[1] * ks[1]), layers, (1, 1))[0], "BEFORE it"),
    "residual_codes": (lambda x, books: torch.stack([torch.cdist(x, b).argmin(1) for b in books], 1),
                       "residual"),
    "match_best": (lambda i, t, l: torch.einsum("nd,cmd->ncm", i, t).flatten(1).argmax(1) % t.shape[1], "own class"),
    "blind_answers": (lambda tq, ta, teq, order: [max(set(ta), key=ta.count)] * len(teq), "same question only"),
    "td_layer_norm": (lambda x, t, T, gamma, beta, a, b: (lambda w: (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        x.var(-1, keepdim=True) + 1e-5) * (w * gamma[0] + (1 - w) * gamma[1]) + (w * beta[0] + (1 - w) * beta[1]))(
        torch.sigmoid(a * t.float() / T + b)[:, None, None]), "biased variance"),
    "hardest_negative_loss": (lambda i, t, m: wb.vl.hinge_sum(i, t, m), "sum of violations"),
    "vild_region_probs": (lambda r, t, b, T: (torch.cat([b[None], t]) @ r.T).T.softmax(1), "temperature"),
}


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_reference_passes(name, capsys):
    assert ex.passed(name, ex.solution(name))
    ex.check(name, ex.solution(name))
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_known_wrong_answer_is_explained(name, capsys):
    wrong, explanation = WRONG[name]
    assert not ex.passed(name, wrong)
    ex.check(name, wrong)
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {name}:")
    assert __import__("re").search(explanation, out), out


def test_unfinished_and_crashing_answers(capsys):
    def stub(depth):
        raise NotImplementedError

    assert not ex.passed("blocks_per_stage", stub, verbose=True)
    assert "not implemented yet" in capsys.readouterr().out
    assert not ex.passed("blocks_per_stage", lambda d: 1 / 0, verbose=True)
    assert "ZeroDivisionError" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown exercise"):
        ex.check("nope", stub)


def test_every_exercise_belongs_to_a_catalogued_notebook():
    notebooks = {e["notebook"] for e in wb.catalog.load_catalog()}
    for e in ex.EXERCISES.values():
        assert e.notebook in notebooks, e.name
    for nb in notebooks:
        assert 1 <= len(ex.for_notebook(nb)) <= 3, nb
