"""How a trained model holds up when sensors are missing or clouded: the same split's pixels
evaluated clean, with each used sensor removed, and under seeded cloud cover of the optical
sensors (`autors.data.conditions`).

    table = robustness(model, data, task, "test")      # {condition: {oa, kappa, ece, ...}}
    summary = robust_scores(table)                     # oa_robust, oa_worst_missing
"""

from __future__ import annotations

from typing import Any

from torch import nn

from autors.config import TaskSpec
from autors.data import PreparedData
from autors.data.conditions import Condition, standard_conditions
from autors.training.evaluate import evaluate

CLOUD_COVERS = (0.1, 0.3, 0.6)
_KEYS = ("oa", "aa", "kappa", "miou", "ece", "num_samples", "no_input")


def conditions_for(model: nn.Module, task: TaskSpec, clouds: bool = True) -> list[Condition]:
    """The conditions that matter for `model`: its own sensors removed one at a time, and
    clouds over its optical sensors (seeded by the split's seed: every model sees the same
    clouds)."""
    used = list(getattr(model, "sensors", None) or task.sensors)
    kinds = {name: task.sensors[name].kind for name in used}
    return standard_conditions(kinds, CLOUD_COVERS if clouds else (), seed=task.split.seed)


def robustness(model: nn.Module, data: PreparedData, task: TaskSpec, split: str,
               clouds: bool = True, clean: dict[str, Any] | None = None
               ) -> dict[str, dict[str, Any]]:
    """{condition name: metrics} on `split` for every condition of `conditions_for`; every
    condition scores the same pixels (`num_samples`; `no_input` of them have no valid used
    sensor left). `clean`: the split's metrics already computed, not evaluated again."""
    out = {}
    for condition in conditions_for(model, task, clouds):
        if condition.name == "clean" and clean is not None:
            m = clean
        else:
            m = evaluate(model, data, split, task.train.batch_size,
                         num_workers=task.train.num_workers,
                         condition=None if condition.name == "clean" else condition)
        out[condition.name] = {k: m[k] for k in _KEYS}
    return out


def robust_scores(table: dict[str, dict[str, Any]]) -> dict[str, float]:
    """`oa_robust`: mean OA over clean and each single sensor removed; `oa_worst_missing`:
    the lowest OA with one sensor removed (clean OA for a single-sensor model)."""
    missing = [v["oa"] for k, v in table.items() if k.startswith("without_")]
    clean = table["clean"]["oa"]
    return {"oa_robust": float(sum([clean, *missing]) / (1 + len(missing))),
            "oa_worst_missing": float(min(missing, default=clean))}
