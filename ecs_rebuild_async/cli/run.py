"""Running a bulk rebuild for the command line: live progress, outcomes as they complete,
a clean stop on Ctrl-C, and the summary."""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import attrs

from .._bulk import BulkReport, outcome_kind
from .._client import AsyncEcsClient
from .._errors import EcsError, RebuildOutcomeUnknown
from .._models import OutcomeKind, RebuildOutcome, RebuildRequest
from .output import LineSink, OutcomeWriter, plain_summary

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["BulkOptions", "run_bulk_command", "run_interruptibly"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


async def _cancel_on_sigint(scope: anyio.CancelScope, interrupted: list[bool]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            interrupted.append(True)
            scope.cancel()
            return


async def run_interruptibly(
    work: Callable[[], Awaitable[object]],
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
) -> bool:
    """Run ``work`` (and ``background`` beside it until it ends); False if Ctrl-C stopped it."""
    interrupted: list[bool] = []
    async with anyio.create_task_group() as group:
        if threading.current_thread() is threading.main_thread():
            group.start_soon(_cancel_on_sigint, group.cancel_scope, interrupted)
        for task in background:
            group.start_soon(task)
        await work()
        group.cancel_scope.cancel()
    return not interrupted


async def _submit_only(
    client: AsyncEcsClient,
    server_ids: Sequence[str],
    request: RebuildRequest,
    *,
    concurrency: int,
    report: BulkReport,
    on_outcome: Callable[[RebuildOutcome], object] | None,
) -> None:
    """Send every rebuild (at most ``concurrency`` at once) without waiting for completion."""
    limiter = anyio.CapacityLimiter(concurrency)
    report.total = len(server_ids)

    async def one(server_id: str) -> None:
        async with limiter:
            # Once sent, the answer is awaited even on Ctrl-C: the report must say what was sent.
            with anyio.CancelScope(shield=True):
                try:
                    server = await client.rebuild(server_id, request)
                except EcsError as error:
                    sent = isinstance(error, RebuildOutcomeUnknown)
                    if sent:
                        report.submitted.add(server_id)
                    outcome = RebuildOutcome(
                        server_id, False, outcome_kind(error), error=error, submitted=sent
                    )
                else:
                    report.submitted.add(server_id)
                    outcome = RebuildOutcome(
                        server_id, True, OutcomeKind.OK, server=server, submitted=True
                    )
        report.outcomes[server_id] = outcome
        if on_outcome is not None:
            on_outcome(outcome)

    async with anyio.create_task_group() as group:
        for server_id in server_ids:
            group.start_soon(one, server_id)


@attrs.frozen(kw_only=True)
class BulkOptions:
    concurrency: int
    timeout: float | None
    wait: bool
    as_json: bool
    label: str
    write_outcomes: bool = True
    #: Record the run in this journal file (and continue what it records).
    journal: str | None = None
    #: Resume the journal's run with these secrets given again (None: not a resume).
    resume_secrets: dict[str, Any] | None = None


def _report_interrupt(
    report: BulkReport, server_ids: Sequence[str], stdout: TextIO, stderr: TextIO, as_json: bool
) -> None:
    unfinished = [s for s in server_ids if s in report.submitted and s not in report.outcomes]
    stderr.write(
        f"interrupted: {len(report.submitted)} of {report.total} rebuilds had been submitted, "
        f"{report.finished} finished\n"
    )
    if unfinished:
        stderr.write("submitted, not finished:\n" + "".join(f"  {s}\n" for s in unfinished))
    if as_json:
        writer = OutcomeWriter(stdout, as_json=True)
        for server_id in unfinished:
            writer(RebuildOutcome(server_id, False, OutcomeKind.CANCELLED, submitted=True))


async def run_bulk_command(
    client: AsyncEcsClient,
    server_ids: Sequence[str],
    request: RebuildRequest | None,
    options: BulkOptions,
    *,
    stdout: TextIO,
    stderr: TextIO,
    console: Console | None,
    report: BulkReport | None = None,
) -> int:
    """Rebuild the servers, writing each outcome as it completes; the exit status.

    ``report``, when given, is filled with the outcomes for the caller to read afterwards.
    """
    if report is None:
        report = BulkReport()
    report.total = len(server_ids)
    writer = OutcomeWriter(
        _results_stream(stdout, console), as_json=options.as_json, submit_only=not options.wait
    )
    on_outcome = writer if options.write_outcomes else None

    async def work() -> None:
        if options.resume_secrets is not None and options.journal is not None:
            await client.resume(
                options.journal,
                concurrency=options.concurrency,
                timeout=options.timeout,
                on_outcome=on_outcome,
                report=report,
                **options.resume_secrets,
            )
        elif options.wait:
            assert request is not None
            await client.rebuild_many(
                server_ids,
                request,
                concurrency=options.concurrency,
                timeout=options.timeout,
                on_outcome=on_outcome,
                report=report,
                journal=options.journal,
            )
        else:
            assert request is not None
            await _submit_only(
                client,
                server_ids,
                request,
                concurrency=options.concurrency,
                report=report,
                on_outcome=on_outcome,
            )

    started = anyio.current_time()
    finished = await _run_with_display(work, report, console, options.label)
    _summarize(report, anyio.current_time() - started, client.stats, stderr, console)
    if not finished:
        _report_interrupt(report, server_ids, stdout, stderr, options.as_json)
        return EXIT_INTERRUPTED
    return EXIT_OK if all(o.ok for o in report.outcomes.values()) else EXIT_FAILED


async def _run_with_display(
    work: Callable[[], Awaitable[object]],
    report: BulkReport,
    console: Console | None,
    label: str,
) -> bool:
    if console is None:
        return await run_interruptibly(work)
    from .display import LiveProgress

    with LiveProgress(console, report, total=report.total, label=label) as live:
        return await run_interruptibly(work, [live.keep_updating])


def _summarize(
    report: BulkReport,
    elapsed: float,
    stats: dict[str, int],
    stderr: TextIO,
    console: Console | None,
) -> None:
    if console is None:
        stderr.write(plain_summary(report, elapsed, stats) + "\n")
        return
    from .display import print_summary

    print_summary(console, report, elapsed, stats)


class _ConsoleLines:
    """A text stream that prints through a live console, above its progress display."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def write(self, text: str) -> int:
        self._console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        return None


def _results_stream(stdout: TextIO, console: Console | None) -> LineSink:
    """stdout; or, when stdout and the live display share a terminal, the display's console."""
    if console is not None and console.is_terminal and stdout.isatty():
        return _ConsoleLines(console)
    return stdout
