"""Helpers shared by tests/search and tests/cluster (loaded by path: tests are not a package).

- the tiny synthetic scene and task files of the search tests (`SCENE`, `write_task`);
- crash tests: run `autors search` as a separate process in its own session, SIGKILL it once
  some trials are recorded, check what a resume guarantees, find and kill what it left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from autors.config import TaskSpec, parse_task
from autors.search.broker import arch_key
from autors.search.records import TrialRecord
from autors.synth import SynthConfig

# 64 x 64 px, 4 classes, optical + SAR + LiDAR, ~50 training pixels: seconds per real trial.
SCENE = SynthConfig(size=64, classes=4, sensors=("optical", "sar", "lidar"),
                    n_train_per_class=20, task_epochs=1, task_trials=4)
TINY_TRAIN = {"epochs": 1, "batch_size": 32, "early_stopping_patience": 1, "device": "cpu"}


def write_task(scene_task_file: Path, out: Path, train: dict | None = None,
               **search: Any) -> TaskSpec:
    """The scene's task with these search fields, written to `out` (raster paths made
    absolute, so another process or a resumed run can load it too)."""
    data = yaml.safe_load(scene_task_file.read_text())
    for sensor in data["sensors"].values():
        sensor["path"] = str(scene_task_file.parent / sensor["path"])
    data["labels"]["path"] = str(scene_task_file.parent / data["labels"]["path"])
    for key in ("train", "test"):
        data["split"][key] = str(scene_task_file.parent / data["split"][key])
    data["train"] = {**TINY_TRAIN, **(train or {})}
    data["search"] = {"space": "compact", "strategy": "random", "max_trials": 4,
                      "concurrency": 2, "top_k": 1, "final_seeds": 1, **search}
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return parse_task(data, out)


def lines(path: Path) -> list[str]:
    """The lines of a text file ([] when it does not exist yet)."""
    return path.read_text().splitlines() if path.exists() else []


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def processes_using(marker: str) -> list[int]:
    """Live processes (not this one) whose command line contains `marker`, e.g. a private
    RAY_TMPDIR: the processes of one test's Ray and nobody else's."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def session_pids(sid: int) -> list[int]:
    """Live processes of session `sid`. Ray workers put themselves in their own process group,
    but stay in the session of the process that started Ray."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != sid:
                continue
        except OSError:
            continue
        if pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (a process started with start_new_session)."""
    kill_pids(session_pids(sid))


def start_search(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`python -m autors search ARGS` in its own session, output to `log_path`."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "autors", "search", *args],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def sigkill_after_trials(
    proc: subprocess.Popen, trials_file: Path, n: int, timeout: float, log_path: Path
) -> list[str]:
    """Wait until `trials_file` has `n` lines, SIGKILL the search process (only it: what it
    started lives on until kill_session), and return the file's lines at that moment."""
    deadline = time.monotonic() + timeout
    try:
        while len(lines(trials_file)) < n:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no {n} trials within {timeout} s:\n" + (
                log_path.read_text()[-3000:])
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return lines(trials_file)


def assert_resumed(trials_file: Path, before: list[str], records: list[TrialRecord],
                   total: int) -> None:
    """What a resume after a crash guarantees: `total` trials in all, the ones finished before
    the crash kept byte for byte and never re-run (no id, no architecture twice), the new ones
    recorded by session 1."""
    after = lines(trials_file)
    assert len(after) == total == len(records)
    assert after[: len(before)] == before
    ids = [json.loads(line)["trial_id"] for line in after]
    assert len(set(ids)) == total
    sessions = [json.loads(line)["session"] for line in after]
    assert sessions == [0] * len(before) + [1] * (total - len(before))
    assert len({arch_key(r.result.arch) for r in records}) == total
