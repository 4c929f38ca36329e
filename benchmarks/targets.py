"""Benchmark (issue 16): several targets at once, and continuous targets.

    python benchmarks/targets.py [--seeds 0,1,2,3,4] [--trials 6] [--epochs 6]
        [--max-train 3000] [--max-val 2000] [--workers 2] [--space compact]
        [--baselines early_cnn_centre,two_branch_centre] [--stride 3] [--data-root DIR]
        [--workdir /tmp/autors_targets] [--out results/benchmarks] [--smoke]

Two datasets, one split each (spatial blocks of 64 px, `_common.SPLIT_SEED`, default buffer):

- synth: the synthetic benchmark scene (`_common.synth_task`, 512 px, seed 0) with optical +
  SAR as inputs and two targets on the same pixels: the land-cover classes and the LiDAR nDSM
  (height above ground, metres; the LiDAR raster is the label, not an input, so the height
  must come from optical + SAR). Tasks: multi (both targets, one head each), class only
  (`labels:`), height only (a continuous target).
- sen1floods11: the real chip; MNDWI = (B3 - B11) / (B3 + B11) of its Sentinel-2 raster,
  written into the workdir, predicted from Sentinel-1 alone (a water index under clouds).

Search: the same seeded random search for every task, `--trials` architectures drawn from the
`--space` space (default `compact`: small networks, so the run fits a loaded 2-core machine) (a task with targets also draws each head's width and stage), each trained once
(seed 0, validation only); the best by the task's objective (val_score: the targets' mean of
OA and R2; val_oa for the class-only task) is retrained on every seed and tested once.
Baselines with a regression head: the hand-designed patch baselines (`fusion.baselines_for`)
on the continuous-only tasks, trained on every seed. Every model: `train_evaluate` (Gaussian
NLL head: value and log-variance), a fixed budget (`--epochs`, early stopping off,
`--max-train` patches per epoch, a fixed seeded `--max-val` validation pixels).

Metrics are computed here from every model's per-pixel test predictions on the pixels every
row of a dataset shares (the intersection of the tasks' test pixels, on a lattice of
`--stride` px; its size is reported):
OA / kappa of the class target, RMSE / MAE / R2 / bias of a continuous one in its units, the
coverage of the nominal 68.27 % and 95 % intervals mu +- z sigma of the heteroscedastic std.
FLOPs per sample from `autors.training.cost`.

Targets (issue 16), each stated met / NOT met: the multi-task model at least as accurate as the
single-task models on every target (mean over seeds) at <= 0.7x their summed FLOPs; interval
coverage within 5 points of nominal (68 % and 95 %, mean over seeds, every continuous model);
the searched continuous model beats the regression baselines on RMSE (mean over seeds).
`--smoke`: tiny synthetic scene, 1 epoch, 1 trial, 1 seed, synth only, in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import yaml
from _common import (
    DEFAULT_DATA_ROOT,
    SPLIT_SEED,
    header_block,
    md_table,
    mean_std,
    one_thread,
    synth_task,
    versions,
    write_report,
)

FLOPS_TARGET = 0.7
COVERAGE_TOL = 0.05
NOMINAL = {"coverage68": 0.6827, "coverage95": 0.95}
CLASSES = "landcover"
HEIGHT = "height"
MNDWI = "mndwi"


# -- data ----------------------------------------------------------------------------------------
def _write_like(src: Path, dst: Path, data: np.ndarray, nodata: float | None) -> Path:
    import rasterio

    with rasterio.open(src) as ref:
        profile = ref.profile | {"count": 1, "dtype": data.dtype.name, "nodata": nodata}
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data[None])
    return dst


def synth_tasks(args: argparse.Namespace) -> dict[str, dict]:
    """The synthetic scene's three tasks: multi, class only, height only (same pixels)."""
    import rasterio

    path, text = synth_task(args.workdir, args.smoke)
    folder = path.parent
    raw = yaml.safe_load(text)
    with rasterio.open(folder / "labels.tif") as f:
        labels = f.read(1)
    with rasterio.open(folder / "lidar.tif") as f:
        height = f.read(1).astype(np.float32)
        bad = height == f.nodata
    both = (labels > 0) & ~bad & np.isfinite(height)  # every target on the same pixels
    lc = _write_like(folder / "labels.tif", folder / "landcover.tif",
                     np.where(both, labels, 0).astype(np.uint8), 0)
    ht = _write_like(folder / "labels.tif", folder / "height.tif",
                     np.where(both, height, np.nan).astype(np.float32), None)
    classes = raw["labels"]["classes"]
    base = {
        "task": "patch_classification",
        "sensors": {k: dict(v, path=str(folder / v["path"])) for k, v in raw["sensors"].items()
                    if k in ("optical", "sar")},
        "split": {"kind": "spatial_blocks", "block_size": 16 if args.smoke else 64,
                  "test_fraction": 0.25, "val_fraction": 0.15, "seed": SPLIT_SEED},
        "patch_size": 5 if args.smoke else 7,
        "seed": 0,
        "train": budget(args),
        "search": {"objective": "val_score", "max_trials": args.trials, "space": args.space},
    }
    cls_t = {"path": str(lc), "classes": classes, "ignore": 0}
    h_t = {"path": str(ht), "kind": "continuous", "units": "m", "loss": "gaussian_nll"}
    return {
        "multi": base | {"name": "synth_multi", "targets": {CLASSES: cls_t, HEIGHT: h_t}},
        "classes": base | {"name": "synth_classes", "labels": cls_t,
                           "search": base["search"] | {"objective": "val_oa"}},
        "height": base | {"name": "synth_height", "targets": {HEIGHT: h_t}},
    }


