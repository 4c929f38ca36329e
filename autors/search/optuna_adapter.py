"""The only module that touches Optuna: its samplers as ask/tell strategies on the SearchBroker.

Optuna strategies (registered in `autors.search.catalog.STRATEGIES`: nsga2, motpe, optuna_tpe)
are driven here, not by Optuna's own `study.optimize` loop, so the engine keeps its
concurrency, budget, duplicate handling and resume:

- ask: while the budget lasts and a slot is free, `study.ask(distributions)` gives a sample
  (the space's labelled choices as categorical distributions, from `SearchSpace.options()`,
  which is library-neutral). A sample that is no architecture is told a failure; an
  architecture already evaluated in this run is told its recorded values at once (the broker
  counts it as a duplicate); one over a params/FLOPs limit is recorded untrained by the broker
  and told a failure; any other goes to the broker (a Ray trial).
- tell: as trials finish. Multi-objective samplers (nsga2, motpe) minimise every objective of
  `search.objectives` on the front's scale (`autors.search.front.to_min`: costs in log10,
  maximised values negated) and see one constraint (`Trial.set_constraint`, Optuna >= 5): the
  sum of log2(measured / limit) over the violated constraints (0: feasible), so infeasible
  trials are dominated by every feasible one and never enter a front. Failed, timed-out and
  over-limit trials are told as failures. The single-objective `optuna_tpe` maximises the
  broker's score (objective with the constraint penalty, `autors.search.scoring`), as NNI's
  strategies do.
- resume: every recorded trial is added to the study (`study.add_trial`) with its values, its
  constraint and, for the genetic sampler, a generation (record order // population size), so
  the sampler continues from the run's history; its random generator gets a new stream.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler, NSGAIISampler, TPESampler
from optuna.trial import TrialState

from autors.config import ObjectiveSpec, SearchSpec
from autors.errors import SearchError
from autors.search.broker import SearchBroker
from autors.search.catalog import is_multi_objective, strategy_factory
from autors.search.driver import strategy_seed
from autors.search.front import raw_values, to_min
from autors.search.records import TrialRecord
from search_spaces import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)  # no INFO line per trial
_logger = logging.getLogger(__name__)

POLL_S = 0.5  # longest wait on Ray between budget/deadline checks
MAX_INVALID_PROPOSALS = 1000  # samples in a row that are not valid architectures
CONSTRAINT = "violation"  # the one constraint told with each multi-objective trial

# A strategy factory returns a recipe: a function building the sampler.
SamplerRecipe = Callable[[], BaseSampler]


def nsga2(seed: int, population: int, mutation_prob: float) -> SamplerRecipe:
    """Optuna's NSGA-II (uniform crossover, per-label mutation) with this population."""
    return lambda: NSGAIISampler(population_size=population, mutation_prob=mutation_prob,
                                 seed=seed)


def tpe(seed: int, startup: int) -> SamplerRecipe:
    """Optuna's TPE (multivariate; multi-objective when the study has several directions)."""
    return lambda: TPESampler(n_startup_trials=startup, multivariate=True, seed=seed)


def violation(record: TrialRecord) -> float:
    """One constraint value: sum of log2(measured / limit) over the violated ones, 0 if none
    (a trial marked infeasible without a ratio counts as 1)."""
    if record.feasible:
        return 0.0
    total = sum(math.log2(r) for r in record.violations.values() if r > 0)
    return total if total > 0 else 1.0


