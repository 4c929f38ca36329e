"""`autors train TASK --arch NAME|arch.json`: train one architecture and write a run folder.

Evaluates on validation; evaluates on test only with `--test` (once, after training). The
model is calibrated on validation (temperature, conformal quantiles; `calib` line).
The run folder (a train folder) is documented in `autors.training.train_folder`.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from rich.console import Console

import fusion
from autors.cli.common import (
    RUNS_DIR,
    TASK_HELP,
    add_task_options,
    task_from_args,
    write_run_report,
)
from autors.data import prepare
from autors.plugins import task_plugins
from autors.training.loop import SCALARS
from autors.training.train_folder import check_new_run_dir, train_and_write
from autors.training.trial import TrainedModel
from fusion import ArchError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one architecture on a task and write a run folder",
        description="Train one architecture with the task's `train` settings, evaluate it on "
        "the validation split (and on the test split only with --test), measure its cost, "
        "and write results/runs/<name>/ with the weights, arch.json and metrics.json.",
    )
    p.add_argument("task", help=TASK_HELP)
    p.add_argument(
        "--arch",
        required=True,
        help=f"a baseline name ({', '.join(fusion.BASELINES)}) or an arch.json file",
    )
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the task's)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="train at most this many epochs (a quick check; the run folder's "
                   "task.yaml keeps the task's train.epochs: use --set train.epochs=N to "
                   "change the task itself)")
    p.add_argument("--test", action="store_true",
                   help="also evaluate once on the test split (off by default: test pixels "
                   "must not steer model choices)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder to create (default: results/runs/<task>_<arch>_<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, only the summary")
    add_task_options(p)
    p.set_defaults(func=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def load_arch_arg(value: str) -> tuple[dict | str, str]:
    """(arch dict or baseline name, short name for the run folder) from --arch."""
    path = Path(value)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise ArchError(f"--arch {value}: file not found")
        try:
            arch = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ArchError(f"--arch {value}: not a readable JSON arch ({err})") from None
        if not isinstance(arch, dict):
            raise ArchError(f"--arch {value}: must hold a JSON object (an arch), not a list")
        return arch, path.stem
    if value not in fusion.BASELINES:
        raise ArchError(
            f"--arch {value!r} is neither an arch.json file nor a baseline: baselines are "
            f"{list(fusion.BASELINES)}"
        )
    return value, value


def _metrics_line(metrics: dict) -> str:
    if "scalars" in metrics:  # a task with targets: the score and every target's figures
        return "  ".join(f"{k.upper() if '__' not in k else k} {v:.4f}"
                         for k, v in metrics["scalars"].items() if "__" in k or k == "score")
    return "  ".join(f"{k.upper()} {metrics[k]:.4f}" for k in SCALARS)


def _calibration_line(trained: TrainedModel) -> str:
    """Temperature and what it did on validation (and test), the conformal test coverage."""
    cal = trained.calibration
    v = cal.val
    line = (f"T {cal.temperature:.3f}" + (" (validation has no interior optimum: raw softmax)"
                                         if v["at_bound"] else " (fitted on validation)")
            + f"  val ECE {v['ece_before']:.4f} -> {v['ece_after']:.4f}")
    checked = (trained.test_metrics or {}).get("calibration")
    if checked is not None:
        cover = next(c for c in checked["conformal"] if c["alpha"] == 0.1)
        line += (f"  test ECE {checked['ece_before']:.4f} -> {checked['ece_after']:.4f}  "
                 f"conformal 90 % sets: test coverage {100 * cover['coverage']:.1f} %, mean "
                 f"size {cover['mean_set_size']:.2f}")
    return line


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    task = task_from_args(args)
    task_plugins(task)  # before the arch's part names are looked up
    arch, arch_name = load_arch_arg(args.arch)
    seed = task.seed if args.seed is None else args.seed
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RUNS_DIR / f"{task.name}_{arch_name}_{stamp}"
    check_new_run_dir(out)  # before reading the data, not after

    if not args.quiet:
        console.print(f"preparing data for task [bold]{task.name}[/] ({task.task})")
    data = prepare(task)
    if not args.quiet or data.index.skipped:
        console.print(f"data: {data.describe()}")
    trained = train_and_write(task, arch, data, seed, out, test=args.test,
                              progress=not args.quiet, max_epochs=args.epochs)

    outcome, cost = trained.outcome, trained.cost
    console.print(f"arch   {outcome.arch.summary()}")
    console.print(f"epochs {outcome.epochs} (best {outcome.best_epoch}, early stopping on "
                  f"{outcome.monitor}), {outcome.train_s:.1f} s on {outcome.device}")
    console.print(f"val    {_metrics_line(outcome.val_metrics)}")
    if trained.test_metrics is not None:
        console.print(f"test   {_metrics_line(trained.test_metrics)}")
    if trained.calibration is not None:
        console.print(f"calib  {_calibration_line(trained)}")
    console.print(f"cost   {cost.params:,} params  {cost.flops / 1e6:.2f} MFLOPs/sample  "
                  f"{cost.latency_ms_b1:.2f} ms @1  {cost.latency_ms_per_sample_b256:.3f} "
                  f"ms/sample @{cost.throughput_batch} ({cost.threads} threads)")
    console.print(f"run folder {out}")
    write_run_report(console, out)
    return 0
