"""wb.prune against what a user would otherwise pick, ``torch.nn.utils.prune``:

1. Agreement: global magnitude pruning of a ResNet-20 at 90% sparsity by ``wb.prune.magnitude_masks``
   and by ``torch.nn.utils.prune.global_unstructured(L1Unstructured)``: the share of mask entries
   that differ (goal 0; ties between equal magnitudes could differ, there are none in a random init).
2. Cost of one masked training step (batches of 128 and of 8 images, SGD with momentum and weight
   decay, 90% sparse; at 128 the convolutions dominate both, at 8 the masking's own cost shows):
   ``wb.prune.Masked`` (weights zeroed once, the gradient masked after backward in one fused
   launch) against ``torch.nn.utils.prune`` (``weight = weight_orig * weight_mask`` recomputed in
   a forward pre-hook), timed round robin, best of ``--repeats``; ratio printed (goal >= 1: ours
   costs no more). Both keep the pruned weights at zero (checked).
3. Structured agreement: half the filters of every residual block's inner conv removed by L1 norm
   (Li et al. 2017), by ``wb.prune.compact(model, wb.prune.channel_masks(model, 0.5))`` and by
   Torch-Pruning's own pruner (``MetaPruner`` with ``MagnitudeImportance(p=1, group_reduction="first")``,
   the other layers ignored): the share of state-dict entries that differ and the largest output
   difference (goal 0 and 0), on a ResNet-20 with non-trivial BatchNorm statistics.

Run:  python benchmarks/bench_prune.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import torch.nn.utils.prune as tprune
from torch import nn

import workbench as wb
from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script
from workbench import prune as P


def torch_pruned(model: nn.Module, sparsity: float) -> nn.Module:
    m = copy.deepcopy(model)
    targets = [(mod, "weight") for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=sparsity)
    return m


def part1(model: nn.Module, sparsity: float) -> None:
    ours = P.magnitude_masks(model, sparsity)
    theirs = torch_pruned(model, sparsity)
    differ = total = 0
    for name, mod in theirs.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            differ += int((mod.weight_mask != ours[f"{name}.weight"]).sum())
            total += mod.weight_mask.numel()
    print(f"1. ResNet-20, global magnitude pruning at {sparsity:.0%}: {differ} of {total:,} mask entries differ "
          f"from torch.nn.utils.prune's (goal 0)")


def part2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sparsity: float, repeats: int) -> None:
    wd = 5e-4
    ours = copy.deepcopy(model).train()
    masks = P.magnitude_masks(ours, sparsity)
    alg = P.Masked(masks)
    state = SimpleNamespace(model=ours, trainable={}, no_decay=[], weight_decay=wd)
    alg.on_init(state)  # zeroes the weights
    groups = [{"params": [p for n, p in state.trainable.items() if n not in state.no_decay], "weight_decay": wd},
              {"params": [state.trainable[n] for n in state.no_decay], "weight_decay": 0.0}]
    opt_ours = torch.optim.SGD(groups, lr=0.01, momentum=0.9)

    theirs = torch_pruned(model, sparsity).train()
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9, weight_decay=wd)

    def step_ours():
        opt_ours.zero_grad(set_to_none=True)
        F.cross_entropy(ours(x), y).backward()
        alg.on_after_backward(state)
        opt_ours.step()

    def step_theirs():
        opt_theirs.zero_grad(set_to_none=True)
        F.cross_entropy(theirs(x), y).backward()
        opt_theirs.step()

    t = interleaved({"wb.prune.Masked": step_ours, "torch.nn.utils.prune": step_theirs}, repeats)
    zero_ours = all(bool((p.detach()[masks[n] == 0] == 0).all()) for n, p in P.prunable(ours).items())
    zero_theirs = all(bool((m.weight[m.weight_mask == 0] == 0).all()) for m in theirs.modules()
                      if isinstance(m, (nn.Conv2d, nn.Linear)))
    print(f"2. ResNet-20 at {sparsity:.0%} sparsity, one SGD step (momentum, weight decay) on {len(x)} images, "
          f"best of {repeats}, round robin:")
    for name, s in t.items():
        print(f"   {name:24s} {s * 1e3:8.1f} ms")
    print(f"   pruned weights still zero: wb.prune {zero_ours}, torch.nn.utils.prune {zero_theirs}")
    print(f"   torch.nn.utils.prune / wb.prune: {t['torch.nn.utils.prune'] / t['wb.prune.Masked']:.2f}x   (goal >= 1)")


def part3(model: nn.Module, x: torch.Tensor) -> None:
    import torch_pruning as tp

    model = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(2)
    for m in model.modules():  # BatchNorm statistics away from their identity defaults
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    ours = P.compact(model, P.channel_masks(model, 0.5)).eval()
    theirs = copy.deepcopy(model)
    inner = [m.conv1 for m in theirs.modules() if hasattr(m, "conv1") and hasattr(m, "conv2")]
    ignored = [m for m in theirs.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in inner]
    tp.pruner.MetaPruner(theirs, x[:2], importance=tp.importance.MagnitudeImportance(p=1, normalizer=None, group_reduction="first"),
                         pruning_ratio=0.5, ignored_layers=ignored).step()
    theirs.eval()
    a, b = ours.state_dict(), theirs.state_dict()
    same_shapes = list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    differ = sum(int((a[k] != b[k]).sum()) for k in a) if same_shapes else "shapes differ"
    with torch.no_grad():
        gap = float((ours(x) - theirs(x)).abs().max())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(f"3. ResNet-20, half the filters of every block's conv1 by L1 norm: {count(model):,} -> {count(ours):,} "
          f"parameters (Torch-Pruning: {count(theirs):,}); {differ} of {sum(t.numel() for t in a.values()):,} "
          f"state entries differ, largest output difference {gap:.2g} (goal 0 and 0)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--batches", default="128,8", help="batch sizes of part 2, comma-separated")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = wb.create_model("resnet20")
    x = torch.randn(128, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.randint(10, (128,), generator=torch.Generator().manual_seed(1))
    part1(model, args.sparsity)
    for b in (int(v) for v in args.batches.split(",")):
        part2(model, x[:b], y[:b], args.sparsity, args.repeats)
    part3(model, x)


if __name__ == "__main__":
    main()
