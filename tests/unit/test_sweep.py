"""wb.sweep: records, names, skipping on a rerun, packed calls, kills (in-process and on Ray), bad input."""
from __future__ import annotations

import datetime
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.sweep import record_name

HAVE_RAY = importlib.util.find_spec("ray") is not None
ROOT = Path(__file__).resolve().parents[2]


def score(depth, policy, seed=0):
    return {"acc": depth / 100 + (0.5 if policy == "bn_only" else 0.0) + seed / 1000}


def counting(calls):
    def fn(a, b):
        calls.append((a, b))
        return {"prod": a * len(b)}
    return fn


def _jsons(folder):
    return sorted(p.name for p in Path(folder).glob("*.json"))


# -- records -----------------------------------------------------------------------------------------

def test_one_record_per_configuration_with_its_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_COMMIT", "abc1234")
    table = wb.sweep(score, {"depth": [14, 32], "policy": ["bn_only", "full"], "seed": [0]}, folder=tmp_path,
                     progress=False)
    assert _jsons(tmp_path) == ["depth=14-policy=bn_only-seed=0.json", "depth=14-policy=full-seed=0.json",
                                "depth=32-policy=bn_only-seed=0.json", "depth=32-policy=full-seed=0.json"]
    rec = json.loads((tmp_path / "depth=32-policy=bn_only-seed=0.json").read_text())
    assert list(rec)[:4] == ["depth", "policy", "seed", "acc"]  # the configuration first, then fn's record
    assert rec["depth"] == 32 and rec["policy"] == "bn_only" and rec["seed"] == 0
    assert rec["acc"] == pytest.approx(0.82)
    assert rec["study"] == tmp_path.name and rec["commit"] == "abc1234"
    assert rec["torch"] == torch.__version__ and rec["complete"] is True
    assert rec["date"] == datetime.date.today().isoformat()
    assert rec["device"] and isinstance(rec["device"], str)
    assert isinstance(rec["wall_seconds"], float) and rec["wall_seconds"] >= 0
    # the table: grid order, the last axis fastest, read back from the files
    assert list(table["depth"]) == [14, 14, 32, 32] and list(table["policy"]) == ["bn_only", "full"] * 2
    assert list(table["acc"]) == pytest.approx([0.64, 0.14, 0.82, 0.32])
    assert list(table["file"]) == _jsons(tmp_path)
    # what wb.results reads: the same records
    loaded = wb.results.load_records("x", folder=tmp_path)
    assert len(loaded) == 4 and sorted(loaded["acc"]) == pytest.approx(sorted(table["acc"]))


def test_study_goes_under_results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path))
    wb.sweep(score, {"depth": [8], "policy": ["full"]}, study="demo", progress=False)
    assert _jsons(tmp_path / "demo") == ["depth=8-policy=full.json"]
    assert json.loads((tmp_path / "demo" / "depth=8-policy=full.json").read_text())["study"] == "demo"


def test_list_of_dicts_grid_and_numpy_values(tmp_path):
    grid = [{"depth": 14, "policy": "full"}, {"depth": 20, "policy": "bn_only", "seed": 3}]
    table = wb.sweep(lambda depth, policy, seed=0: {"x": np.float32(0.5), "n": np.int64(depth)}, grid,
                     folder=tmp_path, progress=False)
    assert _jsons(tmp_path) == ["depth=14-policy=full.json", "depth=20-policy=bn_only-seed=3.json"]
    assert list(table["n"]) == [14, 20] and list(table["x"]) == [0.5, 0.5]


def test_names_are_readable_and_fall_back_to_a_hash():
    assert record_name({"seed": 0, "policy": "bn_only", "depth": 14}) == "depth=14-policy=bn_only-seed=0"
    assert record_name({"lr": 1e-05, "bits": 4, "signed": True, "x": None}) == "bits=4-lr=1e-05-signed=True-x=None"
    odd = record_name({"data": "/tmp/a b", "layers": [1, 2]})
    assert odd.startswith("data=_") and "-layers=_" in odd and "/" not in odd and " " not in odd
    assert odd == record_name({"layers": [1, 2], "data": "/tmp/a b"})  # deterministic, key order irrelevant
    assert record_name({"data": "/tmp/a c"}) != record_name({"data": "/tmp/a b"})
    long = record_name({f"k{i:02d}": "v" * 30 for i in range(10)})
    assert len(long) <= 150 and long.startswith("k00=" + "v" * 30) and "-h=" in long
    assert long != record_name({**{f"k{i:02d}": "v" * 30 for i in range(10)}, "k09": "w" * 30})


