"""The driver's pre-training check agrees with what a trained trial measures (no Ray)."""

from __future__ import annotations

import random

from autors.data import prepare
from autors.search.catalog import space_for_task
from autors.search.prescreen import make_screen, static_cost
from autors.training.trial import run_trial


def _archs(task, n: int, seed: int = 0) -> list[dict]:
    """`n` valid architectures of the task's space, drawn at random."""
    space, rng, out = space_for_task(task), random.Random(seed), []
    while len(out) < n:
        sample = {label: rng.choice(opts) for label, opts in space.options().items()}
        if space.invalid_reason(sample) is None:
            out.append(space.to_arch(sample).to_dict())
    return out


def test_static_cost_equals_the_cost_a_trained_trial_reports(make_task) -> None:
    task = make_task(space="fusion")
    data = prepare(task)
    for arch in _archs(task, 2):
        trained = run_trial(task.to_dict(), arch, 0, data, 0)
        assert trained.status == "ok", trained.error
        assert static_cost(arch, task, data) == {"params": trained.cost.params,
                                                 "flops": trained.cost.flops}


def test_screen_only_exists_with_a_static_limit_and_flags_only_what_is_over(make_task) -> None:
    task = make_task(space="fusion")
    data = prepare(task)
    assert make_screen(task, data) is None
    assert make_screen(make_task(constraints={"max_latency_ms": 1.0}), data) is None
    archs = _archs(task, 12, seed=1)
    flops = sorted(static_cost(a, task, data)["flops"] for a in archs)
    limit = flops[len(flops) // 2]
    screen = make_screen(make_task(space="fusion", constraints={"max_flops": limit}), data)
    flagged = [screen(a) for a in archs]
    assert any(f is None for f in flagged) and any(f is not None for f in flagged)
    for arch, f in zip(archs, flagged):
        over = static_cost(arch, task, data)["flops"] > limit
        assert (f is not None) == over
        assert f is None or f["flops"] > limit
