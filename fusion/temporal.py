"""Time-series branches: a sensor with a time axis, `[B, T, C, H, W]` -> the usual stages.

A time-series sensor (`build_model(..., dates={sensor: T})`) arrives as `<sensor>`
`[B, T, C, H, W]`, its per-date validity `<sensor>__mask` `[B, T, H, W]` (1 = valid; a padded
or missing date is all 0) and `<sensor>__doy` `[B, T]` (day of year of each date). The model
(`fusion.positions`) hands a branch of this module one packed tensor `[B, T, C + 2, H, W]`:
the values zeroed where invalid, then the date mask, then the day of year (broadcast over
pixels). Packing keeps the `Branch` contract (one tensor in, `[B, width, H / r, W / r]` stages
out), so every fusion position, encoder-decoders, late fusion's per-sensor paths and the masks
machinery work unchanged; the sensor's validity for fusion is "any valid date".

Every kind here states `input_kind = "temporal"` (the search offers it to time-series sensors
only), its temporal `operator` and where time `collapse`s:
- "after" (`time_<op>`): a shared per-date spatial encoder (stem and blocks, run on every
  date), then the operator collapses time at every stage (one operator per stage, the date
  mask pooled to the stage's scale: a cell is valid where any of its pixels is).
- "before" (`time_<op>_first`): a shared per-date 1x1 embedding, the operator collapses time
  per pixel, then the spatial blocks run on the one map (cheaper: the per-pixel GRU style).

Operators (`TIME_OPS`), each `[N, T, F]` sequences (one per pixel) + mask `[N, T]` + doy
`[N, T]` -> `[N, F]`, an all-invalid sequence -> 0:
- "gru" / "lstm": a recurrent cell over the dates in order; an invalid date leaves the state
  unchanged (so padding and clouds are skipped, whatever the values hold);
- "conv": a 1-D convolution (kernel 3) over the dates, then masked max over time;
- "ltae": lightweight temporal attention (L-TAE, Garnot & Landrieu 2020): a learned query
  per head attends over the valid dates' keys; values are the features split into heads;
- "mean" / "max": masked mean / max over the valid dates (no timing information: the
  time-blind references).
Every operator but mean/max adds a sinusoidal day-of-year encoding to the features, so timing
is seen as dates, not as positions in the padded sequence (scenes may have different dates).
The operators are registered in `TIME_OPS` and state `sees_timing` (False for mean/max); a
kind states its operator's (`TemporalBranch.sees_timing`), which the search spaces ask. The
same operators collapse time after the fusion when an arch says so (`fusion.time`,
`fusion.positions`).

Normalisation ignores invalid dates: in training, the per-date layers (entry, stem, blocks)
run on the dates with at least one valid pixel only (`valid_dates`), so a padded or missing
date never enters a BatchNorm's batch statistics (a sample padded with more invalid dates
gives the same training-mode output); in eval mode every date runs (running statistics; the
operators ignore the invalid ones). Clouded pixels of a valid date still count.

Export: TorchScript keeps T dynamic; ONNX tracing unrolls the recurrent loop, so an ONNX
graph takes the fixed T it was exported with (`dates`; fewer dates are padded and masked).
"""

# No `from __future__ import annotations`: TorchScript reads class-level annotations.
import math

import torch
from torch import Tensor, nn

from fusion.branches import Branch, conv_bn_act
from fusion.registry import BRANCHES, TIME_OPS

DOY_PERIOD = 1000.0  # the longest sinusoid's period scale (L-TAE's T = 1000)


def doy_rates(features: int) -> tuple[Tensor, Tensor]:
    """The sinusoidal day-of-year encoding's angular rates `[features]` (periods
    2 pi * 1000^(2i/features) days, as in L-TAE) and its sine-channel indicator (even ones)."""
    i = torch.arange(features, dtype=torch.float32)
    rate = DOY_PERIOD ** (-2.0 * torch.floor(i / 2.0) / features)
    return rate, (torch.remainder(i, 2.0) == 0).to(torch.float32)


def doy_encoding(doy: Tensor, rate: Tensor, even: Tensor) -> Tensor:
    """Day of year `[N, T]` -> `[N, T, F]`: sin on even channels, cos on odd ones."""
    angle = doy.to(torch.float32).unsqueeze(-1) * rate  # [N, T, F]
    return even * torch.sin(angle) + (1.0 - even) * torch.cos(angle)


class TemporalOp(nn.Module):
    """Base: `forward(x [N, T, F], m [N, T] float, doy [N, T]) -> [N, F]`. `sees_timing`:
    the output depends on when the dates are (order, day of year), not only on which values
    occurred (False for the time-blind mean/max)."""

    uses_doy = True
    sees_timing = True

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        rate, even = doy_rates(features)
        # constants, not weights: kept out of the state_dict
        self.register_buffer("rate", rate, persistent=False)
        self.register_buffer("even", even, persistent=False)

    def forward(self, x: Tensor, m: Tensor, doy: Tensor) -> Tensor:
        raise NotImplementedError


