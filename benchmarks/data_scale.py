"""Benchmark (issue 13): datasets of many scenes: bigger than memory, streamed vs in memory, and
a search on a two-node Ray cluster with only the index in the object store.

    python benchmarks/data_scale.py [--workdir /work/bench_data] [--out results/benchmarks]
        [--big-scenes 200] [--fit-scenes 24] [--fit-train 4096,20000] [--size 512]
        [--limit-mb 2000] [--workers 0,1,2]
        [--cluster on|off] [--jobs 2] [--repeat-check] [--smoke]

Datasets: `autors synth --scenes N --size S --sensors optical,sar,lidar,hsi --compress none`
(generated once per `--workdir` and reused: generation takes minutes).

1. Bigger than memory: the `--big-scenes` dataset, whose rasters total several times the
   trial memory limit (`--limit-mb`, set as `search.memory_per_trial_mb` and as
   `data.in_memory_max_mb`, so `prepare(task)` streams it on its own). One child process
   builds the index (`prepare`: every raster read once, by blocks) and pickles the prepared data
   (what a search trial receives); then, per DataLoader worker count in {0, max}, a fresh child
   trains `late_cnn` for a short budget with the trial memory limit in force (RLIMIT_DATA, as in
   a search worker: `autors.search.limits.memory_limit`). This process polls every 0.1 s the
   child's whole process tree (the trainer and its DataLoader workers): the sum of RSS (shared
   pages counted in every process that maps them: an upper bound) and the sum of PSS (split among
   the processes that map them: what the tree occupies), and the children report their own
   `ru_maxrss` (the trainer; the largest finished loader worker).
2. Streamed vs in memory: the `--fit-scenes` dataset (fits in memory), the same model and seed,
   `prepare(task, in_memory=True)` vs `in_memory=False`, loader workers 0, 1, 2, for each
   training budget in `--fit-train` (`max_train_samples`: how sparse the subset is). Training
   samples/s are timed around each training epoch only (not validation); block lookups and
   disk reads of `BlockSource` are counted in every reading process (counters in shared memory,
   inherited by the forked loader workers) to give the cache hit rate, and the first epoch's
   block order is replayed through LRU caches of several sizes. Validation metrics and
   trained weights must be identical between the two paths for each worker count.
3. Cluster: a short random search (4 trials, 1 epoch of a few hundred samples) over the
   `--fit-scenes` dataset forced to stream (`data.in_memory_max_mb: 0`), on a real two-node Ray
   cluster on loopback (`ray start`: head 127.0.0.2, worker 127.0.0.3, 1 CPU each, token
   authentication, a private RAY_TMPDIR), inside a user + network namespace holding only
   loopback (`unshare -rn`, as tests/cluster does: Ray 2.60 binds its servers to every
   interface for a node address other than 127.0.0.1); skipped, and said so, where no such
   namespace can be made. Reports run.json `sessions[].data.shipped_bytes`,
   Ray's own size of the prepared-data object (`ray.experimental.get_object_locations` on the
   reference the search put) and which node ran each trial (trials.jsonl `result.node`). The
   cluster is stopped by killing the sessions of the two `ray start` processes (and anything
   left under the private RAY_TMPDIR), never with `ray stop`, which stops every Ray process of
   the machine, other users' included.

`--smoke`: one tiny dataset (6 scenes of 64 px) for parts 1 and 2, one loader worker count, the
cluster part skipped unless `--cluster on`. `--repeat-check`: part 2's streamed run with the
most loader workers once more in a fresh process; its metrics, weights hash and block reads
must match exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import header_block, md_table, one_thread, repeat_statement, write_report

ALL_SENSORS = ("optical", "sar", "lidar", "hsi")
ARCH = "late_cnn"
SEED = 0
RATIO_TARGET = 0.7
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
RESULT = "RESULT "  # prefix of a child's one JSON line on stdout
MIB = 2**20


# ---- datasets -------------------------------------------------------------------------------
def dataset_dir(workdir: Path, scenes: int, size: int) -> Path:
    return workdir / f"synth_{scenes}x{size}_all4_none_s0"


def ensure_dataset(workdir: Path, scenes: int, size: int, jobs: int) -> dict:
    """The synthetic dataset (generated unless this workdir already holds it); its facts."""
    from autors.synth.dataset import DatasetConfig, generate_dataset

    cfg = DatasetConfig(scenes=scenes, size=size, sensors=ALL_SENSORS, compress="none")
    out = dataset_dir(workdir, scenes, size)
    record = out / "synth_dataset.json"
    gen_s = None
    if not (record.is_file() and (out / "task.yaml").is_file()
            and _same_config(json.loads(record.read_text())["config"], cfg)):
        print(f"generating {scenes} scenes of {size} px in {out} ({jobs} jobs)...", flush=True)
        t0 = time.perf_counter()

        def progress(done: int, total: int, chip, elapsed: float) -> None:
            if done % 20 == 0 or done == total:
                print(f"  {done}/{total} scenes, {elapsed:.0f} s", flush=True)

        generate_dataset(out, cfg, jobs=jobs, progress=progress)
        gen_s = time.perf_counter() - t0
    tifs = list(out.rglob("*.tif"))
    return {"path": str(out), "task": str(out / "task.yaml"), "scenes": scenes, "size": size,
            "files": len(tifs), "disk_bytes": sum(p.stat().st_size for p in tifs),
            "generated_s": gen_s}


def _same_config(recorded: dict, cfg) -> bool:
    """Whether the recorded generator settings are `cfg`'s (a setting added to the generator
    since the record was written must still have its default value)."""
    from dataclasses import asdict, fields

    want = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    want["sensors"] = list(want["sensors"])
    defaults = {f.name: f.default for f in fields(cfg)}
    return all(recorded[k] == v if k in recorded else v == defaults[k] for k, v in want.items())


# ---- child processes and their memory ------------------------------------------------------
def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Polls a process and its descendants: peak sum of RSS and of PSS, per phase (the phase
    the child last wrote to `phase_file`)."""

    def __init__(self, pid: int, phase_file: Path, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.phase_file, self.interval = pid, phase_file, interval
        self.peaks: dict[str, dict[str, float]] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop_event.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            rss = pss = 0
            n = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                pss += _pss_kb(p.pid) * 1024
                n += 1
            try:
                phase = self.phase_file.read_text().strip() or "start"
            except OSError:
                phase = "start"
            peak = self.peaks.setdefault(phase, {"rss_mb": 0.0, "pss_mb": 0.0, "procs": 0})
            peak["rss_mb"] = max(peak["rss_mb"], rss / MIB)
            peak["pss_mb"] = max(peak["pss_mb"], pss / MIB)
            peak["procs"] = max(peak["procs"], n)
            self.stop_event.wait(self.interval)


def run_child(args: list[str], log: Path, env: dict | None = None, sample: bool = False,
              wrap: list[str] = ()) -> dict:
    """Run this script as a child (`--child ...`, after the command prefix `wrap`); its JSON
    result, plus the polled memory peaks of its process tree when `sample`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    phase = log.with_suffix(".phase")
    phase.write_text("start")
    cmd = [*wrap, sys.executable, __file__, *args, "--phase-file", str(phase)]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=env or os.environ.copy())
        sampler = TreeSampler(proc.pid, phase) if sample else None
        if sampler:
            sampler.start()
        out, _ = proc.communicate()
        if sampler:
            sampler.stop_event.set()
            sampler.join()
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"child {' '.join(args[:2])} failed ({proc.returncode}); log {log}:\n"
                         + log.read_text()[-3000:])
    result = json.loads(lines[-1][len(RESULT):])
    if sampler:
        result["tree_peaks"] = sampler.peaks
    return result


def _phase(path: Path | None, name: str) -> None:
    if path is not None:
        path.write_text(name)


def _emit(result: dict) -> None:
    print(RESULT + json.dumps(result), flush=True)


# ---- instrumentation of the training process (children only) --------------------------------
class Meter:
    """Block lookups, disk reads and read time of every BlockSource in this process and in the
    loader workers it forks (shared-memory counters), and timings of the training epochs and
    validation passes (`autors.training.loop` calls `_train_epoch` and `evaluate` by name)."""

    def __init__(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.calls, self.reads, self.read_ns = (ctx.Value("q", 0) for _ in range(3))
        self.epochs: list[dict] = []
        self.evals: list[dict] = []
        self.replay_cfg: tuple | None = None  # (block, channels, cache_mb): replay once
        self.replayed: dict | None = None

    def counts(self) -> tuple[int, int, int]:
        return self.calls.value, self.reads.value, self.read_ns.value

    def install(self) -> None:
        from autors.data.sources import BlockSource
        from autors.training import loop

        meter = self
        block = BlockSource._block

        def counted_block(self, scene: int, br: int, bc: int):
            before = self.reads
            t0 = time.perf_counter_ns()
            out = block(self, scene, br, bc)
            with meter.calls.get_lock():
                meter.calls.value += 1
            if self.reads != before:
                dt = time.perf_counter_ns() - t0
                with meter.reads.get_lock():
                    meter.reads.value += 1
                    meter.read_ns.value += dt
            return out

        BlockSource._block = counted_block
        train_epoch, evaluate = loop._train_epoch, loop.evaluate

        def timed_epoch(model, loader, *a, **k):
            c0, t0 = self.counts(), time.perf_counter()
            out = train_epoch(model, loader, *a, **k)
            dt, c1 = time.perf_counter() - t0, self.counts()
            n = len(loader) * loader.batch_size if loader.drop_last else len(loader.sampler)
            self.epochs.append({"s": dt, "samples": n, **_delta(c0, c1)})
            if self.replay_cfg is not None and self.replayed is None:
                self.replayed = replay(loader, *self.replay_cfg)
            return out

        def timed_eval(model, data, split, *a, **k):
            c0, t0 = self.counts(), time.perf_counter()
            out = evaluate(model, data, split, *a, **k)
            dt, c1 = time.perf_counter() - t0, self.counts()
            self.evals.append({"s": dt, "samples": int(data.index.sizes(split).sum()),
                               **_delta(c0, c1)})
            return out

        loop._train_epoch, loop.evaluate = timed_epoch, timed_eval

    def take(self) -> dict:
        """Totals of the training epochs and validation passes since the last take."""
        ep, ev = self.epochs, self.evals
        self.epochs, self.evals = [], []

        def total(rows: list[dict]) -> dict:
            keys = ("s", "samples", "calls", "reads", "read_s")
            return {k: sum(r[k] for r in rows) for k in keys}

        return {"train": total(ep), "val": total(ev), "epochs": len(ep)}


def _delta(c0: tuple, c1: tuple) -> dict:
    return {"calls": c1[0] - c0[0], "reads": c1[1] - c0[1], "read_s": (c1[2] - c0[2]) / 1e9}


def weights_sha256(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _rusage_mb() -> dict:
    return {"self_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children_maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _train_one(task, data, meter: Meter) -> dict:
    """train_evaluate on validation only; speeds, block counts, metrics, weights hash."""
    from autors.training.trial import train_evaluate

    t0 = time.perf_counter()
    trained = train_evaluate(task, ARCH, data, SEED)
    wall = time.perf_counter() - t0
    m = meter.take()
    tr, va = m["train"], m["val"]
    metrics = trained.metrics()
    return {
        "num_workers": task.train.num_workers, "wall_s": wall, "epochs": m["epochs"],
        "train_s": tr["s"], "train_samples": tr["samples"],
        "train_sps": tr["samples"] / tr["s"] if tr["s"] else 0.0,
        "train_calls": tr["calls"], "train_reads": tr["reads"], "train_read_s": tr["read_s"],
        "val_s": va["s"], "val_samples": va["samples"],
        "val_sps": va["samples"] / va["s"] if va["s"] else 0.0,
        "val_calls": va["calls"], "val_reads": va["reads"], "val_read_s": va["read_s"],
        "val_oa": metrics["val_oa"], "val_kappa": metrics["val_kappa"],
        "metrics_json": json.dumps(metrics, sort_keys=True),
        "weights_sha256": weights_sha256(trained.outcome.model),
    }


def child_index(a: argparse.Namespace) -> dict:
    """Part 1: build the index of the big dataset (automatic: it must stream); pickle it."""
    one_thread()
    from autors.config import load_task
    from autors.data import prepare

    task = load_task(a.task, json.loads(a.overrides))
    _phase(a.phase_file, "prepare")
    t0, c0 = time.perf_counter(), time.process_time()
    data = prepare(task)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _phase(a.phase_file, "pickle")
    with open(a.pickle, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"prepare_s": wall, "prepare_cpu_s": cpu, "summary": data.summary(),
            "split_sha256": data.splits.sha256(), "channels": data.in_channels,
            "block_size": data.block_size, "cache_mb": data.cache_mb,
            "train_samples_total": int(data.index.sizes("train").sum()),
            "val_samples_total": int(data.index.sizes("val").sum()),
            "pickle_bytes": Path(a.pickle).stat().st_size, **_rusage_mb()}


def child_train(a: argparse.Namespace) -> dict:
    """Part 1: one training of the pickled streamed data under the trial memory limit."""
    one_thread()
    from autors.config import load_task
    from autors.search.limits import data_bytes, looks_out_of_memory, memory_limit

    meter = Meter()
    meter.install()
    task = load_task(a.task, json.loads(a.overrides))
    _phase(a.phase_file, "load")
    with open(a.pickle, "rb") as f:
        data = pickle.load(f)
    assert not data.in_memory, "part 1 must stream"
    _phase(a.phase_file, "train")
    status, error, row = "ok", "", {}
    base = data_bytes()
    try:
        with memory_limit(task.search.memory_per_trial_mb):
            row = _train_one(task, data, meter)
    except Exception as err:  # noqa: BLE001 - reported (e.g. refused by the memory limit)
        status = "out of memory" if looks_out_of_memory(repr(err)) else "failed"
        error = f"{type(err).__name__}: {err}"[:500]
    _phase(a.phase_file, "done")
    return {**row, "status": status, "error": error, "vmdata_at_start_mb": base / MIB,
            "num_workers": task.train.num_workers, **_rusage_mb()}


def child_compare(a: argparse.Namespace) -> dict:
    """Part 2: one data path (in memory or streamed), trained with each loader worker count."""
    one_thread()
    from autors.config import load_task
    from autors.data import prepare

    meter = Meter()
    meter.install()
    overrides = json.loads(a.overrides)
    task = load_task(a.task, overrides)
    _phase(a.phase_file, "prepare")
    t0 = time.perf_counter()
    data = prepare(task, in_memory=a.path == "memory")
    prepare_s = time.perf_counter() - t0
    if not data.in_memory:
        meter.replay_cfg = (data.block_size, sum(data.in_channels.values()), data.cache_mb)
    rows = []
    for w in (int(x) for x in a.workers.split(",")):
        _phase(a.phase_file, f"train w{w}")
        rows.append(_train_one(load_task(a.task, [*overrides, f"train.num_workers={w}"]), data,
                               meter))
        print(f"{a.path} workers {w}: {rows[-1]['train_sps']:.0f} samples/s", file=sys.stderr,
              flush=True)
    return {"path": a.path, "in_memory": data.in_memory, "prepare_s": prepare_s,
            "summary": data.summary(), "split_sha256": data.splits.sha256(),
            "channels": data.in_channels, "block_size": data.block_size,
            "cache_mb": data.cache_mb, "rows": rows, "replay": meter.replayed,
            "train_samples_total": int(data.index.sizes("train").sum()),
            **_rusage_mb()}


SIM_CACHE_MB = (256, 512, 1024, 2048, 4096)


def replay(loader, block: int, channels: int, cache_mb: float) -> dict:
    """The blocks one training epoch looks up in one reading process (the trainer's own loader
    and sampler: the order depends only on seed and epoch), replayed through an LRU cache like
    BlockSource's for several `data.cache_mb`. No pixel is read; at the task's own cache size
    it must reproduce the reads measured with 0 loader workers."""
    import numpy as np

    ds = loader.dataset
    order = list(loader.sampler)
    if loader.drop_last:
        order = order[:len(loader) * loader.batch_size]
    half = ds.patch_size // 2
    keys, sizes = [], {}
    for i in order:
        scene = int(ds.locate(np.asarray(i)))
        h, w = ds.index.scenes[scene].grid.shape
        r, c = divmod(int(ds.positions(scene)[i - ds.starts[scene]]), w)
        rs, re = max(r - half, 0), min(r + half + 1, h)
        cs, ce = max(c - half, 0), min(c + half + 1, w)
        for br in range(rs // block, (re - 1) // block + 1):  # BlockSource.window's order
            for bc in range(cs // block, (ce - 1) // block + 1):
                key = (scene, br, bc)
                keys.append(key)
                sizes[key] = 4 * channels * min(block, h - br * block) * min(block, w - bc * block)
    sims = []
    for cap_mb in sorted({*SIM_CACHE_MB, cache_mb}):
        cap, held, reads = int(cap_mb * MIB), 0, 0
        cache: dict = {}  # insertion-ordered: least recently used first
        for key in keys:
            if key in cache:
                cache[key] = cache.pop(key)
                continue
            reads += 1
            while cache and held + sizes[key] > cap:
                oldest = next(iter(cache))
                del cache[oldest]
                held -= sizes[oldest]
            cache[key] = True
            held += sizes[key]
        sims.append({"cache_mb": cap_mb, "reads": reads, "hit": 1 - reads / max(len(keys), 1)})
    return {"samples": len(order), "lookups": len(keys), "distinct_blocks": len(sizes),
            "train_scenes": len({k[0] for k in sizes}),
            "block_mib": max(sizes.values(), default=0) / MIB, "sims": sims,
            "sampler_window": getattr(loader.sampler, "window", None)}


def child_search(a: argparse.Namespace) -> dict:
    """Part 3: a search against the running cluster (this process is its driver)."""
    import io

    import ray
    from rich.console import Console

    from autors.config import load_task
    from autors.search import runner
    from autors.search.cluster import use_token_auth
    from autors.training.trial import run_trial

    use_token_auth()
    t0 = time.monotonic()
    ray.init(address=a.address, _node_ip_address=HEAD_IP, log_to_driver=False,
             logging_level="ERROR")
    try:
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            if time.monotonic() - t0 > 90:
                raise SystemExit(f"the cluster has not 2 live nodes after 90 s: {ray.nodes()}")
            time.sleep(0.5)
        nodes = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
    finally:
        ray.shutdown()
    ray_view: dict = {}

    class MeasuredInputs(runner.SharedInputs):
        """The search's SharedInputs, plus Ray's own size of the objects it puts."""

        @classmethod
        def put(cls, task_dict, data):
            inputs = super().put(task_dict, data)
            locs = ray.experimental.get_object_locations([inputs.data_ref, inputs.task_ref])
            ray_view["data_object_bytes"] = locs[inputs.data_ref]["object_size"]
            ray_view["task_object_bytes"] = locs[inputs.task_ref]["object_size"]
            ray_view["refs"] = (inputs.data_ref, inputs.task_ref)
            return inputs

    final = runner.run_final

    def located_final(*args, **kwargs):
        # after the search phase: which nodes hold a copy of the prepared data by now
        ids = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        locs = ray.experimental.get_object_locations([ray_view["refs"][0]])
        ray_view["data_object_nodes"] = sorted(ids.get(i, i) for i in
                                               locs[ray_view["refs"][0]]["node_ids"])
        return final(*args, **kwargs)

    runner.SharedInputs, runner.run_final = MeasuredInputs, located_final
    task = load_task(a.task, json.loads(a.overrides))
    log = io.StringIO()
    t1 = time.perf_counter()
    # The final phase retrains the best trial without its test evaluation (final_fn =
    # run_trial): the real one scores every labelled pixel of the test scenes (1.36 M in the
    # 24-scene dataset: tens of minutes on one core), which says nothing about the data path.
    outcome = runner.run_search(task, runner.SearchOptions(
        out_dir=Path(a.runs), name=f"data_scale-{time.strftime('%Y%m%d-%H%M%S')}",
        address=a.address, quiet=True, final_fn=run_trial), Console(file=log, width=200))
    wall = time.perf_counter() - t1
    ray_view.pop("refs", None)
    run_json = json.loads((outcome.run_dir / "run.json").read_text())
    trials = [json.loads(line) for line in
              (outcome.run_dir / "trials.jsonl").read_text().splitlines() if line.strip()]
    finals = [json.loads(line) for line in
              (outcome.run_dir / "final.jsonl").read_text().splitlines() if line.strip()] \
        if (outcome.run_dir / "final.jsonl").is_file() else []
    return {"nodes_alive": nodes, "run_dir": str(outcome.run_dir), "search_wall_s": wall,
            "session": run_json["sessions"][-1], "split_sha256": run_json["split"]["sha256"],
            "split_counts": run_json["split"]["counts"],
            "ray_view": ray_view, "log": log.getvalue()[-4000:],
            "trials": [{"trial": t["trial_id"], "status": t["result"]["status"],
                        "node": t["result"]["node"], "attempt": t["result"]["extra"].get("attempt"),
                        "worker_pid": t["result"]["extra"].get("worker_pid"),
                        "val_oa": t["result"]["metrics"].get("val_oa"),
                        "train_s": t["result"]["train_s"], "wall_s": t["finished_at"] - t["submitted_at"],
                        "error": (t["result"].get("error") or "")[:300]} for t in trials],
            "finals": [{"trial": f.get("trial_id"), "node": f.get("node"),
                        "status": f.get("status")} for f in finals]}


# ---- the cluster ----------------------------------------------------------------------------
class LoopbackCluster:
    """Head 127.0.0.2 + worker 127.0.0.3, one `ray start` each in its own session, token
    authentication, a private RAY_TMPDIR. Stopped by killing exactly those sessions."""

    def __init__(self) -> None:
        import socket

        # short: Ray's socket paths under it must fit AF_UNIX's ~107 bytes
        self.tmpdir = Path(tempfile.mkdtemp(prefix="adsc", dir="/tmp"))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HEAD_IP, 0))
            self.port = s.getsockname()[1]
        ray_bin = Path(sys.executable).with_name("ray")
        self.ray = str(ray_bin) if ray_bin.exists() else "ray"
        self.env = {**os.environ, "RAY_TMPDIR": str(self.tmpdir), "RAY_AUTH_MODE": "token"}
        # NOTES.md: this variable forbids other nodes from joining (it is for local instances)
        self.env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        self.env.pop("RAY_ADDRESS", None)
        self.sessions: dict[str, int] = {}
        self.start_s: dict[str, float] = {}

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.port}"

    def _start(self, ip: str, args: list[str]) -> None:
        t0 = time.monotonic()
        proc = subprocess.Popen([self.ray, "start", f"--node-ip-address={ip}",
                                 "--disable-usage-stats", *args], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        self.sessions[ip] = proc.pid  # the session id of every process of this node
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"`ray start` for {ip} took over 120 s:\n{out[-2000:]}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"`ray start` for {ip} failed:\n{out[-2000:]}")
        self.start_s[ip] = time.monotonic() - t0

    def start(self) -> None:
        self._start(HEAD_IP, ["--head", f"--port={self.port}", "--num-cpus=1", "--num-gpus=0",
                              "--include-dashboard=false"])
        self._start(WORKER_IP, [f"--address={self.address}", "--num-cpus=1", "--num-gpus=0"])

    def pids(self) -> set[int]:
        """Every live process of the two nodes: their sessions, and whatever names the private
        temp dir in its command line."""
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            pid = int(entry.name)
            try:
                if os.getsid(pid) in self.sessions.values():
                    found.add(pid)
                    continue
                if str(self.tmpdir) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.add(pid)
            except OSError:
                continue
        return found

    def listeners(self) -> list[tuple[str, int]]:
        """(address, port) of every TCP socket in LISTEN state held by the cluster."""
        import psutil

        pids = self.pids()
        found = set()
        for pid in pids:
            try:
                for c in psutil.Process(pid).net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        found.add((c.laddr.ip, c.laddr.port))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return sorted(found)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGKILL the nodes' processes until none is left; how many survived."""
        import signal

        deadline = time.monotonic() + timeout
        left = self.pids()
        while left and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
            left = {p for p in self.pids() if _alive(p)}
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        return len(left)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# ---- the three parts (parent) -----------------------------------------------------------------
def part_big(a: argparse.Namespace, ds: dict, logs: Path) -> dict:
    # the smoke dataset is tiny: only a limit of 0 makes it stream
    in_memory_max = 0 if a.smoke else a.limit_mb
    overrides = [f"data.in_memory_max_mb={in_memory_max}",
                 f"search.memory_per_trial_mb={a.limit_mb}",
                 f"train.epochs={a.big_epochs}", f"train.early_stopping_patience={a.big_epochs}",
                 f"train.max_train_samples={a.big_train}", f"train.val_max_samples={a.big_val}"]
    pkl = Path(a.workdir) / "cache" / f"big_{ds['scenes']}x{ds['size']}.pkl"
    pkl.parent.mkdir(parents=True, exist_ok=True)
    print("part 1: building the index...", flush=True)
    index = run_child(["--child", "index", "--task", ds["task"], "--pickle", str(pkl),
                       "--overrides", json.dumps(overrides)], logs / "big_index.log", sample=True)
    print(f"  index {index['prepare_s']:.1f} s, {index['summary']}", flush=True)
    rows = []
    for w in a.big_workers:
        print(f"part 1: training, {w} loader worker(s)...", flush=True)
        row = run_child(["--child", "train", "--task", ds["task"], "--pickle", str(pkl),
                         "--overrides", json.dumps([*overrides, f"train.num_workers={w}"])],
                        logs / f"big_train_w{w}.log", sample=True)
        rows.append(row)
        print(f"  {row['status']} {row.get('train_sps', 0):.1f} samples/s, peaks "
              f"{row['tree_peaks']}", flush=True)
    pkl.unlink(missing_ok=True)
    return {"overrides": overrides, "index": index, "rows": rows}


def part_fit(a: argparse.Namespace, ds: dict, logs: Path) -> list[dict]:
    """One comparison per training budget (`--fit-train`)."""
    out = []
    for n in a.fit_budgets:
        overrides = [f"train.epochs={a.fit_epochs}",
                     f"train.early_stopping_patience={a.fit_epochs}",
                     f"train.max_train_samples={n}", f"train.val_max_samples={a.fit_val}"]
        entry = {"max_train_samples": n, "overrides": overrides}
        for path in ("memory", "streamed"):
            print(f"part 2: max_train_samples {n}, {path}, loader workers {a.workers}...",
                  flush=True)
            entry[path] = run_child(["--child", "compare", "--task", ds["task"], "--path", path,
                                     "--workers", a.workers, "--overrides",
                                     json.dumps(overrides)],
                                    logs / f"fit_{n}_{path}.log", sample=True)
        out.append(entry)
    return out


def isolated(argv: list[str]) -> list[str]:
    """`argv` in a new user + network namespace holding only loopback (`unshare -rn`, as
    tests/cluster does): Ray 2.60 binds its gRPC servers to every interface when a node's
    address is not 127.0.0.1, and there every interface is loopback."""
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def can_isolate() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(isolated(["true"]), capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def child_cluster(a: argparse.Namespace) -> dict:
    """Part 3, inside the isolated namespace: start the cluster, run the search (a child
    process, the cluster's driver), stop the cluster."""
    import socket

    interfaces = [name for _, name in socket.if_nameindex()]
    if interfaces != ["lo"]:
        raise SystemExit(f"not in an isolated network namespace (interfaces {interfaces}): "
                         "refusing to start Ray nodes that listen on every interface")
    t0 = time.perf_counter()
    cluster = LoopbackCluster()
    listen: list = []
    try:
        cluster.start()
        listen = cluster.listeners()
        result = run_child(["--child", "search", "--task", a.task, "--address", cluster.address,
                            "--runs", a.runs, "--overrides", a.overrides],
                           Path(a.runs).parent / "logs" / "cluster_search.log", env=cluster.env)
    finally:
        survived = cluster.stop()
    result.update(interfaces=interfaces, start_s=cluster.start_s, listeners=listen,
                  survived=survived, total_s=time.perf_counter() - t0)
    return result


def part_cluster(a: argparse.Namespace, ds: dict, logs: Path) -> dict | str:
    overrides = ["data.in_memory_max_mb=0", "train.epochs=1", "train.early_stopping_patience=1",
                 f"train.max_train_samples={a.cluster_train}",
                 f"train.val_max_samples={a.cluster_val}", "train.num_workers=0",
                 f"search.max_trials={a.cluster_trials}", "search.concurrency=2",
                 "search.cpus_per_trial=1", "search.strategy=random", "search.top_k=1",
                 "search.final_seeds=1", f"search.memory_per_trial_mb={a.limit_mb}",
                 "search.trial_timeout_s=1200"]
    if not can_isolate():
        return ("`unshare -rn` is not available here: the nodes would listen on every "
                "interface (Ray 2.60 binds its servers to all interfaces for a node address "
                "other than 127.0.0.1), so the cluster part was not run")
    print("part 3: a 2-node Ray cluster in an isolated network namespace...", flush=True)
    result = run_child(["--child", "cluster", "--task", ds["task"],
                        "--runs", str(Path(a.workdir) / "runs"),
                        "--overrides", json.dumps(overrides)], logs / "cluster.log",
                       wrap=isolated([]))
    result["overrides"] = overrides
    print(f"  search {result['search_wall_s']:.0f} s; trials on "
          f"{[t['node'] for t in result['trials']]}", flush=True)
    return result


# ---- the report ---------------------------------------------------------------------------------
def fmt_gb(b: float) -> str:
    return f"{b / 1e9:.2f}"


def report(res: dict, a: argparse.Namespace, wall_s: float) -> str:
    big_ds, fit_ds = res["datasets"]["big"], res["datasets"]["fit"]
    big, fits, cl = res["big"], res["fit"], res.get("cluster")
    fit = fits[0]
    t = [header_block("Datasets of many scenes: bigger than memory, streamed vs in memory, "
                      "on a cluster (issue 13)", "benchmarks/data_scale.py", wall_s)]
    t.append(f"Code: {res['code']}.  \n")
    t.append(f"Load average (1/5/15 min) at the end: "
             f"{', '.join(f'{x:.2f}' for x in res['load_end'])}. Every training: `{ARCH}`, seed "
             f"{SEED}, 1 torch thread, CPU; figures are from this one run.\n\n")
    t.append("## Datasets\n\n`autors synth --scenes N --size S --sensors optical,sar,lidar,hsi "
             "--compress none` (seed 0; Sen1Floods11 layout, split by scene from the "
             "release-style CSVs, Bolivia held out). `normalised` is what holding it in memory "
             "takes (float32, every band).\n\n")
    rows = []
    for label, ds, split, summ in (
            ("part 1 (bigger than memory)", big_ds, big["index"]["split_sha256"],
             big["index"]["summary"]),
            ("parts 2 and 3 (fits)", fit_ds, fit["memory"]["split_sha256"],
             fit["memory"]["summary"])):
        chans = sum(fit["memory"]["channels"].values())
        gen = "cached" if ds["generated_s"] is None else f"{ds['generated_s']:.0f}"
        rows.append([label, ds["scenes"], ds["size"], chans, ds["files"], fmt_gb(ds["disk_bytes"]),
                     f"{summ['dataset_mb'] * MIB / 1e9:.2f}", gen, f"`{split[:12]}`"])
    t.append(md_table(["dataset", "scenes", "px", "channels", "files", "GB on disk",
                       "GB normalised", "generation s", "split hash"], rows, "lrrrrrrrl"))
    t.append("\n\nGeneration is cached per `--workdir` (`cached`: generated by an earlier run "
             "with the same settings; the files are identical for the same settings).\n\n")

    # part 1
    idx = big["index"]
    limit = a.limit_mb
    ratio_disk = big_ds["disk_bytes"] / (limit * MIB)
    t.append(f"## 1. Bigger than memory\n\n{big_ds['scenes']} scenes, "
             f"{fmt_gb(big_ds['disk_bytes'])} GB of rasters on disk = **{ratio_disk:.1f}x** the "
             f"trial memory limit of {limit} MiB (`search.memory_per_trial_mb`, also "
             f"`data.in_memory_max_mb`, so `prepare(task)` chose to stream: in_memory = "
             f"{idx['summary']['in_memory']}). Normalised in memory it would take "
             f"{idx['summary']['dataset_mb'] * MIB / 1e9:.1f} GB.\n\n"
             f"Index (`prepare(task)`: every raster read once by blocks of {idx['block_size']} px, "
             f"then normalisation statistics): **{idx['prepare_s']:.0f} s** wall "
             f"({idx['prepare_cpu_s']:.0f} s CPU, {idx['prepare_s'] / big_ds['scenes']:.2f} s per "
             f"scene), peak RSS {idx['self_maxrss_mb']:.0f} MiB; the prepared data (index, "
             f"statistics) pickles to {idx['pickle_bytes'] / MIB:.2f} MiB "
             f"(`shipped_bytes` {idx['summary']['shipped_bytes']:,}). Training samples in the "
             f"split: {idx['train_samples_total']:,}; validation: {idx['val_samples_total']:,} "
             f"(`val_max_samples`).\n\n"
             f"Training: {a.big_epochs} epoch(s) of `max_train_samples` {a.big_train:,}, "
             f"validation on {a.big_val:,} pixels, `data.cache_mb` {idx['cache_mb']:g} per "
             "reading process, the trial memory limit in force (RLIMIT_DATA, as in a search "
             "worker). Memory of the whole process tree (the trainer and its DataLoader "
             "workers), polled every 0.1 s during training: RSS sum (shared pages counted in "
             "every process: an upper bound) and PSS sum (shared pages split: the tree's "
             "footprint).\n\n")
    rows = []
    for r in big["rows"]:
        pk = r["tree_peaks"].get("train", {"rss_mb": 0, "pss_mb": 0, "procs": 0})
        rows.append([r["num_workers"], r["status"], f"{pk['rss_mb']:.0f}", f"{pk['pss_mb']:.0f}",
                     f"{r['self_maxrss_mb']:.0f}", f"{r['children_maxrss_mb']:.0f}", pk["procs"],
                     limit, f"{r.get('train_samples', 0):,}", f"{r.get('train_sps', 0):.1f}",
                     f"{r.get('val_sps', 0):.1f}", f"{r.get('train_reads', 0):,}",
                     f"{100 * _hit(r, 'train'):.1f}", f"{r.get('wall_s', 0):.0f}"])
    t.append(md_table(["loader workers", "status", "peak RSS sum MiB", "peak PSS sum MiB",
                       "trainer max RSS MiB", "largest worker max RSS MiB", "processes",
                       "limit MiB", "train samples", "train samples/s", "val samples/s",
                       "block reads (train)", "cache hit % (train)", "train_evaluate s"],
                      rows, "rlrrrrrrrrrrrr"))
    ok1 = all(r["status"] == "ok" and r["tree_peaks"]["train"]["rss_mb"] < limit
              for r in big["rows"])
    ok1_pss = all(r["status"] == "ok" and r["tree_peaks"]["train"]["pss_mb"] < limit
                  for r in big["rows"])
    worst = max(r["tree_peaks"]["train"]["rss_mb"] for r in big["rows"])
    base = max(r["tree_peaks"].get("load", {}).get("rss_mb", 0) for r in big["rows"])
    t.append(f"\n\nWhere it goes: the trainer holds about {base:.0f} MiB after imports and "
             "loading the prepared data (torch and the libraries; a forked loader worker shares "
             "those pages, so they count again in its RSS but not in the PSS sum); every "
             f"streamed dataset object adds its own block cache of up to {idx['cache_mb']:g} MiB "
             "(`PreparedData.source()` makes a new `BlockSource` per `dataset()` call, so with 0 "
             "workers the trainer holds the training and the validation dataset's caches at "
             "once; each loader worker holds one); the rest is decoded split maps, block reads "
             "in flight and the model. RLIMIT_DATA is per process: each forked loader worker "
             "inherits the limit on its own data size, so the limit does not bound the sum "
             "over the tree.")
    t.append(f"\n\nTarget: peak memory of the training tree under the {limit} MiB limit with "
             f"a dataset >= 3x the limit on disk ({ratio_disk:.1f}x): "
             f"**{'pass' if ok1 and ratio_disk >= 3 else 'FAIL'}** on the RSS sum (worst "
             f"{worst:.0f} MiB), {'pass' if ok1_pss else 'FAIL'} on the PSS sum.\n\n")

    # part 2
    mem, st = fit["memory"], fit["streamed"]
    budgets = ", ".join(f"{f['max_train_samples']:,}" for f in fits)
    t.append(f"## 2. Streamed vs in memory\n\n{fit_ds['scenes']} scenes (fits: "
             f"{mem['summary']['dataset_mb'] * MIB / 1e9:.2f} GB normalised), the same model, seed "
             f"and task; `prepare(task, in_memory=True)` ({mem['prepare_s']:.0f} s) vs "
             f"`in_memory=False` ({st['prepare_s']:.0f} s). {a.fit_epochs} epoch(s) of "
             f"`max_train_samples` {budgets} (seeded subsets of the "
             f"{mem['train_samples_total']:,} training pixels; the dataset's task file says "
             "20,000), "
             f"validation on {a.fit_val:,} pixels; block "
             f"{st['block_size']} px, `data.cache_mb` {st['cache_mb']:g} per reading process "
             f"(one normalised block of {sum(st['channels'].values())} channels is "
             f"{_block_mb(st):.1f} MiB: the cache holds {int(st['cache_mb'] // _block_mb(st))} "
             "blocks). Samples/s are timed over the training epochs only (loader, forward, "
             "backward, step; loader workers start each epoch); validation separately.\n\n")
    verdicts = []
    for f in fits:
        passed, text = _compare_section(f, a)
        verdicts.append((f["max_train_samples"], passed))
        t.append(text)
    t.append("Target: streamed >= " + f"{RATIO_TARGET}x in-memory training samples/s for every "
             "worker count: " + "; ".join(f"max_train_samples {n:,}: "
                                          f"**{'pass' if ok else 'FAIL'}**"
                                          for n, ok in verdicts) + ".\n\n")
    if res.get("repeat"):
        t.append(res["repeat"] + "\n\n")

    # part 3
    if cl is None:
        t.append("## 3. Cluster\n\nSkipped (" + res.get("cluster_skipped", "") + ").\n\n")
    else:
        sess = cl["session"]
        data = sess["data"]
        rv = cl["ray_view"]
        t.append(f"## 3. Cluster\n\nA real two-node Ray cluster on loopback: head {HEAD_IP} "
                 f"(`ray start --head`, {cl['start_s'].get(HEAD_IP, 0):.0f} s), worker "
                 f"{WORKER_IP} ({cl['start_s'].get(WORKER_IP, 0):.0f} s), 1 CPU each, token "
                 f"authentication, private RAY_TMPDIR, inside a user + network namespace of "
                 f"its own (`unshare -rn`, interfaces: {', '.join(cl['interfaces'])}), as "
                 f"tests/cluster runs it: Ray 2.60 binds its gRPC servers to every interface "
                 f"when a node's address is not 127.0.0.1 (the cluster's "
                 f"{len(cl['listeners'])} listening sockets were on "
                 f"{', '.join(sorted({x[0] for x in cl['listeners']}))}), and in that namespace "
                 f"every interface is loopback. Live nodes seen by the "
                 f"driver: {', '.join(cl['nodes_alive'])}. A random search of "
                 f"{a.cluster_trials} trials (`search.concurrency` 2, 1 epoch of "
                 f"{a.cluster_train} samples, validation on {a.cluster_val} pixels, "
                 f"`memory_per_trial_mb` {a.limit_mb}) plus the final phase's retraining of "
                 f"the best trial, here without its test evaluation (`final_fn` = `run_trial`: "
                 f"the real one scores every labelled test pixel, "
                 f"{cl['split_counts']['test']:,} here: about "
                 f"{cl['split_counts']['test'] / st['rows'][0]['val_sps'] / 60:.0f} min at "
                 f"part 2's streamed evaluation speed), over the "
                 f"{fit_ds['scenes']}-scene dataset forced to stream (`data.in_memory_max_mb: 0`). "
                 f"Search wall time {cl['search_wall_s']:.0f} s; cluster up to down "
                 f"{cl['total_s']:.0f} s; stopped by killing the two nodes' sessions "
                 f"({cl['survived']} processes survived).\n\n"
                 f"Object store, per trial: run.json `sessions[].data` says {data['scenes']} "
                 f"scenes, in_memory {data['in_memory']}, dataset {data['dataset_mb']:,.0f} MB "
                 f"normalised, **shipped_bytes {data['shipped_bytes']:,}** "
                 f"({data['shipped_bytes'] / MIB:.2f} MiB). Ray's own view of the object the "
                 f"search put (`get_object_locations`): prepared data "
                 f"**{rv.get('data_object_bytes', 0):,} bytes**, task dict "
                 f"{rv.get('task_object_bytes', 0):,} bytes; after the search phase the data "
                 f"object had a copy on {', '.join(rv.get('data_object_nodes', []))}. Each "
                 f"trial reads its windows from the GeoTIFFs "
                 f"({fmt_gb(fit_ds['disk_bytes'])} GB on disk), on the node it runs on. Split "
                 f"hash `{cl['split_sha256'][:12]}`.\n\n")
        rows = [[r["trial"], r["node"], r["status"], r["attempt"],
                 f"{100 * (r['val_oa'] or 0):.1f}", f"{r['train_s']:.1f}", f"{r['wall_s']:.1f}",
                 f"{data['shipped_bytes']:,}"] for r in cl["trials"]]
        t.append(md_table(["trial", "node", "status", "attempt", "val OA %", "train s",
                           "submitted to recorded s", "shipped bytes"], rows, "rllrrrrr"))
        nodes = sorted({r["node"] for r in cl["trials"]})
        t.append(f"\n\nTrials ran on {len(nodes)} node(s): {', '.join(nodes)}; "
                 f"{sum(r['status'] == 'ok' for r in cl['trials'])} of {len(cl['trials'])} ok. "
                 "The final retraining: " + ", ".join(f"trial {f['trial']} on {f['node']} "
                                                      f"({f['status']})" for f in cl["finals"])
                 + ".\n\n")
    t.append("![samples/s and memory](" + res["png"] + ")\n")
    return "".join(t)


def _block_mb(st: dict) -> float:
    return st["block_size"] ** 2 * 4 * sum(st["channels"].values()) / MIB


def _hit(r: dict, phase: str) -> float:
    calls = r.get(f"{phase}_calls", 0)
    return 1 - r.get(f"{phase}_reads", 0) / calls if calls else 0.0


def _compare_section(fit: dict, a: argparse.Namespace) -> tuple[bool, str]:
    """One training budget: the speed table, identical results, the block cache."""
    mem, st = fit["memory"], fit["streamed"]
    t = [f"### max_train_samples {fit['max_train_samples']:,}\n\n"]
    rows, ratios = [], []
    for rm, rs in zip(mem["rows"], st["rows"]):
        ratio = rs["train_sps"] / rm["train_sps"]
        ratios.append(ratio)
        rows.append([rm["num_workers"], f"{rm['train_sps']:.0f}", f"{rs['train_sps']:.0f}",
                     f"{ratio:.3f}", f"{rm['val_sps']:.0f}", f"{rs['val_sps']:.0f}",
                     f"{rs['train_calls']:,}", f"{rs['train_reads']:,}",
                     f"{100 * _hit(rs, 'train'):.1f}", f"{rs['train_read_s']:.1f}",
                     f"{100 * _hit(rs, 'val'):.1f}",
                     "yes" if rm["metrics_json"] == rs["metrics_json"] else "NO",
                     "yes" if rm["weights_sha256"] == rs["weights_sha256"] else "NO"])
    t.append(md_table(["loader workers", "in memory samples/s", "streamed samples/s",
                       "ratio", "in memory val samples/s", "streamed val samples/s",
                       "block lookups (train)", "block reads (train)", "cache hit % (train)",
                       "read s (train, all processes)", "cache hit % (val)",
                       "same val metrics", "same weights"], rows, "rrrrrrrrrrrll"))
    same = all(r[-1] == "yes" and r[-2] == "yes" for r in rows)
    across = len({r["weights_sha256"] for r in mem["rows"] + st["rows"]}) == 1
    passed = min(ratios) >= RATIO_TARGET
    t.append(f"\n\nValidation metrics (every value, per-class included) and trained weights "
             f"(sha256 of the state dict) between the two paths, per worker count: "
             f"**{'identical' if same else 'DIFFERENT'}**; across all {2 * len(rows)} runs "
             f"({a.workers} workers, both paths) the weights are "
             f"{'one and the same' if across else 'not all the same'} "
             f"(`{mem['rows'][0]['weights_sha256'][:12]}`). Val OA "
             f"{100 * mem['rows'][0]['val_oa']:.2f} %. Ratio (streamed / in memory) "
             f"{', '.join(f'{r:.3f}' for r in ratios)} for {a.workers} workers: "
             f"**{'pass' if passed else 'FAIL'}** (target >= {RATIO_TARGET}).\n\n")
    t.append(_cache_section(fit, passed))
    return passed, "".join(t)


def _cache_section(fit: dict, passed: bool) -> str:
    """Where the streamed epoch's time goes, and the same epoch's block order replayed through
    LRU caches of several sizes."""
    st, rp = fit["streamed"], fit["streamed"].get("replay")
    r0 = st["rows"][0]
    per_read = r0["train_read_s"] / max(r0["train_reads"], 1)
    text = [(f"#### Block cache{'' if passed else ': what limits streaming'}\n\n"
            f"Streamed, {r0['num_workers']} loader workers: {r0['train_reads']:,} block reads "
            f"for {r0['train_samples']:,} training samples "
            f"({r0['train_reads'] / max(r0['train_samples'], 1):.2f} per sample; cache hit "
            f"{100 * _hit(r0, 'train'):.1f} %), {1000 * per_read:.0f} ms per read (a "
            f"{st['block_size']} px block of every sensor, {_block_mb(st):.1f} MiB normalised: "
            f"window reads, the SAR warped, normalised): {r0['train_read_s']:.0f} s of the "
            f"epoch's {r0['train_s']:.0f} s; the in-memory epoch took "
            f"{fit['memory']['rows'][0]['train_s']:.0f} s.\n\n")]
    if rp:
        own = next(x for x in rp["sims"] if x["cache_mb"] == st["cache_mb"])
        same = own["reads"] == r0["train_reads"]
        window = (f" (`EpochSampler` window: {rp['sampler_window']} chunks)"
                  if rp.get("sampler_window") else "")
        text.append(
            f"The same epoch's order{window} replayed through an LRU cache of each size in one "
            f"reading process, no pixel read (at the task's {st['cache_mb']:g} MiB: "
            f"{own['reads']:,} reads, "
            + ("exactly the measured count" if same else
               f"measured {r0['train_reads']:,}: the replay is approximate")
            + f"). The epoch looks up {rp['lookups']:,} blocks, **{rp['distinct_blocks']:,} "
            f"distinct** (in {rp['train_scenes']} training scenes): the fewest reads any order "
            "could need. Reads exceed that whenever the order comes back to a block after "
            "more other blocks than the cache holds.\n\n")
        rows = [[f"{x['cache_mb']:g}", int(x["cache_mb"] // rp["block_mib"]),
                 f"{x['reads']:,}", f"{100 * x['hit']:.1f}", f"{x['reads'] * per_read:.0f}"]
                for x in rp["sims"]]
        rows.append(["(each block once)", rp["distinct_blocks"], f"{rp['distinct_blocks']:,}",
                     f"{100 * (1 - rp['distinct_blocks'] / max(rp['lookups'], 1)):.1f}",
                     f"{rp['distinct_blocks'] * per_read:.0f}"])
        text.append(md_table(["cache MiB", "blocks held", "reads (replayed)", "hit %",
                              "read s at the measured ms per read"], rows, "lrrrr") + "\n\n")
    text.append("Loader workers each hold their own cache and see every other batch, so they "
                "split the reads between processes; that helps only as far as free cores "
                "allow.\n\n")
    return "".join(text)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits, big = res["fit"], res["big"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, fit in enumerate(fits):
        for key, label, style in (("memory", "in memory", "-o"), ("streamed", "streamed", "--s")):
            rows = fit[key]["rows"]
            ax1.plot([r["num_workers"] for r in rows], [r["train_sps"] for r in rows], style,
                     color=f"C{i}", label=f"{label}, {res['datasets']['fit']['scenes']} scenes, "
                     f"{fit['max_train_samples']:,} samples")
    ok = [r for r in big["rows"] if r["status"] == "ok"]
    if ok:
        ax1.plot([r["num_workers"] for r in ok], [r["train_sps"] for r in ok], marker="^",
                 linestyle=":", color=f"C{len(fits)}",
                 label=f"streamed, {res['datasets']['big']['scenes']} scenes (part 1)")
    ax1.set_xlabel("DataLoader workers")
    ax1.set_ylabel("training samples/s")
    ax1.set_yscale("log")
    ax1.set_xticks(sorted({r["num_workers"] for r in fits[0]["memory"]["rows"] + big["rows"]}))
    ax1.set_title("training throughput", fontsize=10)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    xs = range(len(big["rows"]))
    rss = [r["tree_peaks"].get("train", {}).get("rss_mb", 0) for r in big["rows"]]
    pss = [r["tree_peaks"].get("train", {}).get("pss_mb", 0) for r in big["rows"]]
    ax2.bar([x - 0.2 for x in xs], rss, width=0.4, label="peak RSS sum (tree)")
    ax2.bar([x + 0.2 for x in xs], pss, width=0.4, label="peak PSS sum (tree)")
    ax2.axhline(res["limit_mb"], color="red", linestyle="--",
                label=f"limit {res['limit_mb']} MiB")
    ax2.set_xticks(list(xs), [f"{r['num_workers']} workers" for r in big["rows"]])
    ax2.set_ylabel("MiB")
    ax2.set_title(f"training memory, {fmt_gb(res['datasets']['big']['disk_bytes'])} GB dataset",
                  fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def code_state() -> str:
    """The commit measured, and whether the measured packages differ from it."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "autors", "fusion",
                "search_spaces")
    return f"commit `{head}`" + (" with local changes to autors/fusion/search_spaces"
                                  if dirty else " (autors, fusion, search_spaces as committed)")


# ---- main -----------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/work/bench_data"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--size", type=int, default=512, help="scene side, pixels")
    p.add_argument("--big-scenes", type=int, default=200)
    p.add_argument("--big-epochs", type=int, default=1)
    p.add_argument("--big-train", type=int, default=3000, help="max_train_samples, part 1")
    p.add_argument("--big-val", type=int, default=2000, help="val_max_samples, part 1")
    p.add_argument("--fit-scenes", type=int, default=24)
    p.add_argument("--fit-epochs", type=int, default=1)
    p.add_argument("--fit-train", default="4096,20000",
                   help="max_train_samples of part 2, one comparison each")
    p.add_argument("--fit-val", type=int, default=4096, help="val_max_samples, part 2")
    p.add_argument("--limit-mb", type=int, default=2000,
                   help="search.memory_per_trial_mb and data.in_memory_max_mb of part 1")
    p.add_argument("--workers", default="0,1,2", help="loader worker counts of part 2")
    p.add_argument("--cluster", choices=("on", "off"), default=None,
                   help="part 3 (default: on, off with --smoke)")
    p.add_argument("--cluster-trials", type=int, default=4)
    p.add_argument("--cluster-train", type=int, default=512)
    p.add_argument("--cluster-val", type=int, default=512)
    p.add_argument("--jobs", type=int, default=2, help="processes generating scenes")
    p.add_argument("--repeat-check", action="store_true",
                   help="re-run part 2's streamed path with the most workers in a fresh process "
                   "and compare metrics, weights and block reads exactly")
    p.add_argument("--smoke", action="store_true",
                   help="6 scenes of 64 px for parts 1-2, one worker count, no cluster (CI)")
    # children
    p.add_argument("--child", choices=("index", "train", "compare", "cluster", "search"),
                   help=argparse.SUPPRESS)
    for name in ("--task", "--overrides", "--pickle", "--path", "--address", "--runs"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--phase-file", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        fn = {"index": child_index, "train": child_train, "compare": child_compare,
              "cluster": child_cluster, "search": child_search}[a.child]
        _emit(fn(a))
        return

    if a.smoke:
        a.size, a.big_scenes, a.fit_scenes, a.workers = 64, 6, 6, "1"
        a.big_train = a.big_val = a.fit_val = 256
        a.fit_train = "256"
        a.cluster_trials, a.cluster_train, a.cluster_val = 2, 64, 64
    a.cluster = a.cluster or ("off" if a.smoke else "on")
    worker_counts = [int(x) for x in a.workers.split(",")]
    a.fit_budgets = [int(x) for x in a.fit_train.split(",")]
    a.big_workers = sorted({min(worker_counts), max(worker_counts)})
    t0 = time.perf_counter()
    a.workdir.mkdir(parents=True, exist_ok=True)
    logs = a.workdir / "logs"
    res: dict = {"limit_mb": a.limit_mb, "arch": ARCH, "seed": SEED, "smoke": a.smoke,
                 "code": code_state()}
    big_ds = ensure_dataset(a.workdir, a.big_scenes, a.size, a.jobs)
    fit_ds = big_ds if a.fit_scenes == a.big_scenes else ensure_dataset(
        a.workdir, a.fit_scenes, a.size, a.jobs)
    res["datasets"] = {"big": big_ds, "fit": fit_ds}
    partial = a.workdir / ("data_scale_smoke.partial.json" if a.smoke
                           else "data_scale.partial.json")

    def save() -> None:  # what was measured so far survives a later failure
        partial.write_text(json.dumps(res, indent=1, default=str) + "\n")

    res["big"] = part_big(a, big_ds, logs)
    save()
    res["fit"] = part_fit(a, fit_ds, logs)
    save()
    if a.repeat_check:
        w = max(worker_counts)
        first = next(r for r in res["fit"][0]["streamed"]["rows"] if r["num_workers"] == w)
        print(f"repeat check: part 2 streamed, {w} workers, in a fresh process...", flush=True)
        again = run_child(["--child", "compare", "--task", fit_ds["task"], "--path", "streamed",
                           "--workers", str(w), "--overrides",
                           json.dumps(res["fit"][0]["overrides"])],
                          logs / "fit_repeat.log")["rows"][0]
        keys = ("metrics_json", "weights_sha256", "train_samples", "train_calls", "train_reads",
                "val_calls", "val_reads", "epochs")
        res["repeat"] = repeat_statement(
            {k: first[k] for k in keys}, {k: again[k] for k in keys},
            f"part 2's streamed training with {w} loader workers (max_train_samples "
            f"{a.fit_budgets[0]:,})")
        print(res["repeat"], flush=True)
        save()
    if a.cluster == "on":
        cluster = part_cluster(a, fit_ds, logs)
        if isinstance(cluster, str):
            res["cluster_skipped"] = cluster
        else:
            res["cluster"] = cluster
    else:
        res["cluster_skipped"] = ("--smoke: the cluster part needs two `ray start` nodes; run "
                                  "with --cluster on to include it" if a.smoke
                                  else "--cluster off")
    res["load_end"] = os.getloadavg()
    name = "data_scale_smoke" if a.smoke else "data_scale"
    a.out.mkdir(parents=True, exist_ok=True)
    res["png"] = f"{name}.png"
    plot(res, a.out / res["png"])
    wall = time.perf_counter() - t0
    res["wall_s"] = wall
    path = write_report(a.out, name, report(res, a, wall))
    res["command"] = " ".join(sys.argv)
    (a.out / f"{name}.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"wrote {path} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
