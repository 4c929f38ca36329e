"""Time collapsing after the fusion (`fusion.time`) and normalisation that ignores invalid
dates: per-date fusion never sees what an invalid or padded date holds, the single-date
sensor is fused on every date, padding a sample with invalid dates leaves the training-mode
output (BatchNorm batch statistics) unchanged for every per-date path, clear errors, and
TorchScript (any T) / ONNX (the exported T) parity with a date missing."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fusion import (
    Arch,
    ArchError,
    BranchSpec,
    FusionSpec,
    HeadSpec,
    build_model,
    doy_key,
    mask_key,
)

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]

IN = {"s2": 3, "sar": 2}
T, SIZE = 5, 7


def _arch(position: str = "middle", time: str = "ltae", s2: str = "conv",
          op: str = "gate") -> Arch:
    return Arch({"s2": BranchSpec(s2, 8, 1, 3), "sar": BranchSpec("conv", 4, 1, 3)},
                FusionSpec(op, position, 8, BranchSpec("conv", 8, 0, 3), time=time),
                HeadSpec("centre", 8, 0.0))


def _inputs(b: int = 2, t: int = T, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    m = (torch.rand(b, t, SIZE, SIZE, generator=gen) > 0.3).float()
    m[:, -1] = 0  # a padded date
    return {"s2": torch.randn(b, t, 3, SIZE, SIZE, generator=gen), mask_key("s2"): m,
            doy_key("s2"): torch.sort(torch.randint(1, 366, (b, t), generator=gen))[0].float(),
            "sar": torch.randn(b, 2, SIZE, SIZE, generator=gen)}


def _padded(x: dict[str, torch.Tensor], extra: int = 2) -> dict[str, torch.Tensor]:
    """`x` with `extra` more dates, all invalid, holding noise (a padded batch)."""
    b = x["s2"].shape[0]
    return x | {"s2": torch.cat([x["s2"], 1e3 * torch.randn(b, extra, 3, SIZE, SIZE)], 1),
                mask_key("s2"): torch.cat([x[mask_key("s2")],
                                           torch.zeros(b, extra, SIZE, SIZE)], 1),
                doy_key("s2"): torch.cat([x[doy_key("s2")], torch.full((b, extra), 400.0)], 1)}


@pytest.mark.parametrize("position", ["early", "middle"])
def test_per_date_fusion_ignores_invalid_dates_and_uses_the_single_date_sensor(
        position: str) -> None:
    torch.manual_seed(0)
    model = build_model(_arch(position), IN, 3, dates={"s2": T}).eval()
    assert model.time_after and model.branch_channels["s2"] == 3  # read per date, not stacked
    x = _inputs()
    noisy = x | {"s2": torch.where(x[mask_key("s2")][:, :, None] > 0, x["s2"], 1e3)}
    shorter = {k: (v[:, :-1] if k.startswith("s2") else v) for k, v in x.items()}
    with torch.no_grad():
        want = model(x)
        assert want.shape == (2, 3) and torch.isfinite(want).all()
        torch.testing.assert_close(model(noisy), want)
        torch.testing.assert_close(model(shorter), want)  # one padded date less
        assert (model(x | {"sar": torch.randn(2, 2, SIZE, SIZE)}) - want).abs().max() > 1e-4
        later = x | {doy_key("s2"): x[doy_key("s2")] + 60.0}  # L-TAE reads the dates' days
        assert (model(later) - want).abs().max() > 1e-4


@pytest.mark.parametrize(("kind", "position", "time"), [
    ("time_ltae", "middle", "branch"),  # per-date encoder inside the branch
    ("time_gru_first", "middle", "branch"),  # per-date 1x1 embedding
    ("conv", "middle", "gru"),  # per-date branch, time after the fusion
    ("conv", "early", "mean"),  # per-date fusion op on raw inputs
])
def test_padding_with_invalid_dates_leaves_the_training_output_unchanged(
        kind: str, position: str, time: str) -> None:
    torch.manual_seed(0)
    model = build_model(_arch(position, time, kind, op="concat"), IN, 3, dates={"s2": T})
    model.train()  # BatchNorm normalises with the batch's statistics
    x = _inputs(b=3)
    x[mask_key("s2")][1, 1] = 0  # a missing acquisition inside the series too
    torch.testing.assert_close(model(_padded(x)), model(x), rtol=1e-4, atol=1e-5)


def test_clear_errors() -> None:
    for position in ("multi", "late"):
        with pytest.raises(ArchError, match=rf"fusion\.time: '{position}' fusion cannot"):
            _arch(position).validate()
    with pytest.raises(ArchError, match=r"fusion\.time: unknown value 'lstmx'"):
        Arch.from_dict(_arch(time="lstmx").to_dict())
    with pytest.raises(ArchError, match=r"fusion\.time: 'ltae' collapses the dates after"):
        build_model(_arch(s2="time_gru"), IN, 3, dates={"s2": T})  # nothing read per date
    with pytest.raises(ArchError, match=r"need one time axis"):
        build_model(_arch().to_dict() | {"branches": {"s2": {"kind": "conv"},
                                                      "sar": {"kind": "conv"}}},
                    IN, 3, dates={"s2": T, "sar": T + 1})
    assert _arch(time="branch").to_dict()["fusion"].keys() == {"op", "position", "width",
                                                               "trunk"}  # hash unchanged
    assert Arch.from_dict(_arch().to_dict()) == _arch()


# a recurrent operator after a gate: its pooled features keep their rank in ONNX (the GRU's
# gates split a known size)
@pytest.mark.parametrize(("position", "time", "op"), [("middle", "gru", "gate"),
                                                      ("early", "ltae", "concat")])
def test_torchscript_and_onnx_parity_with_a_date_missing(position: str, time: str, op: str,
                                                         tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(_arch(position, time, op=op), IN, 3, dates={"s2": T})
    model(_inputs(4, seed=2))
    model.eval()
    x = _inputs()
    x[mask_key("s2")][0, 2] = 0  # a missing acquisition
    torch.jit.save(torch.jit.script(model), tmp_path / "m.ts")
    loaded = torch.jit.load(tmp_path / "m.ts")
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=1e-5)
        longer = _inputs(t=T + 2, seed=3)  # TorchScript: any T
        torch.testing.assert_close(loaded(longer), model(longer), rtol=0, atol=1e-5)
    f = io.BytesIO()
    names = list(x)
    torch.onnx.export(model, (x, {}), f, dynamo=False, opset_version=17, input_names=names,
                      output_names=["logits"],
                      dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}})
    session = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {n: v.numpy() for n, v in x.items()})
    np.testing.assert_allclose(out, want.numpy(), rtol=0, atol=1e-4)
