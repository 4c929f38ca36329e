"""The weight-sharing estimator that benchmarks/rank_correlation.py measures (issue 17 item 3;
not shipped in the product, it lives in benchmarks/_supernet.py): weights really shared
between the architectures built over one store, BatchNorm recalibrated as the plain average of
a fixed set of batches, and Kendall's tau (benchmarks/_rank.py) against hand counting."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import helpers  # tests/search/helpers.py (on sys.path via tests/conftest.py)
import pytest
import torch
from torch import nn

from autors.data import prepare
from autors.search.catalog import space_for_task
from autors.synth import generate_scene

_BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    """A helper module of benchmarks/ by path (the benchmark scripts import it by name, with
    their own folder on sys.path; the tests do not put that folder on sys.path)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _two_archs(space) -> tuple[dict, dict]:
    """Two architectures that differ only in the head's hidden width."""
    sample = {label: values[0] for label, values in space.options().items()}
    sample.update({"branch.optical.kind": "conv", "branch.sar.kind": "off",
                   "branch.lidar.kind": "conv", "fusion.position": "middle",
                   "fusion.op": "sum", "head.hidden": 0})
    return (space.to_arch(sample).to_dict(),
            space.to_arch({**sample, "head.hidden": 16}).to_dict())


def test_weights_are_shared_and_one_path_trains_the_other(tmp_path: Path) -> None:
    sn = _load("_supernet")
    scene = generate_scene(tmp_path / "scene", helpers.SCENE).files["task"]
    task = helpers.write_task(scene, tmp_path / "task.yaml")
    data = prepare(task)
    a, b = _two_archs(space_for_task(task))
    net = sn.Supernet(task, data, seed=0)
    model_a, model_b = net.model(a), net.model(b)
    params_a = dict(model_a.named_parameters())
    params_b = dict(model_b.named_parameters())
    shared = [n for n in params_a if n in params_b and params_a[n].shape == params_b[n].shape
              and n.startswith("branches.")]
    assert shared, "the two archs have the same branches"
    assert all(params_a[n] is params_b[n] for n in shared)  # one tensor, not a copy
    own_b = [n for n in params_b if n not in params_a or params_a[n].shape != params_b[n].shape]
    assert own_b and all(params_b[n] is not params_a.get(n) for n in own_b)
    before = {n: params_b[n].detach().clone() for n in params_b}
    net.train(lambda: a, epochs=1)  # only path a is trained
    changed = [n for n in shared if not torch.equal(before[n], params_b[n])]
    assert changed, "training path a must move the tensors path b reads"
    assert all(torch.equal(before[n], params_b[n]) for n in own_b)  # b's own: untouched
    assert net.inherited(model_b) < 1.0 and net.inherited(model_a) == 1.0
    # the benchmark's draw: distinct, valid, reproducible with the seed
    space = space_for_task(task)
    drawn = [arch for _, arch in sn.draw_candidates(space, 5, seed=0)]
    assert len({sn.arch_key(x) for x in drawn}) == 5
    assert drawn == [arch for _, arch in sn.draw_candidates(space, 5, seed=0)]


def test_batchnorm_recalibration_is_the_plain_average_over_the_batches() -> None:
    sn = _load("_supernet")
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(3))
    model[0].running_mean.fill_(5.0)  # stale statistics of another path
    batches = [torch.randn(8, 3) * 2 + 1, torch.randn(4, 3) - 3]
    assert sn.recalibrate_batchnorm(model, batches) == 1
    bn = model[0]
    means = torch.stack([x.mean(0) for x in batches])
    variances = torch.stack([x.var(0, unbiased=True) for x in batches])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, variances.mean(0), atol=1e-5)
    assert bn.momentum == 0.1 and not model.training


def test_kendall_tau_against_hand_counting() -> None:
    rank = _load("_rank")
    kendall_tau, bootstrap_tau = rank.kendall_tau, rank.bootstrap_tau
    # 5 items, no ties: pairs (i<j) concordant vs discordant counted by hand
    x = [1, 2, 3, 4, 5]
    y = [2, 1, 4, 3, 5]  # discordant pairs: (1,2), (3,4) -> C = 8, D = 2
    assert kendall_tau(x, y) == pytest.approx((8 - 2) / 10)
    assert kendall_tau(x, x[::-1]) == pytest.approx(-1.0)
    # a tie in y: tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)), n0 = 10, n1 = 0, n2 = 1
    y_tied = [1, 1, 3, 4, 5]  # pair (1,2) tied in y only; all others concordant: C = 9, D = 0
    assert kendall_tau(x, y_tied) == pytest.approx(9 / math.sqrt(10 * 9))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    lo, hi = bootstrap_tau(x * 4, y * 4, seed=0, reps=300)
    assert -1.0 <= lo <= kendall_tau(x * 4, y * 4) <= hi <= 1.0
