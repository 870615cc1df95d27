"""Bounded bulk work: one outcome per server, whatever happens to the others.

Takes a callable that rebuilds and waits for one server, runs it for many with bounded
concurrency, and turns each server's typed error into its :class:`RebuildOutcome`. An error
that is not the library's (a bug) is not swallowed: it cancels the run and propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import anyio
import attrs

from ._errors import (
    BadRequest,
    Conflict,
    EcsError,
    InvalidRequest,
    MicroversionError,
    NotFound,
    RebuildFailed,
    RebuildOutcomeUnknown,
    RebuildTimeout,
)
from ._models import OutcomeKind, RebuildOutcome, RebuildRequest, Server

__all__ = ["BulkReport", "normalize_targets", "outcome_kind", "run_bulk"]

logger = logging.getLogger("ecs_rebuild_async")

#: Rebuild and wait for one server; ``mark_submitted(True)`` is called once its rebuild was
#: accepted (or may have been: a lost answer counts as submitted), ``mark_submitted(False)``
#: when that lost request proves not carried out and its second sending is refused.
RunOne = Callable[[str, RebuildRequest, Callable[[bool], None]], Awaitable[Server]]
OutcomeCallback = Callable[[RebuildOutcome], object]


@attrs.define
class BulkReport:
    """Live record of a bulk run, readable while it runs and after it was cancelled.

    ``submitted`` holds the servers whose rebuild the service accepted (or may have accepted,
    when the answer was lost); ``outcomes`` the finished ones, by server id.
    """

    total: int = 0
    submitted: set[str] = attrs.field(factory=set)
    outcomes: dict[str, RebuildOutcome] = attrs.field(factory=dict)

    @property
    def finished(self) -> int:
        return len(self.outcomes)

    def counts(self) -> dict[str, int]:
        """How many outcomes of each kind so far."""
        result: dict[str, int] = {}
        for outcome in self.outcomes.values():
            result[outcome.kind.value] = result.get(outcome.kind.value, 0) + 1
        return result


_KINDS: tuple[tuple[type[EcsError], OutcomeKind], ...] = (
    (RebuildFailed, OutcomeKind.FAILED),
    (RebuildTimeout, OutcomeKind.TIMED_OUT),
    (RebuildOutcomeUnknown, OutcomeKind.UNKNOWN),
    (Conflict, OutcomeKind.CONFLICT),
    (NotFound, OutcomeKind.NOT_FOUND),
    (InvalidRequest, OutcomeKind.INVALID),
    (MicroversionError, OutcomeKind.INVALID),
    (BadRequest, OutcomeKind.INVALID),
)


def outcome_kind(error: EcsError) -> OutcomeKind:
    for cls, kind in _KINDS:
        if isinstance(error, cls):
            return kind
    return OutcomeKind.ERROR


def normalize_targets(
    servers: Iterable[str | tuple[str, RebuildRequest]], request: RebuildRequest | None
) -> list[tuple[str, RebuildRequest | None]]:
    """``servers`` as (server id, request) pairs; a bare id takes ``request``."""
    targets: list[tuple[str, RebuildRequest | None]] = []
    for item in servers:
        if isinstance(item, str):
            targets.append((item, request))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            if not isinstance(item[1], RebuildRequest):
                raise InvalidRequest(f"the request for server {item[0]!r} is not a RebuildRequest")
            targets.append((item[0], item[1]))
        else:
            raise InvalidRequest(
                f"servers must be ids or (id, RebuildRequest) pairs, got {type(item).__name__}"
            )
    return targets


async def run_bulk(
    targets: Sequence[tuple[str, RebuildRequest | None]],
    run_one: RunOne,
    *,
    concurrency: int,
    report: BulkReport,
    on_outcome: OutcomeCallback | None = None,
    recorded: Mapping[str, RebuildOutcome] | None = None,
) -> list[RebuildOutcome]:
    """Run ``run_one`` for every target, at most ``concurrency`` at once; outcomes in order.

    ``recorded`` outcomes (from a journal) are reported as they are, without running.
    """
    if concurrency < 1:
        raise InvalidRequest("concurrency must be at least 1", field="concurrency")
    report.total = len(targets)
    limiter = anyio.CapacityLimiter(concurrency)
    results: list[RebuildOutcome | None] = [None] * len(targets)
    first_index: dict[str, int] = {}
    callback_errors: list[Exception] = []

    def finish(index: int, outcome: RebuildOutcome) -> None:
        results[index] = outcome
        report.outcomes.setdefault(outcome.server_id, outcome)
        if on_outcome is not None and not callback_errors:
            try:
                on_outcome(outcome)
            except Exception as exc:
                # The caller's own bug: stop the run and raise it as it is, once.
                callback_errors.append(exc)
                group.cancel_scope.cancel()

    async def one(index: int, server_id: str, request: RebuildRequest | None) -> None:
        def mark_submitted(submitted: bool) -> None:
            if submitted:
                report.submitted.add(server_id)
            else:
                report.submitted.discard(server_id)

        async with limiter:
            try:
                if request is None:
                    raise InvalidRequest(f"no RebuildRequest given for server {server_id!r}")
                server = await run_one(server_id, request, mark_submitted)
            except EcsError as error:
                finish(
                    index,
                    RebuildOutcome(
                        server_id=server_id,
                        ok=False,
                        kind=outcome_kind(error),
                        server=getattr(error, "server", None),
                        error=error,
                        submitted=server_id in report.submitted,
                    ),
                )
                return
        finish(
            index,
            RebuildOutcome(
                server_id=server_id, ok=True, kind=OutcomeKind.OK, server=server, submitted=True
            ),
        )

    try:
        async with anyio.create_task_group() as group:
            for index, (server_id, request) in enumerate(targets):
                if server_id in first_index:
                    # The same server twice would race its own rebuild: one outcome, no second POST.
                    error = InvalidRequest(f"server {server_id!r} is listed more than once")
                    finish(
                        index, RebuildOutcome(server_id, False, OutcomeKind.INVALID, error=error)
                    )
                    continue
                first_index[server_id] = index
                if recorded is not None and server_id in recorded:
                    known = recorded[server_id]
                    if known.submitted:
                        report.submitted.add(server_id)
                    finish(index, known)
                    continue
                group.start_soon(one, index, server_id, request)
    except anyio.get_cancelled_exc_class():
        logger.warning(
            "bulk rebuild cancelled: %d of %d servers had their rebuild submitted",
            len(report.submitted),
            len(targets),
        )
        raise
    if callback_errors:
        raise callback_errors[0]
    return [outcome for outcome in results if outcome is not None]
