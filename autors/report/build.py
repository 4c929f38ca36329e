"""`write_report(run_dir)`: report.html of a run folder, a search's (`SearchFolder`) or one
trained model's (`read_train_folder`), read with their own readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from autors.config import TaskSpec, parse_task
from autors.errors import AutorsError, ModelFolderError, SearchError
from autors.files import write_atomic
from autors.report.archdiagram import arch_svg
from autors.report.models import calibration_line, metrics_detail
from autors.report.page import Cell, document, esc, fmt, note, table
from autors.report.searchview import (
    architectures,
    counts_text,
    front_charts,
    leaderboard,
    progress_chart,
)
from autors.report.task import task_section
from autors.search.report import METRICS, final_stats, ranked, retrained
from autors.search.search_folder import SearchFolder
from autors.training.train_folder import TrainFolder, read_train_folder

REPORT_FILE = "report.html"


def write_report(run_dir: str | Path) -> Path:
    """Write `run_dir/report.html` (replaced atomically) and return its path."""
    run_dir = Path(run_dir)
    path = run_dir / REPORT_FILE
    write_atomic(path, render_report(run_dir))
    return path


def render_report(run_dir: str | Path) -> str:
    """The page of a search folder or a train folder; anything else is a SearchError."""
    run_dir = Path(run_dir)
    state_file = run_dir / "run.json"
    try:
        kind = json.loads(state_file.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind == "train":
        return _train_page(read_train_folder(run_dir))
    return _search_page(SearchFolder.open(run_dir))


# ---- shared --------------------------------------------------------------------------------
def _sensor_info(sensors: list[dict] | None, task: TaskSpec | None) -> dict[str, str]:
    """sensor -> 'optical, 4 bands' for the diagrams' input boxes."""
    if sensors:
        return {s["name"]: f"{s.get('kind', '')}, {len(s.get('bands', []))} bands"
                for s in sensors}
    return {} if task is None else {n: s.kind for n, s in task.sensors.items()}


def _task_part(task: TaskSpec | None, split: dict | None,
               bands: dict[str, list[str]] | None = None) -> str:
    if task is None:
        return note("the run's task copy could not be read", warn=True)
    return task_section(task, split, bands)


def _kv(rows: list[tuple[str, Any]]) -> str:
    return table(["item", "value"], [[Cell(k, left=True), Cell(fmt(v) if not isinstance(v, str) else v,
                                                      left=True)]
                            for k, v in rows if v not in (None, "", [], {})])


def _split_rows(split: dict | None) -> list[tuple[str, Any]]:
    if not split:
        return [("split", "not recorded")]
    counts = split.get("counts") or {}
    leak = split.get("leakage") or {}
    return [("split hash", split.get("sha256")), ("split seed", split.get("seed")),
            ("split buffer (px)", split.get("buffer")),
            ("split sizes", ", ".join(f"{k} {v:,}" for k, v in counts.items())),
            ("held-out pixels touching training", ", ".join(
                f"{k} {v.get('touching_train')}" for k, v in leak.items()))]


def _versions(v: dict | None) -> str:
    return ", ".join(f"{k} {x}" for k, x in (v or {}).items())


# ---- a train folder ------------------------------------------------------------------------
def _outputs(targets: list[dict] | None) -> str | None:
    """'landcover, height': the targets of a model of several targets (None: one)."""
    if not targets or len(targets) < 2:
        return None
    return ", ".join(str(t.get("name")) for t in targets)


def _load_train_task(folder: TrainFolder) -> TaskSpec | None:
    spec = folder.run.get("task", {})
    try:
        source = Path(spec.get("path") or folder.path / "task.yaml")
        return parse_task(spec["spec"], source)
    except (AutorsError, KeyError, TypeError):
        try:
            return parse_task(yaml.safe_load((folder.path / "task.yaml").read_text()),
                              folder.path / "task.yaml")
        except (AutorsError, OSError, yaml.YAMLError):
            return None


