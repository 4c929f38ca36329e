"""The task section: sensors, bands, classes, split sizes per class, and thumbnails of the
scenes and of each split, read from the task's rasters (decimated). When the rasters cannot be
read here (moved, deleted, another machine), the page says so instead of failing.

Split sizes per class and split maps come from the task's index (`autors.data.build_index`:
the same splits the run used, its hash compared with the run's), built only for datasets of
at most `INDEX_MAX_PIXELS` pixels: a report must not re-read a large dataset.
"""

from __future__ import annotations

from typing import Any

from autors.config import TaskSpec
from autors.data.index import build_index
from autors.data.raster import inspect
from autors.data.scenes import SPLIT_NAMES, list_scenes, scene_splits
from autors.errors import AutorsError
from autors.report.page import Cell, esc, note, table
from autors.report.palette import class_hex
from autors.report.png import data_uri, encode_png
from autors.report.thumbs import class_thumbnail, sensor_thumbnail, split_thumbnail

INDEX_MAX_PIXELS = 16_000_000  # scene pixels over all scenes up to which splits are redrawn
MAX_SCENES = 4  # scenes shown as thumbnails


def class_labels(task: TaskSpec) -> Any:
    """The task's class labels (a `LabelSpec`), or None when it has no class target."""
    return getattr(task, "class_labels", task.labels)


def swatch(index: int, name: str) -> Cell:
    """A table cell: the class colour and its name."""
    return Cell(f'<span class="swatch" style="background:{class_hex(index)}"></span>'
                f"{esc(name)}", name, left=True, markup=True)


def _sensor_rows(task: TaskSpec, bands: dict[str, list[str]] | None) -> list[list]:
    rows = []
    for name, s in task.sensors.items():
        shown = bands.get(name) if bands else None
        band_text = ", ".join(map(str, shown if shown else (s.bands or ["all"])))
        extra = []
        if s.scale != 1.0 or s.offset:
            extra.append(f"scale {s.scale:g}, offset {s.offset:g}")
        if s.sar_units:
            extra.append(f"SAR {s.sar_units}")
        if s.nodata is not None:
            extra.append(f"nodata {s.nodata:g}")
        if s.mask is not None:
            extra.append("mask raster")
        if s.qa is not None:
            extra.append("QA band")
        rows.append([Cell(name, left=True), Cell(s.kind, left=True),
                     Cell(band_text, left=True), Cell("; ".join(extra), left=True)])
    return rows


def _figure(rgb, caption: str) -> str:
    return (f'<figure><img class="thumb" width="{min(240, 4 * rgb.shape[1])}" alt="'
            f'{esc(caption)}" src="{data_uri(encode_png(rgb))}"><figcaption>{esc(caption)}'
            "</figcaption></figure>")


def _scene_thumbnails(task: TaskSpec, files: list, labels: Any) -> str:
    parts = []
    for f in files[:MAX_SCENES]:
        figs = []
        for name, path in f.sensors.items():
            rgb, what = sensor_thumbnail(path, task.sensors[name])
            figs.append(_figure(rgb, f"{name}: {what}"))
        # the class target's raster (a task with several targets names it), else the labels
        target = getattr(task, "class_target", None)
        full = f.targets.get(target) if target and getattr(f, "targets", None) else None
        full = full or f.labels.get("full")
        if labels is not None and full is not None:
            figs.append(_figure(class_thumbnail(full, labels.class_values), "labels"))
        parts.append(f"<h3>scene {esc(f.id)}</h3><div class=\"row\">{''.join(figs)}</div>")
    if len(files) > MAX_SCENES:
        parts.append(note(f"{len(files) - MAX_SCENES} more scene(s) not shown"))
    return "".join(parts)


