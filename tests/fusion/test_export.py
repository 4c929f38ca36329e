"""Models script with TorchScript and export to ONNX (dynamic batch) with matching outputs.

ONNX goes through the TorchScript-based exporter (`dynamo=False`): the default dynamo exporter
of torch 2.13 needs the onnxscript package. The dict input is passed as `(inputs, {})`, since
a trailing dict in `args` would be read as keyword arguments. Sensors whose branch is 'off'
do not become ONNX inputs (the exporter drops unused inputs).

With validity masks (`<sensor>__mask`, [B, H, W]) in the inputs, the traced graph takes them as
inputs named so; without them it has none and behaves as with all-ones masks.
"""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fusion import Arch, BranchSpec, DecoderSpec, FusionSpec, HeadSpec, build_model, mask_key

# torch 2.13 deprecates torch.jit.* and the TorchScript-based ONNX exporter; both still work
# and are what the export issue ships, so their deprecation notices are expected here.
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]

IN_CHANNELS = {"hsi": 48, "lidar": 1, "sar": 2, "s2": 13}
CASES = {
    "two_branch": ("two_branch", 11),
    "multi_cross_attention_seg": (
        Arch(
            {"hsi": BranchSpec("spectral", 6, 1, 3), "lidar": BranchSpec("off"),
             "sar": BranchSpec("sar", 5, 2, 3), "s2": BranchSpec("separable", 4, 0, 5)},
            FusionSpec("cross_attention", "multi", 6, BranchSpec("residual", 6, 1, 3)),
            HeadSpec("segmentation", 8, 0.2),
        ),
        16,
    ),
    "late_gate_centre": (
        Arch(
            {"hsi": BranchSpec("conv", 4, 1, 3), "lidar": BranchSpec("residual", 4, 1, 3),
             "sar": BranchSpec("sar", 4, 1, 3), "s2": BranchSpec("off")},
            FusionSpec("gate", "late"),
            HeadSpec("centre", 8, 0.3),
        ),
        7,
    ),
    # encoder-decoders at a side that is no multiple of their output stride (ceil pooling, crops)
    "multi_unet_aspp_seg": (
        Arch(
            {"hsi": BranchSpec("spectral", 6, 2, 3), "lidar": BranchSpec("conv", 4, 1, 3),
             "sar": BranchSpec("sar", 5, 2, 3), "s2": BranchSpec("off")},
            FusionSpec("gate", "multi", 6, BranchSpec("conv", 6, 1, 3)),
            HeadSpec("segmentation", 0, 0.1),
            decoder=DecoderSpec(8, (0, 2), "transposed", "aspp"),
        ),
        21,
    ),
    "late_unet_seg": (
        Arch(
            {"hsi": BranchSpec("conv", 4, 2, 3), "lidar": BranchSpec("residual", 4, 1, 3),
             "sar": BranchSpec("off"), "s2": BranchSpec("separable", 4, 3, 3)},
            FusionSpec("sum", "late"),
            HeadSpec("segmentation", 6, 0.1),
            decoder=DecoderSpec(6, (0, 1, 2), "bilinear", "none"),
        ),
        18,
    ),
    "early_se": (
        Arch(
            {s: BranchSpec("conv") for s in IN_CHANNELS},
            FusionSpec("se", "early", 8, BranchSpec("conv", 8, 2, 3)),
            HeadSpec("patch", 0, 0.0),
        ),
        9,
    ),
}


def _model(case: str) -> tuple[torch.nn.Module, int]:
    arch, size = CASES[case]
    torch.manual_seed(0)
    model = build_model(arch, IN_CHANNELS, 4)
    # one forward in train mode so BatchNorm statistics are not the defaults
    model({s: torch.randn(8, c, size, size) for s, c in IN_CHANNELS.items()})
    return model.eval(), size


def _inputs(batch: int, size: int, masked: bool = False) -> dict[str, torch.Tensor]:
    """Sensor tensors; `masked`: also their masks (about 30 % holes, the first sample without
    'sar', the last with no sensor at its first pixel), sensors zeroed where invalid."""
    gen = torch.Generator().manual_seed(batch)
    x = {s: torch.randn(batch, c, size, size, generator=gen) for s, c in IN_CHANNELS.items()}
    if not masked:
        return x
    masks = {}
    for s in IN_CHANNELS:
        m = (torch.rand(batch, size, size, generator=gen) > 0.3).float()
        if s == "sar":
            m[0] = 0
        m[-1, 0, 0] = 0
        masks[mask_key(s)] = m
        x[s] = x[s] * m[:, None]
    return {**x, **masks}


@pytest.mark.parametrize("masked", [False, True], ids=["no_masks", "masks"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_torchscript_matches(case: str, masked: bool, tmp_path) -> None:
    model, size = _model(case)
    torch.jit.save(torch.jit.script(model), tmp_path / "model.ts")
    loaded = torch.jit.load(tmp_path / "model.ts")
    for batch in (1, 5):
        x = _inputs(batch, size, masked)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("masked", [False, True], ids=["no_masks", "masks"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_matches_with_dynamic_batch(case: str, masked: bool) -> None:
    model, size = _model(case)
    used = model.arch.sensors
    names = list(_inputs(2, size, masked))  # the dict's order is the inputs' order
    f = io.BytesIO()
    torch.onnx.export(
        model, (_inputs(2, size, masked), {}), f, dynamo=False, opset_version=17,
        input_names=names, output_names=["logits"],
        dynamic_axes={**{s: {0: "batch"} for s in names}, "logits": {0: "batch"}},
    )
    session = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    # inputs of sensors with an 'off' branch (and their masks) are dropped
    want_names = used + ([mask_key(s) for s in used] if masked else [])
    assert [i.name for i in session.get_inputs()] == want_names
    for batch in (1, 7):
        x = _inputs(batch, size, masked)
        (out,) = session.run(None, {s: x[s].numpy() for s in want_names})
        with torch.no_grad():
            want = model(x).numpy()
        assert out.shape == want.shape and np.isfinite(out).all()
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-4)