def _train_page(folder: TrainFolder) -> str:
    run, m = folder.run, folder.metrics
    task = _load_train_task(folder)
    inputs = run.get("inputs", {})
    bands = {s["name"]: s.get("bands", []) for s in inputs.get("sensors", [])}
    cost = m.get("cost", {})
    model = [f"<p><code>{esc(folder.arch.summary())}</code></p>",
             arch_svg(folder.arch.to_dict(), _sensor_info(inputs.get("sensors"), task),
                      inputs.get("num_classes"), _outputs(inputs.get("targets"))),
             _kv([("parameters", cost.get("params")), ("FLOPs per sample", cost.get("flops")),
                  ("latency batch 1 (ms)", cost.get("latency_ms_b1")),
                  ("latency per sample, batch 256 (ms)", cost.get("latency_ms_per_sample_b256")),
                  ("epochs (best)", (f"{m.get('epochs')} ({m.get('best_epoch')}, early "
                   f"stopping on {m.get('monitor')})"))]),
             calibration_line([folder])]
    split = "test" if "test" in m else "val"
    metrics = ([] if split == "test" else
               [note("no test evaluation in this run (autors train --test evaluates once on "
                     "the test split): validation metrics shown")])
    metrics.append(metrics_detail([folder], split))
    prov = _kv([("run folder", str(folder.path)), ("seed", run.get("seed")),
                ("task digest", run.get("task", {}).get("digest")),
                *_split_rows(run.get("split")),
                ("started", run.get("started")), ("wall time (s)", run.get("wall_s")),
                ("device", run.get("device")), ("torch threads", run.get("torch_threads")),
                ("host", run.get("host")), ("versions", _versions(run.get("versions"))),
                ("command", " ".join(run.get("argv") or []))])
    title = f"autors train: {run.get('task', {}).get('name', folder.path.name)}"
    return document(title, f"{folder.path.name}, seed {run.get('seed')}, "
                    f"{folder.arch.summary()}", [
                        ("task", "Task", _task_part(task, run.get("split"), bands)),
                        ("model", "Model", "".join(model)),
                        ("metrics", "Metrics", "".join(metrics)),
                        ("provenance", "Provenance", prov)])


