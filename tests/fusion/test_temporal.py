"""Time-series branches (`fusion.temporal`) and time-series inputs of every position: what an
invalid or padded date holds never matters, timing is seen through the day of year (not the
padded position), a pixel without a valid date is invalid for fusion, a time series read by a
single-date branch or early fusion has its dates stacked, and models script (any T) and
export to ONNX (the exported T) with matching outputs."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fusion import (
    BRANCHES,
    TIME_OPS,
    Arch,
    ArchError,
    BranchSpec,
    DecoderSpec,
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

TEMPORAL = [k for k in BRANCHES.names() if BRANCHES.get(k).input_kind == "temporal"]
IN = {"s2": 3, "sar": 2}
T, SIZE = 5, 7


def _arch(kind: str, position: str, dense: bool = False) -> Arch:
    trunk = BranchSpec("off") if position == "late" else BranchSpec("conv", 8, 0, 3)
    return Arch({"s2": BranchSpec(kind, 8, 1, 3), "sar": BranchSpec("conv", 4, 1, 3)},
                FusionSpec("gate", position, 8, trunk),
                HeadSpec("segmentation" if dense else "centre", 8, 0.0),
                decoder=DecoderSpec(8, (0,)) if dense else None)


def _inputs(b: int = 2, t: int = T, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    m = (torch.rand(b, t, SIZE, SIZE, generator=gen) > 0.3).float()
    m[:, -1] = 0  # a padded date
    m[0, :, 0, 0] = 0  # a pixel with no valid date
    return {"s2": torch.randn(b, t, 3, SIZE, SIZE, generator=gen), mask_key("s2"): m,
            doy_key("s2"): torch.sort(torch.randint(1, 366, (b, t), generator=gen))[0].float(),
            "sar": torch.randn(b, 2, SIZE, SIZE, generator=gen)}


def test_every_temporal_kind_states_its_operator_and_where_time_collapses() -> None:
    assert len(TEMPORAL) == 2 * len(TIME_OPS)
    for kind in TEMPORAL:
        cls = BRANCHES.get(kind)
        assert cls.operator in TIME_OPS and cls.collapse in ("after", "before")
        assert kind == f"time_{cls.operator}" + ("_first" if cls.collapse == "before" else "")


@pytest.mark.parametrize("kind", TEMPORAL)
def test_invalid_and_padded_dates_never_matter(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(_arch(kind, "middle"), IN, 3, dates={"s2": T}).eval()
    x = _inputs()
    noisy = dict(x)
    noisy["s2"] = torch.where(x[mask_key("s2")][:, :, None] > 0, x["s2"], 1e3)
    shorter = {k: (v[:, :-1] if k.startswith("s2") else v) for k, v in x.items()}
    with torch.no_grad():
        want = model(x)
        assert torch.isfinite(want).all()
        torch.testing.assert_close(model(noisy), want)
        torch.testing.assert_close(model(shorter), want)  # T differs: one padded date less


def test_timing_is_seen_through_the_day_of_year() -> None:
    torch.manual_seed(0)
    x = _inputs()
    x[mask_key("s2")] = torch.ones_like(x[mask_key("s2")])
    late = dict(x)
    late[doy_key("s2")] = x[doy_key("s2")] + 60.0  # the same values, two months later
    perm = torch.tensor([3, 0, 4, 2, 1])  # the same dates in another order
    shuffled = dict(x)
    shuffled["s2"], shuffled[doy_key("s2")] = x["s2"][:, perm], x[doy_key("s2")][:, perm]
    with torch.no_grad():
        ltae = build_model(_arch("time_ltae", "middle"), IN, 3, dates={"s2": T}).eval()
        assert (ltae(late) - ltae(x)).abs().max() > 1e-3
        torch.testing.assert_close(ltae(shuffled), ltae(x))  # dates, not positions
        mean = build_model(_arch("time_mean", "middle"), IN, 3, dates={"s2": T}).eval()
        torch.testing.assert_close(mean(late), mean(x))  # the time-blind reference


def test_a_pixel_without_a_valid_date_is_invalid_for_fusion() -> None:
    torch.manual_seed(0)
    model = build_model(_arch("time_gru", "multi", dense=True), IN, 3, dates={"s2": T}).eval()
    x = _inputs()
    none = dict(x)
    none[mask_key("s2")] = torch.zeros_like(x[mask_key("s2")])
    alone = {"sar": x["sar"], "s2": x["s2"], mask_key("s2"): none[mask_key("s2")],
             doy_key("s2"): x[doy_key("s2")]}
    with torch.no_grad():
        out = model(alone)
        assert out.shape == (2, 3, SIZE, SIZE) and torch.isfinite(out).all()
        # every date invalid: the s2 values are ignored entirely
        alone2 = dict(alone)
        alone2["s2"] = torch.randn_like(x["s2"])
        torch.testing.assert_close(model(alone2), out)


def test_single_date_branches_and_early_fusion_stack_the_dates() -> None:
    torch.manual_seed(0)
    for position in ("early", "middle"):
        model = build_model(_arch("conv", position), IN, 3, dates={"s2": T}).eval()
        assert model.branch_channels["s2"] == T * 3
        x = _inputs()
        assert model(x).shape == (2, 3)
        with pytest.raises(ValueError, match=r"stacks 5 dates as channels, got 4"):
            model({k: (v[:, :-1] if k.startswith("s2") else v) for k, v in x.items()})


def test_clear_errors() -> None:
    with pytest.raises(ArchError, match=r"branches\.s2\.kind: 'time_gru' reads a time series"):
        build_model(_arch("time_gru", "middle"), IN, 3)
    with pytest.raises(ValueError, match=r"dates\['opt'\]"):
        build_model(_arch("time_gru", "middle"), IN, 3, dates={"opt": 4})
    model = build_model(_arch("time_gru", "middle"), IN, 3, dates={"s2": T})
    x = _inputs()
    with pytest.raises(ValueError, match=r"missing input 's2__doy'"):
        model({k: v for k, v in x.items() if k != doy_key("s2")})
    with pytest.raises(ValueError, match=r"time-series sensor 's2' needs \[B, T, 3, H, W\]"):
        model(x | {"s2": x["s2"][:, 0]})
    with pytest.raises(ValueError, match=r"mask 's2__mask' needs \[B, T, H, W\]"):
        model(x | {mask_key("s2"): x[mask_key("s2")][:, 0]})
    with pytest.raises(ArchError, match=r"fusion\.trunk\.kind: 'time_mean'"):
        arch = _arch("time_mean", "middle").to_dict()
        arch["fusion"]["trunk"] = {"kind": "time_mean", "width": 8, "depth": 0, "kernel": 3}
        Arch.from_dict(arch).validate()


# the GRU runs in the tests above; its loop over dates is the LSTM's, scripted and exported here
CASES = [("time_ltae_first", "multi", True), ("time_lstm", "late", False)]


@pytest.mark.parametrize(("kind", "position", "dense"), CASES)
def test_torchscript_and_onnx_parity(kind: str, position: str, dense: bool,
                                     tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(_arch(kind, position, dense), IN, 3, dates={"s2": T})
    model(_inputs(4, seed=2))
    model.eval()
    x = _inputs()
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
    assert session.get_inputs()[0].shape[1:3] == [T, 3]  # the exported T, the bands of a date
    (out,) = session.run(None, {n: v.numpy() for n, v in x.items()})
    np.testing.assert_allclose(out, want.numpy(), rtol=0, atol=1e-4)
    # gradients through invalid dates and an all-invalid pixel stay finite
    model.train()
    xs = {k: v.clone().requires_grad_(k == "s2") for k, v in x.items()}
    model(xs).sum().backward()
    assert torch.isfinite(xs["s2"].grad).all()
