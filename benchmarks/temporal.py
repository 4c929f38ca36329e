"""Benchmark (issue 15, time series): do temporal models pay on classes that differ only in
timing, and does a small search beat hand-designed temporal baselines at a third of their cost?

    python benchmarks/temporal.py [--seeds 0,1,2,3,4] [--size 96] [--dates 10] [--epochs 6]
        [--max-train 2500] [--trials 16] [--screen-epochs 2] [--finalists 3] [--workers 2]
        [--workdir /tmp/autors_temporal]
        [--out results/benchmarks] [--smoke]

Data: the synthetic optical + SAR time series (`autors synth --time-series`,
autors/synth/timeseries.py; scene seed 0): `--dates` dates over one year, optical with clouds
per date (nodata), SAR never clouded, 8 classes of which 5 differ only in timing (crop_short /
crop_long: the same crop, another season length; water_permanent / water_seasonal /
bare_soil: seasonal water is permanent water in its window, bare soil outside it). The
single-date data are the same files, one date per sensor (three candidate dates: early, middle
and late in the year); both sensors are always used.

Protocol: one split (spatial blocks on the label raster, split seed `_common.SPLIT_SEED`,
default buffer); SAR is valid everywhere, so every task indexes the same labelled pixels
(checked by split hash and counts). Every model is trained with the same budget (`--epochs`,
early stopping off, the best validation epoch restored, `--max-train` patches per epoch, the
same validation pixels) by `autors.training.trial.train_evaluate(..., test=True)`, per seed.
Groups (each group's best = best mean VALIDATION OA over seeds; the test split picks nothing):
- single-date: the `conv` network (both sensors, width 16, one block, middle fusion) on each
  of the three candidate dates;
- temporal: hand-chosen time-series branches (`time_ltae_first`, `time_gru_first`,
  `time_ltae`) and the two hand-designed temporal baselines: a per-pixel GRU (`time_gru_first`,
  kernel 1, no spatial layer, width 32: a GRU over each pixel's dates) and the stacked-dates
  early CNN (`early_cnn`: every date of both sensors stacked as channels, 3 conv layers of 64);
- searched: a random search of `--trials` trials over the project's `compact` space (its
  temporal kinds and `fusion.time` offered for the time-series sensors by `set_input_kinds`),
  drawn from the space's own prior (`SearchSpace.weights`: options that read timing weighted
  up for time-series inputs), only architectures of at most 1/3 of the cheaper baseline's
  FLOPs drawn (checked before training, as `search.constraints.max_flops` does, so no trial
  is spent over it); two rungs of successive halving: every trial trained `--screen-epochs`
  epochs (seed 0), the `--finalists` best by validation OA trained the full budget (seed 0),
  the best of those by validation OA then trained with every seed. This is an in-process
  random search over the space, not `autors search` (no Ray).
Targets (issue 15): (1) the best temporal model beats the best single-date model by at least
10 OA points on the time-only classes; (2) the searched network beats both hand-designed
temporal baselines (test OA, mean over seeds) at no more than 1/3 of their FLOPs. Each stated
met / NOT met. `--smoke`: a 64 px scene, 4 dates, 1 seed, 1 epoch, one candidate per group,
2 trials, 1 finalist.
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
    versions,
    with_budget,
    write_report,
)

TARGET_TIME = 0.10  # OA points on the time-only classes
FLOPS_FRACTION = 1 / 3
HEAD = {"kind": "centre", "hidden": 32, "dropout": 0.1}


def arch(kind: str, width: int = 16, depth: int = 1, kernel: int = 3,
         position: str = "middle") -> dict:
    """The same branch for both sensors -> concat -> a centre head."""
    branch = {"kind": kind, "width": width, "depth": depth, "kernel": kernel}
    return {"version": 1, "branches": {"s2": dict(branch), "s1": dict(branch)},
            "fusion": {"op": "concat", "position": position, "width": 32,
                       "trunk": {"kind": "off"}},
            "head": HEAD}


TEMPORAL = {"time_ltae_first": arch("time_ltae_first"), "time_gru_first": arch("time_gru_first"),
            "time_ltae": arch("time_ltae")}
BASELINES = {"per_pixel_gru": arch("time_gru_first", 32, 0, 1), "stacked_early_cnn": "early_cnn"}
SINGLE = {"conv": arch("conv")}


# -- data ----------------------------------------------------------------------------------------
def make_data(workdir: Path, args: argparse.Namespace) -> dict:
    """The series task and the single-date tasks: {"temporal": path, "single": {date: path},
    "time_only": [...], "classes": [...], "dates": [...]}."""
    from autors.synth.timeseries import TimeSeriesConfig, generate_time_series
    from autors.synth.writer import write_task

    out = workdir / f"ts_{args.size}_d{args.dates}"
    info = generate_time_series(out, TimeSeriesConfig(size=args.size, dates=args.dates,
                                                      seed=0, patch_size=args.patch))
    raw = yaml.safe_load(info.task_path.read_text())
    picks = sorted({round(f * (args.dates - 1)) for f in (0.3, 0.55, 0.8)})
    single = {}
    for i in picks:
        d = info.dates[i]
        # the same task name: the split hash covers the scene id, which is the name
        one = dict(raw, sensors={
            "s2": {"kind": "optical", "path": f"s2_{d}.tif", "nodata": raw["sensors"]["s2"]["nodata"]},
            "s1": {"kind": "sar", "path": f"s1_{d}.tif", "sar_units": "db"}})
        single[d] = str(write_task(out / f"task_{d}.yaml", one, f"single date {d}"))
    return {"temporal": str(info.task_path), "single": single,
            "time_only": list(info.time_only_classes), "classes": list(info.class_names),
            "dates": info.dates}


# -- one model -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Job:
    group: str
    model: str
    arch: dict | str
    task_path: str
    seed: int
    args: tuple  # epochs, max_train
    time_only: tuple[str, ...]


def _task(path: str, epochs: int, max_train: int):
    from autors.config import parse_task

    raw = with_budget(yaml.safe_load(Path(path).read_text()), epochs, max_train, None)
    return parse_task(raw, Path(path))


def run_job(job: Job) -> dict:
    """Train and test once (`train_evaluate`); the row."""
    one_thread()
    from autors.data import prepare
    from autors.training.trial import train_evaluate

    t0 = time.perf_counter()
    task = _task(job.task_path, *job.args)
    data = prepare(task)
    trained = train_evaluate(task, job.arch, data, job.seed, test=True)
    val, test = trained.outcome.val_metrics, trained.test_metrics
    return {
        "group": job.group, "model": job.model, "seed": job.seed,
        "arch": job.arch,
        "val_oa": float(val["oa"]), "oa": float(test["oa"]),
        **class_subset_row(test, job.time_only, "time_only"),
        "flops": trained.cost.flops, "params": trained.cost.params,
        "n_val": int(val["num_samples"]), "n_test": int(test["num_samples"]),
        "counts_test": data.index.counts()["test"],
        "split_sha256": data.index.sha256(), "seconds": time.perf_counter() - t0,
    }


def _run(jobs: list[Job], workers: int) -> list[dict]:
    rows = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for row in pool.map(run_job, jobs):
                rows.append(row)
                _say(row)
    else:
        for j in jobs:
            rows.append(run_job(j))
            _say(rows[-1])
    return rows


def _say(row: dict) -> None:
    print(f"{row['group']:<8} {row['model']:<26} seed {row['seed']} val {row['val_oa']:.3f} "
          f"test {row['oa']:.3f} time-only {row['oa_time_only']:.3f} "
          f"{row['flops'] / 1e3:.0f} kFLOPs ({row['seconds']:.0f} s)", flush=True)


# -- the search ----------------------------------------------------------------------------------
def sample_archs(task_path: str, n: int, max_flops: int, seed: int) -> list[tuple[dict, int]]:
    """`n` distinct archs of the `compact` space for the task (temporal kinds for its
    time-series sensors), drawn at random, each within `max_flops` (checked before training,
    on the untrained model): [(arch dict, flops)]."""
    import fusion
    from autors.config import parse_task
    from autors.data import prepare
    from autors.search.catalog import space_for_task
    from autors.training.cost import count_flops

    task = parse_task(dict(yaml.safe_load(Path(task_path).read_text()),
                           search={"space": "compact"}), Path(task_path))
    data = prepare(task)
    space = space_for_task(task)
    rng = np.random.default_rng([seed, 15])
    out, seen, tries = [], set(), 0
    choices = space.choices()
    while len(out) < n and tries < 5000:
        tries += 1
        # the space's prior (`SearchSpace.weights`), as NNI's random strategy draws it
        sample = {label: c.values[rng.choice(len(c.values), p=c.weights)]
                  for label, c in choices.items()}
        try:
            a = space.to_arch(sample)
            model = fusion.build_model(a, data.in_channels, data.model_outputs,
                                       dates=data.steps)
        except fusion.ArchError:
            continue
        key = json.dumps(a.to_dict(), sort_keys=True)
        if key in seen:
            continue
        flops = count_flops(model, data.in_channels, task.sample_size, data.steps)
        if flops <= max_flops:
            seen.add(key)
            out.append((a.to_dict(), flops))
    return out


# -- report --------------------------------------------------------------------------------------
def summarise(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["model"], {"group": r["group"], "rows": []})["rows"].append(r)
    for m in out.values():
        for key in ("val_oa", "oa", "oa_time_only", "oa_other", "flops"):
            m[key] = mean_std([r[key] for r in m["rows"]])[0]
    return out


def best_of(models: dict[str, dict], groups: tuple[str, ...]) -> str:
    mine = {k: v for k, v in models.items() if v["group"] in groups}
    return max(mine, key=lambda k: (mine[k]["val_oa"], -mine[k]["flops"]))


def same_pixels(rows: list[dict]) -> str:
    keys = {(r["split_sha256"], r["n_test"], r["n_val"], tuple(r["counts_test"])) for r in rows}
    if len(keys) != 1:
        raise SystemExit(f"rows were scored on different pixels {sorted(keys)[:3]}: not comparable")
    split, n_test, n_val, _ = keys.pop()
    return (f"Every row (every data version, model and seed) is validated on the same "
            f"{n_val:,} pixels and tested on the same {n_test:,} pixels: split hash "
            f"`{split[:12]}` (split seed {SPLIT_SEED}, spatial blocks, default buffer).")


def report(args, data: dict, rows: list[dict], trials: list[dict], wall: float,
           limit: float) -> tuple[str, dict]:
    models = summarise(rows)
    searched = next((k for k, v in models.items() if v["group"] == "searched"), None)
    base = [k for k, v in models.items() if v["group"] == "baseline"]
    best_t = best_of(models, ("temporal", "baseline", "searched"))
    search_only = not any(v["group"] == "single" for v in models.values())
    # --search-only: the per-class table compares the searched network with the best baseline
    best_s = best_of(models, ("baseline",) if search_only else ("single",))
    if search_only and searched is not None:
        best_t = searched
    gain = models[best_t]["oa_time_only"] - models[best_s]["oa_time_only"]
    met_time = None if search_only else gain >= TARGET_TIME
    seeds = sorted({r["seed"] for r in rows})
    text = [header_block("Time series: temporal models vs single dates; search vs temporal "
                         "baselines", "benchmarks/temporal.py", wall)]
    text.append(
        f"\nData: synthetic optical + SAR time series (`autors synth --time-series`, "
        f"{args.size} x {args.size} px, {args.dates} dates of 2021: {', '.join(data['dates'])}; "
        f"scene seed 0; clouds per optical date). {len(data['classes'])} classes; time-only "
        f"(they differ only in timing): {', '.join(data['time_only'])}. Single-date data: the "
        f"same files, one date per sensor (candidate dates {', '.join(data['single'])}). "
        f"Training: {args.epochs} epochs, early stopping off (the best validation epoch "
        f"restored), {args.max_train} training patches per epoch, patch {args.patch} px; seeds "
        f"{seeds}. " + same_pixels(rows) + "\n")
    header = ["model", "group", "picked", "val OA %", "test OA %", "test OA time-only %",
              "test OA other %", "params", "kFLOPs/patch"]
    body = []
    for name, m in models.items():
        pick = ("" if search_only else "**best temporal**" if name == best_t else
                "**best single-date**" if name == best_s else "")
        rs = m["rows"]
        body.append([f"`{name}`", m["group"], pick, fmt_pm([r["val_oa"] for r in rs]),
                     fmt_pm([r["oa"] for r in rs]), fmt_pm([r["oa_time_only"] for r in rs]),
                     fmt_pm([r["oa_other"] for r in rs]), f"{rs[0]['params']:,}",
                     f"{rs[0]['flops'] / 1e3:.1f}"])
    text.append("\n## Models (mean ± std over seeds; best by mean validation OA)\n\n"
                + md_table(header, body, "lllrrrrrr") + "\n")
    if trials:
        header = ["trial", "branches (s2 / s1)", "position", "time collapses",
                  f"val OA % ({args.screen_epochs} ep)", f"val OA % ({args.epochs} ep)",
                  "kFLOPs/patch"]
        body = [[str(i), " / ".join(_describe(t["arch"]["branches"][s]) for s in ("s2", "s1")),
                 t["arch"]["fusion"]["position"],
                 t["arch"]["fusion"].get("time", "branch"), f"{100 * t['val_oa']:.1f}",
                 "" if t.get("val_oa_full") is None else f"{100 * t['val_oa_full']:.1f}",
                 f"{t['flops'] / 1e3:.1f}"] for i, t in enumerate(trials)]
        text.append(f"\n## Search trials (compact space, random from the space's prior, FLOPs <= "
                    f"{limit / 1e3:.1f} k = 1/3 of the cheaper baseline; the "
                    f"{args.finalists} best after {args.screen_epochs} epochs trained "
                    f"{args.epochs})\n\n" + md_table(header, body, "llllrrr") + "\n")
    header = ["class", "time-only", f"`{best_t}` %", f"`{best_s}` %"]
    body = [[c, "yes" if c in data["time_only"] else "",
             fmt_pm([r["per_class"][c] or 0.0 for r in models[best_t]["rows"]]),
             fmt_pm([r["per_class"][c] or 0.0 for r in models[best_s]["rows"]])]
            for c in data["classes"]]
    text.append("\n## Per-class test accuracy of the two best models\n\n"
                + md_table(header, body, "llrr") + "\n")
    lines = [] if search_only else [(f"- the best temporal model beats the best single-date model by at least "
              f"{100 * TARGET_TIME:g} OA points on the time-only classes: {100 * gain:+.1f} "
              f"points (`{best_t}` {100 * models[best_t]['oa_time_only']:.1f} % vs `{best_s}` "
              f"{100 * models[best_s]['oa_time_only']:.1f} %): "
              f"**{'met' if met_time else 'NOT met'}**.")]
    met_search = None
    if searched is not None and base:
        s = models[searched]
        beats = all(s["oa"] > models[b]["oa"] for b in base)
        cheap = all(s["flops"] <= FLOPS_FRACTION * models[b]["flops"] for b in base)
        met_search = beats and cheap
        versus = "; ".join(f"`{b}` {100 * models[b]['oa']:.1f} % at "
                           f"{models[b]['flops'] / 1e3:.1f} kFLOPs" for b in base)
        lines.append(
            f"- a searched network beats the hand-designed temporal baselines at no more than "
            f"1/3 of their FLOPs: searched {100 * s['oa']:.1f} % test OA at "
            f"{s['flops'] / 1e3:.1f} kFLOPs vs {versus}: beats both "
            f"{'yes' if beats else 'no'}, within 1/3 of both {'yes' if cheap else 'no'}: "
            f"**{'met' if met_search else 'NOT met'}**.")
    if search_only:
        lines.append("- (the single-date / temporal comparison is not rerun with "
                     "`--search-only`: see results/benchmarks/temporal.md)")
    text.append("\n## Targets (issue 15)\n\n" + "\n".join(lines) + "\n")
    summary = {"best_temporal": best_t, "best_single": best_s, "gain_time_only": gain,
               "met_time_only": met_time, "searched": searched, "met_search": met_search}
    return "".join(text), summary


def _describe(b: dict) -> str:
    return b["kind"] if b["kind"] == "off" else f"{b['kind']}(w{b['width']},d{b['depth']})"


# -- main ----------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--dates", type=int, default=10)
    p.add_argument("--patch", type=int, default=5)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--max-train", type=int, default=2500)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--screen-epochs", type=int, default=2,
                   help="epochs of every trial (the first rung)")
    p.add_argument("--finalists", type=int, default=3,
                   help="trials trained the full --epochs (the second rung)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_temporal"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--smoke", action="store_true", help="64 px, 4 dates, 1 seed, 1 epoch (CI)")
    p.add_argument("--search-only", action="store_true",
                   help="only the baselines and the search (report temporal_search)")
    args = p.parse_args()
    if args.smoke:
        args.seeds, args.size, args.dates, args.epochs = "0", 64, 4, 1
        args.max_train, args.trials, args.workers = 64, 2, 1
        args.screen_epochs, args.finalists = 1, 1
    one_thread()
    t0 = time.perf_counter()
    data = make_data(args.workdir, args)
    seeds = [int(s) for s in args.seeds.split(",")]
    budget = (args.epochs, args.max_train)
    timed = tuple(data["time_only"])
    single = {f"{m}@{d}": (a, path) for d, path in data["single"].items()
              for m, a in SINGLE.items()}
    if args.smoke:
        single = dict(list(single.items())[:1])
    temporal = dict(list(TEMPORAL.items())[:1]) if args.smoke else TEMPORAL
    if args.search_only:
        single, temporal = {}, {}
    jobs = [Job("single", m, a, path, s, budget, timed)
            for s in seeds for m, (a, path) in single.items()]
    jobs += [Job("temporal", m, a, data["temporal"], s, budget, timed)
             for s in seeds for m, a in temporal.items()]
    jobs += [Job("baseline", m, a, data["temporal"], s, budget, timed)
             for s in seeds for m, a in BASELINES.items()]
    rows = _run(jobs, args.workers)
    # the search: FLOPs limit from the baselines' measured FLOPs
    limit = FLOPS_FRACTION * min(r["flops"] for r in rows if r["group"] == "baseline")
    drawn = sample_archs(data["temporal"], args.trials, int(limit), seed=0)
    screen = (args.screen_epochs, args.max_train)
    trial_rows = _run([Job("trial", f"trial_{i}", a, data["temporal"], seeds[0], screen, timed)
                       for i, (a, _) in enumerate(drawn)], args.workers)
    trials = [{"arch": a, "flops": f, "val_oa": r["val_oa"], "val_oa_full": None}
              for (a, f), r in zip(drawn, trial_rows)]
    if trials:
        # the second rung: the best trials (by validation OA) trained the full budget
        ranked = sorted(range(len(trials)), key=lambda i: (-trials[i]["val_oa"], trials[i]["flops"]))
        finals = ranked[:max(1, args.finalists)]
        final_rows = _run([Job("trial", f"final_{i}", trials[i]["arch"], data["temporal"],
                               seeds[0], budget, timed) for i in finals], args.workers)
        for i, r in zip(finals, final_rows):
            trials[i]["val_oa_full"] = r["val_oa"]
        k = max(range(len(finals)), key=lambda j: (final_rows[j]["val_oa"],
                                                   -trials[finals[j]]["flops"]))
        win = finals[k]
        rows.append(dict(final_rows[k], group="searched", model="searched"))
        rows += _run([Job("searched", "searched", trials[win]["arch"], data["temporal"], s,
                          budget, timed) for s in seeds[1:]], args.workers)
    wall = time.perf_counter() - t0
    name = ("temporal_smoke" if args.smoke else "temporal") + (
        "_search" if args.search_only else "")
    text, summary = report(args, data, rows, trials, wall, limit)
    write_report(args.out, name, text)
    (args.out / f"{name}.json").write_text(json.dumps(
        {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "command": command(), "versions": versions(), "wall_s": wall,
         "time_only": data["time_only"], "summary": summary, "trials": trials,
         "flops_limit": limit, "rows": rows}, indent=1, default=str) + "\n")
    per_class_bars(summarise(rows), (summary["best_temporal"], summary["best_single"]),
                   data["classes"], data["time_only"], "time-only classes",
                   args.out / f"{name}.png")
    print(f"wrote {args.out / name}.md ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
