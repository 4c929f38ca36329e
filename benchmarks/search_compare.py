"""Benchmark (issue 8.1 searched part, 8.2): search strategies head to head, through the real
`run_search`, on the synthetic benchmark preset or the real Sen1Floods11 chip.

    python benchmarks/search_compare.py --dataset synth|sen1floods11
        [--strategies random,evolution,tpe] [--seeds 0,1,2] [--trials 16] [--concurrency 2]
        [--space fusion] [--flops-fraction 0.2] [--baselines results/benchmarks/baselines.json]
        [--data-root DIR] [--workdir /tmp/autors_search_compare] [--out results/benchmarks]
        [--repeat-check] [--smoke]

Each (strategy, seed) is a full search (local Ray, `--concurrency` trials at once, objective
val_oa) with the same budget: `--trials` trained trials under the dataset's fixed training
protocol (the one baselines.py uses: see `_common.PROTOCOL`), then its best architecture
retrained once and tested once. The searches are constrained to at most `--flops-fraction` of
the FLOPs of the best hand-designed baseline (highest mean validation OA in `--baselines`):
proposals over that limit are screened out before training and do not count as trials.

The search seed drives the strategy and the trials' training only: every search uses the one
split of `_common.SPLIT_SEED` (checked: one split hash), so all searches select on the same
validation pixels and their winners are tested on the same test pixels. `--repeat-check` runs
the first (strategy, seed) search a second time and states whether it matched exactly.

Reported: best-so-far validation OA against trial count and search wall time (PNG), each
strategy's final best (mean ± std over seeds), how many trials each needed to reach random
search's final best on the same seed, CPU time, and each search's best architecture. The rows
(with architecture dicts) also go to `search_compare_<dataset>.json`, which
searched_vs_baselines.py reads.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml
from _common import (
    DEFAULT_DATA_ROOT,
    SPLIT_SEED,
    best_baseline,
    dataset_task,
    fmt_pm,
    header_block,
    md_table,
    mean_std,
    one_thread,
    repeat_statement,
    with_protocol,
    write_report,
    write_task_file,
)


def make_task(args: argparse.Namespace, strategy: str, seed: int):
    """The dataset's task with this strategy and seed, the shared budget and FLOPs limit,
    written to a file of its own (the search's final models copy their task file)."""
    from autors.config import load_task

    path, text = dataset_task(args.dataset, args.workdir, args.data_root, args.smoke)
    raw = with_protocol(yaml.safe_load(text), args.dataset, 1 if args.smoke else None)
    raw["seed"] = seed
    raw["search"] = dict(raw.get("search") or {}, space=args.space, strategy=strategy,
                         max_trials=args.trials, max_minutes=None,
                         concurrency=args.concurrency, top_k=1, final_seeds=1,
                         objective="val_oa",
                         constraints={"max_flops": args.max_flops})
    out = args.workdir / "tasks" / f"{args.dataset}_{strategy}_s{seed}.yaml"
    return load_task(write_task_file(raw, path, out))


def run_one(args: argparse.Namespace, strategy: str, seed: int) -> dict:
    """One search; its best-so-far curve, its best architecture and its final test figures."""
    from rich.console import Console

    from autors.search.report import best
    from autors.search.runner import SearchOptions, run_search

    task = make_task(args, strategy, seed)
    name = f"{args.dataset}_{strategy}_s{seed}_{int(time.time())}"
    outcome = run_search(task, SearchOptions(out_dir=args.workdir / "runs", name=name,
                                             quiet=True), Console(quiet=True))
    trained = sorted((r for r in outcome.records if r.trained), key=lambda r: r.elapsed_s)
    top, curve = 0.0, []
    for i, r in enumerate(trained, 1):
        if r.ok and r.feasible:
            top = max(top, float(r.result.metrics["val_oa"]))
        curve.append((i, r.elapsed_s, top))
    winner = best(outcome.records)  # ties: val kappa, then val loss, then FLOPs
    final = (outcome.summary.get("final") or [{}])[0]
    counts = outcome.summary.get("counts", {})
    metrics = winner.result.metrics if winner else {}
    return {"dataset": args.dataset, "strategy": strategy, "seed": seed, "curve": curve,
            "best": top, "best_kappa": metrics.get("val_kappa"),
            "best_loss": metrics.get("val_loss"),
            "split_sha256": outcome.summary["split"]["sha256"],
            "n_val": outcome.summary["split"]["counts"]["val"],
            "n_test": outcome.summary["split"]["counts"]["test"],
            # by trial id: with 2 trials at once, completion order may differ between runs
            "trial_val_oa": [float(r.result.metrics["val_oa"])
                             for r in sorted(trained, key=lambda r: r.trial_id) if r.ok],
            "arch": winner.result.arch if winner else None,
            "arch_summary": final.get("arch_summary", ""),
            "flops": winner.result.cost.flops if winner else None,
            "params": winner.result.cost.params if winner else None,
            "test_oa": (final.get("test_mean") or {}).get("test_oa"),
            "search_s": outcome.summary.get("wall_s", {}).get("search_s", 0.0),
            "cpu_s": sum(r.result.duration_s for r in trained),
            "trials": len(trained),
            "over_limit": counts.get("over_limit", 0),
            "duplicates": counts.get("duplicates_answered_from_memory", 0),
            "run_dir": str(outcome.run_dir)}


def trials_to_reach(curve: list[tuple], target: float) -> int | None:
    return next((i for i, _, b in curve if b >= target), None)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = {"random": "tab:gray", "evolution": "tab:blue", "tpe": "tab:orange"}
    labelled = set()
    for r in rows:
        c = colours.get(r["strategy"])
        xs = [i for i, _, _ in r["curve"]]
        ts = [t / 60 for _, t, _ in r["curve"]]
        ys = [100 * b for _, _, b in r["curve"]]
        lab = None if r["strategy"] in labelled else r["strategy"]
        labelled.add(r["strategy"])
        axes[0].step(xs, ys, where="post", color=c, alpha=0.7, label=lab)
        axes[1].step(ts, ys, where="post", color=c, alpha=0.7, label=lab)
    axes[0].set_xlabel("trials (one line per seed)")
    axes[1].set_xlabel("search wall time (min)")
    for ax in axes:
        ax.set_ylabel("best-so-far val OA (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(rows: list[dict], args: argparse.Namespace, wall_s: float, png: Path,
           repeat: str | None) -> str:
    text = [header_block(f"Search strategies compared on {args.dataset} (issue 8.2, 8.1 "
                         "searched part)", "benchmarks/search_compare.py", wall_s)]
    limit = (f"at most {args.max_flops / 1e6:.2f} MFLOPs per sample ({args.flops_fraction:g} x "
             f"the {args.reference['model']} baseline's {args.reference['flops'] / 1e6:.2f}, "
             "the best baseline by mean validation OA in baselines.json); proposals over it "
             "were screened out before training and are not trials" if args.max_flops
             else "no FLOPs limit")
    hashes = {r["split_sha256"] for r in rows}
    if len(hashes) != 1:
        raise SystemExit(f"searches ran on different splits {sorted(hashes)}: not comparable")
    total_cpu = sum(r["cpu_s"] for r in rows) / 60
    total_wall = sum(r["search_s"] for r in rows) / 60
    text.append(
        f"\nBudget per search: {args.trials} trained trials, {args.concurrency} at once, "
        f"space `{args.space}`, objective val_oa, {limit}. Training per trial: the dataset's "
        f"fixed protocol ({args.protocol}). Seeds {args.seed_list}. Then each search's best "
        "architecture was retrained once and tested once.\n\n"
        f"Every search selected on the same {rows[0]['n_val']:,} validation pixels and its "
        f"winner was tested on the same {rows[0]['n_test']:,} test pixels (split seed "
        f"{SPLIT_SEED}, hash `{hashes.pop()[:12]}`, default buffer: no held-out patch footprint "
        "touches a training pixel). Equal validation OA is broken by validation kappa, then "
        "validation loss, then FLOPs.\n\n"
        f"All {len(rows)} searches together: {total_wall:.1f} min of search wall time on "
        f"{args.concurrency} cores ({total_wall * args.concurrency:.0f} core-minutes), of which "
        f"trials used {total_cpu:.0f} CPU-minutes.\n\n")
    random_best = {r["seed"]: r["best"] for r in rows if r["strategy"] == "random"}
    body = []
    for s in dict.fromkeys(r["strategy"] for r in rows):
        sel = [r for r in rows if r["strategy"] == s]
        reach = [trials_to_reach(r["curve"], random_best[r["seed"]]) for r in sel
                 if r["seed"] in random_best]
        reach_txt = ", ".join("never" if n is None else str(n) for n in reach) or "-"
        tests = [r["test_oa"] for r in sel if r["test_oa"] is not None]
        flops = [r["flops"] for r in sel if r["flops"]]
        body.append([s, fmt_pm([r["best"] for r in sel]), reach_txt,
                     fmt_pm(tests) if tests else "-",
                     f"{mean_std(flops)[0] / 1e6:.2f}" if flops else "-",
                     f"{mean_std([r['search_s'] for r in sel])[0] / 60:.1f}",
                     f"{mean_std([r['cpu_s'] for r in sel])[0] / 60:.1f}",
                     str(sum(r["over_limit"] for r in sel)),
                     str(sum(r["duplicates"] for r in sel))])
    text.append(md_table(["strategy", "best val OA %", "trials to reach random's best (per seed)",
                          "test OA % of the best (1 run)", "MFLOPs of the best", "search min",
                          "trial CPU-min", "screened out (over limit)", "duplicate proposals"],
                         body, "lrrrrrrrr") + "\n")
    text.append(
        "\n`trials to reach random's best`: the first trial at which the strategy's best-so-far "
        "validation OA reached random search's final best on the same seed (random itself: the "
        "trial at which it found it). `screened out`: proposals over the FLOPs limit, recorded "
        "without training. `duplicate proposals`: architectures proposed again, answered from "
        "the search's memory. Neither counts as a trial.\n")
    text.append("\n## Best architecture per search\n\n")
    text.append(md_table(
        ["strategy", "seed", "best val OA %", "MFLOPs", "architecture"],
        [[r["strategy"], r["seed"], f"{100 * r['best']:.1f}",
          f"{r['flops'] / 1e6:.2f}" if r["flops"] else "-", r["arch_summary"]] for r in rows],
        "lrrrl") + "\n")
    if repeat:
        text.append(f"\n{repeat}\n")
    text.append(f"\n![search]({png.name})\n")
    return "".join(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synth", choices=["synth", "sen1floods11"])
    p.add_argument("--strategies", default="random,evolution,tpe")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--space", default="fusion")
    p.add_argument("--flops-fraction", type=float, default=0.2,
                   help="FLOPs limit as a fraction of the best baseline's; 0: no limit")
    p.add_argument("--baselines", type=Path, default=Path("results/benchmarks/baselines.json"))
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_search_compare"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--repeat-check", action="store_true",
                   help="run the first search twice and report whether it matched exactly")
    p.add_argument("--smoke", action="store_true", help="tiny scene, 1 epoch, 2 trials, limit "
                   "from --out/baselines_smoke.json (CI)")
    args = p.parse_args()
    if args.smoke:  # the FLOPs limit comes from baselines.py's smoke run in the same --out
        args.dataset, args.strategies, args.seeds, args.trials = "synth", "random", "0", 2
        args.baselines = args.out / "baselines_smoke.json"
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.max_flops, args.reference = None, None
    if args.flops_fraction > 0:
        args.reference = best_baseline(json.loads(args.baselines.read_text()), args.dataset)
        args.max_flops = int(args.flops_fraction * args.reference["flops"])
    from _common import PROTOCOL

    proto = PROTOCOL[args.dataset]
    args.protocol = (f"{1 if args.smoke else proto['epochs']} epochs, early stopping off, "
                     f"training patches per epoch {proto['max_train'] or 'all'}, validation "
                     f"pixels {proto['max_val'] or 'all'}")
    t0 = time.perf_counter()
    one_thread()
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray_bench_", dir="/tmp"))
    rows = []
    for strategy in args.strategies.split(","):
        for seed in args.seed_list:
            rows.append(run_one(args, strategy, seed))
            r = rows[-1]
            print(f"{args.dataset} {strategy} s{seed}: best val OA {100 * r['best']:.1f} "
                  f"({r['trials']} trials, {r['over_limit']} screened out, "
                  f"{r['search_s'] / 60:.1f} min)", flush=True)
    repeat = None
    if args.repeat_check:
        first = rows[0]
        again = run_one(args, first["strategy"], first["seed"])
        keys = ("best", "best_kappa", "best_loss", "arch", "test_oa", "trials", "over_limit",
                "duplicates", "trial_val_oa", "split_sha256")
        repeat = repeat_statement({k: first[k] for k in keys}, {k: again[k] for k in keys},
                                  f"the {first['strategy']} seed {first['seed']} search")
        print(repeat, flush=True)
    name = "search_compare_smoke" if args.smoke else f"search_compare_{args.dataset}"
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{name}.png"
    _plot(rows, png)
    path = write_report(args.out, name, report(rows, args, time.perf_counter() - t0, png, repeat))
    (args.out / f"{name}.json").write_text(json.dumps(
        {"max_flops": args.max_flops, "reference": args.reference, "rows": rows}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
