"""Names a task file may use for the search: spaces (search_spaces.SPACES) and strategies.

Light module (no nni.nas import), so name errors surface before Ray or NNI start.
"""

from __future__ import annotations

from collections.abc import Mapping

from autors.config import TaskSpec
from autors.errors import SearchError
from fusion import ArchError
from search_spaces import SPACES, SearchSpace, make_space

STRATEGIES: tuple[str, ...] = ("random", "grid", "evolution", "tpe")
STRATEGY_HELP: dict[str, str] = {
    "random": "uniform random samples, never the same sample twice",
    "grid": "every combination in turn (shuffled in blocks); for small spaces",
    "evolution": "regularised (aging) evolution: tournament parents, one-label mutations",
    "tpe": "tree-structured Parzen estimator (model-based, learns from scores)",
}

# A sensor mix used to show space sizes when no task is given.
EXAMPLE_SENSORS: dict[str, str] = {"optical": "optical", "sar": "sar"}


def check_strategy(name: str) -> None:
    """Raise SearchError for an unknown strategy name, listing the valid ones."""
    if name not in STRATEGIES:
        raise SearchError(
            f"search.strategy: unknown strategy {name!r}; valid strategies are "
            f"{', '.join(STRATEGIES)}"
        )


def sensor_kinds(task: TaskSpec) -> dict[str, str]:
    return {name: s.kind for name, s in task.sensors.items()}


def make_task_space(name: str, sensors: Mapping[str, str], dense: bool) -> SearchSpace:
    try:
        return make_space(name, sensors, dense)
    except ArchError as err:
        raise SearchError(f"search.space: {err}") from None


def space_for_task(task: TaskSpec) -> SearchSpace:
    """The task's search space for its sensors; also checks the strategy name."""
    check_strategy(task.search.strategy)
    return make_task_space(
        task.search.space, sensor_kinds(task), dense=task.dense
    )


def list_spaces(task: TaskSpec | None) -> list[str]:
    """One line per registered space with its size (for the task's sensors, or an example)."""
    sensors = sensor_kinds(task) if task is not None else EXAMPLE_SENSORS
    dense = task is not None and task.dense
    lines = []
    for name in SPACES:
        space = make_task_space(name, sensors, dense)
        lines.append(
            f"{name:<10} {space.size():>16,} architectures  {len(space.choices()):>3} choices  "
            f"{space.description}"
        )
    return lines
