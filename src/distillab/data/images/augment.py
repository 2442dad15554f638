"""Random augmentation of image batches, vectorised over the batch (no per-sample Python)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def random_shift(images: Tensor, max_shift: int) -> Tensor:
    """Translate each image of ``[batch, channels, height, width]`` by its own random offset
    of up to ``max_shift`` pixels along each axis, filling with zeros (background).

    The classic augmentation for handwritten digits (small translations, as in Simard et
    al. 2003); one gather for the whole batch.
    """
    if max_shift == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), device=images.device)
    rows = (dy + torch.arange(h, device=images.device))[:, :, None]  # [b, h, 1]
    cols = (dx + torch.arange(w, device=images.device))[:, None, :]  # [b, 1, w]
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # advanced indices go first: [b, h, w, c]
