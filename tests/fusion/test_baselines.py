"""Named baselines build for any sensor mix, by name, with the head the task needs."""

from __future__ import annotations

import pytest
import torch

import fusion
from fusion import ArchError, baseline_arch, build_model

SENSOR_SETS = [{"a": 3}, {"hsi": 48, "lidar": 1}, {"hsi": 48, "lidar": 1, "sar": 2, "s2": 13}]


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("name", fusion.BASELINES)
def test_baseline_builds_by_name_for_1_2_4_sensors(name: str, dense: bool, make_inputs) -> None:
    if name in fusion.DENSE_BASELINES and not dense:
        with pytest.raises(ArchError, match=f"baseline '{name}' is an encoder-decoder"):
            build_model(name, SENSOR_SETS[0], 4, dense=dense)
        assert name not in fusion.baselines_for(dense)
        return
    for in_channels in SENSOR_SETS:
        model = build_model(name, in_channels, 4, dense=dense)
        size = 16 if dense else 7
        y = model(make_inputs(in_channels, size))
        assert tuple(y.shape) == ((2, 4, size, size) if dense else (2, 4))
        assert model.arch == baseline_arch(name, in_channels, dense=dense)
        assert model.arch.sensors == list(in_channels)


def test_two_branch_gives_the_spectral_stream_to_the_richest_sensor() -> None:
    arch = baseline_arch("two_branch", {"lidar": 1, "hsi": 144, "sar": 2})
    assert {s: b.kind for s, b in arch.branches.items()} == {
        "lidar": "conv", "hsi": "spectral", "sar": "conv"
    }
    assert (arch.fusion.position, arch.fusion.op) == ("middle", "concat")


def test_baselines_differ_in_position() -> None:
    positions = {n: baseline_arch(n, {"a": 3, "b": 1}, dense=True).fusion.position
                 for n in fusion.BASELINES}
    assert positions == {"early_cnn": "early", "late_cnn": "late", "two_branch": "middle",
                         "early_cnn_centre": "early", "late_cnn_centre": "late",
                         "two_branch_centre": "middle", "unet": "early",
                         "two_stream_unet": "multi"}


def test_baselines_for_a_task_are_distinct_networks() -> None:
    assert fusion.baselines_for(dense=True) == ("early_cnn", "late_cnn", "two_branch", "unet",
                                                "two_stream_unet")
    assert "unet" not in fusion.baselines_for(dense=False)
    assert "early_cnn_centre" in fusion.baselines_for(dense=False)


def test_unet_baselines_are_encoder_decoders_with_every_skip(make_inputs) -> None:
    sensors = {"s1": 2, "s2": 13}
    unet = baseline_arch("unet", sensors, dense=True)
    two = baseline_arch("two_stream_unet", sensors, dense=True)
    assert unet.depth == two.depth == 4
    assert unet.decoder.skips == two.decoder.skips == (0, 1, 2, 3)
    # early fusion of the stacked bands vs one encoder per sensor, fused at every scale
    assert (unet.fusion.position, two.fusion.position) == ("early", "multi")
    model = build_model("two_stream_unet", sensors, 2, dense=True)
    assert model.reduction == 16 and len(model.branches) == 2
    assert tuple(model(make_inputs(sensors, 20)).shape) == (2, 2, 20, 20)


@pytest.mark.parametrize("name", ["early_cnn", "late_cnn", "two_branch"])
def test_centre_variant_differs_only_in_the_head(name: str) -> None:
    sensors = {"hsi": 48, "lidar": 1}
    patch, centre = baseline_arch(name, sensors), baseline_arch(name + "_centre", sensors)
    assert (patch.head.kind, centre.head.kind) == ("patch", "centre")
    assert (patch.branches, patch.fusion) == (centre.branches, centre.fusion)
    assert patch.head.hidden == centre.head.hidden and patch.head.dropout == centre.head.dropout
    # a segmentation task gets the same dense head either way
    assert baseline_arch(name + "_centre", sensors, dense=True) == \
        baseline_arch(name, sensors, dense=True)


def test_unknown_baseline_lists_the_valid_ones() -> None:
    with pytest.raises(ArchError, match=r"unknown baseline 'resnet': valid baselines are "
                                        r"\['early_cnn', 'late_cnn', 'two_branch', 'early_cnn_centre', "
                                        r"'late_cnn_centre', 'two_branch_centre', 'unet', "
                                        r"'two_stream_unet'\]"):
        build_model("resnet", {"a": 3}, 2)


def test_baseline_weights_reload_exactly(make_inputs) -> None:
    in_channels = {"hsi": 48, "lidar": 1}
    torch.manual_seed(0)
    a = build_model("two_branch", in_channels, 3).eval()
    b = build_model(a.arch.to_dict(), in_channels, 3).eval()
    b.load_state_dict(a.state_dict())
    x = make_inputs(in_channels, 11)
    assert torch.equal(a(x), b(x))
