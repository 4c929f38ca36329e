"""What can be exported from a run folder: a train folder or a search folder.

- A train folder (`autors.training.train_folder`, written by `autors train`) holds one model:
  rank 1.
- A search folder (`autors.search.search_folder`) lists its final retrained models in
  `final.jsonl`, one row per (architecture = `trial_id`, seed). Rank r is the r-th of those
  architectures in the search's own ranking of trials (`autors.search.report.ranked`:
  feasible by score).
  Each ok row must name in `run_dir` (relative to the search folder) the train folder
  that retraining wrote (weights, metrics, normalisation, provenance). All seeds of a rank
  are one candidate: metrics are summarised over them and the seed with the best validation
  score supplies the exported weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from autors.errors import AutorsError, ModelFolderError
from autors.plugins import PluginInfo, load_plugins
from autors.search.report import ranked
from autors.search.search_folder import SearchFolder
from autors.training.train_folder import FILES, TrainFolder, read_train_folder


@dataclass
class Candidate:
    """One exportable architecture: its rank and the train folders of its seeds."""

    rank: int
    runs: list[TrainFolder]  # one per seed, seed order
    source: Path  # the folder the user named
    kind: str  # "train" or "search"

    @property
    def monitor(self) -> str:
        """The validation metric the runs early-stopped on ('val_oa' or 'val_miou')."""
        return str(self.runs[0].metrics.get("monitor", "val_oa"))

    @property
    def best(self) -> TrainFolder:
        """The seed whose weights are exported: best validation score, first seed on a tie."""
        key = self.monitor.removeprefix("val_")
        return max(self.runs, key=lambda r: float(r.metrics["val"][key]))

    @property
    def seeds(self) -> list[int]:
        return [int(r.run["seed"]) for r in self.runs]


def is_train_folder(path: Path) -> bool:
    """Whether `path` looks like a train folder (complete or not: reading it names what is
    missing)."""
    return (path / "weights.pt").is_file() or (path / "arch.json").is_file()


def load_run_plugins(path: Path) -> list[PluginInfo]:
    """Import the plugins of the task that made run folder `path`: a train folder's run.json
    task spec (what was trained, --set included), or a search folder's task copy."""
    train = is_train_folder(path)
    where = f"{path / 'run.json'}: task.spec.plugins" if train else f"{path / 'task.yaml'}: plugins"
    try:
        if train:
            names = json.loads((path / "run.json").read_text())["task"]["spec"]["plugins"]
        else:
            names = yaml.safe_load((path / "task.yaml").read_text())["plugins"]
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, KeyError, TypeError):
        names = []  # an older run (no plugins), or a damaged one that reading it will report
    return load_plugins(names, where)


def list_candidates(path: str | Path) -> list[Candidate]:
    """Every exportable model of the run folder `path`, by rank."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"run folder {path} does not exist")
    load_run_plugins(path)  # its archs may name parts that plugins register
    if is_train_folder(path):
        return [Candidate(rank=1, runs=[read_train_folder(path)], source=path, kind="train")]
    if not (path / "trials.jsonl").is_file():
        raise ModelFolderError(
            f"{path} is neither an `autors train` run folder (no {', '.join(FILES)}) nor "
            "an `autors search` run folder (no trials.jsonl): give the folder under "
            "results/runs/ that one of them wrote"
        )
    return _search_candidates(path)


def select(path: str | Path, rank: int) -> Candidate:
    """The candidate of rank `rank` (1 = best); an unknown rank lists the valid ones."""
    candidates = list_candidates(path)
    for c in candidates:
        if c.rank == rank:
            return c
    raise ModelFolderError(
        f"{path} has no model of rank {rank}: valid ranks are {[c.rank for c in candidates]} "
        f"(see `autors export --list {path}`)"
    )


def _search_candidates(path: Path) -> list[Candidate]:
    folder = SearchFolder(path)
    try:
        rows, _ = folder.read_final()
        records, _ = folder.read_trials()
    except AutorsError as err:
        raise ModelFolderError(f"search run {path}: {err}") from None
    rows = [r for r in rows if r.get("status") == "ok"]
    if not rows:
        raise ModelFolderError(
            f"search run {path} has no successfully retrained final model yet "
            f"({folder.final_file.name} is missing, empty or lists only failures): let the "
            "search finish, or resume it with `autors search --resume`"
        )
    order = {r.trial_id: i for i, r in enumerate(ranked(records))}
    runs: dict[int, list[TrainFolder]] = {}
    for row in rows:
        if "run_dir" not in row:
            raise ModelFolderError(
                f"{folder.final_file}: the row of trial {row.get('trial_id')} seed "
                f"{row.get('seed')} has no 'run_dir', so this search did not keep the weights "
                "of its final models; train that architecture with `autors train TASK --arch "
                "arch.json --test` and export its run folder"
            )
        runs.setdefault(int(row["trial_id"]), []).append(
            read_train_folder(path / str(row["run_dir"])))
    # Trials missing from trials.jsonl (should not happen) rank after the known ones.
    by_rank = sorted(runs, key=lambda t: (order.get(t, len(order)), t))
    return [
        Candidate(rank=i, runs=sorted(runs[t], key=lambda x: int(x.run["seed"])), source=path,
                  kind="search")
        for i, t in enumerate(by_rank, start=1)
    ]