def _index_part(task: TaskSpec, files: list, names: list[str], recorded: dict | None) -> str:
    """Split sizes per class and split maps from the rebuilt index, or why not."""
    pixels = 0
    for f in files:
        ref = f.labels.get("full") or next(iter(f.sensors.values()))
        info = inspect(ref)
        pixels += info.width * info.height
    if pixels > INDEX_MAX_PIXELS:
        return note(f"the dataset has {pixels / 1e6:.0f} M pixels over {len(files)} scene(s): "
                    "per-class split sizes and split maps are not recomputed for the report "
                    f"(limit {INDEX_MAX_PIXELS / 1e6:.0f} M); split totals are under "
                    "Provenance")
    index, _ = build_index(task, keep_raw=False)
    out = []
    if recorded and recorded.get("sha256") and recorded["sha256"] != index.sha256():
        out.append(note("the split rebuilt from the rasters now differs from the run's "
                        f"(hash {index.sha256()[:12]} vs {recorded['sha256'][:12]}): the "
                        "rasters or the task changed since the run", warn=True))
    k = len(names)
    counts = index.counts()
    rows = [[swatch(i, n)] + [counts[s][i] for s in SPLIT_NAMES] for i, n in enumerate(names)]
    rows.append([Cell("all", left=True)] + [sum(counts[s][:k]) for s in SPLIT_NAMES])
    out.append("<h3>split sizes per class (labelled pixels)</h3>")
    out.append(table(["class", *SPLIT_NAMES], rows))
    if index.dense:
        out.append(note("segmentation: " + ", ".join(
            f"{s} {int(index.sizes(s).sum())} tiles" for s in SPLIT_NAMES)))
    maps = []
    strata = len(counts["train"])
    for entry in index.scenes[:MAX_SCENES]:
        figs = [_figure(split_thumbnail(entry.labels(s, strata), k),
                        f"{entry.id}: {s} ({entry.n(s):,} px)")
                for s in SPLIT_NAMES if entry.n(s)]
        maps.append(f'<div class="row">{"".join(figs)}</div>')
    out.append("<h3>split maps</h3>" + note("labelled pixels of each split in class colours; "
                                            "white: not in the split") + "".join(maps))
    return "".join(out)


def task_section(task: TaskSpec, split: dict | None,
                 band_names: dict[str, list[str]] | None = None) -> str:
    """HTML of the task section (`split`: the run's split record; `band_names`: the bands the
    run read, when recorded)."""
    labels = class_labels(task)
    names = list(task.class_names)
    out = [f"<p>task <b>{esc(task.name)}</b>: {esc(task.task)}, patch {task.patch_size} px"
           + (f", source <code>{esc(task.source)}</code>" if task.source else "") + "</p>"]
    out.append(table(["sensor", "kind", "bands", "reading"], _sensor_rows(task, band_names)))
    targets = getattr(task, "targets", None) or {}
    if targets:  # a task of several targets, or a continuous one
        out.append(table(["target", "kind", "units", "raster"], [
            [Cell(n, left=True), Cell(str(getattr(t, "resolved_kind", None) or t.kind or ""),
                                      left=True),
             Cell(getattr(t, "units", "") or "", left=True),
             Cell(str(t.path or "per scene"), left=True)] for n, t in targets.items()]))
    if labels is not None:
        out.append(table(["class", "raster value"],
                         [[swatch(i, n), v] for i, (n, v) in
                          enumerate(zip(names, labels.class_values))]))
    split_kind = task.split.kind
    out.append(f"<p>split: <b>{esc(split_kind)}</b>, split seed {task.split.seed}</p>")
    try:
        files = list_scenes(task)
        shown = files
        if split_kind == "scenes":
            assignment = scene_splits(task, files)
            per = {s: [f for f in files if assignment.get(f.id) == s] for s in SPLIT_NAMES}
            out.append(table(["split", "scenes", "first scenes"],
                             [[Cell(s, left=True), len(fs),
                               Cell(", ".join(f.id for f in fs[:6]), left=True)]
                              for s, fs in per.items()]))
            # the first scene of each split first, so every split has a thumbnail
            shown = list({f.id: f for f in [fs[0] for fs in per.values() if fs] + files}
                         .values())
        if names:
            out.append(_index_part(task, files, names, split))
        out.append("<h3>scenes</h3>" + _scene_thumbnails(task, shown, labels))
    except (AutorsError, OSError) as err:
        out.append(note(f"the task's rasters cannot be read here, so thumbnails and per-class "
                        f"split sizes are not shown: {err}", warn=True))
    return "".join(out)
