"""Complex SAR (`sar_units: complex`): which bands a sensor reads and how they become channels.

One sample format for every sensor: a complex band becomes two float32 channels, its real and
imaginary parts, side by side (`re0, im0, re1, im1, ...`; C = 2 x complex bands). Two ways in:

- a complex raster (SLC: complex64, complex int16, ...): every selected band is one pair;
- a real raster with `complex_pairs` (polarimetric covariance / coherency elements, C2 / C3 /
  T3): each pair names its real and imaginary bands; a pair of one band is a real element
  (a diagonal element of a Hermitian matrix) whose imaginary channel is 0.

Reading never casts a complex raster to real (numpy would keep only the real part): a complex
raster on a sensor without `sar_units: complex`, or `complex` on a real raster without
`complex_pairs`, is a RasterError naming the sensor, the file and the field to set.

Complex values are not converted (no dB), and are resampled part by part (bilinear on the real
and on the imaginary channel, which is the bilinear interpolation of the complex value). A
complex pixel is nodata when it equals the nodata value exactly (real part = nodata and
imaginary part 0, GDAL's convention for complex bands) or is not finite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from autors.config import SensorSpec
from autors.data.raster import RasterInfo, is_complex, resolve_bands
from autors.errors import RasterError


def check_units(name: str, spec: SensorSpec, info: RasterInfo) -> None:
    """The raster's values fit the sensor's declaration: RasterError naming the sensor, the
    file and the field otherwise (never a silent cast)."""
    if is_complex(info.dtype) and spec.sar_units != "complex":
        raise RasterError(
            f"{info.path}: sensor '{name}' holds complex values ({info.dtype}) but "
            f"sensors.{name}.sar_units is {spec.sar_units or 'not set'}: set "
            f"sensors.{name}.sar_units: complex (kind sar) to read the real and imaginary "
            "parts as channel pairs, or give a real raster (amplitude or intensity); a "
            "complex raster is never read as its real part"
        )
    if spec.sar_units == "complex" and not is_complex(info.dtype) and not spec.complex_pairs:
        raise RasterError(
            f"{info.path}: sensors.{name}.sar_units is complex but the raster holds real "
            f"values ({info.dtype}): give a complex raster (e.g. an SLC as complex64 or complex "
            f"int16), declare its real/imaginary band pairs in sensors.{name}.complex_pairs "
            "(e.g. C2 as [[C11], [C12_real, C12_imag], [C22]]), or set sar_units to db or linear"
        )
    if spec.complex_pairs and is_complex(info.dtype):
        raise RasterError(
            f"{info.path}: sensors.{name}.complex_pairs declares real/imaginary band pairs but "
            f"the raster is complex ({info.dtype}): its bands are pairs already; select them "
            f"with sensors.{name}.bands and remove complex_pairs"
        )


def complex_bands(spec: SensorSpec, info: RasterInfo) -> tuple[list[int], list[str]]:
    """(1-based bands read, channel names) of a complex sensor (`check_units` passed): per
    complex band `<band>.re`, `<band>.im`; per declared pair its two band names, a real
    element's imaginary channel `<band>.im0`."""
    if is_complex(info.dtype):
        indexes, names = resolve_bands(info, spec.bands)
        return indexes, [f"{n}.{part}" for n in names for part in ("re", "im")]
    assert spec.complex_pairs is not None
    indexes, names = resolve_bands(info, [b for pair in spec.complex_pairs for b in pair])
    out, i = [], 0
    for pair in spec.complex_pairs:
        out.extend(names[i:i + 2] if len(pair) == 2 else [names[i], f"{names[i]}.im0"])
        i += len(pair)
    return indexes, out


def pair_nodata(spec: SensorSpec, info: RasterInfo, indexes: Sequence[int]
                ) -> Callable[[np.ndarray], np.ndarray]:
    """Interleaved pairs [2C, h, w] of a complex raster -> NaN where a complex pixel equals
    its band's nodata (both channels), then `scale` (in place)."""
    nodata = [spec.nodata if spec.nodata is not None else info.nodata[i - 1] for i in indexes]
    nd = np.array([np.nan if v is None else v for v in nodata], np.float32)[:, None, None]

    def convert(raw: np.ndarray) -> np.ndarray:
        re, im = raw[0::2], raw[1::2]  # views
        bad = (re == nd) & (im == 0)
        np.copyto(re, np.float32(np.nan), where=bad)
        np.copyto(im, np.float32(np.nan), where=bad)
        if spec.scale != 1.0:
            raw *= np.float32(spec.scale)
        return raw

    return convert


def assemble_pairs(stack: np.ndarray, spec: SensorSpec) -> np.ndarray:
    """The bands of a real raster's `complex_pairs` [n, h, w] -> channel pairs [2P, h, w]
    (a real element's imaginary channel 0; NaN where its real part is NaN, so the pixel stays
    invalid)."""
    assert spec.complex_pairs is not None
    out = np.empty((2 * len(spec.complex_pairs),) + stack.shape[1:], np.float32)
    i = 0
    for p, pair in enumerate(spec.complex_pairs):
        out[2 * p] = stack[i]
        out[2 * p + 1] = stack[i + 1] if len(pair) == 2 else stack[i] * 0
        i += len(pair)
    return out
