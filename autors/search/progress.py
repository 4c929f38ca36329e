"""What the user sees while a search runs: a live panel (rich) or plain log lines (--quiet).

Live panel: done/total, running, failed, (with a scheduler) stopped and promoted, best so far
with a one-line arch summary, ETA.
Quiet mode (and any non-terminal output) prints one line per finished trial instead.
"""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from autors.search.broker import SearchBroker
from autors.search.records import TrialRecord, trained_count
from autors.search.report import arch_summary, best
from autors.search.tables import fmt_count


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"




def _busy_s(record: TrialRecord) -> float:
    """Seconds a trial held a slot: its rungs' worker seconds, else submission to record."""
    rungs = record.result.extra.get("rungs")
    return sum(g["seconds"] for g in rungs) if rungs else record.wall_s


def trial_line(record: TrialRecord, objective: str, total: int | None, done: int) -> str:
    """One line describing a finished trial."""
    res = record.result
    head = f"[{done}/{total if total is not None else '?'}] trial {record.trial_id}"
    rungs = res.extra.get("rungs")
    if rungs and record.stopped:  # a multi-fidelity trial below the top rung
        what = "promoted" if res.status == "promoted" else "stopped by the scheduler"
        return (f"{head} rung {rungs[-1]['rung']} ({rungs[-1]['epochs']} ep) "
                f"{objective}={float(res.metrics[objective]):.4f}: {what}")
    if not record.ok:
        reason = (record.reason.splitlines() or [""])[0][:120]
        return f"{head} {res.status.upper()}: {reason}"
    cost = res.cost
    parts = [f"{objective}={float(res.metrics[objective]):.4f}"]
    if cost is not None:
        parts.append(f"params={fmt_count(cost.params)} latency={cost.latency_ms_b1:.2f}ms")
    parts.append(f"{res.epochs} ep {res.train_s:.1f}s")
    if not record.feasible:
        parts.append("INFEASIBLE " + ",".join(record.violations))
    rerun = " (re-run: its first worker or node died)" if res.extra.get("attempt") else ""
    return f"{head} ok {' '.join(parts)} on {res.node or '?'}{rerun}"


class SearchProgress:
    """Reports a running search; use as a context manager around the strategy run."""

    def __init__(
        self, broker: SearchBroker, objective: str, concurrency: int, quiet: bool,
        console: Console,
    ) -> None:
        self.broker = broker
        self.objective = objective
        self.concurrency = concurrency
        self.console = console
        self.live_mode = not quiet and console.is_terminal
        self._live: Live | None = None
        self._session_start = len(broker.records)
        broker.listeners.append(self.on_record)

    def __enter__(self) -> None:
        if self.live_mode:
            self._live = Live(
                get_renderable=self.render, console=self.console, refresh_per_second=2,
                transient=True,
            )
            self._live.start()

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def on_record(self, record: TrialRecord) -> None:
        if not record.trained:  # screened out before training: counted in the status line
            return
        line = trial_line(record, self.objective, self.broker.budget.max_trials,
                          trained_count(self.broker.records))
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def eta_s(self) -> float | None:
        """Remaining search time: trials left x mean trial time / concurrency, capped by the
        time budget. A multi-fidelity trial's time is its rungs' (a paused trial's waiting
        is not), so trials to be promoted later are not foreseen: a lower bound then."""
        b = self.broker
        new = [r for r in b.records[self._session_start:] if r.trained]
        by_count = None
        if b.budget.max_trials is not None and new:
            mean = sum(_busy_s(r) for r in new) / len(new)
            left = max(0, b.budget.max_trials - trained_count(b.records))
            by_count = left * mean / max(1, min(self.concurrency, left or 1))
        left_s = b.seconds_left()
        options = [v for v in (by_count, left_s) if v is not None]
        return min(options) if options else None

    def render(self) -> Group:
        b = self.broker
        records = b.records
        failed = sum(not r.ok and not r.stopped and r.trained for r in records)
        stopped = sum(r.stopped for r in records)  # multi-fidelity: below the top rung
        promoted = sum(len(r.result.extra.get("rungs", ())) > 1 for r in records)
        screened = len(records) - trained_count(records)
        total = b.budget.max_trials
        status = Text.assemble(
            ("search ", "bold"),
            f"{trained_count(records)}/{total if total is not None else '?'} done  ",
            f"{b.pool.running} running  ",
            (f"{failed} failed  ", "red" if failed else ""),
            (f"{stopped} stopped  {promoted} promoted  " if b.rungs is not None else ""),
            (f"{screened} over limit (not trained)  " if screened else ""),
            f"elapsed {_fmt_s(b.elapsed())}  ETA {_fmt_s(self.eta_s())}",
        )
        top = best(records)
        if top is None:
            best_line = Text("best: none yet", style="dim")
        else:
            value = float(top.result.metrics[self.objective])
            best_line = Text.assemble(
                ("best ", "bold green"),
                f"{self.objective}={value:.4f} (trial {top.trial_id}): ",
                arch_summary(top.result.arch),
            )
        return Group(status, best_line)


def log_line(console: Console, text: str) -> None:
    """A timestamped status line (works in live and quiet mode)."""
    console.print(f"{time.strftime('%H:%M:%S')} {text}", markup=False, highlight=False, soft_wrap=True)

