"""Names a task file may use for the search: spaces (search_spaces.SPACES) and strategies
(`STRATEGIES`, a registry like fusion's parts).

Light module (no nni.nas import), so name errors surface before Ray or NNI start: a strategy is
registered here as a factory whose body imports the NNI side (`autors.search.nni_adapter`) only
when the search builds it.

    @STRATEGIES.register("my_strategy")
    def my_strategy(seed: int, max_trials: int | None, n_labels: int) -> Strategy:
        # the docstring's first line is what `autors search --list-spaces` shows
        return MyStrategy(seed=seed)  # an nni.nas.strategy.Strategy, built lazily

A strategy that defines `replay(history: list[tuple[sample, score]]) -> str` is re-seeded from
a resumed run's trials; others start afresh (duplicates are still answered from the record).

Which module drives a strategy is a property of its registration (`drives_with`): the NNI
adapter (push model, the default, so a plugin's factory that returns an NNI strategy works as
before) or the Optuna adapter (ask/tell). Each adapter module has
`start(space, spec, seed, broker, history) -> StrategyDriver`; `autors.search.driver` imports
the one a strategy names, so the engine depends on neither library. A registration also says
whether the strategy optimises `search.objectives` directly (`multi_objective`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from autors.config import TaskSpec
from autors.errors import SearchError
from fusion import ArchError, Registry
from search_spaces import SPACES, SearchSpace, make_space

# (seed, max_trials (None: a time budget only), number of labelled choices) -> NNI strategy
StrategyFactory = Callable[[int, int | None, int], Any]

STRATEGIES: Registry[StrategyFactory] = Registry("strategy")
DEFAULT_BUDGET = 60  # trials assumed for sizing a strategy when only max_minutes is given
NNI_DRIVER = "autors.search.nni_adapter"
OPTUNA_DRIVER = "autors.search.optuna_adapter"


def drives_with(module: str, multi_objective: bool = False
                ) -> Callable[[StrategyFactory], StrategyFactory]:
    """Mark a factory: the adapter module that drives its strategies, and whether they
    optimise `search.objectives` (several values) instead of the one score."""

    def mark(factory: StrategyFactory) -> StrategyFactory:
        factory.driver = module  # type: ignore[attr-defined]
        factory.multi_objective = multi_objective  # type: ignore[attr-defined]
        return factory

    return mark


def strategy_driver(name: str) -> str:
    """The adapter module that drives strategy `name` (NNI's when the factory says nothing)."""
    return getattr(strategy_factory(name), "driver", NNI_DRIVER)


def is_multi_objective(name: str) -> bool:
    return bool(getattr(strategy_factory(name), "multi_objective", False))


@STRATEGIES.register("random")
def random_strategy(seed: int, max_trials: int | None, n_labels: int) -> Any:
    """uniform random samples, never the same sample twice"""
    from autors.search.nni_adapter import RandomStrategy

    return RandomStrategy(seed=seed)


@STRATEGIES.register("grid")
def grid_strategy(seed: int, max_trials: int | None, n_labels: int) -> Any:
    """every combination in turn (shuffled in blocks); for small spaces"""
    from autors.search.nni_adapter import GridStrategy

    return GridStrategy(seed=seed)


@STRATEGIES.register("evolution")
def evolution_strategy(seed: int, max_trials: int | None, n_labels: int) -> Any:
    """regularised (aging) evolution: tournament parents, one-label mutations"""
    from autors.search.nni_adapter import EvolutionStrategy

    # NNI's defaults (population 100, sample 25) make a 20-trial search pure random sampling.
    population = int(np.clip((max_trials or DEFAULT_BUDGET) // 3, 4, 50))
    return EvolutionStrategy(
        population_size=population,
        sample_size=max(2, population // 3),
        mutation_prob=float(np.clip(1.5 / max(n_labels, 1), 0.05, 0.5)),
        seed=seed,
    )


@STRATEGIES.register("tpe")
def tpe_strategy(seed: int, max_trials: int | None, n_labels: int) -> Any:
    """tree-structured Parzen estimator (model-based, learns from scores)"""
    from autors.search.nni_adapter import TPEStrategy

    return TPEStrategy(seed=seed,
                       n_startup_jobs=int(np.clip((max_trials or DEFAULT_BUDGET) // 3, 4, 20)))


def _startup(max_trials: int | None) -> int:
    """Random proposals before a model-based sampler starts learning: a third of the budget,
    4 to 10."""
    return int(np.clip((max_trials or DEFAULT_BUDGET) // 3, 4, 10))


@STRATEGIES.register("nsga2")
@drives_with(OPTUNA_DRIVER, multi_objective=True)
def nsga2_strategy(seed: int, max_trials: int | None, n_labels: int) -> Any:
    """Optuna NSGA-II on search.objectives (non-dominated sorting, crowding, constraints)"""
    from autors.search.optuna_adapter import nsga2

    # Optuna's default population (50) makes a 24-trial search pure random sampling.
    return nsga2(seed, population=int(np.clip((max_trials or DEFAULT_BUDGET) // 4, 4, 50)),
                 mutation_prob=float(np.clip(1.5 / max(n_labels, 1), 0.05, 0.5)))


@STRATEGIES.register("motpe")
@drives_with(OPTUNA_DRIVER, multi_objective=True)
def motpe_strategy(seed: int, max_trials: int | None, n_labels: int) -> Any:
    """Optuna multi-objective TPE on search.objectives (constraint-aware)"""
    from autors.search.optuna_adapter import tpe

    return tpe(seed, startup=_startup(max_trials))


@STRATEGIES.register("optuna_tpe")
@drives_with(OPTUNA_DRIVER)
def optuna_tpe_strategy(seed: int, max_trials: int | None, n_labels: int) -> Any:
    """Optuna TPE on the one score (objective with the constraint penalty)"""
    from autors.search.optuna_adapter import tpe

    return tpe(seed, startup=_startup(max_trials))


def strategy_factory(name: str) -> StrategyFactory:
    """The factory registered as `name`; SearchError listing the valid names otherwise."""
    check_strategy(name)
    return STRATEGIES.get(name)


def strategy_help(name: str) -> str:
    """The first line of the strategy's docstring (its one-line description)."""
    doc = (strategy_factory(name).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""

# A sensor mix used to show space sizes when no task is given.
EXAMPLE_SENSORS: dict[str, str] = {"optical": "optical", "sar": "sar"}


def check_strategy(name: str) -> None:
    """Raise SearchError for an unknown strategy name, listing the valid ones."""
    if not isinstance(name, str) or name not in STRATEGIES:
        raise SearchError(
            f"search.strategy: unknown strategy {name!r}; valid strategies are "
            f"{', '.join(STRATEGIES.names())} (a plugin may register more: see README, Plugins)"
        )


def sensor_kinds(task: TaskSpec) -> dict[str, str]:
    return {name: s.kind for name, s in task.sensors.items()}


def make_task_space(name: str, sensors: Mapping[str, str], dense: bool) -> SearchSpace:
    try:
        return make_space(name, sensors, dense)
    except ArchError as err:
        raise SearchError(f"search.space: {err}") from None


def check_objectives(name: str, objectives: list) -> None:
    """A multi-objective strategy needs `search.objectives`."""
    if is_multi_objective(name) and not objectives:
        raise SearchError(
            f"search.strategy: '{name}' is a multi-objective strategy: set search.objectives "
            "(two or more, e.g. [{name: val_oa, goal: max}, {name: flops, goal: min}]), or "
            "choose a single-objective strategy"
        )


def space_for_task(task: TaskSpec) -> SearchSpace:
    """The task's search space for its sensors; also checks the strategy name (and that a
    multi-objective strategy has objectives)."""
    check_strategy(task.search.strategy)
    check_objectives(task.search.strategy, task.search.objectives)
    space = make_task_space(
        task.search.space, sensor_kinds(task), dense=task.dense
    )
    space.set_input_kinds({name: s.input_kind for name, s in task.sensors.items()})
    if task.multi_target:  # one head per target, each its width and stage
        space.set_targets(list(task.target_specs))
    return space


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
