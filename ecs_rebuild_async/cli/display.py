"""The live progress display and the summary tables, drawn with rich (the ``cli`` extra).

rich is imported here only, and only when a display is made: the library and the
machine-readable modes of the command line run without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

import anyio

from .._bulk import BulkReport
from .config import UsageError
from .output import kinds_by_verdict, tally

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["RICH_MISSING", "LiveProgress", "make_console", "print_summary"]

RICH_MISSING = "this needs rich: pip install 'ecs-rebuild-async[cli]'"


def make_console(stream: TextIO) -> Console:
    """A rich console on ``stream``; a one-line UsageError when rich is not installed."""
    try:
        from rich.console import Console
    except ImportError:
        raise UsageError(RICH_MISSING) from None
    return Console(file=stream, highlight=False)


class LiveProgress:
    """A progress bar with ok / failed / running counts, redrawn from a BulkReport."""

    def __init__(
        self,
        console: Console,
        report: BulkReport,
        *,
        total: int,
        label: str,
        describe: Callable[[BulkReport, str], str] | None = None,
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._report = report
        self._label = label
        # What the label says as the run goes (a rollout's phase and budget), if given.
        self._describe = describe
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} ok"),
            TextColumn("[red]{task.fields[not_ok]} not ok"),
            TextColumn("[yellow]{task.fields[running]} running"),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(label, total=total, ok=0, not_ok=0, running=0)

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.update()
        self._progress.stop()

    def update(self) -> None:
        counts = tally(self._report)
        self._progress.update(
            self._task,
            description=self._label
            if self._describe is None
            else self._describe(self._report, self._label),
            completed=self._report.finished,
            ok=counts["ok"],
            not_ok=counts["not_ok"],
            running=counts["running"],
        )
        self._progress.refresh()

    async def keep_updating(self, interval: float = 0.1) -> None:
        """Redraw every ``interval`` seconds until cancelled."""
        while True:
            self.update()
            await anyio.sleep(interval)


def _outcome_table(report: BulkReport, elapsed: float) -> Table:
    from rich.table import Table

    table = Table(title="Outcomes", caption=f"time taken: {elapsed:.1f} s")
    table.add_column("outcome")
    table.add_column("servers", justify="right")
    # The same ok / not ok counts as the progress line, each followed by its outcomes by kind
    # (rows that add up to it: a server skipped as already matching is under ok).
    counted = tally(report)
    for label, count, kinds in zip(
        ("ok", "not ok"), (counted["ok"], counted["not_ok"]), kinds_by_verdict(report), strict=True
    ):
        table.add_row(label, str(count))
        for kind, number in kinds.items():
            table.add_row(f"  {kind.replace('_', ' ')}", str(number), style="dim")
    not_finished = report.total - report.finished
    if not_finished:
        table.add_row("not finished", str(not_finished))
    table.add_row("total", str(report.total), style="bold")
    return table


def _requests_table(stats: Mapping[str, int]) -> Table:
    from rich.table import Table

    table = Table(title="Requests sent")
    table.add_column("request")
    table.add_column("count", justify="right")
    for kind, count in sorted(stats.items()):
        if kind[:1].isupper():  # "GET list", "POST action", ...: the HTTP requests
            table.add_row(kind, str(count))
    for kind in ("poll_ticks", "rate_limited"):
        table.add_row(kind.replace("_", " "), str(stats.get(kind, 0)), style="dim")
    return table


def print_summary(
    console: Console, report: BulkReport, elapsed: float, stats: Mapping[str, int]
) -> None:
    """How many ok / failed / timed out, the time taken, and the requests sent by kind."""
    console.print(_outcome_table(report, elapsed))
    console.print(_requests_table(stats))