def s1f11_task(args: argparse.Namespace) -> dict[str, dict]:
    """Sentinel-1 alone -> the chip's Sentinel-2 MNDWI (written into the workdir)."""
    import rasterio

    folder = args.data_root / "sen1floods11_sample"
    with rasterio.open(folder / "s2.tif") as f:
        b3, b11 = f.read(3).astype(np.float64), f.read(12).astype(np.float64)
    ok = (b3 > 0) & (b11 > 0)
    mndwi = np.where(ok, (b3 - b11) / np.where(ok, b3 + b11, 1.0), np.nan).astype(np.float32)
    out = args.workdir / "s1f11_mndwi.tif"
    args.workdir.mkdir(parents=True, exist_ok=True)
    _write_like(folder / "labels.tif", out, mndwi, None)
    task = {
        "name": "s1f11_mndwi", "task": "patch_classification",
        "sensors": {"s1": {"kind": "sar", "path": str(folder / "s1.tif"), "sar_units": "db"}},
        "targets": {MNDWI: {"path": str(out), "kind": "continuous", "units": "",
                            "range": [-1.0, 1.0], "loss": "gaussian_nll"}},
        "split": {"kind": "spatial_blocks", "block_size": 64, "test_fraction": 0.25,
                  "val_fraction": 0.15, "seed": SPLIT_SEED},
        "patch_size": 9, "seed": 0, "train": budget(args),
        "search": {"objective": "val_score", "max_trials": args.trials, "space": args.space},
    }
    return {"mndwi": task}


def budget(args: argparse.Namespace) -> dict:
    return {"epochs": args.epochs, "early_stopping_patience": args.epochs, "batch_size": 64,
            "lr": 0.005, "max_train_samples": args.max_train, "val_max_samples": args.max_val,
            "device": "cpu"}


# -- one model -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Job:
    dataset: str
    task: str  # multi, classes, height, mndwi
    raw: str  # the task YAML
    arch: str  # a baseline name or an arch dict as JSON
    model: str  # the row: trial<i>, searched, or the baseline's name
    seed: int
    test: bool
    stride: int = 3  # test pixels scored: those on a lattice of this many px


def run_job(job: Job) -> dict:
    """Train one model (train_evaluate); with `test`, its per-pixel test predictions."""
    one_thread()
    import torch

    from autors.config import TaskSpec
    from autors.data import prepare
    from autors.training.trial import train_evaluate

    task = TaskSpec.from_dict(yaml.safe_load(job.raw))
    data = prepare(task)
    arch = job.arch if not job.arch.startswith("{") else json.loads(job.arch)
    t0 = time.perf_counter()
    torch.manual_seed(job.seed)
    trained = train_evaluate(task, arch, data, job.seed)
    row = {"dataset": job.dataset, "task": job.task, "model": job.model, "seed": job.seed,
           "arch": trained.outcome.arch.to_dict(), "summary": trained.outcome.arch.summary(),
           "flops": trained.cost.flops, "params": trained.cost.params,
           "val": {k: v for k, v in trained.metrics().items()
                   if k.startswith("val_") and isinstance(v, float)},
           "split": data.index.split_record()["sha256"]}
    if job.test:
        row["pixels"] = test_pixels(trained.outcome.model, data, task, job.stride)
    row["seconds"] = time.perf_counter() - t0
    return row


