"""The training loop on the tiny two-sensor scene: learning, seeding, early stopping, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from autors.config import TaskSpec
from autors.data import PreparedData
from autors.errors import TaskFileError
from autors.training.batches import (
    apply_cloud_blobs,
    apply_modality_dropout,
    modality_keep_mask,
    resolve_device,
)
from autors.training.evaluate import evaluate
from autors.training.loop import TrainingDivergedError, class_weights, train_model
from fusion import ArchError


def with_train(task: TaskSpec, **changes: object) -> TaskSpec:
    """The task with some `train` fields changed (TaskSpec is frozen)."""
    return task.model_copy(update={"train": task.train.model_copy(update=changes)})


def test_patch_training_beats_chance_and_restores_the_best_epoch(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    task = with_train(patch_task, epochs=3, early_stopping_patience=1)
    out = train_model(task, "late_cnn", patch_data, seed=0)
    assert out.monitor == "val_oa"
    assert out.val_metrics["oa"] > 1 / 3 + 0.4  # 3 classes: chance is 1/3
    scores = [h["val_oa"] for h in out.history]
    assert out.val_metrics["oa"] == pytest.approx(max(scores))
    assert scores[out.best_epoch - 1] == max(scores)
    # stopped either at the budget or `patience` epochs after the best one
    assert out.epochs == len(out.history)
    assert out.epochs == 3 or out.epochs - out.best_epoch == 1
    # the returned model IS the best epoch's: re-evaluating it gives the same numbers
    again = evaluate(out.model, patch_data, "val")
    assert again["confusion_matrix"] == out.val_metrics["confusion_matrix"]
    assert not out.model.training


def test_segmentation_training_learns_and_monitors_miou(
    seg_task: TaskSpec, seg_data: PreparedData
) -> None:
    task = with_train(seg_task, epochs=4, batch_size=4)
    out = train_model(task, "early_cnn", seg_data, seed=0)
    assert out.monitor == "val_miou"
    assert out.val_metrics["oa"] > 1 / 3 + 0.25
    assert out.val_metrics["miou"] == pytest.approx(max(h["val_miou"] for h in out.history))
    # every labelled validation pixel is counted exactly once
    assert out.val_metrics["num_samples"] == sum(seg_data.index.counts()["val"])


def test_encoder_decoder_trains_on_random_tiles_and_scores_each_pixel_once(
    seg_task: TaskSpec, seg_data: PreparedData
) -> None:
    task = with_train(seg_task, epochs=4, batch_size=4)
    out = train_model(task, "two_stream_unet", seg_data, seed=0)
    assert out.model.reduction == 16
    assert out.val_metrics["oa"] > 1 / 3 + 0.25
    assert out.val_metrics["num_samples"] == sum(seg_data.index.counts()["val"])


def test_early_stopping_follows_the_search_objective(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    task = with_train(patch_task, epochs=2, max_train_samples=64).model_copy(
        update={"search": patch_task.search.model_copy(update={"objective": "val_kappa"})})
    out = train_model(task, "late_cnn", patch_data, seed=0)
    assert out.monitor == "val_kappa"
    kappas = [h["val_kappa"] for h in out.history]
    assert out.best_epoch == kappas.index(max(kappas)) + 1
    assert out.val_metrics["kappa"] == pytest.approx(max(kappas))


def test_same_seed_same_weights_other_seed_other_weights(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    # every random stream on: init, shuffling, augmentation, modality dropout, head dropout
    task = with_train(patch_task, epochs=2, max_train_samples=96, modality_dropout=0.5,
                      class_weighting=True, augment=True, optimizer="sgd", lr=0.05)
    a = train_model(task, "late_cnn", patch_data, seed=7)
    b = train_model(task, "late_cnn", patch_data, seed=7)
    c = train_model(task, "late_cnn", patch_data, seed=8)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.val_metrics == b.val_metrics
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_modality_keep_mask_never_drops_every_sensor() -> None:
    gen = torch.Generator().manual_seed(0)
    for sensors in (2, 3, 4):
        keep = modality_keep_mask(5000, sensors, 0.9, gen)  # [B, S]
        assert keep.any(dim=1).all()
        # a high p is not silently ignored: few samples keep every sensor (0.1^S expected)
        assert keep.all(dim=1).float().mean() < 0.05


def test_modality_dropout_zeroes_whole_sensors_of_used_sensors_only() -> None:
    gen = torch.Generator().manual_seed(1)
    batch = {"optical": torch.ones(64, 4, 5, 5), "lidar": torch.ones(64, 1, 5, 5),
             "sar": torch.ones(64, 2, 5, 5), "optical__mask": torch.ones(64, 5, 5),
             "lidar__mask": torch.ones(64, 5, 5)}
    out = apply_modality_dropout(batch, ["optical", "lidar"], 0.7, gen)
    per_sample = {}
    for name in ("optical", "lidar"):
        sums = out[name].flatten(1).sum(dim=1)  # [B]
        n = out[name][0].numel()
        assert bool(((sums == 0) | (sums == n)).all())  # a sensor is kept or zeroed whole
        per_sample[name] = sums > 0
        # the mask says so: a dropped sensor looks like a sensor absent from the scene
        assert torch.equal(out[name + "__mask"].flatten(1).sum(dim=1) > 0, per_sample[name])
    assert bool((per_sample["optical"] | per_sample["lidar"]).all())
    assert not bool(per_sample["optical"].all() and per_sample["lidar"].all())
    assert torch.equal(out["sar"], batch["sar"])  # not used by the arch: untouched
    assert torch.equal(batch["optical"], torch.ones(64, 4, 5, 5))  # input not modified
    # a single used sensor is never dropped
    single = apply_modality_dropout(batch, ["optical"], 0.99, gen)
    assert torch.equal(single["optical"], batch["optical"])


def test_class_weights_are_inverse_frequency_by_hand() -> None:
    w = class_weights([3, 1, 0])  # class 0: 3 pixels, class 1: 1, class 2: none
    # N = 4 over 2 present classes: w_k = 4 / (2 * n_k)
    assert w.tolist() == pytest.approx([4 / 6, 4 / 2, 0.0])


def test_nan_inputs_raise_a_clear_divergence_error(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    bad = dict(patch_data.arrays[0])
    bad["lidar"] = np.full_like(bad["lidar"], np.nan)
    data = dataclasses.replace(patch_data, arrays=[bad])
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at epoch 1, batch 1.*lr"):
        train_model(with_train(patch_task, epochs=1), "late_cnn", data, seed=0)


def test_arch_for_other_sensors_is_an_arch_error(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    arch = {"version": 1,
            "branches": {"optical": {"kind": "conv"}, "radar": {"kind": "conv"}},
            "fusion": {"op": "sum", "position": "late"},
            "head": {"kind": "patch"}}
    with pytest.raises(ArchError, match="branches.radar.*no sensor 'radar'"):
        train_model(patch_task, arch, patch_data, seed=0)


def test_segmentation_head_on_a_patch_task_is_an_arch_error(
    patch_task: TaskSpec, patch_data: PreparedData, seg_task: TaskSpec, seg_data: PreparedData
) -> None:
    arch = {"version": 1,
            "branches": {"optical": {"kind": "conv"}, "lidar": {"kind": "conv"}},
            "fusion": {"op": "sum", "position": "late"},
            "head": {"kind": "segmentation"}}
    with pytest.raises(ArchError, match="head.kind"):
        train_model(patch_task, arch, patch_data, seed=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_names_the_field() -> None:
    with pytest.raises(TaskFileError, match="train.device.*'auto' or 'cpu'"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_cloud_blobs_blank_regions_of_the_optical_sensors_only() -> None:
    gen = torch.Generator().manual_seed(2)
    batch = {"optical": torch.ones(200, 4, 9, 9), "optical__mask": torch.ones(200, 9, 9),
             "sar": torch.ones(200, 2, 9, 9), "sar__mask": torch.ones(200, 9, 9)}
    out = apply_cloud_blobs(batch, ["optical"], 0.5, gen)
    clouded = (out["optical__mask"] == 0).flatten(1).any(dim=1)  # [B]
    assert 0.35 < clouded.float().mean() < 0.65  # about p of the samples
    # values are 0 exactly where the mask is 0, and a blob is a region, not the whole patch
    assert torch.equal(out["optical"][:, 0] == 0, out["optical__mask"] == 0)
    covered = (out["optical__mask"] == 0).flatten(1).float().mean(dim=1)[clouded]
    assert 0 < covered.median() < 1
    assert torch.equal(out["sar"], batch["sar"]) and torch.equal(out["sar__mask"],
                                                                 batch["sar__mask"])
    assert apply_cloud_blobs(batch, ["optical"], 0.0, gen) is batch


def test_training_chosen_with_the_arch_overrides_the_task(patch_task: TaskSpec,
                                                          patch_data: PreparedData) -> None:
    from fusion import TrainingSpec, baseline_arch

    task = patch_task.model_copy(update={"train": patch_task.train.model_copy(
        update={"epochs": 1, "max_train_samples": 64})})
    plain = baseline_arch("late_cnn", patch_data.in_channels)
    chosen = dataclasses.replace(plain, training=TrainingSpec(modality_dropout=0.5))
    by_task = task.model_copy(update={"train": task.train.model_copy(
        update={"modality_dropout": 0.5})})
    a = train_model(task, chosen, patch_data, seed=0).model.state_dict()
    b = train_model(by_task, plain, patch_data, seed=0).model.state_dict()
    c = train_model(task, plain, patch_data, seed=0).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the arch's choice == the task setting
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_epoch_sampler_groups_samples_by_place_and_mixes_windows() -> None:
    from autors.training.batches import EpochSampler

    def places(ids):  # ten places, interleaved with the ids (like column blocks of a row)
        return ids % 10

    one = EpochSampler(1000, 300, seed=4, places=places, chunk=1000, window=1)
    order = list(one)
    assert sorted(order) == sorted(one.ids.tolist()) and len(set(order)) == 300
    runs = [p for i, p in enumerate(o % 10 for o in order) if i == 0 or order[i - 1] % 10 != p]
    assert sorted(runs) == list(range(10))  # window 1: each place read in one run
    mixed = EpochSampler(1000, 300, seed=4, places=places, chunk=1000, window=3)
    first = [o % 10 for o in list(mixed)[:60]]
    assert 1 < len(set(first)) <= 3  # a window mixes up to 3 places
    again = EpochSampler(1000, 300, seed=4, places=places, chunk=1000, window=3)
    assert list(again) == list(mixed)  # (seed, epoch) decide the order
    again.set_epoch(1)
    assert list(again) != list(mixed)
