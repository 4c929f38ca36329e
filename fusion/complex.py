"""Branches for complex SAR: inputs are real/imaginary channel pairs `[B, 2P, H, W]` (re0, im0,
re1, im1, ...; `autors.data.complex_sar`). Every branch here states `input_kind = "complex"`,
so the search spaces offer them to complex sensors only, and refuses an odd channel count.

All arithmetic is real arithmetic on the pairs, so TorchScript and ONNX take the same
`[B, 2P, H, W]` tensor as the other branches.

- `complex_modrelu`, `complex_crelu`, `complex_ampphase`: a complex-valued network. Each layer
  is a complex convolution (`ComplexConv2d`: (Wr + iWi)(x + iy), one real convolution with the
  block weight [[Wr, -Wi], [Wi, Wr]]), a cheap complex normalisation (`ComplexNorm`: each
  complex channel divided by its RMS magnitude, batch statistics in training and running ones
  in eval, one learned real gain; no centring, so phases stay) and the activation in the
  name: modReLU z * relu(|z| + b) / |z| (phase kept, amplitude thresholded), CReLU
  (ReLU on the real and on the imaginary part), amplitude-phase z * tanh(|z|) / |z|
  (amplitude squashed, phase kept). A stage exposes the modulus |z| of its `width` complex
  channels: real features that do not change when every input is rotated by one phase (an
  SLC's absolute phase is random; what carries information is the phase *between* channels,
  which the complex convolutions' cross terms |w1 z1 + w2 z2|^2 = ... + 2 Re(w1 w2* z1 z2*)
  turn into amplitudes). Encoder-decoders pool the complex maps by 2x2 averages (a max of
  real and imaginary parts apart would change phases); dropout drops whole complex channels.
- `complex_features`: derived features, then the plain conv stack. Per pixel, over a
  `WINDOW` x `WINDOW` box (multilooking): log(1 + mean |z_p|^2) per channel, and per channel
  pair p < q the squared coherence |<z_p z_q*>|^2 / (<|z_p|^2><|z_q|^2>) and the
  interferometric / polarimetric phase of <z_p z_q*> as cos and sin (weighted by how far the
  mean cross product is from 0, so they vanish where nothing is measured).

Invalid pixels arrive as 0 + 0i and every feature is finite there (moduli and divisions carry
small epsilons, squared coherence needs no square root), so gradients stay finite.
"""

# No `from __future__ import annotations`: TorchScript reads class-level annotations.
import math

import torch
from torch import Tensor, nn

from fusion.branches import Branch, conv_bn_act
from fusion.errors import ArchError
from fusion.registry import BRANCHES

# 1e-6 inside square roots and divisions (a literal: TorchScript reads no module globals):
# finite values and gradients at z = 0.


def _check_pairs(kind: str, in_channels: int) -> None:
    if in_channels % 2:
        raise ArchError(
            f"branch kind '{kind}' reads real/imaginary channel pairs but its sensor has "
            f"{in_channels} channels: use it for a sensor with sar_units: complex"
        )


def to_blocks(x: Tensor) -> Tensor:
    """Interleaved pairs [B, 2P, H, W] (re0, im0, re1, ...) -> block layout [re; im]."""
    return torch.cat([x[:, 0::2], x[:, 1::2]], 1)


def modulus(z: Tensor) -> Tensor:
    """|z| of a block-layout map [B, 2C, H, W] -> [B, C, H, W] (epsilon inside the root)."""
    c = z.shape[1] // 2
    re, im = z[:, :c], z[:, c:]
    return torch.sqrt(re * re + im * im + 1e-6)


