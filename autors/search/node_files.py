"""Can every node of a Ray cluster read the dataset's rasters? A streamed dataset is read by
every trial on its own node, so a file a node cannot read (not mounted there, another copy)
must fail before the search, naming the node, the file and the fix (`autors validate
--cluster`, and `autors search --address` when the data is streamed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from autors.config import TaskSpec
from autors.data.scenes import SceneFiles
from autors.errors import DataError, SearchError

CLUSTER_TIMEOUT_S = 120.0  # a node that cannot run a tiny task by then cannot run trials either


@dataclass(frozen=True)
class NodeCheck:
    """What one node said: the files it could not read (path, why), or why it said nothing."""

    ip: str
    host: str
    failures: list[tuple[str, str]]
    error: str | None = None  # the check did not run there (no answer, worker died)


def _node_check():
    """The check run on a node. Defined inside a function so that cloudpickle ships it by
    value: a node needs rasterio, not this process's autors (nor --ship-code)."""

    def check(files: list[tuple[str, int]]) -> tuple[str, list[tuple[str, str]]]:
        import os
        import socket

        try:
            import rasterio
        except ImportError as err:
            return socket.gethostname(), [("(every file)", f"rasterio cannot be imported: {err}")]
        bad = []
        for path, size in files:
            try:
                with rasterio.open(path):
                    pass  # the header: what a reader opens first
                there = os.path.getsize(path)
            except Exception as err:  # noqa: BLE001 - any failure is the answer, as text
                lines = str(err).splitlines() or [""]
                bad.append((path, f"{type(err).__name__}: {lines[0][:200]}"))
                continue
            if there != size:
                why = f"{there} bytes there but {size} on the driver: another copy of the file"
                bad.append((path, why))
        return socket.gethostname(), bad

    return check


def check_nodes(files: dict[Path, int], timeout_s: float = CLUSTER_TIMEOUT_S
                ) -> list[NodeCheck]:
    """Run the file check once on every alive node of the connected Ray cluster."""
    import ray
    from ray.exceptions import RayError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    payload = ray.put([(str(p), size) for p, size in files.items()])
    # num_cpus=0: the check runs even where trials hold every CPU; no retry, the answer is
    # about this node.
    task = ray.remote(num_cpus=0, max_retries=0)(_node_check())
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote(payload) for n in nodes]
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    out = []
    for node, ref in zip(nodes, refs):
        ip, host = node.get("NodeManagerAddress", "?"), node.get("NodeManagerHostname", "?")
        if ref not in done:
            ray.cancel(ref, force=True)
            out.append(NodeCheck(ip, host, [], f"did not answer within {timeout_s:g} s"))
            continue
        try:
            host, bad = ray.get(ref)
        except RayError as err:
            out.append(NodeCheck(ip, host, [], f"the check failed there ({type(err).__name__})"))
            continue
        out.append(NodeCheck(ip, host, bad))
    return out




def dataset_files(scenes: list[SceneFiles]) -> tuple[dict[Path, int], dict[str, str]]:
    """Every raster of the dataset (sensors, labels, masks; each once) with its size in bytes,
    and what each file is ("scene 'x', sensor 's1'"), for messages."""
    where: dict[str, str] = {}
    for f in scenes:
        for name, p in f.sensors.items():
            where.setdefault(str(p), f"scene '{f.id}', sensor '{name}'")
        for key, p in f.labels.items():
            where.setdefault(str(p), f"scene '{f.id}', labels ({key})")
        for name, p in f.masks.items():
            where.setdefault(str(p), f"scene '{f.id}', mask of sensor '{name}'")
    files = {Path(p): os.path.getsize(p) for p in sorted(where)}
    return files, where


def raise_for_nodes(checks: list[NodeCheck], where: dict[str, str], address: str,
                    task: TaskSpec) -> None:
    """A SearchError for a node that did not answer, a DataError for the first node that
    cannot read a file; nothing when every node read every file."""
    silent = next((c for c in checks if c.error), None)
    if silent is not None:
        raise SearchError(f"node {silent.ip} ({silent.host}) of the cluster at {address} "
                          f"{silent.error}: check that it is healthy (`ray status`), or remove "
                          "it before searching")
    bad = next((c for c in checks if c.failures), None)
    if bad is None:
        return
    path, why = bad.failures[0]
    more = f" (and {len(bad.failures) - 1} more file(s))" if len(bad.failures) > 1 else ""
    raise DataError(
        f"node {bad.ip} ({bad.host}) cannot read {path} ({where.get(path, 'a raster')}: {why})"
        f"{more}; the dataset is streamed (larger than data.in_memory_max_mb "
        f"{task.data.in_memory_max_mb:g}), so trials read the rasters on every node: put the "
        "data on storage that every node mounts at the same path (e.g. NFS), or raise "
        "data.in_memory_max_mb so the driver reads it once and ships it to the workers"
    )
