"""Benchmark (issue 8.1, measured part): the hand-designed fusion baselines and each single
sensor, on the synthetic benchmark preset and on the real Sen1Floods11 chip.

    python benchmarks/baselines.py [--datasets synth,sen1floods11] [--seeds 0,1,2,3,4]
        [--synth-epochs 10] [--s1f11-epochs 5] [--s1f11-train 4000] [--s1f11-val 3000]
        [--workers 2] [--data-root DIR] [--workdir /tmp/autors_baselines]
        [--out results/benchmarks] [--repeat-check] [--smoke]

Models: `early_cnn`, `late_cnn`, `two_branch` on every sensor of the task, each with its
`patch` head and with a `centre` head (`<name>_centre`), and `early_cnn` on each sensor alone.
Each (model, seed) is trained with a fixed budget (epochs, early stopping off: the best
validation epoch is restored) and evaluated once on the test split: OA, AA, kappa (and IoU of
water on Sen1Floods11), mean ± std over seeds; params, FLOPs per patch and CPU latency
(batch 1, 1 thread) from `autors.training.measure_cost`.

Every row uses one split (split seed `_common.SPLIT_SEED`, default buffer) and the task's full
sensor set: a single-sensor row switches the other sensors' branches off instead of removing
them, so every row is trained, validated and tested on the same pixels (checked: one split
hash, one test-pixel count). Sen1Floods11 (512 x 512 px, spatial-block split) has ~40 k
validation patches: training uses `train.max_train_samples` and validation a fixed seeded
subset of its pixels (`--s1f11-val`, the same for every model and seed); the test split is
evaluated in full. `--repeat-check` trains the first job a second time and states whether every
figure matched exactly. The searched networks are not part of this script (search_compare.py).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import yaml
from _common import (
    DEFAULT_DATA_ROOT,
    PROTOCOL,
    baseline_names,
    dataset_task,
    fmt_pm,
    header_block,
    md_table,
    mean_std,
    one_thread,
    repeat_statement,
    same_pixels,
    subset_arch,
    with_budget,
    write_report,
)

SINGLE_ARCH = "early_cnn"  # the network used for each single sensor


@dataclass(frozen=True)
class Job:
    dataset: str
    task_path: str  # the task file (or the shipped file's virtual location under the root)
    raw: str  # the task YAML text, every sensor present
    model: str  # a baseline name, "<sensor> only" or "searched"
    arch: str | dict  # a baseline name or an arch dict
    sensors: tuple[str, ...] | None  # the sensors the arch uses (others off); None: every one
    seed: int
    epochs: int
    max_train: int | None
    max_val: int | None


TIMINGS = ("seconds", "latency_ms")  # not expected to repeat exactly


def run_job(job: Job) -> dict:
    """Train one model on one seed, evaluate it once on test, measure its cost."""
    one_thread()
    from autors.config import parse_task
    from autors.data import prepare
    from autors.training.cost import measure_cost
    from autors.training.evaluate import evaluate
    from autors.training.loop import train_model

    t0 = time.perf_counter()
    raw = yaml.safe_load(job.raw)
    task = parse_task(with_budget(raw, job.epochs, job.max_train, job.max_val),
                      Path(job.task_path))
    data = prepare(task)
    arch = job.arch if job.sensors is None else subset_arch(job.arch, data.in_channels,
                                                            job.sensors)
    outcome = train_model(task, arch, data, job.seed, progress=False)
    test = evaluate(outcome.model, data, "test", 512)
    cost = measure_cost(outcome.model, data.in_channels, task.patch_size)
    water = test["per_class_iou"].get("water")
    return {"dataset": job.dataset, "model": job.model, "seed": job.seed,
            "oa": test["oa"], "aa": test["aa"], "kappa": test["kappa"],
            "iou_water": water, "val_oa": outcome.val_metrics["oa"],
            "val_kappa": outcome.val_metrics["kappa"], "params": cost.params,
            "flops": cost.flops, "latency_ms": cost.latency_ms_b1,
            "n_test": test["num_samples"], "n_val": outcome.val_metrics["num_samples"],
            "split_sha256": data.splits.sha256(), "seconds": time.perf_counter() - t0}


def jobs_for(dataset: str, path: Path, raw: str, args: argparse.Namespace) -> list[Job]:
    sensors = list(yaml.safe_load(raw)["sensors"])
    synth = dataset == "synth"
    epochs = args.synth_epochs if synth else args.s1f11_epochs
    max_train = None if synth else args.s1f11_train
    max_val = None if synth else args.s1f11_val
    models = [(b, b, None) for b in baseline_names()] + [
        (f"{s} only", SINGLE_ARCH, (s,)) for s in sensors]
    return [Job(dataset, str(path), raw, m, a, sub, seed, epochs, max_train, max_val)
            for m, a, sub in models for seed in args.seed_list]


def _plot(rows: list[dict], datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 3.8), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        models = list(dict.fromkeys(r["model"] for r in rows if r["dataset"] == ds))
        for m in models:
            sel = [r for r in rows if r["dataset"] == ds and r["model"] == m]
            oa, oa_s = mean_std([100 * r["oa"] for r in sel])
            ax.errorbar(sel[0]["flops"], oa, yerr=oa_s, fmt="o", capsize=3, label=m)
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs per patch")
        ax.set_ylabel("test OA (%)")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(rows: list[dict], args: argparse.Namespace, datasets: list[str], wall_s: float,
           png: Path, repeat: str | None) -> str:
    text = [header_block("Fusion baselines and single sensors (issue 8.1, measured part)",
                         "benchmarks/baselines.py", wall_s)]
    text.append(
        f"\nSeeds: {args.seed_list} ({len(args.seed_list)} per model). "
        f"Single sensors use `{SINGLE_ARCH}`. Early stopping off, best validation epoch "
        f"restored; each model tested once. {len(rows)} trainings, "
        f"{sum(r['seconds'] for r in rows) / 60:.1f} CPU-min, {args.workers} processes of 1 "
        "torch thread. Latency: batch 1, 1 thread, median. `_centre`: the same network with a "
        "`centre` head (the labelled pixel's features) instead of the `patch` head (average "
        "pool); single sensors: `early_cnn` with the other sensors' branches off.\n")
    if repeat:
        text.append(f"\n{repeat}\n")
    for ds in datasets:
        sel_ds = [r for r in rows if r["dataset"] == ds]
        if ds == "synth":
            how = (f"synthetic benchmark preset (512 x 512 px, scene seed 0, 40 training pixels "
                   f"and up to 120 validation pixels per class from blocks of their own), "
                   f"{args.synth_epochs} epochs, batch 32")
        else:
            how = (f"Sen1Floods11 chip Spain_7370579 (512 x 512 px, spatial-block split 64 px), "
                   f"{args.s1f11_epochs} epochs, batch 128, {args.s1f11_train} training "
                   f"patches per epoch (train.max_train_samples), validation on a fixed seeded "
                   f"{args.s1f11_val} of its pixels; test on all test pixels")
        how += ". " + same_pixels(sel_ds, ds)
        header = ["model", "val OA %", "OA %", "AA %", "kappa"] \
            + (["IoU water %"] if ds != "synth" else []) + ["params", "MFLOPs", "latency ms"]
        body = []
        for m in dict.fromkeys(r["model"] for r in sel_ds):
            sel = [r for r in sel_ds if r["model"] == m]
            row = [m, fmt_pm([r["val_oa"] for r in sel]), fmt_pm([r["oa"] for r in sel]),
                   fmt_pm([r["aa"] for r in sel]),
                   fmt_pm([r["kappa"] for r in sel], 1.0, 3)]
            if ds != "synth":
                row.append(fmt_pm([r["iou_water"] or 0.0 for r in sel]))
            row += [f"{sel[0]['params']:,}", f"{sel[0]['flops'] / 1e6:.2f}",
                    f"{mean_std([r['latency_ms'] for r in sel])[0]:.2f}"]
            body.append(row)
        text.append(f"\n## {ds}\n\n{how}\n\n" + md_table(header, body, "l" + "r" * (len(header) - 1))
                    + "\n")
    text.append(f"\n![baselines]({png.name})\n\nThe searched networks beside these: "
                "searched_vs_baselines_<dataset>.md.\n")
    return "".join(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="synth,sen1floods11")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--synth-epochs", type=int, default=PROTOCOL["synth"]["epochs"])
    p.add_argument("--s1f11-epochs", type=int, default=PROTOCOL["sen1floods11"]["epochs"])
    p.add_argument("--s1f11-train", type=int, default=PROTOCOL["sen1floods11"]["max_train"])
    p.add_argument("--s1f11-val", type=int, default=PROTOCOL["sen1floods11"]["max_val"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_baselines"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--repeat-check", action="store_true",
                   help="train the first job twice and report whether it matched exactly")
    p.add_argument("--smoke", action="store_true", help="tiny synthetic scene, 1 epoch (CI)")
    args = p.parse_args()
    if args.smoke:
        args.datasets, args.seeds, args.synth_epochs = "synth", "0", 1
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    datasets = args.datasets.split(",")
    t0 = time.perf_counter()
    one_thread()
    jobs = []
    for ds in datasets:
        path, raw = dataset_task(ds, args.workdir, args.data_root, args.smoke)
        jobs += jobs_for(ds, path, raw, args)
    # Longest jobs first, so the two processes finish together.
    jobs.sort(key=lambda j: j.dataset != "sen1floods11")
    rows = []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        for r in pool.map(run_job, jobs):
            rows.append(r)
            print(f"{r['dataset']} {r['model']:>14} s{r['seed']}: OA {100 * r['oa']:.1f} "
                  f"kappa {r['kappa']:.3f} ({r['seconds']:.0f} s)", flush=True)
    repeat = None
    if args.repeat_check:
        again = run_job(jobs[0])
        first = next(r for r in rows if (r["dataset"], r["model"], r["seed"]) ==
                     (again["dataset"], again["model"], again["seed"]))
        repeat = repeat_statement(first, again, f"{again['dataset']} {again['model']} seed "
                                  f"{again['seed']}", ignore=TIMINGS)
        print(repeat, flush=True)
    name = "baselines_smoke" if args.smoke else "baselines"
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{name}.png"
    _plot(rows, datasets, png)
    path = write_report(args.out, name, report(rows, args, datasets, time.perf_counter() - t0, png,
                                               repeat))
    # the rows, machine-readable, for benchmarks/searched_vs_baselines.py
    (args.out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
