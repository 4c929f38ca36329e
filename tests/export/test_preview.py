"""`autors predict --preview`: MAP_preview.png next to the map, the class map in the report's
class colours (legend of class names) and the confidence map with a colour bar, read
decimated from the written GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from matplotlib import colormaps
from matplotlib.image import imread

from autors.cli import main
from autors.export.loader import load_exported
from autors.report import quicklook
from autors.report.palette import class_rgb

from .conftest import Scene


def _colours(png: Path) -> set[tuple[int, int, int]]:
    pixels = (imread(png)[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    return set(map(tuple, np.unique(pixels, axis=0).tolist()))


def test_preview_shows_the_map_in_class_colours_and_the_confidence(
        exported: Path, scene: Scene, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "map.tif"
    assert main(["predict", str(exported), *scene.sensor_args(), "--out", str(out),
                 "--preview", "--quiet"]) == 0
    preview = tmp_path / "map_preview.png"
    assert preview.read_bytes().startswith(b"\x89PNG")
    card = load_exported(exported).card
    with rasterio.open(out) as ds:
        classes = ds.read(1)
    shown = _colours(preview)
    rgb = class_rgb(len(card.classes))
    present = [i for i, c in enumerate(card.classes) if (classes == c.value).sum() >= 20]
    assert present
    for i in range(len(card.classes)):  # every class in the legend, in the report's colour
        assert tuple(rgb[i].tolist()) in shown, card.classes[i].name
    viridis = colormaps["viridis"]
    ends = {tuple((np.array(viridis(x)[:3]) * 255).round().astype(int).tolist()) for x in (0, 1)}
    assert ends <= shown  # the colour bar's ends

    # a scene larger than the preview's side is read decimated (1:4 here), not whole
    monkeypatch.setattr(quicklook, "MAX_SIDE", 16)
    small = quicklook.write_preview(out, tmp_path / "map_confidence.tif",
                                    [c.value for c in card.classes],
                                    [c.name for c in card.classes], tmp_path / "small.png")
    data, _, full = quicklook._decimated(out, 1)
    assert data.shape == (16, 16) and full == classes.shape == (64, 64)
    assert small.is_file()
