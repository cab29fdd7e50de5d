import os

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.cache import cache_path, dumps, loads


def test_computes_once_per_key(tmp_path):
    calls = []

    def work():
        calls.append(1)
        return {"acc": 0.5, "curve": torch.arange(4.0)}

    a = wb.cached(work, key={"lr": 0.1}, name="t", cache_dir=tmp_path)
    b = wb.cached(work, key={"lr": 0.1}, name="t", cache_dir=tmp_path)
    c = wb.cached(work, key={"lr": 0.2}, name="t", cache_dir=tmp_path)
    assert len(calls) == 2
    assert a["acc"] == b["acc"] == c["acc"] == 0.5
    assert torch.equal(b["curve"], torch.arange(4.0))
    assert not [p for p in tmp_path.rglob("*.tmp")], "temporary files left behind"


def test_version_and_refresh_recompute(tmp_path):
    calls = []
    f = lambda: calls.append(1) or 1  # noqa: E731
    wb.cached(f, key=1, name="v", cache_dir=tmp_path)
    wb.cached(f, key=1, name="v", version=2, cache_dir=tmp_path)
    wb.cached(f, key=1, name="v", version=2, cache_dir=tmp_path, refresh=True)
    assert len(calls) == 3


def test_key_order_does_not_matter():
    assert cache_path({"a": 1, "b": 2}, "n") == cache_path({"b": 2, "a": 1}, "n")
    assert cache_path({"a": 1.0}, "n") != cache_path({"a": 1.0000001}, "n")


def test_round_trip_types():
    obj = {"t": torch.randn(3, 2), "bf": torch.ones(2, dtype=torch.bfloat16), "n": np.arange(5),
           "df": pd.DataFrame({"x": [1.5, 2.5], "y": ["a", "b"]}), "list": [1, "two", None, 3.25],
           "tuple": (1, 2), "nan": float("nan"), "nested": {"k": [torch.zeros(1)]}}
    back = loads(dumps(obj))
    assert torch.equal(back["t"], obj["t"]) and torch.equal(back["bf"], obj["bf"])
    assert np.array_equal(back["n"], obj["n"])
    pd.testing.assert_frame_equal(back["df"], obj["df"])
    assert back["list"] == obj["list"] and back["tuple"] == (1, 2) and np.isnan(back["nan"])
    assert torch.equal(back["nested"]["k"][0], torch.zeros(1))


def test_damaged_entry_is_recomputed(tmp_path):
    calls = []
    f = lambda: calls.append(1) or {"x": torch.arange(100.0)}  # noqa: E731
    wb.cached(f, key="k", name="d", cache_dir=tmp_path)
    path = cache_path("k", "d", cache_dir=tmp_path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits in the tensor payload
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged"):
        out = wb.cached(f, key="k", name="d", cache_dir=tmp_path)
    assert len(calls) == 2 and torch.equal(out["x"], torch.arange(100.0))
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.warns(UserWarning, match="damaged"):
        wb.cached(f, key="k", name="d", cache_dir=tmp_path)
    assert len(calls) == 3


def test_unsupported_result_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(TypeError, match="state_dict"):
        wb.cached(lambda: torch.nn.Linear(2, 2), key=1, name="m", cache_dir=tmp_path)
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("*.tmp"))


def test_unwritable_cache_dir_names_the_fix(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/wb-cache-test"  # not writable even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "sub")
    with pytest.raises(OSError, match="WORKBENCH_CACHE_DIR"):
        wb.cached(lambda: 1, key=1, name="x", cache_dir=target)


def test_fingerprint_tells_same_shaped_contents_apart():
    from workbench.cache import fingerprint
    a = torch.zeros(3, 4, dtype=torch.long)
    b = a.clone()
    b[2, 3] = 1
    assert fingerprint(a) == fingerprint(a.clone()) and fingerprint(a) != fingerprint(b)
    assert fingerprint(a) != fingerprint(a.view(4, 3)) != fingerprint(a.int())     # shape and dtype count too
    assert fingerprint(a, "x") != fingerprint(a, "y") and len(fingerprint(a, length=8)) == 8


def test_a_contrastive_task_is_keyed_by_its_captions_not_only_their_shape():
    import workbench as wb
    table = torch.randint(4, 30, (5, 2, 6))
    other = table.clone()
    other[0, 0, 0] += 1
    key = lambda t: wb.vl.ImageTextContrastive(t).config()  # noqa: E731
    assert key(table) == key(table.clone()) and key(table) != key(other)
