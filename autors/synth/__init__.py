"""Synthetic co-registered multi-sensor scenes where the fusion topology matters.

`generate_scene(out_dir, SynthConfig.small())` writes optical.tif, sar.tif, lidar.tif,
hsi.tif, labels.tif, train.tif, test.tif, task.yaml and scene.json; see `catalogue` for why no
single sensor separates every class and `spectra` for where the spectra come from.
`generate_dataset(out_dir, DatasetConfig(scenes=N))` writes N differing scenes in the
Sen1Floods11 v1.1 release layout (see `dataset`).
"""

from autors.errors import SynthConfigError
from autors.synth.config import SENSORS, SynthConfig
from autors.synth.dataset import DatasetConfig, DatasetInfo, generate_dataset
from autors.synth.scene import SceneInfo, generate_scene

__all__ = ["SENSORS", "DatasetConfig", "DatasetInfo", "SceneInfo", "SynthConfig",
           "SynthConfigError", "generate_dataset", "generate_scene"]
