"""Benchmark (issue 8.1 target, 8.4): the searched network against the hand-designed baselines,
and full-scene prediction throughput of the best searched model against the best baseline.

    python benchmarks/searched_vs_baselines.py --dataset synth|sen1floods11
        [--seeds 0,1,2,3,4] [--workers 2] [--window 512] [--results results/benchmarks]
        [--data-root DIR] [--workdir /tmp/autors_searched] [--out results/benchmarks]
        [--repeat-check] [--smoke]

Reads what baselines.py and search_compare.py wrote (`baselines.json`,
`search_compare_<dataset>.json` under `--results`). The searched network is the architecture
with the best validation OA over every search of search_compare (ties: validation kappa, then
validation loss, then fewer FLOPs; every search validated on the same pixels); its budget is the
sum over those searches. It is retrained on `--seeds` under the exact protocol of the baselines
(baselines.run_job: same split, epochs, patches, validation pixels; early stopping off) and
tested once per seed. Every row of the table is checked to be scored on the same test pixels.
Params, FLOPs and CPU latency (batch 1, 1 torch thread) of every model in the table are
measured again here, in one process, so they compare. The best baseline is the one with the
highest mean validation OA (the test split picks no winner).

Throughput: the searched network, the best baseline with the same (`centre`) head and the best
baseline with the `patch` head are trained once (seed 0, `autors train`), exported
(`autors export`), and each predicts the whole scene in a fresh process with one torch thread
(`autors predict`'s code path), fully convolutionally where the model allows it and per patch:
pixels per second and peak resident memory. Speed-ups are stated for the same head and path.
`--repeat-check` retrains the searched network's first seed and states whether every figure
matched exactly.

Target checked (issue 8.1): the searched network's mean test OA beats the best baseline's with
at most 1/5 of its FLOPs, found within 2 CPU-hours on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml
from _common import (
    DEFAULT_DATA_ROOT,
    baseline_names,
    best_baseline,
    dataset_task,
    fmt_pm,
    header_block,
    md_table,
    mean_std,
    one_thread,
    repeat_statement,
    same_pixels,
    with_protocol,
    write_report,
    write_task_file,
)
from baselines import TIMINGS, Job, run_job
from predict_memory import measure_predict

SEARCHED = "searched"
FLOPS_TARGET = 0.2  # at most 1/5 of the best baseline's FLOPs
CPU_HOURS_TARGET = 2.0


def pick_searched(search: dict) -> dict:
    """The best-validation architecture over every search (ties: validation kappa, then
    validation loss, then fewer FLOPs) and the budget spent finding it."""
    rows = [r for r in search["rows"] if r["arch"] is not None]
    if not rows:
        raise SystemExit("no search found a feasible architecture: nothing to compare")
    if len({r["split_sha256"] for r in search["rows"]}) != 1:
        raise SystemExit("the searches validated on different splits: no winner can be picked")
    top = max(rows, key=lambda r: (r["best"], r["best_kappa"], -r["best_loss"], -r["flops"]))
    return {"arch": top["arch"], "summary": top["arch_summary"], "val_oa": top["best"],
            "from": f"{top['strategy']} seed {top['seed']}",
            "searches": len(search["rows"]),
            "trials": sum(r["trials"] for r in search["rows"]),
            "wall_s": sum(r["search_s"] for r in search["rows"]),
            "cpu_s": sum(r["cpu_s"] for r in search["rows"])}


def model_costs(task, data, archs: dict[str, str | dict]) -> dict[str, dict]:
    """params, FLOPs and batch-1 latency of each (untrained) model, measured here in turn."""
    import fusion
    from autors.training.cost import measure_cost
    from autors.training.loop import resolve_arch

    out = {}
    for name, arch in archs.items():
        spec = resolve_arch(arch, task, data)
        model = fusion.build_model(spec, data.in_channels, data.num_classes, dense=spec.dense)
        cost = measure_cost(model, data.in_channels, task.patch_size)
        out[name] = {"params": cost.params, "flops": cost.flops, "latency_ms": cost.latency_ms_b1,
                     "latency_b256_ms": cost.latency_ms_per_sample_b256}
    return out


def throughput(args: argparse.Namespace, task_file: Path, sensors: dict[str, Path],
               archs: dict[str, str | dict]) -> dict[str, dict]:
    """Train (seed 0), export and predict the whole scene with each model: pixels/s, memory."""
    from autors.cli import main as autors

    out = {}
    for name, arch in archs.items():
        folder = args.workdir / f"{args.dataset}_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        arch_arg = arch  # a baseline name, or an arch.json file
        if isinstance(arch, dict):
            arch_arg = str(folder / "arch.json")
            Path(arch_arg).write_text(json.dumps(arch))
        run, model = folder / "run", folder / "model"
        for argv in (["train", str(task_file), "--arch", arch_arg, "--seed", "0", "--test",
                      "--out", str(run), "--quiet"],
                     ["export", str(run), "--out", str(model)]):
            if not (model / "model.json").is_file() and autors(argv) != 0:
                raise SystemExit(f"autors {' '.join(argv)} failed")
        card = json.loads((model / "model.json").read_text())
        test_oa = ((card["metrics"].get("test") or {}).get("oa") or {}).get("mean")
        for per_patch in (False, True):
            m = measure_predict(model, sensors, args.window,
                                folder / f"map{'_per_patch' if per_patch else ''}.tif",
                                per_patch=per_patch)
            m.update(test_oa=test_oa, pixels_per_s=m["pixels"] / m["seconds"], model=name)
            out[name if not per_patch else f"{name} (per patch)"] = m
            if m["method"] == "per patch":
                break  # the default already was one pass per patch
    return out


def _plot(table: list[dict], dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in table:
        oa, sd = mean_std([100 * v for v in row["oa"]])
        style = {"marker": "*", "markersize": 14, "color": "black"} if row["model"] == SEARCHED \
            else {"marker": "o"}
        ax.errorbar(row["flops"] / 1e6, oa, yerr=sd, capsize=3, label=row["model"], **style)
    ax.set_xscale("log")
    for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
        axis(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("MFLOPs per patch (log scale)")
    ax.set_ylabel("test OA (%), mean ± std over seeds")
    ax.set_title(f"{dataset}: searched vs hand-designed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def verdict(table: list[dict], ref: dict, pick: dict, cores: int) -> list[str]:
    """The issue's three conditions, each stated with its numbers."""
    searched = next(r for r in table if r["model"] == SEARCHED)
    base = next(r for r in table if r["model"] == ref["model"])
    s_oa, s_sd = mean_std(searched["oa"])
    b_oa, b_sd = mean_std(base["oa"])
    ratio = searched["flops"] / base["flops"]
    core_h = pick["wall_s"] * cores / 3600
    beats = s_oa > b_oa
    noise = "more" if abs(s_oa - b_oa) > max(s_sd, b_sd) else "less"
    return [
        (f"- accuracy: searched {100 * s_oa:.1f} ± {100 * s_sd:.1f} % vs {ref['model']} "
        f"{100 * b_oa:.1f} ± {100 * b_sd:.1f} % mean test OA: "
        f"{'beats' if beats else 'does NOT beat'} it ({100 * (s_oa - b_oa):+.1f} points, "
        f"{noise} than one standard deviation)."),
        (f"- FLOPs: {searched['flops'] / 1e6:.2f} vs {base['flops'] / 1e6:.2f} MFLOPs = "
        f"{ratio:.3f} of the best baseline: {'within' if ratio <= FLOPS_TARGET else 'OVER'} "
        f"the 1/5 target."),
        (f"- search budget: {pick['searches']} searches, {pick['trials']} trained trials, "
        f"{pick['wall_s'] / 60:.0f} min of search wall time on {cores} cores = {core_h:.2f} "
        f"core-hours (trial CPU time {pick['cpu_s'] / 3600:.2f} h): "
        f"{'within' if core_h <= CPU_HOURS_TARGET else 'OVER'} the 2 CPU-hour target."),
        "- overall: target "
        + ("MET." if beats and ratio <= FLOPS_TARGET and core_h <= CPU_HOURS_TARGET
           else "NOT met."),
    ]


