"""SAM: one step on a quadratic is exactly w - lr A (w + rho A w / ||A w||); it trains under fit."""
import pytest
import torch

import workbench as wb
from workbench.train import SAM, sam


def test_one_step_on_a_quadratic_is_exact():
    A = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = SAM([w], lambda g: torch.optim.SGD(g, lr=0.1), rho=0.05)

    def closure():
        opt.zero_grad()
        loss = 0.5 * w @ A @ w
        loss.backward()
        return loss

    w0 = w.detach().clone()
    closure()
    opt.step(closure)
    g = A @ w0
    expected = w0 - 0.1 * (A @ (w0 + 0.05 * g / g.norm()))
    assert torch.allclose(w.detach(), expected, atol=1e-12)


def test_sam_trains_under_fit_and_follows_the_schedule():
    data = wb.load("shapes", "train", subset=512)
    torch.manual_seed(0)
    model = wb.create_model("resnet8", width=8)
    res = wb.fit(model, data, epochs=2, batch_size=128, lr=0.05, optimizer=sam(rho=0.05), progress=False, seed=0)
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]
    assert "sam(rho=0.05" in str(res.config.get("optimizer"))


def test_bad_arguments():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="rho must be positive"):
        SAM([w], lambda g: torch.optim.SGD(g, lr=0.1), rho=0)
    with pytest.raises(ValueError, match="needs the closure"):
        SAM([w], lambda g: torch.optim.SGD(g, lr=0.1)).step()
    with pytest.raises(ValueError, match="unknown base optimizer"):
        sam(base="lion")


def test_sam_run_resumes_exactly(tmp_path):
    data = wb.load("shapes", "train", subset=384)
    kw = dict(epochs=2, batch_size=128, lr=0.05, optimizer=sam(rho=0.05), progress=False, seed=0)

    def model():
        torch.manual_seed(0)
        return wb.create_model("resnet8", width=4)

    ref = wb.fit(model(), data, **kw).model.state_dict()
    wb.fit(model(), data, checkpoint_dir=tmp_path, checkpoint_every=2, stop_after_steps=4, **kw)
    resumed = wb.fit(model(), data, checkpoint_dir=tmp_path, checkpoint_every=2, **kw).model.state_dict()
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)


def test_train_model_caches_sam_runs_by_their_settings_and_refuses_bare_functions(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    import workbench as wb
    from workbench.train import sam

    g = torch.Generator().manual_seed(0)
    ds = wb.data.ImageDataset(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g),
                              torch.randint(0, 10, (64,), generator=g), classes=[str(i) for i in range(10)],
                              name="rand", split="train")
    kw = dict(model_kwargs=dict(width=4), epochs=1, batch_size=32, progress=False)
    a = wb.train_model("resnet8", ds, optimizer=sam(rho=0.05), **kw)
    b = wb.train_model("resnet8", ds, optimizer=sam(rho=0.05), **kw)     # from the cache
    c = wb.train_model("resnet8", ds, optimizer=sam(rho=0.5), **kw)      # another rho: another run
    wa, wb_, wc = (torch.cat([p.detach().reshape(-1) for p in r.model.parameters()]) for r in (a, b, c))
    assert torch.equal(wa, wb_) and not torch.equal(wa, wc)
    with pytest.raises(ValueError, match="cache_key"):
        wb.train_model("resnet8", ds, optimizer=lambda groups: torch.optim.SGD(groups, lr=0.1), **kw)
