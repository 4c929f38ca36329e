"""The input checks' rules on made-up figures (autors.export.input_check), for sensors, units
and places other than the shared chip: the decisions follow the rules' stated physics and
factors, not one data set. The real-raster tests are in test_input_check.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autors.data.profile import BandStats, GsdRange, PixelSize, SensorProfile, band_stats
from autors.errors import DataError, InputMismatchError
from autors.export.input_check import (
    RULE_NAMES,
    CheckOptions,
    Evidence,
    Reference,
    Sample,
    SensorReference,
    evaluate,
    sample_windows,
)

RNG = np.random.default_rng(0)
TEN_M = GsdRange(min_m=10.0, max_m=10.0, x_m=10.0, y_m=10.0, scenes=1)


def _stats(values: np.ndarray) -> list[BandStats]:
    return band_stats(values.reshape(values.shape[0], -1))


def _reflectance(bands: int = 6, n: int = 5000, level: float = 0.15) -> np.ndarray:
    """Plausible surface reflectance [bands, n]: a level per band, log-normal spread."""
    base = level * np.linspace(0.6, 1.6, bands)[:, None]
    return (base * RNG.lognormal(0.0, 0.4, (bands, n))).astype(np.float32)


def _db(n: int = 5000, vv: float = -11.0, vh: float = -18.0) -> np.ndarray:
    return np.stack([RNG.normal(vv, 4.0, n), RNG.normal(vh, 4.0, n)]).astype(np.float32)


def _ref(kind: str, train: np.ndarray | None, *, scale: float = 1.0, offset: float = 0.0,
         sar_units: str | None = None, context: str = "model", name: str = "x",
         gsd: GsdRange = TEN_M, invalid: float = 0.0) -> Reference:
    bands = [f"b{i + 1}" for i in range(train.shape[0] if train is not None else 2)]
    profile = None if train is None else SensorProfile(
        bands=_stats(train), invalid_fraction=invalid, sampled_pixels=train.shape[1], gsd=gsd)
    return Reference(context=context, where="model.json", grid=gsd if context == "model"
                     else None, sensors={name: SensorReference(
                         name=name, kind=kind, bands=bands, scale=scale, offset=offset,
                         sar_units=sar_units, profile=profile)})


def _sample(values: np.ndarray, *, raw: np.ndarray | None = None, name: str = "x",
            size: float = 10.0, invalid: float = 0.0) -> Sample:
    raw = values if raw is None else raw
    nonzero = raw[raw != 0]
    n = values.shape[1]
    return Sample(sensor=name, path=Path(f"/data/{name}.tif"), pixels=round(n / (1 - invalid)),
                  valid=n, bands=_stats(values), raw=_stats(raw),
                  positive=float((nonzero > 0).mean()), size=PixelSize(x_m=size, y_m=size))


def _check(ref: Reference, sample: Sample, grid: float | None = None, **options):
    return evaluate(Evidence(ref, {sample.sensor: sample},
                             None if grid is None else PixelSize(x_m=grid, y_m=grid),
                             sample.sensor if grid is not None else None,
                             CheckOptions(**options)))


def _names(report) -> list[tuple[str, str]]:
    return [(f.check, f.level) for f in report.findings]


# ---- scale and units ------------------------------------------------------------------------
def test_the_same_kind_of_scene_passes():
    train = _reflectance()
    report = _check(_ref("optical", train), _sample(_reflectance()))
    assert report.status == "passed" and not report.findings


@pytest.mark.parametrize("factor", [1 / 5, 5.0])
def test_a_darker_or_brighter_scene_is_not_a_unit_error(factor):
    """Scenes of one sensor differ by well under 10x: at most a drift warning."""
    report = _check(_ref("optical", _reflectance()), _sample(_reflectance() * factor))
    assert not report.errors and {c for c, _ in _names(report)} <= {"drift"}


def test_hyperspectral_in_percent_is_a_scale_error():
    train = _reflectance(bands=50)
    report = _check(_ref("hyperspectral", train, name="hsi"), _sample(train * 100, name="hsi"))
    (err,) = report.errors
    assert err.check == "scale" and err.sensor == "hsi" and "10^2 times" in err.message
    assert "percent where the model expects reflectance 0-1" in err.message
    assert "--scale hsi=0.01" in err.message and "/data/hsi.tif" in err.message
    assert report.warnings == []  # the drift it causes is the error's consequence


def test_lidar_in_centimetres_is_a_scale_error_with_its_fix():
    heights = RNG.gamma(2.0, 3.0, (1, 5000)).astype(np.float32)  # metres above ground
    report = _check(_ref("lidar", heights, name="lidar"), _sample(heights * 100, name="lidar"))
    (err,) = report.errors
    assert "10^2 times" in err.message and "a unit or scale mix-up" in err.message
    assert "--scale lidar=0.01" in err.message
    with pytest.raises(InputMismatchError, match=r"\[scale\] sensor 'lidar'"):
        report.raise_for_errors()


def test_an_offset_scale_names_both_instead_of_a_factor():
    train = _reflectance()
    ref = _ref("optical", train, scale=2.75e-5, offset=-0.2)
    (err,) = _check(ref, _sample(train * 1e4)).errors
    assert "scale 2.75e-05 and offset -0.2" in err.message and "--scale" not in err.message


def test_one_odd_band_does_not_make_a_sensor_error():
    """Scale is per sensor: the median over bands decides, a cirrus-like band does not."""
    train = _reflectance(bands=8)
    given = train.copy()
    given[3] *= 1000
    assert not _check(_ref("optical", train), _sample(given)).errors


def test_sar_linear_power_where_db_was_trained_is_an_error():
    train = _db()
    power = np.power(10, train / 10)
    report = _check(_ref("sar", train, sar_units="db", name="s1"), _sample(power, name="s1"))
    (err,) = report.errors
    assert err.check == "sar_units" and "look like linear power, not dB" in err.message
    assert "--sar-units s1=linear" in err.message


def test_sar_amplitude_numbers_where_db_was_trained_is_an_error():
    train = _db()
    dn = (np.sqrt(np.power(10, train / 10)) * 1000).astype(np.float32)  # amplitude x 1000
    (err,) = _check(_ref("sar", train, name="s1"), _sample(dn, name="s1")).errors
    assert "amplitude or digital numbers" in err.message  # units undeclared: training's sign


def test_bright_urban_db_backscatter_is_not_linear():
    """Up to a third of positive dB values (a city) is still dB."""
    train = _db()
    urban = _db(vv=2.0, vh=-6.0)
    assert 0.2 < (urban > 0).mean() < 0.5
    report = _check(_ref("sar", train, sar_units="db", name="s1"), _sample(urban, name="s1"))
    assert not report.errors and {c for c, _ in _names(report)} <= {"drift"}


def test_sar_db_where_linear_power_is_read_is_an_error():
    """The card reads linear power (converted to dB on read): dB files are mostly negative."""
    train = _db()  # training's physical values: dB after the conversion
    given = _db()
    as_read = 10 * np.log10(np.maximum(given, 1e-10))  # what the reader makes of them
    report = _check(_ref("sar", train, sar_units="linear", name="s1"),
                    _sample(as_read, raw=given, name="s1"))
    (err,) = report.errors
    assert "look like dB, not linear power" in err.message
    assert "--sar-units s1=db" in err.message


def test_task_context_gives_task_file_fixes():
    train = _db()
    ref = _ref("sar", train, sar_units="db", context="task", name="s1")
    (err,) = _check(ref, _sample(np.power(10, train / 10), name="s1")).errors
    assert "sensors.s1.sar_units: linear" in err.message and "--sar-units" not in err.message


def test_a_declared_scale_on_reflectance_is_a_task_warning():
    """validate: scale 0.0001 on a raster already in reflectance (0-1)."""
    refl = _reflectance()
    ref = _ref("optical", refl * 1e-4, scale=1e-4, context="task", name="s2")
    report = _check(ref, _sample(refl * 1e-4, name="s2"))
    (w,) = report.warnings
    assert w.check == "declared_scale" and "sensors.s2.scale: 1 in the task file" in w.message
    # right: values x 10000 read with scale 0.0001; and predict never runs this rule
    assert not _check(_ref("optical", refl, scale=1e-4, context="task"),
                      _sample(refl)).findings
    assert not _check(_ref("optical", refl * 1e-4, scale=1e-4), _sample(refl * 1e-4)).findings


# ---- warnings -------------------------------------------------------------------------------
def test_drift_lists_bands_outside_the_training_range():
    train = _reflectance()
    given = train.copy()
    given[2] += 1.0  # one band far off, the sensor's size unchanged
    report = _check(_ref("optical", train), _sample(given))
    (w,) = report.warnings
    assert w.check == "drift" and "1 of 6 band median(s)" in w.message and "band 3" in w.message


def test_swapped_bands_are_found_and_similar_bands_are_not():
    train = _reflectance(bands=6)
    train[5] *= 3  # a NIR-like band, far from the visible ones
    assert not _check(_ref("optical", train), _sample(train[[0, 2, 1, 3, 4, 5]])).findings
    swapped = _check(_ref("optical", train), _sample(train[[0, 1, 2, 3, 5, 4]]))
    assert not swapped.errors and _names(swapped) == [("drift", "warning"),
                                                      ("band_order", "warning")]
    assert "bands 5 and 6 look swapped" in swapped.warnings[1].message


def test_many_invalid_pixels_are_a_warning():
    train = _reflectance()
    report = _check(_ref("optical", train, invalid=0.05), _sample(_reflectance(), invalid=0.8))
    (w,) = report.warnings
    assert w.check == "invalid" and "80% of the sampled pixels" in w.message


# ---- pixel size -----------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "error"), [(6.8, False), (14.9, False), (6.6, True),
                                             (15.1, True), (30.0, True)])
def test_pixel_size_tolerance(size, error):
    train = _reflectance()
    report = _check(_ref("optical", train), _sample(train, size=size), grid=size)
    assert bool(report.errors) == error
    if error:
        (err,) = report.errors  # the grid sensor's own pixels: one line, the map grid's
        assert err.sensor == "grid" and f"pixel size {size:.3g} m" in err.message
        assert "training's 10 m" in err.message and "--allow-resolution-change" in err.message


def test_pixel_size_tolerance_is_an_option_and_can_be_allowed():
    train = _reflectance()
    wide = _check(_ref("optical", train), _sample(train, size=25), grid=25,
                  resolution_factor=3.0)
    assert not wide.findings
    allowed = _check(_ref("optical", train), _sample(train, size=30), grid=30,
                     allow=frozenset({"resolution"}))
    assert allowed.status == "warnings" and not allowed.errors
    (w,) = allowed.warnings
    assert w.allowed and "predicted anyway: --allow-resolution-change" in w.text()


def test_a_dataset_of_several_pixel_sizes_allows_its_range():
    train = _reflectance()
    spread = GsdRange(min_m=8.0, max_m=12.0, x_m=10.0, y_m=10.0, scenes=40)
    ref = _ref("optical", train, gsd=spread)
    assert not _check(ref, _sample(train, size=17.5), grid=17.5).errors  # <= 12 x 1.5
    assert _check(ref, _sample(train, size=18.5), grid=18.5).errors


def test_anisotropic_pixels_compare_by_their_geometric_mean():
    """Equal-angle pixels at 60 deg N (5.6 x 11.1 m) against 10 m training: 7.9 m, allowed."""
    train = _reflectance()
    sample = _sample(train)
    sample = Sample(**{**sample.__dict__, "size": PixelSize(x_m=5.58, y_m=11.14)})
    ev = Evidence(_ref("optical", train), {"x": sample}, sample.size, "x", CheckOptions())
    assert not evaluate(ev).errors


def test_options_are_checked():
    with pytest.raises(DataError, match="no such input check; the checks are"):
        CheckOptions(allow=frozenset({"units"}))
    with pytest.raises(DataError, match="factor > 1"):
        CheckOptions(resolution_factor=1.0)
    assert set(RULE_NAMES) == {"resolution", "sar_units", "scale", "declared_scale",
                               "invalid", "drift", "band_order"}


def test_sample_windows_spread_over_the_raster():
    wins = sample_windows(1000, 2000, 9, 128)
    assert len(wins) == 9 and all(w.width == w.height == 128 for w in wins)
    assert {w.row_off for w in wins} == {103, 436, 769}
    assert sample_windows(300, 300, 9, 128) == [sample_windows(300, 300, 1, 300)[0]]