def speed_lines(speed: dict[str, dict]) -> list[str]:
    """Speed-up sentences, like for like first: the searched network against each baseline on
    the same prediction path, then across paths (the fastest path each model allows)."""
    runs = list(speed.values())
    searched = [m for m in runs if m["model"] == SEARCHED]
    lines = []
    for base in (m for m in runs if m["model"] != SEARCHED):
        same = next((m for m in searched if m["method"] == base["method"]), None)
        if same is not None:
            lines.append(f"- same path ({base['method']}): {SEARCHED} predicts "
                         f"{same['pixels_per_s'] / base['pixels_per_s']:.2f}x as many pixels per "
                         f"second as {base['model']}, with {same['peak_mb'] / base['peak_mb']:.2f}x "
                         "its peak memory.")
    fastest = {}
    for m in runs:
        if m["pixels_per_s"] > fastest.get(m["model"], {"pixels_per_s": 0})["pixels_per_s"]:
            fastest[m["model"]] = m
    top = fastest[SEARCHED]
    for name, base in fastest.items():
        if name != SEARCHED:
            lines.append(f"- fastest path each: {SEARCHED} ({top['method']}) predicts "
                         f"{top['pixels_per_s'] / base['pixels_per_s']:.2f}x as many pixels per "
                         f"second as {name} ({base['method']}).")
    return lines


