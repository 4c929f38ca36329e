"""Spectra: the ASD lookup, built-in fallback (said out loud), parsing errors, metamers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autors.errors import DataError
from autors.synth import SynthConfig, SynthConfigError, generate_scene
from autors.synth.bands import OPTICAL, hyperspectral
from autors.synth.catalogue import CLASSES
from autors.synth.spectra import WAVELENGTHS, build_library, find_asd_dir, read_asd_file

ASD = find_asd_dir(None)
needs_asd = pytest.mark.skipif(ASD is None, reason="shared/data/muufl_asd_spectra not found")


def test_missing_shared_folder_falls_back_to_builtin_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTORS_DATA", str(tmp_path / "no_such_folder"))
    assert find_asd_dir(None) is None
    info = generate_scene(tmp_path / "scene", SynthConfig(size=32, n_train_per_class=2))
    assert info.spectra == "built-in spectra"
    assert "built-in spectra" in info.task_path.read_text()  # stated in the task header too


def test_env_variable_points_at_the_shared_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "muufl_asd_spectra").mkdir()
    monkeypatch.setenv("AUTORS_DATA", str(tmp_path))
    assert find_asd_dir(None) == tmp_path / "muufl_asd_spectra"


def test_explicit_missing_folder_is_an_error(tmp_path: Path) -> None:
    cfg = SynthConfig(size=32, spectra_dir=tmp_path / "nope")
    with pytest.raises(SynthConfigError, match="spectra_dir .*nope.* is not a folder"):
        generate_scene(tmp_path / "out", cfg)


def test_broken_asd_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "Asphalt"
    bad.mkdir()
    for name in ("AsphaltBeachParkingLot01_10.txt", "AsphaltByHardy01_10.txt"):
        (bad / name).write_text("325.000, 0.1\tnot-a-number\n")
    with pytest.raises(DataError, match="AsphaltBeachParkingLot01_10.txt"):
        build_library(CLASSES[:2], tmp_path, 20.0, OPTICAL.srf)


def test_missing_class_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing ASD file.*road"):
        build_library(CLASSES[:2], tmp_path, 20.0, OPTICAL.srf)


@needs_asd
def test_real_spectra_are_read_and_used() -> None:
    x = read_asd_file(ASD / "Dirt" / "Dirt01_05.txt")
    assert x.shape == (5, len(WAVELENGTHS))
    assert 0.05 < x.min() and x.max() < 1.0
    lib = build_library(CLASSES, ASD, 20.0, OPTICAL.srf)
    assert lib.source == f"MUUFL ASD field spectra from {ASD}"
    by_name = dict(zip((c.name for c in CLASSES), lib.classes))
    assert by_name["oak"].n_measurements >= 30
    # vegetation: red edge; soil: no red edge
    red, nir = np.searchsorted(WAVELENGTHS, [670, 800])
    assert by_name["grass"].mean[nir] > 3 * by_name["grass"].mean[red]
    assert by_name["soil_smooth"].mean[nir] < 1.6 * by_name["soil_smooth"].mean[red]


@pytest.mark.parametrize("asd", [None, ASD], ids=["builtin", "asd"])
def test_maple_is_an_optical_metamer_of_oak_but_hyperspectral_sees_it(asd: Path | None) -> None:
    lib = build_library(CLASSES, asd, 20.0, OPTICAL.srf)
    oak, maple = lib.classes[4].mean, lib.classes[5].mean
    assert np.abs(OPTICAL.srf @ (maple - oak)).max() < 2e-3
    assert np.abs(hyperspectral(60).srf @ (maple - oak)).max() > 0.03


@pytest.mark.parametrize("asd", [None, ASD], ids=["builtin", "asd"])
def test_roof_and_road_share_their_material(asd: Path | None) -> None:
    lib = build_library(CLASSES, asd, 20.0, OPTICAL.srf)
    assert np.allclose(lib.classes[1].mean, lib.classes[2].mean)
    assert np.allclose(lib.classes[6].mean, lib.classes[7].mean)  # smooth and rough soil
