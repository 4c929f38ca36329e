"""`autors validate TASK`: parse a task file, index its scenes and splits, print a summary.

The summary comes from the dataset index (`autors.data.index.build_index` without keeping any
pixel): every path is listed and every raster header read before a pixel is, so a missing or
unreadable file is reported naming its scene and file. Then a few windows of every scene's
rasters are checked against what the task declares and the rest of the dataset holds, with
predict's checks (`autors.export.input_check`: SAR units, a scene whose values are 10^k off
the dataset's, a declared scale that does not give reflectance, drift, band order): an error
exits 2 with the fix. `--cluster ADDRESS` then checks that every node of a running Ray cluster
can read the same files.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autors.cli.common import TASK_HELP, add_task_options, task_from_args
from autors.config import TaskSpec
from autors.data.grid import Grid, crs_name, lattice_offset
from autors.data.index import DatasetIndex, SceneEntry, build_index
from autors.data.raster import RasterInfo
from autors.data.scenes import SPLIT_NAMES, SceneFiles, list_scenes
from autors.errors import InputMismatchError
from autors.export.input_check import InputReport, check_task
from autors.plugins import task_plugins
from autors.search.node_files import dataset_files

FAILURES_SHOWN = 3  # unreadable files listed per node (the count says how many in all)
CHECKS_SHOWN = 10  # input-check findings listed (the count says how many in all)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check a task file and its rasters; print sensors, scenes, classes and splits",
        description="Parse TASK, list its scenes, read every raster header, index the labels "
        "and splits (nothing is kept in memory) and print a summary. Exit status 0 when the "
        "task is usable, 2 with a message when it is not.",
    )
    p.add_argument("task", help=TASK_HELP)
    add_task_options(p)
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="also check, on every node of the running Ray cluster at ADDRESS "
                   "(host:port, token authentication as for `autors search --address`), that "
                   "each raster of the dataset is readable at the same path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    task = task_from_args(args)
    plugins = task_plugins(task)  # a plugin that cannot be imported fails validation
    # keep_raw=False: the index pass reads each scene by blocks and holds no pixel.
    index, _ = build_index(task, keep_raw=False)
    files = list_scenes(task)  # every listed scene, skipped and unused ones too
    console = Console(highlight=False)
    _print_summary(console, task, index, files)
    reports = check_task(task, index)
    _print_checks(console, reports)
    if plugins:
        console.print("[bold]Plugins[/]: " + ", ".join(
            escape(f"{p.module}{f' {p.version}' if p.version else ''} ({p.source})")
            for p in plugins))
    if args.cluster:
        _check_cluster(console, args.cluster, task, files, _streamed(task, index))
    _raise_for_checks(reports)
    console.print("[green]OK[/]: the task is usable")
    return 0


# ---- input checks -----------------------------------------------------------------------------
def _print_checks(console: Console, reports: list[tuple[str, InputReport]]) -> None:
    """One line for the checks of every scene, then each finding (the first CHECKS_SHOWN)."""
    found = [(scene, f) for scene, r in reports for f in r.findings]
    errors = sum(f.level == "error" for _, f in found)
    warnings = len(found) - errors
    console.print(f"[bold]Input checks[/] ({len(reports)} scene(s), a few windows each, against "
                  "the task's units and scale and the dataset's typical scene, the median over "
                  "its scenes): "
                  + (f"{errors} error(s), {warnings} warning(s)" if found else "passed"))
    one = len(reports) == 1
    for scene, f in found[:CHECKS_SHOWN]:
        where = "" if one else f"scene '{escape(scene)}': "
        level = "[red]error[/]" if f.level == "error" else "[yellow]warning[/]"
        console.print(f"  {level}: {where}{escape(f.text())}")
    if len(found) > CHECKS_SHOWN:
        console.print(f"  ... and {len(found) - CHECKS_SHOWN} more")


def _raise_for_checks(reports: list[tuple[str, InputReport]]) -> None:
    """The first failing scene's InputMismatchError, naming how many scenes failed."""
    failed = [(scene, r) for scene, r in reports if r.errors]
    if not failed:
        return
    scene, report = failed[0]
    try:
        report.raise_for_errors()
    except InputMismatchError as err:
        where = "" if len(reports) == 1 else \
            f"{len(failed)} of {len(reports)} scene(s) fail the input checks; scene '{scene}': "
        raise InputMismatchError(where + str(err)) from None


