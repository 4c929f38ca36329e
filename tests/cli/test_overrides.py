"""`--set KEY.PATH=VALUE` on the task verbs: applied to the task file's mapping before validation
(the same checks and messages as the file), and kept in the run folder's task copy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import make_fixtures  # tests/data (on sys.path via tests/conftest.py)
import pytest
import yaml

from autors.cli import main
from autors.config import load_task, task_yaml
from autors.errors import TaskFileError


@pytest.fixture
def task_path(tmp_path: Path) -> Path:
    """The data tests' small scene; its task file names the rasters relative to its folder."""
    fx = make_fixtures
    return fx.write_task(tmp_path, fx.task_dict(fx.make_scene(tmp_path)))


def _split_line(out: str) -> tuple[str, str]:
    m = re.search(r"split seed\s+(\d+),\s+hash\s+([0-9a-f]{12})", out)  # lines may wrap
    assert m, out
    return m.group(1), m.group(2)


def _problems(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("  - ")]


def test_set_changes_the_split_that_validate_makes(task_path, capsys):
    assert main(["validate", str(task_path)]) == 0
    seed0, hash0 = _split_line(capsys.readouterr().out)
    assert main(["validate", str(task_path), "--set", "split.seed=3"]) == 0
    out = capsys.readouterr().out
    seed3, hash3 = _split_line(out)
    assert (seed0, seed3) == ("0", "3") and hash3 != hash0
    assert "--set split.seed=3" in out  # the summary says what was overridden


def test_a_bad_value_fails_with_the_message_the_file_gives(task_path, capsys):
    assert main(["validate", str(task_path), "--set", "train.epochs=zero"]) == 2
    err_set = capsys.readouterr().err
    data = yaml.safe_load(task_path.read_text())
    data["train"] = {"epochs": "zero"}
    in_file = make_fixtures.write_task(task_path.parent, data, name="bad.yaml")
    assert main(["validate", str(in_file)]) == 2
    err_file = capsys.readouterr().err
    assert _problems(err_set) == _problems(err_file)
    assert _problems(err_set)[0].startswith("  - train.epochs: Input should be a valid integer")
    assert f"{task_path} with --set train.epochs=zero: the task file has 1 problem" in err_set
    assert "Traceback" not in err_set


@pytest.mark.parametrize(("override", "message"), [
    ("search.max_trails=3", "  - search.max_trails: unknown key"),
    ("serach.max_trials=3", "  - serach: unknown key"),
    ("patch_size.odd=true", "--set patch_size.odd=true: patch_size is 5, not a mapping"),
    ("train.epochs", "--set train.epochs: expected KEY.PATH=VALUE"),
    ("train..epochs=3", "--set train..epochs=3: expected KEY.PATH=VALUE"),
    ("sensors.sar.bands=[1,", "--set sensors.sar.bands=[1,: the value is not valid YAML"),
    ("search.constraints.max_flops=2e6", "YAML reads 2e6 as text: write 2000000"),
    ("labels.classes.2=water", "labels: class names must be unique"),
])
def test_a_bad_override_is_a_user_error_naming_the_key(task_path, capsys, override, message):
    assert main(["validate", str(task_path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_values_are_yaml_and_keys_reach_into_every_mapping(task_path):
    task = load_task(task_path, [
        "train.epochs=3", "search.constraints.max_flops=2000000", "sensors.sar.bands=[1]",
        "labels.classes.3=city", "train.device=cpu", "train.epochs=4", "search.max_minutes=",
    ])
    assert task.train.epochs == 4  # a later --set of the same key wins
    assert task.search.constraints.max_flops == 2_000_000
    assert task.sensors["sar"].bands == [1]
    assert task.labels.classes == {1: "water", 2: "trees", 3: "city"}  # integer key 3
    assert task.search.max_minutes is None
    untouched = load_task(task_path)
    assert task.sensors["optical"] == untouched.sensors["optical"]
    assert task.overrides[0] == "train.epochs=3" and untouched.overrides == ()


def test_relative_paths_given_by_set_resolve_against_the_current_folder(
    task_path, tmp_path, monkeypatch
):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    task = load_task(task_path, ["labels.path=mine/labels.tif",
                                 "sensors.sar={kind: sar, path: s1.tif}"])
    assert task.labels.path == cwd / "mine" / "labels.tif"
    assert task.sensors["sar"].path == cwd / "s1.tif"
    # the file's own relative paths still resolve against the file's folder
    assert task.sensors["optical"].path == task_path.parent / "optical.tif"


def test_the_task_copy_holds_the_overrides_and_reloads_to_the_same_task(task_path, tmp_path):
    task = load_task(task_path, ["split.seed=3", "sensors.sar.bands=[2]"])
    copy = tmp_path / "copy" / "task.yaml"
    copy.parent.mkdir()
    copy.write_text(task_yaml(task))
    again = load_task(copy)
    assert again.digest() == task.digest() != load_task(task_path).digest()
    assert again.split.seed == 3 and again.sensors["sar"].bands == [2]
    assert "# --set split.seed=3\n# --set sensors.sar.bands=[2]\n" in copy.read_text()
    with pytest.raises(TaskFileError, match="expected KEY.PATH=VALUE"):
        load_task(task_path, ["=3"])


def test_train_writes_the_overridden_task_into_its_run_folder(task_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(task_path), "--arch", "late_cnn", "--out", str(out), "--quiet",
                 "--set", "train.epochs=1", "--set", "train.max_train_samples=32",
                 "--set", "train.device=cpu"]) == 0
    copy = load_task(out / "task.yaml")
    assert copy.train.epochs == 1 and copy.train.max_train_samples == 32
    run = json.loads((out / "run.json").read_text())
    assert run["task"]["digest"] == copy.digest()
    assert run["task"]["path"] == str(task_path)  # provenance: the file the task came from
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
    assert "# --set train.epochs=1\n" in (out / "task.yaml").read_text()
