"""The processes of a search's local Ray instance, recorded by pid in the run folder.

A driver killed with SIGKILL takes Ray's direct children (gcs_server, raylet, ...) with it, but
not the raylet's own children: the dashboard agent and the runtime-env agent are reparented and
live on for about a minute (measured with Ray 2.60). So while the local instance runs, every
descendant of the driver is recorded in `<run>/ray_local.json` (pid, start time, command name),
and the next `autors search` or `--resume` in the same runs folder stops what a dead driver left
(`stop_leftovers`): by recorded pid, and only a process whose start time (field 22 of
/proc/<pid>/stat) is the recorded one, so a reused pid is never signalled. Nothing is ever found
or killed by name. A record whose driver is alive (a concurrent search) is left alone. Only a
local instance is recorded, never a cluster (`--address`) or a Ray this process already had.
Linux only (/proc); elsewhere nothing is recorded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from autors.files import write_atomic

FILE_NAME = "ray_local.json"
FORMAT = 1
PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks after boot (/proc/<pid>/stat field 22): pid + start is unique
    comm: str  # command name, for the record only


def _stat(pid: int) -> tuple[Proc, int, str] | None:
    """(process, parent pid, state) of `pid`, or None when it does not exist."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    comm = text[text.find("(") + 1 : text.rfind(")")]
    fields = text[text.rfind(")") + 1 :].split()  # fields[0] is field 3 (state)
    try:
        return Proc(pid, int(fields[19]), comm), int(fields[1]), fields[0]
    except (IndexError, ValueError):
        return None


def process(pid: int) -> Proc | None:
    """The live process `pid` (a zombie is dead: it only waits to be reaped)."""
    st = _stat(pid)
    return st[0] if st is not None and st[2] not in ("Z", "X") else None


def alive(proc: Proc) -> bool:
    """Whether the very process recorded as `proc` still runs (same pid and start time)."""
    now = process(proc.pid)
    return now is not None and now.start == proc.start


def descendants(pid: int) -> list[Proc]:
    """Live descendants of `pid` (children, their children, ...), walking /proc parent links."""
    children: dict[int, list[Proc]] = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[2] not in ("Z", "X"):
                children.setdefault(st[1], []).append(st[0])
    found: list[Proc] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def _boot_id() -> str | None:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


class LocalRayRecord:
    """`<run>/ray_local.json` for the local Ray instance this driver started."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / FILE_NAME
        self.active = False
        self._driver: Proc | None = None
        self._known: dict[int, Proc] = {}

    def start(self) -> None:
        """Begin recording (call right after the local instance started)."""
        self._driver = process(os.getpid())
        self.active = self._driver is not None
        self.refresh()

    def refresh(self) -> None:
        """Add the driver's current descendants (agents and workers start after ray.init
        returns); a recorded process that is still alive stays recorded even if it has been
        reparented. The file is rewritten only when the set changed. Cheap (one /proc scan)."""
        if not self.active or self._driver is None:
            return
        now = {p.pid: p for p in self._known.values() if alive(p)}
        now.update({p.pid: p for p in descendants(self._driver.pid)})
        if now == self._known and self.path.exists():
            return
        self._known = now
        write_atomic(self.path, json.dumps({
            "format": FORMAT,
            "host": socket.gethostname(),
            "boot_id": _boot_id(),
            "driver": asdict(self._driver),
            "processes": [asdict(p) for p in sorted(now.values(), key=lambda p: p.pid)],
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }, indent=1))

    def close(self) -> None:
        """The instance was shut down normally: nothing is left to clean up."""
        if self.active:
            self.path.unlink(missing_ok=True)
        self.active = False


@contextmanager
def recording(run_dir: Path) -> Iterator[LocalRayRecord]:
    """A record that is removed on the way out. Enter it *before* the Ray connection so that
    it is removed after ray.shutdown(); call `.start()` only for a local instance."""
    record = LocalRayRecord(run_dir)
    try:
        yield record
    finally:
        record.close()


@dataclass(frozen=True)
class Leftovers:
    run: str  # the run folder's name
    driver_pid: int
    found: int  # recorded processes still alive
    stopped: int  # of those, gone after SIGTERM / SIGKILL


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _procs(items: object) -> list[Proc]:
    out = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(Proc(int(item["pid"]), int(item["start"]), str(item.get("comm", ""))))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def stop_leftovers(runs_dir: Path, grace_s: float = 5.0) -> list[Leftovers]:
    """Stop the Ray processes that killed searches left, as recorded in `runs_dir/*/`.

    For every record of this machine whose driver is gone (pid missing, or reused: another
    start time), each recorded process still alive with its recorded start time gets SIGTERM,
    then SIGKILL after `grace_s`; the record is then removed. Records of a live driver and of
    other machines are left alone. Returns one entry per dead driver's record (a record is
    kept if one of its processes could not be stopped).
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir() or not PROC.is_dir():
        return []
    host, boot, me = socket.gethostname(), _boot_id(), os.getpid()
    todo: list[tuple[Path, dict, list[Proc]]] = []
    for path in sorted(runs_dir.glob(f"*/{FILE_NAME}")):
        data = _read(path)
        if data is None or data.get("host") != host:
            continue
        driver = _procs([data.get("driver")])
        if not driver or (data.get("boot_id") == boot and alive(driver[0])):
            continue  # a search still running (or an unreadable record): not ours to touch
        # After a reboot every recorded process is gone, whatever its pid says now.
        left = [p for p in _procs(data.get("processes"))
                if data.get("boot_id") == boot and p.pid != me and alive(p)]
        todo.append((path, data, left))
    everyone = [p for _, _, left in todo for p in left]
    _signal(everyone, signal.SIGTERM)
    _wait_gone(everyone, grace_s)
    _signal([p for p in everyone if alive(p)], signal.SIGKILL)
    _wait_gone(everyone, 2.0)
    done = []
    for path, data, left in todo:
        stopped = sum(not alive(p) for p in left)
        if stopped == len(left):
            path.unlink(missing_ok=True)
        done.append(Leftovers(path.parent.name, int(data["driver"]["pid"]), len(left), stopped))
    return done


def _signal(procs: list[Proc], sig: int) -> None:
    for p in procs:
        if alive(p):  # checked just before: a pid freed since is never signalled
            try:
                os.kill(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def _wait_gone(procs: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
