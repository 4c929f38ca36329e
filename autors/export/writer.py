"""The GeoTIFFs `autors predict` writes, window by window, published only when complete.

    MAP.tif             band 1 "class": the class VALUE of each pixel (the label rasters'
                        values, not indexes), the smallest integer type holding them;
                        nodata = the task's ignore value, where no given sensor is valid (or
                        a sensor the card's require_sensors needs is not)
    MAP_confidence.tif  float32, nodata NaN; band 1 "confidence" (max softmax probability;
                        with MC dropout or an ensemble, of the mean over samples: the model
                        sees the validity masks, so it is lower where sensors are missing),
                        then, only with --mc-dropout or an ensemble model, "entropy"
                        (predictive entropy of the mean probabilities, nats: the total
                        uncertainty) and "mutual_information" (entropy of the mean minus the
                        mean entropy of the samples, nats: the epistemic part, where the
                        samples, dropout passes or ensemble members, disagree), then
                        "valid_sensors" (how many of the given sensors
                        are valid at the pixel, 0..n; at every pixel, nodata pixels included:
                        it says why a pixel has no class), then "prob_<class name>" per class
                        (only with --probabilities), then (only with --conformal ALPHA)
                        "set_size" (classes in the pixel's split-conformal prediction set at
                        error rate ALPHA; 0 is an empty set: no class is plausible enough)
                        and "set_mask" (bit i, value 2^i, set where class index i, the card's
                        classes[i], is in the set; models of at most 24 classes)
                        Probabilities and confidence are calibrated (softmax of logits / T,
                        the card's temperature) unless --uncalibrated; the `calibration` tag
                        says which, `conformal_alpha` / `conformal_quantile` the sets' rule

Both are tiled (256 x 256), DEFLATE-compressed, with the reference grid's CRS and transform
and band descriptions set; class names are stored as tags (`class_<value>=<name>`), and the
sensors behind the map as tags of both files (`sensors`: the model inputs given, those
valid_sensors counts; `absent_sensors`: the inputs not given; `require_sensors`: the card's
rule; `required_sensors`: the given ones it requires valid; a tag with no sensor is left
out), and what the map rests on (`autors.export.input_check.check_tags`: `model_card_sha256`,
`input_<sensor>` / `mask_<sensor>` paths, `read_overrides`, `input_checks` (passed, N
warning(s), skipped: why), `input_warning_<i>`, `input_check_figures` as JSON). They are
written under temporary names next to MAP.tif and renamed at the end; on any error the
temporary files are removed, so no partial map is ever left behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from rasterio.dtypes import get_minimum_dtype
from rasterio.io import DatasetWriter
from rasterio.windows import Window

from autors.data import Grid
from autors.errors import DataError
from autors.export.card import ModelCard

BLOCK = 256
SET_MASK_MAX_CLASSES = 24  # set_mask: a float32 band holds integers exactly up to 2^24


def scores_path(out: Path) -> Path:
    """MAP.tif -> MAP_confidence.tif (same folder)."""
    return out.with_name(f"{out.stem}_confidence{out.suffix}")


def check_out(out: Path) -> Path:
    """`out` as a Path if it can hold the class map (checked before any work starts)."""
    out = Path(out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise DataError(f"--out {out}: give a GeoTIFF path ending in .tif")
    if not out.parent.is_dir():
        raise DataError(f"--out {out}: folder {out.parent} does not exist; create it first")
    return out


def score_bands(card: ModelCard, entropy: bool, probabilities: bool,
                conformal: bool = False) -> list[str]:
    """Band descriptions of MAP_confidence.tif, in band order."""
    bands = ["confidence"] + (["entropy", "mutual_information"] if entropy else [])
    bands += ["valid_sensors"]
    bands += [f"prob_{n}" for n in card.class_names] if probabilities else []
    if conformal:  # the set bands last (`predict.conformal_bands`)
        bands += ["set_size"] + (["set_mask"] if card.num_classes <= SET_MASK_MAX_CLASSES
                                 else [])
    return bands


def map_tags(card: ModelCard, given: list[str], required: list[str]) -> dict[str, str]:
    """Tags of both files naming the sensors behind the map (see the module docstring); an
    empty list is no tag (GDAL drops empty values anyway)."""
    rule = card.require_sensors
    tags = {"sensors": ",".join(given),
            "absent_sensors": ",".join(n for n in card.inputs if n not in given),
            "require_sensors": rule if isinstance(rule, str) else ",".join(rule),
            "required_sensors": ",".join(required)}
    return {k: v for k, v in tags.items() if v}


class MapWriter:
    """Both output files of one prediction (see the module docstring); use `map_writer`."""

    def __init__(self, out: Path, grid: Grid, card: ModelCard, bands: list[str],
                 tags: dict[str, str] | None = None) -> None:
        out = check_out(out)
        self.paths = (out, scores_path(out))
        self.tmp = tuple(p.with_name(f".{p.name}.partial-{os.getpid()}") for p in self.paths)
        self.grid, self.card, self.bands, self.tags = grid, card, bands, dict(tags or {})
        self.class_dtype = get_minimum_dtype(card.class_values + [card.ignore_value])
        self._files: list[DatasetWriter] = []

    def _profile(self, count: int, dtype: str, nodata: float) -> dict:
        g = self.grid
        return {
            "driver": "GTiff", "width": g.width, "height": g.height, "count": count,
            "dtype": dtype, "nodata": nodata, "crs": g.crs, "transform": g.transform,
            "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
            "predictor": 2 if dtype != "float32" else 3, "BIGTIFF": "IF_SAFER",
        }

    def open(self) -> None:
        """Create both files under their temporary names."""
        try:
            classes = rasterio.open(self.tmp[0], "w", **self._profile(
                1, self.class_dtype, self.card.ignore_value))
            self._files.append(classes)
            classes.set_band_description(1, "class")
            classes.update_tags(**{f"class_{c.value}": c.name for c in self.card.classes})
            classes.update_tags(1, nodata_means="no given sensor is valid (nodata, NaN, mask "
                                "or QA), or one that require_sensors needs is not")
            scores = rasterio.open(self.tmp[1], "w", **self._profile(
                len(self.bands), "float32", float("nan")))
            self._files.append(scores)
            for i, name in enumerate(self.bands, start=1):
                scores.set_band_description(i, name)
            for f in self._files:
                f.update_tags(**self.tags)
        except BaseException:
            self.discard()
            raise

    def write(self, row: int, col: int, classes: np.ndarray, scores: np.ndarray) -> None:
        """Write one core window at (row, col): class values [h, w], scores [bands, h, w]."""
        h, w = classes.shape
        window = Window(col, row, w, h)
        self._files[0].write(classes.astype(self.class_dtype, copy=False)[None], window=window)
        self._files[1].write(scores.astype(np.float32, copy=False), window=window)

    def commit(self) -> None:
        """Close both files and give them their final names."""
        try:
            for f in self._files:
                f.close()
            # The class map last: its presence means the whole prediction is there.
            os.replace(self.tmp[1], self.paths[1])
            os.replace(self.tmp[0], self.paths[0])
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        for f in self._files:
            f.close()
        for p in self.tmp:
            p.unlink(missing_ok=True)


@contextmanager
def map_writer(out: Path, grid: Grid, card: ModelCard, bands: list[str],
               tags: dict[str, str] | None = None) -> Iterator[MapWriter]:
    """`with map_writer(...) as w: w.write(...)`: published on success, removed on error.
    `tags` go to both files."""
    writer = MapWriter(out, grid, card, bands, tags)
    writer.open()
    try:
        yield writer
    except BaseException:
        writer.discard()
        raise
    writer.commit()