def report(args, table, ref, pick, speed, wall_s, png, repeat) -> str:
    water = args.dataset == "sen1floods11"
    text = [header_block(f"Searched network vs hand-designed baselines on {args.dataset} "
                         "(issue 8.1, 8.4)", "benchmarks/searched_vs_baselines.py", wall_s)]
    text.append(
        f"\nSearched network: the best validation OA over the {pick['searches']} searches of "
        f"search_compare_{args.suffix}.md (found by {pick['from']}, val OA "
        f"{100 * pick['val_oa']:.1f} % on {args.n_val:,} validation pixels, so in steps of "
        f"{100 / max(args.n_val, 1):.2g} points): `{pick['summary']}`. Retrained on seeds "
        f"{args.seed_list} under the baselines' protocol and tested once per seed. Baseline and "
        f"single-sensor rows: baselines.json ({len({r['seed'] for r in args.base_rows})} "
        "seeds). Params, FLOPs and latency (batch 1, one torch thread, median) of every row "
        f"measured again here in one process. {args.pixels} The best baseline, by mean "
        f"validation OA: {ref['model']}.\n\n")
    header = ["model", "val OA %", "OA %", "AA %", "kappa"] + (["IoU water %"] if water else []) \
        + ["params", "MFLOPs", "FLOPs / best baseline", "latency ms", "seeds"]
    body = []
    for r in table:
        row = [f"**{r['model']}**" if r["model"] == SEARCHED else r["model"],
               fmt_pm(r["val_oa"]), fmt_pm(r["oa"]), fmt_pm(r["aa"]), fmt_pm(r["kappa"], 1.0, 3)]
        if water:
            row.append(fmt_pm(r["iou_water"]))
        row += [f"{r['params']:,}", f"{r['flops'] / 1e6:.2f}",
                f"{r['flops'] / next(t['flops'] for t in table if t['model'] == ref['model']):.3f}",
                f"{r['latency_ms']:.2f}", str(len(r["oa"]))]
        body.append(row)
    text.append(md_table(header, body, "l" + "r" * (len(header) - 1)) + "\n")
    text.append("\n## Verdict (issue 8.1 target)\n\n" + "\n".join(verdict(
        table, ref, pick, args.cores)) + "\n")
    text.append(
        f"\n## Prediction throughput (issue 8.4)\n\nWhole scene; the searched network, the best "
        f"baseline with a `centre` head and the best with a `patch` head (by validation OA), "
        f"each trained once (seed 0) "
        f"with `autors train`, exported with `autors export`, predicted in a fresh process with "
        f"one torch thread, window {args.window} px, batch 512 (`autors predict`'s code path); "
        "`seconds` excludes imports and model loading.\n\n")
    body = [[m["model"], m["method"],
             f"{m['test_oa'] * 100:.1f}" if m.get("test_oa") is not None else "-",
             f"{m['shape'][0]} x {m['shape'][1]}", f"{m['seconds']:.1f}",
             f"{m['pixels_per_s']:,.0f}", f"{m['peak_mb']:.0f}"] for m in speed.values()]
    text.append(md_table(["model", "method", "test OA % (this run)", "scene px", "seconds",
                          "pixels / s", "peak MB"], body, "llrrrrr") + "\n")
    text.append("\n`fully convolutional`: one pass per strip of the window instead of one per "
                "pixel's patch, used by `autors predict` when the model's output is local to the "
                "patch (centre head, fusion operators that declare themselves local, receptive field "
                "inside the patch); it "
                "writes the same map (checked against per-patch inference on the first window).\n")
    text.append("\n" + "\n".join(speed_lines(speed)) + "\n")
    if repeat:
        text.append(f"\n{repeat}\n")
    text.append(f"\n![searched vs baselines]({png.name})\n")
    return "".join(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synth", choices=["synth", "sen1floods11"])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cores", type=int, default=2, help="cores the searches ran on")
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--results", type=Path, default=Path("results/benchmarks"),
                   help="where baselines.json and search_compare_<dataset>.json are")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/autors_searched"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--repeat-check", action="store_true",
                   help="retrain the searched network's first seed and report whether it "
                   "matched exactly")
    p.add_argument("--smoke", action="store_true",
                   help="tiny scene, 1 epoch, 1 seed, from the smoke reports in --results")
    args = p.parse_args()
    args.suffix = suffix = "smoke" if args.smoke else args.dataset
    if args.smoke:
        args.dataset, args.seeds = "synth", "0"
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    one_thread()
    base_name = "baselines_smoke" if args.smoke else "baselines"
    args.base_rows = [r for r in json.loads((args.results / f"{base_name}.json").read_text())
                      if r["dataset"] == args.dataset]
    search = json.loads((args.results / f"search_compare_{suffix}.json").read_text())
    ref = best_baseline(args.base_rows, args.dataset)
    pick = pick_searched(search)

    from autors.config import load_task, parse_task
    from autors.data import prepare

    task_path, text = dataset_task(args.dataset, args.workdir, args.data_root, args.smoke)
    raw = with_protocol(yaml.safe_load(text), args.dataset, 1 if args.smoke else None)
    task = parse_task(raw, task_path)
    # 1. the searched network on every seed, exactly as the baselines were trained
    epochs = raw["train"]["epochs"]
    proto = raw["train"]
    jobs = [Job(args.dataset, str(task_path), text, SEARCHED, pick["arch"], None, seed, epochs,
                proto["max_train_samples"], proto["val_max_samples"]) for seed in args.seed_list]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        searched_rows = list(pool.map(run_job, jobs))
    for r in searched_rows:
        print(f"searched s{r['seed']}: test OA {100 * r['oa']:.1f}", flush=True)
    # 2. one table: baselines, single sensors and the searched network, costs measured here
    models = list(dict.fromkeys(r["model"] for r in args.base_rows)) + [SEARCHED]
    rows_by_model = {m: [r for r in args.base_rows + searched_rows if r["model"] == m]
                     for m in models}
    archs = {m: (pick["arch"] if m == SEARCHED else m) for m in [*baseline_names(), SEARCHED]
             if rows_by_model.get(m)}
    args.pixels = same_pixels(args.base_rows + searched_rows, args.dataset)
    data = prepare(task)
    args.n_val = len(data.dataset("val"))  # the pixels the searches selected on
    costs = model_costs(task, data, archs)
    table = []
    for m in models:
        sel = rows_by_model[m]
        cost = costs.get(m, {"params": sel[0]["params"], "flops": sel[0]["flops"],
                             "latency_ms": sel[0]["latency_ms"]})
        table.append({"model": m, "val_oa": [r["val_oa"] for r in sel],
                      "oa": [r["oa"] for r in sel], "aa": [r["aa"] for r in sel],
                      "kappa": [r["kappa"] for r in sel],
                      "iou_water": [r["iou_water"] or 0.0 for r in sel], **cost})
    # 3. throughput of the searched network and the best baseline of each head, whole scene
    task_file = write_task_file(raw, task_path, args.workdir / f"{args.dataset}_task.yaml")
    sensors = {name: Path(s.path) for name, s in load_task(task_file).sensors.items()}
    refs = [best_baseline(args.base_rows, args.dataset, head)["model"]
            for head in ("centre", "patch")]
    speed = throughput(args, task_file, sensors, {SEARCHED: pick["arch"]} |
                       {m: m for m in refs})
    repeat = None
    if args.repeat_check:
        again = run_job(jobs[0])
        repeat = repeat_statement(searched_rows[0], again, f"the {SEARCHED} network's seed "
                                  f"{again['seed']} training", ignore=TIMINGS)
        print(repeat, flush=True)
    name = f"searched_vs_baselines_{suffix}"
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{name}.png"
    _plot(table, args.dataset, png)
    path = write_report(args.out, name, report(args, table, ref, pick, speed,
                                               time.perf_counter() - t0, png, repeat))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