class OptunaRun:
    """An Optuna sampler asked and told through the broker (see the module docstring)."""

    def __init__(self, space: SearchSpace, spec: SearchSpec, seed: int, broker: SearchBroker,
                 history: list[TrialRecord]) -> None:
        self.space = space
        self.broker = broker
        self.multi = is_multi_objective(spec.strategy)
        self.objectives: list[ObjectiveSpec] = list(spec.objectives) if self.multi else []
        labels = list(space.choices())
        options = space.options()
        self.distributions = {label: CategoricalDistribution(options[label]) for label in labels}
        factory = strategy_factory(spec.strategy)
        recipe = factory(strategy_seed(seed, len(history)), broker.budget.max_trials,
                         len(labels))
        if not callable(recipe):
            raise SearchError(f"search.strategy: '{spec.strategy}' "
                              f"({factory.__module__}.{factory.__qualname__}) returned "
                              f"{type(recipe).__name__}, not an Optuna sampler recipe")
        self.sampler = recipe()
        directions = (["minimize"] * len(self.objectives)) if self.multi else ["maximize"]
        self.study = optuna.create_study(directions=directions, sampler=self.sampler)
        self._pending: dict[int, optuna.Trial] = {}
        self.restored = self._replay(history) if history else ""

    # -- what a record tells the study ----------------------------------------------------------
    def _told(self, record: TrialRecord) -> tuple[list[float] | None, float]:
        """(values, constraint) of a record; values None: a failure."""
        if not self.multi:
            return ([record.score] if record.scored else None), 0.0
        if not record.ok:  # failed, timed out, or never trained (over a limit)
            return None, 0.0
        raw = raw_values(record, self.objectives)
        if raw is None:
            return None, 0.0
        return [to_min(v, o) for v, o in zip(raw, self.objectives)], violation(record)

    def _tell(self, trial: optuna.Trial, record: TrialRecord) -> None:
        values, constraint = self._told(record)
        if values is None:
            self.study.tell(trial, state=TrialState.FAIL)
            return
        if self.multi:
            trial.set_constraint(CONSTRAINT, constraint)
        self.study.tell(trial, values)

    def _replay(self, history: list[TrialRecord]) -> str:
        generation_key = getattr(self.sampler, "_get_generation_key", None)  # genetic samplers
        population = getattr(self.sampler, "_population_size", None) or 1
        complete = 0
        for i, record in enumerate(sorted(history, key=lambda r: r.trial_id)):
            reason = self._not_a_sample(record.sample)
            if reason:
                raise SearchError(
                    f"trial {record.trial_id} of the run is not a sample of the "
                    f"'{self.space.name}' space for these sensors ({reason}): the run was made "
                    "with another space or sensor set; start a new run instead of resuming")
            values, constraint = self._told(record)
            system = {generation_key(): i // population} if generation_key else {}
            if values is None:
                trial = optuna.trial.create_trial(
                    state=TrialState.FAIL, params=record.sample,
                    distributions=self.distributions, system_attrs=system)
            else:
                complete += 1
                trial = optuna.trial.create_trial(
                    values=values, params=record.sample, distributions=self.distributions,
                    system_attrs=system,
                    constraints={CONSTRAINT: constraint} if self.multi else None)
            self.study.add_trial(trial)
        return (f"{len(history)} trials added to the Optuna study ({complete} with values, "
                f"{len(history) - complete} as failures)")

    def _not_a_sample(self, sample: dict) -> str | None:
        for label, dist in self.distributions.items():
            if label not in sample:
                return f"no value for {label!r}"
            if sample[label] not in dist.choices:
                return f"{label}: {sample[label]!r} is not one of {list(dist.choices)}"
        return self.space.invalid_reason(sample)

    # -- the loop -------------------------------------------------------------------------------
    def _propose(self) -> bool:
        """Ask one sample and send it on; False when it was not a valid architecture."""
        trial = self.study.ask(self.distributions)
        sample = dict(trial.params)
        if self.space.invalid_reason(sample) is not None:
            self.study.tell(trial, state=TrialState.FAIL)
            self.broker.count_invalid()
            return False
        arch = self.space.to_arch(sample).to_dict()
        known = self.broker.lookup_record(arch)
        if known is not None:  # same network already evaluated: answer from the record
            self._tell(trial, known)
            return True
        screened = self.broker.screen_out(sample, arch)
        if screened is not None:  # over a params/FLOPs limit: recorded without training
            self._tell(trial, screened)
            return True
        self._pending[self.broker.submit(sample, arch)] = trial
        return True

    def _pump(self, timeout: float) -> None:
        if self.broker.past_deadline() and self.broker.pool.running:
            for trial_id in self.broker.cancel_running():  # not recorded: told as failures
                self.study.tell(self._pending.pop(trial_id), state=TrialState.FAIL)
            return
        for record in self.broker.wait(timeout):
            self._tell(self._pending.pop(record.trial_id), record)

    def run(self) -> None:
        """Ask while the budget lasts and a slot is free; tell as trials finish; then wait for
        the trials still running."""
        invalid = 0
        while True:
            self._pump(0.0)
            if self.broker.budget_left():
                if self.broker.has_slot():
                    invalid = 0 if self._propose() else invalid + 1
                    if invalid >= MAX_INVALID_PROPOSALS:
                        _logger.warning("the sampler keeps proposing invalid samples; stopping")
                        self.broker.stop_reason = "the sampler proposed only invalid samples"
                    continue
            elif not self.broker.pool.running:
                return
            self._pump(POLL_S)


def start(space: SearchSpace, spec: SearchSpec, seed: int, broker: SearchBroker,
          history: list[TrialRecord]) -> OptunaRun:
    """The adapter's entry point (`autors.search.driver`)."""
    return OptunaRun(space, spec, seed, broker, history)

