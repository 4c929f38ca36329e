"""The scenes of a task: which files each scene has, its group, and (split kind `scenes`) which
split each scene belongs to. File names only: no pixel is read here.

A one-scene task (sensors' and labels' `path`) is a dataset of one scene named after the task.
A dataset lists its scenes inline (`scenes.items`), or by a `{scene}` template whose scene ids
come from CSV files (ids, or file names as datasets ship their splits) or from a glob of the
template's label files.

A time-series sensor (`dates`) has a file per date (`SceneFiles.dates`; band groups: the one
file for every date); a date whose file a scene of a dataset lacks is a missing acquisition
(None: invalid everywhere), a scene with none of them lacks the sensor. In a one-scene task
every listed date's file must exist. A sensor with `dates: per_scene` takes each scene's own
dates (`SceneFiles.days`): listed in `scenes.items[].dates` (every file must then exist), or
the dates of the files its {date} path matches. A mask raster per date: its path holds {date}.
"""

from __future__ import annotations

import csv
import datetime
import glob
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autors.config import DATE_PLACEHOLDER, SCENE_PLACEHOLDER, SensorSpec, TaskSpec
from autors.errors import DataError

SPLIT_NAMES = ("train", "val", "test")
_CSV_HEADERS = {"id", "scene", "scene_id"}
_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")


@dataclass(frozen=True)
class SceneFiles:
    """One scene's files: sensor -> GeoTIFF (a sensor of the task missing here is absent from
    the scene: invalid at every pixel), label rasters by role ('full' = the label raster;
    'train' / 'val' / 'test' = a given split's rasters), and sensor -> mask raster."""

    id: str
    group: str | None
    sensors: dict[str, Path]
    labels: dict[str, Path]
    masks: dict[str, Path] = field(default_factory=dict)
    # a task with `targets`: target -> raster (a target missing here has no value in the
    # scene); `labels['full']` is then the first of them, the scene's reference raster
    targets: dict[str, Path] = field(default_factory=dict)
    # a time-series sensor -> its file per date (None: not acquired in this scene); its
    # `sensors` entry is then the first existing one
    dates: dict[str, list[Path | None]] = field(default_factory=dict)
    # a time-series sensor -> the scene's dates (the task's, or its own: `per_scene`)
    days: dict[str, list[datetime.date]] = field(default_factory=dict)
    # a time-series sensor with a mask rule -> its mask raster per date
    date_masks: dict[str, list[Path | None]] = field(default_factory=dict)


def list_scenes(task: TaskSpec) -> list[SceneFiles]:
    """Every scene of `task`, in a stable order (as listed, or sorted by id for a glob).

    Raises DataError naming the template, CSV or scene for: no scene found, duplicate ids, a
    listed file that does not exist, an id the group pattern does not match."""
    spec = task.scenes
    if spec is None and task.targets is not None:
        targets = {name: t.path for name, t in task.targets.items()}
        masks = {name: s.mask.path for name, s in task.sensors.items() if s.mask is not None}
        scenes = [SceneFiles(task.name, None, {name: s.path for name, s in task.sensors.items()},
                             {"full": next(iter(targets.values()))}, masks, targets)]
        _dated(task, scenes, one_scene=True)
        _check_files(scenes, task)
        return scenes
    if spec is None:
        labels = {}
        if task.labels.path is not None:
            labels["full"] = task.labels.path
        if task.split.kind == "given":
            labels.update(_given_labels(task, lambda p: p))
        masks = {name: s.mask.path for name, s in task.sensors.items() if s.mask is not None}
        scenes = [SceneFiles(task.name, None,
                             {name: s.path for name, s in task.sensors.items()}, labels, masks)]
        _dated(task, scenes, one_scene=True)
        return scenes
    if spec.items is not None:
        scenes = []
        for item in spec.items:
            labels = {"full": item.labels} if item.labels is not None else {}
            if item.targets:
                labels = {"full": next(iter(item.targets.values()))}
            labels.update(_given_labels(task, lambda p, i=item.id: _fill(p, i)))
            group = item.group if item.group is not None else _group(task, item.id)
            scenes.append(SceneFiles(item.id, group, dict(item.sensors), labels,
                                     dict(item.masks), dict(item.targets),
                                     days={k: list(v) for k, v in item.dates.items()}))
    else:
        ids = _template_ids(task)
        scenes = [_from_template(task, scene_id) for scene_id in ids]
    _dated(task, scenes, one_scene=False)
    _check_files(scenes, task)
    return scenes


