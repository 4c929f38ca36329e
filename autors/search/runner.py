"""`run_search`: a whole search, from task file to run folder, resumable after a crash.

    outcome = run_search(load_task("task.yaml"), SearchOptions(out_dir=Path("results/runs")))

Order: check the task (or open the run for --resume) -> prepare the data once -> create the run
folder -> connect to Ray -> put task and data in the object store once -> re-seed the strategy
from trials.jsonl (on --resume) -> run the strategy until the budget ends -> retrain the top-k
(or, with several objectives, a spread of the Pareto front) on several seeds and test them once -> leaderboard, plots, summary. Bad input fails before the
run folder exists; a crash or Ctrl-C later leaves a folder that `--resume` continues.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from autors.config import SearchSpec, TaskSpec
from autors.data import prepare
from autors.data.native import native_scales
from autors.errors import SearchError
from autors.plugins import shipped_modules, task_plugins
from autors.search import summary as summary_mod
from autors.search.broker import Budget, SearchBroker
from autors.search.catalog import space_for_task
from autors.search.cluster import ClusterInfo, ray_cluster
from autors.search.driver import StrategyDriver, start_strategy
from autors.search.final import retrain_and_test, run_final
from autors.search.node_files import check_nodes, dataset_files, raise_for_nodes
from autors.search.plots import plot_pareto, plot_progress
from autors.search.pool import SharedInputs, TrialFn, TrialPool, TrialResources
from autors.search.prescreen import make_screen
from autors.search.progress import SearchProgress, log_line
from autors.search.ray_pids import recording, stop_leftovers
from autors.search.records import TrialRecord, trained_count
from autors.search.report import (
    FinalStats,
    final_picks,
    final_stats,
    leaderboard_rows,
    pareto,
    picks_of,
    write_leaderboard,
)
from autors.search.resume import (
    check_not_running,
    check_same_split,
    merge_resumed_task,
    previous_elapsed,
)
from autors.search.rungs import Rungs, make_scheduler
from autors.search.scoring import judge
from autors.search.search_folder import SearchFolder
from autors.training.train_folder import check_task_copyable
from autors.training.trial import run_trial


@dataclass(frozen=True)
class SearchOptions:
    """Everything about a search that is not in the task file."""

    out_dir: Path = Path("results/runs")
    name: str | None = None  # run folder name; default <task name>-<date>-<time>
    resume: Path | None = None  # an existing run folder to continue
    address: str | None = None  # an existing Ray cluster; None starts a local instance
    ship_code: bool = False  # send this autors to the cluster's workers (runtime env py_modules)
    quiet: bool = False  # log lines instead of the live panel
    # The trial and final functions run in Ray workers; tests inject cheap ones.
    trial_fn: TrialFn = run_trial
    final_fn: TrialFn = retrain_and_test


@dataclass
class SearchOutcome:
    run_dir: Path
    records: list[TrialRecord]
    summary: dict[str, Any] = field(default_factory=dict)


def default_run_name(task: TaskSpec) -> str:
    return f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_search(
    task: TaskSpec | None, options: SearchOptions, console: Console | None = None
) -> SearchOutcome:
    """Run (or resume) a search; returns the run folder and its records."""
    console = console or Console()
    t_start = time.monotonic()

    # -- the task, the data, then the run folder (bad input fails before anything exists) ----
    if options.resume is not None:
        run = SearchFolder.open(options.resume)
        state = run.read_state()
        check_not_running(state, run.path)
        task = merge_resumed_task(run.load_task(), task, run.path)
    elif task is None:
        raise SearchError("give a task file (or --resume RUN to continue a run)")
    else:
        check_task_copyable(task)  # the final phase's model folders copy the task file
    plugins = task_plugins(task)  # before any part or space is looked up by name
    space = space_for_task(task)
    spec = task.search
    _stop_leftovers(run.path.parent if options.resume is not None else options.out_dir, console)
    t0 = time.monotonic()
    data = prepare(task)
    space.set_native_scales(native_scales(data.index))  # coarser sensors may enter later
    data_s = time.monotonic() - t0
    log_line(console, f"data ready in {data_s:.1f} s: sensors {data.in_channels}; "
             f"{data.describe()}")
    split = data.index.split_record()
    if options.resume is not None:
        check_same_split(state, split, run.path)
        history, repaired = run.read_trials(repair=True)
        if repaired:
            log_line(console, f"warning: {repaired}")
    else:
        run = SearchFolder.create(options.out_dir / (options.name or default_run_name(task)), task)
        state = _new_state(run, task, split)
        run.write_state(state)  # from now on the folder is a run (resumable, listable)
        history, repaired = [], None
    session = len(state["sessions"])
    log_line(console, f"run folder {run.path} (session {session}, {len(history)} trials done)")

    # The pid record is entered first so that it is removed after ray.shutdown().
    with recording(run.path) as ray_pids, ray_cluster(
        options.address, spec, options.ship_code, shipped_modules(plugins)
    ) as cluster:
        if cluster.mode == "local":
            ray_pids.start()  # a SIGKILLed driver's leftovers can be stopped by the next run
        log_line(console, f"Ray {cluster.mode} at {cluster.address}: {cluster.nodes} node(s), "
                 f"{cluster.cpus:g} CPUs, {cluster.gpus:g} GPUs; workers import "
                 + ("the autors shipped by this driver" if cluster.shipped_code
                    else "the autors installed on their node"))
        wanted = spec.concurrency * spec.cpus_per_trial
        if cluster.cpus < wanted:
            log_line(console, f"warning: concurrency {spec.concurrency} x cpus_per_trial "
                     f"{spec.cpus_per_trial:g} needs {wanted:g} CPUs but the cluster has "
                     f"{cluster.cpus:g}: trials will queue, and queued time counts against "
                     "trial_timeout_s")
        if cluster.mode != "local" and not data.in_memory:
            # Streamed: every trial reads the rasters on its own node; fail now, not per trial.
            files, where = dataset_files([e.files for e in data.index.scenes])
            raise_for_nodes(check_nodes(files), where, cluster.address, task)
            log_line(console, f"every node reads the {len(files)} raster(s) of the dataset")
        inputs = SharedInputs.put(task.to_dict(), data)  # once per search
        resources = TrialResources(spec.cpus_per_trial, spec.gpus_per_trial, spec.trial_timeout_s,
                                   spec.memory_per_trial_mb)
        pool = TrialPool(options.trial_fn, inputs, resources, spec.concurrency)
        t0 = time.monotonic()
        warming = pool.start_warm_up()  # runs while the strategy's library is imported
        broker = SearchBroker(
            pool=pool,
            run=run,
            judge=lambda result: judge(result, spec.objective, spec.constraints),
            budget=Budget(spec.max_trials, spec.max_minutes * 60.0 if spec.max_minutes else None),
            history=history,
            session=session,
            base_seed=task.seed,
            elapsed_before=previous_elapsed(state, history),
            screen=make_screen(task, data),
            rungs=_rungs(task, run, spec.cpus_per_trial, history, console),
        )
        # the adapter its registration names (NNI: a heavy import, nni.nas ~5 s)
        strategy = start_strategy(space, spec, task.seed, broker, history)
        pool.finish_warm_up(warming)
        ray_pids.refresh()  # Ray's agents and the workers exist by now
        log_line(console, f"{spec.concurrency} worker(s) warm after {time.monotonic() - t0:.1f} s")
        sess = _new_session(session, len(history), strategy.restored, repaired, cluster)
        sess["data"] = data.summary()  # shipped_bytes: what each trial reads from the store
        state["sessions"].append(sess)
        _save_state(run, state, broker, "running")
        if history:
            log_line(console, f"resumed: strategy re-seeded with {strategy.restored}; the "
                     "random generator is re-seeded (not restored); trials that were running "
                     "when the run stopped are not recorded and are proposed afresh")

        def on_record(record: TrialRecord) -> None:
            ray_pids.refresh()
            write_leaderboard(run, leaderboard_rows(broker.records))
            _save_state(run, state, broker, "running")

        broker.listeners.append(on_record)
        try:
            search_s = _search_phase(strategy, broker, spec, options.quiet, console)
            picks = final_picks(broker.records, spec)
            chosen = [r for r, _ in picks]
            t_final = time.monotonic()
            rows = _final_phase(run, task, picks, inputs, resources, options.final_fn,
                                console)
            final_s = time.monotonic() - t_final
        except BaseException as err:
            # Ctrl-C or a bug: stop the trials, keep everything recorded so far readable.
            broker.cancel_running()
            stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            sess.update(status=stopped, ended=_now())
            _save_state(run, state, broker, stopped)
            _write_outputs(run, task, broker.records, [], {})
            raise

    finals = final_stats(rows, chosen)
    _write_outputs(run, task, broker.records, finals, picks_of(rows))
    sess.update(status="finished", ended=_now())
    _save_state(run, state, broker, "finished")
    summary = summary_mod.build(
        run=run, task=task, space=space, state=state, records=broker.records, finals=finals,
        broker=broker, cluster=cluster, picked=picks_of(rows),
        wall={"data_s": data_s, "search_s": search_s, "final_s": final_s,
              "session_s": time.monotonic() - t_start},
    )
    run.write_summary(summary)
    return SearchOutcome(run.path, broker.records, summary)


def _stop_leftovers(runs_dir: Path, console: Console) -> None:
    """Stop what killed searches in `runs_dir` left of their local Ray (see ray_pids)."""
    for left in stop_leftovers(runs_dir):
        if left.found:
            failed = left.found - left.stopped
            log_line(console, f"stopped {left.stopped} leftover Ray process(es) of run "
                     f"{left.run} (its search, pid {left.driver_pid}, is gone)"
                     + (f"; {failed} could not be stopped" if failed else ""))


def _rungs(task: TaskSpec, run: SearchFolder, cpus: float, history: list[TrialRecord],
           console: Console) -> Rungs | None:
    """The multi-fidelity scheduler of `search.scheduler`, its rungs rebuilt from the run's
    records on --resume; None for `kind: none`."""
    made = make_scheduler(task)
    if made is None:
        return None
    scheduler, top = made
    rungs = Rungs(scheduler, top, run.path, cpus)
    sched = task.search.scheduler
    resources = [b.resources for b in scheduler.brackets]
    log_line(console, f"scheduler {sched.kind}: reduction factor {sched.reduction_factor}, rung "
             "epochs " + " | ".join("/".join(map(str, r)) for r in resources))
    if history:
        n = rungs.restore([r.result for r in history])
        log_line(console, f"scheduler rebuilt from trials.jsonl: {n} rung result(s)")
    return rungs


def _search_phase(
    strategy: StrategyDriver, broker: SearchBroker, spec: SearchSpec, quiet: bool, console: Console
) -> float:
    """Run the strategy until the budget ends; the search wall time of this session."""
    t0 = time.monotonic()
    broker.start_clock()
    with SearchProgress(broker, spec.objective, spec.concurrency, quiet, console):
        strategy.run()
        broker.drain()  # promotions still due once the strategy has proposed its last trial
    broker.stop_clock()
    search_s = time.monotonic() - t0
    if broker.stop_reason:
        log_line(console, f"search stopped: {broker.stop_reason}")
    screened = len(broker.records) - trained_count(broker.records)
    log_line(console, f"search done: {trained_count(broker.records)} trials in {search_s:.1f} s"
             + (f"; {screened} proposals over a params/FLOPs limit were not trained"
                if screened else ""))
    return search_s


def _final_phase(
    run: SearchFolder, task: TaskSpec, picks: list[tuple[TrialRecord, list[str]]],
    inputs: SharedInputs, resources: TrialResources, final_fn: TrialFn, console: Console,
) -> list[dict[str, Any]]:
    """The picks retrained on several seeds, each model tested once; all final.jsonl rows."""
    if not picks:
        log_line(console, "no feasible trial: nothing to retrain and test")
        return []
    what = (f"a spread of the Pareto front ({len(picks)}: "
            + "; ".join(f"trial {r.trial_id} {'/'.join(why)}" for r, why in picks) + ")"
            if task.search.objectives else f"the top {len(picks)}")
    log_line(console, f"retraining {what} on {task.search.final_seeds} seed(s) and testing "
             "each model once")
    return run_final(run, task, [r for r, _ in picks], inputs, resources, final_fn,
                     on_row=lambda row: log_line(console, _final_line(row)),
                     picked={r.trial_id: why for r, why in picks})


def _new_state(run: SearchFolder, task: TaskSpec, split: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": run.path.name,
        "task_name": task.name,
        "task_digest": task.digest(),
        "split": split,
        "space": task.search.space,
        "strategy": task.search.strategy,
        "seed": task.seed,
        "objective": task.search.objective,
        "objectives": [o.model_dump() for o in task.search.objectives],
        "created": _now(),
        "sessions": [],
        "status": "created",
    }


def _new_session(
    index: int, n_history: int, restored: str, repaired: str | None, cluster: ClusterInfo
) -> dict[str, Any]:
    return {
        "index": index,
        "started": _now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "resumed_with_trials": n_history,
        "restored": restored,
        "repaired": repaired,
        "cluster": {"mode": cluster.mode, "address": cluster.address, "nodes": cluster.nodes,
                    "cpus": cluster.cpus, "gpus": cluster.gpus,
                    "shipped_code": cluster.shipped_code},
        "status": "running",
    }


def _final_line(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"final trial {row['trial_id']} seed {row['seed']} {row['status']}: " + (
            (row.get("error") or "").splitlines() or [""]
        )[0][:120]
    m = row["metrics"]
    shown = " ".join(f"{k}={v:.4f}" for k, v in m.items()
                     if k.startswith("test_") and isinstance(v, (int, float)))
    table = m.get("test_robustness") or {}
    worst = min((v["oa"] for k, v in table.items() if k.startswith("without_")), default=None)
    if worst is not None:
        shown += f" worst-sensor-missing OA={worst:.4f}"
    return f"final trial {row['trial_id']} seed {row['seed']}: {shown}"


def _save_state(run: SearchFolder, state: dict, broker: SearchBroker, status: str) -> None:
    state["status"] = status
    state["updated"] = _now()
    state["trials_finished"] = trained_count(broker.records)
    state["max_trials"] = broker.budget.max_trials
    state["elapsed_s"] = broker.elapsed()
    state["running"] = broker.pool.running_ids()
    run.write_state(state)


def _write_outputs(
    run: SearchFolder, task: TaskSpec, records: list[TrialRecord], finals: list[FinalStats],
    picked: dict[int, list[str]],
) -> None:
    spec = task.search
    write_leaderboard(run, leaderboard_rows(records, finals))
    if records:
        plot_progress(records, spec.objective, run.progress_png)
        plot_pareto(records, pareto(records, spec), spec.front_objectives, run.pareto_png,
                    marks={t: "/".join(why) for t, why in picked.items() if why},
                    explicit=bool(spec.objectives))
