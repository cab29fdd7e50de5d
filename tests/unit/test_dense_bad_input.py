"""Issue 25's bad inputs, each with a message that names the problem and the fix."""
import pytest
import torch

import workbench as wb
from workbench.data.degrade import degrade
from workbench.dense import SegmentationData, psnr, ssim


def test_pairs_of_mismatched_sizes_are_refused():
    x = torch.rand(2, 3, 16, 16)
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match="same shape"):
            metric(x, x[:, :, :8, :8])


def test_a_scale_factor_that_does_not_divide_the_image_is_refused():
    x = torch.randint(0, 256, (2, 3, 30, 30), dtype=torch.uint8)
    assert degrade(x, "down2", 3).shape == (2, 3, 15, 15)
    with pytest.raises(ValueError, match=r"down4 shrinks each side by 4, but the images are 30x30.*size=28"):
        degrade(x, "down4", 3)
    with pytest.raises(ValueError, match="4 must divide both sides"):
        degrade(torch.zeros(1, 3, 32, 30, dtype=torch.uint8), "down4", 1)


def test_masks_with_class_ids_out_of_range_are_refused():
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    assert len(SegmentationData(images, masks, num_classes=3)) == 2
    masks[1, 2, 2] = 3
    with pytest.raises(ValueError, match=r"0\.\.2 .*got ids 0\.\.3.*largest id \+ 1"):
        SegmentationData(images, masks, num_classes=3)
    masks[1, 2, 2] = -1
    with pytest.raises(ValueError, match="got ids -1..0"):
        SegmentationData(images, masks, num_classes=3)


@pytest.mark.parametrize("severity", [-1, 6, 2.5, "3"])
def test_a_rain_density_or_noise_level_out_of_range_is_refused(severity):
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    for kind in ("rain", "gaussian"):
        with pytest.raises(ValueError, match=f"severity is an integer from 0 \\(none\\) to 5, got {severity!r}"):
            degrade(x, kind, severity)


def test_a_codebook_of_size_one_is_refused():
    for make in (lambda: wb.dense.ResidualVQ(4, depth=2, size=1),
                 lambda: wb.create_model("rvq_autoencoder", size=1),
                 lambda: wb.create_model("rvq_generator", size=1)):
        with pytest.raises(ValueError, match="codebook of size one"):
            make()