# ---- the summary ------------------------------------------------------------------------------
def _print_summary(console: Console, task: TaskSpec, index: DatasetIndex,
                   files: list[SceneFiles]) -> None:
    console.print(f"[bold]Task[/] {task.name}: {task.task}")
    console.print(f"  from {escape(str(task.source))}")
    for override in task.overrides:
        console.print(f"  --set {escape(override)}")
    one = task.scenes is None
    _print_sensors(console, task, index)
    if one:
        _print_grid(console, task, index.scenes[0])
    else:
        _print_dataset(console, task, index, files)
    _print_size(console, task, index, files)
    _print_split(console, task, index)
    _print_search(console, task)


def _print_sensors(console: Console, task: TaskSpec, index: DatasetIndex) -> None:
    console.print("[bold]Sensors[/]")
    for name, spec in task.sensors.items():
        kind = spec.kind + (f", {spec.sar_units}" if spec.sar_units else "")
        names = index.band_names[name]
        bands = escape(", ".join(names[:4]) + (", ..." if len(names) > 4 else ""))
        scaling = [f"scale {spec.scale:g}"] if spec.scale != 1.0 else []
        scaling += [f"offset {spec.offset:g}"] if spec.offset != 0.0 else []
        scaling += [f"nodata {spec.nodata:g}"] if spec.nodata is not None else []
        extra = f"; {', '.join(scaling)}" if scaling else ""
        console.print(f"  [bold]{name}[/] ({kind}): {len(names)} band(s): {bands}{extra}")
        if task.scenes is None:
            entry = index.scenes[0]
            info = entry.rasters[name]
            console.print(f"    {escape(str(spec.path))}")
            console.print(f"    {_native(info)} -> {_how(info, entry.grid)}")
            continue
        if task.scenes.template is not None:
            console.print(f"    {escape(task.scenes.template.sensors[name])}")
        how = Counter(_how(e.rasters[name], e.grid) if name in e.rasters else "absent"
                      for e in index.scenes)
        console.print("    " + ", ".join(f"{h} in {n} scene(s)" for h, n in how.most_common()))


def _how(info: RasterInfo, grid: Grid) -> str:
    return "window read" if lattice_offset(info, grid) is not None else "resampled (bilinear)"


def _print_grid(console: Console, task: TaskSpec, entry: SceneEntry) -> None:
    """One scene: its reference grid and how much of it every sensor covers."""
    grid = entry.grid
    ref = "labels" if task.grid == "labels" else f"sensor '{task.grid}'"
    console.print(
        f"[bold]Reference grid[/] ({ref}): {grid.width} x {grid.height} px, "
        f"{crs_name(grid.crs)}, pixel {_res(grid)}"
    )
    _print_valid(console, task, [entry], "the grid")


def _print_valid(console: Console, task: TaskSpec, entries: list[SceneEntry], where: str
                 ) -> None:
    """Each sensor's valid share of the grids (counted by the index pass), and which sensors a
    labelled pixel needs to be used."""
    pixels = [e.grid.height * e.grid.width for e in entries]
    valid = {name: sum(e.sensor_valid.get(name, 0.0) * n for e, n in zip(entries, pixels))
             for name in task.sensors}  # a sensor absent from a scene: 0 there
    shares = ", ".join(f"{name} {v / sum(pixels):.1%}" for name, v in valid.items())
    rule = task.require_sensors
    need = {"any": "any sensor", "all": "every sensor"}.get(rule) if isinstance(rule, str) \
        else f"{', '.join(rule)}"
    console.print(f"[bold]Valid pixels[/]: {shares} of {where}; a label is used where {need} "
                  "is valid (require_sensors)")