def test_pixels(model, data, task, stride: int) -> dict:
    """Per scored test pixel (those on a lattice of `stride` px: the same places for every
    task, whatever its own test pixels): its key (scene << 32 | flat position) and per target
    the reference and prediction (class index; or physical value and std)."""
    import torch
    from torch.utils.data import Subset

    from autors.training.batches import eval_loader

    ds = data.dataset("test")
    flat, keys = [], []
    for s in range(len(data.index.scenes)):
        pos = ds.positions(s).astype(np.int64)
        r, c = np.divmod(pos, data.index.scenes[s].grid.width)
        on = (r % stride == 0) & (c % stride == 0)
        flat.append(int(ds.starts[s]) + np.flatnonzero(on))
        keys.append((np.int64(s) << 32) + pos[on])
    ids, keys = np.concatenate(flat), np.concatenate(keys)
    outs, refs = [], []
    model.eval()
    with torch.inference_mode():
        for batch in eval_loader(Subset(ds, ids.tolist()), 512):
            batch.pop("scene")
            y = batch.pop("targets") if "targets" in batch else \
                batch.pop("target").float()[:, None]
            outs.append(model(batch).float())
            refs.append(y)
    out, ref = torch.cat(outs), torch.cat(refs)
    result = {"keys": keys}
    targets = data.targets
    if targets is None:  # a labels task: its one class target
        result[CLASSES] = {"kind": "classes", "ref": ref[:, 0].long().numpy(),
                           "pred": out.argmax(1).numpy()}
        return result
    for i, (t, (a, b)) in enumerate(zip(targets, model.output_slices().values())):
        y = ref[:, i]
        if t.kind == "classes":
            result[t.name] = {"kind": "classes", "ref": y.numpy(),
                              "pred": out[:, a:b].argmax(1).numpy()}
            continue
        mu = out[:, a] * t.std + t.mean
        std = torch.exp(0.5 * out[:, a + 1].clamp(-10, 10)) * t.std if t.has_std else None
        result[t.name] = {"kind": "continuous", "ref": (y * t.std + t.mean).numpy(),
                          "pred": mu.numpy(), "std": None if std is None else std.numpy(),
                          "units": t.units}
    return result


# -- metrics on shared pixels -----------------------------------------------------------------------
def shared_keys(rows: list[dict]) -> np.ndarray:
    keys = None
    for r in rows:
        k = r["pixels"]["keys"]
        keys = k if keys is None else np.intersect1d(keys, k)
    return keys


def scores(row: dict, keys: np.ndarray) -> dict[str, dict]:
    """Per target of `row`, metrics on the pixels `keys` that hold its reference."""
    from autors.training.metrics import cohen_kappa, confusion_matrix, overall_accuracy
    from autors.training.targets import regression_metrics

    px = row["pixels"]
    pos = np.searchsorted(px["keys"], keys)
    out = {}
    for name, t in px.items():
        if name == "keys":
            continue
        ref, pred = np.asarray(t["ref"])[pos], np.asarray(t["pred"])[pos]
        ok = np.isfinite(ref.astype(np.float64))
        if t["kind"] == "classes":
            r, p = ref[ok].astype(np.int64), pred[ok].astype(np.int64)
            cm = confusion_matrix(r, p, int(max(r.max(), p.max())) + 1)
            out[name] = {"oa": overall_accuracy(cm), "kappa": cohen_kappa(cm), "n": int(ok.sum())}
        else:
            std = None if t["std"] is None else np.asarray(t["std"])[pos][ok]
            out[name] = regression_metrics(ref[ok], pred[ok], std)
    return out