class ComplexConv2d(nn.Module):
    """Complex k x k convolution, `cin` -> `cout` complex channels, block layout in and out."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        # Complex He-style init: Var(Wr) = Var(Wi) = 1 / (2 fan_in) keeps E|out|^2 ~ E|in|^2.
        std = 1.0 / math.sqrt(2.0 * cin * kernel * kernel)
        self.weight_re = nn.Parameter(torch.randn(cout, cin, kernel, kernel) * std)
        self.weight_im = nn.Parameter(torch.randn(cout, cin, kernel, kernel) * std)
        self.padding = kernel // 2

    def weight(self) -> Tensor:
        """The real block weight [[Wr, -Wi], [Wi, Wr]]: [2 cout, 2 cin, k, k]."""
        top = torch.cat([self.weight_re, -self.weight_im], 1)
        bottom = torch.cat([self.weight_im, self.weight_re], 1)
        return torch.cat([top, bottom], 0)

    def forward(self, z: Tensor) -> Tensor:
        return nn.functional.conv2d(z, self.weight(), padding=self.padding)


class ComplexNorm(nn.Module):
    """Each complex channel divided by its RMS magnitude (batch mean of |z|^2 in training, a
    running mean in eval), times a learned real gain: a scale per channel, so phases stay."""

    def __init__(self, channels: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.register_buffer("running_ms", torch.ones(channels))
        self.momentum = momentum

    def forward(self, z: Tensor) -> Tensor:
        c = self.gain.shape[0]
        re, im = z[:, :c], z[:, c:]
        if self.training:
            ms = (re * re + im * im).mean(dim=(0, 2, 3))
            self.running_ms.copy_((1 - self.momentum) * self.running_ms
                                  + self.momentum * ms.detach())
        else:
            ms = self.running_ms
        scale = (self.gain / torch.sqrt(ms + 1e-6)).view(1, c, 1, 1)
        return z * torch.cat([scale, scale], 1)


class ModReLU(nn.Module):
    """z * relu(|z| + b) / |z|, b learned per channel (starts below 0: small amplitudes cut)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.full((channels,), -0.25))

    def forward(self, z: Tensor) -> Tensor:
        mag = modulus(z)
        factor = torch.relu(mag + self.bias.view(1, -1, 1, 1)) / mag
        return z * torch.cat([factor, factor], 1)


class CReLU(nn.Module):
    """ReLU on the real and on the imaginary part."""

    def __init__(self, channels: int) -> None:
        super().__init__()

    def forward(self, z: Tensor) -> Tensor:
        return torch.relu(z)


