"""Benchmark: load, align and prepare a Houston-2013-size scene.

    python benchmarks/data_load.py [--workdir /tmp/autors_bench] [--out results/benchmarks]
        [--repeat-check]

The scene has the size of Houston 2013 (349 x 1905 px, a 144-band float32 hyperspectral sensor
and a 1-band LiDAR DSM, sparse train/test label rasters with 15 classes). Two cases:
- `same-grid`: every raster on one 2.5 m lattice (as Houston is distributed): window reads;
- `resampled`: the HSI origin shifted by half a pixel and the DSM at 1 m in EPSG:4326, so all
  144 bands and the DSM go through rasterio's warper.
Each case runs in a fresh subprocess so its peak RSS (getrusage) is its own; the baseline RSS
after imports is reported separately. The target: < 30 s and < 2 GB per case.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import yaml
from _common import repeat_statement
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

ROWS, COLS, HSI_BANDS, CLASSES = 349, 1905, 144, 15
UTM = CRS.from_epsg(32615)  # Houston is in UTM zone 15N
X0, Y0, RES = 271_000.0, 3_290_000.0, 2.5
CASES = ("same-grid", "resampled")


def _write(path: Path, data: np.ndarray, crs: CRS, transform: Affine) -> None:
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)


def generate(folder: Path) -> None:
    """Write the rasters of both cases (skipped when already there)."""
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = Affine(RES, 0, X0, 0, -RES, Y0)
    # Smooth spectra per class region plus noise: [144, 349, 1905] float32, 383 MB.
    region = (np.arange(COLS)[None, :] // 127 + np.arange(ROWS)[:, None] // 70) % CLASSES
    spectra = rng.random((CLASSES, HSI_BANDS)).astype(np.float32)
    hsi = spectra[region].transpose(2, 0, 1).copy()
    hsi += rng.normal(0, 0.05, size=hsi.shape).astype(np.float32)
    _write(folder / "hsi.tif", hsi, UTM, t)
    _write(
        folder / "hsi_shifted.tif", hsi, UTM, Affine(RES, 0, X0 - RES / 2, 0, -RES, Y0 + RES / 2)
    )
    del hsi
    dsm = (region * 2.0 + rng.normal(0, 0.3, size=region.shape)).astype(np.float32)[None]
    _write(folder / "dsm.tif", dsm, UTM, t)
    # DSM at 1 m in EPSG:4326 covering the scene with a margin.
    wgs = CRS.from_epsg(4326)
    left, bottom, right, top = transform_bounds(
        UTM, wgs, X0 - 20, Y0 - ROWS * RES - 20, X0 + COLS * RES + 20, Y0 + 20
    )
    res = 1e-5  # ~1 m
    h, w = int((top - bottom) / res) + 1, int((right - left) / res) + 1
    fine = rng.normal(10, 3, size=(1, h, w)).astype(np.float32)
    _write(folder / "dsm_wgs84.tif", fine, wgs, Affine(res, 0, left, 0, -res, top))
    # Sparse labels like Houston: ~2800 train and ~12000 test pixels, disjoint.
    labelled = rng.random((ROWS, COLS))
    cls = (region + 1).astype(np.uint8)
    train = np.where(labelled < 0.0043, cls, 0).astype(np.uint8)[None]
    test = np.where((labelled >= 0.0043) & (labelled < 0.0223), cls, 0).astype(np.uint8)[None]
    _write(folder / "train.tif", train, UTM, t)
    _write(folder / "test.tif", test, UTM, t)
    (folder / "done").write_text("ok")


def task_file(folder: Path, case: str) -> Path:
    hsi, dsm = (
        ("hsi.tif", "dsm.tif") if case == "same-grid" else ("hsi_shifted.tif", "dsm_wgs84.tif")
    )
    data = {
        "name": f"houston_size_{case}",
        "task": "patch_classification",
        "sensors": {
            "hsi": {"kind": "hyperspectral", "path": hsi},
            "lidar": {"kind": "lidar", "path": dsm},
        },
        "labels": {"classes": [f"class{i}" for i in range(1, CLASSES + 1)], "ignore": 0},
        "split": {"kind": "given", "train": "train.tif", "test": "test.tif"},
        "patch_size": 11,
    }
    path = folder / f"task_{case}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_case(task_path: Path) -> dict:
    """Child process: time load_scene and prepare, report peak RSS."""
    import torch  # noqa: F401  (imported by prepare anyway; counted in the baseline)

    from autors.config import load_task
    from autors.data import load_scene, prepare

    task = load_task(task_path)
    base = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    scene = load_scene(task)
    t_load, c_load = time.perf_counter() - t0, time.process_time() - c0
    shape = {k: list(v.shape) for k, v in scene.sensors.items()}
    valid = float(scene.valid.mean())
    del scene
    t0, c0 = time.perf_counter(), time.process_time()
    data = prepare(task)
    t_prepare, c_prepare = time.perf_counter() - t0, time.process_time() - c0
    digest = hashlib.sha256()
    for name, arr in data.arrays[0].items():  # what a trial would receive, byte for byte
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arr).data)  # the buffer itself: no copy, no extra peak
    return {
        "data_sha256": digest.hexdigest(),
        "split_sha256": data.splits.sha256(),
        "load_scene_s": t_load,
        "load_scene_cpu_s": c_load,
        "prepare_s": t_prepare,
        "prepare_cpu_s": c_prepare,
        "baseline_rss_mb": base,
        "peak_rss_mb": _rss_mb(),
        "shapes": shape,
        "valid": valid,
        "train_pixels": sum(data.index.counts()["train"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/autors_bench"))
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeat-check", action="store_true",
                        help="load the first case twice and report whether the prepared data "
                        "matched exactly")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child)))
        return
    if args.generate:
        generate(args.workdir)
        return
    t0 = time.perf_counter()
    # In a child: getrusage's peak survives fork/exec, so the parent must stay small.
    subprocess.run(
        [sys.executable, __file__, "--generate", "--workdir", str(args.workdir)], check=True
    )
    print(f"scene generated in {args.workdir} ({time.perf_counter() - t0:.1f} s)")
    rows = []
    for case in CASES:
        rows.append((case, _child(args.workdir, case)))
        print(case, json.dumps(rows[-1][1]))
    repeat = None
    if args.repeat_check:
        case, first = rows[0]
        again = _child(args.workdir, case)
        repeat = repeat_statement({k: first[k] for k in ("data_sha256", "split_sha256", "shapes")},
                                  {k: again[k] for k in ("data_sha256", "split_sha256", "shapes")},
                                  f"loading and preparing the {case} case")
        print(repeat)
    lines = [
        "# Data loading benchmark (Houston-2013 size)",
        "",
        (
            f"Scene: {ROWS} x {COLS} px, HSI {HSI_BANDS} bands float32 "
            f"({HSI_BANDS * ROWS * COLS * 4 / 1e6:.0f} MB) + 1-band DSM, given train/test label "
            "rasters (15 classes). "
            "Generated by `python benchmarks/data_load.py`; each case in a fresh process."
        ),
        (
            "`same-grid`: every raster on one 2.5 m lattice (window reads). `resampled`: HSI "
            "origin shifted by half a pixel, DSM at ~1 m in EPSG:4326 (everything warped, "
            "bilinear)."
        ),
        "",
        (
            "| case | load_scene wall / CPU (s) | prepare (includes a load) wall / CPU (s) "
            "| peak RSS (MB) | RSS after imports (MB) |"
        ),
        "|---|---|---|---|---|",
    ]
    for case, r in rows:
        lines.append(
            f"| {case} | {r['load_scene_s']:.1f} / {r['load_scene_cpu_s']:.1f} | "
            f"{r['prepare_s']:.1f} / {r['prepare_cpu_s']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {r['baseline_rss_mb']:.0f} |"
        )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines += [
        "",
        (
            "Target: < 30 s and < 2 GB. Machine: "
            f"{_machine()}, load average {load} while measuring (wall times grow with the "
            f"load; CPU times do not), Python {sys.version.split()[0]}, "
            f"rasterio {rasterio.__version__}."
        ),
        "",
    ]
    lines += ["Split hash per case: " + ", ".join(f"{case} `{r['split_sha256'][:12]}`"
                                                  for case, r in rows) + ".", ""]
    if repeat:
        lines += [repeat, ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_load.md").write_text("\n".join(lines))
    print(f"written {args.out / 'data_load.md'}")


def _child(workdir: Path, case: str) -> dict:
    """One case in a fresh process (its peak RSS is its own)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(task_file(workdir, case))],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} CPU(s)"


if __name__ == "__main__":
    main()
