"""`autors validate TASK`: parse a task file, load and split its data, print a summary."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autors.cli.common import TASK_HELP, add_task_options, task_from_args
from autors.config import TaskSpec
from autors.data.grid import Grid, crs_name, lattice_offset
from autors.data.raster import RasterInfo
from autors.data.scene import Scene, load_scene
from autors.data.splits import (
    SPLIT_NAMES,
    Splits,
    make_splits,
    split_record,
)
from autors.plugins import task_plugins


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check a task file and its rasters; print sensors, grid, classes and splits",
        description="Parse TASK, read and align its rasters, make the splits and print a "
        "summary. Exit status 0 when the task is usable, 2 with a message when it is not.",
    )
    p.add_argument("task", help=TASK_HELP)
    add_task_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    task = task_from_args(args)
    plugins = task_plugins(task)  # a plugin that cannot be imported fails validation
    scene = load_scene(task)
    splits = make_splits(task, scene)
    console = Console(highlight=False)
    _print_summary(console, task, scene, splits)
    if plugins:
        console.print("[bold]Plugins[/]: " + ", ".join(
            escape(f"{p.module}{f' {p.version}' if p.version else ''} ({p.source})")
            for p in plugins))
    return 0


def _print_summary(console: Console, task: TaskSpec, scene: Scene, splits: Splits) -> None:
    console.print(f"[bold]Task[/] {task.name}: {task.task}")
    console.print(f"  from {escape(str(task.source))}")
    for override in task.overrides:
        console.print(f"  --set {escape(override)}")
    _print_sensors(console, task, scene)

    grid = scene.grid
    ref = "labels" if task.grid == "labels" else f"sensor '{task.grid}'"
    console.print(
        f"[bold]Reference grid[/] ({ref}): {grid.width} x {grid.height} px, "
        f"{crs_name(grid.crs)}, pixel {_res(grid)}"
    )
    per_sensor = ", ".join(f"{n} {v.mean():.1%}" for n, v in scene.sensor_valid.items())
    console.print(f"[bold]Valid pixels[/]: {scene.valid.mean():.1%} of the grid ({per_sensor})")

    console.print(_class_table(task, splits))
    split = task.split
    if split.kind == "spatial_blocks":
        how = (
            f"spatial blocks of {split.block_size} px: test {split.test_fraction:.0%}, "
            f"val {split.val_fraction:.0%} of labelled pixels"
        )
    elif split.val is not None:
        how = (
            f"given train {escape(split.train.name)} / val {escape(split.val.name)} / test "
            f"{escape(split.test.name)}"
        )
    else:
        how = (
            f"given train {escape(split.train.name)} / test {escape(split.test.name)}; val "
            "carved from "
            f"train by blocks of {split.val_block_size} px ({split.val_fraction:.0%})"
        )
    record = split_record(splits, task.sample_size, split.seed)
    console.print(f"[bold]Split[/]: {how}, split seed {split.seed}, hash {record['sha256'][:12]}")
    if splits.dropped_invalid:
        console.print(
            f"  {splits.dropped_invalid} labelled pixels dropped: a sensor is invalid there"
        )
    buffer_note = " (split.buffer: 0, so held-out footprints may touch training pixels)" \
        if splits.buffer == 0 else ""
    console.print(
        f"  buffer {splits.buffer} px{buffer_note}: {splits.dropped_buffer} training pixels "
        "within it of a validation or test pixel left out of training"
    )
    for name, n in zip(task.class_names, zip(*(splits.counts()[s] for s in SPLIT_NAMES))):
        missing = [s for s, c in zip(SPLIT_NAMES, n) if c == 0]
        if missing:
            console.print(
                f"  [yellow]warning[/]: class '{escape(name)}' has no pixel in "
                f"{' and '.join(missing)}"
            )

    size = task.sample_size
    console.print(f"[bold]{'Tiles' if task.dense else 'Patch'}[/]: {size} x {size} px")
    for name, lk in record["leakage"].items():  # computed once, by split_record
        share = lk["touching_train"] / lk["pixels"] if lk["pixels"] else 0.0
        console.print(
            f"  leakage: {name} footprints touching training pixels: {lk['touching_train']} "
            f"of {lk['pixels']} ({share:.1%})"
        )

    s, t = task.search, task.train
    budget = " and ".join(
        x
        for x in (
            s.max_trials and f"{s.max_trials} trials",
            s.max_minutes and f"{s.max_minutes:g} min",
        )
        if x
    )
    console.print(
        f"[bold]Search[/]: space {escape(s.space)}, strategy {escape(s.strategy)}, {budget}, "
        f"{s.concurrency} concurrent x ({s.cpus_per_trial:g} CPU, "
        f"{s.gpus_per_trial:g} GPU), objective {s.objective}, top {s.top_k} "
        f"retrained x {s.final_seeds} seeds"
    )
    limits = {k: v for k, v in s.constraints.model_dump().items() if v is not None}
    if limits:
        console.print(f"  constraints: {', '.join(f'{k} {v}' for k, v in limits.items())}")
    console.print(
        f"[bold]Training per trial[/]: {t.epochs} epochs, batch {t.batch_size}, "
        f"{t.optimizer} lr {t.lr:g}, augment {t.augment}"
    )
    console.print("[green]OK[/]: the task is usable")


def _print_sensors(console: Console, task: TaskSpec, scene: Scene) -> None:
    console.print("[bold]Sensors[/]")
    for name, spec in task.sensors.items():
        info = scene.rasters[name]
        kind = spec.kind + (f", {spec.sar_units}" if spec.sar_units else "")
        names = scene.band_names[name]
        bands = escape(", ".join(names[:4]) + (", ..." if len(names) > 4 else ""))
        how = (
            "window read"
            if lattice_offset(info, scene.grid) is not None
            else "resampled (bilinear)"
        )
        console.print(f"  [bold]{name}[/] ({kind}): {len(names)} band(s): {bands}")
        console.print(f"    {escape(str(spec.path))}")
        console.print(f"    {_native(info)} -> {how}")


def _class_table(task: TaskSpec, splits: Splits) -> Table:
    counts = splits.counts()
    table = Table(title="Classes (labelled pixels)", title_justify="left")
    for col in ("index", "value", "name", *SPLIT_NAMES):
        table.add_column(col, justify="right" if col not in ("name",) else "left")
    for i, (value, name) in enumerate(zip(task.labels.class_values, task.class_names)):
        table.add_row(str(i), str(value), escape(name), *(str(counts[s][i]) for s in SPLIT_NAMES))
    table.add_row("", "", "total", *(str(sum(counts[s])) for s in SPLIT_NAMES))
    return table


def _native(info: RasterInfo) -> str:
    grid = Grid.of(info)
    return f"{crs_name(info.crs)}, {_res(grid)}, {info.width} x {info.height} px"


def _res(grid: Grid) -> str:
    x, y = grid.res
    if grid.crs.is_geographic:
        unit = "deg"
    else:
        unit = {"metre": "m", "meter": "m"}.get(grid.crs.linear_units, grid.crs.linear_units)
    return f"{x:.4g} x {y:.4g} {unit}"
