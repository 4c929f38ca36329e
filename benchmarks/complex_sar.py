"""Benchmark (issue 15, complex SAR): does reading the complex values pay on classes that differ
only in polarimetric coherence or phase, not in amplitude?

    python benchmarks/complex_sar.py [--seeds 0,1,2,3,4] [--size 256] [--train-per-class 60]
        [--val-per-class 60] [--epochs 20] [--workers 2] [--workdir /tmp/autors_complex_sar]
        [--out results/benchmarks] [--repeat-check] [--from-json ROWS.json] [--smoke]

Data: a synthetic scene with the complex SAR sensor only (`autors synth --sensors slc`,
autors/synth/slc.py; scene seed 0): single-look complex HH and VV written as a complex64
GeoTIFF, 10 classes, of which 7 share their amplitude statistics with other classes and differ
only in the HH-VV coherence or phase (the *phase-only* classes, listed in the scene's record),
and a no-data wedge outside the swath. The amplitude-only data are the same pixels: the
intensities |HH|^2, |VV|^2 of that file written as a float32 GeoTIFF (same nodata) and read
as `sar_units: linear` (converted to dB), the usual amplitude SAR input.

Protocol: one split (the scene's given train / validation / test rasters, split seed
`_common.SPLIT_SEED`, default buffer); both tasks index the same labelled pixels (checked by
split hash and counts). Every model is trained with the same budget (`--epochs`, early stopping
off, the best validation epoch restored) by `autors.training.trial.train_evaluate(...,
test=True)` for each seed. Candidates, all one branch -> patch head (hidden 32):
complex data: `complex_features`, `complex_modrelu`, `complex_crelu`, `complex_ampphase`
(width 16, depth 1, kernel 3); amplitude data: `conv`, `sar` (width 16, depth 1) and three
wider, deeper ones with larger receptive fields (`conv` width 32 depth 2, `residual` width 32
depth 2, `sar` width 32 depth 3: dilated, so it can estimate the channels' joint amplitude
statistics over a larger window). In each group the model with the best mean VALIDATION OA over the
seeds is that group's best (the test split picks nothing). The plain `conv` branch on the
complex task's real/imaginary channels is reported as an extra row (not a candidate).

Reported (test, mean ± std over seeds): overall OA, OA over the pixels of the phase-only
classes, OA over the other classes, per-class accuracy of the two best models, and the paired
per-seed difference. Target (issue 15): the best complex-branch model beats the best
amplitude-only model by at least 5 OA points on the phase-only classes, stated met / NOT met.
`--repeat-check` trains the first job (`complex_features`, first seed) a second time and
states whether every recorded value matched exactly. `--from-json` rebuilds the report from a
previous run's JSON (its rows, settings and wall time; with `--repeat-check`, only that job is
trained, on the same data). `--smoke`: a 64 px scene, 1 seed, 1 epoch, one candidate per
group.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import yaml
from _common import (
    SPLIT_SEED,
    class_subset_row,
    command,
    fmt_pm,
    header_block,
    md_table,
    mean_std,
    one_thread,
    per_class_bars,
    repeat_statement,
    versions,
    with_budget,
    write_report,
)

TARGET = 0.05  # OA points on the phase-only classes
HEAD = {"kind": "patch", "hidden": 32, "dropout": 0.1}


def arch(kind: str, width: int = 16, depth: int = 1) -> dict:
    """One branch (sensor `sar`) -> a patch head."""
    return {"version": 1,
            "branches": {"sar": {"kind": kind, "width": width, "depth": depth, "kernel": 3}},
            "fusion": {"op": "concat", "position": "middle", "width": 16,
                       "trunk": {"kind": "off"}},
            "head": HEAD}


# group -> {model name: arch}; "extra" rows are reported but never picked as a group's best
CANDIDATES = {
    "complex": {k: arch(k) for k in ("complex_features", "complex_modrelu", "complex_crelu",
                                     "complex_ampphase")},
    "amplitude": {"conv": arch("conv"), "sar": arch("sar"), "conv_w32_d2": arch("conv", 32, 2),
                  "residual_w32_d2": arch("residual", 32, 2), "sar_w32_d3": arch("sar", 32, 3)},
    "extra": {"conv_on_re_im": arch("conv")},
}
SMOKE = {"complex": ["complex_features"], "amplitude": ["conv"], "extra": []}
DATA_OF = {"complex": "complex", "amplitude": "amplitude", "extra": "complex"}


# -- data ----------------------------------------------------------------------------------------
def make_data(workdir: Path, args: argparse.Namespace) -> dict:
    """The scene (complex task) and its amplitude twin: {"complex": task path, "amplitude":
    task path, "phase_only": [class names], "classes": [names]}."""
    import rasterio

    from autors.synth import SynthConfig, generate_scene
    from autors.synth.writer import write_geotiff, write_task

    out = workdir / (f"slc_{args.size}_t{args.train_per_class}_v{args.val_per_class}")
    task_c = out / "task.yaml"
    if not task_c.is_file():
        cfg = SynthConfig(size=args.size, sensors=("slc",), seed=0, patch_size=args.patch,
                          n_train_per_class=args.train_per_class,
                          n_val_per_class=args.val_per_class,
                          block_size=16 if args.smoke else None)
        generate_scene(out, cfg)
    record = json.loads((out / "scene.json").read_text())
    amp_tif = out / "amplitude.tif"
    if not amp_tif.is_file():
        with rasterio.open(out / "slc.tif") as ds:
            z = ds.read()
            nodata, transform, crs = ds.nodata, ds.transform, ds.crs
        power = (np.abs(z) ** 2).astype(np.float32)  # exactly 0 where z is the nodata 0 + 0i
        write_geotiff(amp_tif, power, transform, crs, ("HH_intensity", "VV_intensity"), nodata,
                      {"units": "linear intensity |z|^2 of slc.tif"})
    raw = yaml.safe_load(task_c.read_text())
    raw["sensors"] = {"sar": dict(raw["sensors"]["slc"])}
    write_task(out / "task_complex.yaml", raw, "complex SAR (benchmarks/complex_sar.py)")
    # the same task name: the split hash covers the scene id, which is the name
    amp = dict(raw, sensors={"sar": {"kind": "sar", "path": amp_tif.name, "nodata": 0.0,
                                "sar_units": "linear"}})
    write_task(out / "task_amplitude.yaml", amp, "amplitude only (benchmarks/complex_sar.py)")
    return {"complex": str(out / "task_complex.yaml"),
            "amplitude": str(out / "task_amplitude.yaml"),
            "phase_only": record["phase_only_classes"], "classes": record["classes"]}


# -- one model -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Job:
    group: str
    model: str
    arch: dict
    task_path: str
    seed: int
    epochs: int
    phase_only: tuple[str, ...]


def run_job(job: Job) -> dict:
    """Train and test once (`train_evaluate`); the row."""
    one_thread()
    from autors.config import parse_task
    from autors.data import prepare
    from autors.training.trial import train_evaluate

    t0 = time.perf_counter()
    raw = with_budget(yaml.safe_load(Path(job.task_path).read_text()), job.epochs, None, None)
    task = parse_task(raw, Path(job.task_path))
    data = prepare(task)
    trained = train_evaluate(task, job.arch, data, job.seed, test=True)
    val, test = trained.outcome.val_metrics, trained.test_metrics
    return {
        "group": job.group, "model": job.model, "seed": job.seed, "arch": job.arch,
        "val_oa": float(val["oa"]), "oa": float(test["oa"]),
        **class_subset_row(test, job.phase_only, "phase_only"),
        "flops": trained.cost.flops, "params": trained.cost.params,
        "n_val": int(val["num_samples"]), "n_test": int(test["num_samples"]),
        "counts_test": data.index.counts()["test"],
        "split_sha256": data.index.sha256(), "seconds": time.perf_counter() - t0,
    }


# -- report --------------------------------------------------------------------------------------
def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per model: its rows and the means."""
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["model"], {"group": r["group"], "rows": []})["rows"].append(r)
    for m in out.values():
        for key in ("val_oa", "oa", "oa_phase_only", "oa_other"):
            m[key] = mean_std([r[key] for r in m["rows"]])[0]
    return out


