"""Time-series inputs at predict: the window arrays hold a series' dates stacked on the channel
axis (`[T * C, h, w]`, `autors.data.timeseries`'s one sample format) and its date masks
`[T, h, w]` under `<sensor>__dates`, so the patch and tile machinery (`autors.export.windows`)
cuts them like any sensor; `SeriesInputs` hands the model what training gave it:
`<sensor>` `[B, T, C, P, P]`, `<sensor>__mask` `[B, T, P, P]` and `<sensor>__doy` `[B, T]`
(the given dates' days of year, `SceneInputs.doys`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from autors.errors import ModelFolderError
from autors.export.card import ModelCard
from fusion import DOY_SUFFIX, MASK_SUFFIX

DATES_SUFFIX = "__dates"  # a window's date masks [T, h, w] (cut as values, not as one mask)


class SeriesInputs(nn.Module):
    """`model` taking window batches with time series flattened (see the module docstring)."""

    def __init__(self, model: nn.Module, card: ModelCard, doys: dict[str, list[int]]) -> None:
        super().__init__()
        self.model = model
        self.steps = dict(card.steps)
        for name in self.steps:
            doy = torch.tensor([float(d) for d in doys[name]])
            self.register_buffer(f"doy_{name}", doy, persistent=False)

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        out = dict(x)
        for name, t in self.steps.items():
            v = out[name]  # [B, T * C, P, P]
            out[name] = v.reshape(v.shape[0], t, -1, *v.shape[-2:])
            out.pop(name + MASK_SUFFIX, None)
            if name + DATES_SUFFIX in out:
                out[name + MASK_SUFFIX] = out.pop(name + DATES_SUFFIX)
            out[name + DOY_SUFFIX] = getattr(self, f"doy_{name}").expand(v.shape[0], t)
        return self.model(out)


def series_model(model: nn.Module, card: ModelCard, doys: dict[str, list[int]]
                 ) -> nn.Module:
    """`model` wrapped in `SeriesInputs` when the card has a time series (else unchanged);
    `doys`: each series' day of year per date (`SceneInputs.doys`)."""
    return SeriesInputs(model, card, doys).eval() if card.steps else model


def date_masks(card: ModelCard, valid: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """The window's date masks {`<s>__dates`: float32 [T, h, w]} of the time series."""
    return {n + DATES_SUFFIX: torch.from_numpy(valid[n].astype(np.float32))
            for n in card.steps if n in valid}


def refuse_series(card: ModelCard, what: str) -> None:
    """ModelFolderError: `what` does not take a time-series model yet."""
    if card.steps:
        raise ModelFolderError(f"sensor(s) {sorted(card.steps)} are time series (dates): {what} "
                               "does not support a time-series model yet (class maps do)")
