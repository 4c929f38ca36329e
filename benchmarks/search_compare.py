"""Benchmark (issue 8.1 searched part, 8.2): search strategies head to head on the synthetic
benchmark preset, through the real `run_search`.

    python benchmarks/search_compare.py [--strategies random,evolution,tpe] [--seeds 0,1,2]
        [--preset benchmark] [--trials 12] [--epochs 5] [--concurrency 2]
        [--workdir /tmp/autors_search_compare] [--out results/benchmarks] [--smoke]

Each (strategy, seed) is a full search (local Ray, `--concurrency` trials at once, the fusion
space, objective val_oa) with the same budget: `--trials` trials of `--epochs` epochs, then
the best architecture retrained once and tested once. Reported: best-so-far validation OA
against trial count and search wall time (PNG), each strategy's final best (mean ± std over
seeds), how many trials each needed to reach random search's final best on the same seed, and
the searched networks' test OA and FLOPs (to set beside baselines.md).
The default budget is small; issue 8 asks for up to 2 CPU-hours per search.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml
from _common import fmt_pm, header_block, md_table, mean_std, one_thread, write_report


def make_task(args: argparse.Namespace, strategy: str, seed: int):
    """The scene's task with this strategy, seed and the shared small budget."""
    from autors.config import parse_task
    from autors.synth import SynthConfig, generate_scene

    out = args.workdir / ("scene_smoke" if args.smoke else f"scene_{args.preset}")
    path = out / "task.yaml"
    if not path.is_file():
        if args.smoke:
            cfg = SynthConfig(size=64, n_train_per_class=8, block_size=16, patch_size=5)
        elif args.preset == "benchmark":
            cfg = SynthConfig.benchmark(seed=0)
        else:
            cfg = SynthConfig(size=int(args.preset))
        generate_scene(out, cfg)
    raw = yaml.safe_load(path.read_text())
    raw["seed"] = seed
    raw["train"] = dict(raw.get("train") or {}, epochs=args.epochs,
                        early_stopping_patience=args.epochs)
    raw["search"] = dict(raw.get("search") or {}, strategy=strategy, max_trials=args.trials,
                         max_minutes=None, concurrency=args.concurrency, top_k=1,
                         final_seeds=1, objective="val_oa")
    return parse_task(raw, path)


def run_one(args: argparse.Namespace, strategy: str, seed: int) -> dict:
    """One search; its best-so-far curve and its final test figures."""
    from rich.console import Console

    from autors.search.runner import SearchOptions, run_search

    task = make_task(args, strategy, seed)
    name = f"{strategy}_s{seed}_{int(time.time())}"
    outcome = run_search(task, SearchOptions(out_dir=args.workdir / "runs", name=name,
                                             quiet=True), Console(quiet=True))
    recs = sorted(outcome.records, key=lambda r: r.elapsed_s)
    best, curve = 0.0, []
    for i, r in enumerate(recs, 1):
        if r.ok:
            best = max(best, float(r.result.metrics.get("val_oa", 0.0)))
        curve.append((i, r.elapsed_s, best))
    final = (outcome.summary.get("final") or [{}])[0]
    top = outcome.summary.get("best") or {}
    flops = next((r.result.cost.flops for r in recs
                  if r.trial_id == final.get("trial_id") and r.result.cost), None)
    return {"strategy": strategy, "seed": seed, "curve": curve, "best": best,
            "test_oa": (final.get("test_mean") or {}).get("test_oa"),
            "flops": flops, "arch": final.get("arch_summary", top.get("arch_summary", "")),
            "search_s": outcome.summary.get("wall_s", {}).get("search_s", 0.0),
            "cpu_s": sum(r.result.duration_s for r in recs),
            "duplicates": outcome.summary.get("counts", {}).get(
                "duplicates_answered_from_memory", 0)}


def trials_to_reach(curve: list[tuple], target: float) -> int | None:
    return next((i for i, _, b in curve if b >= target), None)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = {"random": "tab:gray", "evolution": "tab:blue", "tpe": "tab:orange"}
    for r in rows:
        c = colours.get(r["strategy"], None)
        xs = [i for i, _, _ in r["curve"]]
        ts = [t / 60 for _, t, _ in r["curve"]]
        ys = [100 * b for _, _, b in r["curve"]]
        lab = r["strategy"] if r["seed"] == rows[0]["seed"] else None
        axes[0].step(xs, ys, where="post", color=c, alpha=0.8, label=lab)
        axes[1].step(ts, ys, where="post", color=c, alpha=0.8, label=lab)
    axes[0].set_xlabel("trials")
    axes[1].set_xlabel("search wall time (min)")
    for ax in axes:
        ax.set_ylabel("best-so-far val OA (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(rows: list[dict], args: argparse.Namespace, wall_s: float, png: Path) -> str:
    text = [header_block("Search strategies compared (issue 8.1 searched part, 8.2)",
                         "benchmarks/search_compare.py", wall_s)]
    scene = "tiny smoke scene" if args.smoke else f"synthetic scene preset {args.preset}"
    text.append(
        f"\nBudget per search: {args.trials} trials of {args.epochs} epochs on the {scene}, "
        f"{args.concurrency} concurrent trials, then the best architecture retrained once and "
        f"tested once. Seeds {args.seed_list}.\n\n")
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
                     f"{sum(r['cpu_s'] for r in sel) / 60 / len(sel):.1f}",
                     str(sum(r["duplicates"] for r in sel))])
    text.append(md_table(["strategy", "best val OA %", "trials to reach random's best (per seed)",
                          "test OA % of the best", "MFLOPs of the best", "search min",
                          "trial CPU-min", "duplicate proposals"], body, "lrrrrrrr") + "\n")
    text.append("\n`duplicate proposals`: architectures the strategy proposed again, answered "
                "from the search's memory instead of being trained (they do not count as "
                "trials).\n")
    text.append("\n## Best architecture per search\n\n")
    text.append(md_table(["strategy", "seed", "best val OA %", "architecture"],
                         [[r["strategy"], r["seed"], f"{100 * r['best']:.1f}", r["arch"]]
                          for r in rows], "lrrl") + "\n")
    text.append(f"\n![search]({png.name})\n")
    return "".join(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--strategies", default="random,evolution,tpe")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--preset", default="benchmark", help="'benchmark' or a scene size in px")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_search_compare"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--smoke", action="store_true", help="tiny scene, 1 epoch, 2 trials (CI)")
    args = p.parse_args()
    if args.smoke:
        args.strategies, args.seeds, args.trials, args.epochs = "random", "0", 2, 1
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    one_thread()
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray_bench_", dir="/tmp"))
    rows = []
    for strategy in args.strategies.split(","):
        for seed in args.seed_list:
            rows.append(run_one(args, strategy, seed))
            print(f"{strategy} s{seed}: best val OA {100 * rows[-1]['best']:.1f}", flush=True)
    name = "search_compare_smoke" if args.smoke else "search_compare"
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{name}.png"
    _plot(rows, png)
    path = write_report(args.out, name, report(rows, args, time.perf_counter() - t0, png))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
