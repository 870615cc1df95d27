"""Running a bulk rebuild for the command line: live progress, outcomes as they complete,
a clean stop on Ctrl-C, and the summary."""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import attrs

from .._bulk import BulkReport, outcome_kind
from .._client import AsyncEcsClient
from .._errors import EcsError, InvalidRequest, RebuildOutcomeUnknown, TransportError
from .._models import OutcomeKind, RebuildEvent, RebuildOutcome, RebuildRequest, Server
from .._rollout import RolloutPolicy
from .output import LineSink, OutcomeWriter, plain_summary
from .parse import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT_CLOSED,
    EXIT_UNREACHABLE,
)
from .rollout import describe_phase, stopped_line, write_phase_changes

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "BulkOptions",
    "EventPrinter",
    "Stopper",
    "exit_status",
    "run_bulk_command",
    "run_interruptibly",
]


class Stopper:
    """Ends a run early and remembers why: Ctrl-C, or standard output closed under it."""

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()


async def _cancel_on_sigint(stopper: Stopper) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            stopper.stop("interrupted")
            return


async def run_interruptibly(
    work: Callable[[], Awaitable[object]],
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    stopper: Stopper | None = None,
) -> bool:
    """Run ``work`` (and ``background`` beside it until it ends); False if it was stopped
    (Ctrl-C, or ``stopper.stop()``)."""
    stopper = stopper or Stopper()
    async with anyio.create_task_group() as group:
        stopper.scope = group.cancel_scope
        if stopper.reason is not None:
            group.cancel_scope.cancel()
        if threading.current_thread() is threading.main_thread():
            group.start_soon(_cancel_on_sigint, stopper)
        for task in background:
            group.start_soon(task)
        await work()
        group.cancel_scope.cancel()
    return stopper.reason is None


async def _submit_only(
    client: AsyncEcsClient,
    server_ids: Sequence[str],
    request: RebuildRequest | None,
    *,
    concurrency: int,
    report: BulkReport,
    on_outcome: Callable[[RebuildOutcome], object] | None,
    requests: Mapping[str, RebuildRequest] | None = None,
) -> None:
    """Send every rebuild (at most ``concurrency`` at once) without waiting for completion."""
    limiter = anyio.CapacityLimiter(concurrency)
    report.total = len(server_ids)

    async def one(server_id: str) -> None:
        async with limiter:
            # Once sent, the answer is awaited even on Ctrl-C: the report must say what was sent.
            with anyio.CancelScope(shield=True):
                try:
                    one_request = requests[server_id] if requests else request
                    if one_request is None:
                        raise InvalidRequest(f"no rebuild request for server {server_id}")
                    server = await client.rebuild(server_id, one_request)
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
    fmt: str | None = None
    columns: tuple[str, ...] | None = None
    #: -v: each server's changes of state, on standard error
    show_events: bool = False
    #: How the fleet is rolled (--canary, --max-failures...); None: every server, as it comes
    policy: RolloutPolicy | None = None
    #: Record the run in this journal file (and continue what it records).
    journal: str | None = None
    #: Resume the journal's run with these secrets given again (None: not a resume).
    resume_secrets: dict[str, Any] | None = None
    #: Resuming: start the servers a rollout's stop left unstarted.
    continue_stopped: bool = False


