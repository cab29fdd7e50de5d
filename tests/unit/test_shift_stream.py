"""Continual streams (wb.shift.stream): the paper's order, one dataset per corruption, the stream in rounds."""
import pytest
import torch

import workbench as wb
from workbench.shift import BNAdapt, NoAdapt, Tent, evaluate_stream
from workbench.shift.stream import CIFAR10C_ORDER, continual_order, corruption_domains, run_rounds

from .test_shift_tta import _model  # a resnet8 with non-trivial BatchNorm statistics


def _domains(n=24, seed=0):
    return corruption_domains(["gaussian_noise", "fog", "contrast"], 5, dataset="shapes", subset=n, seed=seed)


def test_continual_order_is_the_papers_without_frost():
    assert len(CIFAR10C_ORDER) == 15 and CIFAR10C_ORDER[0] == "gaussian_noise"
    assert CIFAR10C_ORDER[-1] == "jpeg_compression" and CIFAR10C_ORDER.index("frost") == 8
    got = continual_order()
    assert got == [c for c in CIFAR10C_ORDER if c != "frost"] and len(got) == 14
    assert continual_order(["fog", "frost", "snow"]) == ["fog", "snow"]


def test_corruption_domains_are_the_same_images_under_each_corruption():
    doms = _domains(seed=3)
    assert list(doms) == ["gaussian_noise", "fog", "contrast"]
    clean = wb.load("shapes", "test", subset=24, seed=3)
    for name, d in doms.items():
        assert torch.equal(d.labels, clean.labels)
        ref = wb.load("shapes", "test", subset=24, seed=3, corruption=name, severity=5, corruption_seed=3)
        assert torch.equal(d.images, ref.images) and not torch.equal(d.images, clean.images)
    other = _domains(seed=4)  # another seed: other images and other draws
    assert not torch.equal(other["fog"].labels, doms["fog"].labels)


def test_run_rounds_is_the_repeated_stream_never_reset():
    m, doms = _model(), _domains()
    got = run_rounds(Tent(m, lr=0.05), doms, rounds=3, batch_size=8, seed=2)
    flat = {f"{r}/{k}": d for r in (1, 2, 3) for k, d in doms.items()}
    ref = evaluate_stream(Tent(m, lr=0.05), flat, batch_size=8, seed=2)
    assert list(got.columns) == ["method", "round", "domain", "position", "acc", "loss", "n", "steps"]
    assert list(got["round"]) == [1, 1, 1, 2, 2, 2, 3, 3, 3] and list(got.domain) == list(doms) * 3
    assert list(got.position) == list(range(9)) and list(got.steps) == [3 * (i + 1) for i in range(9)]
    assert list(got.acc) == list(ref.acc) and list(got.loss) == list(ref.loss)
    first, last = got[got["round"] == 1], got[got["round"] == 3]
    assert list(first.loss) != list(last.loss)  # Tent keeps what it learned: round 3 is not round 1


@pytest.mark.parametrize("make", [NoAdapt, lambda m: BNAdapt(m), lambda m: BNAdapt(m, blend=0.5, momentum=0.0)])
def test_stateless_methods_run_once_and_repeat_exactly(make):
    m, doms = _model(), _domains()
    a = make(m)
    got = run_rounds(a, doms, rounds=3, batch_size=8, seed=1)
    flat = {f"{r}/{k}": d for r in (1, 2, 3) for k, d in doms.items()}
    ref = evaluate_stream(make(m), flat, batch_size=8, seed=1)  # really run three times
    assert list(got.acc) == list(ref.acc) and list(got.loss) == list(ref.loss)
    assert list(got.steps) == list(ref.steps) and a.steps == 27


def test_a_method_with_running_statistics_really_runs_every_round():
    m, doms = _model(), _domains()
    got = run_rounds(BNAdapt(m, blend=0.5, momentum=0.3), doms, rounds=2, batch_size=8)
    assert list(got.loss[:3]) != list(got.loss[3:])  # the stored statistics moved in round 1


def test_bad_input_names_the_problem_and_the_fix():
    m, doms = _model(), _domains(n=8)
    for rounds in (0, 1.5, True):
        with pytest.raises(ValueError, match="rounds is a whole number"):
            run_rounds(NoAdapt(m), doms, rounds=rounds)
    with pytest.raises(ValueError, match="non-empty mapping"):
        run_rounds(NoAdapt(m), {}, rounds=1)
    with pytest.raises(ValueError, match="non-empty mapping"):
        run_rounds(NoAdapt(m), list(doms.values()), rounds=1)
    with pytest.raises(ValueError, match="appears once"):
        corruption_domains(["fog", "fog"], dataset="shapes", subset=4)
    with pytest.raises(ValueError, match="non-empty list"):
        corruption_domains("fog", dataset="shapes", subset=4)
    with pytest.raises(ValueError, match="frost"):
        corruption_domains(["frost"], dataset="shapes", subset=4)
