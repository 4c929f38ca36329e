"""`autors synth`: flags, preview, and clear errors for bad settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autors.cli import main
from autors.config import load_task
from autors.synth import SynthConfig, SynthConfigError


def test_synth_verb_writes_subset_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "scene"
    rc = main(["synth", str(out), "--size", "48", "--sensors", "optical,lidar", "--seed", "2",
               "--classes", "8", "--train-per-class", "4", "--preview"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "spectra:" in text and "preview.png" in text
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "optical.tif").exists() and (out / "lidar.tif").exists()
    assert not (out / "sar.tif").exists()
    task = load_task(out / "task.yaml")
    assert set(task.sensors) == {"optical", "lidar"} and task.num_classes == 8
    assert task.seed == 2


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--classes", "11"], "classes=11 is out of range: choose 4..10"),
        (["--sensors", "optical,radar"], "unknown name.*radar.*valid are optical,sar,lidar,hsi"),
        (["--sensors", ","], "--sensors is empty"),
        (["--size", "8"], "size=8 is out of range"),
        (["--looks", "0"], "looks=0.0 must be > 0"),
    ],
)
def test_bad_flags_are_reported_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    rc = main(["synth", str(tmp_path / "x"), *flags])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err), err


def test_presets() -> None:
    small, bench = SynthConfig.small(), SynthConfig.benchmark(seed=4)
    assert small.size == 128 and small.n_train_per_class * small.classes <= 500
    assert bench.size == 512 and bench.seed == 4 and bench.task_trials > small.task_trials
    with pytest.raises(SynthConfigError, match="block_size=8 leaves no interior pixels"):
        SynthConfig(block_size=8)
    assert SynthConfig(sensors=("hsi", "optical")).sensors == ("optical", "hsi")