def _report_interrupt(
    report: BulkReport,
    server_ids: Sequence[str],
    writer: OutcomeWriter,
    stderr: TextIO,
    reason: str,
) -> None:
    unfinished = [s for s in server_ids if s in report.submitted and s not in report.outcomes]
    stderr.write(
        f"{reason}: {len(report.submitted)} of {report.total} rebuilds had been submitted, "
        f"{report.finished} finished\n"
    )
    if unfinished:
        stderr.write("submitted, not finished:\n" + "".join(f"  {s}\n" for s in unfinished))
    for server_id in unfinished:  # nothing is written once the output is closed
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
    before: Mapping[str, Server] | None = None,
    requests: Mapping[str, RebuildRequest] | None = None,
) -> int:
    """Rebuild the servers, writing each outcome as it completes; the exit status.

    ``report``, when given, is filled with the outcomes for the caller to read afterwards.
    ``before`` holds the servers as read before the run (names, images before, the state each
    wait starts from); ``requests`` a request per server, in place of ``request``.
    """
    if report is None:
        report = BulkReport()
    report.total = len(server_ids)
    stopper = Stopper()
    before = before or {}
    writer = OutcomeWriter(
        _results_stream(stdout, console),
        as_json=options.as_json,
        fmt=options.fmt,
        columns=options.columns,
        submit_only=not options.wait,
        before=before,
        id_width=max((len(s) for s in server_ids), default=36),
        on_closed=lambda: stopper.stop("output closed"),
    )
    on_outcome = writer if options.write_outcomes else None
    show = EventPrinter(stderr, console, before) if options.show_events else None

    def on_event(event: RebuildEvent) -> None:
        writer.on_event(event)
        if show is not None:
            show(event)

    targets: list[Any] = (
        [(sid, requests[sid]) for sid in server_ids] if requests else list(server_ids)
    )

    async def work() -> None:
        if options.resume_secrets is not None and options.journal is not None:
            await client.resume(
                options.journal,
                policy=options.policy,
                continue_stopped=options.continue_stopped,
                concurrency=options.concurrency,
                timeout=options.timeout,
                on_outcome=on_outcome,
                on_event=on_event,
                report=report,
                **options.resume_secrets,
            )
        elif options.wait:
            await client.rebuild_many(
                targets,
                None if requests else request,
                concurrency=options.concurrency,
                timeout=options.timeout,
                on_outcome=on_outcome,
                on_event=on_event,
                report=report,
                before=before,
                policy=options.policy,
                journal=options.journal,
            )
        else:
            await _submit_only(
                client,
                server_ids,
                request,
                concurrency=options.concurrency,
                report=report,
                on_outcome=on_outcome,
                requests=requests,
            )

    started = anyio.current_time()
    finished = await _run_with_display(
        work, report, console, options.label, stopper, stderr, rollout=options.policy is not None
    )
    _summarize(report, anyio.current_time() - started, client.stats, stderr, console)
    stopped = stopped_line(report)
    if stopped is not None:
        stderr.write(stopped + "\n")
    if not finished:
        reason = stopper.reason or "interrupted"
        _report_interrupt(report, server_ids, writer, stderr, reason)
        return EXIT_OUTPUT_CLOSED if reason == "output closed" else EXIT_INTERRUPTED
    return exit_status(report)


def exit_status(report: BulkReport) -> int:
    """0 when every server is ok; 3 when nothing could be sent for want of a connection
    (refused, DNS, TLS: no request reached the service); 1 otherwise."""
    outcomes = list(report.outcomes.values())
    if all(outcome.ok for outcome in outcomes):
        return EXIT_OK
    unreachable = [
        o for o in outcomes if isinstance(o.error, TransportError) and not o.error.maybe_sent
    ]
    if not report.submitted and outcomes and len(unreachable) == len(outcomes):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


class EventPrinter:
    """-v: one line per change of state that the waits see, on standard error."""

    def __init__(
        self, stderr: TextIO, console: Console | None, before: Mapping[str, Server]
    ) -> None:
        self._stderr = stderr
        self._console = console
        self._before = before
        self._last: dict[str, tuple[object, ...]] = {}

    def __call__(self, event: RebuildEvent) -> None:
        seen = (event.phase, event.status, event.task_state)
        if self._last.get(event.server_id) == seen:
            return
        self._last[event.server_id] = seen
        server = self._before.get(event.server_id)
        who = event.server_id if server is None or not server.name else server.name
        state = f"{event.status or '-'}/{event.task_state or '-'}"
        line = f"{who}: {event.phase} {state}"
        if event.progress is not None:
            line += f" {event.progress}%"
        if self._console is not None:
            self._console.print(line, markup=False, highlight=False)
        else:
            self._stderr.write(line + "\n")


async def _run_with_display(
    work: Callable[[], Awaitable[object]],
    report: BulkReport,
    console: Console | None,
    label: str,
    stopper: Stopper,
    stderr: TextIO,
    *,
    rollout: bool,
) -> bool:
    # Every bulk run keeps a rollout state, but only a run with rollout options has phases
    # worth showing: a plain run says "rebuilding", never "rolling".
    if console is None:
        # No live display: a rollout's phase changes are written as lines instead.
        phases = [lambda: write_phase_changes(report, stderr)] if rollout else []
        return await run_interruptibly(work, phases, stopper=stopper)
    from .display import LiveProgress

    describe = describe_phase if rollout else None
    with LiveProgress(console, report, total=report.total, label=label, describe=describe) as live:
        return await run_interruptibly(work, [live.keep_updating], stopper=stopper)


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
