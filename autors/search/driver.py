"""Starting the task's strategy on the engine, whichever library it comes from.

The strategy's registration (`autors.search.catalog.drives_with`) names the adapter module that
drives it; every adapter module has

    start(space, spec, seed, broker, history) -> StrategyDriver

and the driver it returns proposes samples through the `SearchBroker` (ids, seeds, budget,
duplicates, recording) until the budget ends. Nothing here imports NNI or Optuna: the adapter
is imported when the search starts.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from autors.config import SearchSpec
from autors.search.broker import SearchBroker
from autors.search.catalog import strategy_driver
from autors.search.records import TrialRecord
from search_spaces import SearchSpace


class StrategyDriver(Protocol):
    """A strategy bound to the space and the broker, re-seeded from the run's history."""

    restored: str  # what the strategy learnt from the history (shown and kept in run.json)

    def run(self) -> None:
        """Propose until the budget ends, then wait for the trials still running."""


def strategy_seed(seed: int, n_history: int) -> int:
    """Strategy RNG seed: the task seed for a new run, a distinct stream after each resume."""
    return int(np.random.SeedSequence([seed, n_history]).generate_state(1)[0])


def start_strategy(space: SearchSpace, spec: SearchSpec, seed: int, broker: SearchBroker,
                   history: list[TrialRecord]) -> StrategyDriver:
    """The task's strategy, driven by the adapter its registration names."""
    adapter = importlib.import_module(strategy_driver(spec.strategy))
    return adapter.start(space, spec, seed, broker, history)