def scene_splits(task: TaskSpec, scenes: list[SceneFiles]) -> dict[str, str]:
    """Split kind `scenes`: scene id -> 'train' / 'val' / 'test' (scenes in no list are left
    out). Given lists are checked (every id known, none in two splits); otherwise groups (or
    scenes) are drawn with `split.seed`. Scenes of one group always share a split."""
    split = task.split
    if split.kind != "scenes":
        raise ValueError("scene_splits is for split kind 'scenes'")
    known = {s.id: s for s in scenes}
    out: dict[str, str] = {}
    if split.train is not None:
        for name in SPLIT_NAMES:
            entries = getattr(split, name)
            for scene_id, where in _entry_ids(task, entries or [], f"split.{name}"):
                if scene_id not in known:
                    raise DataError(
                        f"scene '{scene_id}' in {where} is not among the dataset's "
                        f"{len(known)} scenes ({_examples(known)}); check the id or the "
                        "scenes' template"
                    )
                if out.get(scene_id, name) != name:
                    raise DataError(
                        f"scene '{scene_id}' is in both split.{out[scene_id]} and {where}: "
                        "a scene belongs to one split"
                    )
                out[scene_id] = name
        if split.val is None:
            train = [s for s in scenes if out.get(s.id) == "train"]
            for scene_id in _draw(train, split.val_fraction, split.seed, 2, "validation"):
                out[scene_id] = "val"
        return out
    test = set(_draw(scenes, split.test_fraction, split.seed, 1, "test"))
    rest = [s for s in scenes if s.id not in test]
    val = set(_draw(rest, split.val_fraction * len(scenes) / len(rest), split.seed, 2,
                    "validation"))
    return {s.id: "test" if s.id in test else "val" if s.id in val else "train" for s in scenes}


def scenes_digest(scenes: list[SceneFiles]) -> str:
    """Short hash of the scene list (ids, groups, file names): recorded as provenance."""
    h = hashlib.sha256()
    for s in scenes:
        h.update(repr((s.id, s.group, sorted((k, str(v)) for k, v in s.sensors.items()),
                       sorted((k, str(v)) for k, v in s.labels.items()))).encode())
        if s.targets:  # only tasks with targets: older digests stay as they were
            h.update(repr(sorted((k, str(v)) for k, v in s.targets.items())).encode())
    return h.hexdigest()[:16]


# ---- helpers ----------------------------------------------------------------------------------
def _fill(template: str | Path, scene_id: str) -> Path:
    return Path(str(template).replace(SCENE_PLACEHOLDER, scene_id))


def _given_labels(task: TaskSpec, fill) -> dict[str, Path]:
    if task.split.kind != "given":
        return {}
    out = {"train": fill(task.split.train), "test": fill(task.split.test)}
    if task.split.val is not None:
        out["val"] = fill(task.split.val)
    return out


def _group(task: TaskSpec, scene_id: str) -> str | None:
    pattern = task.scenes.group if task.scenes is not None else None
    if pattern is None:
        return None
    m = re.search(pattern, scene_id)
    if m is None or m.group(1) is None:
        raise DataError(
            f"scene '{scene_id}' does not match scenes.group {pattern!r}: fix the pattern so "
            "every scene id yields its group"
        )
    return m.group(1)


def _from_template(task: TaskSpec, scene_id: str) -> SceneFiles:
    t = task.scenes.template
    labels = {"full": _fill(t.labels, scene_id)} if t.labels is not None else {}
    labels.update(_given_labels(task, lambda p: _fill(p, scene_id)))
    sensors = {name: _fill(p, scene_id) for name, p in t.sensors.items()}
    masks = {name: _fill(p, scene_id) for name, p in t.masks.items()}
    # A scene may lack a sensor's file (e.g. a chip delivered with Sentinel-1 only): the
    # sensor is then absent from that scene, and its mask with it. Targets alike.
    present = {name: p for name, p in sensors.items()
               if p.is_file() or task.sensors[name].dates is not None}  # dates: `_dated`
    targets = {name: _fill(p, scene_id) for name, p in t.targets.items()}
    targets = {name: p for name, p in targets.items() if p.is_file()}
    if t.targets:
        labels = {"full": next(iter(targets.values()), _fill(next(iter(t.targets.values())),
                                                              scene_id))}
    return SceneFiles(scene_id, _group(task, scene_id), present, labels,
                      {name: p for name, p in masks.items() if name in present}, targets)


