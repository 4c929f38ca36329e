"""Faults on a real two-node Ray cluster on loopback: trials that hang, exhaust their memory or
crash their worker; the driver SIGKILLed mid-search and resumed; a worker node killed while it
runs a trial. Each time the search completes and trials.jsonl holds every trial exactly once."""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from autors.cli import main
from autors.search.limits import data_bytes, looks_out_of_memory, memory_limit
from autors.search.search_folder import SearchFolder


def _running_trials(cluster) -> list[int]:
    """Cluster processes executing a trial (Ray titles a busy worker ray::<function>)."""
    names = {}
    for pid in cluster.pids():
        try:
            names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
    return [pid for pid, cmd in names.items() if cmd.startswith("ray::_run_in_worker")]


def _ids(run_dir) -> list[int]:
    return [json.loads(line)["trial_id"] for line in (run_dir / "trials.jsonl").open()]


def test_hung_oversized_and_crashing_trials_are_recorded_and_the_search_goes_on(
    two_nodes, kit, make_task, marks, tmp_path
) -> None:
    # The timeout also bounds the workers' warm-up and the crashed trial's retry on a cold
    # worker (Python + torch imports): 8 s was too short once on a loaded machine.
    task = make_task(max_trials=6, concurrency=2, cpus_per_trial=1, trial_timeout_s=20,
                     memory_per_trial_mb=256, top_k=1)
    trial = kit.MarkingTrial(str(marks), sleep_s=0.3, hang=(1,), allocate_mb=((2, 1024),),
                             crash=(3,))
    outcome, _ = kit.search(two_nodes, task, tmp_path, trial)

    by_id = {r.trial_id: r for r in outcome.records}
    assert sorted(by_id) == list(range(6)) == sorted(_ids(tmp_path / "run"))
    assert {i for i, r in by_id.items() if r.ok} == {0, 4, 5}
    hung, big, crashed = by_id[1], by_id[2], by_id[3]
    assert hung.result.status == "timeout"
    assert "exceeded search.trial_timeout_s = 20 s; the trial was cancelled" in hung.reason
    hung_pid = kit.read_marks(marks)[(1, 0)]["pid"]
    deadline = time.monotonic() + 10
    while kit.helpers.pid_alive(hung_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not kit.helpers.pid_alive(hung_pid), "the timed-out trial's worker process still runs"
    assert big.result.status == "failed"
    assert big.reason.startswith("exceeded search.memory_per_trial_mb = 256 MiB")
    assert "MemoryError" in big.reason and big.result.node in (kit.HEAD_IP, kit.WORKER_IP)
    assert crashed.result.status == "failed"
    assert "failed outside the trial code after 1 retry" in crashed.reason
    assert {a for t, a in kit.read_marks(marks) if t == 3} == {0, 1}  # run twice, then failed
    for ok in (by_id[0], by_id[4], by_id[5]):
        assert ok.result.extra["resources"]["memory"] == 256 * 2**20  # Ray reserved it


def test_sigkilled_driver_resumes_on_the_cluster(two_nodes, kit, make_task, tmp_path,
                                                capsys) -> None:
    """The real CLI with real training: killed after 2 trials, resumed with --address."""
    task = make_task(strategy="evolution", max_trials=6, concurrency=2, cpus_per_trial=1,
                     train={"epochs": 2})
    runs, run_dir, log_path = tmp_path / "runs", tmp_path / "runs" / "killed", tmp_path / "log"
    env = {**os.environ, **two_nodes.env}
    proc = kit.helpers.start_search(
        [str(task.source), "--address", two_nodes.address, "--out", str(runs), "--name",
         "killed", "--quiet"], env, log_path)
    try:
        before = kit.helpers.sigkill_after_trials(proc, run_dir / "trials.jsonl", 2, 180,
                                                  log_path)
    finally:
        kit.helpers.kill_session(proc.pid)  # the driver only: the cluster is not in its session
    assert 2 <= len(before) < 6, "the search should have been killed mid-run"
    # Ray stops the dead driver's trials; the cluster itself is unharmed.
    deadline = time.monotonic() + 30
    while _running_trials(two_nodes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running_trials(two_nodes), "the dead driver's trials still run"
    assert two_nodes.alive() == {kit.HEAD_IP, kit.WORKER_IP}
    assert main(["status", str(run_dir)]) == 0
    assert f"stopped: its process (pid {proc.pid}) is gone" in capsys.readouterr().out

    from autors.training.trial import run_trial

    outcome, log = kit.search(two_nodes, None, runs, run_trial, resume=run_dir)

    kit.helpers.assert_resumed(run_dir / "trials.jsonl", before, outcome.records, 6)
    assert "resumed: strategy re-seeded with population of" in log
    assert {r.result.node for r in outcome.records} <= {kit.HEAD_IP, kit.WORKER_IP}
    sessions = json.loads(SearchFolder(run_dir).state_file.read_text())["sessions"]
    assert [s["cluster"]["mode"] for s in sessions] == ["address", "address"]


def test_a_killed_worker_node_s_trial_is_rerun_on_a_live_node(two_nodes, kit, make_task, marks,
                                                             tmp_path, capsys) -> None:
    cluster = two_nodes
    task = make_task(max_trials=5, concurrency=2, cpus_per_trial=1)
    killed: dict[str, float] = {}

    def kill_worker_node_mid_trial() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            on_worker = [m for m in kit.read_marks(marks).values()
                         if m["node"] == kit.WORKER_IP and m["attempt"] == 0]
            if on_worker:
                killed["trial_id"] = on_worker[0]["trial_id"]
                killed["at"] = cluster.kill_node(kit.WORKER_IP)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill_worker_node_mid_trial, daemon=True)
    thread.start()
    outcome, _ = kit.search(cluster, task, tmp_path, kit.MarkingTrial(str(marks), sleep_s=3.0))
    thread.join(timeout=10)

    assert "at" in killed, "no trial ran on the worker node"
    victim = killed["trial_id"]
    ids = _ids(tmp_path / "run")
    assert sorted(ids) == list(range(5)), ids  # every trial once: none lost, none duplicated
    assert all(r.ok for r in outcome.records)
    rerun = next(r for r in outcome.records if r.trial_id == victim)
    assert rerun.result.node == kit.HEAD_IP and rerun.result.extra["attempt"] == 1
    marks_by_attempt = kit.read_marks(marks)
    assert marks_by_attempt[(victim, 0)]["node"] == kit.WORKER_IP
    assert marks_by_attempt[(victim, 1)]["node"] == kit.HEAD_IP
    latency = marks_by_attempt[(victim, 1)]["start"] - killed["at"]
    with capsys.disabled():
        print(f"\ntrial {victim} re-run on {kit.HEAD_IP} {latency:.1f} s after its node was "
              "killed")
    assert 0 < latency < 60
    assert outcome.summary["cluster"]["rerun_trials"] == [victim]
    capsys.readouterr()
    assert main(["status", str(tmp_path / "run")]) == 0
    assert f"re-run after a worker or node died: trial {victim}" in capsys.readouterr().out


def test_memory_limit_refuses_allocations_and_is_lifted_after() -> None:
    """The worker-side limit on its own (no cluster): refused inside, restored on exit."""
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with memory_limit(64) as limit:
        assert limit is not None and limit - data_bytes() <= 64 * 2**20
        with pytest.raises(MemoryError):
            np.ones(256 * 2**20, dtype=np.uint8)
        small = np.ones(8 * 2**20, dtype=np.uint8)  # within the limit
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
    big = np.ones(256 * 2**20, dtype=np.uint8)
    assert big.nbytes > small.nbytes
    with memory_limit(None) as none:
        assert none is None and resource.getrlimit(resource.RLIMIT_DATA) == before
    assert looks_out_of_memory("RuntimeError: DefaultCPUAllocator: can't allocate memory")
    assert not looks_out_of_memory("ValueError: bad band")
