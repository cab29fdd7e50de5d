"""Generating residual-VQ code stacks: the depth-wise order, both heads through fit, the sampler on oracles."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench.dense import (MaskedTokens, TokenData, TokenLoader, depthwise_known, encode_tokens, reveal_schedule,
                             sample_tokens)


def test_depthwise_known_reveals_level_by_level_in_the_position_order():
    order = torch.tensor([[2, 0, 3, 1]])                       # a 2x2 grid, depth 3: 12 codes
    cases = {12: [0, 0, 0, 0], 11: [0, 0, 1, 0], 9: [1, 0, 1, 1], 8: [1, 1, 1, 1], 7: [1, 1, 2, 1], 6: [2, 1, 2, 1],
             1: [3, 2, 3, 3], 0: [3, 3, 3, 3]}
    for masked, want in cases.items():
        known = depthwise_known(torch.tensor([masked]), order, 3).flatten().tolist()
        # positions 2, 0, 3, 1 learn one more level in that order; the masked count is what is left
        assert known == want and 12 - sum(known) == masked
    gen = torch.Generator().manual_seed(0)
    order = torch.rand(50, 16, generator=gen).argsort(1)
    masked = torch.randint(0, 65, (50,), generator=gen)
    known = depthwise_known(masked, order, 4)
    assert torch.equal(64 - known.sum((1, 2)), masked)
    assert int((known.amax((1, 2)) - known.amin((1, 2))).max()) <= 1   # never more than one level apart
    with pytest.raises(ValueError, match="0..12"):
        depthwise_known(torch.tensor([13]), torch.tensor([[0, 1, 2, 3]]), 3)


def test_reveal_schedule_is_strictly_decreasing_cosine_and_checks_its_steps():
    for total, steps in ((64, 1), (64, 8), (64, 64), (12, 5)):
        left = reveal_schedule(total, steps)
        assert len(left) == steps and left[-1] == 0 and all(a > b for a, b in zip([total] + left, left))
    assert reveal_schedule(100, 2) == [70, 0]                   # floor(100 cos(pi / 4))
    with pytest.raises(ValueError, match="steps must lie in 1..12"):
        reveal_schedule(12, 13)


def _stack_codebooks() -> torch.Tensor:
    # depth 2, 3 codes of width 1: the first level's codes far apart, the second's small, so the greedy residual
    # quantization of any sum of one code per level gives back those codes
    return torch.tensor([[[-8.0], [0.0], [8.0]], [[-1.0], [0.0], [1.0]]])


def _generator(head: str) -> torch.nn.Module:
    return wb.create_model("rvq_generator", grid=2, depth=2, size=3, dim=1, width=16, layers=1, heads=2,
                           head=head).load_codebooks(_stack_codebooks())


def test_partial_sum_and_the_sampler_on_oracles_give_back_the_target_in_any_number_of_steps():
    target = torch.tensor([[[[2, 0], [0, 1]], [[1, 2], [2, 2]]],
                           [[[0, 2], [1, 1]], [[2, 1], [0, 0]]]])                           # [2, 2, 2, 2]
    books = _stack_codebooks()
    model = _generator("collective")
    full = model.partial_sum(target, torch.full((2, 2, 2), 2))
    assert torch.equal(full[0, 0, 0], books[0, 2] + books[1, 0])    # 8 - 1 = 7
    assert torch.equal(model.partial_sum(target, torch.zeros(2, 2, 2, dtype=torch.long)), torch.zeros(2, 2, 2, 1))

    class Oracle(torch.nn.Module):   # knows the targets: the collective head's exact answer, or one-hot logits
        def __init__(self, head):
            super().__init__()
            self.head, self.grid, self.depth, self.codebooks_loaded = head, 2, 2, True
            self.register_buffer("codebooks", books)
            self.calls = 0

        def forward(self, codes, known):
            self.calls += 1
            levels = torch.arange(2)
            assert torch.equal(codes[levels < known[..., None]], target[levels < known[..., None]])
            if self.head == "tokens":
                return torch.nn.functional.one_hot(target, 3).float() * 50
            masked_sum = model.partial_sum(target, torch.full_like(known, 2)) - model.partial_sum(target, known)
            return masked_sum, torch.full_like(masked_sum, -10.0)

    for head in ("tokens", "collective"):
        for steps in (1, 3, 8):
            oracle = Oracle(head)
            got = sample_tokens(oracle, 2, steps, temperature=0.0 if head == "collective" else 1.0)
            assert torch.equal(got, target) and oracle.calls == steps


def test_both_heads_train_through_fit_resume_exactly_and_sample():
    gen = torch.Generator().manual_seed(0)
    # code stacks with structure: the second level copies the first (a generator can learn that)
    first = torch.randint(0, 3, (64, 2, 2, 1), generator=gen)
    data = TokenData(torch.cat([first, first], -1))

    def run(head, ckpt=None, stop=None):
        torch.manual_seed(0)
        m = _generator(head)
        return wb.fit(m, TokenLoader(data, 16, seed=0), TokenLoader(data, 64, shuffle=False), task=MaskedTokens(),
                      epochs=6, lr=3e-3, optimizer="adam", weight_decay=0.0, progress=False, seed=0,
                      checkpoint_dir=ckpt, stop_after_steps=stop)

    for head in ("tokens", "collective"):
        res = run(head)
        h = res.history["test_loss"]
        assert h.iloc[-1] < h.iloc[0]
        codes = sample_tokens(res.model, 5, 4, seed=1)
        assert codes.shape == (5, 2, 2, 2) and int(codes.min()) >= 0 and int(codes.max()) <= 2
        assert torch.equal(codes, sample_tokens(res.model, 5, 4, seed=1))       # a pure function of the seed
    tokens = run("tokens")
    # the tokens head learns that the second level repeats the first: given the first, the copy is likely
    known = torch.ones(64, 2, 2, dtype=torch.long)
    with torch.no_grad():
        p = torch.softmax(tokens.model(data.codes, known)[..., 1, :], -1)
    assert float(p.gather(-1, data.codes[..., 1:]).mean()) > 0.5           # chance is 1/3
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        run("tokens", d, stop=5)
        resumed = run("tokens", d)
    for a, b in zip(tokens.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_rvq_autoencoder_codes_and_bad_inputs():
    ae = wb.create_model("rvq_autoencoder", width=8, dim=4, depth=3, size=16).eval()
    images = wb.load("cifar10", "test", subset=8)
    data = encode_tokens(ae, images)
    assert data.codes.shape == (8, 8, 8, 3) and data.codes.dtype == torch.long
    gen = wb.create_model("rvq_generator", grid=8, depth=3, size=16, dim=4, width=16, layers=1, heads=2)
    with pytest.raises(ValueError, match="load the autoencoder's codebooks"):
        wb.fit(gen, TokenLoader(data, 4), task=MaskedTokens(), progress=False)
    with pytest.raises(ValueError, match="depth, size and dim"):
        gen.load_codebooks(torch.zeros(3, 16, 5))
    gen.load_codebooks(ae.quantizer.codebooks)
    assert torch.allclose(gen.partial_sum(data.codes, torch.full((8, 8, 8), 3)),
                          sum(ae.quantizer.codebooks[d][data.codes[..., d]] for d in range(3)))
    with pytest.raises(ValueError, match="grid= and depth="):
        wb.fit(wb.create_model("rvq_generator", grid=4, depth=3, size=16, dim=4, width=16, layers=1, heads=2)
               .load_codebooks(ae.quantizer.codebooks), TokenLoader(data, 4), task=MaskedTokens(), progress=False)
    with pytest.raises(ValueError, match="codes must be \\[batch, 8, 8, 3\\]"):
        gen(data.codes[..., :2], torch.zeros(8, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="codebook of size one"):
        wb.create_model("rvq_generator", size=1)
    with pytest.raises(ValueError, match="head is one of tokens, collective"):
        wb.create_model("rvq_generator", head="pixels")
    with pytest.raises(ValueError, match="int64 code stacks"):
        TokenData(torch.zeros(4, 2, 2, 2))
    with pytest.raises(TypeError, match="TokenData"):
        TokenLoader(data.codes)
