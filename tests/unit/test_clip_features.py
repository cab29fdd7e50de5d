"""Frozen per-frame features and temporal heads trained on them (wb.sequence.features, TS-LSTM notebook 51)."""
import pytest
import torch

import workbench as wb
from workbench.data import ImageDataset
from workbench.sequence import (ClipFeatures, FeatureClassification, FeatureHead, FeatureLoader, clip_features,
                                fuse_logits, head_from_model, train_head)

FRAMES, SIZE = 4, 8


def _clips(n=10, seed=0, classes=3):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, FRAMES * SIZE, SIZE), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=g)
    return ImageDataset(images, labels, [f"c{i}" for i in range(classes)], "toyclips", "train",
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "random filmstrips")


def _net(head="mean", stream="rgb", seed=0, **kw):
    torch.manual_seed(seed)
    return wb.create_model("video_net", num_classes=3, frames=FRAMES, frame_size=SIZE, head=head, stream=stream,
                           width=4, hidden=5, tconv_channels=3, **kw).eval()


def _input(clips):
    return wb.data.Loader(clips, batch_size=len(clips), shuffle=False, device="cpu").batch(torch.arange(len(clips)))[0]


def test_features_are_the_trunks_outputs():
    clips, m = _clips(), _net()
    f = clip_features(m, clips, batch_size=3)                       # several batches, one result
    assert f.x.shape == (10, FRAMES, 16) and torch.equal(f.y, clips.labels) and f.classes == clips.classes
    x = _input(clips)
    _, cache = wb.probe.run_with_cache(m, x, names=["hook_features"])
    # by hand: every frame through the trunk
    frames = wb.data.filmstrip_frames(x, FRAMES)                     # [N, T, C, H, W]
    with torch.no_grad():
        by_hand = m.trunks[0](frames.reshape(-1, 3, SIZE, SIZE)).view(10, FRAMES, -1)
    torch.testing.assert_close(f.x, by_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f.x, cache["hook_features"], rtol=1e-5, atol=1e-5)


