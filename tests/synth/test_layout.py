"""The ground-truth world: spatially coherent, every class present, plausible heights."""

from __future__ import annotations

import numpy as np
import pytest

from autors.synth.catalogue import CLASS_IDS, CLASSES, remap_table
from autors.synth.illumination import Sun, cast_shadow
from autors.synth.layout import make_layout


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layout_is_coherent_and_has_every_class(seed: int) -> None:
    world = make_layout(128, 2.0, len(CLASSES), np.random.default_rng(seed))
    lab = world.labels
    same = np.mean(np.concatenate([(lab[1:] == lab[:-1]).ravel(), (lab[:, 1:] == lab[:, :-1]).ravel()]))
    assert same > 0.8, "parcels and objects, not per-pixel noise"
    counts = np.bincount(lab.ravel(), minlength=len(CLASSES) + 1)[1:]
    assert (counts > 0.01 * lab.size).all(), dict(zip((c.name for c in CLASSES), counts))
    assert counts.max() < 0.4 * lab.size


def test_heights_match_the_classes() -> None:
    world = make_layout(128, 2.0, len(CLASSES), np.random.default_rng(5))
    h, lab = world.height, world.labels
    assert h[lab == CLASS_IDS["roof"]].min() >= 4.0
    assert np.median(h[lab == CLASS_IDS["oak"]]) > 5.0
    assert np.median(h[lab == CLASS_IDS["maple"]]) > 5.0
    assert 0.5 <= np.median(h[lab == CLASS_IDS["shrub"]]) <= 3.0
    for flat in ("water", "road", "soil_smooth", "soil_rough", "concrete"):
        assert h[lab == CLASS_IDS[flat]].max() < 0.5, flat
    assert h[lab == CLASS_IDS["grass"]].max() < 0.5


def test_fewer_classes_fold_into_their_fallbacks() -> None:
    table = remap_table(6)
    assert table[CLASS_IDS["shrub"]] == CLASS_IDS["grass"]
    assert table[CLASS_IDS["concrete"]] == CLASS_IDS["road"]
    assert table[CLASS_IDS["soil_rough"]] == CLASS_IDS["grass"]  # via soil_smooth
    world = make_layout(96, 2.0, 6, np.random.default_rng(0))
    assert set(np.unique(world.labels)) <= set(range(1, 7))


def test_buildings_cast_shadows_away_from_the_sun() -> None:
    height = np.zeros((40, 40), np.float32)
    height[15:25, 15:25] = 10.0
    shadow = cast_shadow(height, 2.0, Sun(azimuth_deg=180.0, elevation_deg=45.0))
    # sun in the south: the shadow falls north of the block, 10 m / tan(45) = 5 pixels long
    # (measured between pixel centres: 4 to 5 pixels)
    assert shadow[11:15, 15:25].all()
    assert not shadow[25:, :].any() and not shadow[:9, :].any()
