"""The only module that touches NNI: the strategies' classes (registered by name in
`autors.search.catalog.STRATEGIES`), the space wrapper, the Ray engine.

NNI 3.0 strategies run in-process: `strategy.initialize(space, engine)` then `strategy.run()`.
They *push* models to the engine (`submit_models`), poll `idle_worker_available()` /
`budget_available()`, and learn from `FinalMetricEvent` / `TrainingEndEvent`. Here the engine
forwards each model's sample to the SearchBroker (Ray trials, budget, recording) and
dispatches the broker's results back as those events, all on the caller's thread (no
background thread: strategy callbacks never race with the strategy's own loop).

NNI quirks handled here (NNI 3.0, archived):
- `nni.nas` imports torch and pytorch_lightning (~5 s) and warns about torch 2.x classes;
  the warning is filtered narrowly, and this module is only imported by `autors search`.
- The TPE strategy creates its tuner with optimize_mode='minimize' by default although NAS
  strategies maximise; it also sleeps 1 s after every submission. `TPEStrategy` fixes both.
- `Strategy.wait_for_resource` sleeps 1 s whenever no worker is idle; our
  `idle_worker_available` blocks on `ray.wait` until a slot frees, so that sleep never runs
  and a finished trial's slot is refilled within milliseconds.
- Mutable.grid() crashes on the first invalid sample (e.g. every sensor off); `_SpaceModel`
  skips invalid ones. TPE may propose invalid samples too; they are told a failure score.
- RegularizedEvolution defaults (population 100, sample 25, mutation 5 %) make a 20-trial
  search pure random sampling; the population is scaled to the trial budget (catalog.py).
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

with warnings.catch_warnings():
    # nni.nas.nn.pytorch inspects torch.nn at import and flags torch 2.x helper classes.
    warnings.filterwarnings(
        "ignore", message=r".*is found to be not a nn\.Module", category=RuntimeWarning
    )
    from nni.algorithms.hpo.tpe_tuner import TpeTuner
    from nni.mutable import MutableDict, SampleValidationError
    from nni.nas.execution import ExecutionEngine
    from nni.nas.execution.event import FinalMetricEvent, TrainingEndEvent
    from nni.nas.space import ExecutableModelSpace, ModelStatus
    from nni.nas.strategy import GridSearch, Random, RegularizedEvolution, Strategy
    from nni.nas.strategy.evolution import Individual
    from nni.nas.strategy.hpo import HPOTunerStrategy
    from nni.nas.strategy.utils import DuplicationError
    from nni.runtime.log import silence_stdout

# NNI prints INFO logs of every sampled individual to stdout; keep its warnings only.
silence_stdout()
logging.getLogger("nni").setLevel(logging.WARNING)

from autors.config import SearchSpec
from autors.errors import SearchError
from autors.search.broker import SearchBroker
from autors.search.catalog import strategy_factory
from autors.search.driver import strategy_seed
from autors.search.records import TrialRecord
from autors.search.scoring import FAILED_SCORE
from search_spaces import Sample, SearchSpace

_logger = logging.getLogger(__name__)

POLL_S = 0.5  # longest wait on Ray between budget/deadline checks
MAX_INVALID_PROPOSALS = 1000  # TPE proposals in a row that are not valid architectures


# -- the space as NNI sees it ------------------------------------------------------------------
class _SpaceModel(ExecutableModelSpace):
    """A SearchSpace's labelled choices as an NNI executable model space (no torch module:
    the model is built in the trial from the sample's Arch)."""

    def __init__(self, space: SearchSpace, mutables: MutableDict | None = None) -> None:
        super().__init__()
        self.space = space
        self.mutables = mutables if mutables is not None else MutableDict(space.choices())
        self.evaluator = None
        self.sample: Sample | None = None

    def leaf_mutables(self, is_leaf) -> Iterable[Any]:
        yield from self.mutables.leaf_mutables(is_leaf)

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        err = self.mutables.check_contains(sample)
        if err is not None:
            return err
        reason = self.space.invalid_reason(sample)
        return SampleValidationError(reason) if reason else None

    def freeze(self, sample: Sample) -> _SpaceModel:
        self.validate(sample)
        model = _SpaceModel(self.space, self.mutables)
        model.sample = {label: sample[label] for label in self.mutables}
        model.status = ModelStatus.Frozen
        return model

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterator[Any]:
        labels = list(self.mutables)
        for values in itertools.product(*(self.mutables[label].values for label in labels)):
            sample = dict(zip(labels, values))
            if self.contains(sample):
                yield self.freeze(sample)

    def execute(self) -> Any:
        raise RuntimeError("autors trains models on its Ray engine, not through NNI's execute()")

    def __repr__(self) -> str:
        return f"_SpaceModel({self.space.name}, sample={self.sample}, status={self.status.value})"