def test_diff_stream_reads_frame_differences():
    clips, m = _clips(), _net(stream="two")
    rgb, diff = clip_features(m, clips, stream=0), clip_features(m, clips, stream=1)
    frames = wb.data.filmstrip_frames(_input(clips), FRAMES)
    d = torch.cat([torch.zeros_like(frames[:, :1]), frames[:, 1:] - frames[:, :-1]], 1)
    with torch.no_grad():
        by_hand = m.trunks[1](d.reshape(-1, 3, SIZE, SIZE)).view(10, FRAMES, -1)
    torch.testing.assert_close(diff.x, by_hand, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(rgb.x, diff.x)


@pytest.mark.parametrize("head", ["mean", "lstm", "segments", "tconv"])
def test_head_on_stored_features_gives_the_full_models_logits(head):
    clips, m = _clips(), _net(head)
    with torch.no_grad():
        full = m(_input(clips))
        only = head_from_model(m)(clip_features(m, clips).x)
    torch.testing.assert_close(only, full, rtol=1e-5, atol=1e-5)


def test_two_streams_late_fusion_is_the_two_stream_model():
    clips, m = _clips(), _net("segments", stream="two")
    with torch.no_grad():
        full = m(_input(clips))
        parts = [head_from_model(m, s)(clip_features(m, clips, stream=s).x) for s in (0, 1)]
    torch.testing.assert_close(fuse_logits(*parts), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fuse_logits(torch.ones(2, 3), torch.zeros(2, 3)), torch.full((2, 3), 0.5))


def test_tconv_of_width_one_without_relu_is_mean_pooling_after_a_linear_map():
    torch.manual_seed(0)
    h = FeatureHead("tconv", 6, 5, 4, kernel_sizes=(1,), tconv_channels=3, tconv_relu=False)
    f = torch.randn(2, 5, 6)
    conv, fc = h.head.convs[0], h.head.fc
    expect = fc(f.mean(1) @ conv.weight[:, :, 0].T + conv.bias)
    torch.testing.assert_close(h(f), expect)


def test_train_head_learns_a_temporal_order_that_mean_pooling_cannot_see():
    # class = whether feature 0 rises or falls over time; every clip holds the same set of values, so the mean
    # over time is the same for both classes and mean pooling is at chance; a segment LSTM sees the order
    g = torch.Generator().manual_seed(0)
    n, T = 400, 6
    y = torch.randint(0, 2, (n,), generator=g)
    ramp = torch.linspace(-1, 1, T)
    x = torch.randn(n, T, 3, generator=g) * 0.05
    x[:, :, 0] += torch.where(y[:, None] == 1, ramp, ramp.flip(0))
    train, test = ClipFeatures(x[:300], y[:300], ["down", "up"]), ClipFeatures(x[300:], y[300:], ["down", "up"], split="test")
    kw = dict(epochs=15, optimizer="adam", lr=1e-2, weight_decay=0.0, progress=False, cache=False)
    seg = train_head("segments", train, test, seed=0, head_kwargs={"hidden": 8}, **kw)
    mean = train_head("mean", train, test, seed=0, **kw)
    assert seg.test_acc > 0.95
    assert mean.test_acc < 0.7


def test_train_head_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    f = ClipFeatures(torch.randn(20, 4, 3), torch.arange(20) % 2)
    a = train_head("mean", f, f, seed=1, epochs=1, progress=False)
    b = train_head("mean", f, f, seed=1, epochs=1, progress=False)
    assert list(tmp_path.rglob("*")), "nothing was written to the cache"
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)
    assert a.test_acc == b.test_acc


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\[N, T, F\]"):
        ClipFeatures(torch.randn(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class labels"):
        ClipFeatures(torch.randn(3, 4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="head is one of"):
        FeatureHead("attention", 4, 3, 2)
    with pytest.raises(ValueError, match=r"\[batch, 3, 4\]"):
        FeatureHead("mean", 4, 3, 2)(torch.randn(2, 5, 4))
    with pytest.raises(TypeError, match="video_net"):
        clip_features(wb.create_model("resnet8"), _clips())
    with pytest.raises(ValueError, match="stream is the index"):
        clip_features(_net(), _clips(), stream=1)
    with pytest.raises(TypeError, match="FeatureLoader needs ClipFeatures"):
        FeatureLoader(torch.randn(3, 4, 2))
    f = ClipFeatures(torch.randn(6, 3, 4), torch.arange(6) % 2)
    with pytest.raises(ValueError, match="num_classes=2"):
        FeatureClassification().check_data(FeatureHead("mean", 4, 3, 5), f)
    with pytest.raises(ValueError, match="features=4"):
        FeatureClassification().check_data(FeatureHead("mean", 7, 3, 2), f)
    with pytest.raises(ValueError, match="FeatureLoader"):
        FeatureClassification().check_data(FeatureHead("mean", 4, 3, 2), _clips())
    with pytest.raises(ValueError, match="same shape"):
        fuse_logits(torch.zeros(2, 3), torch.zeros(3, 3))


def _feats(n=12, seed=0, f=3, classes=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return ClipFeatures(torch.randn(n, FRAMES, f, generator=g), y, [f"c{i}" for i in range(classes)], f"toy{seed}")


def test_concat_features_puts_streams_side_by_side():
    a, b = _feats(seed=0), _feats(seed=1, f=2)
    c = wb.sequence.concat_features(a, b, name="a+b")
    assert c.x.shape == (12, FRAMES, 5) and c.name == "a+b" and torch.equal(c.y, a.y)
    assert torch.equal(c.x[..., :3], a.x) and torch.equal(c.x[..., 3:], b.x)
    with pytest.raises(ValueError, match="same clips"):
        wb.sequence.concat_features(a, _feats(n=9))
    with pytest.raises(TypeError, match="ClipFeatures"):
        wb.sequence.concat_features(a, a.x)


def test_compare_heads_rows_and_late_fusion_are_train_heads():
    feats = {"a": (_feats(seed=0), _feats(seed=2)), "b": (_feats(seed=1), _feats(seed=3))}
    kw = dict(head_kwargs=dict(hidden=4, tconv_channels=3), epochs=1, optimizer="adam", lr=1e-2, cache=False,
              progress=False)
    runs, preds = wb.sequence.compare_heads(feats, ["mean", "segments"], [0, 1], fuse={"ab": ("a", "b")}, **kw)
    assert len(runs) == 2 * 2 * 3 and set(runs.stream) == {"a", "b", "ab"} and runs.acc.between(0, 1).all()
    # by hand: seed 1, TS-LSTM, the mean of the two heads' logits
    za, zb = (train_head("segments", *feats[s], seed=1, **kw).model.eval()(feats[s][1].x).detach() for s in "ab")
    p = ((za + zb) / 2).argmax(1)
    assert torch.equal(preds["ab", "segments", 1], p)
    row = runs[(runs.stream == "ab") & (runs["head"] == "segments") & (runs.seed == 1)].acc.item()
    assert row == pytest.approx(float((p == feats["a"][1].y).float().mean()))
    with pytest.raises(ValueError, match="not in feats"):
        wb.sequence.compare_heads(feats, ["mean"], [0], fuse={"x": ("a", "c")}, **kw)
    with pytest.raises(ValueError, match="same clips"):
        wb.sequence.compare_heads({"a": feats["a"], "c": (_feats(), _feats(n=12, classes=2))}, ["mean"], [0], **kw)
