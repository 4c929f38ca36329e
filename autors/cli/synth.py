"""`autors synth OUT_DIR`: write a synthetic multi-sensor scene and its task file; with
`--scenes N`, a dataset of N scenes in the Sen1Floods11 v1.1 layout (autors.synth.dataset)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from autors.synth import SENSORS, SynthConfig, SynthConfigError, generate_scene
from autors.synth.dataset import COMPRESS, ChipResult, DatasetConfig, generate_dataset
from autors.synth.scene import CLOUD_MASK_FILE


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic multi-sensor scene (GeoTIFFs + task.yaml)",
        description=(
            "Write a co-registered synthetic scene (optical, SAR, LiDAR, hyperspectral GeoTIFFs, "
            "labels, sparse train / disjoint test rasters) and a ready-to-run task.yaml. "
            "No single sensor separates every class. With --scenes N: a dataset of N differing "
            "scenes laid out like the Sen1Floods11 v1.1 release (S1Hand/S2Hand/LabelHand "
            "GeoTIFFs, split CSVs, Bolivia held out) and its task.yaml."
        ),
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write (created)")
    p.add_argument("--preset", choices=("small", "benchmark"),
                   help="small: 128x128 (default); benchmark: 512x512 with a real search budget")
    p.add_argument("--size", type=int, help="label grid side in pixels (2 m each)")
    p.add_argument("--classes", type=int, help="number of classes K (4..10)")
    p.add_argument("--sensors", help=f"comma-separated subset of {','.join(SENSORS)} "
                   "(default: all but slc; slc is a complex SAR sensor, single-look complex "
                   "HH/VV as complex64, whose classes partly differ only in coherence or "
                   "polarimetric phase: `--sensors slc` alone makes a complex SAR scene)")
    p.add_argument("--seed", type=int, help="random seed (same seed, same bytes)")
    p.add_argument("--looks", type=float, help="SAR speckle looks (default 4)")
    p.add_argument("--train-per-class", type=int, dest="n_train_per_class",
                   help="labelled training pixels per class")
    p.add_argument("--preview", action="store_true", help="also write preview.png")
    p.add_argument("--hsi-bands", type=int, dest="hsi_bands",
                   help="hyperspectral bands, 400-1000 nm (default 60)")
    p.add_argument("--cloud-nodata", action="store_true", dest="cloud_nodata",
                   help="mark the optical clouds as invalid for optical only: write a cloud mask "
                   "raster (optical_cloudmask.tif; with --scenes CloudMaskHand/<chip>_"
                   "CloudMaskHand.tif: 0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow) "
                   "and declare thick cloud and shadow invalid in the task; the image keeps its "
                   "clouds and labels stay labelled under them")
    p.add_argument("--cloud-qa", action="store_true", dest="cloud_qa",
                   help="like --cloud-nodata, but as a last optical band SCL (Sentinel-2 scene "
                   "classification codes; 3 shadow, 8/9 cloud invalid, 10 thin cirrus kept), "
                   "declared as the optical sensor's QA band and left out of its model inputs")
    p.add_argument("--scenes", type=int, metavar="N",
                   help="write a dataset of N >= 2 scenes in the Sen1Floods11 v1.1 layout "
                   "(default sensors optical,sar; default size 128)")
    p.add_argument("--compress", choices=COMPRESS,
                   help="with --scenes: GeoTIFF compression (default deflate)")
    p.add_argument("--time-series", action="store_true", dest="time_series",
                   help="write an optical + SAR time series instead (s2_<date>.tif, "
                   "s1_<date>.tif, a task with {date} templates) in which crop_short / "
                   "crop_long and water_permanent / water_seasonal / bare_soil differ only in "
                   "timing; "
                   "clouds per date (autors.synth.timeseries); takes --size, --seed, --dates, and "
                   "--scenes N (a dataset, each scene its own dates: dates per_scene)")
    p.add_argument("--dates", type=int, help="with --time-series: dates over the year "
                   "(default 10)")
    p.add_argument("--jobs", type=int,
                   help="with --scenes: scenes simulated at once, in processes (default 1)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The preset, overridden by every flag that was given."""
    base = SynthConfig.benchmark() if args.preset == "benchmark" else SynthConfig.small()
    changes = _given(args, ("size", "classes", "seed", "looks", "n_train_per_class",
                            "hsi_bands"))
    return replace(base, **changes)  # type: ignore[arg-type]  # validated in __post_init__


def _given(args: argparse.Namespace, keys: tuple[str, ...]) -> dict[str, object]:
    """The flags among `keys` that were given, plus --sensors and the cloud flags."""
    changes: dict[str, object] = {k: getattr(args, k) for k in keys
                                  if getattr(args, k) is not None}
    if args.sensors is not None:
        changes["sensors"] = _sensors(args.sensors)
    changes.update({key: True for key in ("cloud_nodata", "cloud_qa") if getattr(args, key)})
    return changes


def _sensors(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise SynthConfigError(f"--sensors is empty: pick some of {','.join(SENSORS)}")
    return names


def dataset_config_from_args(args: argparse.Namespace) -> DatasetConfig:
    """--scenes N and the flags that apply to a dataset (the others are refused by name)."""
    scene_only = {"--preset": args.preset, "--looks": args.looks,
                  "--train-per-class": args.n_train_per_class,
                  "--preview": args.preview or None}
    given = [flag for flag, value in scene_only.items() if value is not None]
    if given:
        raise SynthConfigError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to one scene only: "
            "with --scenes, each scene draws its own SAR looks, the task has no train/test "
            "rasters and there is no preview"
        )
    changes = _given(args, ("size", "classes", "seed", "hsi_bands", "compress"))
    return DatasetConfig(scenes=args.scenes, **changes)  # type: ignore[arg-type]  # validated in __post_init__


