"""Class reflectance spectra: real MUUFL Gulfport ASD field spectra, or documented built-ins.

Where the spectra come from (`find_asd_dir`):
1. `SynthConfig.spectra_dir` when given (it must exist: an explicit folder is never skipped);
2. else `$AUTORS_DATA/muufl_asd_spectra` when the environment variable is set;
3. else `<repo root>/../shared/data/muufl_asd_spectra` (the repo sits beside `shared/`, as on
   the development machine `/work/main` + `/work/shared` and in CI's clone).
When 2/3 find no folder, the built-in analytic spectra below are used and `SceneInfo.spectra`
says so. Water has no ASD measurement and is always the built-in model.

Each class is a mean spectrum plus its leading principal components (scaled to one standard
deviation of the real measurements): a coefficient field of N(0, 1) values then reproduces the
measured intra-class variability. Spectra live on a 1 nm grid, 400-1075 nm; sensors integrate
them with Gaussian spectral response functions (`band_matrix`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autors.errors import DataError, SynthConfigError
from autors.synth.catalogue import ClassDef

WAVELENGTHS = np.arange(400.0, 1076.0)  # [L] nm, 1 nm steps
N_PCS = 3
ASD_FOLDER = "muufl_asd_spectra"
_REPO_ROOT = Path(__file__).resolve().parents[2]
# Pixels average many leaves / grains: a class's spread (its first PC) is capped at this
# fraction of its mean spectrum's norm (single ASD leaf measurements vary far more).
MAX_SPREAD = 0.12
# Spectra further than this spectral angle (radians) from their class median are bad
# measurements (the folder holds a few: sensor saturation, a reference panel, shade).
_MAX_ANGLE = 0.15


@dataclass(frozen=True)
class ClassSpectra:
    """Mean [L] and scaled principal components [N_PCS, L] of one class, on WAVELENGTHS."""

    mean: np.ndarray
    pcs: np.ndarray
    n_measurements: int  # 0 for built-in


@dataclass(frozen=True)
class SpectralLibrary:
    classes: tuple[ClassSpectra, ...]  # one per active class, label order
    source: str  # "MUUFL ASD field spectra from <path>" or "built-in spectra"


def find_asd_dir(explicit: Path | None) -> Path | None:
    """The ASD folder to use, or None for built-in spectra (see the module docstring)."""
    if explicit is not None:
        if not explicit.is_dir():
            raise SynthConfigError(
                f"spectra_dir {explicit} is not a folder: point it at the muufl_asd_spectra "
                "folder, or leave it unset to look it up (built-in spectra when absent)"
            )
        return explicit
    env = os.environ.get("AUTORS_DATA")
    candidate = Path(env) / ASD_FOLDER if env else _REPO_ROOT.parent / "shared" / "data" / ASD_FOLDER
    return candidate if candidate.is_dir() else None


def read_asd_file(path: Path) -> np.ndarray:
    """Measurements of one ASD text file resampled to WAVELENGTHS: [n, L] reflectance."""
    try:
        values = np.array(path.read_text().replace(",", " ").split(), dtype=float)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not an ASD 'wavelength, reflectance' text file ({err})") from None
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or values.size % len(lines) or (values.size // len(lines)) % 2:
        raise DataError(f"{path}: rows do not all hold 'wavelength, reflectance' pairs")
    table = values.reshape(len(lines), -1)  # [rows, 2n]
    wl, refl = table[:, 0], table[:, 1::2]
    if not np.allclose(table[:, 0::2], wl[:, None]):
        raise DataError(f"{path}: the measurements do not share one wavelength column")
    if wl[0] > WAVELENGTHS[0] or wl[-1] < WAVELENGTHS[-1]:
        raise DataError(
            f"{path}: covers {wl[0]:.0f}-{wl[-1]:.0f} nm, needs "
            f"{WAVELENGTHS[0]:.0f}-{WAVELENGTHS[-1]:.0f} nm"
        )
    return np.stack([np.interp(WAVELENGTHS, wl, r) for r in refl.T])


def _smooth(x: np.ndarray, width: int = 9) -> np.ndarray:
    """Moving average along the last axis (ASD detector noise, worst beyond 1000 nm)."""
    kernel = np.ones(width) / width
    pad = width // 2
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="edge")
    return np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), -1, xp)


def _from_measurements(x: np.ndarray) -> ClassSpectra:
    """Robust mean and PCs of measurements [n, L]."""
    med = np.median(x, axis=0)
    cos = (x @ med) / (np.linalg.norm(x, axis=1) * np.linalg.norm(med) + 1e-12)
    x = x[np.arccos(np.clip(cos, -1, 1)) < _MAX_ANGLE]
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    scale = s / np.sqrt(max(len(x) - 1, 1))  # one standard deviation along each PC
    pcs = np.zeros((N_PCS, len(mean)))
    k = min(N_PCS, len(scale))
    pcs[:k] = vt[:k] * scale[:k, None]
    pcs *= min(1.0, MAX_SPREAD * np.linalg.norm(mean) / (np.linalg.norm(pcs[0]) + 1e-12))
    return ClassSpectra(mean=mean, pcs=pcs, n_measurements=len(x))


# ---- built-in spectra --------------------------------------------------------------------------


def _gauss(centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((WAVELENGTHS - centre) / width) ** 2)


def _vegetation(blue: float, green: float, red: float, nir: float, reip: float) -> np.ndarray:
    """Green leaf: chlorophyll absorption, green peak, logistic red edge at `reip` nm."""
    visible = red + (green - red) * _gauss(550, 30) + (blue - red) * _gauss(420, 25)
    edge = 1 / (1 + np.exp(-(WAVELENGTHS - reip) / 12))
    return visible * (1 - edge) + nir * edge


_SLOPE = (WAVELENGTHS - 700) / 300


def _water() -> ClassSpectra:
    """Slightly turbid inland water: blue-green peak, ~0 in the near infrared."""
    base = 0.02 * np.exp(-(WAVELENGTHS - 400) / 250)
    peak = 0.03 * _gauss(560, 50)
    turbid = 0.008 * _gauss(810, 20)
    pcs = np.stack([0.3 * peak, 0.004 * np.ones_like(base), 0.5 * turbid])  # turbidity, glint
    return ClassSpectra(mean=base + peak + turbid, pcs=pcs, n_measurements=0)


def _builtin_mean(name: str) -> np.ndarray:
    lin = (WAVELENGTHS - 400) / 675
    if name in ("road", "roof"):
        return 0.11 + 0.10 * lin
    if name == "concrete":
        return 0.13 + 0.22 * lin
    if name in ("soil_smooth", "soil_rough"):
        return 0.12 + 0.45 * (1 - np.exp(-2.2 * lin))
    if name == "grass":
        return _vegetation(0.03, 0.10, 0.06, 0.39, 712)
    if name in ("oak", "maple"):
        return _vegetation(0.01, 0.045, 0.02, 0.38, 715)
    if name == "shrub":
        return _vegetation(0.055, 0.095, 0.05, 0.72, 708)
    raise KeyError(name)


def _builtin(name: str) -> ClassSpectra:
    if name == "water":
        return _water()
    mean = _builtin_mean(name)
    # brightness, spectral tilt, red-edge position (a 4 nm shift) as the variability modes
    redge = -np.gradient(mean) * 4.0
    pcs = np.stack([0.15 * mean, 0.02 * _SLOPE, redge])
    return ClassSpectra(mean=mean, pcs=pcs, n_measurements=0)


# ---- sensors' spectral response ---------------------------------------------------------------


def band_matrix(centres: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Gaussian spectral response functions [B, L], each row summing to 1."""
    sigma = np.asarray(fwhm)[:, None] / 2.3548
    srf = np.exp(-0.5 * ((WAVELENGTHS[None, :] - np.asarray(centres)[:, None]) / sigma) ** 2)
    return srf / srf.sum(axis=1, keepdims=True)