def summarise(rows: list[dict], keys: np.ndarray) -> dict[tuple[str, str], dict]:
    """(task, model) -> {target: {metric: (mean, std)}}, flops, seeds."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by.setdefault((r["task"], r["model"]), []).append(r)
    out = {}
    for key, rs in by.items():
        per = [scores(r, keys) for r in rs]
        targets = {}
        for name in per[0]:
            targets[name] = {m: mean_std([p[name][m] for p in per]) for m in per[0][name]
                             if isinstance(per[0][name][m], float)}
        out[key] = {"targets": targets, "flops": rs[0]["flops"], "params": rs[0]["params"],
                    "seeds": [r["seed"] for r in rs], "summary": rs[0]["summary"]}
    return out


# -- search ---------------------------------------------------------------------------------------------
def random_archs(raw: dict, n: int, seed: int) -> list[dict]:
    """`n` distinct architectures of the `fusion` space for the task, seeded (the same draw
    for every task of a dataset, with each head's width and stage for tasks with targets)."""
    import fusion
    from autors.config import TaskSpec
    from autors.search.catalog import space_for_task

    task = TaskSpec.from_dict(raw)
    space = space_for_task(task)  # the task's `search.space`
    opts = space.options()
    rng = np.random.default_rng([seed, 16])
    archs, seen = [], set()
    for _ in range(50 * n):
        sample = {k: v[int(rng.integers(len(v)))] for k, v in opts.items()}
        try:
            arch = space.to_arch(sample)
        except fusion.ArchError:  # an invalid draw (every sensor off) is drawn again
            arch = None
        if arch is None:
            continue
        key = json.dumps(arch.to_dict(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            archs.append(arch.to_dict())
        if len(archs) == n:
            break
    return archs


def objective(task: str) -> str:
    return "val_oa" if task == "classes" else "val_score"


def run_all(pool, jobs: list[Job]) -> list[dict]:
    """Run `jobs` in `pool` (None: in this process, one after the other)."""
    rows = []
    for r in (pool.map(run_job, jobs) if pool is not None else map(run_job, jobs)):
        val = r["val"].get(objective(r["task"]))
        print(f"{r['dataset']} {r['task']} {r['model']} s{r['seed']}: {objective(r['task'])} "
              f"{val:.4f}, {r['flops']:,} FLOPs ({r['seconds']:.0f} s)", flush=True)
        rows.append(r)
    return rows


# -- report ----------------------------------------------------------------------------------------------
def fmt(ms: tuple[float, float], digits: int = 3) -> str:
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def goals_synth(s: dict) -> list[dict]:
    multi, cls, ht = s[("multi", "searched")], s[("classes", "searched")], \
        s[("height", "searched")]
    out = []
    oa_m, oa_s = multi["targets"][CLASSES]["oa"][0], cls["targets"][CLASSES]["oa"][0]
    out.append({"target": "multi-task OA >= class-only OA (mean over seeds)",
                "value": f"{100 * oa_m:.2f} vs {100 * oa_s:.2f} %", "met": oa_m >= oa_s})
    r_m, r_s = multi["targets"][HEIGHT]["rmse"][0], ht["targets"][HEIGHT]["rmse"][0]
    out.append({"target": "multi-task height RMSE <= height-only RMSE (mean over seeds)",
                "value": f"{r_m:.3f} vs {r_s:.3f} m", "met": r_m <= r_s})
    ratio = multi["flops"] / (cls["flops"] + ht["flops"])
    out.append({"target": f"multi-task FLOPs <= {FLOPS_TARGET}x the single-task models' sum",
                "value": f"{multi['flops']:,} / ({cls['flops']:,} + {ht['flops']:,}) = "
                f"{ratio:.2f}x", "met": ratio <= FLOPS_TARGET})
    return out


def goals_coverage(s: dict, rows_of: list[tuple[str, str, str]]) -> list[dict]:
    out = []
    for task, model, target in rows_of:
        t = s[(task, model)]["targets"][target]
        for key, nominal in NOMINAL.items():
            got = t[key][0]
            out.append({"target": f"{task}/{model} {target}: {key[8:]} % interval coverage "
                        f"within {100 * COVERAGE_TOL:.0f} points of {100 * nominal:.2f} %",
                        "value": f"{100 * got:.2f} %",
                        "met": abs(got - nominal) <= COVERAGE_TOL})
    return out


def goals_baselines(s: dict, task: str, target: str) -> list[dict]:
    searched = s[(task, "searched")]["targets"][target]["rmse"][0]
    base = {m: v["targets"][target]["rmse"][0] for (t, m), v in s.items()
            if t == task and m not in ("searched",) and not m.startswith("trial")}
    if not base:
        return []
    best = min(base, key=base.get)
    return [{"target": f"{task}: searched RMSE < every regression baseline's",
             "value": f"{searched:.4f} vs {best} {base[best]:.4f}",
             "met": searched < base[best]}]


def table(s: dict, dataset_targets: list[str]) -> str:
    header = ["task", "model", "FLOPs/sample", "params"]
    for t in dataset_targets:
        header += ([f"{t} OA %", f"{t} kappa"] if t == CLASSES else
                   [f"{t} RMSE", f"{t} MAE", f"{t} R2", f"{t} bias", f"{t} cov68 %",
                    f"{t} cov95 %"])
    lines = []
    for (task, model), v in sorted(s.items()):
        row = [task, model, f"{v['flops']:,}", f"{v['params']:,}"]
        for t in dataset_targets:
            m = v["targets"].get(t)
            if m is None:
                row += ["-"] * (2 if t == CLASSES else 6)
            elif t == CLASSES:
                row += [fmt((100 * m["oa"][0], 100 * m["oa"][1]), 2), fmt(m["kappa"])]
            else:
                cov = [fmt((100 * m[k][0], 100 * m[k][1]), 1) if k in m else "-"
                       for k in ("coverage68", "coverage95")]
                row += [fmt(m["rmse"]), fmt(m["mae"]), fmt(m["r2"]), fmt(m["bias"]), *cov]
        lines.append(row)
    return md_table(header, lines, "ll" + "r" * (len(header) - 2))


def goal_lines(goals: list[dict]) -> str:
    return "\n".join(f"- {g['target']}: {g['value']} — **{'met' if g['met'] else 'NOT met'}**"
                     for g in goals)


def plot(sections: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sections), figsize=(6 * len(sections), 4), squeeze=False)
    for ax, (ds, sec) in zip(axes[0], sections.items()):
        s, target = sec["summary"], sec["continuous"]
        items = [(f"{t}/{m}", v) for (t, m), v in sorted(s.items()) if target in v["targets"]]
        ax.barh([n for n, _ in items], [v["targets"][target]["rmse"][0] for _, v in items],
                xerr=[v["targets"][target]["rmse"][1] for _, v in items])
        ax.set_xlabel(f"{target} test RMSE ({sec['units']}), mean ± std over seeds")
        ax.set_title(ds)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="synth,sen1floods11")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--max-train", type=int, default=3000)
    p.add_argument("--max-val", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--space", default="compact", help="the search space every task draws from")
    p.add_argument("--baselines", default="early_cnn_centre,two_branch_centre",
                   help="regression baselines of the continuous-only tasks")
    p.add_argument("--stride", type=int, default=3, help="test pixels scored: a lattice")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_targets"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--smoke", action="store_true", help="tiny synthetic scene, 1 epoch (CI)")
    args = p.parse_args()
    if args.smoke:
        args.datasets, args.seeds, args.trials, args.epochs = "synth", "0", 1, 1
        args.workers = 1  # in this process: no start-up of worker processes
        args.max_train, args.max_val, args.stride = 400, 200, 1
    args.datasets = args.datasets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    one_thread()
    args.workdir.mkdir(parents=True, exist_ok=True)
    import fusion

    tasks = {}
    if "synth" in args.datasets:
        tasks["synth"] = synth_tasks(args)
    if "sen1floods11" in args.datasets:
        tasks["sen1floods11"] = s1f11_task(args)
    baselines = [] if args.smoke else args.baselines.split(",")
    unknown = [b for b in baselines if b not in fusion.BASELINES]
    if unknown:
        raise SystemExit(f"--baselines: unknown {unknown}; choose from {fusion.BASELINES}")
    sections, all_rows, searches = {}, [], {}
    with (ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
          if args.workers > 1 else contextlib.nullcontext()) as pool:
        # 1. the search of every task (seed 0, validation only), all at once
        jobs = []
        for ds, by_task in tasks.items():
            for name, raw in by_task.items():
                for i, arch in enumerate(random_archs(raw, args.trials, SPLIT_SEED)):
                    jobs.append(Job(ds, name, yaml.safe_dump(raw, sort_keys=False), json.dumps(arch),
                                    f"trial{i}", 0, False))
        trials = run_all(pool, jobs)
        # 2. every task's winner on every seed; regression baselines on continuous-only tasks
        jobs = []
        for ds, by_task in tasks.items():
            for name, raw in by_task.items():
                mine = [r for r in trials if r["dataset"] == ds and r["task"] == name]
                best = max(mine, key=lambda r: r["val"][objective(name)])
                searches[f"{ds}/{name}"] = {"winner": best["summary"], "arch": best["arch"],
                                            "val": best["val"][objective(name)],
                                            "trials": [(r["summary"], r["val"][objective(name)])
                                                       for r in mine]}
                jobs += [Job(ds, name, yaml.safe_dump(raw, sort_keys=False), json.dumps(best["arch"]),
                             "searched", s, True, args.stride) for s in seeds]
                if name in ("height", "mndwi"):
                    jobs += [Job(ds, name, yaml.safe_dump(raw, sort_keys=False), b, b, s, True, args.stride)
                             for b in baselines for s in seeds]
        finals = run_all(pool, jobs)
    for ds in tasks:
        rows = [r for r in finals if r["dataset"] == ds]
        keys = shared_keys(rows)
        s = summarise(rows, keys)
        if ds == "synth":
            goals = goals_synth(s) + goals_coverage(s, [("multi", "searched", HEIGHT),
                                                        ("height", "searched", HEIGHT)])
            goals += goals_baselines(s, "height", HEIGHT)
            targets, cont, units = [CLASSES, HEIGHT], HEIGHT, "m"
        else:
            goals = goals_coverage(s, [("mndwi", "searched", MNDWI)])
            goals += goals_baselines(s, "mndwi", MNDWI)
            targets, cont, units = [MNDWI], MNDWI, "index"
        splits = sorted({(r["task"], r["split"][:12]) for r in rows})
        sections[ds] = {"summary": s, "goals": goals, "targets": targets, "continuous": cont,
                        "units": units, "shared_pixels": int(keys.size), "splits": splits,
                        "pixels_per_task": {t: len(r["pixels"]["keys"]) for t, r in
                                            {r["task"]: r for r in rows}.items()}}
        for r in rows:
            r.pop("pixels")
        all_rows += rows
    wall = time.perf_counter() - t0
    name = "targets_smoke" if args.smoke else "targets"
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{name}.png"
    plot(sections, png)
    text = [header_block("Several targets and continuous targets (issue 16)",
                         "benchmarks/targets.py", wall),
            (f"\nBudget: {args.epochs} epochs (early stopping off, best validation epoch "
            f"restored), {args.max_train} training patches per epoch, {args.max_val} fixed "
            f"validation pixels; search: {args.trials} architectures of the `{args.space}` "
            f"space per task (seeded random draw, seed 0, validation only), the winner retrained on seeds "
            f"{seeds} and tested once. Every head of a continuous target: Gaussian NLL (value "
             "+ log-variance); the std is the head's own (no MC dropout here).\n")]
    for ds, sec in sections.items():
        text.append(f"\n## {ds}\n\nTest metrics on the {sec['shared_pixels']:,} test pixels "
                    f"every row shares (each task's own test pixels: "
                    f"{sec['pixels_per_task']}); split hash per task: {sec['splits']}.\n\n")
        text.append(table(sec["summary"], sec["targets"]) + "\n\n")
        for key, srch in searches.items():
            if key.startswith(ds + "/"):
                text.append(f"- search `{key}`: winner `{srch['winner']}` (validation "
                            f"{srch['val']:.4f})\n")
        text.append("\n### Targets\n\n" + goal_lines(sec["goals"]) + "\n")
    text.append(f"\n![targets]({png.name})\n")
    path = write_report(args.out, name, "".join(text))
    (args.out / f"{name}.json").write_text(json.dumps({
        "datasets": args.datasets, "seeds": seeds, "trials": args.trials,
        "epochs": args.epochs, "max_train": args.max_train, "max_val": args.max_val,
        "searches": searches,
        "sections": {ds: {"goals": sec["goals"], "shared_pixels": sec["shared_pixels"],
                          "splits": sec["splits"],
                          "summary": {f"{t}/{m}": v for (t, m), v in sec["summary"].items()}}
                     for ds, sec in sections.items()},
        "rows": all_rows, "wall_s": wall, "versions": versions()}, indent=1, default=str))
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