def _print_clouds(cloud_nodata: bool, cloud_qa: bool, mask: str, optical: str) -> None:
    if cloud_nodata:
        print(f"  clouds:  mask {mask} (0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow; "
              "1 and 3 invalid for optical)")
    if cloud_qa:
        print(f"  clouds:  band SCL of {optical} (Sentinel-2 scene classification; 3, 8, 9 "
              "invalid for optical)")


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _progress(done: int, total: int, chip: ChipResult, elapsed: float) -> None:
    p = chip.plan
    eta = elapsed / done * (total - done)
    print(f"scene {done}/{total} {p.name} ({p.split}, EPSG:{p.epsg}, clouds {p.cloud_cover:.2f}, "
          f"{chip.nbytes / 1e6:.1f} MB) in {chip.seconds:.1f} s; elapsed {_clock(elapsed)}, "
          f"ETA {_clock(eta)}", flush=True)


def run_dataset(args: argparse.Namespace) -> int:
    cfg = dataset_config_from_args(args)
    jobs = 1 if args.jobs is None else args.jobs
    if jobs < 1:
        raise SynthConfigError(f"--jobs {jobs} must be >= 1")
    print(f"writing {cfg.scenes} scenes of {cfg.size}x{cfg.size} ({', '.join(cfg.sensors)}) "
          f"to {args.out_dir} with {jobs} job(s)", flush=True)
    info = generate_dataset(args.out_dir, cfg, jobs=jobs, progress=_progress)
    s = {k: len(v) for k, v in info.splits.items()}
    print(f"wrote {len(info.chips)} scenes to {info.out_dir} in {_clock(info.seconds)} "
          f"({info.nbytes / 1e9:.2f} GB of GeoTIFFs)")
    print(f"  sensors: {', '.join(cfg.sensors)}")
    print(f"  classes: {', '.join(f'{i}={n}' for i, n in enumerate(info.class_names))}")
    print(f"  spectra: {info.spectra}")
    print(f"  split:   {s['train']} train, {s['val']} val, {s['test']} test, "
          f"{s['bolivia']} Bolivia (held out)")
    _print_clouds(cfg.cloud_nodata, cfg.cloud_qa, "CloudMaskHand/<chip>_CloudMaskHand.tif",
                  "S2Hand")
    print(f"  task:    {info.task_path}")
    return 0


def run_time_series(args: argparse.Namespace) -> int:
    from autors.synth.timeseries import TimeSeriesConfig, generate_time_series

    others = [f for f, v in (("--preset", args.preset),
                             ("--classes", args.classes), ("--sensors", args.sensors))
              if v is not None]
    if others:
        raise SynthConfigError(f"{', '.join(others)} do not apply to --time-series (its "
                               "sensors and classes are fixed)")
    changes = {k: getattr(args, k) for k in ("size", "seed", "dates", "scenes")
               if getattr(args, k) is not None}
    info = generate_time_series(args.out_dir, TimeSeriesConfig(**changes))
    print(f"wrote a {len(info.dates)}-date time series to {info.out_dir} in "
          f"{info.seconds:.1f} s")
    print(f"  dates:   {', '.join(info.dates)}")
    print(f"  clouds:  {', '.join(f'{c:.2f}' for c in info.cloud_cover)} (optical, per date)")
    print(f"  classes: {', '.join(info.class_names)}")
    print(f"  time-only classes: {', '.join(info.time_only_classes)}")
    print(f"  task:    {info.task_path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.time_series:
        return run_time_series(args)
    if args.dates is not None:
        raise SynthConfigError("--dates applies to --time-series")
    if args.scenes is not None:
        return run_dataset(args)
    if args.compress is not None or args.jobs is not None:
        raise SynthConfigError("--compress and --jobs apply to a dataset: add --scenes N")
    cfg = config_from_args(args)
    info = generate_scene(args.out_dir, cfg)
    print(f"wrote {cfg.size}x{cfg.size} scene to {info.out_dir} in {info.seconds:.1f} s")
    print(f"  sensors: {', '.join(info.sensors)}")
    print(f"  classes: {', '.join(f'{i + 1}={n}' for i, n in enumerate(info.class_names))}")
    print(f"  spectra: {info.spectra}")
    print(f"  labels:  {info.n_train} train pixels, {info.n_test} test pixels ({info.split})")
    short = [n for n, c in info.train_counts.items() if c < cfg.n_train_per_class]
    empty = [n for n, c in info.train_counts.items() if c == 0]
    if empty:
        print(f"  warning: no train pixel for {', '.join(empty)}: training will refuse this task; "
              "raise --size (128 or more) or lower --classes")
    elif short:
        print(f"  warning: fewer than {cfg.n_train_per_class} train pixels for {', '.join(short)}"
              " (the scene is small for them; raise --size)")
    _print_clouds(cfg.cloud_nodata, cfg.cloud_qa, CLOUD_MASK_FILE, "optical.tif")
    if args.preview:
        from autors.synth.preview import write_preview  # matplotlib only when asked

        print(f"  preview: {write_preview(info.out_dir, info.class_names)}")
    print(f"  task:    {info.task_path}")
    return 0