# -- strategies that can be re-seeded from a run's history --------------------------------------
def _dedup_all(helper: Any, history: list[tuple[Sample, float]]) -> None:
    for sample, _ in history:
        try:
            helper.dedup(sample)
        except DuplicationError:
            pass


class RandomStrategy(Random):
    def replay(self, history: list[tuple[Sample, float]]) -> str:
        _dedup_all(self._dedup_helper, history)
        return f"{len(history)} samples marked as tried (never proposed again)"


class GridStrategy(GridSearch):
    def replay(self, history: list[tuple[Sample, float]]) -> str:
        _dedup_all(self._dedup, history)
        return f"{len(history)} grid points marked as done (skipped by the grid walk)"


class EvolutionStrategy(RegularizedEvolution):
    def replay(self, history: list[tuple[Sample, float]]) -> str:
        _dedup_all(self._dedup_helper, history)
        # Aging evolution keeps the newest `population_size` individuals: rebuild exactly that.
        latest = history[-self.population_size:]
        self._population = deque(Individual(dict(s), float(y)) for s, y in latest)
        self._individual_counter = len(history)
        return (
            f"population of {len(self._population)} (the latest scored trials, "
            f"size {self.population_size}), {len(history)} samples marked as tried"
        )


class TPEStrategy(HPOTunerStrategy):
    """TPE that maximises, never sleeps between submissions, and can replay history."""

    def __init__(self, seed: int, n_startup_jobs: int) -> None:
        super().__init__(
            TpeTuner(optimize_mode="maximize", seed=seed, tpe_args={"n_startup_jobs": n_startup_jobs})
        )
        self._replay: list[dict[str, Any]] = []

    def replay(self, history: list[tuple[Sample, float]]) -> str:
        # The tuner only learns its search space inside _run, so the import happens there.
        self._replay = [{"parameter": dict(s), "value": float(y)} for s, y in history]
        self._model_count = len(history)
        return f"{len(history)} observations (sample, score) given to the TPE model"

    def _run(self) -> None:
        space = {label: m.as_legacy_dict() for label, m in self.model_space.simplify().items()}
        with self._thread_lock:
            self.tuner.update_search_space(space)
            if self._replay:
                self.tuner.import_data(self._replay)
        invalid = 0
        while self.engine.budget_available():
            if not self.engine.idle_worker_available():
                continue
            with self._thread_lock:
                param_id = self._model_count
                self._model_count += 1
                param = self.tuner.generate_parameters(param_id)
                try:
                    model = self.model_space.freeze(param)
                except SampleValidationError:
                    # Not an architecture (e.g. every sensor off): teach the model to avoid it.
                    self.tuner.receive_trial_result(param_id, param, FAILED_SCORE)
                    invalid += 1
                    if invalid >= MAX_INVALID_PROPOSALS:
                        _logger.warning("TPE keeps proposing invalid samples; stopping")
                        return
                    continue
                invalid = 0
                self._model_to_id[model] = param_id
            self.engine.submit_models(model)


def make_strategy(
    name: str, seed: int, max_trials: int | None, n_labels: int, n_history: int
) -> Strategy:
    """The strategy registered as `name` (catalog.STRATEGIES), seeded, sized to the budget."""
    factory = strategy_factory(name)
    strategy = factory(strategy_seed(seed, n_history), max_trials, n_labels)
    if not isinstance(strategy, Strategy):
        # A plugin's factory: say which one, instead of failing inside NNI later.
        raise SearchError(
            f"search.strategy: '{name}' ({factory.__module__}.{factory.__qualname__}) returned "
            f"{type(strategy).__name__}, not an NNI strategy (nni.nas.strategy.Strategy)"
        )
    return strategy