# ---- a search folder -----------------------------------------------------------------------
def _read_summary(folder: SearchFolder) -> dict | None:
    try:
        summary = json.loads(folder.summary_file.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _finals_part(folder: SearchFolder, rows: list[dict], stats: list, warning: str | None
                 ) -> str:
    if not stats:
        return note("no final models: the final phase has not run (yet), or no trial was "
                    "feasible")
    out = [note(warning, warn=True)] if warning else []
    for rank, f in enumerate(stats, start=1):
        out.append(f"<h3>final rank {rank}: trial {f.trial_id}, {f.runs} seed(s) "
                   f"{', '.join(map(str, f.seeds))}</h3>")
        picked = next((row.get("picked") for row in rows
                       if row.get("trial_id") == f.trial_id and row.get("picked")), None)
        if picked:
            out.append(f"<p>picked: {esc(', '.join(map(str, picked)))}</p>")
        out.append(table(["test metric", "mean", "std"],
                         [[Cell(f"test_{k}", left=True), f.mean.get(f"test_{k}"),
                           f.std.get(f"test_{k}")] for k in METRICS
                          if f"test_{k}" in f.mean]))
        for err in f.failed:
            out.append(note(f"a retraining failed: {err.splitlines()[0] if err else '?'}",
                            warn=True))
        folders, missing = [], []
        for row in rows:
            if row.get("trial_id") != f.trial_id or row.get("status") != "ok":
                continue
            if not row.get("run_dir"):
                missing.append(f"seed {row.get('seed')}: no train folder recorded")
                continue
            try:
                folders.append(read_train_folder(folder.path / row["run_dir"]))
            except ModelFolderError as err:
                missing.append(str(err))
        for text in missing:
            out.append(note(f"details not shown: {text}"))
        if folders:
            out.append(calibration_line(folders))
            out.append(metrics_detail(folders, "test"))
    return "".join(out)


def _search_page(folder: SearchFolder) -> str:
    state = folder.read_state()
    try:
        task: TaskSpec | None = folder.load_task()
    except SearchError:
        task = None
    summary = _read_summary(folder)
    records, warning = folder.read_trials(repair=False)
    objective = state.get("objective") or (task.search.objective if task else "val_oa")
    top_k = task.search.top_k if task else 3
    rows, final_warning = folder.read_final(repair=False)
    # the trials the final phase retrained (top-k by score, or a spread of a multi-objective
    # front), in ranking order
    chosen = retrained(records, rows)
    stats = final_stats(rows, chosen) if rows else []
    sensors = _sensor_info(None, task)
    classes = len(task.class_names) if task is not None and task.class_names else None
    top = chosen or [r for r in ranked(records) if r.ok and r.feasible][:top_k]

    status_text = state.get("status", "?")
    head = [(f"<p>status <b>{esc(status_text)}</b>; "
            f"{esc(counts_text(summary, records))}</p>")]
    if warning:
        head.append(note(warning, warn=True))
    if summary is None:
        head.append(note("summary.json is not written yet (the search is running, or it "
                         "stopped before its end): figures come from trials.jsonl"))
    progress = "".join(head) + (progress_chart(records, objective) + front_charts(
        records, summary, objective) if records else note("no finished trial yet"))
    s = summary or {}
    cluster = s.get("cluster") or {}
    sessions = state.get("sessions") or []
    nodes = cluster.get("trials_per_node") or {}
    prov = _kv([("run folder", str(folder.path)), ("search seed", state.get("seed")),
                ("space", f"{state.get('space')}" + (
                    f" ({s['space'].get('architectures'):,} architectures, "
                    f"{s['space'].get('choices')} choices)" if isinstance(s.get("space"), dict)
                    else "")),
                ("strategy", state.get("strategy")), ("objective", objective),
                ("constraints", ", ".join(f"{k} {v}" for k, v in (s.get("constraints") or {})
                                          .items() if v is not None)),
                ("task digest", state.get("task_digest")), *_split_rows(state.get("split")),
                ("created", state.get("created")), ("finished", s.get("finished")),
                ("wall time (s)", ", ".join(f"{k} {v:.1f}" for k, v in
                                            (s.get("wall_s") or {}).items()
                                            if isinstance(v, (int, float)))),
                ("sessions", ", ".join(f"{x.get('index')}: {x.get('host')} "
                                       f"{x.get('status')} ({x.get('started')} - "
                                       f"{x.get('ended', '')})" for x in sessions)),
                ("cluster", f"{cluster.get('mode')} at {cluster.get('address')}, "
                            f"{cluster.get('nodes')} node(s), {cluster.get('cpus')} CPUs, "
                            f"{cluster.get('gpus')} GPUs" if cluster else ""),
                ("trials per node", ", ".join(f"{k}: {v}" for k, v in nodes.items())),
                ("host", (s.get("host") or {}).get("hostname")),
                ("versions", _versions(s.get("versions")) or "in summary.json, when written")])
    title = f"autors search: {state.get('task_name', folder.path.name)}"
    subtitle = (f"{folder.path.name}: {state.get('strategy')} on {state.get('space')}, "
                f"objective {objective}, {status_text}")
    return document(title, subtitle, [
        ("task", "Task", _task_part(task, state.get("split"))),
        ("progress", "Search", progress),
        ("leaderboard", "Leaderboard", leaderboard(records, stats)),
        ("architectures", "Top architectures", architectures(top, sensors, classes,
                                                              objective)),
        ("final", "Final models", _finals_part(folder, rows, stats, final_warning)),
        ("provenance", "Provenance", prov)])
