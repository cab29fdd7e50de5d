"""Multi-label ImageNet metrics: exact answers on hand-made label sets, and on the real files
where the mirror has them (CI sets WORKBENCH_DATA_DIR to it)."""
import numpy as np
import pytest

import workbench as wb
from workbench import multilabel as ml

NAMES = [ml.val_filename(i) for i in range(6)]
ALL_VAL = ml.LabelSets(ml.val_filenames(), np.arange(ml.N_VAL + 1), np.zeros(ml.N_VAL, dtype=np.int64), source="val")
SETS = ml.LabelSets.from_lists([[1], [2, 3], [], [4], [5, 6, 7], [0]], NAMES, source="toy")


def test_toy_accuracies_exact():
    pred = np.array([1, 3, 9, 0, 7, 0])
    assert ml.real_accuracy(pred, NAMES, labels=SETS) == pytest.approx(4 / 5)  # image 2 has an empty set: left out
    top2 = np.array([[0, 1], [9, 9], [1, 2], [0, 4], [8, 9], [0, 1]])
    assert ml.real_accuracy(top2, NAMES, labels=SETS, k=2) == pytest.approx(3 / 5)
    assert ml.real_accuracy(top2, NAMES, labels=SETS, k=1) == pytest.approx(1 / 5)


def test_alignment_is_by_file_name():
    pred = np.array([1, 3, 9, 0, 7, 0])
    perm = np.array([5, 3, 0, 4, 1, 2])
    names = np.array(NAMES)
    assert ml.real_accuracy(pred[perm], names[perm], labels=SETS) == ml.real_accuracy(pred, NAMES, labels=SETS)
    # paths are accepted, the base name counts
    assert ml.real_accuracy(pred, [f"val/n0/{n}" for n in NAMES], labels=SETS) == pytest.approx(4 / 5)


def test_scores_become_topk():
    scores = np.tile(-np.arange(1000, dtype=np.float32) * 1e-6, (6, 1))  # no ties: then 0, 1, 2, ...
    scores[np.arange(6), [1, 3, 9, 0, 7, 0]] = 1.0
    assert ml.real_accuracy(scores, NAMES, labels=SETS) == pytest.approx(4 / 5)
    v = ml.variable_topk_accuracy(scores, NAMES, labels=SETS)
    # image 1 ({2,3}, k=2) guesses 3, 0: recall 1/2; image 4 ({5,6,7}, k=3) guesses 7, 0, 1: recall 1/3
    assert v["images"] == 5 and v["all"] == pytest.approx(2 / 5)
    assert v["recall"] == pytest.approx((1 + 0.5 + 0 + 1 / 3 + 1) / 5)