def best_of(models: dict[str, dict], group: str) -> str:
    """The group's model with the best mean validation OA (ties: fewer FLOPs)."""
    mine = {k: v for k, v in models.items() if v["group"] == group}
    return max(mine, key=lambda k: (mine[k]["val_oa"], -mine[k]["rows"][0]["flops"]))


def same_pixels(rows: list[dict]) -> str:
    keys = {(r["split_sha256"], r["n_test"], r["n_val"], tuple(r["counts_test"])) for r in rows}
    if len(keys) != 1:
        raise SystemExit(f"rows were scored on different pixels {sorted(keys)[:3]}: not comparable")
    split, n_test, n_val, _ = keys.pop()
    return (f"Every row (both data versions, every model and seed) is validated on the same "
            f"{n_val:,} pixels and tested on the same {n_test:,} pixels: split hash "
            f"`{split[:12]}` (split seed {SPLIT_SEED}, the scene's given rasters, default "
            "buffer).")


def paired(models: dict[str, dict], a: str, b: str, key: str) -> list[float]:
    """Per-seed differences a - b of `key` (seeds both have)."""
    ra = {r["seed"]: r[key] for r in models[a]["rows"]}
    rb = {r["seed"]: r[key] for r in models[b]["rows"]}
    return [ra[s] - rb[s] for s in sorted(ra) if s in rb]