def test_name_function_keeps_old_file_names(tmp_path):
    (tmp_path / "resnet14-full-seed0.json").write_text(json.dumps({"model": "resnet14", "policy": "full",
                                                                   "seed": 0, "acc": 0.9, "complete": True}))
    calls = []

    def fn(depth, policy, seed):
        calls.append((depth, policy))
        return {"acc": 0.1}

    table = wb.sweep(fn, {"depth": [14], "policy": ["bn_only", "full"], "seed": [0]}, folder=tmp_path,
                     name=lambda c: f"resnet{c['depth']}-{c['policy']}-seed{c['seed']}", progress=False)
    assert calls == [(14, "bn_only")]  # the old record counts as done
    assert _jsons(tmp_path) == ["resnet14-bn_only-seed0.json", "resnet14-full-seed0.json"]
    assert list(table["acc"]) == [0.1, 0.9] and list(table["depth"]) == [14, 14]  # depth filled in for the old record


# -- reruns --------------------------------------------------------------------------------------------

def test_rerun_skips_complete_and_reruns_incomplete(tmp_path):
    calls = []
    grid = {"a": [1, 2, 3], "b": ["x", "yy"]}
    wb.sweep(counting(calls), grid, folder=tmp_path, progress=False)
    assert len(calls) == 6 and len(_jsons(tmp_path)) == 6
    before = {p: (tmp_path / p).read_text() for p in _jsons(tmp_path)}
    calls.clear()
    table = wb.sweep(counting(calls), grid, folder=tmp_path, progress=False)
    assert calls == [] and len(table) == 6
    assert {p: (tmp_path / p).read_text() for p in _jsons(tmp_path)} == before  # untouched
    # an incomplete record (a time budget ran out) runs again; a missing one too
    rec = json.loads((tmp_path / "a=2-b=yy.json").read_text())
    (tmp_path / "a=2-b=yy.json").write_text(json.dumps({**rec, "complete": False}))
    (tmp_path / "a=3-b=x.json").unlink()
    plan = wb.sweep(counting(calls), grid, folder=tmp_path, dry_run=True)
    assert calls == [] and list(plan["status"]) == ["complete"] * 3 + ["incomplete", "missing", "complete"]
    assert list(plan["run"]) == [False, False, False, True, True, False]
    wb.sweep(counting(calls), grid, folder=tmp_path, progress=False)
    assert calls == [(2, "yy"), (3, "x")] and len(_jsons(tmp_path)) == 6
    calls.clear()
    wb.sweep(counting(calls), grid, folder=tmp_path, refresh=True, progress=False)
    assert len(calls) == 6 and len(_jsons(tmp_path)) == 6


def test_complete_false_from_fn_and_none_stays_pending(tmp_path):
    calls = []

    def fn(x):
        calls.append(x)
        if x == 0:
            return {"epochs": 3, "complete": False}
        return None if x == 1 else {"epochs": 10}

    table = wb.sweep(fn, {"x": [0, 1, 2]}, folder=tmp_path, progress=False)
    assert _jsons(tmp_path) == ["x=0.json", "x=2.json"] and list(table["x"]) == [0, 2]
    assert list(table["complete"]) == [False, True]
    calls.clear()
    wb.sweep(fn, {"x": [0, 1, 2]}, folder=tmp_path, progress=False)
    assert calls == [0, 1]


