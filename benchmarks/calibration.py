"""Benchmark (issue 21, items 1 and 4): are the confidences calibrated after temperature
scaling, do the split-conformal sets cover what they promise, and are the uncertain pixels
where the errors are? On the synthetic benchmark scene and the Sen1Floods11 chip.

    python benchmarks/calibration.py [--datasets synth,sen1floods11] [--seeds 0,1,2,3,4]
        [--synth-epochs 10] [--s1f11-epochs 5] [--s1f11-train 4000] [--s1f11-val 3000]
        [--synth-test 20000] [--s1f11-test 20000] [--arch DATASET=NAME] [--workers 2]
        [--data-root DIR] [--workdir /tmp/autors_calibration] [--out results/benchmarks]
        [--smoke]

One split per dataset (`_common.SPLIT_SEED`, default buffer) and the datasets' budget of
`_common.PROTOCOL` (synth: 10 epochs, every training and validation pixel; Sen1Floods11: 5
epochs, 4,000 training patches per epoch, a fixed seeded 3,000 validation pixels), early
stopping off (the best validation epoch restored). The architecture per dataset is the
hand-designed baseline with the best mean VALIDATION OA in results/benchmarks/baselines.json
(`_common.best_baseline`; the test split picks nothing), or `--arch DATASET=NAME`.

Every model is trained by `autors.training.trial.train_evaluate(..., test=True,
calibrate=True)`, the path of `autors train` and of a search's final models: after training,
the temperature T and the conformal quantiles are fitted on the validation pixels' logits
(`autors.training.calibration`); the one test evaluation measures, in the same pass, the ECE
(15 bins) and NLL of the raw and the temperature-scaled softmax, the reliability bins, the
coverage, mean size and share of empty LAC prediction sets at alpha 0.05, 0.1 and 0.2, and the
AUROC of the predictive entropy (calibrated probabilities) for telling wrong pixels from right
ones. Nothing is fitted on test. The test split is scored on a fixed seeded subset of its
pixels (`--synth-test`, `--s1f11-test`; 0: all) because `train_evaluate(test=True)` also runs
the robustness table (one pass per sensor removed and per cloud cover); the same pixels for
every seed, checked by hash and count.

Targets (issue 21), stated met / not met with the numbers: test ECE after temperature scaling
<= 0.02 (mean over seeds); conformal test coverage within 2 points of nominal at alpha 0.1 and
0.05 (mean over seeds; the worst seed is shown too). The entropy AUROC is reported, with no
target.

Ensembles and MC dropout (issue 21, items 2-3) are measured by benchmarks/uncertainty.py
(results/benchmarks/uncertainty.md). `--smoke`: a tiny synthetic scene, 1 epoch, 1 seed,
`late_cnn_centre`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml
from _common import (
    DEFAULT_DATA_ROOT,
    PROTOCOL,
    SPLIT_SEED,
    best_baseline,
    dataset_task,
    fmt_pm,
    header_block,
    md_table,
    mean_std,
    one_thread,
    versions,
    with_budget,
    write_report,
)

DATASETS = ("synth", "sen1floods11")
ALPHAS = (0.05, 0.1, 0.2)  # `autors.training.calibration.REPORTED_ALPHAS`
TARGET_ALPHAS = (0.1, 0.05)
ECE_TARGET = 0.02
COVERAGE_TARGET = 0.02  # within 2 points of nominal
SMOKE_ARCH = "late_cnn_centre"
FALLBACK_ARCH = {"synth": "two_branch_centre", "sen1floods11": "early_cnn_centre"}
BASELINES_JSON = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "baselines.json"


# -- one model ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Job:
    dataset: str
    task_path: str
    raw: str  # the task YAML with the benchmark budget
    arch: str
    seed: int
    test_pixels: int | None
    models_dir: str


def run_job(job: Job) -> dict:
    """Train, calibrate on validation and test once (`train_evaluate`); the row."""
    one_thread()
    import torch
    from robustness import scored_subset

    from autors.config import parse_task
    from autors.data import prepare
    from autors.training.trial import train_evaluate

    t0 = time.perf_counter()
    task = parse_task(yaml.safe_load(job.raw), Path(job.task_path))
    full = prepare(task)
    data = scored_subset(full, job.test_pixels)
    trained = train_evaluate(task, job.arch, data, job.seed, test=True, calibrate=True)
    cal, test = trained.calibration, trained.test_metrics
    checked = test["calibration"]
    model_file = Path(job.models_dir) / f"{job.dataset}_seed{job.seed}.pt"
    model_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": trained.outcome.arch.to_dict(), "in_channels": data.in_channels,
                "num_classes": data.num_classes, "temperature": cal.temperature,
                "state_dict": {k: v.cpu() for k, v in trained.outcome.model.state_dict().items()}},
               model_file)
    val = trained.outcome.val_metrics
    return {
        "dataset": job.dataset, "model": job.arch, "seed": job.seed,
        "val_oa": float(val["oa"]), "oa": float(test["oa"]), "kappa": float(test["kappa"]),
        "temperature": cal.temperature, "at_bound": bool(cal.val["at_bound"]),
        "val_ece_before": cal.val["ece_before"], "val_ece_after": cal.val["ece_after"],
        "val_nll_before": cal.val["nll_before"], "val_nll_after": cal.val["nll_after"],
        "ece_before": checked["ece_before"], "ece_after": checked["ece_after"],
        "nll_before": checked["nll_before"], "nll_after": checked["nll_after"],
        "entropy_auroc": checked["entropy_auroc"], "conformal": checked["conformal"],
        "reliability": checked["reliability"], "conformal_n": cal.conformal["n"],
        "flops": trained.cost.flops, "params": trained.cost.params,
        "n_val": int(val["num_samples"]), "n_test": int(test["num_samples"]),
        "n_test_split": int(sum(full.index.counts()["test"])),
        "split_sha256": full.index.sha256(), "scored_sha256": data.index.sha256(),
        "model_file": str(model_file), "seconds": time.perf_counter() - t0,
    }


# -- report ------------------------------------------------------------------------------------
def coverage_of(row: dict, alpha: float) -> dict:
    return next(c for c in row["conformal"] if abs(c["alpha"] - alpha) < 1e-9)


def check_same_pixels(rows: list[dict], dataset: str) -> str:
    keys = {(r["split_sha256"], r["scored_sha256"], r["n_test"], r["n_val"]) for r in rows}
    if len(keys) != 1:
        raise SystemExit(f"{dataset}: seeds were scored on different pixels {sorted(keys)}")
    split, scored, n_test, n_val = keys.pop()
    return (f"Every seed is validated (and calibrated) on the same {n_val:,} validation pixels "
            f"and tested on the same {n_test:,} test pixels (a fixed seeded subset of the "
            f"split's {rows[0]['n_test_split']:,}, hash `{scored[:12]}`); split hash "
            f"`{split[:12]}` (split seed {SPLIT_SEED}, default buffer: no held-out patch "
            "footprint touches a training pixel).")


def targets(rows: list[dict]) -> list[dict]:
    ece = [r["ece_after"] for r in rows]
    out = [{"target": f"test ECE after temperature scaling <= {ECE_TARGET:g}",
            "met": mean_std(ece)[0] <= ECE_TARGET,
            "text": f"mean {mean_std(ece)[0]:.4f} over {len(rows)} seeds (worst seed "
                    f"{max(ece):.4f}; before scaling {mean_std([r['ece_before'] for r in rows])[0]:.4f})"}]
    for alpha in TARGET_ALPHAS:
        cov = [coverage_of(r, alpha)["coverage"] for r in rows]
        gap = mean_std(cov)[0] - (1 - alpha)
        worst = max(cov, key=lambda c: abs(c - (1 - alpha)))
        out.append({"target": f"conformal coverage at alpha {alpha:g} within "
                              f"{100 * COVERAGE_TARGET:g} points of {100 * (1 - alpha):g} %",
                    "met": abs(gap) <= COVERAGE_TARGET,
                    "text": f"mean {100 * mean_std(cov)[0]:.2f} % ({100 * gap:+.2f} points; "
                            f"worst seed {100 * worst:.2f} %)"})
    return out


def pooled_reliability(rows: list[dict], key: str) -> dict:
    """The seeds' reliability bins pooled (counts summed, means weighted by counts)."""
    n = rows[0]["reliability"]["bins"]
    count, conf, acc = [0] * n, [0.0] * n, [0.0] * n
    for r in rows:
        c = r["reliability"][key]
        for i in range(n):
            if c["count"][i]:
                count[i] += c["count"][i]
                conf[i] += c["count"][i] * c["confidence"][i]
                acc[i] += c["count"][i] * c["accuracy"][i]
    return {"count": count,
            "confidence": [conf[i] / count[i] if count[i] else None for i in range(n)],
            "accuracy": [acc[i] / count[i] if count[i] else None for i in range(n)]}


