"""Fusion positions: the four ways of wiring branches, fusion op, trunk and head into a model.

Every model takes `{sensor: [B, C_s, H, W]}` (the full task dict: sensors whose branch is
"off" are accepted and ignored, other keys too) and returns logits `[B, K]` or, with a dense
head, `[B, K, H, W]`.

Validity masks: the optional key `<sensor>__mask` (`mask_key`) holds `[B, H, W]` in {0, 1}
(1 = valid; float32, other dtypes are converted). Without it the sensor is valid everywhere,
exactly as an all-ones mask. A sensor absent for a whole sample has an all-zero mask. The model
zeroes a sensor's values where its mask is 0 (so they never matter, whatever they hold) and
hands the masks to every fusion op at the resolution of the fused maps; late fusion weights
each sensor's logits by its presence as its head sees it (`Head.presence()`).
"""

# No `from __future__ import annotations`: TorchScript reads the class-level attribute
# annotations below and cannot resolve them from strings.
import torch
from torch import Tensor, nn

from fusion.arch import MASK_SUFFIX, Arch, BranchSpec
from fusion.ops import MaskFilled
from fusion.registry import BRANCHES, FUSION_OPS, HEADS, POSITIONS


def mask_key(sensor: str) -> str:
    """The input key (and exported input name) of `sensor`'s validity mask."""
    return sensor + MASK_SUFFIX


