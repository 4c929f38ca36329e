"""Fully convolutional prediction for patch classifiers whose output is local to the patch.

A patch classifier with a `centre` head labels a pixel from the feature at the centre of its
P x P patch. When every layer before the head works on each position's neighbourhood only
(convolutions, per-pixel ops, local fusion operators) and the centre's receptive field fits
inside the patch, that feature depends on pixels of the patch only, and is the same computed
on the patch or on a whole window around it. One pass over a window then gives every pixel's
logits, instead of one pass per pixel over its own patch (up to P x P times less work).

The model's parts say whether this holds (registered parts included): the fusion position has
one shared head (`FusionModel.shared_head`; late fusion has a head per sensor), that head has a
pixelwise form (`Head.pixelwise()`; the `patch` head averages over the patch and has none), and
every fusion operator is local (`FusionOp.local`; `gate` and `se` pool over the patch). An
ensemble (`autors.export.ensemble.EnsembleModel`) is eligible when every member is: its dense
copy averages the members' pixelwise outputs. Eligibility is checked twice beyond the parts:
the receptive field is measured (gradient of the centre output), and `predict` compares the
result with per-patch inference on sampled pixels of the first window (dropout off), falling
back (with a note) on any disagreement.

MC dropout runs on this path too (`window_probs` with passes). One pass over a window draws
one dropout mask for the window: every strip of the pass starts from the pass's own seed, so
the channel masks of the branches' and trunk's `Dropout2d` (one value per channel) are the same
for all of the window's pixels, and the head's element-wise dropout draws one value per
position and unit (repeating from strip to strip). That is a valid MC sample for every pixel:
a pixel's output depends on the masks of its own receptive field only, and there they are
distributed exactly as in one pass over its own patch (channel masks: one Bernoulli draw per
channel either way; element masks: independent Bernoulli draws per position either way). The
pixels of one pass share their channel masks, so their samples are correlated across pixels,
which per-pixel statistics (the mean, the entropy, the mutual information) do not see.

Validity masks change nothing here: the models use them per position (values zeroed, fusion
operators weighting or filling per pixel), so a window's masks give every pixel the masks its
patch would. The receptive field is measured through the masks too, and the parity check runs
on the real window's values and masks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn

import fusion
from autors.export.ensemble import sample_log_probs
from fusion import DOY_SUFFIX, MASK_SUFFIX

STRIP_ROWS = 64  # core rows per forward pass: bounds activation memory on wide windows


def ineligible_reason(model: nn.Module, arch: fusion.Arch) -> str | None:
    """Why `model` (built from `arch`) cannot run fully convolutionally (None: it may, pending
    the receptive field and parity checks). Asks the model's parts, not a list of names."""
    position = arch.fusion.position
    if not fusion.POSITIONS.get(position).shared_head:
        return f"{position} fusion has a head per sensor"
    if model.head.pixelwise() is None:
        return (f"its '{arch.head.kind}' head has no pixelwise form (it does not label a patch "
                "by the feature at one position)")
    if not all(op.local for op in model.modules() if isinstance(op, fusion.FusionOp)):
        return (f"the '{arch.fusion.op}' fusion operator pools over the patch or mixes "
                "positions (it does not declare itself local)")
    return None


def receptive_radius(model: nn.Module, in_channels: dict[str, int], size: int,
                     masks: bool = True, steps: dict[str, int] | None = None) -> int:
    """Largest distance (px, Chebyshev) from the centre of a size x size input at which an
    input value (or, with `masks`, a validity mask value) changes the centre output of the
    pixelwise `model`. `steps`: the time series' T (dated inputs `[1, T, C, size, size]`,
    date masks `[1, T, size, size]`, days of year spread over the year)."""
    steps = steps or {}
    gen = torch.Generator().manual_seed(0)

    def lead(n: str) -> tuple[int, ...]:
        return (1, steps[n]) if n in steps else (1,)

    xs = {n: torch.randn(*lead(n), c, size, size, generator=gen, requires_grad=True)
          for n, c in in_channels.items()}
    if masks:  # all valid, so every value counts; a mask used as a value has a gradient
        xs |= {n + MASK_SUFFIX: torch.ones(*lead(n), size, size, requires_grad=True)
               for n in in_channels}
    doys = {n + DOY_SUFFIX: torch.linspace(30.0, 330.0, t)[None] for n, t in steps.items()}
    model.zero_grad(set_to_none=True)
    centre = size // 2
    model(xs | doys)[0, :, centre, centre].sum().backward()
    radius = 0
    for x in xs.values():
        if x.grad is None:
            continue
        grad = x.grad[0].abs()
        while grad.dim() > 2:  # bands (and dates) summed: [size, size]
            grad = grad.sum(dim=0)
        rows, cols = torch.nonzero(grad.abs(), as_tuple=True)
        if rows.numel():
            radius = max(radius, int((rows - centre).abs().max()), int((cols - centre).abs().max()))
    return radius


