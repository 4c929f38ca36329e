"""Benchmark (issue 23): how much of the accuracy x FLOPs trade-off each search strategy finds,
through the real `run_search`, on the synthetic benchmark preset and the Sen1Floods11 chip.

    python benchmarks/search_hypervolume.py [--datasets synth,sen1floods11]
        [--strategies random,evolution,nsga2,motpe] [--seeds 0,1,2] [--trials 20]
        [--epochs 2] [--max-train 2000] [--max-val 2000] [--space compact] [--concurrency 2]
        [--data-root DIR] [--workdir /tmp/autors_search_hv] [--out results/benchmarks] [--smoke]

Every (dataset, strategy, seed) is a full search (local Ray, `--concurrency` trials at once)
with the same budget of `--trials` trained trials under one cheap training protocol (`--epochs`
epochs, early stopping off, `--max-train` training patches per epoch, the same fixed
`--max-val` validation pixels), on the one split of `_common.SPLIT_SEED`. Every search records
search.objectives [val_oa max, flops min]; what differs is what the strategy optimises:

- random: uniform samples (NNI), nothing optimised;
- evolution: NNI regularised evolution on the one penalised score (val_oa, constraint max_flops
  = the median FLOPs of 200 random architectures of the space on this dataset; proposals over
  it are screened out untrained, as the penalty method does today);
- nsga2, motpe: Optuna NSGA-II and multi-objective TPE on both objectives directly.

Hypervolume (HV): of the front of a search's feasible trials over (val OA max, FLOPs min),
FLOPs on a log10 scale, both normalised between the best and the worst value seen by ANY
search on that dataset (so every search is measured with the same ruler), reference point 1.1
per normalised objective (stated in raw units in the report). Reported: HV against trials
(mean over seeds, PNG), final HV, how many trials each needed to reach random's final HV (same
seed), whether each multi-objective front weakly dominates the penalty method's (every point of
evolution's front is matched or beaten), and the smallest network within 1 OA point of the
search's most accurate one. Validation figures only: the test split is not used to compare.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
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
    fmt_pm,
    header_block,
    md_table,
    mean_std,
    one_thread,
    with_budget,
    write_report,
    write_task_file,
)

OBJECTIVES = [{"name": "val_oa", "goal": "max"}, {"name": "flops", "goal": "min"}]
MULTI = ("nsga2", "motpe")
COLOURS = {"random": "tab:gray", "evolution": "tab:blue", "nsga2": "tab:green",
           "motpe": "tab:orange"}


def base_raw(args: argparse.Namespace, dataset: str) -> tuple[Path, dict]:
    path, text = dataset_task(dataset, args.workdir, args.data_root, args.smoke)
    raw = with_budget(yaml.safe_load(text), args.epochs, args.max_train, args.max_val)
    return path, raw


def penalty_limit(args: argparse.Namespace, dataset: str) -> int:
    """max_flops of the penalty method: the median FLOPs of 200 random valid architectures of
    the space (fixed seed): half the space is feasible."""
    from autors.config import parse_task
    from autors.data import prepare
    from autors.search.catalog import space_for_task
    from autors.search.prescreen import static_cost

    path, raw = base_raw(args, dataset)
    raw["search"] = dict(raw.get("search") or {}, space=args.space)
    task = parse_task(raw, path)
    data = prepare(task)
    space = space_for_task(task)
    rng = random.Random(0)
    flops = []
    options = space.options()
    while len(flops) < (20 if args.smoke else 200):
        sample = {k: rng.choice(v) for k, v in options.items() if len(v) > 1}
        if space.invalid_reason(sample) is None:
            flops.append(static_cost(space.to_arch(sample).to_dict(), task, data)["flops"])
    return int(sorted(flops)[len(flops) // 2])


def make_task(args: argparse.Namespace, dataset: str, strategy: str, seed: int, limit: int):
    from autors.config import load_task

    path, raw = base_raw(args, dataset)
    raw["seed"] = seed
    raw["search"] = dict(raw.get("search") or {}, space=args.space, strategy=strategy,
                         max_trials=args.trials, max_minutes=None, concurrency=args.concurrency,
                         top_k=1, final_seeds=1, objective="val_oa", objectives=OBJECTIVES,
                         constraints={"max_flops": limit} if strategy == "evolution" else {})
    out = args.workdir / "tasks" / f"{dataset}_{strategy}_s{seed}.yaml"
    return load_task(write_task_file(raw, path, out))


def skip_final(task: dict, arch: dict, seed: int, data: object, trial_id: int):
    """The final phase's function here: nothing is retrained (the benchmark compares the
    searches on validation; retraining and testing a model per search would double its cost).
    Recorded in final.jsonl as a failed row saying so."""
    from autors.training.result import TrialResult

    return TrialResult(trial_id=trial_id, arch=arch, seed=seed, status="failed",
                       error="final phase skipped by benchmarks/search_hypervolume.py")


def shared_ray(args: argparse.Namespace):
    """--smoke: one local Ray instance for its searches (each would start and stop its own;
    run_search uses an initialised Ray as it is); otherwise nothing (each search its own)."""
    from contextlib import nullcontext

    if not args.smoke:
        return nullcontext()
    from autors.config import SearchSpec
    from autors.search.cluster import ray_cluster

    return ray_cluster(None, SearchSpec(concurrency=args.concurrency))


def run_one(args: argparse.Namespace, dataset: str, strategy: str, seed: int,
            limit: int) -> dict:
    from rich.console import Console

    from autors.search.runner import SearchOptions, run_search

    task = make_task(args, dataset, strategy, seed, limit)
    name = f"{dataset}_{strategy}_s{seed}_{int(time.time())}"
    outcome = run_search(task, SearchOptions(out_dir=args.workdir / "runs", name=name,
                                             quiet=True, final_fn=skip_final),
                         Console(quiet=True))
    trained = sorted((r for r in outcome.records if r.trained), key=lambda r: r.elapsed_s)
    return {"dataset": dataset, "strategy": strategy, "seed": seed,
            # (val OA, FLOPs, feasible & ok) per trained trial, in the order they finished
            "trials": [(float(r.result.metrics.get("val_oa", "nan")) if r.ok else None,
                        r.result.cost.flops if r.result.cost else None,
                        bool(r.ok and r.feasible)) for r in trained],
            "split_sha256": outcome.summary["split"]["sha256"],
            "n_val": outcome.summary["split"]["counts"]["val"],
            "search_s": outcome.summary.get("wall_s", {}).get("search_s", 0.0),
            "cpu_s": sum(r.result.duration_s for r in trained),
            "over_limit": outcome.summary["counts"].get("over_limit", 0),
            "duplicates": outcome.summary["counts"].get("duplicates_answered_from_memory", 0),
            "failed": outcome.summary["counts"].get("failed", 0),
            "picked": [f["picked"] for f in outcome.summary.get("final", [])],
            "run_dir": str(outcome.run_dir)}


# -- measurement ---------------------------------------------------------------------------------
def _points(row: dict) -> list[tuple[float, float]]:
    """Minimised (−OA, log10 FLOPs) of a search's feasible ok trials, in finishing order."""
    return [(-oa, math.log10(fl)) for oa, fl, ok in row["trials"] if ok and oa is not None]