def pool_mask(m: Tensor, reduction: int) -> Tensor:
    """A mask `[B, 1, H, W]` at a stage `reduction` times coarser: the fraction of valid
    pixels in each cell. Built-in branches keep H, W (reduction 1: the mask as it is)."""
    if reduction == 1:
        return m
    return nn.functional.avg_pool2d(m, reduction, reduction, ceil_mode=True)


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
    mask_keys: list[str]  # their masks' input keys
    bands: list[int]  # their band counts

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.arch = arch
        self.in_channels = dict(in_channels)
        self.num_classes = num_classes
        self.dense = arch.dense
        self.sensors = arch.sensors
        self.mask_keys = [mask_key(s) for s in self.sensors]
        self.bands = [in_channels[s] for s in self.sensors]

    def _inputs(self, inputs: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """The used sensors' tensors in fusion order, checked against the expected bands and
        zeroed where invalid, and their masks `[B, 1, H, W]` (ones where none is given)."""
        xs: list[Tensor] = []
        masks: list[Tensor] = []
        for i in range(len(self.sensors)):
            name = self.sensors[i]
            if name not in inputs:
                raise ValueError("missing input for sensor '" + name + "'")
            x = inputs[name]
            # Skipped while tracing (ONNX export): the trace would freeze the check's outcome.
            tracing = torch.jit.is_tracing()
            if not tracing and (x.dim() != 4 or x.shape[1] != self.bands[i]):
                raise ValueError(
                    "sensor '" + name + "' needs [B, " + str(self.bands[i])
                    + ", H, W], got shape " + str(x.shape)
                )
            key = self.mask_keys[i]
            if key in inputs:
                m = inputs[key]
                if not tracing and (m.dim() != 3 or m.shape[0] != x.shape[0]
                                    or m.shape[1] != x.shape[2] or m.shape[2] != x.shape[3]):
                    raise ValueError(
                        "mask '" + key + "' needs [B, H, W] = " + str([x.shape[0], x.shape[2],
                                                                      x.shape[3]])
                        + " (the shape of sensor '" + name + "' without bands), got shape "
                        + str(m.shape)
                    )
                m = m.unsqueeze(1).to(x.dtype)  # [B, 1, H, W]
                x = x.masked_fill(m <= 0, 0.0)
            else:
                m = torch.ones_like(x[:, :1])
            xs.append(x)
            masks.append(m)
        return xs, masks

    def _trunk_and_head(self, width: int, num_classes: int) -> None:
        """Shared trunk after fusion (identity when off) and the head."""
        trunk = self.arch.fusion.trunk
        self.trunk = build_branch(trunk, width) if trunk.on else nn.Identity()
        head = self.arch.head
        self.head = HEADS.get(head.kind)(
            trunk.width if trunk.on else width, num_classes, head.hidden, head.dropout
        )

    def _op(self, in_channels: list[int], out_channels: int) -> nn.Module:
        """The arch's fusion op, called `op(xs, masks)`; one that does not handle masks itself
        (`FusionOp.handles_masks`) runs on the filled maps."""
        op = FUSION_OPS.get(self.arch.fusion.op)(in_channels, out_channels)
        return op if op.handles_masks else MaskFilled(op)


@POSITIONS.register("early")
class EarlyFusion(FusionModel):
    """Raw inputs of the used sensors -> op -> trunk (the one branch) -> head."""

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__(arch, in_channels, num_classes)
        width = arch.fusion.width
        self.fuse = self._op(self.bands, width)
        self._trunk_and_head(width, num_classes)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        xs, masks = self._inputs(inputs)
        return self.head(self.trunk(self.fuse(xs, masks)))


def _branches(arch: Arch, in_channels: dict[str, int]) -> nn.ModuleList:
    return nn.ModuleList(build_branch(arch.branches[s], in_channels[s]) for s in arch.sensors)


@POSITIONS.register("middle")
class MiddleFusion(FusionModel):
    """Branches -> op on each branch's last stage -> trunk -> head. A branch's depth is the
    stage at which its sensor joins the others."""

    reductions: list[int]  # each branch's last-stage reduction

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__(arch, in_channels, num_classes)
        width = arch.fusion.width
        self.branches = _branches(arch, in_channels)
        self.reductions = [b.reductions[-1] for b in self.branches]
        self.fuse = self._op([b.out_channels[-1] for b in self.branches], width)
        self._trunk_and_head(width, num_classes)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        xs, masks = self._inputs(inputs)
        feats: list[Tensor] = []
        fmasks: list[Tensor] = []
        for i, branch in enumerate(self.branches):
            feats.append(branch(xs[i]))  # [B, width_i, H, W]
            fmasks.append(pool_mask(masks[i], self.reductions[i]))
        return self.head(self.trunk(self.fuse(feats, fmasks)))


@POSITIONS.register("multi")
class MultiFusion(FusionModel):
    """Branches -> one op per stage s over the branches that reach s -> mean over stages ->
    trunk -> head. Shallow and deep features of every sensor meet."""

    members: list[list[int]]  # members[s]: indices of the branches that have a stage s
    reductions: list[list[int]]  # reductions[s]: their stage-s reductions

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__(arch, in_channels, num_classes)
        width = arch.fusion.width
        self.branches = _branches(arch, in_channels)
        n_stages = max(len(b.out_channels) for b in self.branches)
        self.members = [
            [j for j, b in enumerate(self.branches) if len(b.out_channels) > s]
            for s in range(n_stages)
        ]
        self.reductions = [[self.branches[j].reductions[s] for j in m]
                           for s, m in enumerate(self.members)]
        self.fuse = nn.ModuleList(
            self._op([self.branches[j].out_channels[s] for j in m], width)
            for s, m in enumerate(self.members)
        )
        self._trunk_and_head(width, num_classes)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        xs, masks = self._inputs(inputs)
        stages: list[list[Tensor]] = []
        for i, branch in enumerate(self.branches):
            stages.append(branch.forward_stages(xs[i]))
        fused: list[Tensor] = []
        for s, op in enumerate(self.fuse):
            members = self.members[s]
            feats: list[Tensor] = []
            fmasks: list[Tensor] = []
            for k in range(len(members)):
                feats.append(stages[members[k]][s])
                fmasks.append(pool_mask(masks[members[k]], self.reductions[s][k]))
            fused.append(op(feats, fmasks))  # [B, width, H, W]
        return self.head(self.trunk(torch.stack(fused, dim=0).mean(dim=0)))


@POSITIONS.register("late")
class LateFusion(FusionModel):
    """Decision level: every branch has its own head; the op fuses the per-sensor logits,
    weighted by each sensor's presence as its head sees it (`Head.presence()`: the fraction of
    valid pixels for a `patch` head, the centre pixel's validity for `centre`, per pixel for a
    dense head)."""

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
        # mask [B, 1, H, W] -> the weight of a sensor's logits (the heads are all one kind)
        self.presence = paths[0][1].presence()
        self.fuse = self._op([num_classes] * len(paths), num_classes)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        xs, masks = self._inputs(inputs)
        logits: list[Tensor] = []
        weights: list[Tensor] = []
        for i, path in enumerate(self.paths):
            y = path(xs[i])  # [B, K] or [B, K, H, W]
            logits.append(y if self.dense else y[:, :, None, None])
            weights.append(self.presence(masks[i]))  # [B, 1, H, W] or [B, 1, 1, 1]
        fused = self.fuse(logits, weights)  # [B, K, H, W] or [B, K, 1, 1]
        return fused if self.dense else fused.flatten(1)
