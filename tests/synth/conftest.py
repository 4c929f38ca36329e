"""One small scene per test module, generated once (it takes about half a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autors.synth import SceneInfo, SynthConfig, generate_scene

SIZE = 128  # the small preset: big enough for every class on both sides of the split


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> SceneInfo:
    out: Path = tmp_path_factory.mktemp("scene")
    return generate_scene(out, SynthConfig(size=SIZE, seed=3, n_train_per_class=10))
