"""wb.vl and the image-text models: the losses' known values, retrieval metrics on a hand-made matrix,
descriptions against names, box IoU, NMS and RoIAlign against hand-computed cases, training through fit."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.data import scenes as S
from workbench.vl import (CaptionWords, ImageTextContrastive, box_iou, caption_table, class_embeddings,
                          description_scores, embed_images, hinge_hardest, hinge_sum, info_nce, nms,
                          retrieval_metrics, roi_align, zero_shot_logits)


def test_info_nce_known_values():
    eye = torch.eye(8)
    assert float(info_nce(eye, eye, math.log(100.0))) < 1e-3        # aligned one-hot pairs, low temperature
    same = F.normalize(torch.ones(8, 8), dim=1)
    assert float(info_nce(same, same, 2.0)) == pytest.approx(math.log(8), rel=1e-6)  # nothing to tell apart
    with pytest.raises(ValueError, match="same shape"):
        info_nce(eye, eye[:4], 1.0)


def test_ranking_losses_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # s = [[1, 0.6], [0, 0.8]]; positives 1 and 0.8; margin 0.2
    # i2t: image 0 vs text 1: 0.2 - 1 + 0.6 < 0 -> 0; image 1 vs text 0: 0.2 - 0.8 + 0 -> 0
    # t2i: text 0 vs image 1: 0.2 - 1 + 0 -> 0; text 1 vs image 0: 0.2 - 0.8 + 0.6 = 0 -> 0
    assert float(hinge_sum(img, txt, 0.2)) == pytest.approx(0.0)
    # margin 0.5: i2t row 0: 0.1; row 1: 0; t2i col 0: 0; col 1: 0.3 -> sum 0.4 over 2 = 0.2
    assert float(hinge_sum(img, txt, 0.5)) == pytest.approx(0.2)
    assert float(hinge_hardest(img, txt, 0.5)) == pytest.approx(0.2)
    three_img, three_txt = torch.eye(3), torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.9, 0, 0.1]])
    # hardest keeps the larger of two violations where the sum adds both
    assert float(hinge_hardest(three_img, three_txt, 1.0)) < float(hinge_sum(three_img, three_txt, 1.0))
    # two pairs with the same caption: each is the other's violation (margin 0.5: 0.5 - 1 + 1 = 0.5, both ways);
    # marked as the same caption, they are not negatives and nothing is left to violate
    same_txt = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    img2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert float(hinge_hardest(img2, same_txt, 0.5)) == pytest.approx(1.0)
    dup = torch.tensor([[False, True], [True, False]])
    assert float(hinge_hardest(img2, same_txt, 0.5, dup)) == pytest.approx(0.0)
    assert float(hinge_sum(img2, same_txt, 0.5, dup)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="same must be a \\[B, B\\] mask"):
        hinge_sum(img2, same_txt, 0.5, torch.zeros(3, 3, dtype=torch.bool))


def test_retrieval_metrics_on_a_hand_made_matrix():
    s = torch.tensor([[0.9, 0.1, 0.0, 0.0],
                      [0.8, 0.5, 0.0, 0.0],    # image 1's caption ranks 2nd
                      [0.0, 0.0, 0.1, 0.7],    # image 2's caption ranks 2nd
                      [0.0, 0.0, 0.0, 0.6]])
    m = retrieval_metrics(s, ks=(1, 2))
    assert m["i2t_R@1"] == 0.5 and m["i2t_R@2"] == 1.0
    # texts: text 0 -> image 0 first (0.9 > 0.8); text 1 -> image 1 (0.5) first; text 2: image 2 (0.1) first;
    # text 3: image 2 has 0.7 > 0.6 -> rank 2
    assert m["t2i_R@1"] == 0.75 and m["t2i_R@2"] == 1.0
    assert m["i2t_medr"] == 1.0   # ranks [1, 2, 2, 1]: torch's median takes the lower middle value
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(torch.zeros(2, 3))


def test_box_iou_and_nms_by_hand():
    a = torch.tensor([[0.0, 0, 2, 2], [1, 1, 3, 3], [10, 10, 11, 11]])
    iou = box_iou(a, a)
    assert float(iou[0, 1]) == pytest.approx(1 / 7) and float(iou[0, 2]) == 0.0 and float(iou[2, 2]) == 1.0
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box 3 (0.95) first; box 0 overlaps it 0.9 -> dropped; box 1 overlaps box 3 by 72/90 = 0.8 -> dropped
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]


def test_roi_align_whole_image_is_adaptive_average_pooling():
    torch.manual_seed(0)
    f = torch.randn(2, 3, 8, 8)
    boxes = torch.tensor([[1.0, 0, 0, 8, 8], [0, 0, 0, 8, 8]])
    out = roi_align(f, boxes, 4, sampling_ratio=2)
    assert torch.allclose(out[0], F.adaptive_avg_pool2d(f[1], 4), atol=1e-6)
    assert torch.allclose(out[1], F.adaptive_avg_pool2d(f[0], 4), atol=1e-6)
    # a box over half the map at stride 2: feature coordinates are input pixels / 2
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    half = roi_align(ramp, torch.tensor([[0.0, 0, 0, 8, 16]]), (1, 2), spatial_scale=0.5, sampling_ratio=2)
    # bins cover x in [-0.5, 1.5) and [1.5, 3.5): samples at 0, 1 and 2, 3 -> means 0.5 and 2.5
    assert half.flatten().tolist() == pytest.approx([0.5, 2.5])


def test_two_tower_trains_on_scenes_and_scores():
    items = wb.load("fashion_mnist", "train", subset=1000)
    sc = S.make_scenes(items, 128, size=32, max_objects=1, seed=0)
    data = sc.as_dataset("index")
    table = caption_table(sc, length=16)
    assert table.shape == (128, 3, 16)
    torch.manual_seed(0)
    model = wb.create_model("clip_tiny", context=16, width=8, text_width=32, embed_dim=32)
    res = wb.fit(model, data, data, task=ImageTextContrastive(table), epochs=8, batch_size=32, lr=3e-3,
                 optimizer="adamw", augment=None, progress=False, weight_decay=0.0)
    h = res.history
    assert h["train_loss"].iloc[-1] < min(math.log(32), h["train_loss"].iloc[0])  # learning, below chance
    assert h["test_acc"].iloc[-1] > 3 / 128   # among all 128 scenes (one evaluation batch): 3x chance
    emb = embed_images(model, data)
    names = [w for w, _ in S.ITEM_WORDS]
    by_name = zero_shot_logits(emb, class_embeddings(model, names, ["a photo of a {}"], 16))
    by_desc, per = description_scores(model, emb, {n: [f"a photo of a {n}"] for n in names}, 16)
    assert torch.allclose(by_name, by_desc, atol=1e-5)               # one descriptor = the name prompt
    assert per["coat"].shape == (128, 1)
    with pytest.raises(ValueError, match="needs a '{}'"):
        class_embeddings(model, names, ["a photo"])
    with pytest.raises(ValueError, match="non-empty list of descriptions"):
        description_scores(model, emb, {"coat": ["a coat"], "bag": []}, 16)
    # the bag-of-words baseline runs through fit too
    torch.manual_seed(0)
    words = wb.create_model("clip_tiny", context=16, width=8, text_width=32, embed_dim=32, word_head=True)
    out = wb.fit(words, data, task=CaptionWords(table), epochs=1, batch_size=32, lr=1e-3, optimizer="adamw",
                 augment=None, progress=False)
    assert math.isfinite(out.history["train_loss"].iloc[-1])
    with pytest.raises(ValueError, match="word head"):
        wb.fit(model, data, task=CaptionWords(table), progress=False)


def test_text_encoders_and_vqa_shapes():
    tokens = S.tokenize(["a red coat on grass", "two bags"], 12)
    for kind in ("transformer", "gru"):
        m = wb.create_model("clip_tiny", text_kind=kind, context=12, width=8)
        e = m.encode_text(tokens)
        assert e.shape == (2, 64) and torch.allclose(e.norm(dim=1), torch.ones(2))
    # padding after <eos> does not change a caption's embedding
    m = wb.create_model("clip_tiny", context=16, width=8).eval()
    short, longer = S.tokenize(["a red coat"], 8), S.tokenize(["a red coat"], 16)
    assert torch.allclose(m.encode_text(short), m.encode_text(longer), atol=1e-5)
    with pytest.raises(ValueError, match="longer than the context"):
        m.encode_text(S.tokenize(["a"], 20))
    v = wb.create_model("vqa_tiny", answers=5, width=8)
    assert v(torch.randn(2, 3, 32, 32), tokens).shape == (2, 5)
    blind = wb.create_model("vqa_tiny", answers=5, width=8, image=False)
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    assert torch.equal(blind.eval()(x1, tokens), blind(x2, tokens))  # the question-only baseline ignores images


def test_maps_questions_and_vqa_through_fit():
    from workbench.data import maps as M
    m = M.make_maps(60, size=32, seed=0)
    assert torch.equal(M.make_maps(60, size=32, seed=0).images, m.images)
    # counts agree with the masks: a building is a block of its own, water and fields cover pixels
    assert ((m.masks == 4).flatten(1).any(1) == (m.counts[:, 4] > 0)).all()
    qs = M.make_questions(m, 4, seed=1)
    assert len(qs) == 240 and {q["kind"] for q in qs} == {"presence", "comparison", "count", "area"}
    for q in qs:
        i = q["scene"]
        if q["question"] == "how many buildings are there":
            assert q["answer"] == str(min(int(m.counts[i, 4]), 6))
        if q["question"] == "is there water":
            assert q["answer"] == ("yes" if (m.masks[i] == 1).any() else "no")
        if q["question"] == "what is the area of water":
            share = float((m.masks[i] == 1).float().mean())
            assert q["answer"] == ("none" if share == 0 else "small" if share < 0.05 else
                                   "medium" if share < 0.15 else "large")
    pres = [q["answer"] for q in qs if q["kind"] == "presence"]
    assert 0.3 < pres.count("yes") / len(pres) < 0.7                       # balanced yes / no
    assert all(S.VOCAB.index("<unk>") not in S.tokenize(q["question"], 12)[0] for q in qs)
    items = wb.load("fashion_mnist", "train", subset=500)
    sq = M.make_questions(S.make_scenes(items, 20, size=32, seed=0), 2)
    assert all(q["answer"] in M.ANSWERS for q in sq)
    data = M.VQAData.build(m.images, qs)
    from workbench.vl import VQATask, vqa_accuracy
    torch.manual_seed(0)
    model = wb.create_model("vqa_tiny", answers=len(M.ANSWERS), width=8, context=12)
    res = wb.fit(model, M.VQALoader(data, 64), M.VQALoader(data, 240, shuffle=False), task=VQATask(), epochs=3,
                 lr=1e-3, optimizer="adamw", progress=False, weight_decay=0.0)
    acc = vqa_accuracy(model, data)
    assert acc["all"] == pytest.approx(res.history["test_acc"].iloc[-1]) and set(acc) == {
        "all", "presence", "comparison", "count", "area"}
    with pytest.raises(ValueError, match="question kinds"):
        M.make_questions(m, 2, kinds=["colour"])


def test_box_ap_known_cases():
    from workbench.vl import box_ap
    gt = [{"boxes": torch.tensor([[10.0, 10, 30, 30], [40, 40, 60, 60]]), "labels": torch.tensor([0, 1])}]
    perfect = [{"boxes": gt[0]["boxes"].clone(), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 1])}]
    assert box_ap(perfect, gt)["AP"] == pytest.approx(1.0)
    wrong_class = [{"boxes": gt[0]["boxes"].clone(), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 0])}]
    assert box_ap(wrong_class, gt)["AP50"] == pytest.approx(0.0)
    # a box shifted to IoU 0.6 counts at 0.5 but not at 0.75
    shifted = [{"boxes": torch.tensor([[15.0, 10, 35, 30], [40, 40, 60, 60]]), "scores": torch.tensor([0.9, 0.8]),
                "labels": torch.tensor([0, 1])}]
    r = box_ap(shifted, gt)
    assert r["AP50"] == pytest.approx(1.0) and r["AP75"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one per image"):
        box_ap(perfect, gt + gt)
    flat = [{"boxes": torch.tensor([[10.0, 10, 10, 30]]), "labels": torch.tensor([0])}]
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\]\[0\] = \[10.0, 10.0, 10.0, 30.0\] has zero area"):
        box_ap(perfect[:1], flat)
    outside = [{"boxes": torch.tensor([[10.0, 10, 30, 30], [50, 50, 70, 60]]), "scores": torch.tensor([0.9, 0.8]),
                "labels": torch.tensor([0, 1])}]
    with pytest.raises(ValueError, match=r"detections\[0\]\['boxes'\]\[1\] .* reaches outside the 64x64 image"):
        box_ap(outside, gt)
    from workbench.vl import DetectionData
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="reaches outside the 32x32 image"):
        DetectionData(images, torch.tensor([[[0.0, 0, 40, 20], [float("nan")] * 4]]), torch.tensor([[0, -1]]))
    DetectionData(images, torch.tensor([[[0.0, 0, 32, 20], [float("nan")] * 4]]), torch.tensor([[0, -1]]))


def test_vild_proposals_training_and_detection():
    from workbench.vl import DetectionData, DetectionLoader, ViLDStudent, ViLDTask, detect, proposals
    items = wb.load("fashion_mnist", "train", subset=1000)
    sc = S.make_scenes(items, 48, size=32, max_objects=2, seed=0)
    data = DetectionData.from_scenes(sc, hide=[4])                       # coats: a novel class, never labelled
    assert not (data.labels == 4).any() and torch.isnan(data.boxes[data.labels < 0]).all()
    # every labelled box has a proposal matched to its label
    rois, matched = proposals(data.boxes[:8], data.labels[:8], 32, generator=torch.Generator().manual_seed(0))
    for b in range(8):
        for lab in data.labels[b][data.labels[b] >= 0].tolist():
            assert (matched[rois[:, 0] == b] == lab).any()
    torch.manual_seed(0)
    teacher = wb.create_model("clip_tiny", width=8, embed_dim=16, context=8).eval()
    names = [w for w, _ in S.ITEM_WORDS]
    text = class_embeddings(teacher, names, ["a {}"], 8)
    base = [c for c in range(10) if c != 4]
    student = ViLDStudent(16, width=8)
    res = wb.fit(student, DetectionLoader(data, 16), task=ViLDTask(teacher, text[base], base, 32), epochs=3, lr=2e-3,
                 optimizer="adamw", progress=False, weight_decay=0.0)
    h = res.history
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    dets = detect(student, DetectionData.from_scenes(sc), text, range(10), score_threshold=0.0)
    assert len(dets) == 48 and all(d["boxes"].shape[1] == 4 and len(d["scores"]) == len(d["labels"]) for d in dets)
    targets = [{"boxes": sc.boxes[i][sc.items[i] >= 0], "labels": sc.items[i][sc.items[i] >= 0]} for i in range(48)]
    ap = wb.vl.box_ap(dets, targets, (32, 32))
    assert 0.0 <= ap["AP50"] <= 1.0
    with pytest.raises(ValueError, match="one text embedding per base class"):
        ViLDTask(teacher, text, base, 32)
