"""Benchmark (issue 17): core-hours a search needs to find a network as good (on test) as the one
full-training evolution finds, with multi-fidelity trials (ASHA), through the real
`run_search`, on the synthetic benchmark preset and the Sen1Floods11 chip.

The committed report's `supernet` row was measured when the weight-sharing `supernet`
strategy existed (report committed at 9ee76f1); the strategy was removed since (it did not
earn its place, see results/benchmarks/rank_correlation.md), and with it this script's
supernet row.

    python benchmarks/search_efficiency.py [--datasets synth,sen1floods11] [--seeds 0,1,2]
        [--rows evolution,asha_evolution,asha_random] [--full-trials 8]
        [--asha-trials 18] [--epochs 9] [--eta 3] [--max-train 400] [--max-val 500]
        [--max-test 3000] [--space compact] [--concurrency 2] [--data-root DIR]
        [--workdir /tmp/autors_search_eff] [--out results/benchmarks] [--smoke]

Rows (every one a full search on one local Ray instance, `--concurrency` trials at once,
1 CPU each, the same split and training protocol: `--epochs` epochs, early stopping off,
`--max-train` training patches per epoch, the same `--max-val` validation pixels):

- evolution: NNI regularised evolution, every trial trained to `--epochs` (`--full-trials`);
- asha_evolution / asha_random: the same strategy / uniform sampling with
  `search.scheduler: {kind: asha, reduction_factor: --eta, min_resource: 1}` (rungs
  1, eta, eta^2 ... `--epochs` epochs; `--asha-trials` sampled architectures).

How "reach" is measured (an anytime curve; selection never sees test): along each search, in
the order results arrive, the incumbent is the COMPLETE trial (trained the full `--epochs`:
every trial of evolution, the top rung of ASHA) with the
best validation OA so far. Each complete trial's own weights are scored on the test split in
its worker right after training (`bench_test_oa`, a value the search never reads: it selects
on `val_oa` only), so the curve is (cumulative core-hours, the incumbent's test OA). The
target OA is evolution's final incumbent's test OA minus 0.5 points (same seed); a row
reaches it at the first point of its curve at or above it. Core-hours: every trial's and
rung's `core_s` (cpus_per_trial x worker seconds, as the engine records it), minus the test
scoring this benchmark adds.
Target (issue 17): at most 1/3 of full-training evolution's core-hours.

Also: Kendall tau between the first-epoch ranking (the first rung, min_resource 1) and the
full-training ranking of the evolution rows' trials (per-epoch validation history of the same
training; the learning-rate schedule is the same in both, so epoch 1 of a full training is the
first rung), and the measured cost of continuing from a checkpoint against retraining.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import _common
import yaml
from _common import (
    DEFAULT_DATA_ROOT,
    SPLIT_SEED,
    command,
    dataset_task,
    header_block,
    md_table,
    mean_std,
    one_thread,
    with_budget,
    write_report,
    write_task_file,
)
from _rank import kendall_tau

ROWS = ("evolution", "asha_evolution", "asha_random")
COLOURS = {"evolution": "tab:blue", "asha_evolution": "tab:green", "asha_random": "tab:gray"}
MARGIN = 0.005  # "within 0.5 OA points"
TARGET_FRACTION = 1 / 3


def bench_trial(task: dict, arch: dict, seed: int, data, trial_id: int, rung=None):
    """The search's trial function here: `autors.training.trial.trial_model`, plus the test OA
    of a complete trial's own weights (`extra["bench_test_oa"]`, never read by the search) and
    the seconds that scoring took (`extra["bench_test_s"]`, taken off the core-hours)."""
    import time as _time

    from autors.training.evaluate import evaluate
    from autors.training.trial import trial_model

    trained, result = trial_model(task, arch, seed, data, trial_id, rung)
    complete = rung is None or rung.epochs == rung.max_epochs
    if trained is not None and result.status == "ok" and complete:
        t0 = _time.perf_counter()
        keep = int(os.environ.get(MAX_TEST_ENV) or 0)
        subset = test_subset(data, keep, task["split"].get("seed", 0)) if keep else data
        test = evaluate(trained.outcome.model, subset, "test", task["train"]["batch_size"])
        result.extra["bench_n_test"] = int(test["num_samples"])
        result.extra["bench_test_oa"] = float(test["oa"])
        result.extra["bench_test_s"] = _time.perf_counter() - t0
    return result


MAX_TEST_ENV = "AUTORS_BENCH_MAX_TEST"  # --max-test, read by the trial function in Ray workers


def test_subset(data, keep: int, seed: int):
    """`data` with its test split cut to a fixed seeded subset of `keep` labelled pixels over
    all scenes (as `train.val_max_samples` does for validation): the same pixels for every row,
    seed and trial, because the split and this seed are the same. A copy: the shared data is
    not changed."""
    import copy
    import zlib

    import numpy as np

    from autors.data.index import SPLIT_NAMES

    entries = data.index.scenes
    sizes = np.array([e.n("test") for e in entries])
    total = int(sizes.sum())
    if total <= keep:
        return data
    k = data.index.num_classes
    chosen = np.sort(np.random.default_rng([seed, 4]).choice(total, keep, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    s_test = SPLIT_NAMES.index("test")
    cut = []
    for i, e in enumerate(entries):
        e = copy.copy(e)
        e.counts = dict(e.counts)
        if sizes[i]:
            codes = e.codes().copy()
            flat = codes.reshape(-1)
            pos = np.flatnonzero((flat >= s_test * k) & (flat < (s_test + 1) * k))
            mine = chosen[(chosen >= starts[i]) & (chosen < starts[i + 1])] - starts[i]
            drop = np.setdiff1d(np.arange(pos.size), mine)
            flat[pos[drop]] = -1
            e.codes_z = zlib.compress(codes.tobytes(), 1)
            e.counts["test"] = np.bincount(flat[pos[mine]] - s_test * k,
                                           minlength=k).astype(int).tolist()
        cut.append(e)
    out = copy.copy(data)
    out.index = copy.copy(data.index)
    out.index.scenes = cut
    return out


def skip_final(task: dict, arch: dict, seed: int, data, trial_id: int):
    """No final retraining: the curve scores each complete trial's own weights."""
    from autors.training.result import TrialResult

    return TrialResult(trial_id=trial_id, arch=arch, seed=seed, status="failed",
                       error="final phase skipped by benchmarks/search_efficiency.py")