def date_files(spec: SensorSpec, path: Path | None, days: list[datetime.date]) -> list[Path]:
    """A time-series sensor's file per date (`days`): each date's own path, the {date}
    template (`path`) filled with each date (YYYY-MM-DD), or the one file of band groups."""
    listed = spec.listed_dates
    if listed is not None and listed[0].path is not None:
        return [Path(d.path) for d in listed]
    if DATE_PLACEHOLDER in str(path):
        return [Path(str(path).replace(DATE_PLACEHOLDER, d.isoformat())) for d in days]
    return [Path(path)] * len(days)


def found_dates(template: Path | str) -> list[datetime.date]:
    """The dates (increasing) of the existing files a {date} path matches (YYYY-MM-DD)."""
    text = str(template)
    head, tail = text.split(DATE_PLACEHOLDER, 1)
    pattern = re.compile(re.escape(head) + r"(\d{4}-\d{2}-\d{2})"
                         + re.escape(tail).replace(re.escape(DATE_PLACEHOLDER), r"\1") + "$")
    out = set()
    for path in glob.glob(glob.escape(head) + "*" + glob.escape(tail).replace(
            glob.escape(DATE_PLACEHOLDER), "*")):
        m = pattern.match(path)
        if m is not None:
            try:
                out.add(datetime.date.fromisoformat(m.group(1)))
            except ValueError:
                continue  # not a calendar date (e.g. 2021-13-40): not one of the series
    return sorted(out)


def _scene_days(spec: SensorSpec, scene: SceneFiles, name: str) -> list[datetime.date]:
    """The dates of sensor `name` in `scene`: the task's, the scene's listed ones, or those
    its {date} path matches (`per_scene`)."""
    if spec.listed_dates is not None:
        return [d.date for d in spec.listed_dates]
    if name in scene.days:
        return scene.days[name]
    return found_dates(scene.sensors[name])


def _mask_files(spec: SensorSpec, mask: Path | None, days: list[datetime.date]
                ) -> list[Path | None] | None:
    """A time series' mask raster per date (its path holds {date}; band groups: the one
    file, a band per date); None without a mask rule."""
    if spec.mask is None or mask is None:
        return None
    if DATE_PLACEHOLDER in str(mask):
        return [Path(str(mask).replace(DATE_PLACEHOLDER, d.isoformat())) for d in days]
    return [Path(mask)] * len(days)


def _dated(task: TaskSpec, scenes: list[SceneFiles], one_scene: bool) -> None:
    """Each scene's dates and file per date of every time-series sensor (see the module
    docstring)."""
    for name, spec in task.sensors.items():
        if spec.dates is None:
            continue
        for scene in scenes:
            if name not in scene.sensors:
                continue
            days = _scene_days(spec, scene, name)
            if one_scene and not days:
                raise DataError(f"sensor '{name}': no file matches {scene.sensors[name]} "
                                "(dates per_scene: the dates are the files' YYYY-MM-DD)")
            files = date_files(spec, scene.sensors[name], days)
            there = [p if p.is_file() else None for p in files]
            if (one_scene or name in scene.days) and None in there:
                missing = [(d.isoformat(), str(p)) for d, p, ok
                           in zip(days, files, there) if ok is None]
                where = f"scenes.items[{scene.id}].dates.{name}" if name in scene.days \
                    else f"sensors.{name}.dates / path"
                raise DataError(
                    f"scene '{scene.id}', sensor '{name}': {len(missing)} date(s) have no "
                    "file: " + "; ".join(f"{d}: {p}" for d, p in missing[:5])
                    + f"; check {where}, or remove the date")
            scene.dates[name] = there
            scene.days[name] = days
            masks = _mask_files(spec, scene.masks.get(name), days)
            if masks is not None:
                scene.date_masks[name] = masks
            first = next((p for p in there if p is not None), None)
            if first is None:
                del scene.sensors[name]  # no date acquired: the sensor is absent here
                scene.masks.pop(name, None)
                scene.dates.pop(name)
                scene.days.pop(name)
                scene.date_masks.pop(name, None)
            else:
                scene.sensors[name] = first


