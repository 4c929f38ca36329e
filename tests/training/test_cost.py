"""Cost of a model small enough to count by hand."""

from __future__ import annotations

import math

import torch
from torch import nn

from autors.training.cost import count_flops, measure_cost
from fusion import count_params


class TwoSensorNet(nn.Module):
    """optical [B,3,P,P] -> conv3x3 (3->4) -> mean pool; lidar [B,1,P,P] ignored except by
    a 1x1 conv (1->2, no bias); concat 6 -> linear 6->2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)  # 3*4*9 + 4 = 112 params
        self.point = nn.Conv2d(1, 2, 1, bias=False)  # 2 params
        self.fc = nn.Linear(6, 2)  # 6*2 + 2 = 14 params

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        a = self.conv(x["optical"]).mean(dim=(2, 3))  # [B, 4]
        b = self.point(x["lidar"]).mean(dim=(2, 3))  # [B, 2]
        return self.fc(torch.cat([a, b], dim=1))  # [B, 2]


def test_params_and_flops_by_hand() -> None:
    model = TwoSensorNet()
    assert count_params(model) == 112 + 2 + 14
    # P = 5: conv3x3 -> 4*5*5 outputs x 27 MACs = 2700 MACs; 1x1 conv -> 2*5*5 x 1 = 50 MACs;
    # linear 6 x 2 = 12 MACs. 2 FLOPs per MAC: 2 * (2700 + 50 + 12) = 5524.
    assert count_flops(model, {"optical": 3, "lidar": 1}, 5) == 5524


def test_measure_cost_fills_every_field_on_cpu() -> None:
    model = TwoSensorNet().train()
    cost = measure_cost(model, {"optical": 3, "lidar": 1}, 5, warmup=1, repeats=3)
    assert model.training  # the caller's model is not switched to eval
    assert cost.params == 128 and cost.flops == 5524
    assert cost.throughput_batch == 256  # tiny model: far below the FLOP budget
    assert cost.threads == torch.get_num_threads()
    for ms in (cost.latency_ms_b1, cost.latency_ms_per_sample_b256):
        assert math.isfinite(ms) and ms > 0
    # batching amortises per-call overhead: per-sample time at 256 is below one batch-1 call
    assert cost.latency_ms_per_sample_b256 < cost.latency_ms_b1
