"""Complex SAR inputs (`sar_units: complex`): complex64 and complex int16 GeoTIFFs read as
real/imaginary channel pairs, declared real/imaginary band pairs of a real raster, the errors
that replace a silent real-part cast, and a normalisation that keeps phases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from autors.config import SensorSpec, parse_task
from autors.data.grid import Grid
from autors.data.index import build_index, load_scene
from autors.data.masks import sensor_bands
from autors.data.normalize import NormStats, pair_scales
from autors.data.raster import inspect
from autors.data.scene import load_sensor
from autors.errors import RasterError, TaskFileError

SIZE = 24
TRANSFORM = from_origin(500_000.0, 5_000_000.0, 10.0, 10.0)


def _write(path: Path, data: np.ndarray, dtype: str, names=("HH", "VV"), nodata=0.0,
           transform=TRANSFORM) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=dtype, crs="EPSG:32632", transform=transform,
                       nodata=nodata) as ds:
        ds.write(data)
        for i, n in enumerate(names, 1):
            ds.set_band_description(i, n)
    return path


def _slc(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(2, SIZE, SIZE)) + 1j * rng.normal(size=(2, SIZE, SIZE))) * 40
    z = np.round(z.real) + 1j * np.round(z.imag)  # integer parts: exact in complex int16 too
    z[:, 0, 0] = 0  # nodata (0 + 0i)
    z[:, 1, 1] = 0 + 7j  # real part 0 but not nodata
    z[:, 2, 2] = 9 + 0j  # imaginary part 0 but not nodata
    return z


def _spec(path: Path, **kw) -> SensorSpec:
    return SensorSpec(kind="sar", path=path, **({"sar_units": "complex"} | kw))


@pytest.mark.parametrize("dtype", ["complex64", "complex_int16"])
def test_complex_geotiff_reads_as_pairs(dtype: str, tmp_path: Path) -> None:
    z = _slc()
    path = _write(tmp_path / "slc.tif", z.astype(np.complex64), dtype)
    spec, info = _spec(path), inspect(path)
    indexes, names = sensor_bands("slc", spec, info)
    assert indexes == [1, 2] and names == ["HH.re", "HH.im", "VV.re", "VV.im"]
    values, valid = load_sensor(spec, Grid.of(info), info, indexes)
    assert values.shape == (4, SIZE, SIZE) and values.dtype == np.float32
    assert not valid[0, 0] and valid[1, 1] and valid[2, 2] and valid.sum() == SIZE * SIZE - 1
    want = np.stack([z[0].real, z[0].imag, z[1].real, z[1].imag]).astype(np.float32)
    want[:, 0, 0] = 0  # invalid values are 0
    np.testing.assert_array_equal(values, want)


def test_complex_pairs_resample_each_part(tmp_path: Path) -> None:
    """On another grid (half a pixel shifted) the real and imaginary parts are resampled
    apart: a constant complex value stays that value, not its modulus or real part."""
    z = np.full((2, SIZE, SIZE), 3 - 4j, np.complex64)
    path = _write(tmp_path / "slc.tif", z, "complex64", nodata=None)
    info = inspect(path)
    grid = Grid(info.crs, from_origin(500_005.0, 4_999_995.0, 10.0, 10.0), SIZE - 2, SIZE - 2)
    values, valid = load_sensor(_spec(path), grid, info, [1, 2])
    assert valid.all()
    np.testing.assert_allclose(values[0::2], 3, atol=1e-5)
    np.testing.assert_allclose(values[1::2], -4, atol=1e-5)


def test_declared_real_imaginary_band_pairs(tmp_path: Path) -> None:
    """C2 as four real bands: C11, C12 real, C12 imaginary, C22 -> three pairs, the diagonal
    elements' imaginary channels 0."""
    rng = np.random.default_rng(1)
    bands = rng.uniform(1, 2, (4, SIZE, SIZE)).astype(np.float32)
    path = _write(tmp_path / "c2.tif", bands, "float32",
                  names=("C11", "C12_real", "C12_imag", "C22"), nodata=None)
    spec = _spec(path, complex_pairs=[["C11"], ["C12_real", "C12_imag"], ["C22"]])
    info = inspect(path)
    indexes, names = sensor_bands("c2", spec, info)
    assert indexes == [1, 2, 3, 4]
    assert names == ["C11", "C11.im0", "C12_real", "C12_imag", "C22", "C22.im0"]
    values, _ = load_sensor(spec, Grid.of(info), info, indexes)
    np.testing.assert_array_equal(values, np.stack(
        [bands[0], 0 * bands[0], bands[1], bands[2], bands[3], 0 * bands[3]]))


