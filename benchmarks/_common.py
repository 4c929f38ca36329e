"""What every benchmark report shares: machine, versions, the command line, tables, stats.

Imported by the scripts beside it (`python benchmarks/<name>.py` puts this folder on sys.path).
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("autors", "torch", "numpy", "rasterio", "nni", "ray")
# Captured when a script imports this module, i.e. before its own work loads the machine.
LOAD_AT_START = os.getloadavg()


def machine() -> str:
    """One line: host, architecture, CPU count and the load average when the run started."""
    load = ", ".join(f"{x:.2f}" for x in LOAD_AT_START)
    return (f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average (1/5/15 min) at start {load}")


def versions() -> str:
    """`name version` of the packages that shape the figures."""
    parts = [f"python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(parts)


def command() -> str:
    """The command line that produced the report, relative to the repository root."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def one_thread() -> None:
    """One torch thread per process: figures comparable across runs, two processes per 2 cores."""
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = list(values)
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt_pm(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """'m ± s' of values times `scale` (percent points by default)."""
    m, s = mean_std(values)
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str) -> str:
    """A markdown table; `align` has one character per column: l (left) or r (right)."""
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def header_block(title: str, script: str, wall_s: float) -> str:
    """The report's head: title, command, machine, versions, wall time."""
    return (f"# {title} ({script})\n\n"
            f"Command: `{command()}`  \n"
            f"Machine: {machine()}  \n"
            f"Versions: {versions()}  \n"
            f"Wall time: {wall_s / 60:.1f} min\n")


def write_report(out_dir: Path, name: str, text: str) -> Path:
    """Write `<out_dir>/<name>.md` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.md"
    path.write_text(text)
    return path


# -- the two measured datasets and their training protocol (shared by baselines.py,
# search_compare.py and searched_vs_baselines.py so every figure uses the same budget) --------
DATASETS = ("synth", "sen1floods11")
DEFAULT_DATA_ROOT = Path(os.environ.get("AUTORS_DATA")
                         or Path(__file__).resolve().parents[2] / "shared" / "data")
# epochs; training patches per epoch (None: all); validation pixels (None: all). The synthetic
# preset has its own validation raster (over 1,000 pixels); Sen1Floods11's ~40 k validation
# pixels are bounded to a fixed seeded 3,000 (the same for every model, seed and search).
PROTOCOL = {"synth": {"epochs": 10, "max_train": None, "max_val": None},
            "sen1floods11": {"epochs": 5, "max_train": 4000, "max_val": 3000}}
SPLIT_SEED = 0  # every row, trial and search of every benchmark sees this one split


def synth_task(workdir: Path, smoke: bool) -> tuple[Path, str]:
    """The synthetic benchmark preset (512 px, scene seed 0), generated once per workdir."""
    from autors.synth import SynthConfig, generate_scene

    out = workdir / ("synth_smoke" if smoke else "synth_benchmark_s0")
    path = out / "task.yaml"
    if not path.is_file():
        # the smoke scene has a validation raster too, as the benchmark preset does
        cfg = (SynthConfig(size=64, n_train_per_class=8, n_val_per_class=8, block_size=16,
                           patch_size=5) if smoke else SynthConfig.benchmark(seed=0))
        generate_scene(out, cfg)
    return path, path.read_text()


def s1f11_task(data_root: Path) -> tuple[Path, str]:
    """The shipped Sen1Floods11 task, its relative paths resolved against `data_root`."""
    from autors.config import SHIPPED_DIR

    src = SHIPPED_DIR / "sen1floods11_chip.yaml"
    return data_root.resolve() / src.name, src.read_text()


def dataset_task(dataset: str, workdir: Path, data_root: Path, smoke: bool) -> tuple[Path, str]:
    """(task path, task YAML text) of a benchmark dataset."""
    if dataset == "synth":
        return synth_task(workdir, smoke)
    if dataset == "sen1floods11":
        return s1f11_task(data_root)
    raise SystemExit(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")


def with_budget(raw: dict, epochs: int, max_train: int | None, max_val: int | None) -> dict:
    """The task dict with a fixed training budget: `epochs` with early stopping off (the best
    validation epoch is restored), `max_train` patches per epoch, the same fixed `max_val`
    validation pixels for every model and seed, and the benchmarks' one split (SPLIT_SEED,
    default buffer: no held-out footprint touches a training pixel)."""
    return dict(raw, train=dict(raw.get("train") or {}, epochs=epochs,
                                early_stopping_patience=epochs, max_train_samples=max_train,
                                val_max_samples=max_val),
                split=dict(raw["split"], seed=SPLIT_SEED))


def with_protocol(raw: dict, dataset: str, epochs: int | None = None) -> dict:
    """The task dict with the dataset's budget from PROTOCOL (`epochs` overrides its epochs)."""
    proto = PROTOCOL[dataset]
    return with_budget(raw, epochs or proto["epochs"], proto["max_train"], proto["max_val"])


def baseline_names(head: str | None = None) -> tuple[str, ...]:
    """The hand-designed baselines (`fusion.BASELINES`), optionally only those with a `patch`
    or a `centre` head."""
    from fusion import baselines_for
    from fusion.baselines import CENTRE_SUFFIX

    patch = baselines_for(dense=False)
    if head is None:
        return patch
    return tuple(b for b in patch if b.endswith(CENTRE_SUFFIX) == (head == "centre"))


