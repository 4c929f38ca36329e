"""How far a dense model looks: the receptive radius of its per-pixel output, measured.

Measured rather than derived from the arch so that every part counts, plugins included: the
gradient of one output pixel with respect to random inputs is non-zero exactly where inputs
can change it. Max pooling passes gradient only to the maximum of each cell and a ReLU may be
off for one input, so the union over several random inputs is taken and the result is rounded
up to whole cells of the model's output stride plus one more cell: a small over-estimate
costs a few pixels of halo, an under-estimate would cost seams.
"""

from __future__ import annotations

import torch
from torch import nn


def receptive_radius(model: nn.Module, in_channels: dict[str, int], *, samples: int = 4,
                     start: int = 64, max_size: int = 2048, seed: int = 0) -> int:
    """Pixels around an output pixel (Chebyshev distance) whose inputs can change it, for a
    dense model (`[B, K, H, W]` output). Returns a multiple of `model.reduction` (1 when the
    model has none). The input side grows from `start` until the gradient stays inside it;
    past `max_size` it raises `ValueError` (a model that looks that far has no useful halo).
    """
    reduction = int(getattr(model, "reduction", 1))
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    size = max(start, 4 * reduction)
    try:
        while size <= max_size:
            side = size // reduction * reduction + 1  # odd: a centre pixel
            x = {n: torch.randn(samples, c, side, side, generator=gen).requires_grad_(True)
                 for n, c in in_channels.items()}
            out = model(x)
            if out.dim() != 4:
                raise ValueError("receptive_radius needs a dense model ([B, K, H, W] output)")
            c = side // 2
            out[:, :, c, c].abs().sum().backward()
            reach = torch.zeros(side, side, dtype=torch.bool)
            for t in x.values():
                if t.grad is not None:  # None: a sensor the model does not use
                    reach |= (t.grad.abs().sum(dim=(0, 1)) > 0)
            rows, cols = torch.nonzero(reach, as_tuple=True)
            radius = int(max((rows - c).abs().max(), (cols - c).abs().max())) if rows.numel() else 0
            if radius < c - reduction:  # the gradient stayed inside: the input was big enough
                return (-(-radius // reduction) + 1) * reduction
            size *= 2
    finally:
        model.train(was_training)
    raise ValueError(f"the model's receptive field exceeds {max_size} pixels")