def test_mismatched_units_are_errors_naming_sensor_file_and_field(tmp_path: Path) -> None:
    slc = _write(tmp_path / "slc.tif", _slc().astype(np.complex64), "complex64")
    real = _write(tmp_path / "amp.tif", np.abs(_slc()).astype(np.float32), "float32")
    for spec, path, words in (
        (SensorSpec(kind="sar", path=slc, sar_units="linear"), slc,
         ("complex values", "sensors.s1.sar_units is linear", "sar_units: complex")),
        (SensorSpec(kind="sar", path=slc), slc, ("sensors.s1.sar_units is not set",)),
        (_spec(real), real, ("sensors.s1.sar_units is complex", "real values",
                             "sensors.s1.complex_pairs")),
        (_spec(slc, complex_pairs=[[1, 2]]), slc, ("complex_pairs", "remove")),
    ):
        with pytest.raises(RasterError) as err:
            sensor_bands("s1", spec, inspect(path))
        assert str(path) in str(err.value)
        for w in words:
            assert w in str(err.value), (w, str(err.value))
    # the reader itself never casts a complex raster
    with pytest.raises(RasterError, match="complex"):
        load_sensor(SensorSpec(kind="sar", path=slc), Grid.of(inspect(slc)))
    for bad, msg in (({"sar_units": "complex", "offset": 1.0}, "offset"),
                     ({"sar_units": "db", "complex_pairs": [[1, 2]]}, "complex_pairs"),
                     ({"sar_units": "complex", "complex_pairs": [[1, 2, 3]]}, "pair")):
        with pytest.raises(ValueError, match=msg):
            SensorSpec(kind="sar", path=slc, **bad)


def _task(folder: Path, slc: Path, **sensor) -> dict:
    labels = np.ones((1, SIZE, SIZE), np.uint8)
    labels[0, :, SIZE // 2:] = 2
    _write(folder / "labels.tif", labels, "uint8", names=("class",), nodata=0)
    return {"name": "cplx", "task": "patch_classification", "patch_size": 3,
            "sensors": {"s1": {"kind": "sar", "path": str(slc), "nodata": 0.0} | sensor},
            "labels": {"path": "labels.tif", "classes": ["a", "b"], "ignore": 0},
            "split": {"kind": "spatial_blocks", "block_size": 6, "buffer": 0,
                      "val_fraction": 0.25, "test_fraction": 0.25}}


def test_index_time_error_and_phase_keeping_normalisation(tmp_path: Path) -> None:
    z = _slc()
    slc = _write(tmp_path / "slc.tif", z.astype(np.complex64), "complex64")
    with pytest.raises(RasterError, match=r"sensor 's1'.*sar_units: complex"):
        build_index(parse_task(_task(tmp_path, slc), tmp_path / "task.yaml"))
    task = parse_task(_task(tmp_path, slc, sar_units="complex"), tmp_path / "task.yaml")
    index, raw = build_index(task)
    stats = index.stats
    assert index.band_names["s1"] == ["HH.re", "HH.im", "VV.re", "VV.im"]
    assert stats.mean["s1"] == [0.0] * 4
    s = stats.std["s1"]
    assert s[0] == s[1] and s[2] == s[3] and s[0] > 0
    # one scale per pair: the RMS of the parts over valid training pixels
    values, valid = raw[0][0]["s1"], raw[0][1]["s1"]
    train = (index.scenes[0].labels("train", 2) >= 0) & valid
    hh = values[0][train] + 1j * values[1][train]
    assert s[0] == pytest.approx(np.sqrt(np.mean(np.abs(hh) ** 2) / 2), rel=1e-5)
    # a rotation of every z by one phase stays a rotation after normalisation, and leaves
    # the statistics (from |z|) unchanged
    rot = np.exp(1j * 1.1)
    zn = values[0::2] + 1j * values[1::2]
    turned = zn * rot
    pairs = np.empty_like(values)
    pairs[0::2], pairs[1::2] = turned.real, turned.imag
    a = stats.apply({"s1": values}, {"s1": valid})["s1"]
    b = stats.apply({"s1": pairs}, {"s1": valid})["s1"]
    np.testing.assert_allclose(b[0::2] + 1j * b[1::2], (a[0::2] + 1j * a[1::2]) * rot,
                               atol=1e-5)
    moments = [(p[train].mean(), p[train].std()) for p in pairs]
    assert pair_scales([m for m, _ in moments], [d for _, d in moments]) == pytest.approx(s)
    # per-channel standardisation would not keep it (what the pair scale avoids)
    per = NormStats(mean={"s1": [float(p[train].mean()) for p in values]},
                    std={"s1": [float(p[train].std()) for p in values]})
    c = per.apply({"s1": values})["s1"]
    d = per.apply({"s1": pairs})["s1"]
    assert not np.allclose(d[0::2] + 1j * d[1::2], (c[0::2] + 1j * c[1::2]) * rot, atol=1e-3)
    # load_scene reads it the same way
    scene = load_scene(task)
    np.testing.assert_array_equal(scene.sensors["s1"], values)


def test_task_file_declares_complex(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="offset"):
        parse_task(_task(tmp_path, tmp_path / "x.tif", sar_units="complex", offset=2.0),
                   tmp_path / "task.yaml")
    task = parse_task(_task(tmp_path, tmp_path / "x.tif", sar_units="complex"),
                      tmp_path / "task.yaml")
    assert task.sensors["s1"].input_kind == "complex"
