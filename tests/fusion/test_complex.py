"""Complex SAR branches (`fusion.complex`): the complex convolution is a complex
multiplication, the complex networks' and the feature branch's outputs ignore one phase
rotation of every input (an SLC's absolute phase is random), dropout drops whole complex
channels, odd channel counts are refused, and models with these branches script with
TorchScript and export to ONNX (real/imaginary channel pairs as inputs) with matching outputs,
in every fusion position and in encoder-decoders, with masks."""

from __future__ import annotations

import io
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fusion import (
    BRANCHES,
    Arch,
    ArchError,
    BranchSpec,
    DecoderSpec,
    FusionSpec,
    HeadSpec,
    build_model,
    mask_key,
)
from fusion.complex import ComplexConv2d

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]

COMPLEX_KINDS = ("complex_modrelu", "complex_crelu", "complex_ampphase", "complex_features")
IN = {"slc": 4, "opt": 3}  # slc: HH, VV as (re, im) pairs


def _rotate(x: torch.Tensor, phi: float) -> torch.Tensor:
    """Every complex value of interleaved pairs [B, 2P, H, W] times exp(i phi)."""
    re, im = x[:, 0::2], x[:, 1::2]
    c, s = math.cos(phi), math.sin(phi)
    out = torch.empty_like(x)
    out[:, 0::2], out[:, 1::2] = c * re - s * im, s * re + c * im
    return out


def test_complex_conv_is_a_complex_multiplication() -> None:
    torch.manual_seed(0)
    conv = ComplexConv2d(2, 3, 3)
    z = torch.randn(2, 5, 6, dtype=torch.complex64)  # [cin, H, W]
    out = conv(torch.cat([z.real, z.imag])[None])[0]  # block layout [re; im]
    w = (conv.weight_re + 1j * conv.weight_im).detach().numpy()  # [cout, cin, k, k]
    zp = np.pad(z.numpy(), ((0, 0), (1, 1), (1, 1)))
    want = np.zeros((3, 5, 6), np.complex64)
    for dy in range(3):
        for dx in range(3):
            want += np.einsum("oc,chw->ohw", w[:, :, dy, dx], zp[:, dy:dy + 5, dx:dx + 6])
    got = (out[:3] + 1j * out[3:]).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("kind", ["complex_modrelu", "complex_ampphase", "complex_features"])
def test_outputs_ignore_a_global_phase(kind: str) -> None:
    torch.manual_seed(0)
    branch = BRANCHES.get(kind)(4, 8, 2, 3)
    x = torch.randn(3, 4, 9, 9)
    branch(x)  # batch statistics of a training step
    branch.eval()
    with torch.no_grad():
        for a, b in zip(branch.forward_stages(x), branch.forward_stages(_rotate(x, 2.0))):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # the phase between HH and VV does matter
    y = x.clone()
    y[:, 2:] = _rotate(x[:, 2:], 2.0)
    with torch.no_grad():
        assert not torch.allclose(branch(x), branch(y), atol=1e-3)


def test_dropout_drops_real_and_imaginary_parts_together_and_odd_channels_fail() -> None:
    branch = BRANCHES.get("complex_modrelu")(4, 8, 1, 3).with_dropout(0.5)
    z = branch._drop_complex(torch.ones(4, 16, 3, 3))
    assert torch.equal(z[:, :8] == 0, z[:, 8:] == 0) and (z == 0).any() and (z != 0).any()
    for kind in COMPLEX_KINDS:
        assert BRANCHES.get(kind).input_kind == "complex"
        with pytest.raises(ArchError, match="pairs"):
            BRANCHES.get(kind)(3, 8, 1, 3)
    assert BRANCHES.get("conv").input_kind == "real"


def _arch(kind: str, position: str, dense: bool) -> Arch:
    trunk = BranchSpec("off") if position == "late" else BranchSpec("conv", 8, 0, 3)
    return Arch(
        {"slc": BranchSpec(kind, 8, 1 if dense else 2, 3, dropout=0.1),
         "opt": BranchSpec("conv", 4, 1, 3)},
        FusionSpec("gate", position, 8, trunk),
        HeadSpec("segmentation" if dense else "centre", 8, 0.1),
        decoder=DecoderSpec(8, (0,)) if dense else None)


# early fusion stacks the raw inputs (no branch), so the positions that run branches are here
CASES = [("complex_modrelu", "multi", True), ("complex_features", "late", True),
         ("complex_crelu", "middle", False), ("complex_features", "middle", False)]


@pytest.mark.parametrize(("kind", "position", "dense"), CASES)
def test_torchscript_and_onnx_parity(kind: str, position: str, dense: bool,
                                     tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(_arch(kind, position, dense), IN, 3)
    size = 11
    model({s: torch.randn(4, c, size, size) for s, c in IN.items()})
    model.eval()
    gen = torch.Generator().manual_seed(1)
    x = {s: torch.randn(2, c, size, size, generator=gen) for s, c in IN.items()}
    m = (torch.rand(2, size, size, generator=gen) > 0.3).float()
    x |= {mask_key("slc"): m, mask_key("opt"): torch.ones(2, size, size)}
    x["slc"] = x["slc"] * m[:, None]  # invalid pixels are 0 + 0i
    torch.jit.save(torch.jit.script(model), tmp_path / "m.ts")
    loaded = torch.jit.load(tmp_path / "m.ts")
    with torch.no_grad():
        want = model(x)
        assert torch.isfinite(want).all()
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=1e-5)
    f = io.BytesIO()
    names = list(x)
    torch.onnx.export(model, (x, {}), f, dynamo=False, opset_version=17, input_names=names,
                      output_names=["logits"],
                      dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}})
    session = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1] == 4  # the real/imaginary channel pairs
    (out,) = session.run(None, {n: v.numpy() for n, v in x.items()})
    np.testing.assert_allclose(out, want.numpy(), rtol=0, atol=1e-4)
    # a gradient through zero-valued (invalid) pixels stays finite
    model.train()
    xs = {k: v.clone().requires_grad_(k == "slc") for k, v in x.items()}
    model(xs).sum().backward()
    assert torch.isfinite(xs["slc"].grad).all()


def test_the_trunk_refuses_complex_kinds() -> None:
    arch = _arch("complex_features", "middle", False).to_dict()
    arch["fusion"]["trunk"] = {"kind": "complex_modrelu", "width": 8, "depth": 0, "kernel": 3}
    with pytest.raises(ArchError, match=r"fusion\.trunk\.kind: 'complex_modrelu' reads complex"):
        Arch.from_dict(arch).validate()
