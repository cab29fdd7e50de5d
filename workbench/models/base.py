"""What every workbench model shares: input checks and its description."""
from __future__ import annotations

import torch
from torch import nn


class WorkbenchModel(nn.Module):
    """Base class: knows its input channels, image size and class count.

    ``forward`` checks its input once per call (a few attribute reads) so that a
    wrong shape or dtype gets a message that names the fix instead of a shape
    mismatch deep inside a convolution.
    """

    in_chans: int
    num_classes: int
    img_size: int | None = None
    min_input_size: int | None = None  # the network's total stride: a smaller image has no pixel left
    hook_layers: tuple[str, ...] = ()

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor of images, got {type(x).__name__}")
        if not torch.is_floating_point(x):
            raise TypeError(
                f"{type(self).__name__} expects float images, got dtype {x.dtype}; "
                "convert uint8 images with wb.data.to_float(images, dataset) (or images.float() / 255 and normalize)"
            )
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} expects images of shape [batch, {self.in_chans}, H, W], got {tuple(x.shape)}; "
                + ("add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else
                   f"create the model with in_chans={x.shape[1]} to match the data" if x.ndim == 4 else
                   "reshape the input to [batch, channels, height, width]")
            )
        if self.img_size is not None and tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(
                f"{type(self).__name__} was built for {self.img_size}x{self.img_size} images, got "
                f"{x.shape[-2]}x{x.shape[-1]}; create it with img_size={x.shape[-1]} or resize the data"
            )
        if self.min_input_size is not None and min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"{type(self).__name__} has a total stride of {self.min_input_size}: an input of "
                f"{x.shape[-2]}x{x.shape[-1]} leaves no pixel for its last stage; give it images of at least "
                f"{self.min_input_size}x{self.min_input_size} (resize the data, or pick the variant built for small images)"
            )


def init_transformer_weights(m: nn.Module) -> None:
    """The ViT initialization of linear layers (truncated normal, std 0.02; zero bias), for ``model.apply``."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
