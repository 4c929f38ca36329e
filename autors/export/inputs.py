"""The rasters given to `autors predict`: checked against the model card, aligned on one grid,
and read window by window with the training pipeline's reader (autors.data).

The reference grid is a sensor's own pixel grid (`grid=` names it; default: the task's grid
sensor when the model uses it, else the used sensor with the finest pixels), cropped to the
area every used sensor covers. Other sensors are read onto it exactly as in training (window
read on the same pixel lattice, else bilinear warp). Pixels outside the grid are zero and
invalid, as the training datasets zero-pad at the scene border.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from autors.config import SensorSpec
from autors.data import Grid, NormStats
from autors.data.grid import crop_to_overlap, footprint_in
from autors.data.raster import RasterInfo, inspect, resolve_bands
from autors.data.scene import load_sensor
from autors.errors import DataError, RasterError
from autors.export.card import ModelCard, SensorCard


@dataclass(frozen=True)
class SensorSource:
    """One given raster, resolved against the sensor it feeds."""

    card: SensorCard
    spec: SensorSpec
    info: RasterInfo
    indexes: list[int]  # 1-based bands read, in model channel order
    note: str  # why the raster's band names differ from training's ('' when they match)


@dataclass
class SceneInputs:
    """The model's sensors on one reference grid, readable by window."""

    grid: Grid
    grid_sensor: str
    sources: dict[str, SensorSource]  # used sensors, model input order
    stats: NormStats
    ignored: list[str]  # given sensors the model does not use

    @property
    def notes(self) -> list[str]:
        """Things the user should check (band names differing from training), not errors."""
        return [s.note for s in self.sources.values() if s.note]

    def read(self, row: int, col: int, height: int, width: int
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Normalised inputs {sensor: float32 [C, height, width]} of the grid window starting
        at (row, col), which may reach past the grid; and validity bool [height, width]
        (every used sensor valid). Invalid or outside pixels are 0 in the inputs."""
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, self.grid.height), min(col + width, self.grid.width)
        arrays = {n: np.zeros((s.card.in_channels, height, width), np.float32)
                  for n, s in self.sources.items()}
        valid = np.zeros((height, width), bool)
        if r1 <= r0 or c1 <= c0:
            return arrays, valid
        sub = self.grid.sub(Window(c0, r0, c1 - c0, r1 - r0))
        inside = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
        valid[inside] = True
        for name, src in self.sources.items():
            # The training reader on the window's grid: [C, h, w] physical values, valid [h, w]
            stack, ok = load_sensor(src.spec, sub, src.info, src.indexes)
            arrays[name][(slice(None), *inside)] = self.stats.apply({name: stack},
                                                                    {name: ok})[name]
            valid[inside] &= ok
        return arrays, valid


def open_inputs(card: ModelCard, paths: dict[str, Path], grid: str | None = None
                ) -> SceneInputs:
    """Check `paths` ({sensor: raster}) against the card and build the reference grid.

    Raises DataError for a missing or unknown sensor and rasters that do not overlap,
    RasterError for an unreadable raster or one without the model's bands.
    """
    known = [s.name for s in card.sensors]
    unknown = [n for n in paths if n not in known]
    if unknown:
        raise DataError(
            f"--sensor {unknown[0]}: the model has no sensor '{unknown[0]}'; its sensors are "
            f"{_describe(card.used_sensors)}"
        )
    missing = [s for s in card.used_sensors if s.name not in paths]
    if missing:
        raise DataError(
            "the model needs sensor(s) that were not given: "
            + "; ".join(f"add --sensor {s.name}=PATH ({s.kind}, {s.in_channels} band(s): "
                        f"{_bands(s)})" for s in missing)
        )
    sources = {s.name: _source(s, Path(paths[s.name])) for s in card.used_sensors}
    ref = grid if grid is not None else default_grid_sensor(card, sources)
    if ref not in sources:
        raise DataError(f"--grid {ref}: not a sensor the model uses; choose one of "
                        f"{list(sources)}")
    scene_grid = crop_to_overlap(
        Grid.of(sources[ref].info),
        {f"sensor '{n}'": s.info for n, s in sources.items()},
    )
    stats = NormStats(mean={s.name: s.mean for s in card.used_sensors},
                      std={s.name: s.std for s in card.used_sensors})
    return SceneInputs(grid=scene_grid, grid_sensor=ref, sources=sources, stats=stats,
                       ignored=[n for n in paths if not card.sensor(n).used])


def default_grid_sensor(card: ModelCard, sources: dict[str, SensorSource]) -> str:
    """The task's grid sensor when used, else the used sensor with the smallest pixels
    (compared in the first sensor's CRS; the first one wins a tie)."""
    if card.task.grid in sources:
        return card.task.grid
    crs = next(iter(sources.values())).info.crs

    def pixel_area(src: SensorSource) -> float:
        left, bottom, right, top = footprint_in(src.info, crs)
        return (right - left) * (top - bottom) / (src.info.width * src.info.height)

    return min(sources, key=lambda n: pixel_area(sources[n]))


def _source(card: SensorCard, path: Path) -> SensorSource:
    info = inspect(path)  # RasterError naming the file when unreadable or not georeferenced
    spec = card.sensor_spec(path)
    where = f"--sensor {card.name}={path}"
    if spec.bands is None and info.count != card.in_channels:
        raise RasterError(
            f"{where}: the raster has {info.count} band(s) but the model's '{card.name}' input "
            f"takes {card.in_channels} ({_bands(card)}); give a raster with exactly these bands"
        )
    try:
        indexes, names = resolve_bands(info, spec.bands)
    except RasterError as err:
        raise RasterError(
            f"{where}: the model reads bands {spec.bands} of this sensor, which the raster "
            f"does not have ({err})"
        ) from None
    note = ""
    if names != card.bands:
        # Not an error: names are descriptions, which tools write differently; the count fits.
        note = (f"{where}: band names {_short(names)} differ from the training raster's "
                f"{_short(card.bands)}; check that the bands are the same and in this order")
    return SensorSource(card=card, spec=spec, info=info, indexes=indexes, note=note)


def _bands(card: SensorCard) -> str:
    return _short(card.bands)


def _short(names: list[str]) -> str:
    return ", ".join(names if len(names) <= 6 else names[:5] + ["..."])


def _describe(sensors: list[SensorCard]) -> str:
    return ", ".join(f"{s.name} ({s.kind}, {s.in_channels} bands)" for s in sensors)
