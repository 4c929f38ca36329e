"""Plain-PyTorch fusion networks: sensor branches, fusion operators, heads, build_model.

Imports torch and the standard library only (a test enforces it): an exported model is
`arch.json` + a state_dict, rebuilt by `build_model` alone.

Models take `{sensor: [B, C, H, W]}` and, optionally, each sensor's validity mask
`{mask_key(sensor): [B, H, W]}` (`<sensor>__mask`, 1 = valid; absent = valid everywhere).
"""

# Importing the part modules registers their classes in the registries.
from fusion import branches as _branches  # noqa: F401
from fusion import complex as _complex  # noqa: F401
from fusion import heads as _heads  # noqa: F401
from fusion import ops as _ops  # noqa: F401
from fusion import positions as _positions  # noqa: F401
from fusion import temporal as _temporal  # noqa: F401
from fusion.arch import (
    CLOUDED_KINDS,
    DOY_SUFFIX,
    HEAD_STAGES,
    MASK_SUFFIX,
    OFF,
    TIME_IN_BRANCH,
    VERSION,
    Arch,
    BranchSpec,
    DecoderSpec,
    FusionSpec,
    HeadSpec,
    TargetHeadSpec,
    TrainingSpec,
)
from fusion.baselines import BASELINES, DENSE_BASELINES, baseline_arch, baselines_for
from fusion.branches import Branch
from fusion.build import build_model, count_params
from fusion.errors import ArchError
from fusion.heads import Head, MultiHead
from fusion.ops import FusionOp
from fusion.positions import FeatureExtractor, FusionModel, doy_key, mask_key
from fusion.receptive import receptive_radius
from fusion.registry import BRANCHES, FUSION_OPS, HEADS, POSITIONS, TIME_OPS, Registry

__all__ = [
    "BASELINES",
    "BRANCHES",
    "CLOUDED_KINDS",
    "DENSE_BASELINES",
    "DOY_SUFFIX",
    "FUSION_OPS",
    "HEADS",
    "HEAD_STAGES",
    "MASK_SUFFIX",
    "OFF",
    "POSITIONS",
    "TIME_IN_BRANCH",
    "TIME_OPS",
    "VERSION",
    "Arch",
    "ArchError",
    "Branch",
    "BranchSpec",
    "DecoderSpec",
    "FeatureExtractor",
    "FusionModel",
    "FusionOp",
    "FusionSpec",
    "Head",
    "HeadSpec",
    "MultiHead",
    "Registry",
    "TargetHeadSpec",
    "TrainingSpec",
    "baseline_arch",
    "baselines_for",
    "build_model",
    "count_params",
    "doy_key",
    "mask_key",
    "receptive_radius",
]
