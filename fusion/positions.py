"""Fusion positions: the four ways of wiring branches, fusion op, trunk and head into a model.

Every model takes `{sensor: [B, C_s, H, W]}` (the full task dict: sensors whose branch is
"off" are accepted and ignored) and returns logits `[B, K]` or, with a dense head,
`[B, K, H, W]`.
"""

# No `from __future__ import annotations`: TorchScript reads the class-level attribute
# annotations below and cannot resolve them from strings.
import torch
from torch import Tensor, nn

from fusion.arch import Arch, BranchSpec
from fusion.registry import BRANCHES, FUSION_OPS, HEADS, POSITIONS


def build_branch(spec: BranchSpec, in_channels: int) -> nn.Module:
    """The registered branch for `spec` (which must be on)."""
    return BRANCHES.get(spec.kind)(in_channels, spec.width, spec.depth, spec.kernel)


class FusionModel(nn.Module):
    """Base class. `uses_trunk` / `uses_width` tell `Arch.validate` which fusion fields apply;
    `shared_head`: one head after the fusion, at `self.head` (False: a head per sensor)."""

    uses_trunk: bool = True
    uses_width: bool = True
    shared_head: bool = True
    in_channels: dict[str, int]
    sensors: list[str]  # fused sensors, in arch order
    bands: list[int]  # their band counts

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.arch = arch
        self.in_channels = dict(in_channels)
        self.num_classes = num_classes
        self.dense = arch.dense
        self.sensors = arch.sensors
        self.bands = [in_channels[s] for s in self.sensors]

    def _inputs(self, inputs: dict[str, Tensor]) -> list[Tensor]:
        """The used sensors' tensors in fusion order, checked against the expected bands."""
        xs: list[Tensor] = []
        for i in range(len(self.sensors)):
            name = self.sensors[i]
            if name not in inputs:
                raise ValueError("missing input for sensor '" + name + "'")
            x = inputs[name]
            # Skipped while tracing (ONNX export): the trace would freeze the check's outcome.
            if not torch.jit.is_tracing() and (x.dim() != 4 or x.shape[1] != self.bands[i]):
                raise ValueError(
                    "sensor '" + name + "' needs [B, " + str(self.bands[i])
                    + ", H, W], got shape " + str(x.shape)
                )
            xs.append(x)
        return xs

    def _trunk_and_head(self, width: int, num_classes: int) -> None:
        """Shared trunk after fusion (identity when off) and the head."""
        trunk = self.arch.fusion.trunk
        self.trunk = build_branch(trunk, width) if trunk.on else nn.Identity()
        head = self.arch.head
        self.head = HEADS.get(head.kind)(
            trunk.width if trunk.on else width, num_classes, head.hidden, head.dropout
        )

    def _op(self, in_channels: list[int], out_channels: int) -> nn.Module:
        return FUSION_OPS.get(self.arch.fusion.op)(in_channels, out_channels)


@POSITIONS.register("early")
class EarlyFusion(FusionModel):
    """Raw inputs of the used sensors -> op -> trunk (the one branch) -> head."""

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__(arch, in_channels, num_classes)
        width = arch.fusion.width
        self.fuse = self._op(self.bands, width)
        self._trunk_and_head(width, num_classes)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.head(self.trunk(self.fuse(self._inputs(inputs))))


def _branches(arch: Arch, in_channels: dict[str, int]) -> nn.ModuleList:
    return nn.ModuleList(build_branch(arch.branches[s], in_channels[s]) for s in arch.sensors)


@POSITIONS.register("middle")
class MiddleFusion(FusionModel):
    """Branches -> op on each branch's last stage -> trunk -> head. A branch's depth is the
    stage at which its sensor joins the others."""

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__(arch, in_channels, num_classes)
        width = arch.fusion.width
        self.branches = _branches(arch, in_channels)
        self.fuse = self._op([b.out_channels[-1] for b in self.branches], width)
        self._trunk_and_head(width, num_classes)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        xs = self._inputs(inputs)
        feats: list[Tensor] = []
        for i, branch in enumerate(self.branches):
            feats.append(branch(xs[i]))  # [B, width_i, H, W]
        return self.head(self.trunk(self.fuse(feats)))


@POSITIONS.register("multi")
class MultiFusion(FusionModel):
    """Branches -> one op per stage s over the branches that reach s -> mean over stages ->
    trunk -> head. Shallow and deep features of every sensor meet."""

    members: list[list[int]]  # members[s]: indices of the branches that have a stage s

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__(arch, in_channels, num_classes)
        width = arch.fusion.width
        self.branches = _branches(arch, in_channels)
        n_stages = max(len(b.out_channels) for b in self.branches)
        self.members = [
            [j for j, b in enumerate(self.branches) if len(b.out_channels) > s]
            for s in range(n_stages)
        ]
        self.fuse = nn.ModuleList(
            self._op([self.branches[j].out_channels[s] for j in m], width)
            for s, m in enumerate(self.members)
        )
        self._trunk_and_head(width, num_classes)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        xs = self._inputs(inputs)
        stages: list[list[Tensor]] = []
        for i, branch in enumerate(self.branches):
            stages.append(branch.forward_stages(xs[i]))
        fused: list[Tensor] = []
        for s, op in enumerate(self.fuse):
            fused.append(op([stages[j][s] for j in self.members[s]]))  # [B, width, H, W]
        return self.head(self.trunk(torch.stack(fused, dim=0).mean(dim=0)))


@POSITIONS.register("late")
class LateFusion(FusionModel):
    """Decision level: every branch has its own head; the op fuses the per-sensor logits."""

    uses_trunk = False
    uses_width = False
    shared_head = False

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__(arch, in_channels, num_classes)
        head = arch.head
        paths = []
        for branch in _branches(arch, in_channels):
            own_head = HEADS.get(head.kind)(
                branch.out_channels[-1], num_classes, head.hidden, head.dropout
            )
            paths.append(nn.Sequential(branch, own_head))  # a whole single-sensor classifier
        self.paths = nn.ModuleList(paths)
        self.fuse = self._op([num_classes] * len(paths), num_classes)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        xs = self._inputs(inputs)
        logits: list[Tensor] = []
        for i, path in enumerate(self.paths):
            y = path(xs[i])  # [B, K] or [B, K, H, W]
            logits.append(y if self.dense else y[:, :, None, None])
        fused = self.fuse(logits)  # [B, K, H, W] or [B, K, 1, 1]
        return fused if self.dense else fused.flatten(1)
