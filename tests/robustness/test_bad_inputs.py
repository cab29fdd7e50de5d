"""One table of bad inputs and the exact error each gets: the argument, what was expected, the fix."""
from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench import bn_only, config, similarity
from workbench import multilabel as ml
from workbench.data import DataUnavailableError, ImageDataset, Loader
from workbench.guidance import Guidance
from workbench.train import CheckpointError
from workbench.train.checkpoint import load_model, save_model


def _shapes():
    return wb.load("shapes", "test", subset=64)


def _checkpoint_of_other_architecture(tmp_path):
    save_model(wb.create_model("resnet8", num_classes=4), tmp_path / "m")
    load_model(tmp_path / "m", model=wb.create_model("resnet8", num_classes=10))


def _no_source(tmp_path, monkeypatch):
    from workbench.data import sources
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sources.FASHION_MNIST, "debian", tmp_path / "none")
    wb.load("fashion_mnist")


class _Unused(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.spare = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.used(x)


def _xy(n=8, bad=False):
    x = torch.randn(n, 4)
    if bad:
        x[3, 1] = float("inf")
    return x, torch.randint(0, 3, (n,))


CASES = [
    ("unknown model", lambda t, m: wb.create_model("resnet21"), ValueError,
     r"unknown model 'resnet21'.*valid names: .*resnet20"),
    ("unknown model argument", lambda t, m: wb.create_model("resnet20", widht=8), TypeError,
     r"resnet20 got unknown argument\(s\) widht; it takes: num_classes, in_chans, width"),
    ("unknown dataset", lambda t, m: wb.load("cifar100"), ValueError,
     r"unknown dataset 'cifar100'; valid names: cifar10, .*fashion_mnist, .*shapes"),
    ("unknown policy", lambda t, m: bn_only.configure(wb.create_model("resnet8"), "bn"), ValueError,
     r"unknown policy 'bn'; choose one of bn_only, full, random_per_channel, random_anywhere"),
    ("unknown layer", lambda t, m: wb.run_with_cache(wb.create_model("resnet8"), torch.zeros(1, 3, 32, 32), ["layer4"]),
     ValueError, r"no module named 'layer4' in CifarResNet; available hook points: stem, layer1"),
    ("uint8 images to a model", lambda t, m: wb.create_model("resnet8")(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)),
     TypeError, r"expects float images, got dtype torch.uint8; convert uint8 images with wb.data.to_float"),
    ("wrong channel count", lambda t, m: wb.create_model("resnet8")(torch.zeros(2, 1, 32, 32)), ValueError,
     r"expects images of shape \[batch, 3, H, W\], got \(2, 1, 32, 32\); create the model with in_chans=1"),
    ("channels-last images in a dataset", lambda t, m: ImageDataset(torch.zeros(2, 8, 8, 3, dtype=torch.uint8),
     torch.zeros(2, dtype=torch.int64), ["a"]), ValueError, r"channels look last: use images.permute\(0, 3, 1, 2\)"),
    ("labels outside the classes", lambda t, m: ImageDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
     torch.tensor([0, 5]), ["a", "b"]), ValueError, r"labels range over 0..5 but there are 2 classes"),
    ("class count differs from the data", lambda t, m: wb.fit(wb.create_model("resnet8", num_classes=5), _shapes(),
     progress=False), ValueError, r"the model predicts 5 classes but shapes has 10; create the model with num_classes=10"),
    ("no BatchNorm for bn_only", lambda t, m: bn_only.configure(wb.create_model("mlp", depth=2, width=8), "bn_only"),
     ValueError, r"MLP has no BatchNorm layer with affine parameters"),
    ("k above the fan-in", lambda t, m: bn_only.configure(wb.create_model("resnet8"), "random_per_channel", k=28),
     ValueError, r"k=28 weights per output channel is more than the fan-in of stem.0.weight \(27 inputs"),
    ("guide layer that does not exist", lambda t, m: Guidance(wb.create_model("resnet8"), wb.create_model("mlp"),
     pairs=[("layers.0", "layer7")]), ValueError, r"guide layer: no module named 'layer7'"),
    ("too few examples for unbiased CKA", lambda t, m: similarity.linear_cka(torch.randn(3, 4), torch.randn(3, 4),
     debiased=True), ValueError, r"need at least 4 examples, got 3; the unbiased estimator divides by n - 3"),
    ("examples that do not match", lambda t, m: similarity.linear_cka(torch.randn(10, 4), torch.randn(9, 4)),
     ValueError, r"X has 10 examples and Y has 9"),
    ("unknown optimizer", lambda t, m: wb.fit(wb.create_model("resnet8"), _shapes(), optimizer="lion", progress=False),
     ValueError, r"unknown optimizer 'lion'; choose one of sgd, adam, adamw"),
    ("unknown augmentation", lambda t, m: Loader(_shapes(), augment="mixup"), ValueError,
     r"unknown augment 'mixup'; choose one of"),
    ("unknown mode", lambda t, m: config.set_mode("fast"), ValueError,
     r"unknown mode 'fast': expected one of smoke, laptop, paper"),
    ("checkpoint of another architecture", lambda t, m: _checkpoint_of_other_architecture(t), CheckpointError,
     r"shape differs: fc.weight: model \(10, 64\) vs checkpoint .*create the model with the same name and arguments"),
    ("predictions and file names of different lengths",
     lambda t, m: ml.real_accuracy([1, 2, 3], [ml.val_filename(0)]), ValueError,
     r"predictions \(3\) and filenames \(1\) differ in length: one file name per prediction"),
    ("duplicated file names", lambda t, m: ml.real_accuracy([1, 2], [ml.val_filename(4)] * 2), ValueError,
     r"filenames\[1\] = 'ILSVRC2012_val_00000005.JPEG' appears more than once"),
    ("predictions without file names", lambda t, m: ml.real_accuracy([1, 2]), ValueError,
     r"predictions without filenames are refused: pass the file name of each prediction, or order='sorted'"),
    ("class index out of range", lambda t, m: ml.real_accuracy([1000], [ml.val_filename(0)]), ValueError,
     r"predictions hold class indices outside 0..999"),
    ("label file of the wrong shape", lambda t, m: ml.parse_real([[1], [2]]), ValueError,
     r"real.json must hold a list of 50000 label lists \(one per validation image\), got list of length 2"),
    ("a guide layer that does not exist",
     lambda t, m: Guidance(wb.create_model("resnet8"), wb.create_model("plain8"), pairs=[("layer1.0", "layer7.0")]),
     ValueError, r"guide layer: .*layer7.0"),
    ("a loss that ignores selected parameters",
     lambda t, m: wb.hessian.eigenvalues(_Unused(), torch.nn.functional.cross_entropy, [_xy()], top_k=1), ValueError,
     r"the loss does not depend on 2 selected parameters, e\.g\. \['spare.weight', 'spare.bias'\]; leave them out with params="),
    ("no batches for the Hessian",
     lambda t, m: wb.hessian.trace(_Unused(), torch.nn.functional.cross_entropy, [], n_samples=4), ValueError,
     r"batches is empty: pass a list of \(inputs, targets\) batches"),
    ("non-finite Hessian-vector products",
     lambda t, m: wb.hessian.eigenvalues(_Unused(), torch.nn.functional.cross_entropy, [_xy(), _xy(bad=True)],
                                         top_k=1, params="used", start="random"), FloatingPointError,
     r"a Hessian-vector product was not finite on batch 1 \(parameters \['used.weight', 'used.bias'\]"),
    ("a direction made for another model",
     lambda t, m: wb.landscape.slice_1d(wb.create_model("resnet8"), wb.landscape.random_direction(
         wb.create_model("resnet8", width=8)), [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))], progress=False),
     ValueError, r"direction\['stem.0.weight'\] has shape \(8, 3, 3, 3\) but the parameter has shape \(16, 3, 3, 3\)"),
    ("an even landscape grid", lambda t, m: wb.landscape.grid(1.0, 20), ValueError,
     r"n must be an odd integer >= 3 so the grid passes through the model"),
    ("a recipe switch that does not exist", lambda t, m: wb.dynamics.training_recipe(["ema", "cosin"], epochs=4),
     ValueError, r"unknown recipe switch 'cosin' \(did you mean 'cosine'\?\); the switches are cosine, ema"),
    ("a negative gradient-noise scale", lambda t, m: wb.dynamics.GradientNoise(eta=-0.01), ValueError,
     r"the noise scale eta is a variance, so it must be >= 0 \(the paper uses 0.01, 0.3 or 1.0\); got -0.01"),
    ("a model family of width zero", lambda t, m: wb.dynamics.scale_grid(width=[0, 16]), ValueError,
     r"width \(the first stage's channels\) must be a positive integer, got 0"),
    ("a batch that does not divide the data", lambda t, m: wb.dynamics.large_batch(3000, 10_000, exact=True),
     ValueError, r"batch_size 3000 does not divide the 10000 training images \(the last batch would hold 1000\); "
                 r"sizes near it that do: \[2000, 2500, 5000\]"),
    ("a closed form for an activation without one",
     lambda t, m: wb.dynamics.theory.kernel_recursion(torch.ones(4), 3, activation="gelu"), ValueError,
     r"measured only, no closed form"),
    ("a clip of one frame", lambda t, m: wb.data.motion_clips(_shapes(), wb.load("shapes", "test", subset=4), 4,
                                                               frames=1), ValueError,
     r"frames must be an integer >= 2 \(motion needs two frames\), got 1"),
    ("a sequence order that does not exist", lambda t, m: wb.create_model("seq_rnn", read="spiral"), ValueError,
     r"read is one of rows, pixels, permuted, got 'spiral'"),
    ("a density outside (0, 1]", lambda t, m: wb.sequence.graph_mask(16, 1.5), ValueError,
     r"density is the kept fraction of connections, in \(0, 1\], got 1.5"),
    ("a graph model networkx does not know", lambda t, m: wb.sequence.graph_mask(16, 0.5, "small_world"), ValueError,
     r"graph is one of erdos_renyi, watts_strogatz, barabasi_albert, got 'small_world'"),
    ("sequences of the wrong width", lambda t, m: wb.create_model("rnn_sequence", input_size=2)(torch.zeros(4, 10, 3)),
     ValueError, r"SequenceModel takes sequences \[batch, steps, 2\], got \(4, 10, 3\)"),
    ("no data source", _no_source, DataUnavailableError,
     r"no source of 'fashion_mnist' \(train\) could be reached. To fix: .*apt-get install dataset-fashion-mnist"),
]


