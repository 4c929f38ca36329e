"""Constraints known before training: parameters and FLOPs depend only on the architecture.

A proposal whose parameter count or FLOPs exceed the task's `max_params` / `max_flops` would be
infeasible whatever accuracy it reached, so the driver records it as status `over_limit`
without training it: a FLOP-constrained search spends its workers on networks it could choose.
Latency is not screened here: it belongs to the worker's hardware and is measured there.
"""

from __future__ import annotations

from collections.abc import Callable

import fusion
from autors.config import TaskSpec
from autors.data import PreparedData
from autors.training.cost import count_flops
from autors.training.loop import resolve_arch

# {"params": n, "flops": n} of an architecture over a static limit, else None.
Screen = Callable[[dict], dict[str, int] | None]


def static_cost(arch: dict, task: TaskSpec, data: PreparedData) -> dict[str, int]:
    """Parameters and forward FLOPs per sample of `arch` for this task (untrained model)."""
    spec = resolve_arch(arch, task, data)
    model = fusion.build_model(spec, data.in_channels, data.model_outputs, dense=spec.dense,
                               dates=data.steps)
    return {"params": fusion.count_params(model),
            "flops": count_flops(model, data.in_channels, task.sample_size, data.steps)}


def make_screen(task: TaskSpec, data: PreparedData) -> Screen | None:
    """The driver's pre-training check, or None when the task sets no static limit."""
    limits = task.search.constraints
    if limits.max_params is None and limits.max_flops is None:
        return None

    def screen(arch: dict) -> dict[str, int] | None:
        cost = static_cost(arch, task, data)
        over_params = limits.max_params is not None and cost["params"] > limits.max_params
        over_flops = limits.max_flops is not None and cost["flops"] > limits.max_flops
        return cost if over_params or over_flops else None

    return screen
