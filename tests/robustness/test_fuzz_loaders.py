"""The file loaders, fed malformed input (random structures, truncated or flipped bytes, huge
values): a ValueError that names the problem every time; never another exception, a hang,
or a silently wrong answer."""
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import workbench as wb
from workbench import multilabel as ml
from workbench.catalog import parse_catalog
from workbench.train.checkpoint import load_model, save_model

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 12, 10 ** 12) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=6),
    max_leaves=30)
FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _clear_or_valid(fn, *args):
    try:
        return fn(*args)
    except ValueError as e:
        assert str(e), "an error must say what is wrong"
        return None


@FUZZ
@given(json_values)
def test_real_label_lists(obj):
    assert _clear_or_valid(ml.parse_real, obj) is None or isinstance(obj, list)


@pytest.mark.parametrize("entry", [[[1]], [1000], [-1], ["3"], 5, None, [True]])
def test_real_labels_with_one_bad_entry(entry):
    lists = [[1]] * ml.N_VAL
    lists[7] = entry
    with pytest.raises(ValueError, match="class indices|one list"):
        ml.parse_real(lists)


class _Npz(dict):
    @property
    def files(self):
        return list(self)


@FUZZ
@given(st.integers(0, 5), st.integers(0, 4), st.floats(-2, 2) | st.just(float("nan")))
def test_rater_scores(n, which, value):
    names = np.array([[ml.val_filename(i), str(i % 1000)] for i in range(n)])
    scores = np.full(n, 0.5)
    arrays = _Npz(tensor=scores, info=names)
    if which == 0 and n:
        scores[0] = value
    elif which == 1:
        arrays = _Npz(tensor=scores)
    elif which == 2 and n:
        names[0, 0] = "not_a_val_file.JPEG"
    elif which == 3 and n:
        names[0, 1] = "1000"
    elif which == 4:
        arrays = _Npz(tensor=scores[None], info=names)
    out = _clear_or_valid(ml.parse_scores, arrays)
    if out is not None:
        assert out["score"].between(0, 1).all() and out["label"].between(0, 999).all()


@FUZZ
@given(json_values)
def test_mturk_votes(obj):
    out = _clear_or_valid(ml.parse_mturk, obj)
    if out is not None:
        assert (out.filter(like="votes_") >= 0).all().all()


@FUZZ
@given(st.sampled_from(["top1", "top5", "model", "img_size"]), st.sampled_from(["drop", "text", "huge", "nan"]))
def test_timm_tables(column, damage):
    good = pd.DataFrame({"model": ["a", "b"], "img_size": [224, 224], "top1": [80.0, 70.0], "top5": [95.0, 90.0],
                         "param_count": ["1,000.5", "3"]})
    bad = good.copy()
    if damage == "drop":
        bad = bad.drop(columns=[column])
    elif column in ("top1", "top5"):
        bad[column] = {"text": "x", "huge": 1e300, "nan": float("nan")}[damage]
    else:
        bad[column] = {"text": "x", "huge": 10 ** 18, "nan": None}[damage]
    out = _clear_or_valid(ml.parse_timm, {"val": good, "real": bad, "v2": good})
    if out is not None:
        assert out[["top1_val", "top1_real", "top1_v2"]].apply(lambda c: c.between(0, 1)).all().all()


@FUZZ
@given(json_values)
def test_imagenetv2_labels(obj):
    wnids = [f"n{i:08d}" for i in range(1000)]
    _clear_or_valid(ml.parse_imagenetv2, obj, {"image_filenames": [["a", wnids[0]]]}, wnids)
    _clear_or_valid(ml.parse_imagenetv2, {"a.jpeg": ["1"]}, obj, wnids)


@FUZZ
@given(st.text(max_size=200) | json_values.map(lambda v: json.dumps({"notebooks": v})))
def test_catalog(text):
    out = _clear_or_valid(parse_catalog, text)
    if out is not None:
        assert all(e["notebook"].endswith(".ipynb") for e in out)


def test_real_catalog_parses():
    assert len(wb.catalog.load_catalog()) >= 2


@FUZZ
@given(blob=st.binary(max_size=300))
def test_results_records(tmp_path_factory, blob):
    d = tmp_path_factory.mktemp("rec")
    (d / "r.json").write_bytes(blob)
    out = _clear_or_valid(wb.results.load_records, "x", d)
    if out is not None:
        assert len(out) == 1


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    return save_model(wb.create_model("resnet8", width=4), d / "m")


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["truncate", "flip", "sidecar", "kwargs"]), st.integers(0, 10 ** 6), st.data())
def test_checkpoints(saved, how, pos, data):
    d = saved.parent / f"fuzz-{how}"
    d.mkdir(exist_ok=True)
    side, tens = d / "m.json", d / "m.safetensors"
    shutil.copy(saved, side)
    shutil.copy(saved.with_suffix(".safetensors"), tens)
    blob = tens.read_bytes()
    meta = json.loads(side.read_text())
    if how == "truncate":
        tens.write_bytes(blob[: pos % len(blob)])
    elif how == "flip":
        b = bytearray(blob)
        b[pos % len(b)] ^= 0xFF
        tens.write_bytes(bytes(b))
    elif how == "sidecar":
        side.write_text(json.dumps(data.draw(json_values)))
    else:
        meta["model_kwargs"] = data.draw(st.dictionaries(st.sampled_from(["width", "num_classes", "depth", "x"]),
                                                         st.integers(-10, 10 ** 9) | st.text(max_size=3),
                                                         max_size=2))
        side.write_text(json.dumps(meta))
    with pytest.raises(ValueError):
        load_model(side)


def test_truncated_label_file_in_the_mirror_is_refused(tmp_path):
    mirror = tmp_path / "imagenet"
    mirror.mkdir()
    src = wb.config.data_dir()
    if src is None or not (src / "imagenet" / "real.json").is_file():
        pytest.skip("needs the ImageNet label mirror")
    blob = (src / "imagenet" / "real.json").read_bytes()
    (mirror / "real.json").write_bytes(blob[: len(blob) // 2])
    wb.config.set_data_dir(tmp_path)
    try:
        with pytest.raises(ValueError, match="SHA-256"):
            ml.real_labels()
    finally:
        wb.config.set_data_dir(None)