def _print_dataset(console: Console, task: TaskSpec, index: DatasetIndex,
                   files: list[SceneFiles]) -> None:
    """Many scenes: counts, groups, scenes per split, skipped and unused scenes, CRSs, pixel
    sizes and grid sizes."""
    groups = {f.group for f in files if f.group is not None}
    grouped = f" in {len(groups)} group(s) (scenes.group)" if groups else ""
    console.print(f"[bold]Dataset[/]: {len(files)} scene(s){grouped}, listed by "
                  f"{_listed_by(task)}")
    parts = []
    for name in SPLIT_NAMES:
        holding = [e for e in index.scenes if e.n(name)]
        in_groups = {e.files.group for e in holding if e.files.group is not None}
        parts.append(f"{name} {len(holding)}"
                     + (f" ({len(in_groups)} group(s))" if groups else ""))
    console.print(f"  scenes per split: {', '.join(parts)}")
    if index.skipped:
        console.print(f"  [yellow]WARNING[/]: {len(index.skipped)} scene(s) skipped, no "
                      "usable labelled pixel (a label where require_sensors holds): "
                      f"{_ids(index.skipped)}")
    if index.unused:
        console.print(f"  {len(index.unused)} scene(s) unused (in no split list): "
                      f"{_ids(index.unused)}")
    _print_valid(console, task, index.scenes, "the scenes' grids")
    crss = Counter(crs_name(e.grid.crs) for e in index.scenes)
    console.print(f"  {len(crss)} CRS(s): {_counted(crss)}")
    sizes = Counter(_res(e.grid) for e in index.scenes)
    console.print(f"  pixel sizes: {_counted(sizes)}")
    shapes = sorted((e.grid.height * e.grid.width, e.grid.width, e.grid.height)
                    for e in index.scenes)
    pixels = sum(s[0] for s in shapes)
    console.print(f"  grids: {shapes[0][1]} x {shapes[0][2]} to {shapes[-1][1]} x "
                  f"{shapes[-1][2]} px, {pixels:,} px in all")


def _listed_by(task: TaskSpec) -> str:
    spec = task.scenes
    if spec.items is not None:
        return "scenes.items"
    if spec.csv is not None:
        return "scenes.csv (" + ", ".join(escape(p.name) for p in spec.csv) + ")"
    return "the glob of the template"


def _counted(counts: Counter) -> str:
    """'A (12 scenes), B (40)': most frequent first."""
    items = counts.most_common()
    return ", ".join(f"{k} ({n}{' scene(s)' if i == 0 else ''})"
                     for i, (k, n) in enumerate(items))


def _ids(ids: list[str], shown: int = 10) -> str:
    more = f" (and {len(ids) - shown} more)" if len(ids) > shown else ""
    return escape(", ".join(ids[:shown])) + more


def _print_size(console: Console, task: TaskSpec, index: DatasetIndex,
                files: list[SceneFiles]) -> None:
    """Bytes on disk, bytes in memory, and whether training holds the data or streams it."""
    on_disk = sum(dataset_files(files)[0].values())
    limit = task.data.in_memory_max_mb
    if _streamed(task, index):
        how = (f"> data.in_memory_max_mb {limit:g}: training streams it from the GeoTIFFs "
               f"(blocks of {task.data.block_size} px, {task.data.cache_mb:g} MB cache per "
               "reader)")
    else:
        how = (f"<= data.in_memory_max_mb {limit:g}: training holds it in memory (read once, "
               "shipped to trials through Ray's object store)")
    console.print(f"[bold]Data size[/]: {_size(on_disk)} of rasters on disk; "
                  f"{_size(index.nbytes())} normalised in memory {how}")


def _streamed(task: TaskSpec, index: DatasetIndex) -> bool:
    # As build_index decides; it also counts the grids of skipped scenes, which the index no
    # longer has, so near the limit this may differ by those scenes.
    return index.nbytes() / 2**20 > task.data.in_memory_max_mb