def _masked_max(x: Tensor, m: Tensor) -> Tensor:
    """Max over valid dates (a large negative instead of -inf: no NaN in gradients)."""
    filled = x.masked_fill(m.unsqueeze(-1) <= 0, -1.0e4)
    return filled.max(dim=1)[0] * (m.amax(dim=1, keepdim=True) > 0).to(x.dtype)


@TIME_OPS.register("mean")
class MeanOp(TemporalOp):
    uses_doy = False
    sees_timing = False

    def forward(self, x: Tensor, m: Tensor, doy: Tensor) -> Tensor:
        w = m.unsqueeze(-1)
        return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


@TIME_OPS.register("max")
class MaxOp(TemporalOp):
    uses_doy = False
    sees_timing = False

    def forward(self, x: Tensor, m: Tensor, doy: Tensor) -> Tensor:
        return _masked_max(x, m)


@TIME_OPS.register("gru")
class GRUOp(TemporalOp):
    def __init__(self, features: int) -> None:
        super().__init__(features)
        self.cell = nn.GRUCell(features, features)

    def forward(self, x: Tensor, m: Tensor, doy: Tensor) -> Tensor:
        x = x + doy_encoding(doy, self.rate, self.even)
        h = torch.zeros(x.shape[0], self.features, dtype=x.dtype, device=x.device)
        for t in range(x.shape[1]):
            keep = m[:, t:t + 1]
            h = keep * self.cell(x[:, t], h) + (1.0 - keep) * h
        return h


@TIME_OPS.register("lstm")
class LSTMOp(TemporalOp):
    def __init__(self, features: int) -> None:
        super().__init__(features)
        self.cell = nn.LSTMCell(features, features)

    def forward(self, x: Tensor, m: Tensor, doy: Tensor) -> Tensor:
        x = x + doy_encoding(doy, self.rate, self.even)
        h = torch.zeros(x.shape[0], self.features, dtype=x.dtype, device=x.device)
        c = torch.zeros_like(h)
        for t in range(x.shape[1]):
            keep = m[:, t:t + 1]
            h2, c2 = self.cell(x[:, t], (h, c))
            h = keep * h2 + (1.0 - keep) * h
            c = keep * c2 + (1.0 - keep) * c
        return h