def report(args: argparse.Namespace, dataset: str, rows: list[dict],
           goals: list[dict], arch_note: str) -> str:
    b = budget_of(args, dataset)
    if dataset == "synth":
        data = ("synthetic benchmark preset (512 x 512 px, scene seed 0, 4 sensors, 10 classes)"
                if not args.smoke else "tiny synthetic scene (64 px)")
        train = f"{b['epochs']} epochs, every training pixel, every validation pixel"
    else:
        data = ("Sen1Floods11 chip Spain_7370579 (S1 SAR + S2 optical, water; 512 x 512 px, "
                "spatial-block split)")
        train = (f"{b['epochs']} epochs, {b['max_train']:,} training patches per epoch, a fixed "
                 f"seeded {b['max_val']:,} validation pixels")
    seeds = [r["seed"] for r in rows]
    text = [f"\n## {dataset}\n\nData: {data}. Architecture: `{rows[0]['model']}` "
            f"({arch_note}; {rows[0]['flops'] / 1e6:.2f} MFLOPs per patch). Training: {train}; "
            f"early stopping off, the best validation epoch restored. Seeds {seeds}. "
            + check_same_pixels(rows, dataset) + "\n"]
    header = ["seed", "val OA %", "test OA %", "T", "val ECE raw", "val ECE scaled",
              "test ECE raw", "test ECE scaled", "test NLL raw", "test NLL scaled",
              "entropy AUROC"]
    body = [[str(r["seed"]), f"{100 * r['val_oa']:.1f}", f"{100 * r['oa']:.1f}",
             f"{r['temperature']:.3f}" + (" (bound)" if r["at_bound"] else ""),
             f"{r['val_ece_before']:.4f}", f"{r['val_ece_after']:.4f}",
             f"{r['ece_before']:.4f}", f"{r['ece_after']:.4f}", f"{r['nll_before']:.4f}",
             f"{r['nll_after']:.4f}",
             "-" if r["entropy_auroc"] is None else f"{r['entropy_auroc']:.3f}"]
            for r in rows]
    aurocs = [r["entropy_auroc"] for r in rows if r["entropy_auroc"] is not None]
    body.append(["**mean ± std**", fmt_pm([r["val_oa"] for r in rows]),
                 fmt_pm([r["oa"] for r in rows]), fmt_pm([r["temperature"] for r in rows], 1, 3)]
                + [fmt_pm([r[k] for r in rows], 1, 4) for k in
                   ("val_ece_before", "val_ece_after", "ece_before", "ece_after", "nll_before",
                    "nll_after")]
                + [fmt_pm(aurocs, 1, 3) if aurocs else "-"])
    text.append("\n### Temperature scaling\n\nT fitted on the validation pixels (golden-section "
                "search of the NLL over log T); ECE with 15 equal-width bins; NLL in nats per "
                "pixel. `val` figures are in-sample for T, `test` ones are not. Entropy AUROC: "
                "how well the predictive entropy (calibrated probabilities) ranks the wrong test "
                "pixels above the right ones (0.5: no better than chance, 1: every error more "
                "uncertain than every correct pixel).\n\n"
                + md_table(header, body, "l" + "r" * (len(header) - 1)) + "\n")
    header = ["alpha", "nominal %", "test coverage %", "min .. max over seeds %",
              "mean set size", "empty sets %", "q(alpha)"]
    body = []
    for alpha in ALPHAS:
        cs = [coverage_of(r, alpha) for r in rows]
        cov = [c["coverage"] for c in cs]
        body.append([f"{alpha:g}", f"{100 * (1 - alpha):g}", fmt_pm(cov, 100, 2),
                     f"{100 * min(cov):.2f} .. {100 * max(cov):.2f}",
                     fmt_pm([c["mean_set_size"] for c in cs], 1, 3),
                     fmt_pm([c["empty"] for c in cs], 100, 2),
                     fmt_pm([c["quantile"] for c in cs], 1, 4)])
    text.append(f"\n### Conformal prediction sets\n\nSplit-conformal LAC sets (class k in the "
                f"set where 1 - p_k <= q(alpha), p the calibrated probabilities; q(alpha) the "
                f"ceil((n + 1)(1 - alpha))-th smallest validation score, n = "
                f"{rows[0]['conformal_n']:,} validation pixels) on the test pixels, mean ± std "
                "over seeds. An empty set is how LAC keeps coverage near nominal when the model "
                "is more accurate than 1 - alpha.\n\n"
                + md_table(header, body, "rrrrrrr") + "\n")
    text.append("\nEnsembles and MC dropout (issue 21, items 2-3): "
                "[uncertainty.md](uncertainty.md) (benchmarks/uncertainty.py).\n")
    text.append("\n### Targets (issue 21)\n\n" + "\n".join(
        f"- {g['target']}: {g['text']}: **{'met' if g['met'] else 'NOT met'}**." for g in goals)
        + "\n")
    return "".join(text)


