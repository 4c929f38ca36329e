"""The complex SAR sensor `slc`: classes of one amplitude group have the same amplitude
statistics and differ only in HH-VV coherence or phase; written as a complex64 GeoTIFF with
nodata outside the swath, declared `sar_units: complex`; never a default sensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from autors.errors import SynthConfigError
from autors.synth import DatasetConfig, SynthConfig, generate_scene
from autors.synth.catalogue import CLASS_IDS, CLASSES
from autors.synth.slc import SIGNATURES, phase_only_classes, simulate


def test_groups_share_amplitude_and_differ_in_coherence_or_phase() -> None:
    names = ("road", "roof", "grass", "concrete")
    size = 120
    labels = np.repeat(np.array([CLASS_IDS[n] for n in names], np.uint8), size // 4)
    labels = np.tile(labels, (size, 1))
    objects = np.zeros(labels.shape, np.int32)  # one object: one intensity offset
    z = simulate(labels, objects, CLASSES, np.random.default_rng(0))
    assert z.dtype == np.complex64 and z.shape == (2, size, size)
    inside = np.abs(z).sum(axis=0) > 0
    stats = {}
    for n in names:
        m = (labels == CLASS_IDS[n]) & inside
        hh, vv = z[0][m], z[1][m]
        cross = np.mean(vv * np.conj(hh))  # the phase of VV relative to HH
        stats[n] = (np.mean(np.abs(hh) ** 2), np.mean(np.abs(vv) ** 2),
                    abs(cross) / np.sqrt(np.mean(np.abs(hh) ** 2) * np.mean(np.abs(vv) ** 2)),
                    np.degrees(np.angle(cross)))
    power = [s[0] for s in stats.values()] + [s[1] for s in stats.values()]
    assert max(power) / min(power) < 1.15  # same amplitude (within speckle noise)
    for n, (_, _, coh, phase) in stats.items():
        _, want_coh, want_phase = SIGNATURES[n]
        assert coh == pytest.approx(want_coh, abs=0.06)
        assert abs((phase - want_phase + 180) % 360 - 180) < 10
    assert not inside.all()  # the no-data wedge outside the swath
    assert set(phase_only_classes(CLASSES)) >= set(names)
    assert "water" not in phase_only_classes(CLASSES)


def test_scene_writes_a_complex_geotiff_and_declares_it(tmp_path: Path) -> None:
    assert "slc" not in SynthConfig().sensors  # not a default sensor
    info = generate_scene(tmp_path, SynthConfig(size=64, sensors=("slc",), n_train_per_class=4))
    with rasterio.open(info.files["slc"]) as ds:
        assert ds.dtypes == ("complex64", "complex64") and ds.nodata == 0.0
        assert ds.descriptions == ("HH", "VV")
    task = yaml.safe_load(info.task_path.read_text())
    assert task["sensors"]["slc"]["sar_units"] == "complex"
    with pytest.raises(SynthConfigError, match="slc"):
        DatasetConfig(scenes=2, sensors=("slc",))
