"""A search folder: the run folder of a search, every file it leaves behind, written so that a
crash loses nothing. (The other kind of run folder holds one trained model:
`autors.training.train_folder`; the search keeps each final model as one under final/.)

results/runs/<name>/
    task.yaml        the task as run (paths made absolute so the run can resume from anywhere;
                     a header comment names the task file and any --set overrides)
    run.json         identity (task digest, space, strategy, seed) and state (status, sessions)
    trials.jsonl     one TrialRecord per finished trial, appended + fsynced as each one ends
                     (a multi-fidelity trial: again at each rung, the last line counts)
    checkpoints/     multi-fidelity trials' TrainState per rung (autors.search.rungs)
    final.jsonl      one line per (architecture, seed) retrained and evaluated on the test split
    leaderboard.csv  every trial ranked (rewritten after each trial), with test mean/std at the end
    progress.png     best-so-far score against trial count and against wall time
    pareto.png       metric against params and against latency, the Pareto front marked
    summary.json     seed, versions, host, wall time, counts, Pareto front, final test results
    ray_local.json   while a local Ray instance runs: its processes (see ray_pids.py)
    final/           trial<id>_seed<s>/: the train folder of each final retrained model

Only append-only files are ever appended to (`autors.files.append_fsynced`); every other file
is replaced atomically (`autors.files.write_atomic`) so a reader never sees half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from autors.config import TaskSpec, parse_task, task_yaml
from autors.errors import SearchError, TaskFileError
from autors.files import append_fsynced, json_default, write_atomic
from autors.search.records import TrialRecord

RUN_FORMAT = 1


class SearchFolder:
    """Paths and safe reads/writes of one search folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # -- paths ---------------------------------------------------------------------------
    @property
    def task_file(self) -> Path:
        return self.path / "task.yaml"

    @property
    def state_file(self) -> Path:
        return self.path / "run.json"

    @property
    def trials_file(self) -> Path:
        return self.path / "trials.jsonl"

    @property
    def final_file(self) -> Path:
        return self.path / "final.jsonl"

    @property
    def leaderboard_file(self) -> Path:
        return self.path / "leaderboard.csv"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    @property
    def progress_png(self) -> Path:
        return self.path / "progress.png"

    @property
    def pareto_png(self) -> Path:
        return self.path / "pareto.png"

    # -- creation and opening -------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, task: TaskSpec) -> SearchFolder:
        """Make a new search folder; a folder that already holds a run is refused (use --resume).

        The folder may exist with other content (e.g. the demo's scene/ sub-folder)."""
        path = Path(path)
        run = cls(path)
        if run.state_file.exists() or run.trials_file.exists():
            raise SearchError(
                f"run folder {path} already holds a run: continue it with --resume {path}, "
                "or pick another --name"
            )
        path.mkdir(parents=True, exist_ok=True)
        write_atomic(run.task_file, task_yaml(task))
        run.trials_file.touch()
        return run

    @classmethod
    def open(cls, path: Path) -> SearchFolder:
        """Open an existing search folder (for --resume or `autors status`)."""
        path = Path(path)
        run = cls(path)
        if not path.is_dir():
            raise SearchError(f"run folder not found: {path}")
        missing = [p.name for p in (run.state_file, run.task_file) if not p.is_file()]
        if missing:
            raise SearchError(
                f"{path} is not an autors run folder (missing {', '.join(missing)}): "
                "give the folder that `autors search` created, e.g. results/runs/<name>"
            )
        return run

    def load_task(self) -> TaskSpec:
        try:
            data = yaml.safe_load(self.task_file.read_text())
            return parse_task(data, self.task_file)
        except (yaml.YAMLError, TaskFileError) as err:
            raise SearchError(f"{self.task_file}: cannot read the run's task copy: {err}") from None

    # -- run.json ---------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SearchError(f"{self.state_file}: unreadable run state ({err})") from None
        if state.get("format") != RUN_FORMAT:
            raise SearchError(
                f"{self.state_file}: run format {state.get('format')!r} is not {RUN_FORMAT}: "
                "this run was made by another autors version"
            )
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        write_atomic(self.state_file, json.dumps({"format": RUN_FORMAT, **state}, indent=2))

    # -- trials.jsonl -------------------------------------------------------------------------
    def read_trials(self, repair: bool = False) -> tuple[list[TrialRecord], str | None]:
        """All recorded trials, and a warning when a truncated last line was found.

        A crash while appending leaves a last line without its newline (or cut mid-JSON). With
        `repair` the file is truncated back to its last complete line; without it the partial
        line is only skipped. A bad line anywhere else is corruption and raises SearchError.

        A multi-fidelity trial is appended again at each finished rung (`autors.search.rungs`):
        its last line is its record, in the place of its first line.
        """
        lines, warning = _read_jsonl(self.trials_file, TrialRecord.from_dict, repair)
        latest: dict[int, TrialRecord] = {}
        for record in lines:
            latest[record.trial_id] = record  # dicts keep the first insertion's place
        return list(latest.values()), warning

    def append_trial(self, record: TrialRecord) -> None:
        append_fsynced(self.trials_file, record.to_dict())

    # -- final.jsonl --------------------------------------------------------------------------
    def read_final(self, repair: bool = False) -> tuple[list[dict[str, Any]], str | None]:
        if not self.final_file.exists():
            return [], None
        return _read_jsonl(self.final_file, dict, repair)

    def append_final(self, row: dict[str, Any]) -> None:
        append_fsynced(self.final_file, row)

    # -- whole-file outputs -------------------------------------------------------------------
    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomic(self.summary_file, json.dumps(summary, indent=2, default=json_default))


def _read_jsonl(path: Path, parse, repair: bool) -> tuple[list, str | None]:
    if not path.exists():
        return [], None
    raw = path.read_bytes()
    items = []
    warning = None
    offset = 0
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        end = offset + len(line) + (0 if is_last else 1)
        if not line.strip():
            offset = end
            continue
        try:
            if is_last:
                # No trailing newline: the append was cut before it finished.
                raise ValueError("no newline at the end")
            items.append(parse(json.loads(line)))
        except (ValueError, TypeError, KeyError) as err:
            if not is_last and not _only_blank_after(lines, number):
                raise SearchError(
                    f"{path}: line {number} is corrupt ({err}); it is not the last line, so "
                    "this is not a crash while writing: fix or remove that line by hand"
                ) from None
            warning = (
                f"{path.name}: the last line ({len(line)} bytes) was cut short by a crash "
                "while writing; it was "
                + ("removed (that trial will run again)" if repair else "ignored")
            )
            if repair:
                with open(path, "r+b") as f:
                    f.truncate(offset)
            break
        offset = end
    return items, warning


def _only_blank_after(lines: list[bytes], number: int) -> bool:
    return all(not rest.strip() for rest in lines[number:])
