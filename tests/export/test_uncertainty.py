"""MC dropout on the fully convolutional path: one dropout mask per pass over a window, a valid
MC sample for every pixel (the same distribution as a pass over the pixel's own patch), and
the entropy / mutual information bands of `autors predict --mc-dropout`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

import fusion
from autors.export import fullconv
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, _enable_dropout, predict_scene

from .conftest import TINY_ARCH

IN = {"optical": 4, "sar": 2}
P = 7  # patch side
DROP = {  # centre head, local fusion, channel dropout in branches and trunk
    "version": 1,
    "branches": {"optical": {"kind": "conv", "width": 8, "depth": 1, "kernel": 3,
                             "dropout": 0.3},
                 "sar": {"kind": "conv", "width": 4, "depth": 0, "kernel": 3, "dropout": 0.3}},
    "fusion": {"op": "concat", "position": "middle", "width": 8,
               "trunk": {"kind": "conv", "width": 8, "depth": 0, "kernel": 1, "dropout": 0.3}},
    "head": {"kind": "centre", "hidden": 8, "dropout": 0.2},
}


def _model(arch: dict) -> nn.Module:
    torch.manual_seed(0)
    model = fusion.build_model(arch, IN, 3)
    model({s: torch.randn(16, c, P, P) for s, c in IN.items()})  # BatchNorm statistics
    return model.eval()


def _window(side: int) -> dict[str, torch.Tensor]:
    """Window arrays with the patch halo: values [C, side + P - 1, ...], masks [1, ...]."""
    gen = torch.Generator().manual_seed(1)
    n = side + P - 1
    x = {s: torch.randn(c, n, n, generator=gen) for s, c in IN.items()}
    return x | {s + "__mask": (torch.rand(1, n, n, generator=gen) > 0.1).float() for s in IN}


def _fast_samples(model: nn.Module, tensors: dict, side: int, pixels: list[tuple[int, int]],
                  passes: int, rate: float | None = None) -> np.ndarray:
    """[passes, pixels, K]: window-path MC samples, a pass of its own for every pixel (so the
    pixels' samples are independent, as per-patch ones are); `rate` overrides the channel
    dropout rate (a wrong sampler for the negative control)."""
    dense, why = fullconv.window_model(model, model.arch, IN, P)
    assert why == ""
    _enable_dropout(dense, Path("m"))
    for m in dense.modules():
        if rate is not None and isinstance(m, nn.Dropout2d):
            m.p = rate
    rng = np.random.default_rng(7)
    out = np.empty((passes, len(pixels), 3), np.float32)
    for i in range(passes):
        seeds = rng.integers(0, 2**62, size=len(pixels))
        for j, (r, c) in enumerate(pixels):
            probs = fullconv.window_probs(dense, tensors, P // 2, side, side, [int(seeds[j])])
            out[i, j] = probs[:, r, c].numpy()
    return out


def _patch_samples(model: nn.Module, tensors: dict, pixels: list[tuple[int, int]],
                   passes: int) -> np.ndarray:
    """[passes, pixels, K]: per-patch MC samples (each patch of a batch its own masks)."""
    _enable_dropout(model, Path("m"))
    batch = {n: torch.stack([a[:, r:r + P, c:c + P] for r, c in pixels]) for n, a in
             tensors.items()}
    batch = {n: (b[:, 0] if n.endswith("__mask") else b) for n, b in batch.items()}
    torch.manual_seed(3)
    with torch.no_grad():
        out = np.stack([torch.softmax(model(batch), 1).numpy() for _ in range(passes)])
    model.eval()
    return out


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean squared z-score of the difference of the means, mean |log variance ratio|) of
    class 0's probability over the pixels."""
    a, b = a[..., 0], b[..., 0]
    se = np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / a.shape[0])
    z2 = ((a.mean(0) - b.mean(0)) / se) ** 2
    return float(z2.mean()), float(np.abs(np.log(a.var(0) / b.var(0))).mean())


def test_window_passes_are_valid_mc_samples_per_pixel() -> None:
    """Per pixel, the window path's dropout passes and per-patch dropout passes are samples
    of one distribution: their means agree within sampling error (z ~ N(0, 1)) and so do
    their variances. A sampler with another dropout rate is told apart by the same test (it
    has the power to fail). Channel dropout only (the head's is 0), so it shapes the
    spread."""
    side, n = 12, 200
    model = _model(dict(DROP, head={"kind": "centre", "hidden": 8, "dropout": 0.0}))
    tensors = _window(side)
    pixels = [(r, c) for r in range(0, side, 3) for c in range(1, side, 4)]
    patch = _patch_samples(model, tensors, pixels, n)
    z2, log_var = _compare(_fast_samples(model, tensors, side, pixels, n), patch)
    assert z2 < 2.0 and log_var < 0.25, (z2, log_var)
    z2, log_var = _compare(_fast_samples(model, tensors, side, pixels, n, rate=0.5), patch)
    assert log_var > 0.6, (z2, log_var)