def report(args, data: dict, rows: list[dict], wall: float, repeat: str | None,
           source: dict | None) -> tuple[str, dict]:
    models = summarise(rows)
    best_c, best_a = best_of(models, "complex"), best_of(models, "amplitude")
    diff = paired(models, best_c, best_a, "oa_phase_only")
    gain = models[best_c]["oa_phase_only"] - models[best_a]["oa_phase_only"]
    met = gain >= TARGET
    seeds = sorted({r["seed"] for r in rows})
    text = [header_block("Complex SAR: complex branches vs amplitude only", "benchmarks/"
                         "complex_sar.py", wall)]
    text.append(
        f"\nData: synthetic scene, complex SAR sensor only (`autors synth --sensors slc`, "
        f"{args.size} x {args.size} px, scene seed 0, {len(data['classes'])} classes, "
        f"{args.train_per_class} training and {args.val_per_class} validation pixels per class, "
        f"patch {args.patch} px). Phase-only classes (same amplitude statistics as another "
        f"class; differ in HH-VV coherence or phase only): {', '.join(data['phase_only'])}. "
        f"Amplitude-only data: |HH|^2, |VV|^2 of the same file, in dB. Training: {args.epochs} "
        f"epochs, early stopping off (the best validation epoch restored); seeds {seeds}. "
        + same_pixels(rows) + "\n")
    if source is not None:
        text.append(f"\nRows: from `{source['path']}` (run `{source['command']}`, "
                    f"{source['wall_s'] / 60:.1f} min; the wall time above is that run's); "
                    f"this report was rebuilt from them by `{command()}`.\n")
    if repeat:
        text.append(f"\n{repeat}\n")
    header = ["model", "data", "picked", "val OA %", "test OA %", "test OA phase-only %",
              "test OA other classes %", "params", "kFLOPs/patch"]
    body = []
    for name, m in models.items():
        pick = "**best complex**" if name == best_c else (
            "**best amplitude**" if name == best_a else ("extra" if m["group"] == "extra" else ""))
        rs = m["rows"]
        body.append([f"`{name}`", DATA_OF[m["group"]], pick, fmt_pm([r["val_oa"] for r in rs]),
                     fmt_pm([r["oa"] for r in rs]), fmt_pm([r["oa_phase_only"] for r in rs]),
                     fmt_pm([r["oa_other"] for r in rs]), f"{rs[0]['params']:,}",
                     f"{rs[0]['flops'] / 1e3:.1f}"])
    text.append("\n## Models (mean ± std over seeds; each group's best by mean validation OA)"
                "\n\n" + md_table(header, body, "lllrrrrrr") + "\n")
    header = ["class", "phase-only", f"`{best_c}` %", f"`{best_a}` %"]
    body = [[c, "yes" if c in data["phase_only"] else "",
             fmt_pm([r["per_class"][c] or 0.0 for r in models[best_c]["rows"]]),
             fmt_pm([r["per_class"][c] or 0.0 for r in models[best_a]["rows"]])]
            for c in data["classes"]]
    text.append("\n## Per-class test accuracy of the two best models\n\n"
                + md_table(header, body, "llrr") + "\n")
    text.append(
        f"\n## Target (issue 15)\n\nPaired per-seed differences on the phase-only classes "
        f"(`{best_c}` - `{best_a}`): {', '.join(f'{100 * d:+.1f}' for d in diff)} points; "
        f"overall OA difference {100 * (models[best_c]['oa'] - models[best_a]['oa']):+.1f} "
        f"points.\n\n- the best complex-branch model beats the best amplitude-only model by at "
        f"least {100 * TARGET:g} OA points on the phase-only classes: {100 * gain:+.1f} points "
        f"({100 * models[best_c]['oa_phase_only']:.1f} % vs "
        f"{100 * models[best_a]['oa_phase_only']:.1f} %): **{'met' if met else 'NOT met'}**.\n")
    summary = {"best_complex": best_c, "best_amplitude": best_a, "gain_phase_only": gain,
               "met": met, "paired_phase_only": diff}
    return "".join(text), summary