@pytest.mark.parametrize("call, message", [
    (lambda: ml.real_accuracy(np.array([1, 2]), NAMES, labels=SETS), "differ in length"),
    (lambda: ml.real_accuracy(np.array([1, 2]), ["a.jpg", "b.jpg"], labels=ALL_VAL), "not an ImageNet validation file"),
    (lambda: ml.real_accuracy(np.array([1, 2]), [NAMES[0], NAMES[0]], labels=ALL_VAL), "appears more than once"),
    (lambda: ml.real_accuracy(np.array([1, 2]), ["a.jpg", "b.jpg"], labels=SETS), "have no label set in toy"),
    (lambda: ml.real_accuracy(np.array([1, 2]), [NAMES[0], NAMES[0]], labels=SETS), "hold duplicates"),
    (lambda: ml.real_accuracy(np.array([1, 1000]), NAMES[:2], labels=SETS), r"outside 0..999"),
    (lambda: ml.real_accuracy(np.array([1, -1]), NAMES[:2], labels=SETS), r"outside 0..999"),
    (lambda: ml.real_accuracy(np.array([1, 2]), labels=SETS), "predictions without filenames are refused"),
    (lambda: ml.real_accuracy(np.zeros((2, 10), np.float32), NAMES[:2], labels=SETS), "need 1000 columns"),
    (lambda: ml.real_accuracy(np.array([1.0, 2.0]), NAMES[:2], labels=SETS), "need 1000 columns"),
    (lambda: ml.parse_real([[1]] * 10), "must hold a list of 50000 label lists"),
    (lambda: ml.parse_real({"a": 1}), "must hold a list of 50000"),
    (lambda: ml.LabelSets.from_lists([[1], [1000]], NAMES[:2]), r"class indices must lie in 0..999"),
    (lambda: ml.LabelSets.from_lists([[1], ["x"]], NAMES[:2]), "class indices must be integers"),
    (lambda: ml.LabelSets.from_lists([[1], 2], NAMES[:2]), "one list of class indices per image"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


real_files = pytest.mark.skipif(wb.config.data_dir() is None or not (wb.config.data_dir() / "imagenet").is_dir(),
                                reason="needs the ImageNet label mirror (WORKBENCH_DATA_DIR/imagenet)")


@real_files
def test_published_threshold_rebuilds_real_json_exactly():
    real = ml.real_labels()
    rebuilt = ml.labels_from_scores(0.8)
    assert np.array_equal(real.sizes, rebuilt.sizes)
    assert all(sorted(real[i]) == rebuilt[i] for i in range(ml.N_VAL))
    assert not np.array_equal(ml.labels_from_scores(0.5).sizes, real.sizes)


@real_files
def test_bundled_predictions_only_count_when_aligned():
    p = ml.bundled_predictions()
    real, orig = ml.real_accuracy(p.labels, p.filenames), ml.original_accuracy(p.labels, p.filenames)
    assert orig == pytest.approx(0.72732)   # the cleanlab arrays agree on 72.732% of images
    assert real > orig
    # the same predictions read as if in file-name order are nonsense, which is why filenames are required
    assert ml.real_accuracy(p.labels, order="sorted") < 0.01
    by_size = ml.accuracy_by_set_size(p.labels, p.filenames)
    assert by_size["images"].sum() == ml.N_VAL


def test_predict_imagenet_on_a_tiny_generated_folder(tmp_path):
    import torch
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "n01440764").mkdir()
    for k in (3, 1, 2):  # written out of order, one in a sub-folder
        folder = tmp_path / "n01440764" if k == 2 else tmp_path
        arr = rng.integers(0, 256, (40 + 10 * k, 50, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / ml.val_filename(k - 1))
    (tmp_path / "notes.txt").write_text("not an image")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 1000))
    p = ml.predict_imagenet(model, tmp_path, topk=3, batch_size=2, resize=36, crop=32, device="cpu", progress=False)
    assert sorted(p.filenames) == [ml.val_filename(i) for i in range(3)] and p.labels.shape == (3, 3)
    for name, top in zip(p.filenames, p.labels):
        found = next(tmp_path.rglob(str(name)))
        with Image.open(found) as im:
            x = ml.preprocess(im, 36, 32)
        assert x.shape == (3, 32, 32)
        assert top.tolist() == model(x[None]).topk(3).indices[0].tolist()
    # the result feeds the metrics directly, aligned by name
    sets = ml.LabelSets.from_lists([[int(t[0])] for t in p.labels], p.filenames)
    assert ml.real_accuracy(p.labels, p.filenames, labels=sets, k=3) == 1.0
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ml.predict_imagenet(model, tmp_path / "missing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no ILSVRC2012_val"):
        ml.predict_imagenet(model, tmp_path / "empty", progress=False)


def test_agreement_between_label_sources():
    a = ml.LabelSets.from_lists([[1], [2, 3], [], [4], [5]], NAMES[:5], source="A")
    b = ml.LabelSets.from_lists([[1], [2], [7], [4, 8], [6]], NAMES[:5], source="B")
    table = ml.agreement(a, b).set_index("relation")["images"].to_dict()
    assert table == {"identical": 1, "B inside A": 1, "an empty set": 1, "A inside B": 1, "disjoint": 1}
