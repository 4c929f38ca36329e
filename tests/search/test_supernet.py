"""The supernet strategy (issue 17, item 3): weights really shared between the architectures
built over one store, BatchNorm recalibrated per candidate, Kendall's tau against hand
counting, and a real tiny `strategy: supernet` search on local Ray (supernet trained once as a
Ray task, candidates ranked, the best retrained stand-alone through the broker, estimates
recorded beside them, the final phase run), then resumed with a larger budget: the trained
supernet and its ranking are reused, not redone."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from rich.console import Console
from torch import nn

from autors.config import parse_task
from autors.data import prepare
from autors.errors import SearchError, TaskFileError
from autors.search.catalog import space_for_task
from autors.search.rank_correlation import bootstrap_tau, kendall_tau
from autors.search.runner import SearchOptions, run_search
from autors.training.supernet import Supernet, recalibrate_batchnorm

SMALL = {"candidates": 6, "retrain": 3, "epochs": 1, "calibration_batches": 1}


def _two_archs(space) -> tuple[dict, dict]:
    """Two architectures that differ only in the head's hidden width."""
    sample = {label: values[0] for label, values in space.options().items()}
    sample.update({"branch.optical.kind": "conv", "branch.sar.kind": "off",
                   "branch.lidar.kind": "conv", "fusion.position": "middle",
                   "fusion.op": "sum", "head.hidden": 0})
    return (space.to_arch(sample).to_dict(),
            space.to_arch({**sample, "head.hidden": 16}).to_dict())


def test_weights_are_shared_and_one_path_trains_the_other(make_task) -> None:
    task = make_task(strategy="supernet")
    data = prepare(task)
    a, b = _two_archs(space_for_task(task))
    net = Supernet(task, data, seed=0)
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


def test_batchnorm_recalibration_is_the_plain_average_over_the_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(3))
    model[0].running_mean.fill_(5.0)  # stale statistics of another path
    batches = [torch.randn(8, 3) * 2 + 1, torch.randn(4, 3) - 3]
    assert recalibrate_batchnorm(model, batches) == 1
    bn = model[0]
    means = torch.stack([x.mean(0) for x in batches])
    variances = torch.stack([x.var(0, unbiased=True) for x in batches])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, variances.mean(0), atol=1e-5)
    assert bn.momentum == 0.1 and not model.training


def test_kendall_tau_against_hand_counting() -> None:
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


def test_settings_and_refusals_name_the_field(make_task, scene_task_file, tmp_path) -> None:
    with pytest.raises(TaskFileError, match=r"search\.supernet.*retrain \(7\) must not exceed "
                       r"candidates \(6\)"):
        make_task(strategy="supernet", supernet={"candidates": 6, "retrain": 7})
    with pytest.raises(TaskFileError, match=r"search\.supernet\.epoch"):
        make_task(strategy="supernet", supernet={"epoch": 2})
    task = make_task(strategy="supernet", objective="val_oa_robust")
    with pytest.raises(SearchError, match=r"search\.strategy: 'supernet' cannot run this task: "
                       r".*val_oa_robust"):
        space_for_task(task)


def test_real_supernet_search_then_resume_reuses_the_supernet(make_task, trial_fns,
                                                             tmp_path) -> None:
    """Real supernet, real stand-alone trials; the final phase and the resumed session's one
    trial use the cheap stand-ins (what is tested there is what gets submitted)."""
    task = make_task(strategy="supernet", max_trials=2, supernet=SMALL)
    options = SearchOptions(out_dir=tmp_path, name="sn", quiet=True,
                            final_fn=trial_fns.cheap_final)
    first = run_search(task, options, Console(file=io.StringIO()))
    run = tmp_path / "sn"
    record = json.loads((run / "supernet" / "supernet.json").read_text())
    assert record["status"] == "trained" and record["epochs"] == 1 and record["steps"] >= 1
    assert record["core_s"] > 0 and record["seed"] == task.seed
    ranking = json.loads((run / "supernet" / "ranking.json").read_text())
    rows = ranking["candidates"]
    assert len(rows) == 6 and [r["rank"] for r in rows] == list(range(1, 7))
    oas = [r["estimate"]["val_oa"] for r in rows]
    assert oas == sorted(oas, reverse=True)
    # the two best by the estimate were trained stand-alone, as ordinary trials
    assert [r.result.arch for r in first.records] == [rows[0]["arch"], rows[1]["arch"]]
    assert all(r.ok and r.result.epochs == 1 for r in first.records)
    beside = [json.loads(x) for x in (run / "supernet" / "retrained.jsonl").read_text()
              .splitlines()]
    assert sorted(b["rank"] for b in beside) == [1, 2]
    for b in beside:
        trial = next(r for r in first.records if r.trial_id == b["trial_id"])
        assert b["estimate"]["val_oa"] == rows[b["rank"] - 1]["estimate"]["val_oa"]
        assert b["standalone"]["val_oa"] == trial.result.metrics["val_oa"]
    finals = (run / "final.jsonl").read_text().splitlines()
    assert len(finals) == 1 and json.loads(finals[0])["status"] == "ok"
    weights_mtime = (run / "supernet" / "weights.pt").stat().st_mtime_ns

    more = make_task(strategy="supernet", max_trials=3, supernet=SMALL)
    again = run_search(more, SearchOptions(resume=run, quiet=True, trial_fn=trial_fns.cheap,
                                           final_fn=trial_fns.cheap_final),
                       Console(file=io.StringIO()))
    assert (run / "supernet" / "weights.pt").stat().st_mtime_ns == weights_mtime
    assert json.loads((run / "supernet" / "supernet.json").read_text()) == record
    assert json.loads((run / "supernet" / "ranking.json").read_text()) == ranking
    assert [r.result.arch for r in again.records][2:] == [rows[2]["arch"]]  # rank 3, new
    restored = again.summary["sessions"][1]["restored"]
    assert "supernet is reused" in restored and "ranking" in restored


def test_supernet_refuses_a_task_with_targets(scene_task_file, tmp_path) -> None:
    import yaml

    raw = yaml.safe_load(scene_task_file.read_text())
    base = scene_task_file.parent
    labels = raw.pop("labels")
    raw["targets"] = {"cover": {"kind": "classes", "path": str(base / labels["path"]),
                                **{k: v for k, v in labels.items() if k != "path"}}}
    for sensor in raw["sensors"].values():
        sensor["path"] = str(base / sensor["path"])
    raw["split"] = {"kind": "spatial_blocks"}  # a task with targets is split spatially
    raw["targets"]["height"] = {"kind": "continuous", "path": raw["sensors"]["lidar"]["path"]}
    raw["search"] = {"strategy": "supernet", "space": "compact"}
    try:
        task = parse_task(raw, tmp_path / "task.yaml")
    except TaskFileError as err:  # the scene's task shape changed: say so, do not hide it
        pytest.fail(f"could not build a targets task: {err}")
    with pytest.raises(SearchError, match="'supernet' cannot run this task: the task has "
                       "`targets`"):
        space_for_task(task)