def _templates(task: TaskSpec) -> dict[str, str]:
    """Every {scene} template of a template dataset, by what it names."""
    t = task.scenes.template
    out = {f"sensor '{k}'": v for k, v in t.sensors.items()}
    if t.labels is not None:
        out["labels"] = t.labels
    if t.targets:  # the first target lists the scenes, as labels would
        out["labels"] = next(iter(t.targets.values()))
    if task.split.kind == "given":
        out.update({f"split.{k}": str(getattr(task.split, k)) for k in SPLIT_NAMES
                    if getattr(task.split, k) is not None})
    return out


def _name_regex(template: str) -> re.Pattern:
    """The template's file name as a regex capturing the scene id."""
    name = Path(template).name
    head, _, tail = name.partition(SCENE_PLACEHOLDER)
    if SCENE_PLACEHOLDER not in name:
        return re.compile(r"(?!)")  # the placeholder is in a folder: names carry no id
    return re.compile(f"^{re.escape(head)}(?P<scene>.+){re.escape(tail)}$")


def _template_ids(task: TaskSpec) -> list[str]:
    spec = task.scenes
    if spec.csv is not None:
        ids = [scene_id for scene_id, _ in _entry_ids(task, [str(p) for p in spec.csv],
                                                      "scenes.csv")]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise DataError(f"scenes.csv lists scene(s) {dup[:5]} more than once "
                            f"({', '.join(str(p) for p in spec.csv)}): remove the duplicates")
        if not ids:
            raise DataError(f"scenes.csv ({', '.join(str(p) for p in spec.csv)}) lists no scene")
        return ids
    templates = _templates(task)
    key = "labels" if "labels" in templates else ("split.train" if "split.train" in templates
                                                  else next(iter(templates)))
    template = templates[key]
    ids = glob_scene_ids(template)
    if not ids:
        raise DataError(
            f"the scenes' {key} template {template} matches no file (glob "
            f"{_glob_pattern(template)}): check the data root / path, or list the scenes with "
            "scenes.csv"
        )
    return ids


def glob_scene_ids(template: str) -> list[str]:
    """Sorted scene ids of the files matching a {scene} template (none: an empty list)."""
    regex = re.compile("^" + re.escape(template).replace(re.escape(SCENE_PLACEHOLDER),
                                                         "(?P<scene>[^/]+)") + "$")
    return sorted({m.group("scene") for p in glob.glob(_glob_pattern(template))
                   if (m := regex.match(p)) is not None})


def _glob_pattern(template: str) -> str:
    return glob.escape(template).replace(glob.escape(SCENE_PLACEHOLDER), "*")


def _entry_ids(task: TaskSpec, entries: list[str], field: str) -> list[tuple[str, str]]:
    """(scene id, where it was named) for split-list / scenes.csv entries: ids as they are,
    CSV files read row by row (an id, or file names matching a template)."""
    out = []
    for entry in entries:
        if entry.lower().endswith(".csv"):
            out += [(scene_id, f"{field} ({entry}, row {row})")
                    for scene_id, row in _read_csv(task, Path(entry), field)]
        else:
            out.append((entry, field))
    return out


def _read_csv(task: TaskSpec, path: Path, field: str) -> list[tuple[str, int]]:
    templates = _templates(task) \
        if task.scenes is not None and task.scenes.template is not None else {}
    return read_scenes_csv(path, templates, field)