def make_task(args: argparse.Namespace, dataset: str, row: str, seed: int):
    from autors.config import load_task

    path, text = dataset_task(dataset, args.workdir, args.data_root, args.smoke)
    raw = with_budget(yaml.safe_load(text), args.epochs, args.max_train, args.max_val)
    raw["seed"] = seed
    strategy = {"evolution": "evolution", "asha_evolution": "evolution",
                "asha_random": "random"}[row]
    asha = row.startswith("asha_")
    raw["search"] = dict(raw.get("search") or {}, space=args.space, strategy=strategy,
                         max_trials=args.asha_trials if asha else args.full_trials,
                         max_minutes=None, concurrency=args.concurrency, cpus_per_trial=1,
                         top_k=1, final_seeds=1, objective="val_oa", objectives=[],
                         constraints={},
                         scheduler={"kind": "asha", "reduction_factor": args.eta,
                                    "min_resource": 1} if asha else {"kind": "none"})
    out = args.workdir / "tasks" / f"{dataset}_{row}_s{seed}.yaml"
    return load_task(write_task_file(raw, path, out))


def run_one(args: argparse.Namespace, dataset: str, row: str, seed: int) -> dict:
    from rich.console import Console

    from autors.search.runner import SearchOptions, run_search

    task = make_task(args, dataset, row, seed)
    name = f"{dataset}_{row}_s{seed}_{int(time.time())}"
    t0 = time.perf_counter()
    outcome = run_search(task, SearchOptions(out_dir=args.workdir / "runs", name=name,
                                             quiet=True, trial_fn=bench_trial,
                                             final_fn=skip_final), Console(quiet=True))
    return row_of(args, dataset, row, seed, outcome.run_dir, outcome.records,
                  outcome.summary, time.perf_counter() - t0)