def best_baseline(rows: list[dict], dataset: str, head: str | None = None) -> dict:
    """The hand-designed baseline with the highest mean VALIDATION OA on `dataset` (baselines.json
    rows; the test split never picks a winner): {"model", "val_oa", "oa", "flops"}."""
    means = []
    for model in baseline_names(head):
        sel = [r for r in rows if r["dataset"] == dataset and r["model"] == model]
        if sel:
            means.append({"model": model, "val_oa": mean_std([r["val_oa"] for r in sel])[0],
                          "oa": mean_std([r["oa"] for r in sel])[0], "flops": sel[0]["flops"]})
    if not means:
        raise SystemExit(f"no baseline rows for {dataset!r}: run benchmarks/baselines.py first")
    return max(means, key=lambda m: (m["val_oa"], -m["flops"]))


def subset_arch(arch: str, in_channels: dict[str, int], sensors: tuple[str, ...]) -> dict:
    """Baseline `arch` using only `sensors`: the other sensors' branches are off. The task keeps
    every sensor, so a single-sensor row is trained, validated and tested on exactly the pixels
    of the all-sensor rows (where the task's `require_sensors` holds: any sensor valid by default)."""
    from fusion import baseline_arch

    arch_dict = baseline_arch(arch, in_channels).to_dict()
    for name in in_channels:
        if name not in sensors:
            arch_dict["branches"][name] = {"kind": "off"}
    return arch_dict


def same_pixels(rows: list[dict], what: str) -> str:
    """One sentence on the pixels every row was scored on; exits when rows differ (a
    comparison on different pixels is not reported)."""
    hashes = {r["split_sha256"] for r in rows}
    n_test = {r["n_test"] for r in rows}
    if len(hashes) != 1 or len(n_test) != 1:
        raise SystemExit(f"{what}: rows were scored on different splits {sorted(hashes)} / "
                         f"test pixels {sorted(n_test)}: not comparable")
    n_val = {r.get("n_val") for r in rows} - {None}
    val = f", validated on the same {n_val.pop():,} pixels" if len(n_val) == 1 else ""
    return (f"Every row is tested on the same {n_test.pop():,} test pixels (labelled pixels "
            f"where the task's require_sensors holds){val}; split hash "
            f"`{hashes.pop()[:12]}` (split seed {SPLIT_SEED}, default buffer: no held-out patch "
            "footprint touches a training pixel).")


def repeat_statement(first: dict, again: dict, what: str, ignore: Sequence[str] = ()) -> str:
    """Whether a repeated row matched the first exactly (every value but timings in `ignore`)."""
    keys = sorted((set(first) | set(again)) - set(ignore))
    differ = [k for k in keys if first.get(k) != again.get(k)]
    if not differ:
        return (f"Repeat check: {what} was run twice; all {len(keys)} recorded values "
                f"({', '.join(keys)}) matched exactly (timings excluded).")
    def brief(value: object) -> str:
        text = repr(value)
        return text if len(text) <= 120 else text[:117] + "..."

    shown = "; ".join(f"{k}: {brief(first.get(k))} then {brief(again.get(k))}" for k in differ[:4])
    return (f"Repeat check: {what} was run twice and did NOT match exactly on "
            f"{len(differ)} of {len(keys)} values ({shown}).")


def write_task_file(raw: dict, task_path: Path, out: Path) -> Path:
    """Write the task dict to `out` with its raster paths made absolute (they are relative to
    `task_path`'s folder), so `autors train` can read it from anywhere."""
    import yaml

    base = task_path.parent
    raw = dict(raw, sensors={k: dict(v, path=str(base / v["path"]), **(
        {"mask": dict(v["mask"], path=str(base / v["mask"]["path"]))}
        if (v.get("mask") or {}).get("path") else {})) for k, v in raw["sensors"].items()})
    raw["labels"] = dict(raw["labels"], path=str(base / raw["labels"]["path"]))
    raw["split"] = dict(raw["split"], **{k: str(base / raw["split"][k])
                                         for k in ("train", "val", "test") if raw["split"].get(k)})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def class_subset_row(test: dict, subset: Sequence[str], key: str) -> dict:
    """Test OA on a subset of the classes (`oa_<key>`: the confusion matrix restricted to
    them) and on the others (`oa_other`), and per-class accuracy, from test metrics."""
    import numpy as np

    cm = np.asarray(test["confusion_matrix"], np.int64)
    inside = np.isin(list(test["class_names"]), list(subset))
    return {
        f"oa_{key}": float(np.trace(cm[np.ix_(inside, inside)]) / cm[inside].sum()),
        "oa_other": float(np.trace(cm[np.ix_(~inside, ~inside)]) / cm[~inside].sum()),
        "per_class": {n: (None if v is None else float(v))
                      for n, v in test["per_class_accuracy"].items()},
    }


def per_class_bars(models: dict[str, dict], names: Sequence[str], classes: Sequence[str],
                   marked: Sequence[str], what: str, path: Path) -> None:
    """Bar chart of per-class test accuracy, mean ± std over seeds, of the models `names`
    (`models[name]["rows"]` hold `per_class`); classes in `marked` get a star (`what` says
    which they are)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8))
    x = np.arange(len(classes))
    width = 0.76 / len(names)
    for i, name in enumerate(names):
        acc = [[r["per_class"][c] or 0.0 for r in models[name]["rows"]] for c in classes]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, [np.mean(a) for a in acc], width,
               yerr=[np.std(a) for a in acc], label=name, capsize=2)
    ax.set_xticks(x, [c + (" *" if c in marked else "") for c in classes], rotation=30,
                  fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"per-class test accuracy, mean ± std over seeds (* {what})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