def window_model(
    model: nn.Module, arch: fusion.Arch, in_channels: dict[str, int], patch_size: int,
    masks: bool = True, steps: dict[str, int] | None = None,
) -> tuple[nn.Module | None, str]:
    """(a copy of `model` that outputs logits at every position, "") when eligible, else
    (None, why not). `masks`: the model is given validity masks (measured through them). An
    ensemble (`members`) is eligible when every member is (`arch` is then unused). `steps`:
    time series (dated inputs, `receptive_radius`); the copy takes dated inputs as the model
    does (predict wraps it in `autors.export.series.SeriesInputs`)."""
    members = getattr(model, "members", None)
    parts = [(m, m.arch) for m in members] if members is not None else [(model, arch)]
    for i, (part, part_arch) in enumerate(parts, start=1):
        why = ineligible_reason(part, part_arch)
        if why is not None:
            return None, (f"ensemble member {i}: {why}" if members is not None else why)
    dense = copy.deepcopy(model).eval()
    for part in (dense.members if members is not None else [dense]):
        part.head = part.head.pixelwise()
    # a probe larger than the patch, so a field wider than the patch shows as such
    radius = receptive_radius(dense, in_channels, 3 * patch_size, masks, steps)
    for p in dense.parameters():
        p.requires_grad_(False)
    if radius > patch_size // 2:
        return None, (f"its receptive field reaches {radius} px from the centre, beyond the "
                      f"patch's {patch_size // 2}")
    return dense, ""


def window_probs(dense: nn.Module, tensors: dict[str, Tensor], halo: int, height: int,
                 width: int, seeds: list[int] | None = None, uncertain: bool = False
                 ) -> Tensor:
    """Mean probabilities `[K, height, width]` of the core pixels over the samples of `dense`
    (an ensemble's members, times the passes), in strips of STRIP_ROWS core rows. `seeds`:
    MC dropout, one pass per seed (dropout layers already in training mode), every strip of
    pass i started from torch seed `seeds[i]`, so one pass draws one mask for the window
    (see the module docstring). With `uncertain`, a last channel holds the mean entropy of
    the samples (nats): `[K + 1, height, width]`."""
    out = []
    for _, rows, strip in _strips(tensors, halo, height):
        total, n = None, 0
        for seed in (seeds or [None]):
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                logp = sample_log_probs(dense, strip)[:, 0]  # [S, K, STRIP + 2 halo, cols]
                logp = logp[:, :, halo:halo + rows, halo:halo + width]
                p = logp.exp()
                part = p.sum(dim=0)
                if uncertain:
                    part = torch.cat([part, -(p * logp).sum(dim=1).sum(dim=0)[None]])
                total = part if total is None else total + part
                n += logp.shape[0]
        out.append(total / n)
    return torch.cat(out, dim=1)


def _strips(tensors: dict[str, Tensor], halo: int, height: int
            ) -> Iterator[tuple[int, int, dict[str, Tensor]]]:
    """(first core row, core rows, model inputs) of each strip of STRIP_ROWS core rows; the
    last strip padded to the same shape (oneDNN caches per shape)."""
    for r0 in range(0, height, STRIP_ROWS):
        rows = min(STRIP_ROWS, height - r0)
        strip = {}
        for name, a in tensors.items():
            s = a[:, r0:r0 + rows + 2 * halo]
            if rows < STRIP_ROWS:
                s = nn.functional.pad(s, (0, 0, 0, STRIP_ROWS - rows))
            # a batch of one: values [1, C, h, w], masks [1, h, w] (their band axis)
            strip[name] = s if name.endswith(MASK_SUFFIX) else s.unsqueeze(0)
        yield r0, rows, strip


@torch.no_grad()
def window_logits(dense: nn.Module, tensors: dict[str, Tensor], halo: int, height: int,
                  width: int) -> Tensor:
    """Logits [K, height, width] of the core pixels of window arrays {sensor: [C, rows, cols],
    sensor__mask: [1, rows, cols]} read with `halo` pixels around the core, in strips of
    STRIP_ROWS core rows."""
    out = []
    for _, rows, strip in _strips(tensors, halo, height):
        logits = dense(strip)[0]  # [K, STRIP_ROWS + 2 halo, cols]
        out.append(logits[:, halo:halo + rows, halo:halo + width])
    return torch.cat(out, dim=1)
