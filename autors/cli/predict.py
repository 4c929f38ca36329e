"""`autors predict MODEL_DIR --sensor NAME=PATH ... --out MAP.tif`: a class map and a
confidence map from GeoTIFFs (layouts in `autors.export.writer`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from autors.errors import DataError
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, predict_scene


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="apply an exported model to GeoTIFFs and write a class map",
        description="Align the given rasters on one grid, stream the scene by windows through "
        "the exported model and write MAP.tif (class values, nodata where inputs are invalid) "
        "and MAP_confidence.tif (float32: confidence, [entropy], [per-class probabilities]).",
    )
    p.add_argument("model", type=Path, help="an exported model folder (`autors export`)")
    p.add_argument("--sensor", action="append", type=_sensor_arg, required=True,
                   metavar="NAME=PATH", help="a sensor raster; repeat for every sensor the "
                   "model uses (listed as 'inputs' in MODEL/model.json)")
    p.add_argument("--out", type=Path, required=True, help="the class map to write (.tif)")
    p.add_argument("--probabilities", action="store_true",
                   help="add one probability band per class to MAP_confidence.tif")
    p.add_argument("--mc-dropout", type=_count, default=0, metavar="N",
                   help="N >= 2 stochastic passes with dropout on; adds an 'entropy' band")
    p.add_argument("--window", type=_count, default=512,
                   help="core window side in pixels; memory scales with it, not with the "
                   "scene (default 512; rounded down to a multiple of 256 from 256 on)")
    p.add_argument("--batch-size", type=_count, default=None,
                   help="patches (patch classification) or tiles (segmentation) per forward "
                   "pass (default: 512 patches or 16 tiles)")
    p.add_argument("--grid", default=None, metavar="SENSOR",
                   help="sensor whose pixel grid the map uses (default: the task's grid "
                   "sensor if the model uses it, else the finest sensor)")
    p.add_argument("--per-patch", action="store_true",
                   help="patch classifiers: one forward pass per pixel's patch, even where the "
                   "model allows the (identical, much faster) fully convolutional pass")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _sensor_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (e.g. hsi=hsi.tif), got {text!r}")
    return name, Path(path)


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False, stderr=True)
    sensors: dict[str, Path] = {}
    for name, path in args.sensor:
        if name in sensors:
            raise DataError(f"--sensor {name} is given twice ({sensors[name]} and {path})")
        sensors[name] = path
    if args.mc_dropout == 1:
        raise DataError("--mc-dropout 1 is a single stochastic pass: use N >= 2, or leave it "
                        "out for a deterministic map")
    exported = load_exported(args.model)
    options = PredictOptions(window=args.window, batch_size=args.batch_size,
                             probabilities=args.probabilities, mc_dropout=args.mc_dropout,
                             grid=args.grid, fully_convolutional=not args.per_patch)
    result = predict_scene(exported, sensors, args.out, options, progress=not args.quiet)
    for note in result.notes:
        console.print(f"note: {note}")
    if result.ignored_sensors:
        console.print(f"note: the model does not use {', '.join(result.ignored_sensors)}; "
                      "those rasters were not read")
    g = result.grid
    console.print(f"{result.class_map}: {g.height} x {g.width} px on the grid of "
                  f"'{result.grid_sensor}', {result.valid_pixels:,} valid pixels, "
                  f"{result.seconds:.1f} s ({result.method})")
    console.print(f"{result.scores}: bands {', '.join(result.bands)}")
    return 0
