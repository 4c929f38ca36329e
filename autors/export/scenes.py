"""`predict_scenes`: one class map and confidence map per scene of a dataset.

The scenes are given as task files give them: a `{scene}` template per sensor
(`--template s1=data/{scene}_S1.tif`), their ids listed in a CSV (ids, or file names matching
the templates, as datasets ship their splits; `autors.data.scenes.read_scenes_csv`) or, without
a CSV, the scenes whose file the first template globs. The templates give any non-empty
subset of the model's inputs (the others are absent in every scene), and a `{scene}` template
per mask raster (`--mask s2=data/{scene}_clouds.tif`) for the sensors whose card has a mask
rule. Each scene is predicted exactly as `predict_scene` predicts one (`DIR/<scene>.tif`,
`DIR/<scene>_confidence.tif`), its input checks included (`autors.export.input_check`): a
scene whose files are missing or unreadable, or that fails its input checks, is reported with
the reason and passed over, the others go on (`strict`: the first failing scene stops the run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autors.config import SCENE_PLACEHOLDER
from autors.data.scenes import glob_scene_ids, read_scenes_csv
from autors.errors import DataError, InputMismatchError, RasterError
from autors.export.card import ModelCard
from autors.export.inputs import check_given
from autors.export.loader import ExportedModel
from autors.export.predict import PredictOptions, PredictResult, predict_scene


@dataclass(frozen=True)
class SceneJob:
    """One scene to predict: its id, its rasters and its mask rasters by sensor."""

    id: str
    sensors: dict[str, Path]
    masks: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class SceneOutcome:
    """What became of one scene: the prediction, or why it failed."""

    job: SceneJob
    result: PredictResult | None
    error: str | None
    seconds: float
    check_failed: bool = False  # the error is the scene's input checks (InputMismatchError)

    @property
    def ok(self) -> bool:
        return self.result is not None


def check_templates(templates: dict[str, str], card: ModelCard,
                    masks: dict[str, str] | None = None) -> None:
    """Every sensor (`--template`) and mask (`--mask`) template has a {scene} placeholder and
    fits the model (`inputs.check_given`: known sensors, at least one model input, a mask
    exactly for the inputs with a mask rule); checked once, before any scene is read."""
    masks = masks or {}
    for flag, given in (("--template", templates), ("--mask", masks)):
        for name, template in given.items():
            if SCENE_PLACEHOLDER not in template:
                raise DataError(
                    f"{flag} {name}={template}: has no {SCENE_PLACEHOLDER} placeholder; write "
                    f"where the scene id goes, e.g. {name}=data/{SCENE_PLACEHOLDER}_{name}.tif"
                )
    check_given(card, list(templates), list(masks), sensor_flag="--template")


def list_jobs(templates: dict[str, str], csv: Path | None = None,
              masks: dict[str, str] | None = None) -> list[SceneJob]:
    """The scenes to predict, in order: the CSV's rows, or the sorted ids of the files the
    first template globs; `masks` are the mask rasters' templates. Raises DataError when none
    is found or an id repeats."""
    if csv is not None:
        # A split CSV also names label files: prediction has no template for them.
        ids = [i for i, _ in read_scenes_csv(csv, templates, "--scenes", other_files=True)]
        where = f"--scenes {csv}"
    else:
        first, template = next(iter(templates.items()))
        ids = glob_scene_ids(template)
        where = f"--template {first}={template}"
    if not ids:
        raise DataError(
            f"{where}: no scene found; "
            + ("the CSV lists no row" if csv is not None else
               "no file matches the template (the glob of the first --template lists the "
               "scenes): check the path, or list the scene ids with --scenes CSV")
        )
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DataError(f"{where} lists scene(s) {dup[:5]} more than once: one map per scene, "
                        "remove the duplicates")
    bad = [i for i in ids if "/" in i or "\\" in i or i in (".", "..")]
    if bad:
        raise DataError(f"{where}: scene id {bad[0]!r} cannot name a file in --out-dir")
    def fill(given: dict[str, str], scene_id: str) -> dict[str, Path]:
        return {n: Path(t.replace(SCENE_PLACEHOLDER, scene_id)) for n, t in given.items()}

    return [SceneJob(i, fill(templates, i), fill(masks or {}, i)) for i in ids]


def predict_scenes(
    exported: ExportedModel,
    jobs: list[SceneJob],
    out_dir: Path,
    options: PredictOptions | None = None,
    on_scene: Callable[[int, SceneOutcome], None] | None = None,
    strict: bool = False,
) -> list[SceneOutcome]:
    """Predict every scene into `out_dir/<id>.tif` (+ `_confidence.tif`), in order; call
    `on_scene(i, outcome)` after each. A scene's data errors (missing or unreadable raster,
    rasters that do not overlap, wrong bands, failed input checks) fail that scene only, or,
    with `strict`, stop the run (a DataError naming the scene, after `on_scene`); model errors
    fail all."""
    options = options if options is not None else PredictOptions()
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out-dir {out_dir}: is a file; give a folder for the maps")
    out_dir.mkdir(parents=True, exist_ok=True)
    used = {s.name for s in exported.card.used_sensors}
    outcomes = []
    for i, job in enumerate(jobs):
        t0 = time.perf_counter()
        result, error, check_failed = None, None, False
        # Missing files are told apart before any read (a listing mistake, not a GDAL error);
        # a missing file fails its scene: the sensor is not taken as absent behind the
        # user's back (a subset is given by leaving its template out).
        # A time series' path holds {date}: open_inputs expands it (missing dates masked,
        # no date at all a DataError failing the scene).
        missing = [f"{what} '{n}': {p} does not exist"
                   for what, files in (("sensor", job.sensors), ("mask of", job.masks))
                   for n, p in files.items() if n in used and not p.is_file()
                   and n not in exported.card.steps]
        if missing:
            error = "; ".join(missing)
        else:
            try:
                result = predict_scene(exported, job.sensors, out_dir / f"{job.id}.tif",
                                       options, progress=False, masks=job.masks)
            except InputMismatchError as err:
                error, check_failed = str(err), True
            except (DataError, RasterError) as err:
                error = str(err)
        outcome = SceneOutcome(job, result, error, time.perf_counter() - t0, check_failed)
        outcomes.append(outcome)
        if on_scene is not None:
            on_scene(i, outcome)
        if strict and error is not None:
            left = len(jobs) - i - 1
            raise DataError(f"scene '{job.id}' failed and --strict stops the run ({i} scene(s) "
                            f"predicted, {left} not tried): {error}")
    return outcomes
