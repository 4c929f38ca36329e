"""Model cost: parameter count, forward FLOPs per sample, and measured CPU latency.

Measured on a CPU copy of the model in eval mode, with random inputs of the task's sample
size (patch_size for patch classification, tile_size for segmentation), using the current
torch thread count (the search sets it to the trial's CPUs; the count is recorded in `Cost`).

- FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward pass at batch 1. It counts
  matrix multiplications and convolutions as 2 FLOPs per multiply-accumulate; elementwise ops
  (activations, norms, pooling) are not counted.
- Latency: median wall time of `repeats` forward passes after `warmup` ones, at batch 1 (ms)
  and per sample at a large batch (ms / sample). The large batch is 256, reduced when
  256 x FLOPs/sample would exceed `THROUGHPUT_FLOP_BUDGET`, so measuring a big segmentation
  model stays cheap and bounded in memory; the batch used is recorded.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from autors.training.result import Cost
from fusion import DOY_SUFFIX, count_params

THROUGHPUT_BATCH = 256
THROUGHPUT_FLOP_BUDGET = 2e10  # ~ a second or two on one CPU core


def random_inputs(
    in_channels: dict[str, int], size: int, batch: int, seed: int = 0,
    dates: dict[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """A batch of standard-normal sensor tensors {name: [batch, C, size, size]}; a time-series
    sensor (`dates`: {name: T}) [batch, T, C, size, size] with every date valid and its days
    of year spread over the year (`<name>__doy`)."""
    gen = torch.Generator().manual_seed(seed)
    dates = dates or {}
    out = {}
    for name, c in in_channels.items():
        if name in dates:
            t = dates[name]
            out[name] = torch.randn(batch, t, c, size, size, generator=gen)
            out[name + DOY_SUFFIX] = torch.linspace(1.0, 365.0, t).expand(batch, t).clone()
        else:
            out[name] = torch.randn(batch, c, size, size, generator=gen)
    return out


def count_flops(model: nn.Module, in_channels: dict[str, int], size: int,
                dates: dict[str, int] | None = None) -> int:
    """Forward FLOPs for one sample (batch 1)."""
    x = random_inputs(in_channels, size, 1, dates=dates)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _median_ms(model: nn.Module, x: dict[str, torch.Tensor], warmup: int, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def measure_cost(
    model: nn.Module,
    in_channels: dict[str, int],
    size: int,
    *,
    warmup: int = 2,
    repeats: int = 7,
    big_batch_repeats: int = 3,
    dates: dict[str, int] | None = None,
) -> Cost:
    """Params, FLOPs and CPU latency of `model` for samples of `size` x `size` pixels.

    The model is copied to the CPU (the caller's model, possibly on a GPU, is not touched).
    """
    cpu_model = copy.deepcopy(model).cpu().eval()
    flops = count_flops(cpu_model, in_channels, size, dates)
    b1_ms = _median_ms(cpu_model, random_inputs(in_channels, size, 1, dates=dates), warmup,
                       repeats)
    big = THROUGHPUT_BATCH
    if flops > 0:
        big = max(1, min(THROUGHPUT_BATCH, int(THROUGHPUT_FLOP_BUDGET // flops)))
    big_ms = _median_ms(cpu_model, random_inputs(in_channels, size, big, dates=dates), 1,
                        big_batch_repeats)
    return Cost(
        params=count_params(cpu_model),
        flops=flops,
        latency_ms_b1=b1_ms,
        latency_ms_per_sample_b256=big_ms / big,
        throughput_batch=big,
        threads=torch.get_num_threads(),
    )