def plot(by_ds: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autors.training.calibration import draw_reliability

    fig, axes = plt.subplots(1, 2 * len(by_ds), figsize=(4.2 * 2 * len(by_ds), 4.2),
                             squeeze=False)
    for i, (ds, rows) in enumerate(by_ds.items()):
        rel = {"bins": rows[0]["reliability"]["bins"],
               "before": pooled_reliability(rows, "before"),
               "after": pooled_reliability(rows, "after")}
        ece_b = mean_std([r["ece_before"] for r in rows])[0]
        ece_a = mean_std([r["ece_after"] for r in rows])[0]
        draw_reliability(axes[0][2 * i], rel, f"{ds}: test reliability, {len(rows)} seeds "
                         f"pooled\nECE {ece_b:.3f} raw -> {ece_a:.3f} scaled")
        ax = axes[0][2 * i + 1]
        nominal = [1 - a for a in ALPHAS]
        for r in rows:
            ax.plot(nominal, [coverage_of(r, a)["coverage"] for a in ALPHAS], marker="o",
                    ms=3, lw=0.8, alpha=0.7, label=f"seed {r['seed']}")
        lo, hi = min(nominal) - 0.03, max(nominal) + 0.03
        ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1, label="nominal")
        ax.fill_between([lo, hi], [lo - COVERAGE_TARGET, hi - COVERAGE_TARGET],
                        [lo + COVERAGE_TARGET, hi + COVERAGE_TARGET], color="grey", alpha=0.15,
                        label="± 2 points")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo - 0.03, hi + 0.03)
        ax.set_xlabel("nominal coverage 1 - alpha")
        ax.set_ylabel("test coverage")
        ax.set_title(f"{ds}: conformal (LAC) coverage on test", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- main --------------------------------------------------------------------------------------
def budget_of(args: argparse.Namespace, dataset: str) -> dict:
    if dataset == "synth":
        return {"epochs": args.synth_epochs, "max_train": None, "max_val": None,
                "test": args.synth_test}
    return {"epochs": args.s1f11_epochs, "max_train": args.s1f11_train,
            "max_val": args.s1f11_val, "test": args.s1f11_test}


def choose_arch(args: argparse.Namespace, dataset: str) -> tuple[str, str]:
    """(arch, why): --arch, else the best baseline by mean validation OA in baselines.json."""
    if dataset in args.arch:
        return args.arch[dataset], "given with --arch"
    if args.smoke:
        return SMOKE_ARCH, "the smoke run's fixed arch"
    if BASELINES_JSON.is_file():
        rows = json.loads(BASELINES_JSON.read_text())
        best = best_baseline(rows, dataset)
        return best["model"], (f"the baseline with the best mean validation OA, "
                               f"{100 * best['val_oa']:.1f} %, in results/benchmarks/"
                               "baselines.json")
    return FALLBACK_ARCH[dataset], "a fixed good baseline (baselines.json not found)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="synth,sen1floods11")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--synth-epochs", type=int, default=PROTOCOL["synth"]["epochs"])
    p.add_argument("--s1f11-epochs", type=int, default=PROTOCOL["sen1floods11"]["epochs"])
    p.add_argument("--s1f11-train", type=int, default=PROTOCOL["sen1floods11"]["max_train"])
    p.add_argument("--s1f11-val", type=int, default=PROTOCOL["sen1floods11"]["max_val"])
    p.add_argument("--synth-test", type=int, default=20000, help="test pixels scored (0: all)")
    p.add_argument("--s1f11-test", type=int, default=20000, help="test pixels scored (0: all)")
    p.add_argument("--arch", action="append", default=[], metavar="DATASET=NAME",
                   help="the architecture of a dataset (default: its best baseline by "
                   "validation OA)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_calibration"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--smoke", action="store_true",
                   help="tiny synthetic scene, 1 epoch, 1 seed, late_cnn_centre (CI)")
    args = p.parse_args()
    if args.smoke:
        args.datasets, args.seeds, args.synth_epochs, args.synth_test = "synth", "0", 1, 0
    args.datasets = args.datasets.split(",")
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.arch = dict(a.split("=", 1) for a in args.arch)
    args.synth_test, args.s1f11_test = args.synth_test or None, args.s1f11_test or None
    t0 = time.perf_counter()
    one_thread()
    args.workdir.mkdir(parents=True, exist_ok=True)
    tasks, archs, jobs = {}, {}, []
    for ds in args.datasets:
        path, text = dataset_task(ds, args.workdir, args.data_root, args.smoke)
        b = budget_of(args, ds)
        raw = with_budget(yaml.safe_load(text), b["epochs"], b["max_train"], b["max_val"])
        tasks[ds] = (path, raw)
        archs[ds] = choose_arch(args, ds)
        jobs += [Job(ds, str(path), yaml.safe_dump(raw, sort_keys=False), archs[ds][0], seed,
                     b["test"], str(args.workdir / "models")) for seed in args.seed_list]
    jobs.sort(key=lambda j: j.dataset != "synth")  # the longer synthetic jobs first
    rows = []
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        for r in pool.map(run_job, jobs):
            rows.append(r)
            c = coverage_of(r, 0.1)
            print(f"{r['dataset']} {r['model']} s{r['seed']}: OA {100 * r['oa']:.1f}, T "
                  f"{r['temperature']:.3f}, ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f}, "
                  f"coverage@0.1 {100 * c['coverage']:.2f} % (size {c['mean_set_size']:.3f}), "
                  f"AUROC {r['entropy_auroc']} ({r['seconds']:.0f} s)", flush=True)
    by_ds = {ds: sorted([r for r in rows if r["dataset"] == ds], key=lambda r: r["seed"])
             for ds in args.datasets}
    wall = time.perf_counter() - t0
    name = "calibration_smoke" if args.smoke else "calibration"
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{name}.png"
    plot(by_ds, png)
    goals = {ds: targets(by_ds[ds]) for ds in args.datasets}
    text = [header_block("Calibration, conformal sets and uncertainty (issue 21, items 1 and 4)",
                         "benchmarks/calibration.py", wall),
            ("\nEvery model: `train_evaluate(..., test=True, calibrate=True)` (the path of "
             "`autors train` and of a search's final models). Temperature T and the conformal "
             "quantiles are fitted on the validation split only; the test split is evaluated "
             "once, after, and fits nothing.\n")]
    text += [report(args, ds, by_ds[ds], goals[ds], archs[ds][1])
             for ds in args.datasets]
    text.append(f"\n![calibration]({png.name})\n")
    path = write_report(args.out, name, "".join(text))
    (args.out / f"{name}.json").write_text(json.dumps({
        "datasets": args.datasets, "seeds": args.seed_list,
        "budget": {ds: budget_of(args, ds) for ds in args.datasets},
        "archs": {ds: {"model": a, "why": why} for ds, (a, why) in archs.items()},
        "targets": goals, "rows": rows, "wall_s": wall,
        "versions": versions()}, indent=1))
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
