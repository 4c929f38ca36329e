"""`autors synth OUT_DIR`: write a synthetic multi-sensor scene and its task file."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from autors.synth import SENSORS, SynthConfig, SynthConfigError, generate_scene


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic multi-sensor scene (GeoTIFFs + task.yaml)",
        description=(
            "Write a co-registered synthetic scene (optical, SAR, LiDAR, hyperspectral GeoTIFFs, "
            "labels, sparse train / disjoint test rasters) and a ready-to-run task.yaml. "
            "No single sensor separates every class."
        ),
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write (created)")
    p.add_argument("--preset", choices=("small", "benchmark"), default="small",
                   help="small: 128x128 (default); benchmark: 512x512 with a real search budget")
    p.add_argument("--size", type=int, help="label grid side in pixels (2 m each)")
    p.add_argument("--classes", type=int, help="number of classes K (4..10)")
    p.add_argument("--sensors", help=f"comma-separated subset of {','.join(SENSORS)}")
    p.add_argument("--seed", type=int, help="random seed (same seed, same bytes)")
    p.add_argument("--looks", type=float, help="SAR speckle looks (default 4)")
    p.add_argument("--train-per-class", type=int, dest="n_train_per_class",
                   help="labelled training pixels per class")
    p.add_argument("--preview", action="store_true", help="also write preview.png")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The preset, overridden by every flag that was given."""
    base = SynthConfig.benchmark() if args.preset == "benchmark" else SynthConfig.small()
    changes: dict[str, object] = {}
    for key in ("size", "classes", "seed", "looks", "n_train_per_class"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    if args.sensors is not None:
        names = tuple(s.strip() for s in args.sensors.split(",") if s.strip())
        if not names:
            raise SynthConfigError(f"--sensors is empty: pick some of {','.join(SENSORS)}")
        changes["sensors"] = names
    return replace(base, **changes)  # type: ignore[arg-type]  # validated in __post_init__


def run(args: argparse.Namespace) -> int:
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
    if args.preview:
        from autors.synth.preview import write_preview  # matplotlib only when asked

        print(f"  preview: {write_preview(info.out_dir, info.class_names)}")
    print(f"  task:    {info.task_path}")
    return 0
