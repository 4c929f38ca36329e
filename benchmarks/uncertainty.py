"""Benchmark (issue 21, items 2 and 3): ensembles of the final seeds against one model, and
uncertainty maps that stay fast, on the synthetic benchmark scene and the Sen1Floods11 chip.

    python benchmarks/uncertainty.py [--datasets synth,sen1floods11] [--seeds 0,1,2,3,4]
        [--passes 8] [--data-root DIR] [--workdir /tmp/autors_uncertainty]
        [--out results/benchmarks] [--smoke]

Per dataset, one fixed network (`arch_for`: a branch per sensor with channel dropout 0.1, concat
at the middle, a conv trunk with dropout 0.1, a centre head with dropout 0.1: local, so it
predicts fully convolutionally, and MC dropout samples its features) is trained on `--seeds`
with the benchmarks' budget (`_common.PROTOCOL`, one split: `_common.SPLIT_SEED`) by the one
trial path (`train_evaluate(..., calibrate=True)`: temperature fitted on validation), tested
once like `train --test` (the test robustness table is left out: not measured here), and kept
as train folders: what a search's final phase keeps for its seeds.

Rows:
- **single model**: each seed (mean ± std of test OA, raw ECE and calibrated ECE) and the seed
  `autors export` would pick (best validation OA): its cost.
- **ensemble**: `autors.export.ensemble.export_ensemble` of the seeds' train folders: the mean of
  their calibrated probabilities, evaluated on the same validation and test pixels (counts
  checked); cost = the sum over members.
- **maps**: `autors predict` of the dataset's whole scene with the exported single model (one
  deterministic pass, then `--mc-dropout P`) and with the exported ensemble, all on the fully
  convolutional path (the method is stated; a fallback would show), pixels per second of the
  scene's grid (best of two runs each). Target (issue 21): MC dropout with P passes at no less
  than 1/10 of the single pass's pixels/s.
- **error detection**: on the maps' test pixels (the index's test labels on the same grid),
  AUROC of 1 - confidence, of the predictive entropy and of the mutual information for ranking
  wrong pixels first (0.5: no better than chance), and the maps' ECE.

`--smoke`: a tiny scene, 1 epoch, 2 seeds, 2 passes (checks the script, not the figures).
Report: `<out>/uncertainty[_smoke].md`, `.json`, `.png`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import yaml
from _common import (
    DEFAULT_DATA_ROOT,
    SPLIT_SEED,
    dataset_task,
    fmt_pm,
    header_block,
    md_table,
    mean_std,
    one_thread,
    with_budget,
    with_protocol,
    write_report,
    write_task_file,
)

SENSOR_BRANCH = {"hyperspectral": "spectral", "sar": "sar"}  # others: conv
DROPOUT = 0.1


def arch_for(kinds: dict[str, str], patch_size: int) -> dict:
    """The benchmark's network for sensors {name: kind} (see the module docstring): its
    receptive radius (4 px: a SAR branch's dilated block, the trunk's 3 x 3) fits the patch,
    so it predicts fully convolutionally; patches under 9 px get a 1 x 1 trunk and no
    dilation (the smoke scene's 5 px)."""
    small = patch_size // 2 < 4
    branch = dict(SENSOR_BRANCH, sar="conv") if small else SENSOR_BRANCH
    return {
        "version": 1,
        "branches": {s: {"kind": branch.get(k, "conv"), "width": 16, "depth": 1,
                         "kernel": 3, "dropout": DROPOUT} for s, k in kinds.items()},
        "fusion": {"op": "concat", "position": "middle", "width": 32,
                   "trunk": {"kind": "conv", "width": 32, "depth": 0,
                             "kernel": 1 if small else 3, "dropout": DROPOUT}},
        "head": {"kind": "centre", "hidden": 32, "dropout": DROPOUT},
    }


def _task(dataset: str, workdir: Path, data_root: Path, smoke: bool) -> Path:
    path, text = dataset_task(dataset, workdir, data_root, smoke)
    raw = yaml.safe_load(text)
    raw = with_budget(raw, 1, 200, 200) if smoke else with_protocol(raw, dataset)
    raw["train"] = dict(raw["train"], device="cpu")
    return write_task_file(raw, path, workdir / dataset / "task.yaml")


def _train(task, arch: dict, data, seed: int, out: Path) -> Path:
    """A train folder like `autors train --test` (calibrated on validation, tested once),
    without the test robustness table; reused when already there."""
    from autors.training.calibration import CalibrationCheck
    from autors.training.evaluate import evaluate
    from autors.training.train_folder import write_train_folder
    from autors.training.trial import train_evaluate

    if (out / "run.json").is_file():
        return out
    trained = train_evaluate(task, arch, data, seed, calibrate=True)
    check = CalibrationCheck(trained.calibration)
    spec = task.train
    test = evaluate(trained.outcome.model, data, "test", spec.batch_size,
                    num_workers=spec.num_workers, breakdown=True, on_logits=check.add)
    test["calibration"] = check.result()
    trained.test_metrics = test
    write_train_folder(out, task, data, seed, trained)
    return out


def _test_labels(data, k: int) -> np.ndarray:
    """Class index of the test pixels on the (one) scene's grid, -1 elsewhere."""
    return data.index.scenes[0].labels("test", k)


def _map_scores(result, labels: np.ndarray, values: np.ndarray) -> dict:
    """ECE and error-detection AUROCs of a prediction's maps on the test pixels."""
    from autors.training.calibration import auroc, ece_of_bins, reliability_bins

    with rasterio.open(result.class_map) as ds:
        classes = ds.read(1)
    with rasterio.open(result.scores) as ds:
        bands = dict(zip(ds.descriptions, ds.read()))
    test = labels >= 0
    test &= ~np.isnan(bands["confidence"])
    pred = np.searchsorted(values, classes[test])  # class values -> indexes
    wrong = pred != labels[test]
    conf = bands["confidence"][test].astype(np.float64)
    out = {"test_on_map": int(test.sum()), "oa": float(1 - wrong.mean()),
           "ece": ece_of_bins(*reliability_bins(conf, ~wrong)),
           "auroc_1_minus_confidence": auroc(1 - conf, wrong)}
    for band in ("entropy", "mutual_information"):
        if band in bands:
            out[f"auroc_{band}"] = auroc(bands[band][test].astype(np.float64), wrong)
    return out


def _timed(exported, sensors: dict, out: Path, options, repeats: int) -> tuple[object, float]:
    from autors.export.predict import predict_scene

    best, result = None, None
    for i in range(repeats):
        path = out.with_name(f"{out.stem}_{i}.tif")
        t0 = time.perf_counter()
        result = predict_scene(exported, sensors, path, options, progress=False)
        seconds = time.perf_counter() - t0
        best = seconds if best is None else min(best, seconds)
    return result, best


def run_dataset(dataset: str, args: argparse.Namespace) -> dict:
    from autors.config import load_task
    from autors.data import prepare
    from autors.export.ensemble import export_ensemble
    from autors.export.export import export_model
    from autors.export.loader import load_exported
    from autors.export.predict import PredictOptions
    from autors.training.train_folder import read_train_folder

    work = args.workdir / dataset
    task = load_task(_task(dataset, args.workdir, args.data_root, args.smoke))
    data = prepare(task)
    kinds = {n: s.kind for n, s in task.sensors.items()}
    arch = arch_for(kinds, task.patch_size)
    t0 = time.perf_counter()
    runs = []
    for seed in args.seeds:
        t = time.perf_counter()
        runs.append(read_train_folder(_train(task, arch, data, seed, work / f"seed{seed}")))
        print(f"[{dataset}] seed {seed} trained in {time.perf_counter() - t:.0f} s",
              flush=True)
    train_s = time.perf_counter() - t0
    models = work / "models"
    models.mkdir(exist_ok=True)
    single_dir, ens_dir = models / "single", models / "ensemble"
    best = max(runs, key=lambda r: r.metrics["val"]["oa"])
    if not (single_dir / "model.json").is_file():
        export_model(best.path, single_dir)
    t = time.perf_counter()
    if not (ens_dir / "model.json").is_file():
        export_ensemble(work, ens_dir, runs=runs, data=data, with_robustness=False)
    ensemble_export_s = time.perf_counter() - t
    single, ens = load_exported(single_dir), load_exported(ens_dir)
    card = ens.card
    n_test = {r.metrics["test"]["num_samples"] for r in runs}
    assert n_test == {card.ensemble.test_pixels}, "ensemble scored other test pixels"
    seeds = [{"seed": int(r.run["seed"]), "val_oa": r.metrics["val"]["oa"],
              "test_oa": r.metrics["test"]["oa"], "test_ece": r.metrics["test"]["ece"],
              "test_ece_calibrated": r.metrics["test"]["calibration"]["ece_after"],
              "temperature": r.calibration.temperature,
              "entropy_auroc": r.metrics["test"]["calibration"]["entropy_auroc"]}
             for r in runs]
    cost = best.metrics["cost"]
    # maps: the whole scene, fully convolutional
    sensors = {n: Path(s.path) for n, s in task.sensors.items()}
    k = card.num_classes
    labels = _test_labels(data, k)
    values = np.asarray(card.class_values)
    maps_dir = work / "maps"
    maps_dir.mkdir(exist_ok=True)
    rows = []
    for name, exported, options in (
            ("single pass", single, PredictOptions()),
            (f"MC dropout x{args.passes}", single, PredictOptions(mc_dropout=args.passes)),
            (f"ensemble of {len(runs)}", ens, PredictOptions())):
        result, seconds = _timed(exported, sensors, maps_dir / f"{name.split()[0]}.tif",
                                 options, args.repeats)
        grid_px = result.grid.height * result.grid.width
        if (result.grid.height, result.grid.width) != labels.shape:
            raise SystemExit(f"{dataset}: the map's grid {result.grid.height} x "
                             f"{result.grid.width} is not the index's {labels.shape}")
        rows.append({"name": name, "method": result.method, "seconds": seconds,
                     "pixels": grid_px, "pixels_per_s": grid_px / seconds,
                     "bands": result.bands, "notes": result.notes,
                     "calibration": getattr(result, "calibration", ""),
                     **_map_scores(result, labels, values)})
        print(f"[{dataset}] {name}: {result.method}, {grid_px / seconds:,.0f} px/s", flush=True)
    ratio = rows[1]["pixels_per_s"] / rows[0]["pixels_per_s"]
    return {
        "dataset": dataset, "task": task.name, "arch": arch, "seeds": seeds,
        "split_sha256": runs[0].run["split"]["sha256"],
        "val_pixels": card.ensemble.val_pixels, "test_pixels": card.ensemble.test_pixels,
        "single": {"seed": int(best.run["seed"]), "cost": cost,
                   "test_oa": best.metrics["test"]["oa"], "test_ece": best.metrics["test"]["ece"],
                   "test_ece_calibrated":
                       best.metrics["test"]["calibration"]["ece_after"]},
        "ensemble": {"val_oa": card.ensemble.val.oa, "test_oa": card.ensemble.test.oa,
                     "test_ece": card.ensemble.test.ece,
                     "cost": card.cost.model_dump(),
                     "members": [m.seed for m in card.ensemble.members],
                     "export_s": ensemble_export_s},
        "maps": rows, "mc_over_single": ratio, "passes": args.passes,
        "target_met": bool(ratio >= 0.1), "train_s": train_s,
    }


def _report(results: list[dict], args: argparse.Namespace, wall_s: float) -> str:
    name = "uncertainty_smoke" if args.smoke else "uncertainty"
    parts = [header_block("Ensembles and uncertainty maps (issue 21)", "uncertainty.py",
                          wall_s)]
    parts.append(
        f"\nNetwork: one fixed local network per dataset (`arch_for`: branches with channel "
        f"dropout {DROPOUT}, concat at the middle, conv trunk with dropout {DROPOUT}, centre "
        f"head with dropout {DROPOUT}), trained by the one trial path on seeds "
        f"{', '.join(map(str, args.seeds))} with the benchmarks' budget, calibrated on "
        "validation (temperature), tested once. The ensemble is `autors export --ensemble`'s "
        "packing of those seeds (`export_ensemble`): the mean of the members' calibrated "
        "probabilities. The test split only scores: the single model is the best-validated "
        "seed, the ensemble takes every seed.\n")
    for res in results:
        ds = res["dataset"]
        seeds = res["seeds"]
        s, e = res["single"], res["ensemble"]
        parts.append(f"\n## {ds} ({res['task']})\n")
        parts.append(
            f"Every row is scored on the same {res['test_pixels']:,} test pixels (validated "
            f"on the same {res['val_pixels']:,}); split hash `{res['split_sha256'][:12]}` "
            f"(split seed {SPLIT_SEED}).\n")
        c, ec = s["cost"], e["cost"]
        rows = [
            ["single model, per seed (mean ± std)", fmt_pm([x["test_oa"] for x in seeds]),
             fmt_pm([x["test_ece"] for x in seeds]),
             fmt_pm([x["test_ece_calibrated"] for x in seeds]), f"{c['params']:,}",
             f"{c['flops'] / 1e6:.2f}", f"{c['latency_ms_b1']:.2f}"],
            [f"single model (seed {s['seed']}, best validation)", f"{s['test_oa'] * 100:.1f}",
             f"{s['test_ece'] * 100:.1f}", f"{s['test_ece_calibrated'] * 100:.1f}",
             f"{c['params']:,}", f"{c['flops'] / 1e6:.2f}", f"{c['latency_ms_b1']:.2f}"],
            [f"**ensemble of {len(seeds)}** (mean calibrated probability)",
             f"{e['test_oa'] * 100:.1f}", "-", f"{e['test_ece'] * 100:.1f}",
             f"{ec['params']:,}", f"{ec['flops'] / 1e6:.2f}", f"{ec['latency_ms_b1']:.2f}"],
        ]
        parts.append(md_table(["model", "test OA %", "test ECE % (raw)",
                               "test ECE % (calibrated)", "params", "MFLOPs/sample",
                               "latency ms @1"], rows, "lrrrrrr"))
        gain = (e["test_oa"] - mean_std([x["test_oa"] for x in seeds])[0]) * 100
        parts.append(f"\nEnsemble vs the seeds' mean: {gain:+.1f} OA points, ECE "
                     f"{e['test_ece'] * 100:.1f} % vs "
                     f"{mean_std([x['test_ece_calibrated'] for x in seeds])[0] * 100:.1f} % "
                     f"(calibrated single models), at {len(seeds)}x the cost.\n")
        map_rows = []
        for m in res["maps"]:
            map_rows.append([m["name"], m["method"], f"{m['pixels_per_s']:,.0f}",
                             f"{m['seconds']:.1f}", f"{m['oa'] * 100:.1f}",
                             f"{m['ece'] * 100:.1f}",
                             _fmt(m.get("auroc_1_minus_confidence")),
                             _fmt(m.get("auroc_entropy")),
                             _fmt(m.get("auroc_mutual_information"))])
        first = res["maps"][0]
        parts.append(f"\nMaps of the whole scene ({first['pixels']:,} px of the grid, best of "
                     f"{args.repeats} runs each); OA, ECE and the AUROCs of ranking wrong pixels "
                     f"first are on the maps' {first['test_on_map']:,} test pixels:\n")
        parts.append(md_table(["map", "path", "px/s", "s", "OA %", "ECE %",
                               "AUROC 1-conf", "AUROC entropy", "AUROC MI"], map_rows,
                              "llrrrrrrr"))
        met = "met" if res["target_met"] else "NOT met"
        parts.append(f"\nTarget (issue 21): MC dropout with {res['passes']} passes at >= 1/10 "
                     f"of the single pass's pixels/s: {res['mc_over_single']:.3f} of it "
                     f"(1/{1 / res['mc_over_single']:.1f}): **{met}**.\n")
    parts.append("\n## Targets (issue 21)\n")
    for res in results:
        met = "met" if res["target_met"] else "NOT met"
        parts.append(f"- {res['dataset']}: MC dropout x{res['passes']} at "
                     f"{res['mc_over_single']:.3f} of the single pass's pixels/s (target >= "
                     f"0.1): **{met}**.")
    parts.append(f"\nFigure: `{name}.png` (test OA and ECE per seed, the ensemble; pixels/s "
                 "per map).\n")
    return "\n".join(parts) + "\n"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(9, 3.2 * len(results)), squeeze=False)
    for row, res in zip(axes, results):
        ax = row[0]
        oa = [s["test_oa"] * 100 for s in res["seeds"]]
        ece = [s["test_ece_calibrated"] * 100 for s in res["seeds"]]
        ax.scatter(ece, oa, label="single models (seeds)", color="tab:blue")
        ax.scatter([res["ensemble"]["test_ece"] * 100], [res["ensemble"]["test_oa"] * 100],
                   marker="*", s=160, color="tab:red", label="ensemble")
        ax.set_xlabel("test ECE % (calibrated)")
        ax.set_ylabel("test OA %")
        ax.set_title(res["dataset"], fontsize=9)
        ax.legend(fontsize=7)
        ax = row[1]
        names = [m["name"] for m in res["maps"]]
        ax.barh(names, [m["pixels_per_s"] for m in res["maps"]], color="tab:green")
        ax.set_xlabel("pixels / s (fully convolutional)")
        ax.set_title(f"{res['dataset']}: MC/single = {res['mc_over_single']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="synth,sen1floods11")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--passes", type=int, default=8, help="MC dropout passes")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per map (best kept)")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_uncertainty"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--smoke", action="store_true", help="tiny scene, 1 epoch, 2 seeds")
    args = p.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    datasets = args.datasets.split(",")
    if args.smoke:
        args.seeds, args.passes, args.repeats = args.seeds[:2], 2, 1
        datasets = ["synth"]
    one_thread()
    t0 = time.perf_counter()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = [run_dataset(d, args) for d in datasets]
    wall = time.perf_counter() - t0
    name = "uncertainty_smoke" if args.smoke else "uncertainty"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(
        {"command": " ".join(sys.argv), "wall_s": wall, "datasets": results}, indent=2) + "\n")
    _plot(results, args.out / f"{name}.png")
    path = write_report(args.out, name, _report(results, args, wall))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