def test_pack_hands_one_call_the_values_still_to_run(tmp_path):
    calls = []

    def train_packed(depth, policy, seed):
        calls.append((depth, tuple(policy), seed))
        return [{"acc": depth + i, "members": len(policy)} for i, _ in enumerate(policy)]

    grid = {"depth": [8, 14], "policy": ["a", "b", "c"], "seed": [0]}
    table = wb.sweep(train_packed, grid, folder=tmp_path, pack="policy", progress=False)
    assert calls == [(8, ("a", "b", "c"), 0), (14, ("a", "b", "c"), 0)]
    assert len(_jsons(tmp_path)) == 6 and list(table["acc"]) == [8, 9, 10, 14, 15, 16]
    recs = [json.loads((tmp_path / f).read_text()) for f in ("depth=8-policy=a-seed=0.json", "depth=8-policy=c-seed=0.json")]
    assert recs[0]["wall_seconds"] == recs[1]["wall_seconds"]  # one call, one wall time
    (tmp_path / "depth=14-policy=b-seed=0.json").unlink()
    calls.clear()
    wb.sweep(train_packed, grid, folder=tmp_path, pack="policy", progress=False)
    assert calls == [(14, ("b",), 0)]


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    """A sweep whose process is SIGKILLed at the fourth of six configurations, then run again."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        import workbench as wb

        log = Path(sys.argv[1])

        def step(i):
            with open(log / "calls.log", "a") as f:
                f.write(f"{i}\\n")
            if i == 3 and not (log / "killed").exists():
                (log / "killed").touch()
                os.kill(os.getpid(), signal.SIGKILL)
            return {"double": 2 * i}

        wb.sweep(step, {"i": list(range(6))}, folder=sys.argv[2], progress=False)
    """))
    out = tmp_path / "records"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORKBENCH_COMMIT": "test"}
    first = subprocess.run([sys.executable, str(script), str(tmp_path), str(out)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert _jsons(out) == ["i=0.json", "i=1.json", "i=2.json"]
    second = subprocess.run([sys.executable, str(script), str(tmp_path), str(out)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "calls.log").read_text().split() == ["0", "1", "2", "3", "3", "4", "5"]
    assert _jsons(out) == [f"i={i}.json" for i in range(6)]
    assert [p.name for p in out.iterdir() if not p.name.endswith(".json")] == []  # no temporary files left
    for i in range(6):
        assert json.loads((out / f"i={i}.json").read_text())["double"] == 2 * i

    def must_not_run(i):
        raise AssertionError("a complete configuration ran again")

    table = wb.sweep(must_not_run, {"i": list(range(6))}, folder=out, progress=False)
    assert list(table["double"]) == [0, 2, 4, 6, 8, 10]


# -- bad input -----------------------------------------------------------------------------------------

def _bad_record(tmp_path):
    (tmp_path / "depth=8-policy=full.json").write_text('{"acc": 0.5, ')
    return dict(fn=score, grid={"depth": [8], "policy": ["full"]})


def _conflicting_record(tmp_path):
    (tmp_path / "depth=8-policy=full.json").write_text(json.dumps({"depth": 9, "complete": True}))
    return dict(fn=score, grid={"depth": [8], "policy": ["full"]})


BAD = {
    "unknown key": (lambda t: dict(fn=score, grid={"depth": [8], "policy": ["full"], "width": [16]}),
                    ValueError, ["'width'", "score(depth, policy, seed)"]),
    "missing parameter": (lambda t: dict(fn=score, grid={"depth": [8]}), ValueError,
                          ["needs 'policy'", "functools.partial"]),
    "empty axis": (lambda t: dict(fn=score, grid={"depth": [], "policy": ["full"]}), ValueError,
                   ["grid['depth'] is empty"]),
    "axis not a list": (lambda t: dict(fn=score, grid={"depth": 8, "policy": ["full"]}), ValueError,
                        ["grid['depth'] is 8", "'depth': [8]"]),
    "string axis": (lambda t: dict(fn=score, grid={"depth": [8], "policy": "full"}), ValueError,
                    ["grid['policy'] is 'full'", "'policy': ['full']"]),
    "grid not a mapping": (lambda t: dict(fn=score, grid=8), ValueError, ["grid is an int", "a list of dicts"]),
    "list of non-dicts": (lambda t: dict(fn=score, grid=[{"depth": 8, "policy": "a"}, 3]), ValueError,
                          ["grid[1] is an int"]),
    "empty grid": (lambda t: dict(fn=score, grid={}), ValueError, ["grid is empty"]),
    "repeated value": (lambda t: dict(fn=score, grid={"depth": [8, 8], "policy": ["a"]}), ValueError,
                       ["lists 8 twice"]),
    "unparsable record": (_bad_record, ValueError, ["depth=8-policy=full.json", "delete or fix it"]),
    "record of another configuration": (_conflicting_record, ValueError, ["holds depth=9", "delete the file"]),
    "unknown backend": (lambda t: dict(fn=score, grid={"depth": [8], "policy": ["a"]}, backend="slurm"),
                        ValueError, ["'slurm'", "'inprocess', 'ray'"]),
    "address without ray": (lambda t: dict(fn=score, grid={"depth": [8], "policy": ["a"]}, address="auto"),
                            ValueError, ["address=", "backend='ray'"]),
    "returns a number": (lambda t: dict(fn=lambda x: 0.5, grid={"x": [1]}), TypeError,
                         ["record for x=1 is a float", "dict of JSON values"]),
    "returns a tensor value": (lambda t: dict(fn=lambda x: {"acc": torch.tensor(0.5)}, grid={"x": [1]}), TypeError,
                               ["['acc'] is a Tensor", ".item()"]),
    "returns nan": (lambda t: dict(fn=lambda x: {"acc": float("nan")}, grid={"x": [1]}), TypeError,
                    ["['acc'] is nan"]),
    "returns a list unpacked": (lambda t: dict(fn=lambda x: [{"a": 1}], grid={"x": [1]}), TypeError,
                                ["returned a list", "pack="]),
    "pack returns too few": (lambda t: dict(fn=lambda x, y: [{"a": 1}], grid={"x": [1], "y": [1, 2]}, pack="y"),
                             TypeError, ["returned 1 records", "list of 2 records"]),
    "changes a grid key": (lambda t: dict(fn=lambda x: {"x": 2}, grid={"x": [1]}), ValueError,
                           ["sets x=2", "configuration has x=1"]),
    "no study": (lambda t: dict(fn=score, grid={"depth": [8], "policy": ["a"]}, folder=None), ValueError,
                 ["name the study"]),
    "complete not a bool": (lambda t: dict(fn=lambda x: {"complete": "yes"}, grid={"x": [1]}), TypeError,
                            ["['complete'] is 'yes'"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_a_clear_message(case, tmp_path):
    make, error, fragments = BAD[case]
    kw = {"folder": tmp_path, "progress": False, **make(tmp_path)}
    with pytest.raises(error) as info:
        wb.sweep(kw.pop("fn"), kw.pop("grid"), **kw)
    for f in fragments:
        assert f in str(info.value), (f, str(info.value))
    if case not in ("unparsable record", "record of another configuration"):
        assert _jsons(tmp_path) == []  # nothing written for a configuration that failed


def test_ray_backend_without_ray_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[sweep\]"'):
        wb.sweep(score, {"depth": [8], "policy": ["a"]}, folder=tmp_path, backend="ray", progress=False)


def test_earlier_records_survive_a_failing_configuration(tmp_path):
    def fn(x):
        if x == 2:
            raise RuntimeError("diverged")
        return {"x2": x * x}

    with pytest.raises(RuntimeError, match="diverged"):
        wb.sweep(fn, {"x": [0, 1, 2, 3]}, folder=tmp_path, progress=False)
    assert _jsons(tmp_path) == ["x=0.json", "x=1.json"]


# -- Ray -----------------------------------------------------------------------------------------------

def dies_once(x, log_dir):
    """Logs each call; the first call for x == 2 SIGKILLs its own worker process."""
    log = Path(log_dir)
    with open(log / f"calls-{x}.log", "a") as f:
        f.write(f"{os.getpid()}\n")
    if x == 2 and not (log / "killed").exists():
        (log / "killed").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"square": x * x}


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_RAY, reason='Ray is not installed: pip install -e ".[sweep]" '
                                         "(bash scripts/workbench.sh test installs it)")
def test_ray_worker_killed_mid_run_is_retried_without_loss_or_duplicates(tmp_path):
    import ray

    assert not ray.is_initialized()
    logs, out = tmp_path / "logs", tmp_path / "records"
    logs.mkdir()
    fn = functools.partial(dies_once, log_dir=str(logs))
    # Ray's unix sockets live under its temp dir and may not pass 107 bytes, which a path under
    # tmp_path does; so a short folder of our own, removed afterwards
    ray_tmp = tempfile.mkdtemp(prefix="wbray-", dir="/tmp")
    ray_init = dict(num_cpus=2, include_dashboard=False, _temp_dir=ray_tmp, object_store_memory=100 * 2**20,
                    log_to_driver=False)
    try:
        table = wb.sweep(fn, {"x": [0, 1, 2, 3, 4]}, folder=out, backend="ray", max_retries=2, ray_init=ray_init,
                         progress=False)
        assert not ray.is_initialized()  # the Ray it started is shut down
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert (logs / "killed").exists()
    calls = {x: (logs / f"calls-{x}.log").read_text().split() for x in range(5)}
    assert [len(calls[x]) for x in range(5)] == [1, 1, 2, 1, 1]  # killed once, retried once
    assert calls[2][0] != calls[2][1]  # the retry ran in a new worker process
    assert _jsons(out) == [f"x={x}.json" for x in range(5)]  # exactly one record each
    assert sorted(table["square"]) == [0, 1, 4, 9, 16]
    for x in range(5):
        rec = json.loads((out / f"x={x}.json").read_text())
        assert rec["x"] == x and rec["square"] == x * x and rec["complete"] is True
    # a rerun finds them all complete: nothing runs, Ray is not even started
    again = wb.sweep(fn, {"x": [0, 1, 2, 3, 4]}, folder=out, backend="ray", ray_init=ray_init, progress=False)
    assert not ray.is_initialized()
    assert {x: (logs / f"calls-{x}.log").read_text().split() for x in range(5)} == calls
    assert list(again["square"]) == [0, 1, 4, 9, 16]