# -- the engine ---------------------------------------------------------------------------------
class _RayEngine(ExecutionEngine):
    """NNI ExecutionEngine over the SearchBroker (Ray trials)."""

    def __init__(self, broker: SearchBroker, space: SearchSpace) -> None:
        super().__init__()
        self.broker = broker
        self.space = space
        self._models: list[ExecutableModelSpace] = []
        self._running: dict[int, ExecutableModelSpace] = {}

    def submit_models(self, *models: ExecutableModelSpace) -> None:
        for model in models:
            if not model.status.frozen() or model.status.completed():
                raise RuntimeError(f"model must be frozen before submitting, got {model}")
            self._models.append(model)
            arch = self.space.to_arch(model.sample).to_dict()
            model.status = ModelStatus.Training
            known = self.broker.lookup(arch)
            if known is not None:  # same network already evaluated: answer from memory
                self._finish(model, *known)
                continue
            screened = self.broker.screen_out(model.sample, arch)
            if screened is not None:  # over a params/FLOPs limit: scored without training
                self._finish(model, screened.score, screened.scored)
                continue
            trial_id = self.broker.submit(model.sample, arch)
            self._running[trial_id] = model

    def _finish(self, model: ExecutableModelSpace, score: float, scored: bool) -> None:
        self.dispatch_model_event(FinalMetricEvent(model, score))
        status = ModelStatus.Trained if scored else ModelStatus.Failed
        self.dispatch_model_event(TrainingEndEvent(model, status))

    def pump(self, timeout: float) -> None:
        """Wait up to `timeout` s for results and dispatch them; stop trials at the deadline."""
        if self.broker.past_deadline() and self.broker.pool.running:
            for trial_id in self.broker.cancel_running():
                model = self._running.pop(trial_id)
                self.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Interrupted))
            return
        for record in self.broker.wait(timeout):
            self._finish(self._running.pop(record.trial_id), record.score, record.scored)

    def idle_worker_available(self) -> bool:
        # Blocks until a slot is free (or the deadline cancels the running trials) instead of
        # returning False, which would make NNI sleep a whole second before asking again.
        self.pump(0.0)
        while not self.broker.has_slot():
            self.pump(POLL_S)
        return True

    def budget_available(self) -> bool:
        return self.broker.budget_left()

    def wait_models(self, *models: ExecutableModelSpace) -> None:
        targets = list(models) if models else self._models
        while any(not m.status.completed() for m in targets):
            self.pump(POLL_S)

    def list_models(self, status: ModelStatus | None = None) -> Iterable[ExecutableModelSpace]:
        if status is None:
            return list(self._models)
        return [m for m in self._models if m.status == status]

    def shutdown(self) -> None:
        self.broker.cancel_running()

    def state_dict(self) -> dict:
        return {"submitted": self.broker.submitted_total}

    def load_state_dict(self, state_dict: dict) -> None:
        # The broker is rebuilt from trials.jsonl, which is the run's real state.
        return None


class StrategyRun:
    """A strategy bound to the space and the engine, re-seeded from a run's history."""

    def __init__(
        self,
        space: SearchSpace,
        strategy: str,
        seed: int,
        broker: SearchBroker,
        history: list[TrialRecord],
    ) -> None:
        self.model_space = _SpaceModel(space)
        pairs = []
        for record in history:
            err = self.model_space.check_contains(record.sample)
            if err is not None:
                raise SearchError(
                    f"trial {record.trial_id} of the run is not a sample of the "
                    f"'{space.name}' space for these sensors ({err}): the run was made with "
                    "another space or sensor set; start a new run instead of resuming"
                )
            pairs.append((record.sample, record.score))
        self.strategy = make_strategy(
            strategy, seed, broker.budget.max_trials, len(self.model_space.mutables), len(history)
        )
        self.engine = _RayEngine(broker, space)
        self.strategy.initialize(self.model_space, self.engine)
        self.restored = ""
        if pairs:
            replay = getattr(self.strategy, "replay", None)
            # A plugin strategy may not know how to learn from history: it starts afresh.
            self.restored = (replay(pairs) if replay is not None else
                             f"nothing: strategy '{strategy}' has no replay(); it starts afresh")

    def run(self) -> None:
        """Run the strategy until the budget ends, then wait for the trials still running."""
        t0 = time.monotonic()
        self.strategy.run()
        self.engine.wait_models()
        _logger.debug("strategy finished after %.1f s", time.monotonic() - t0)


def start(space: SearchSpace, spec: SearchSpec, seed: int, broker: SearchBroker,
          history: list[TrialRecord]) -> StrategyRun:
    """The adapter's entry point (`autors.search.driver`): an NNI strategy on the broker."""
    return StrategyRun(space, spec.strategy, seed, broker, history)