def test_one_pass_draws_one_channel_mask_for_the_whole_window(monkeypatch) -> None:
    monkeypatch.setattr(fullconv, "STRIP_ROWS", 4)  # several strips per window
    model = _model(DROP)
    dense, _ = fullconv.window_model(model, model.arch, IN, P)
    _enable_dropout(dense, Path("m"))
    seen: list[torch.Tensor] = []
    drop = dense.branches[0].drop
    assert isinstance(drop, nn.Dropout2d)
    drop.register_forward_hook(
        lambda m, args, out: seen.append(((out == 0) & (args[0] != 0)).flatten(2).any(2)[0]))
    tensors = _window(10)
    passes = []
    for seed in (5, 6):
        seen.clear()
        fullconv.window_probs(dense, tensors, P // 2, 10, 10, [seed])
        assert len(seen) == 2 * 3  # 2 stages x 3 strips
        stem, block = seen[0::2], seen[1::2]
        assert all(torch.equal(s, stem[0]) for s in stem)  # the same channels every strip
        assert all(torch.equal(s, block[0]) for s in block)
        passes.append(torch.cat([stem[0], block[0]]))
    assert not torch.equal(*passes)  # another pass, another mask


def test_mc_dropout_runs_fully_convolutionally(scene, tmp_path: Path,
                                               train_and_export) -> None:
    model = train_and_export(scene.task, tmp_path, dict(
        TINY_ARCH, branches={s: dict(b, dropout=0.1) for s, b in TINY_ARCH["branches"].items()},
        head={"kind": "centre", "hidden": 16, "dropout": 0.2}), "--epochs", "3")
    loaded = load_exported(model)
    runs = {}
    for name, options in (("plain", PredictOptions(window=24)),
                          ("mc", PredictOptions(window=24, mc_dropout=4)),
                          ("again", PredictOptions(window=24, mc_dropout=4)),
                          ("patch", PredictOptions(window=24, mc_dropout=4,
                                                   fully_convolutional=False))):
        result = predict_scene(loaded, scene.sensors(), tmp_path / f"{name}.tif", options,
                               progress=False)
        with rasterio.open(result.scores) as ds:
            runs[name] = (result, ds.read())
    mc, scores = runs["mc"]
    assert mc.method == "fully convolutional" and mc.notes == []
    assert runs["patch"][0].method == "per patch"
    assert mc.bands == ["confidence", "entropy", "mutual_information", "valid_sensors"]
    np.testing.assert_array_equal(scores, runs["again"][1])  # the same seed, the same map
    conf, entropy, mi, _ = scores
    valid = ~np.isnan(conf)
    assert not np.allclose(conf[valid], runs["plain"][1][0][valid])  # dropout was on
    k = loaded.card.num_classes
    assert (entropy[valid] <= math.log(k) + 1e-5).all()
    assert (mi[valid] >= 0).all() and (mi[valid] <= entropy[valid] + 1e-6).all()
    assert mi[valid].mean() > 1e-4
    # 4 passes, per pixel the same distribution as per patch: close on average, not equal
    assert np.abs(conf[valid] - runs["patch"][1][0][valid]).mean() < 0.1
    assert not any(m.training for m in loaded.model.modules())


def test_dropout_layers_of_branches_count_for_mc_dropout() -> None:
    arch = dict(DROP, head={"kind": "centre", "hidden": 8, "dropout": 0.0})
    model = _model(arch)
    _enable_dropout(model, Path("m"))  # no error: the branches' Dropout2d are active
    assert sum(isinstance(m, nn.Dropout2d) and m.training for m in model.modules()) == 3
    with pytest.raises(Exception, match="no branch or trunk has a dropout"):
        _enable_dropout(_model({**arch, "branches": {s: {k: v for k, v in b.items()
                                                          if k != "dropout"}
                                                      for s, b in arch["branches"].items()},
                                "fusion": {**arch["fusion"], "trunk": {"kind": "off"}}}),
                        Path("m"))
