"""The NNI side of the adapter without Ray: the space wrapper and the strategies' re-seeding."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from autors.cli import main
from autors.errors import SearchError
from autors.search.catalog import STRATEGIES
from autors.search.nni_adapter import _SpaceModel, make_strategy
from search_spaces import make_space

SENSORS = {"s2": "optical", "s1": "sar"}


@pytest.fixture
def space():
    return make_space("compact", SENSORS, dense=False)


def test_grid_walks_only_valid_samples(space) -> None:
    model = _SpaceModel(space)
    n_valid = sum(
        1 for m in model.grid() if m.sample is not None and space.invalid_reason(m.sample) is None
    )
    n_all = space.num_samples()
    all_off = n_all // (len(space.options()["branch.s2.kind"]) *
                        len(space.options()["branch.s1.kind"]))
    assert n_valid == n_all - all_off  # every sample except those with both sensors off


def test_random_freezes_to_valid_samples(space) -> None:
    model = _SpaceModel(space)
    rng = np.random.RandomState(0)
    for _ in range(50):
        sample: dict = {}
        try:
            frozen = model.random(memo=sample, random_state=rng)
        except ValueError:  # SampleValidationError: NNI's strategies retry these
            continue
        assert frozen.sample == sample and space.invalid_reason(sample) is None


def test_tpe_maximises(space) -> None:
    # NNI's TPE strategy builds its tuner with optimize_mode='minimize' unless told otherwise.
    strategy = make_strategy("tpe", seed=0, max_trials=20, n_labels=11, n_history=0)
    assert strategy.tuner.optimize_mode.value == "maximize"


def test_evolution_is_sized_to_the_budget() -> None:
    strategy = make_strategy("evolution", seed=0, max_trials=12, n_labels=11, n_history=0)
    assert strategy.population_size == 4 and strategy.sample_size == 2
    assert strategy.mutation_prob == pytest.approx(1.5 / 11)


def test_unknown_strategy() -> None:
    with pytest.raises(SearchError, match="valid strategies are evolution, grid, motpe, nsga2, optuna_tpe, random, tpe"):
        make_strategy("bayes", seed=0, max_trials=4, n_labels=3, n_history=0)


def test_a_registered_strategy_is_made_listed_and_checked(capsys) -> None:
    """Strategies are a registry like fusion's parts: one registered here (as a plugin would)
    is built by name and listed; a factory that returns no NNI strategy is named."""
    from nni.nas.strategy import Random

    @STRATEGIES.register("test_plain_random")
    def plain_random(seed: int, max_trials: int | None, n_labels: int) -> Random:
        """NNI's own random strategy (registered by a test)"""
        return Random(seed=seed)

    @STRATEGIES.register("test_broken")
    def broken(seed: int, max_trials: int | None, n_labels: int) -> object:
        return object()

    try:
        strategy = make_strategy("test_plain_random", seed=0, max_trials=4, n_labels=3,
                                 n_history=0)
        assert type(strategy) is Random
        assert main(["search", "--list-spaces"]) == 0
        assert re.search(r"test_plain_random +NNI's own random strategy \(registered by a "
                         r"test\)", capsys.readouterr().out)
        with pytest.raises(SearchError, match=r"valid strategies are evolution, grid, motpe, "
                                              r"nsga2, optuna_tpe, random, test_broken, "
                                              r"test_plain_random, tpe"):
            make_strategy("bayes", seed=0, max_trials=4, n_labels=3, n_history=0)
        with pytest.raises(SearchError, match=r"search.strategy: 'test_broken' \(.*test_nni_adapter"
                                              r".*broken\) returned object, not an NNI strategy"):
            make_strategy("test_broken", seed=0, max_trials=4, n_labels=3, n_history=0)
    finally:
        STRATEGIES.unregister("test_plain_random")
        STRATEGIES.unregister("test_broken")
    assert "test_plain_random" not in STRATEGIES


def test_replay_restores_population_and_dedup(space) -> None:
    rng = np.random.default_rng(0)
    history = []
    while len(history) < 10:
        s = {label: c.values[rng.integers(len(c.values))] for label, c in space.choices().items()}
        if space.invalid_reason(s) is None:
            history.append((s, float(len(history))))
    evo = make_strategy("evolution", seed=0, max_trials=12, n_labels=11, n_history=10)
    text = evo.replay(history)
    assert "population of 4" in text
    assert [ind.y for ind in evo._population] == [6.0, 7.0, 8.0, 9.0]  # the newest four
    assert evo._individual_counter == 10
    # Re-proposing a finished sample is refused by the restored dedup memory.
    with pytest.raises(ValueError, match="Duplicated sample"):
        evo._dedup_helper.dedup(history[3][0])
    rnd = make_strategy("random", seed=0, max_trials=12, n_labels=11, n_history=10)
    rnd.replay(history)
    with pytest.raises(ValueError, match="Duplicated sample"):
        rnd._dedup_helper.dedup(history[0][0])


def test_nni_is_only_imported_by_the_adapter() -> None:
    """NNI stays behind one module of autors (search_spaces may use nni.mutable)."""
    root = Path(__file__).resolve().parents[2]
    imports = re.compile(r"^\s*(?:from|import)\s+(nni[\w.]*)", re.MULTILINE)
    offenders = [
        str(path.relative_to(root))
        for path in (root / "autors").rglob("*.py")
        if imports.search(path.read_text()) and path.name != "nni_adapter.py"
    ]
    assert offenders == []
    for path in (root / "search_spaces").rglob("*.py"):
        for module in imports.findall(path.read_text()):
            assert module == "nni.mutable", f"{path.name} imports {module}"