class AmpPhase(nn.Module):
    """z * tanh(|z|) / |z|: the amplitude squashed into [0, 1), the phase kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()

    def forward(self, z: Tensor) -> Tensor:
        mag = modulus(z)
        factor = torch.tanh(mag) / mag
        return z * torch.cat([factor, factor], 1)


ACTIVATIONS = {"modrelu": ModReLU, "crelu": CReLU, "ampphase": AmpPhase}


def complex_layer(cin: int, cout: int, kernel: int, activation: str) -> nn.Sequential:
    """Complex conv + complex normalisation + activation (block layout, complex channels)."""
    return nn.Sequential(ComplexConv2d(cin, cout, kernel), ComplexNorm(cout),
                         ACTIVATIONS[activation](cout))


class ComplexBranch(Branch):
    """A complex-valued network on the sensor's channel pairs; stages expose |z| (`width`
    real channels). Pooling, entry scale and dropout follow the `Branch` contract, done on
    the complex maps (see the module's docstring)."""

    input_kind = "complex"
    ACTIVATION = "modrelu"

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        _check_pairs(f"complex_{self.ACTIVATION}", in_channels)
        super().__init__(in_channels, width, depth, kernel)
        self.stem = complex_layer(in_channels // 2, width, kernel, self.ACTIVATION)
        self.blocks = nn.ModuleList(complex_layer(width, width, kernel, self.ACTIVATION)
                                    for _ in range(depth))
        self.dropping = False

    def with_dropout(self, p: float) -> "ComplexBranch":
        super().with_dropout(p)
        self.dropping = p > 0
        return self

    def _drop_complex(self, z: Tensor) -> Tensor:
        """Channel dropout that drops a complex channel's real and imaginary parts together."""
        if not self.dropping:
            return z
        b, c2, h, w = z.shape
        c = c2 // 2
        pairs = z.reshape(b, 2, c, h, w).transpose(1, 2).reshape(b, c, 2 * h, w)
        pairs = self.drop(pairs)
        return pairs.reshape(b, c, 2, h, w).transpose(1, 2).reshape(b, c2, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)[-1]

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        z = self._drop_complex(self.stem(to_blocks(self.enter(x))))
        feats = [modulus(z)]
        for block in self.blocks:
            if self.pooled:
                z = nn.functional.avg_pool2d(z, 2, 2, ceil_mode=True)
            z = self._drop_complex(block(z))
            feats.append(modulus(z))
        return feats


@BRANCHES.register("complex_modrelu")
class ComplexModReLUBranch(ComplexBranch):
    """Complex convolutions with modReLU activations."""

    ACTIVATION = "modrelu"


@BRANCHES.register("complex_crelu")
class ComplexCReLUBranch(ComplexBranch):
    """Complex convolutions with CReLU activations."""

    ACTIVATION = "crelu"


@BRANCHES.register("complex_ampphase")
class ComplexAmpPhaseBranch(ComplexBranch):
    """Complex convolutions with amplitude-phase (tanh of the amplitude) activations."""

    ACTIVATION = "ampphase"


class PairFeatures(nn.Module):
    """Channel pairs [B, 2P, H, W] -> P + 3 P (P - 1) / 2 real features (module docstring):
    windowed log power per channel; squared coherence, cos and sin of the phase per pair."""

    WINDOW = 5

    def __init__(self, channels: int) -> None:
        super().__init__()
        pairs = [(p, q) for p in range(channels) for q in range(p + 1, channels)]
        self.cross = len(pairs) > 0
        self.register_buffer("first", torch.tensor([p for p, _ in pairs], dtype=torch.long))
        self.register_buffer("second", torch.tensor([q for _, q in pairs], dtype=torch.long))
        self.out_channels = channels + 3 * len(pairs)
        self.window = self.WINDOW  # an instance attribute: TorchScript reads no class constants

    def _mean(self, x: Tensor) -> Tensor:
        k = self.window
        return nn.functional.avg_pool2d(x, k, 1, k // 2, count_include_pad=True)

    def forward(self, x: Tensor) -> Tensor:
        re, im = x[:, 0::2], x[:, 1::2]
        power = self._mean(re * re + im * im)  # <|z_p|^2>
        feats = [torch.log1p(power)]
        if self.cross:
            ar, ai = re.index_select(1, self.first), im.index_select(1, self.first)
            br, bi = re.index_select(1, self.second), im.index_select(1, self.second)
            # <z_a conj(z_b)> = <ar br + ai bi> + i <ai br - ar bi>
            c_re = self._mean(ar * br + ai * bi)
            c_im = self._mean(ai * br - ar * bi)
            c2 = c_re * c_re + c_im * c_im
            pa, pb = power.index_select(1, self.first), power.index_select(1, self.second)
            mag = torch.sqrt(c2 + 1e-6)  # >= 1e-3: cos/sin fade to 0 where <z_a z_b*> ~ 0
            feats += [c2 / (pa * pb + 1e-6), c_re / mag, c_im / mag]
        return torch.cat(feats, 1)


@BRANCHES.register("complex_features")
class ComplexFeatureBranch(Branch):
    """Derived amplitude / phase-difference / coherence features (`PairFeatures`), then
    conv-BN-ReLU layers like the `conv` branch."""

    input_kind = "complex"

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        _check_pairs("complex_features", in_channels)
        super().__init__(in_channels, width, depth, kernel)
        features = PairFeatures(in_channels // 2)
        self.stem = nn.Sequential(features, conv_bn_act(features.out_channels, width, kernel))
        self.blocks = nn.ModuleList(conv_bn_act(width, width, kernel) for _ in range(depth))
