"""A search driver killed with SIGKILL leaves Ray's agents running (they are the raylet's
children, reparented when it dies); the next search in the same runs folder stops them by the
pids recorded in the run folder (ray_local.json), checking each start time, never by name."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from autors.search import ray_pids
from autors.search.ray_pids import FILE_NAME, LocalRayRecord, Proc, process, stop_leftovers


def _wait_for(check, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s" + (
            f":\n{log.read_text()[-3000:]}" if log else "")
        time.sleep(0.1)
    return value


def _record(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return None


def _agents_recorded(run_dir: Path) -> dict | None:
    """The record once it lists Ray's two agents and the search has warmed up its workers."""
    data = _record(run_dir)
    state = run_dir / "run.json"
    if data is None or not state.exists() or not json.loads(state.read_text())["sessions"]:
        return None
    comms = [p["comm"] for p in data["processes"]]
    has = [any(c.startswith(prefix) for c in comms) for prefix in ("ray::DashboardA",
                                                                     "ray::RuntimeEnv")]
    return data if all(has) else None


def _alive(procs: list[Proc]) -> list[Proc]:
    return [p for p in procs if ray_pids.alive(p)]


def test_leftovers_of_a_sigkilled_search_are_stopped_by_the_next_search(
    make_task, helpers, tmp_path, tmp_path_factory
) -> None:
    task = make_task(strategy="random", max_trials=3, concurrency=2, top_k=1, final_seeds=1)
    runs = tmp_path / "runs"
    run_dir = runs / "killed"
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path_factory.mktemp("rk"))}
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = helpers.start_search([str(task.source), "--out", str(runs), "--name", "killed",
                                  "--quiet"], env, first_log)
    second = None
    try:
        data = _wait_for(lambda: _agents_recorded(run_dir), 120, "recorded Ray agents",
                         first_log)
        assert data["driver"]["pid"] == first.pid and data["host"] == socket.gethostname()
        recorded = [Proc(p["pid"], p["start"], p["comm"]) for p in data["processes"]]
        assert first.pid not in {p.pid for p in recorded}
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        killed_at = time.monotonic()
        time.sleep(3.0)  # Ray's own fate sharing has taken gcs_server, raylet and workers
        survivors = _alive(recorded)
        # The problem is real: the agents outlive the driver (about 60 s with Ray 2.60).
        assert {p.comm[:15] for p in survivors} >= {"ray::DashboardA", "ray::RuntimeEnv"}, (
            survivors)

        second = helpers.start_search(["--resume", str(run_dir), "--quiet"], env, second_log)
        started = time.monotonic()
        # 45 s: under heavy load the new process needs ~30 s to start; below the ~60 s after
        # which the agents would end on their own (a stop that did nothing still fails)
        _wait_for(lambda: not _alive(recorded), 45, "stop of the leftovers", second_log)
        stopped_s = time.monotonic() - started
        print(f"leftovers stopped {stopped_s:.1f} s after the next search started "
              f"({time.monotonic() - killed_at:.1f} s after the kill)")
        assert second.wait(timeout=120) == 0, second_log.read_text()[-3000:]
        log = second_log.read_text()
        # Workers may still be exiting on their own when the check above ran: 2 agents or more.
        said = re.search(rf"stopped (\d+) leftover Ray process\(es\) of run killed \(its "
                         rf"search, pid {first.pid}, is gone\)\n", log)
        assert said and 2 <= int(said.group(1)) <= len(survivors), log[:2000]
        assert not (run_dir / FILE_NAME).exists()  # a normal end removes the record
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
        assert len(helpers.lines(run_dir / "trials.jsonl")) == 3
    finally:
        for proc in (first, second):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
                helpers.kill_session(proc.pid)


def _write(run_dir: Path, driver: Proc, procs: list[Proc], host: str | None = None) -> Path:
    run_dir.mkdir(parents=True)
    path = run_dir / FILE_NAME
    path.write_text(json.dumps({
        "format": ray_pids.FORMAT, "host": host or socket.gethostname(),
        "boot_id": ray_pids._boot_id(), "driver": driver.__dict__,
        "processes": [p.__dict__ for p in procs],
    }))
    return path


def _sleeper() -> tuple[subprocess.Popen, Proc]:
    proc = subprocess.Popen(["sleep", "60"])
    return proc, _wait_for(lambda: process(proc.pid), 5, "sleep process")


def _shifted(p: Proc) -> Proc:
    """The same pid with another start time: what a record of a reused pid looks like."""
    return Proc(p.pid, p.start - 1, p.comm)


def test_only_processes_of_a_dead_driver_with_their_recorded_start_time_are_stopped(
    tmp_path,
) -> None:
    me = process(os.getpid())
    (live_proc, live), (reused_proc, reused), (left_proc, left) = (
        _sleeper(), _sleeper(), _sleeper())
    try:
        # A concurrent search (its driver alive) and a record from another machine: untouched.
        concurrent = _write(tmp_path / "runs" / "concurrent", me, [live])
        elsewhere = _write(tmp_path / "runs" / "elsewhere", _shifted(me), [live],
                           host="another-host")
        # A dead driver (its pid reused: another start time). Its record lists this test
        # process and a sleeper under other start times (pids reused since), and one process
        # that is still the recorded one.
        dead = _write(tmp_path / "runs" / "dead", _shifted(me),
                      [_shifted(me), _shifted(reused), left])

        done = stop_leftovers(tmp_path / "runs", grace_s=5.0)

        assert [(d.run, d.found, d.stopped) for d in done] == [("dead", 1, 1)]
        assert left_proc.wait(timeout=5) == -signal.SIGTERM  # stopped by SIGTERM
        assert live_proc.poll() is None and reused_proc.poll() is None
        assert concurrent.exists() and elsewhere.exists() and not dead.exists()
        assert stop_leftovers(tmp_path / "runs") == []  # nothing more to do
    finally:
        for proc in (live_proc, reused_proc, left_proc):
            proc.kill()
            proc.wait()


def test_record_lists_the_driver_descendants_and_is_removed_on_a_normal_end(tmp_path) -> None:
    child, info = _sleeper()
    try:
        with ray_pids.recording(tmp_path) as record:
            assert isinstance(record, LocalRayRecord)
            record.start()
            data = _record(tmp_path)
            assert data["driver"]["pid"] == os.getpid()
            assert info.__dict__ in data["processes"]
            assert os.getpid() not in {p["pid"] for p in data["processes"]}
        assert not (tmp_path / FILE_NAME).exists()
        # Without start() (a cluster or an existing Ray) nothing is written.
        with ray_pids.recording(tmp_path) as record:
            record.refresh()
        assert not (tmp_path / FILE_NAME).exists()
    finally:
        child.kill()
        child.wait()