def _size(n: int) -> str:
    """Bytes in binary units, as data.in_memory_max_mb counts them."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _print_split(console: Console, task: TaskSpec, index: DatasetIndex) -> None:
    console.print(_class_table(task, index))
    record = index.split_record()
    console.print(f"[bold]Split[/]: {_split_how(task)}, split seed {task.split.seed}, "
                  f"hash {record['sha256'][:12]}")
    if record["dropped_invalid"]:
        console.print(f"  {record['dropped_invalid']} labelled pixels dropped: too few sensors "
                      f"valid there (require_sensors: {task.require_sensors})")
    if task.split.kind == "scenes":
        console.print("  buffer: none needed (whole scenes per split: a patch never reaches "
                      "another scene)")
    else:
        note = " (split.buffer: 0, so held-out footprints may touch training pixels)" \
            if record["buffer"] == 0 else ""
        console.print(
            f"  buffer {record['buffer']} px{note}: {record['dropped_buffer']} training pixels "
            "within it of a validation or test pixel left out of training"
        )
    counts = index.counts()
    for name, n in zip(task.class_names, zip(*(counts[s] for s in SPLIT_NAMES))):
        missing = [s for s, c in zip(SPLIT_NAMES, n) if c == 0]
        if missing:
            console.print(
                f"  [yellow]warning[/]: class '{escape(name)}' has no pixel in "
                f"{' and '.join(missing)}"
            )
    size = task.sample_size
    console.print(f"[bold]{'Tiles' if task.dense else 'Patch'}[/]: {size} x {size} px")
    for name, lk in record["leakage"].items():  # computed once, by the index
        share = lk["touching_train"] / lk["pixels"] if lk["pixels"] else 0.0
        console.print(
            f"  leakage: {name} footprints touching training pixels: {lk['touching_train']} "
            f"of {lk['pixels']} ({share:.1%})"
        )


def _split_how(task: TaskSpec) -> str:
    split = task.split
    if split.kind == "spatial_blocks":
        return (f"spatial blocks of {split.block_size} px: test {split.test_fraction:.0%}, "
                f"val {split.val_fraction:.0%} of labelled pixels")
    if split.kind == "scenes":
        if split.train is None:
            by = "groups" if task.scenes.group is not None else "scenes"
            return (f"whole scenes, seeded fractions of the {by}: test "
                    f"{split.test_fraction:.0%}, val {split.val_fraction:.0%}")
        lists = [f"{name} {_entries(getattr(split, name))}" for name in SPLIT_NAMES
                 if getattr(split, name) is not None]
        carved = "" if split.val is not None else \
            f"; val {split.val_fraction:.0%} of the training scenes"
        return f"whole scenes, given lists: {' / '.join(lists)}{carved}"
    if split.val is not None:
        return (f"given train {escape(split.train.name)} / val {escape(split.val.name)} / test "
                f"{escape(split.test.name)}")
    return (f"given train {escape(split.train.name)} / test {escape(split.test.name)}; val "
            f"carved from train by blocks of {split.val_block_size} px "
            f"({split.val_fraction:.0%})")


def _entries(entries: list[str]) -> str:
    """A split list in a few words: its CSV files by name, and how many ids are inline."""
    csvs = [Path(e).name for e in entries if e.lower().endswith(".csv")]
    ids = len(entries) - len(csvs)
    return escape(", ".join(csvs + ([f"{ids} id(s)"] if ids else [])))


def _print_search(console: Console, task: TaskSpec) -> None:
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


def _class_table(task: TaskSpec, index: DatasetIndex) -> Table:
    counts = index.counts()
    table = Table(title="Classes (labelled pixels)", title_justify="left")
    for col in ("index", "value", "name", *SPLIT_NAMES):
        table.add_column(col, justify="right" if col not in ("name",) else "left")
    values = task.class_labels.class_values if task.class_labels is not None else []
    for i, (value, name) in enumerate(zip(values, task.class_names)):
        table.add_row(str(i), str(value), escape(name), *(str(counts[s][i]) for s in SPLIT_NAMES))
    if task.multi_target:  # the stratum of pixels where only other targets have a value
        k = task.num_classes
        table.add_row("", "", "other targets only", *(str(counts[s][k]) for s in SPLIT_NAMES))
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


# ---- --cluster: every node reads every raster -------------------------------------------------
def _check_cluster(console: Console, address: str, task: TaskSpec, scenes: list[SceneFiles],
                   streamed: bool) -> None:
    """Connect, check every node, print one line per node; raise naming the first node that
    cannot read a file when trials would read it there (the dataset is streamed)."""
    from autors.search.cluster import ray_cluster
    from autors.search.node_files import check_nodes, raise_for_nodes

    files, where = dataset_files(scenes)
    with ray_cluster(address, task.search) as info:
        checks = check_nodes(files)
    console.print(f"[bold]Cluster[/] {escape(info.address)}: {len(checks)} node(s), "
                  f"{len(files)} raster(s) each")
    for c in checks:
        name = f"node {c.ip} ({escape(c.host)})"
        if c.error:
            console.print(f"  {name}: [red]{escape(c.error)}[/]")
        elif not c.failures:
            console.print(f"  {name}: all {len(files)} raster(s) readable")
        else:
            console.print(f"  {name}: [red]{len(c.failures)} of {len(files)} raster(s) not "
                          "readable[/]")
            for path, why in c.failures[:FAILURES_SHOWN]:
                what = f"{where[path]} " if path in where else ""
                console.print(f"    {escape(what + path)}: {escape(why)}")
    if not streamed and any(c.failures for c in checks) and not any(c.error for c in checks):
        console.print(
            "  [yellow]warning[/]: the dataset is held in memory (data.in_memory_max_mb), so "
            "trials do not read these files; they would if it grew past the limit")
        return
    raise_for_nodes(checks, where, address, task)