def reread(args: argparse.Namespace, saved: dict) -> dict:
    """A saved row measured again from its run folder (`--from-rows --reread`)."""
    from autors.search.search_folder import SearchFolder

    run_dir = Path(saved["run_dir"])
    records, _ = SearchFolder(run_dir).read_trials()
    summary = json.loads((run_dir / "summary.json").read_text())
    return row_of(args, saved["dataset"], saved["row"], saved["seed"], run_dir, records,
                  summary, saved["wall_s"])


def row_of(args: argparse.Namespace, dataset: str, row: str, seed: int, run_dir: Path,
           records: list, summary: dict, wall: float) -> dict:
    """One search's row: its anytime curve in core-hours and in training epochs."""
    events = []  # (finished_at, core_s, val_oa | None, test_oa | None, epochs trained)
    first_vs_full = []  # (epoch-1 val OA, full-training val OA) of complete full trainings
    promoted = stopped = 0
    cont = []  # (load_s + save_s, seconds per epoch) of continued rungs
    for r in records:
        if not r.trained:
            continue
        res = r.result
        test_s = float(res.extra.get("bench_test_s") or 0.0)
        rungs = res.extra.get("rungs")
        if rungs:
            stopped += res.status == "stopped"
            promoted += len(rungs) > 1
            done = 0
            for g in rungs:
                top = g["epochs"] == args.epochs
                core = g["core_s"] - (test_s if top else 0.0)
                events.append((g["finished_at"], core, g.get("val_oa") if top else None,
                               res.extra.get("bench_test_oa") if top else None,
                               g["epochs_run"] - done))
                if g["from_epochs"] and g["epochs_run"] > g["from_epochs"]:
                    per_epoch = g["seconds"] / (g["epochs_run"] - g["from_epochs"])
                    cont.append(((g["load_s"] or 0) + (g["save_s"] or 0), per_epoch))
                done = g["epochs_run"]
            rest = float(res.extra.get("core_s", 0.0)) - sum(g["core_s"] for g in rungs)
            if rest > 0:  # a rung that failed
                events.append((r.finished_at, rest, None, None, 0))
        else:
            ok = r.ok and "bench_test_oa" in res.extra
            events.append((r.finished_at, float(res.extra.get("core_s", 0.0)) - test_s,
                           float(res.metrics["val_oa"]) if ok else None,
                           res.extra.get("bench_test_oa") if ok else None, res.epochs))
            hist = res.extra.get("history") or []
            if ok and len(hist) == args.epochs:
                first_vs_full.append((hist[0]["val_oa"], float(res.metrics["val_oa"])))
    events.sort(key=lambda e: e[0])
    curve, cum, ep, best = [], 0.0, 0, None
    for _, core, val, test, epochs in events:
        cum += core
        ep += epochs
        if val is not None and test is not None and (best is None or val > best[0]):
            best = (val, test)
        curve.append((cum / 3600.0, None if best is None else best[1],
                      None if best is None else best[0], ep))
    return {"dataset": dataset, "row": row, "seed": seed, "curve": curve,
            "core_h": cum / 3600.0, "epochs": ep,
            "final_test_oa": curve[-1][1] if curve else None,
            "final_val_oa": curve[-1][2] if curve else None,
            "complete": sum(e[2] is not None for e in events),
            "trained": sum(r.trained for r in records),
            "stopped": stopped, "promoted": promoted, "continued": cont,
            "first_vs_full": first_vs_full,
            "split_sha256": summary["split"]["sha256"],
            "n_val": summary["split"]["counts"]["val"],
            "n_test": next((r.result.extra["bench_n_test"] for r in records
                            if r.result.extra.get("bench_n_test")),
                           summary["split"]["counts"]["test"]),
            "n_test_all": summary["split"]["counts"]["test"],
            "wall_s": wall, "run_dir": str(run_dir)}


