"""Runs survive SIGKILL; caches and checkpoints are complete or absent."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from workbench.train.checkpoint import latest_checkpoint

ROOT = Path(__file__).resolve().parents[2]
WORKER = [sys.executable, "-m", "tests.robustness._worker"]


def run(args, env_extra=None, hang_marker=None, timeout=240):
    env = {**os.environ, **(env_extra or {})}
    if hang_marker is None:
        return subprocess.run(WORKER + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    proc = subprocess.Popen(WORKER + args, cwd=ROOT, env={**env, "WB_MARKER": str(hang_marker)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t = time.time()
    while not Path(hang_marker).exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker ended before the kill point: {proc.stderr.read()[-2000:]}")
        if time.time() - t > timeout:
            proc.kill()
            raise AssertionError("worker never reached the kill point")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["none", "bn_only", "random_per_channel", "guided", "stateful"])
def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(policy, tmp_path):
    ref = tmp_path / "ref"
    r = run(["train", "", policy, str(ref)])
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = tmp_path / "ckpt"
    # 6 batches per epoch: hang in the 9th step (mid-epoch 2), after checkpoints at steps 2, 4, 6 and 8
    run(["train", str(ckpt), policy], env_extra={"WB_HANG_AT": "9"}, hang_marker=tmp_path / "marker")
    meta = json.loads(latest_checkpoint(ckpt).read_text())
    assert meta["global_step"] == 8 and meta["next_batch"] == 2
    r = run(["train", str(ckpt), policy, str(tmp_path / "resumed")])
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = load_file(str(ref) + ".safetensors"), load_file(str(tmp_path / "resumed.safetensors"))
    assert a.keys() == b.keys()
    if policy == "stateful":  # the weight average and the noise generator's state came back too
        assert {"extra.alg0.gen", "extra.alg1.avg.fc.weight"} <= set(a)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill and resume"
    ha = json.loads(Path(str(ref) + ".json").read_text())["history"]
    hb = json.loads((tmp_path / "resumed.json").read_text())["history"]
    for col in ("epoch", "step", "lr", "train_loss", "train_acc") + (("align", "cka") if policy == "guided" else ()):
        assert ha[col] == hb[col], col
    # the optimizer state survived too: the last checkpoints of both runs hold equal momentum buffers
    last = latest_checkpoint(ckpt)
    opt = {k: v for k, v in load_file(str(last.with_suffix(".safetensors"))).items() if k.startswith("optim.")}
    assert opt and all(torch.isfinite(v).all() for v in opt.values())


@pytest.mark.slow
def test_kill_during_a_cache_write_leaves_no_entry_and_a_reader_recomputes(tmp_path):
    run(["cache", str(tmp_path), "hang"], hang_marker=tmp_path / "marker")
    entries = list(tmp_path.rglob("*.safetensors"))
    assert entries == [], "a killed writer must not leave a visible entry"
    assert list(tmp_path.rglob("*.tmp")), "the half-written temporary file is expected to remain, unseen"
    r = run(["cache", str(tmp_path), "fast"])
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("hang_at", ["1", "2"], ids=["in-tensors", "in-sidecar"])
def test_kill_during_a_checkpoint_write_keeps_the_previous_one(hang_at, tmp_path):
    import workbench as wb
    from workbench.train.checkpoint import load_checkpoint

    folder = tmp_path / "ckpts"
    run(["ckpt", str(folder), hang_at], hang_marker=tmp_path / "marker")
    latest = latest_checkpoint(folder)
    assert latest is not None and latest.name == "ckpt-000000002.json", latest
    assert not (folder / "ckpt-000000004.json").exists(), "the interrupted checkpoint must not be visible"
    torch.manual_seed(0)
    fresh = wb.create_model("resnet8", width=4)
    expected = {k: v.clone() for k, v in fresh.state_dict().items()}
    meta, _, _ = load_checkpoint(latest, fresh)
    assert meta["global_step"] == 2
    assert all(torch.equal(v, expected[k]) for k, v in fresh.state_dict().items())


@pytest.mark.slow
def test_two_processes_writing_the_same_key(tmp_path):
    procs = [subprocess.Popen(WORKER + ["cache", str(tmp_path), "fast"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and "ok" in out, err[-2000:]
    entries = list(tmp_path.rglob("*.safetensors"))
    assert len(entries) == 1 and not list(tmp_path.rglob("*.tmp"))
    r = run(["cache", str(tmp_path), "fast"])  # and a third reads it back, checksum verified
    assert r.returncode == 0 and "ok" in r.stdout
