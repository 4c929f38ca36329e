"""A complex SAR sensor (`slc`): single-look complex HH and VV on the label grid, written as a
complex64 GeoTIFF (`sar_units: complex`), whose classes differ in polarimetric coherence and
phase where their amplitudes are the same.

Per pixel, with n1, n2 independent circular complex Gaussians CN(0, 1) and sigma the class's
intensity (times a per-object offset drawn the same way for every class):

    HH = sqrt(sigma) n1
    VV = sqrt(sigma) (gamma n1 + sqrt(1 - |gamma|^2) n2),   gamma = |gamma| exp(i phi)

so each channel's amplitude is Rayleigh with the same scale for every class of an amplitude
group (`SIGNATURES`): the marginal amplitude statistics of the classes of a group are equal,
and they differ only in the HH-VV coherence |gamma| (surface vs volume scattering) or the
HH-VV phase phi = arg <VV HH*> (0 for odd bounce, 180 degrees for double bounce). The
absolute phase is uniform at random (n1 is circular), as in a real SLC. Classes whose amplitude is shared with
another class are the *phase-only* classes (`phase_only_classes`): only a model that reads
the complex values (or the joint statistics of the channels) can tell them apart.

Pixels east of a slanted swath edge have no data (0 + 0i, the nodata value): labels there are
unusable for this sensor.
"""

from __future__ import annotations

import numpy as np

from autors.synth.catalogue import ClassDef

BANDS = ("HH", "VV")
NODATA = 0.0
SPREAD_DB = 1.0  # per-object intensity offset, uniform +-, the same for every class
SWATH = (0.06, 0.1)  # no-data wedge at the east edge: width share at the top, + per row
# class name -> (intensity dB, HH-VV coherence |gamma|, arg <VV HH*> in degrees). Groups of equal
# intensity: -12 dB (road, roof, grass, concrete), -7.5 dB (oak, maple, shrub).
SIGNATURES: dict[str, tuple[float, float, float]] = {
    "water": (-22.0, 0.9, 0.0),
    "road": (-12.0, 0.85, 0.0),
    "roof": (-12.0, 0.85, 180.0),  # double bounce at walls and roofs: HH-VV phase pi
    "grass": (-12.0, 0.3, 0.0),  # volume: low coherence
    "oak": (-7.5, 0.3, 0.0),
    "maple": (-7.5, 0.7, 0.0),
    "soil_smooth": (-16.0, 0.9, 0.0),
    "soil_rough": (-9.0, 0.9, 0.0),
    "concrete": (-12.0, 0.85, 90.0),
    "shrub": (-7.5, 0.7, 90.0),
}


def phase_only_classes(classes: tuple[ClassDef, ...]) -> list[str]:
    """The classes (of those in the scene) whose intensity another class of the scene shares:
    they differ from it only in coherence or phase."""
    db = [SIGNATURES[c.name][0] for c in classes]
    return [c.name for c, v in zip(classes, db) if db.count(v) > 1]


def simulate(labels: np.ndarray, objects: np.ndarray, classes: tuple[ClassDef, ...],
             rng: np.random.Generator) -> np.ndarray:
    """complex64 [2, H, W] (HH, VV) on the label grid; NODATA outside the swath."""
    k = len(classes)
    table = np.array([SIGNATURES[c.name] for c in classes], np.float64)  # [K, 3]
    idx = np.clip(labels.astype(np.int64) - 1, 0, k - 1)
    offset = rng.uniform(-SPREAD_DB, SPREAD_DB, int(objects.max()) + 1)
    sigma = 10.0 ** ((table[idx, 0] + offset[objects]) / 10.0)
    gamma = table[idx, 1] * np.exp(1j * np.radians(table[idx, 2]))
    shape = labels.shape
    n1, n2 = ((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)
              for _ in range(2))
    amp = np.sqrt(sigma)
    out = np.stack([amp * n1, amp * (gamma * n1 + np.sqrt(1 - np.abs(gamma) ** 2) * n2)])
    h, w = shape
    edge = w * (1 - SWATH[0]) - SWATH[1] * np.arange(h)[:, None]
    out[:, np.arange(w)[None, :] >= edge] = NODATA
    return out.astype(np.complex64)