# -- measurement ---------------------------------------------------------------------------------
def reach(curve: list, target: float, column: int = 0) -> float | None:
    """Core-hours (column 0; 3: training epochs) at the first curve point whose incumbent test
    OA is >= target."""
    return next((p[column] for p in curve if p[1] is not None and p[1] >= target - 1e-12),
                None)


def pairs_tau(pairs: list[tuple[float, float]]) -> float | None:
    """`_rank.kendall_tau` of (first rung, full training) pairs; None below 3 pairs or when
    undefined."""
    if len(pairs) < 3:
        return None
    tau = kendall_tau([a for a, _ in pairs], [b for _, b in pairs])
    return None if math.isnan(tau) else tau


def measure(rows: list[dict]) -> dict:
    """Per dataset and row: reach core-hours per seed against evolution's target, the ratio."""
    out: dict = {}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sel = [r for r in rows if r["dataset"] == ds]
        evo = {r["seed"]: r for r in sel if r["row"] == "evolution"}
        out[ds] = {}
        for name in dict.fromkeys(r["row"] for r in sel):
            per_seed = []
            for r in (x for x in sel if x["row"] == name):
                ref = evo.get(r["seed"])
                if ref is None or ref["final_test_oa"] is None:
                    continue
                target = ref["final_test_oa"] - MARGIN
                at = reach(r["curve"], target)
                at_ep = reach(r["curve"], target, 3)
                per_seed.append({"seed": r["seed"], "target": target, "reach_core_h": at,
                                 "evolution_core_h": ref["core_h"],
                                 "ratio": None if at is None else at / ref["core_h"],
                                 "reach_epochs": at_ep, "evolution_epochs": ref["epochs"],
                                 "ratio_epochs": None if at_ep is None
                                 else at_ep / ref["epochs"]})
            out[ds][name] = per_seed
        pairs = [p for r in sel if r["row"] == "evolution" for p in r["first_vs_full"]]
        out[ds]["_tau_first_vs_full"] = {
            "pooled": pairs_tau(pairs), "n": len(pairs),
            "per_seed": {r["seed"]: pairs_tau(r["first_vs_full"]) for r in sel
                         if r["row"] == "evolution"}}
    return out


def _rank_correlation_json(out_dir: Path) -> dict | None:
    path = out_dir / "rank_correlation.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