def measure(rows: list[dict], objectives: list) -> dict:
    """Per dataset: the shared normaliser, then per row its HV curve, final HV, front."""
    from autors.search.front import REFERENCE, Normaliser, hypervolume, nondominated

    out = {}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sel = [r for r in rows if r["dataset"] == ds]
        norm = Normaliser.of([p for r in sel for p in _points(r)], objectives)
        out[ds] = {"normalisation": norm.to_dict()}
        for r in sel:
            curve, pts = [], []
            for oa, fl, ok in r["trials"]:
                if ok and oa is not None:
                    pts.append(norm((-oa, math.log10(fl))))
                    pts = [pts[i] for i in nondominated(pts)]
                curve.append(hypervolume(pts, (REFERENCE, REFERENCE)))
            r["hv_curve"] = curve
            r["hv"] = curve[-1] if curve else 0.0
            own = _points(r)
            r["front"] = sorted({(round(-own[i][0], 6), round(10 ** own[i][1]))
                                 for i in nondominated(own)}, reverse=True)
            r["smallest_within_1pt"] = smallest_within(r, 0.01)
    return out


def smallest_within(row: dict, margin: float) -> dict | None:
    """The smallest (FLOPs) feasible trial within `margin` OA of the search's most accurate."""
    ok = [(oa, fl) for oa, fl, good in row["trials"] if good and oa is not None]
    if not ok:
        return None
    top = max(oa for oa, _ in ok)
    oa, fl = min(((o, f) for o, f in ok if o >= top - margin - 1e-12), key=lambda t: (t[1], -t[0]))
    top_flops = min(f for o, f in ok if o == top)
    return {"best_oa": top, "best_flops": top_flops, "oa": oa, "flops": fl}


