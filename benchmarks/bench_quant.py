"""wb.quant against the fake quantization a user would otherwise pick: PyTorch's own
(``torch.fake_quantize_per_channel_affine`` and ``torch.ao.quantization``'s QAT modules) and
brevitas (PyPI, when it is installed beside torch).

1. Agreement: a ResNet-20's W8A8 forward (weights int8 per output channel, activations uint8 with
   a zero point) computed by ``wb.quant`` and by the same network whose convolutions call
   ``torch.fake_quantize_per_*_affine`` with the same scales: the largest difference (goal 0, bit
   for bit).
2. Cost of a quantized forward pass (eval, 256 images) and of a QAT step (batch 128, SGD) of a
   ResNet-20 at W8A8: ``wb.quant.quantize`` against ``torch.ao.quantization.prepare_qat`` (eager
   mode, the fbgemm QAT config) and against brevitas' ``QuantConv2d`` layers where brevitas
   imports; ratios printed (goal: ours costs no more than theirs, ratio >= 1).

Run:  python benchmarks/bench_quant.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from _timing import interleaved  # benchmarks/, on the path when a benchmark runs as a script
from workbench import quant as Q


class _TorchFQConv(nn.Module):
    """A conv whose input and weight go through torch.fake_quantize_* with the scales wb.quant chose."""

    def __init__(self, q: nn.Module):
        super().__init__()
        self.q = q

    def forward(self, x):
        q = self.q
        af = q.aq.fmt
        s, z = af.scale_for_range(q.aq.lo, q.aq.hi)
        x = torch.fake_quantize_per_tensor_affine(x, float(s), int(z), af.qmin, af.qmax)
        wf = q.wq.fmt
        ws, wz = q.wq.weight_scale(q.weight)
        w = torch.fake_quantize_per_channel_affine(q.weight, ws, wz.int(), 0, wf.qmin, wf.qmax)
        return q._conv_forward(x, w, q.bias) if isinstance(q, nn.Conv2d) else F.linear(x, w, q.bias)


def part1(model, x) -> None:
    ours = Q.calibrate(Q.quantize(model, "w8a8"), x)
    ref = copy.deepcopy(ours)
    for name, m in list(ref.named_modules()):
        if isinstance(m, (Q.QuantConv2d, Q.QuantLinear)):
            parent, _, child = name.rpartition(".")
            setattr(ref.get_submodule(parent) if parent else ref, child, _TorchFQConv(m))
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    print(f"1. ResNet-20 W8A8 forward, wb.quant against torch.fake_quantize_*_affine with the same scales, "
          f"{len(x)} images: largest difference {diff:.1e} (goal 0)")


def torch_ao_qat(model: nn.Module) -> nn.Module:
    import torch.ao.quantization as tq

    m = copy.deepcopy(model).train()
    m.qconfig = tq.get_default_qat_qconfig("fbgemm")
    for mod in m.modules():  # BatchNorm stays float, as in ours
        if isinstance(mod, nn.BatchNorm2d):
            mod.qconfig = None
    return tq.prepare_qat(m, inplace=False)


def brevitas_model(model: nn.Module) -> nn.Module | None:
    try:
        from brevitas import nn as qnn
        from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat
    except Exception as e:  # not installed, or it does not import beside this torch
        print(f"   brevitas: not available ({type(e).__name__}: {str(e)[:80]})")
        return None
    m = copy.deepcopy(model)
    for name, mod in list(m.named_modules()):
        if isinstance(mod, nn.Conv2d):
            new = qnn.QuantConv2d(mod.in_channels, mod.out_channels, mod.kernel_size, stride=mod.stride,
                                  padding=mod.padding, bias=mod.bias is not None,
                                  weight_quant=Int8WeightPerTensorFloat, input_quant=Int8ActPerTensorFloat)
            new.weight.data.copy_(mod.weight.data)
            parent, _, child = name.rpartition(".")
            setattr(m.get_submodule(parent) if parent else m, child, new)
    return m


def part2(model, x, y, repeats: int) -> None:
    ours = Q.calibrate(Q.quantize(model, "w8a8"), x)
    contenders = {"wb.quant": ours, "torch.ao prepare_qat": torch_ao_qat(model)}
    b = brevitas_model(model)
    if b is not None:
        contenders["brevitas QuantConv2d"] = b
    fwd_fns, step_fns = {}, {}
    for name, m in contenders.items():
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

        @torch.no_grad()
        def forward(m=m):
            m.eval()
            m(x)

        def one_step(m=m, opt=opt):
            m.train()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x[:128]), y[:128]).backward()
            opt.step()

        fwd_fns[name], step_fns[name] = forward, one_step
    # round robin, best of `repeats` each: whichever runs first on a cold process is slower (the
    # allocator and oneDNN's caches warm up), so no contender is timed only before the others
    fwd, step = interleaved(fwd_fns, repeats), interleaved(step_fns, repeats)
    print(f"2. ResNet-20 at W8A8, forward of {len(x)} images (eval) and one QAT step on 128 (best of {repeats}):")
    for name in contenders:
        print(f"   {name:24s} forward {fwd[name] * 1e3:8.1f} ms   QAT step {step[name] * 1e3:8.1f} ms")
    for name in contenders:
        if name != "wb.quant":
            print(f"   {name} / wb.quant: forward {fwd[name] / fwd['wb.quant']:.2f}x, QAT step "
                  f"{step[name] / step['wb.quant']:.2f}x   (goal >= 1)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = wb.create_model("resnet20").eval()
    x = torch.randn(256, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.randint(10, (256,), generator=torch.Generator().manual_seed(1))
    part1(model, x)
    part2(model, x, y, args.repeats)


if __name__ == "__main__":
    main()