# -- report --------------------------------------------------------------------------------------
def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for c, ds in enumerate(datasets):
        ax = axes[0][c]
        for name in dict.fromkeys(r["row"] for r in rows):
            for i, r in enumerate(x for x in rows if x["dataset"] == ds and x["row"] == name):
                pts = [(p[0], 100 * p[1]) for p in r["curve"] if p[1] is not None]
                if pts:
                    ax.step(*zip(*pts), where="post", color=COLOURS.get(name), alpha=0.75,
                            lw=1.2, label=name if i == 0 else None)
        for r in (x for x in rows if x["dataset"] == ds and x["row"] == "evolution"):
            if r["final_test_oa"] is not None:
                ax.axhline(100 * (r["final_test_oa"] - MARGIN), color="tab:blue", ls=":",
                           lw=0.7)
        ax.set_title(f"{ds}: incumbent (best validation) test OA vs core-hours\n"
                     "one line per seed; dotted: evolution's final test OA - 0.5 pt",
                     fontsize=9)
        ax.set_xlabel("core-hours (cumulative)")
        ax.set_ylabel("test OA % of the best-by-validation complete trial")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _tau(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _h(x: float | None) -> str:
    return "never" if x is None else f"{x * 60:.2f}"


def report(rows: list[dict], stats: dict, args: argparse.Namespace, wall_s: float, png: Path,
           missing: list[str], rank_corr: dict | None) -> str:
    text = [header_block("Search efficiency: multi-fidelity trials (ASHA) against "
                         "full-training evolution (issue 17)",
                         "benchmarks/search_efficiency.py", wall_s)]
    seeds = sorted({r["seed"] for r in rows})
    text.append(
        f"\nEvery row is a full `autors search` (local Ray, {args.concurrency} trials at once, "
        f"1 CPU each), space `{args.space}`, seeds {seeds}, one training protocol: "
        f"{args.epochs} epochs (cosine schedule over {args.epochs}), early stopping off, "
        f"{args.max_train or 'all'} training patches per epoch, the same "
        f"{args.max_val or 'all'} validation pixels, the same {args.max_test or 'all'} test "
        "pixels. evolution: NNI regularised evolution, "
        f"{args.full_trials} trials each trained {args.epochs} epochs. asha_evolution / "
        f"asha_random: {args.asha_trials} sampled architectures, "
        f"`scheduler: {{kind: asha, reduction_factor: {args.eta}, min_resource: 1}}` (rungs "
        + "/".join(map(str, _rungs(args))) + " epochs, promotions continue from the rung's "
        "checkpoint)"
        + (f" - NOT run: {'; '.join(missing)}" if missing else "") + ".\n\n"
        "**How reach is measured** (anytime, selection never sees test): in the order results "
        "arrive, the incumbent is the complete trial (trained all "
        f"{args.epochs} epochs) with the best validation OA so far; every complete trial's own "
        "weights are scored on the test split in its worker (a value the search never reads), "
        "so each search gives a curve (cumulative core-hours, incumbent's test OA). Target OA "
        "= evolution's final incumbent's test OA (same seed) minus 0.5 points; a row reaches "
        "it at the first curve point at or above it. Core-hours: the engine's per-trial and "
        "per-rung `core_s` (cpus_per_trial x worker seconds, Ray warm-up and driver time "
        "excluded, this benchmark's test scoring taken off). "
        "No final retraining (the final phase is skipped).\n\n"
        "**Load caveat:** core-seconds are wall seconds of a worker on this shared 2-core "
        "machine, so the same work costs more core-seconds when other jobs load it (identical "
        "evolution searches below differ up to 2.7x between seeds). The load-free second "
        "measure is training epochs: every epoch a trial or rung trained; the target is "
        "judged on both.\n\n")
    for ds, per_row in stats.items():
        sel = [r for r in rows if r["dataset"] == ds]
        hashes = {r["split_sha256"] for r in sel}
        n_test = {r["n_test"] for r in sel}
        if len(hashes) != 1 or len(n_test) != 1:
            raise SystemExit(f"{ds}: rows ran on different splits {sorted(hashes)}")
        text.append(f"## {ds}\n\nEvery row is validated on the same {sel[0]['n_val']:,} pixels "
                    f"and tested on the same {n_test.pop():,} test pixels (a fixed seeded subset "
                    f"of the split's {sel[0].get('n_test_all', 0):,} when --max-test is set; "
                    f"split seed {SPLIT_SEED}, hash `{hashes.pop()[:12]}`).\n\n")
        body = []
        for name in (n for n in per_row if not n.startswith("_")):
            mine = [r for r in sel if r["row"] == name]
            reached = per_row[name]
            body.append([
                name,
                " / ".join(f"{100 * r['final_test_oa']:.1f}" if r["final_test_oa"] is not None
                           else "-" for r in mine),
                " / ".join(f"{r['core_h'] * 60:.2f}" for r in mine),
                " / ".join(_h(x["reach_core_h"]) for x in reached),
                " / ".join("-" if x["ratio"] is None else f"{x['ratio']:.2f}" for x in reached),
                " / ".join(f"{r.get('epochs', 0):.0f}" for r in mine),
                " / ".join("-" if x.get("ratio_epochs") is None else f"{x['ratio_epochs']:.2f}"
                           for x in reached),
                " / ".join(f"{r['complete']}" for r in mine),
                " / ".join(f"{r['stopped']}/{r['promoted']}" for r in mine),
                f"{mean_std([r['wall_s'] for r in mine])[0] / 60:.1f}",
            ])
        text.append(md_table(
            ["row", "final incumbent test OA % (per seed)", "core-minutes used (per seed)",
             "core-minutes to reach evolution - 0.5 pt (per seed)",
             "fraction of evolution's core-hours", "training epochs used",
             "fraction of evolution's epochs at reach", "complete trials",
             "stopped/promoted", "wall min (mean)"], body, "lrrrrrrrrr") + "\n\n")
        text.append(targets(ds, per_row) + "\n\n")
        tau = per_row["_tau_first_vs_full"]
        per_seed = ", ".join(f"s{k} {_tau(v)}" for k, v in tau["per_seed"].items())
        text.append(
            f"Kendall tau, first-epoch (first rung) validation OA vs full-training ({args.epochs} "
            f"epochs) validation OA of the evolution rows' trials: "
            f"{_tau(tau['pooled'])} pooled over "
            f"{tau['n']} trials (per seed: {per_seed}).\n\n")
    cont = [c for r in rows for c in r["continued"]]
    if cont:
        overhead = mean_std([a for a, _ in cont])[0]
        epoch = mean_std([b for _, b in cont])[0]
        text.append(
            f"**Continue or retrain?** Continuing a promoted trial from its checkpoint cost "
            f"{overhead:.3f} s (loading + saving the TrainState, mean over {len(cont)} "
            f"continued rungs) against {epoch:.2f} s per epoch; retraining to rung k+1 would "
            "repeat every epoch of rung k (at least one epoch), so continuing is always "
            "cheaper here and is what the engine does.\n\n")
    if rank_corr is not None:
        text.append("First-rung and (not shipped) supernet rank correlation against "
                    "stand-alone training "
                    "on >= 30 architectures: see `rank_correlation.md` "
                    "(benchmarks/rank_correlation.py).\n\n")
    text.append(f"![efficiency]({png.name})\n")
    return "".join(text)


def _rungs(args: argparse.Namespace) -> list[int]:
    from autors.search.schedulers import rung_resources

    return rung_resources(1, args.epochs, args.eta)


def targets(ds: str, per_row: dict) -> str:
    lines = []
    for name, reached in per_row.items():
        if name.startswith("_") or name == "evolution" or not reached:
            continue
        for key, what in (("ratio", "core-hours"), ("ratio_epochs", "training epochs")):
            ratios = [x.get(key) for x in reached]
            met = all(r is not None and r <= TARGET_FRACTION for r in ratios)
            shown = ", ".join(f"s{x['seed']} " + ("never" if x.get(key) is None
                                                    else f"{x[key]:.2f}") for x in reached)
            lines.append(f"- Target \"{name} reaches within 0.5 OA points of full-training "
                         f"evolution's final test OA with at most 1/3 of its {what}\" on "
                         f"{ds}: **{'met' if met else 'NOT met'}** (fraction per seed: {shown}; "
                         "met means every seed at or below 0.33).")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="synth,sen1floods11")
    p.add_argument("--rows", default=None, help=f"default {','.join(ROWS)} (smoke: "
                   "evolution,asha_random)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--full-trials", type=int, default=8)
    p.add_argument("--asha-trials", type=int, default=18)
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--max-train", type=int, default=400)
    p.add_argument("--max-val", type=int, default=500)
    p.add_argument("--max-test", type=int, default=3000, help="a fixed seeded subset of the "
                   "test pixels, the same for every row (0: all)")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--space", default="compact")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_search_eff"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--from-rows", type=Path, default=None, help="write the report again from "
                   "a run's saved rows (<workdir>/<name>_rows.json), running nothing")
    p.add_argument("--reread", action="store_true", help="with --from-rows: measure each "
                   "saved row again from its run folder (the searches are not rerun)")
    p.add_argument("--keep-rows", type=Path, default=None, help="a cut run's saved rows: "
                   "keep them and run only the (dataset, row, seed) searches they lack")
    p.add_argument("--smoke", action="store_true", help="tiny synth scene, 3 epochs (rungs "
                   "1/3), evolution 2 trials and asha_random 3, one seed (CI)")
    args = p.parse_args()
    if args.smoke:
        args.datasets, args.seeds = "synth", "0"
        args.rows = args.rows or "evolution,asha_random"
        args.full_trials, args.asha_trials, args.epochs = 2, 3, 3
        args.max_train, args.max_val, args.max_test = None, None, 0
    t0 = time.perf_counter()
    one_thread()
    if "RAY_TMPDIR" not in os.environ:  # a private Ray folder (none made when one is given)
        os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray_eff_", dir="/tmp")
    os.environ[MAX_TEST_ENV] = str(args.max_test or 0)  # Ray workers inherit it
    name = "search_efficiency_smoke" if args.smoke else "search_efficiency"
    args.out.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    partial = args.workdir / f"{name}_rows.json"  # rows so far: a crash keeps what was measured
    rows, missing = [], []
    names = [r for r in (args.rows or ",".join(ROWS)).split(",") if r]
    if args.from_rows:
        saved = json.loads(args.from_rows.read_text())
        rows, missing = saved["rows"], saved.get("missing", [])
        if args.reread:
            rows = [reread(args, r) for r in rows]
        args.datasets = ""
        if "command" in saved:
            sys.argv = shlex.split(saved["command"])[1:]
            t0 -= saved["wall_s"]
            _common.LOAD_AT_START = tuple(saved["load_at_start"])
    elif args.keep_rows:  # the same command's earlier rows (its wall time is added)
        saved = json.loads(args.keep_rows.read_text())
        rows, missing = saved["rows"], saved.get("missing", [])
        t0 -= saved["wall_s"]
        _common.LOAD_AT_START = tuple(saved["load_at_start"])
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"--rows: unknown {', '.join(unknown)}; rows are {', '.join(ROWS)}")
    gone = sorted({r["row"] for r in rows} - set(ROWS))
    if gone:  # saved rows of the removed supernet strategy (report of 9ee76f1)
        rows = [r for r in rows if r["row"] in ROWS]
        missing.append(f"saved rows {', '.join(gone)} left out (no longer in this script)")
    if args.datasets:
        import ray

        from autors.search.cluster import _loopback_only

        # One local Ray for every search: workers stay warm between searches (run_search
        # uses an initialised Ray as it is).
        _loopback_only()
        ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
    # seed by seed over both datasets: a run cut short still compares the datasets on the
    # same seeds (rows are saved as they finish; --from-rows reports them)
    for seed in [int(s) for s in args.seeds.split(",")] if args.datasets else []:
        for ds in filter(None, args.datasets.split(",")):
            for row in names:
                if any((r["dataset"], r["row"], r["seed"]) == (ds, row, seed) for r in rows):
                    continue  # kept from --keep-rows
                rows.append(run_one(args, ds, row, seed))
                r = rows[-1]
                print(f"{ds} {row} s{seed}: {r['trained']} trials, {r['core_h'] * 60:.2f} "
                      f"core-min, test OA {r['final_test_oa']}, elapsed "
                      f"{(time.perf_counter() - t0) / 60:.1f} min", flush=True)
                partial.write_text(json.dumps({"rows": rows, "missing": missing,
                                               "command": command(),
                                               "load_at_start": _common.LOAD_AT_START,
                                               "wall_s": time.perf_counter() - t0}))
    stats = measure(rows)
    png = args.out / f"{name}.png"
    _plot(rows, png)
    wall = time.perf_counter() - t0
    text = report(rows, stats, args, wall, png, missing, _rank_correlation_json(args.out))
    md = write_report(args.out, name, text)
    (args.out / f"{name}.json").write_text(json.dumps(
        {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "rows": rows, "stats": stats, "missing": missing, "wall_s": wall,
         "command": command(), "versions": _common.versions(), "machine": _common.machine()},
        indent=1, default=str))
    print(md)


if __name__ == "__main__":
    main()