@TIME_OPS.register("conv")
class ConvOp(TemporalOp):
    KERNEL = 3

    def __init__(self, features: int) -> None:
        super().__init__(features)
        self.conv = nn.Conv1d(features, features, self.KERNEL, padding=self.KERNEL // 2)

    def forward(self, x: Tensor, m: Tensor, doy: Tensor) -> Tensor:
        x = (x + doy_encoding(doy, self.rate, self.even)) * m.unsqueeze(-1)
        y = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # [N, T, F]
        return _masked_max(y, m)


@TIME_OPS.register("ltae")
class LTAEOp(TemporalOp):
    """Lightweight temporal attention: `heads` learned queries over keys of dimension 8."""

    def __init__(self, features: int) -> None:
        super().__init__(features)
        self.key = 8
        self.heads = 4 if features % 4 == 0 else (2 if features % 2 == 0 else 1)
        self.keys = nn.Linear(features, self.heads * self.key)
        self.query = nn.Parameter(torch.randn(self.heads, self.key) / math.sqrt(self.key))
        self.out = nn.Linear(features, features)

    def forward(self, x: Tensor, m: Tensor, doy: Tensor) -> Tensor:
        n, t, f = x.shape
        x = x + doy_encoding(doy, self.rate, self.even)
        k = self.keys(x).reshape(n, t, self.heads, self.key)
        scores = (k * self.query).sum(dim=-1) / math.sqrt(self.key)  # [N, T, heads]
        valid = m.unsqueeze(-1)
        scores = scores.masked_fill(valid <= 0, -1.0e4)
        att = torch.softmax(scores, dim=1) * valid  # all-invalid: every weight 0
        v = x.reshape(n, t, self.heads, f // self.heads)
        pooled = (att.unsqueeze(-1) * v).sum(dim=1).reshape(n, f)
        return torch.relu(self.out(pooled)) * (m.amax(dim=1, keepdim=True) > 0).to(x.dtype)




def unpack(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A packed `[B, T, C + 2, H, W]` -> values `[B, T, C, H, W]`, mask `[B, T, H, W]`,
    doy `[B, T]`."""
    c = x.shape[2] - 2
    return x[:, :, :c], x[:, :, c], x[:, :, c + 1, 0, 0]


def to_sequences(feats: Tensor, m: Tensor, doy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One sequence per pixel: `[B, T, F, H, W]`, mask `[B, T, H, W]`, doy `[B, T]` ->
    `[B*H*W, T, F]`, `[B*H*W, T]`, `[B*H*W, T]` (an operator's input)."""
    b, t, f, h, w = feats.shape
    seq = feats.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, f)
    mm = m.permute(0, 2, 3, 1).reshape(b * h * w, t)
    dd = doy.unsqueeze(1).unsqueeze(1).expand(b, h, w, t).reshape(b * h * w, t)
    return seq, mm, dd


def from_pixels(out: Tensor, like: Tensor) -> Tensor:
    """An operator's output `[B*H*W, F]` -> `[B, F, H, W]` (`like`: the `[B, T, F, H, W]` it
    came from)."""
    return out.reshape(like.shape[0], like.shape[3], like.shape[4], out.shape[1]).permute(
        0, 3, 1, 2)


def per_date(x: Tensor) -> Tensor:
    """`[B, T, F, H, W]` -> `[B*T, F, H, W]` (a 2-D layer then runs on every date)."""
    return x.flatten(0, 1)


def dated(y: Tensor, b: int) -> Tensor:
    """`[B*T, F, H, W]` -> `[B, T, F, H, W]`."""
    return y.reshape(b, y.shape[0] // b, y.shape[1], y.shape[2], y.shape[3])


def valid_dates(m: Tensor) -> Tensor:
    """A date mask `[B, T, H, W]` -> the indices into `B*T` of the dates with at least one
    valid pixel (the dates a per-date layer's batch statistics may see)."""
    return torch.nonzero(m.flatten(0, 1).amax(dim=(1, 2)) > 0).flatten()


def spread(y: Tensor, keep: Tensor, n: int) -> Tensor:
    """Per-date maps of the kept dates `[K, F, H, W]` -> `[n, F, H, W]`, zeros elsewhere."""
    out = torch.zeros([n, y.shape[1], y.shape[2], y.shape[3]], dtype=y.dtype, device=y.device)
    return out.index_copy(0, keep, y)


def subset(training: bool, m: Tensor) -> tuple[bool, Tensor]:
    """Whether per-date layers run on the valid dates only (training, some dates invalid,
    some valid) and those dates' indices (`valid_dates`)."""
    keep = valid_dates(m) if training else torch.zeros([0], dtype=torch.long)
    n = m.shape[0] * m.shape[1]
    return training and 0 < keep.shape[0] < n, keep


class TemporalBranch(Branch):
    """Base of the time-series kinds (see the module docstring); `in_channels` is C, the
    bands of one date (the packed input has C + 2). `sees_timing`: its operator's."""

    input_kind = "temporal"
    operator = "mean"
    collapse = "after"
    sees_timing = False

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        super().__init__(in_channels, width, depth, kernel)
        op = TIME_OPS.get(self.operator)
        if self.collapse == "after":
            self.stem = conv_bn_act(in_channels, width, kernel)
            self.ops = nn.ModuleList(op(width) for _ in range(depth + 1))
        else:
            self.stem = conv_bn_act(in_channels, width, 1)  # per-date embedding, per pixel
            self.ops = nn.ModuleList([op(width)])
        self.blocks = nn.ModuleList(conv_bn_act(width, width, kernel) for _ in range(depth))
        self.after = self.collapse == "after"

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)[-1]

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        values, m, doy = unpack(x)
        b = values.shape[0]
        n = b * values.shape[1]
        # training: per-date layers see the valid dates only (BatchNorm statistics)
        sub, keep = subset(self.training, m)
        flat = per_date(values)
        if sub:
            flat = flat.index_select(0, keep)
        if self.entry != 1:
            flat = self.enter(flat)
            m = nn.functional.max_pool2d(m, self.entry, self.entry, ceil_mode=True)
        y = self.stem(flat)  # [B*T or K, F, H, W]
        feats: list[Tensor] = []
        if self.after:
            ys: list[Tensor] = [spread(y, keep, n) if sub else y]
            ms: list[Tensor] = [m]  # the date mask at every stage: valid where any pixel is
            for block in self.blocks:
                if self.pooled:
                    y = self.pool(y)
                    m = self.pool(m)
                y = block(y)
                ys.append(spread(y, keep, n) if sub else y)
                ms.append(m)
            for s, op in enumerate(self.ops):
                ds = dated(ys[s], b)
                seq, mm, dd = to_sequences(ds, ms[s], doy)
                feats.append(self.drop(from_pixels(op(seq, mm, dd), ds)))
            return feats
        y = dated(spread(y, keep, n) if sub else y, b)
        for op in self.ops:  # one operator: time collapses before the spatial blocks
            seq, mm, dd = to_sequences(y, m, doy)
            z = self.drop(from_pixels(op(seq, mm, dd), y))
            feats.append(z)
            for block in self.blocks:
                if self.pooled:
                    z = self.pool(z)
                z = self.drop(block(z))
                feats.append(z)
        return feats


def _register(operator: str, when: str) -> None:
    name = f"time_{operator}" + ("_first" if when == "before" else "")
    doc = (f"Time series: {operator} over dates, time collapsed {when} the spatial layers.")
    cls = type(f"Time{operator.capitalize()}{when.capitalize()}Branch", (TemporalBranch,),
               {"operator": operator, "collapse": when, "__doc__": doc,
                "sees_timing": TIME_OPS.get(operator).sees_timing, "__module__": __name__})
    BRANCHES.register(name)(cls)
    globals()[cls.__name__] = cls  # TorchScript finds a class by its module and name


for _op in TIME_OPS.names():
    for _when in ("after", "before"):
        _register(_op, _when)