def make_metamer(mean: np.ndarray, shift_nm: float, srf: np.ndarray) -> np.ndarray:
    """`mean` with its red edge shifted by `shift_nm`, corrected so `srf @ result == srf @ mean`.

    The shift is tapered to 680-780 nm; the correction removes the part of the difference
    that the bands in `srf` [B, L] can see (least squares), leaving only structure finer than
    those bands: the two spectra are metamers for that sensor.
    """
    taper = np.clip((WAVELENGTHS - 670) / 20, 0, 1) * np.clip((800 - WAVELENGTHS) / 20, 0, 1)
    shifted = np.interp(WAVELENGTHS - shift_nm * taper, WAVELENGTHS, mean)
    diff = shifted - mean
    coef, *_ = np.linalg.lstsq(srf @ srf.T, srf @ diff, rcond=None)
    return np.clip(mean + diff - srf.T @ coef, 0.001, None)


def build_library(
    classes: tuple[ClassDef, ...], asd_dir: Path | None, redge_shift_nm: float, optical_srf: np.ndarray
) -> SpectralLibrary:
    """Spectra of the active classes from `asd_dir` (None: built-in). Maple is built from oak."""
    cache: dict[str, ClassSpectra] = {}
    for c in classes:
        if c.name == "maple":
            continue
        if asd_dir is None or not c.asd_files:
            cache[c.name] = _builtin(c.name)
            continue
        missing = [f for f in c.asd_files if not (asd_dir / f).is_file()]
        if missing:
            raise DataError(
                f"{asd_dir}: missing ASD file(s) {missing} for class '{c.name}': restore the "
                "folder, or unset AUTORS_DATA / spectra_dir to use built-in spectra"
            )
        x = np.concatenate([read_asd_file(asd_dir / f) for f in c.asd_files])
        cache[c.name] = _from_measurements(_smooth(x))
    if any(c.name == "maple" for c in classes):
        oak = cache.get("oak") or _builtin("oak")
        cache["maple"] = ClassSpectra(
            mean=make_metamer(oak.mean, redge_shift_nm, optical_srf),
            pcs=oak.pcs,
            n_measurements=oak.n_measurements,
        )
    source = f"MUUFL ASD field spectra from {asd_dir}" if asd_dir else "built-in spectra"
    return SpectralLibrary(classes=tuple(cache[c.name] for c in classes), source=source)