def read_scenes_csv(path: Path, templates: dict[str, str], field: str,
                    other_files: bool = False) -> list[tuple[str, int]]:
    """(scene id, row number) of each row of a scenes CSV: a scene id, or file names matched
    against `templates` ({what: path with {scene}}; a named file must exist where its
    template puts it). TaskSpec-free: `autors predict --scenes` reads the same CSVs.
    `field` names the setting in error messages. `other_files`: a file name matching no
    template is passed over (prediction reads no label file, which split CSVs also name)."""
    if not path.is_file():
        raise DataError(f"{field}: CSV file {path} does not exist")
    regexes = {key: _name_regex(t) for key, t in templates.items()}
    out = []
    with path.open(newline="") as fh:
        for row_no, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row if c.strip()]
            if not cells or (row_no == 1 and cells[0].lower() in _CSV_HEADERS):
                continue
            ids = set()
            for cell in cells:
                if not _is_file_name(cell):
                    ids.add(cell)
                    continue
                name = Path(cell).name
                found = [m.group("scene") for r in regexes.values() if (m := r.match(name))]
                if not found and other_files and regexes:
                    continue
                if not found:
                    raise DataError(
                        f"{path} row {row_no}: file {cell} matches none of the scenes' "
                        f"templates ({', '.join(Path(t).name for t in templates.values())})"
                        if regexes else
                        f"{path} row {row_no}: {cell} is a file name; list scene ids, or give "
                        "the scenes by template so file names can be matched"
                    )
                ids.add(found[0])
                if regexes:
                    _check_named_file(templates, found[0], name, path, row_no)
            if not ids:  # only with other_files
                raise DataError(f"{path} row {row_no}: no file matches the templates "
                                f"({', '.join(Path(t).name for t in templates.values())})")
            if len(ids) != 1:
                raise DataError(f"{path} row {row_no}: the cells name different scenes "
                                f"{sorted(ids)}; one row is one scene")
            out.append((ids.pop(), row_no))
    return out


def _check_named_file(templates: dict[str, str], scene_id: str, name: str, csv_path: Path,
                      row_no: int) -> None:
    """A file a CSV names must exist where the template puts it."""
    for template in templates.values():
        if Path(template).name.replace(SCENE_PLACEHOLDER, scene_id) == name:
            path = _fill(template, scene_id)
            if not path.is_file():
                raise DataError(f"{csv_path} row {row_no} names {name}, which does not exist "
                                f"at {path}: check the data root or remove the row")
            return


def _is_file_name(cell: str) -> bool:
    return "/" in cell or cell.lower().endswith(_RASTER_SUFFIXES)


def _check_files(scenes: list[SceneFiles], task: TaskSpec | None = None) -> None:
    missing = [(s.id, what, p) for s in scenes
               for what, p in [*((f"sensor '{k}'", v) for k, v in s.sensors.items()),
                               *((f"labels ({k})", v) for k, v in s.labels.items()),
                               *((f"mask of '{k}'", v) for k, v in s.masks.items()
                                 if k not in s.date_masks)]  # per date: `date_rasters`
               if not Path(p).is_file()]
    if missing:
        listed = "; ".join(f"scene '{i}' {what}: {p}" for i, what, p in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise DataError(f"{len(missing)} file(s) of the dataset do not exist: {listed}{more}; "
                        "check the data root and the scenes' paths")
    if task is not None:
        for name in task.sensors:
            if not any(name in s.sensors for s in scenes):
                raise DataError(f"sensor '{name}' has no file in any of the {len(scenes)} "
                                "scene(s): check its path template")
    ids = [s.id for s in scenes]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DataError(f"duplicate scene id(s) {dup[:5]}: every scene needs its own id")


def _draw(scenes: list[SceneFiles], fraction: float, seed: int, stream: int,
          what: str) -> list[str]:
    """Seeded whole groups (a scene without group is its own) holding about `fraction` of
    `scenes`, never all of them."""
    groups: dict[str, list[str]] = {}
    for s in scenes:
        groups.setdefault(s.group if s.group is not None else f"\0{s.id}", []).append(s.id)
    if len(groups) < 2:
        raise DataError(f"cannot draw {what} scenes from {len(scenes)} scene(s) in "
                        f"{len(groups)} group(s): add scenes or list the split's scenes")
    order = sorted(groups)
    rng = np.random.default_rng([seed, stream])
    target, taken = fraction * len(scenes), []
    for idx in rng.permutation(len(order)):
        members = groups[order[idx]]
        if len(taken) >= target or len(taken) + len(members) == len(scenes):
            continue
        if taken and len(taken) + len(members) / 2 > target:
            continue
        taken += members
    return taken


def _examples(known: dict) -> str:
    ids = list(known)
    return ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
