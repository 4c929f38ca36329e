"""Band definitions of the simulated sensors (centre and FWHM in nm, band names)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autors.synth.spectra import band_matrix


@dataclass(frozen=True)
class BandSet:
    names: tuple[str, ...]
    centres: np.ndarray  # [B] nm
    fwhm: np.ndarray  # [B] nm

    @property
    def srf(self) -> np.ndarray:
        """[B, L] spectral response on spectra.WAVELENGTHS."""
        return band_matrix(self.centres, self.fwhm)


# Sentinel-2 MSI bands inside the ASD range (the SWIR bands B11/B12 lie beyond 1075 nm).
OPTICAL = BandSet(
    names=("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9"),
    centres=np.array([443, 490, 560, 665, 705, 740, 783, 842, 865, 945], dtype=float),
    fwhm=np.array([20, 65, 35, 30, 15, 15, 20, 115, 20, 20], dtype=float),
)

# Airborne LiDAR at 1064 nm: reflectance averaged over 1040-1070 nm (ASD noise is high there).
LIDAR = BandSet(names=("intensity",), centres=np.array([1055.0]), fwhm=np.array([30.0]))


def hyperspectral(n: int) -> BandSet:
    """`n` contiguous bands from 400 to 1000 nm, FWHM 1.2 x spacing."""
    step = 600.0 / n
    centres = 400.0 + step * (np.arange(n) + 0.5)
    return BandSet(
        names=tuple(f"{c:.0f}nm" for c in centres),
        centres=centres,
        fwhm=np.full(n, 1.2 * step),
    )


def noisy_hsi_bands(bands: BandSet) -> np.ndarray:
    """Indices of the low-SNR bands: blue detector edge, 940 nm water vapour, NIR detector edge."""
    c = bands.centres
    return np.flatnonzero((c < 420) | ((c > 925) & (c < 960)) | (c > 985))
