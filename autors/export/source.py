"""What can be exported from a run folder: an `autors train` run or an `autors search` run.

- A train run (`autors.training.run_folder`) holds one model: rank 1.
- A search run (`autors.search.runfolder`) lists its final retrained models in `final.jsonl`,
  one row per (architecture = `trial_id`, seed). Rank r is the r-th of those architectures in
  the search's own ranking of trials (`autors.search.report.ranked`: feasible by score).
  Each ok row must name in `run_dir` (relative to the search folder) the train-run folder
  that retraining wrote (weights, metrics, normalisation, provenance). All seeds of a rank
  are one candidate: metrics are summarised over them and the seed with the best validation
  score supplies the exported weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autors.errors import AutorsError, ModelFolderError
from autors.search.report import ranked
from autors.search.runfolder import RunFolder as SearchRunFolder
from autors.training.run_folder import FILES as TRAIN_FILES
from autors.training.run_folder import RunFolder as TrainRun
from autors.training.run_folder import read_run


@dataclass
class Candidate:
    """One exportable architecture: its rank and the train runs of its seeds."""

    rank: int
    runs: list[TrainRun]  # one per seed, seed order
    source: Path  # the folder the user named
    kind: str  # "train" or "search"

    @property
    def monitor(self) -> str:
        """The validation metric the runs early-stopped on ('val_oa' or 'val_miou')."""
        return str(self.runs[0].metrics.get("monitor", "val_oa"))

    @property
    def best(self) -> TrainRun:
        """The seed whose weights are exported: best validation score, first seed on a tie."""
        key = self.monitor.removeprefix("val_")
        return max(self.runs, key=lambda r: float(r.metrics["val"][key]))

    @property
    def seeds(self) -> list[int]:
        return [int(r.run["seed"]) for r in self.runs]


def is_train_run(path: Path) -> bool:
    return (path / "weights.pt").is_file() or (path / "arch.json").is_file()


def list_candidates(path: str | Path) -> list[Candidate]:
    """Every exportable model of the run folder `path`, by rank."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"run folder {path} does not exist")
    if is_train_run(path):
        return [Candidate(rank=1, runs=[read_run(path)], source=path, kind="train")]
    if not (path / "trials.jsonl").is_file():
        raise ModelFolderError(
            f"{path} is neither an `autors train` run folder (no {', '.join(TRAIN_FILES)}) nor "
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
    folder = SearchRunFolder(path)
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
    runs: dict[int, list[TrainRun]] = {}
    for row in rows:
        if "run_dir" not in row:
            raise ModelFolderError(
                f"{folder.final_file}: the row of trial {row.get('trial_id')} seed "
                f"{row.get('seed')} has no 'run_dir', so this search did not keep the weights "
                "of its final models; train that architecture with `autors train TASK --arch "
                "arch.json --test` and export the train run folder"
            )
        runs.setdefault(int(row["trial_id"]), []).append(read_run(path / str(row["run_dir"])))
    # Trials missing from trials.jsonl (should not happen) rank after the known ones.
    by_rank = sorted(runs, key=lambda t: (order.get(t, len(order)), t))
    return [
        Candidate(rank=i, runs=sorted(runs[t], key=lambda x: int(x.run["seed"])), source=path,
                  kind="search")
        for i, t in enumerate(by_rank, start=1)
    ]