@pytest.mark.parametrize("what,call,error,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error_and_writes_nothing(what, call, error, message, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    before = set(p for p in tmp_path.rglob("*"))
    with pytest.raises(error, match=message):
        call(tmp_path, monkeypatch)
    after = set(p for p in tmp_path.rglob("*")) - before
    partial = [p for p in after if p.suffix == ".tmp"]
    assert not partial, f"{what}: left partial files {partial}"


def test_the_table_is_large_enough():
    assert len(CASES) >= 15


def test_dropout_in_train_mode_is_turned_off_with_a_warning_and_restored():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Dropout(0.5), torch.nn.Linear(6, 3)).train()
    x, y = _xy()
    with pytest.warns(UserWarning, match="train mode with active dropout; dropout is turned off"):
        a = wb.hessian.eigenvalues(model, torch.nn.functional.cross_entropy, [(x, y)], top_k=1, tol=1e-8)
    b = wb.hessian.eigenvalues(model.eval(), torch.nn.functional.cross_entropy, [(x, y)], top_k=1, tol=1e-8)
    assert a.values[0] == pytest.approx(b.values[0], rel=1e-6)     # dropout really was off
    model.train()
    with pytest.warns(UserWarning, match="dropout"):
        wb.landscape.slice_1d(model, wb.landscape.random_direction(model), [(x, y)], [0.0], progress=False)
    assert model.training and model[1].training