# -- main ----------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--train-per-class", type=int, default=60)
    p.add_argument("--val-per-class", type=int, default=60)
    p.add_argument("--patch", type=int, default=9)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_complex_sar"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--repeat-check", action="store_true",
                   help="train the first job twice and report whether it matched exactly")
    p.add_argument("--from-json", type=Path, metavar="ROWS_JSON",
                   help="rebuild the report from this JSON's rows and settings (no training "
                   "but the repeat check)")
    p.add_argument("--smoke", action="store_true", help="64 px scene, 1 seed, 1 epoch (CI)")
    args = p.parse_args()
    saved = source = None
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        for key in ("seeds", "size", "train_per_class", "val_per_class", "patch", "epochs",
                    "smoke", "workdir"):
            setattr(args, key, saved["config"][key])
        args.workdir = Path(args.workdir)
        source = {"path": args.from_json.name, "wall_s": saved["wall_s"],
                  "command": saved.get("command") or "python benchmarks/complex_sar.py "
                  + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in saved["config"].items()
                             if k in ("seeds", "size", "epochs", "workers", "workdir"))}
    if args.smoke and saved is None:
        args.seeds, args.size, args.epochs, args.workers = "0", 64, 1, 1
        args.train_per_class, args.val_per_class, args.patch = 8, 8, 5
    one_thread()
    t0 = time.perf_counter()
    data = make_data(args.workdir, args)
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [Job(group, model, a, data[DATA_OF[group]], seed, args.epochs,
                tuple(data["phase_only"]))
            for seed in seeds for group, cands in CANDIDATES.items() for model, a in cands.items()
            if not args.smoke or model in SMOKE[group]]
    rows = [] if saved is None else saved["rows"]
    if saved is None and args.workers > 1:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            for row in pool.map(run_job, jobs):
                rows.append(row)
                print(f"{row['model']:<18} seed {row['seed']} val {row['val_oa']:.3f} test "
                      f"{row['oa']:.3f} phase-only {row['oa_phase_only']:.3f} "
                      f"({row['seconds']:.0f} s)", flush=True)
    elif saved is None:
        rows = [run_job(j) for j in jobs]
    repeat = None
    if args.repeat_check:
        again = run_job(jobs[0])
        first = next(r for r in rows if (r["model"], r["seed"]) == (again["model"], again["seed"]))
        repeat = repeat_statement(first, again, f"`{again['model']}` seed {again['seed']}",
                                  ignore=("seconds",))
        print(repeat, flush=True)
    wall = time.perf_counter() - t0 if saved is None else saved["wall_s"]
    name = "complex_sar_smoke" if args.smoke else "complex_sar"
    text, summary = report(args, data, rows, wall, repeat, source)
    write_report(args.out, name, text)
    (args.out / f"{name}.json").write_text(json.dumps(
        {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "command": source["command"] if source else command(), "versions": versions(),
         "wall_s": wall, "phase_only": data["phase_only"], "summary": summary,
         "repeat_check": repeat, "rows": rows}, indent=1) + "\n")
    per_class_bars(summarise(rows), (summary["best_complex"], summary["best_amplitude"]),
                   data["classes"], data["phase_only"], "phase-only classes",
                   args.out / f"{name}.png")
    print(f"wrote {args.out / name}.md ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
