"""Layer-by-layer CKA against torch-cka, and the cost of a guided training step.

1. The CKA matrix between every block of two ResNet-20s over 2,048 CIFAR-10 test images,
   with the same unbiased minibatch estimator (Nguyen et al. 2021) and the same batches,
   computed by ``wb.similarity.similarity_matrix`` and by the PyPI package ``torch-cka``
   (``pip install torch-cka``); prints both times, the ratio and the largest difference.
2. A guided training step (plain-20 target, ResNet-20 guide, 1 - linear CKA on every block
   pair) against a plain step of the same target, with the alignment term in float32 and in
   the default mixed precision (bfloat16 guide forward and Gram products, float32 rest);
   prints the ratios and how far the two precisions' terms and gradients differ.

Run:  WORKBENCH_DATA_DIR=../shared/data python benchmarks/bench_similarity.py
Goals (issue 4): part 1 at least 2x faster than torch-cka; part 2 at most 1.5x a plain step.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import torch
import torch.nn.functional as F

import workbench as wb


def part1(n: int, batch: int) -> None:
    test = wb.load("cifar10", "test").subset(n, seed=0)
    torch.manual_seed(0)
    a = wb.create_model("resnet20").eval()
    torch.manual_seed(1)
    b = wb.create_model("resnet20").eval()
    layers = [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)]

    t = time.perf_counter()
    ours = wb.similarity.similarity_matrix(a, b, test, layers, layers, batch_size=batch, device="cpu")
    t_ours = time.perf_counter() - t

    try:
        from torch_cka import CKA
    except ImportError:
        print("torch-cka is not installed (pip install torch-cka): part 1 compares nothing")
        return
    x = test.normalize(test.images)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=batch, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cka = CKA(a, b, model1_name="a", model2_name="b", model1_layers=layers, model2_layers=layers, device="cpu")
        t = time.perf_counter()
        with torch.no_grad():
            cka.compare(loader)
        t_ref = time.perf_counter() - t
    ref = cka.export()["CKA"].double().numpy()
    diff = abs(ref - ours.values).max()
    print(f"1. CKA matrix, {len(layers)}x{len(layers)} blocks of two ResNet-20s, {n} CIFAR-10 images, batches of {batch}:")
    print(f"   wb.similarity.similarity_matrix  {t_ours:7.2f} s")
    print(f"   torch-cka 0.21                   {t_ref:7.2f} s")
    print(f"   ratio                            {t_ref / t_ours:7.1f}x faster   (goal >= 2x)")
    print(f"   largest difference of the values {diff:.2e} (torch-cka works in float32)")


def part2(steps: int, batch: int) -> None:
    train = wb.load("cifar10", "train").subset(batch * (steps + 3), seed=0)
    loader = wb.data.Loader(train, batch_size=batch, augment="crop_flip", device="cpu", channels_last=True)
    batches = list(loader)

    def run(precision: str | None) -> float:
        torch.manual_seed(0)
        target = wb.create_model("plain20").to(memory_format=torch.channels_last)
        guide = wb.create_model("resnet20").to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(target.parameters(), lr=0.05, momentum=0.9)
        g = wb.guidance.Guidance(guide, target, alpha=1.0, precision=precision or "fp32")
        if precision:
            g.attach(target)
        total = 0.0
        for i, (x, y) in enumerate(batches):
            t = time.perf_counter()
            logits = target(x)
            loss = F.cross_entropy(logits, y)
            if precision:
                loss = loss + g(target, x, y, logits)[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= 3:
                total += time.perf_counter() - t
        g.detach()
        return total / (len(batches) - 3)

    def agreement() -> tuple[float, float]:
        torch.manual_seed(0)
        target, guide = wb.create_model("plain20"), wb.create_model("resnet20")
        x = batches[0][0]
        terms, grads = [], []
        for precision in ("fp32", "bf16"):
            g = wb.guidance.Guidance(guide, target, precision=precision)
            g.attach(target)
            target.zero_grad()
            term = g(target, x, None, target(x))[0]
            term.backward()
            g.detach()
            terms.append(float(term.detach()))
            grads.append(torch.cat([p.grad.flatten().double() for p in target.parameters() if p.grad is not None]))
        return abs(terms[0] - terms[1]), float(F.cosine_similarity(grads[0], grads[1], dim=0))

    plain, fp32, bf16 = run(None), run("fp32"), run("bf16")
    dterm, cos = agreement()
    print(f"2. training step, plain20 target, ResNet-20 guide, 9 block pairs, 1 - linear CKA, batch {batch} "
          f"({len(batches) - 3} timed steps):")
    print(f"   plain step                               {1000 * plain:7.0f} ms")
    print(f"   guided step, precision='fp32'            {1000 * fp32:7.0f} ms   {fp32 / plain:5.2f}x")
    print(f"   guided step, precision='bf16' (default)  {1000 * bf16:7.0f} ms   {bf16 / plain:5.2f}x   (goal <= 1.5x)")
    print(f"   bf16 vs fp32 alignment term: |difference| {dterm:.1e}, gradient cosine {cos:.6f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("WORKBENCH_THREADS", os.cpu_count() or 1)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    part1(args.images, args.batch)
    part2(args.steps, 128)


if __name__ == "__main__":
    main()