def weakly_dominates(front_a: list, front_b: list) -> bool:
    """Every (OA, FLOPs) point of front_b is matched or beaten by some point of front_a."""
    return all(any(oa_a >= oa_b and fl_a <= fl_b for oa_a, fl_a in front_a)
               for oa_b, fl_b in front_b)


def reach(curve: list[float], target: float) -> int | None:
    return next((i for i, hv in enumerate(curve, 1) if hv >= target - 1e-12), None)


def mean_curve(sel: list[dict]) -> list[float]:
    n = min(len(r["hv_curve"]) for r in sel)
    return [mean_std([r["hv_curve"][i] for r in sel])[0] for i in range(n)]


# -- report --------------------------------------------------------------------------------------
def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.5 * len(datasets), 7.6),
                             squeeze=False)
    for c, ds in enumerate(datasets):
        ax, fx = axes[0][c], axes[1][c]
        for s in dict.fromkeys(r["strategy"] for r in rows):
            sel = [r for r in rows if r["dataset"] == ds and r["strategy"] == s]
            if not sel:
                continue
            for r in sel:
                ax.plot(range(1, len(r["hv_curve"]) + 1), r["hv_curve"], color=COLOURS.get(s),
                        alpha=0.25, lw=0.8)
            m = mean_curve(sel)
            ax.plot(range(1, len(m) + 1), m, color=COLOURS.get(s), lw=2, label=s)
            for i, r in enumerate(sel):
                if r["front"]:
                    oa, fl = zip(*sorted(r["front"], key=lambda t: t[1]))
                    fx.step(fl, [100 * o for o in oa], where="post", color=COLOURS.get(s),
                            alpha=0.7, label=s if i == 0 else None)
        ax.set_title(f"{ds}: hypervolume (mean over seeds, thin: each seed)", fontsize=9)
        ax.set_xlabel("trained trials")
        ax.set_ylabel("hypervolume (normalised val OA x log FLOPs)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fx.set_xscale("log")
        fx.set_title(f"{ds}: final fronts (every seed)", fontsize=9)
        fx.set_xlabel("FLOPs per sample")
        fx.set_ylabel("val OA %")
        fx.grid(alpha=0.3)
        fx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _mf(flops: float) -> str:
    return f"{flops / 1e6:.3f}"


def report(rows: list[dict], norms: dict, args: argparse.Namespace, limits: dict,
           wall_s: float, png: Path) -> str:
    text = [header_block("Multi-objective search: hypervolume of the accuracy x FLOPs front "
                         "(issue 23)", "benchmarks/search_hypervolume.py", wall_s)]
    seeds = sorted({r["seed"] for r in rows})
    text.append(
        f"\nBudget per search: {args.trials} trained trials, {args.concurrency} at once, space "
        f"`{args.space}`, seeds {seeds}. Training per trial: {args.epochs} epoch(s), early "
        f"stopping off, training patches per epoch {args.max_train or 'all'}, the same "
        f"{args.max_val or 'all'} validation pixels for every trial (a deliberately cheap "
        "protocol, so 2 datasets x 4 strategies x 3 seeds fit in ~35 min on 2 loaded cores; "
        "accuracies are lower than the full protocol's). Objectives recorded by every search: "
        "val_oa (max) and FLOPs per sample (min). Strategies: random (NNI, uniform), evolution "
        "(NNI regularised evolution on val_oa with the constraint penalty: max_flops = "
        + (", ".join(f"{_mf(v)} MFLOPs on {k}" for k, v in limits.items() if v) or "not run")
        + ", the median FLOPs of 200 random architectures of the space: half of it is "
        "feasible; proposals over it are screened out untrained), nsga2 (Optuna NSGA-II) "
        "and motpe (Optuna multi-objective TPE) on both objectives. No final retraining: the "
        "searches are compared on validation only (the test split is not touched).\n\n")
    for ds, info in norms.items():
        sel = [r for r in rows if r["dataset"] == ds]
        hashes = {r["split_sha256"] for r in sel}
        if len(hashes) != 1:
            raise SystemExit(f"{ds}: searches ran on different splits {sorted(hashes)}")
        n = info["normalisation"]
        text.append(
            f"## {ds}\n\nEvery search selected on the same {sel[0]['n_val']:,} validation pixels "
            f"(split seed {SPLIT_SEED}, hash `{hashes.pop()[:12]}`). Hypervolume: val OA and "
            f"log10 FLOPs normalised to [0, 1] between the best and worst values seen by any "
            f"search on {ds} (OA {100 * n['worst']['val_oa']:.1f}..{100 * n['best']['val_oa']:.1f} %, "
            f"FLOPs {_mf(n['best']['flops'])}..{_mf(n['worst']['flops'])} M), reference point "
            f"1.1 per objective = val OA {100 * n['reference']['val_oa']:.2f} %, "
            f"{_mf(n['reference']['flops'])} MFLOPs. Maximum possible HV: 1.21.\n\n")
        random_hv = {r["seed"]: r["hv"] for r in sel if r["strategy"] == "random"}
        evo_front = {r["seed"]: r["front"] for r in sel if r["strategy"] == "evolution"}
        evo_hv = {r["seed"]: r["hv"] for r in sel if r["strategy"] == "evolution"}
        body = []
        for s in dict.fromkeys(r["strategy"] for r in sel):
            mine = [r for r in sel if r["strategy"] == s]
            hv = [r["hv"] for r in mine]
            to_random = [reach(r["hv_curve"], random_hv[r["seed"]]) for r in mine
                         if r["seed"] in random_hv]
            dom = [weakly_dominates(r["front"], evo_front[r["seed"]]) for r in mine
                   if r["seed"] in evo_front]
            above = [r["hv"] > evo_hv[r["seed"]] for r in mine if r["seed"] in evo_hv]
            small = [r["smallest_within_1pt"] for r in mine if r["smallest_within_1pt"]]
            body.append([
                s, fmt_pm(hv, 1.0, 3),
                ", ".join("never" if t is None else str(t) for t in to_random) or "-",
                f"{sum(dom)} of {len(dom)}" if s != "evolution" and dom else "-",
                f"{sum(above)} of {len(above)}" if s != "evolution" and above else "-",
                fmt_pm([x["best_oa"] for x in small]),
                " / ".join(_mf(x["best_flops"]) for x in small),
                fmt_pm([x["oa"] for x in small]),
                " / ".join(_mf(x["flops"]) for x in small),
                f"{mean_std([r['search_s'] for r in mine])[0] / 60:.1f}",
                str(sum(r["over_limit"] for r in mine)), str(sum(r["duplicates"] for r in mine)),
            ])
        text.append(md_table(
            ["strategy", "final HV", "trials to reach random's final HV (per seed)",
             "front weakly dominates evolution's (seeds)", "HV above evolution's (seeds)",
             "most accurate val OA %",
             "its MFLOPs (per seed)", "smallest within 1 OA point: val OA %",
             "its MFLOPs (per seed)", "search min", "screened out", "duplicates"],
            body, "lrrrrrrrrrrr") + "\n\n")
        text.append(targets(sel, args.trials) + "\n\n")
    text.append(
        "`trials to reach random's final HV`: the first trained trial at which the strategy's "
        "HV reached random search's final HV on the same seed (random itself: when it got "
        "there). `front weakly dominates evolution's`: every point of the penalty method's "
        "final front (same seed) is matched or beaten in both val OA and FLOPs by a point of "
        "this strategy's front; `HV above evolution's`: seeds where its final HV is larger. "
        "`smallest within 1 OA point`: among the search's feasible "
        "trials, the fewest FLOPs with val OA at least the search's best minus 1 point. "
        "`screened out`: evolution's proposals over its FLOPs limit, recorded untrained; "
        "`duplicates`: proposals of an architecture already evaluated, answered from the "
        "record; neither is a trial.\n")
    text.append(f"\n![hypervolume]({png.name})\n")
    return "".join(text)


def targets(sel: list[dict], trials: int) -> str:
    """The issue's targets for one dataset, stated met / NOT met."""
    lines = []
    rnd = [r for r in sel if r["strategy"] == "random"]
    evo = {r["seed"]: r["front"] for r in sel if r["strategy"] == "evolution"}
    evo_hv = {r["seed"]: r["hv"] for r in sel if r["strategy"] == "evolution"}
    half = trials // 2
    for s in MULTI:
        mine = [r for r in sel if r["strategy"] == s]
        if not mine or not rnd:
            continue
        target = mean_std([r["hv"] for r in rnd])[0]
        at = reach(mean_curve(mine), target)
        per_seed = {r["seed"]: reach(r["hv_curve"], next(x["hv"] for x in rnd
                                                           if x["seed"] == r["seed"]))
                    for r in mine if any(x["seed"] == r["seed"] for x in rnd)}
        ok = at is not None and at <= half
        lines.append(
            f"- Target \"{s} reaches random's final hypervolume in at most half the trials "
            f"({half})\": **{'met' if ok else 'NOT met'}** (mean curve over seeds reaches "
            f"random's mean final HV {target:.3f} at trial {at if at else 'never'}; per seed: "
            + ", ".join(f"s{k} {v if v else 'never'}" for k, v in per_seed.items()) + ").")
        dom = [weakly_dominates(r["front"], evo[r["seed"]]) for r in mine if r["seed"] in evo]
        if dom:
            lines.append(
                f"- Target \"{s}'s front dominates the penalty method's at equal budget\": "
                f"**{'met' if all(dom) else 'NOT met'}** (in {sum(dom)} of {len(dom)} seeds every "
                "point of evolution's front is matched or beaten by this front; its HV is above "
                f"evolution's in {sum(r['hv'] > evo_hv[r['seed']] for r in mine if r['seed'] in evo_hv)}"
                f" of {len(dom)}).")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="synth,sen1floods11")
    p.add_argument("--strategies", default="random,evolution,nsga2,motpe")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--max-val", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--space", default="compact")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_search_hv"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--from-rows", type=Path, default=None, help="write the report again from "
                   "a run's saved rows (<workdir>/<name>_rows.json), running nothing")
    p.add_argument("--smoke", action="store_true", help="tiny synth scene, 1 epoch, 4 trials, "
                   "random and nsga2, one seed (CI)")
    args = p.parse_args()
    if args.smoke:
        args.datasets, args.strategies, args.seeds = "synth", "random,nsga2", "0"
        args.trials, args.epochs, args.max_train, args.max_val = 4, 1, None, None
    from autors.config import ObjectiveSpec

    objectives = [ObjectiveSpec(**o) for o in OBJECTIVES]
    t0 = time.perf_counter()
    one_thread()
    if "RAY_TMPDIR" not in os.environ:  # a private Ray folder (none made when one is given)
        os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray_hv_", dir="/tmp")
    name = "search_hypervolume_smoke" if args.smoke else "search_hypervolume"
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.workdir / f"{name}_rows.json"  # rows so far: a crash keeps what was measured
    rows, limits = [], {}
    if args.from_rows:
        saved = json.loads(args.from_rows.read_text())
        rows, limits = saved["rows"], saved["limits"]
        args.datasets = ""  # nothing to run
        if "command" in saved:  # the report states the run's command, load and wall time
            sys.argv = shlex.split(saved["command"])[1:]
            t0 -= saved["wall_s"]
            _common.LOAD_AT_START = tuple(saved["load_at_start"])
    with shared_ray(args):
        for ds in filter(None, args.datasets.split(",")):
            # only the penalty method has a limit (computing it prepares the data once more)
            limits[ds] = penalty_limit(args, ds) if "evolution" in args.strategies else 0
            for seed in [int(s) for s in args.seeds.split(",")]:
                for strategy in args.strategies.split(","):
                    rows.append(run_one(args, ds, strategy, seed, limits[ds]))
                    r = rows[-1]
                    print(f"{ds} {strategy} s{seed}: {len(r['trials'])} trials, "
                          f"{r['search_s'] / 60:.1f} min, elapsed "
                          f"{(time.perf_counter() - t0) / 60:.1f} min", flush=True)
                    partial.write_text(json.dumps({"limits": limits, "rows": rows,
                                                   "command": command(),
                                                   "load_at_start": _common.LOAD_AT_START,
                                                   "wall_s": time.perf_counter() - t0}))
    norms = measure(rows, objectives)
    png = args.out / f"{name}.png"
    _plot(rows, png)
    path = write_report(args.out, name, report(rows, norms, args, limits,
                                               time.perf_counter() - t0, png))
    (args.out / f"{name}.json").write_text(json.dumps(
        {"objectives": OBJECTIVES, "limits_max_flops": limits, "normalisation": norms,
         "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "rows": rows}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
