"""Searches on a real two-node Ray cluster on loopback: trials spread over the nodes with the
task's per-trial resources, a node that joins mid-search gets later trials, GPU trials go to
the GPU node, --ship-code sends autors to the workers, `autors status` shows the nodes."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from autors.cli import main
from autors.errors import SearchError
from autors.search.search_folder import SearchFolder


def test_a_node_that_joins_mid_search_runs_later_trials(head_only, kit, make_task, marks,
                                                        tmp_path) -> None:
    cluster = head_only  # 1 CPU: one trial at a time until the worker joins
    task = make_task(max_trials=10, concurrency=2, cpus_per_trial=1)
    joined: dict[str, float] = {}

    def join_after_first_trial() -> None:
        deadline = time.monotonic() + 60
        while not any(marks.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        joined["issued"] = time.time()
        node = cluster.start_worker(cpus=1, gpus=1, wait=False)  # this process is the driver
        joined["ray_start_s"] = node.start_s

    thread = threading.Thread(target=join_after_first_trial, daemon=True)
    thread.start()
    outcome, log = kit.search(cluster, task, tmp_path, kit.MarkingTrial(str(marks), sleep_s=2.0))
    thread.join(timeout=90)

    assert "1 node(s)" in log and "trials will queue" in log  # it started on the head alone
    assert len(outcome.records) == 10 and all(r.ok for r in outcome.records)
    runs = sorted(kit.read_marks(marks).values(), key=lambda m: m["start"])
    assert runs[0]["node"] == kit.HEAD_IP
    on_new = [m for m in runs if m["node"] == kit.WORKER_IP]
    assert on_new, f"no trial ran on the node that joined: {[m['node'] for m in runs]}"
    assert all(m["start"] > joined["issued"] for m in on_new)
    # After the join the two nodes run trials at the same time (1 CPU each, 2 at a time).
    assert any(abs(h["start"] - n["start"]) < 2.0 for n in on_new for h in runs
               if h["node"] == kit.HEAD_IP)
    join_s = on_new[0]["start"] - joined["issued"]
    print(f"\nnode join: `ray start` {joined['ray_start_s']:.1f} s, first trial on the new "
          f"node {join_s:.1f} s after `ray start` was issued")
    assert join_s < 60


def test_trials_spread_over_both_nodes_and_status_shows_them(two_nodes, kit, make_task,
                                                              tmp_path, capsys) -> None:
    """The real CLI (`autors search --address`) with real training, then `autors status`."""
    task = make_task(max_trials=4, concurrency=2, cpus_per_trial=1, strategy="random")
    env = {**os.environ, **two_nodes.env}
    log_path = tmp_path / "search.log"
    proc = kit.helpers.start_search(
        [str(task.source), "--address", two_nodes.address, "--out", str(tmp_path / "runs"),
         "--name", "spread", "--quiet"], env, log_path)
    try:
        code = proc.wait(timeout=240)
    finally:
        kit.helpers.kill_session(proc.pid)
    assert code == 0, log_path.read_text()[-3000:]
    run = SearchFolder(tmp_path / "runs" / "spread")
    records, _ = run.read_trials()
    assert len(records) == 4 and all(r.ok for r in records)
    assert {r.result.node for r in records} == {kit.HEAD_IP, kit.WORKER_IP}
    # Each trial held exactly the task's per-trial resources on its node.
    assert all(r.result.extra["resources"] == {"CPU": 1.0} for r in records)
    summary = json.loads(run.summary_file.read_text())
    assert summary["cluster"]["mode"] == "address" and summary["cluster"]["nodes"] == 2
    assert sum(summary["cluster"]["trials_per_node"].values()) == 4
    assert summary["cluster"]["rerun_trials"] == [] and not summary["cluster"]["shipped_code"]

    capsys.readouterr()
    assert main(["status", str(run.path)]) == 0
    out = capsys.readouterr().out
    per_node = {ip: sum(r.result.node == ip for r in records)
                for ip in (kit.HEAD_IP, kit.WORKER_IP)}
    assert "Nodes " + ", ".join(f"{ip} ({n} trial{'s' if n > 1 else ''})"
                                for ip, n in per_node.items()) in out
    header = next(line for line in out.splitlines() if "trial" in line and "status" in line)
    assert "node" in header.split()
    for r in records:  # every leaderboard row names the node of its trial
        row = next(line for line in out.splitlines()
                   if line.split()[:2] and line.split()[1] == str(r.trial_id))
        assert r.result.node in row


def test_gpu_trials_go_to_the_gpu_node_with_the_shipped_code(two_nodes, kit, make_task,
                                                             marks, tmp_path) -> None:
    """gpus_per_trial: 1 -> only the worker (1 logical GPU) fits; --ship-code -> the workers
    import the driver's autors from Ray's runtime environment, not the installed one."""
    task = make_task(max_trials=3, concurrency=2, cpus_per_trial=1, gpus_per_trial=1)
    outcome, log = kit.search(two_nodes, task, tmp_path, kit.MarkingTrial(str(marks)),
                              ship_code=True)
    assert "workers import the autors shipped by this driver" in log
    assert len(outcome.records) == 3 and all(r.ok for r in outcome.records)
    for r in outcome.records:
        assert r.result.node == kit.WORKER_IP
        assert r.result.extra["resources"] == {"CPU": 1.0, "GPU": 1.0}
        mark = r.result.extra["mark"]
        assert mark["gpu_ids"] == ["0"]
        shipped = Path(mark["autors_file"])
        assert "runtime_resources" in shipped.parts, (shipped, mark["sys_path"])
        assert shipped.parent != Path(__file__).resolve().parents[2] / "autors"


def test_resources_that_no_node_has_are_refused_before_any_trial(two_nodes, kit, make_task,
                                                                 tmp_path) -> None:
    with pytest.raises(SearchError, match=r"gpus_per_trial = 2 but the largest Ray node has 1"):
        kit.search(two_nodes, make_task(gpus_per_trial=2), tmp_path, kit.MarkingTrial("."))
    with pytest.raises(SearchError, match=r"memory_per_trial_mb = 100000000 but the largest"):
        kit.search(two_nodes, make_task(memory_per_trial_mb=100_000_000), tmp_path,
                   kit.MarkingTrial("."), name="mem")
    assert not (tmp_path / "run" / "trials.jsonl").read_text()  # nothing ran
