"""The land-cover classes of a synthetic scene and what each sensor sees of them.

The catalogue is designed so that no single sensor separates every class:

| pair                        | optical | hsi | lidar           | sar                  |
|-----------------------------|---------|-----|-----------------|----------------------|
| road vs roof (both asphalt) | context only | context only | yes (height) | partly (layover) |
| grass vs shrub vs trees     | partly  | partly | yes (height) | partly (volume)      |
| oak vs maple (red edge)     | no (metamers in the multispectral bands) | yes | no | no |
| soil smooth vs rough        | no      | no  | no (furrows below the nDSM noise) | yes (roughness) |
| water vs shadowed asphalt   | no      | no  | partly (intensity, dropouts) | yes (specular water) |

and clouds hide part of the optical image. `--classes K` keeps the first K classes of
`CLASSES`; a dropped class is painted as its `fallback` (following the chain), so the layout
stays plausible (a dropped "maple" stand becomes "oak", dropped "concrete" becomes "road").
"""

from __future__ import annotations

from dataclasses import dataclass

from autors.errors import SynthConfigError


@dataclass(frozen=True)
class ClassDef:
    """One land-cover class: its name, spectra source and SAR backscatter (C-band, ~35 deg)."""

    name: str
    asd_files: tuple[str, ...]  # files under the ASD folder; empty = always built-in (water)
    sar_vv_db: float  # mean sigma0 VV
    sar_vh_db: float  # mean sigma0 VH
    sar_spread_db: float  # per-object spread (moisture, wind, vegetation state), uniform +-
    fallback: str | None  # class painted instead when this one is not among the first K


CLASSES: tuple[ClassDef, ...] = (
    ClassDef("water", (), -22.0, -29.0, 2.0, None),
    ClassDef(
        "road",
        ("Asphalt/AsphaltBeachParkingLot01_10.txt", "Asphalt/AsphaltByHardy01_10.txt"),
        -14.5, -23.0, 1.5, None,
    ),
    # Flat bitumen roofs: the same asphalt material as the roads, so only height (and the SAR
    # layover/double bounce around buildings) tells them apart.
    ClassDef(
        "roof",
        ("Asphalt/AsphaltBeachParkingLot01_10.txt", "Asphalt/AsphaltByHardy01_10.txt"),
        -10.0, -19.0, 1.5, "concrete",
    ),
    ClassDef(
        "grass",
        ("GrassByBuilding/GrassByBuilding01_10.txt", "GrassClumpInSun/GrassClumpInSun00_02.txt"),
        -12.0, -19.5, 1.0, "road",
    ),
    ClassDef(
        "oak",
        (
            "LiveOakLeaves/LiveOakLeaves01_10.txt", "LiveOakLeaves/LiveOakLeaves11_20.txt",
            "LiveOakLeaves/LiveOakLeaves41_50.txt", "LiveOakLeaves/LiveOakLeaves61_70.txt",
        ),
        -7.5, -13.0, 1.0, "grass",
    ),
    # Maple = oak with the red edge shifted, then made a metamer of oak for the multispectral
    # sensor (see spectra.make_metamer): only narrow hyperspectral bands resolve it.
    ClassDef("maple", (), -7.5, -13.0, 1.0, "oak"),
    ClassDef("soil_smooth", ("Dirt/Dirt01_05.txt",), -16.0, -24.5, 1.5, "grass"),
    # Same soil, ploughed: identical spectra and nDSM, about 7 dB brighter in SAR.
    ClassDef("soil_rough", ("Dirt/Dirt01_05.txt",), -9.0, -16.5, 1.5, "soil_smooth"),
    ClassDef("concrete", ("Sidewalk/SidewalkInSun.txt",), -12.5, -21.5, 1.5, "road"),
    ClassDef("shrub", ("DarkGreenByBuilding/DarkGreenByBuilding01_10.txt",), -9.5, -15.5, 1.0,
             "grass"),
)

MIN_CLASSES = 4
MAX_CLASSES = len(CLASSES)
CLASS_IDS: dict[str, int] = {c.name: i + 1 for i, c in enumerate(CLASSES)}  # 0 = ignore


def active_classes(k: int) -> tuple[ClassDef, ...]:
    """The first `k` classes (label values 1..k)."""
    if not MIN_CLASSES <= k <= MAX_CLASSES:
        raise SynthConfigError(
            f"classes={k} is out of range: choose {MIN_CLASSES}..{MAX_CLASSES} "
            f"(the catalogue is {', '.join(c.name for c in CLASSES)})"
        )
    return CLASSES[:k]


def remap_table(k: int) -> dict[int, int]:
    """Catalogue id -> id among the first `k` classes, following each class's fallback chain."""
    by_name = {c.name: c for c in CLASSES}
    table: dict[int, int] = {}
    for c in CLASSES:
        cur = c
        while CLASS_IDS[cur.name] > k:
            assert cur.fallback is not None, f"class {cur.name} needs a fallback"
            cur = by_name[cur.fallback]
        table[CLASS_IDS[c.name]] = CLASS_IDS[cur.name]
    return table
