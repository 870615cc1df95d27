"""Sending a rebuild at most once, and reconciling when its answer is lost.

A POST whose answer was lost (a read timeout, a reset after sending), or that got a 5xx, may
already have been carried out. It is never blindly sent again: the server's state and its
instance actions are read first, and judged against the read taken before the POST (the rules
are pure: ``_lifecycle.judge_actions``). Accepted: wait as usual. Proven not carried out: send
once more. Cannot tell: :class:`RebuildOutcomeUnknown` with the evidence, rather than a second
rebuild, and never an earlier rebuild taken for this one.

Takes callables, not the client (see ``Operations``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import anyio
import attrs

from ._errors import EcsError, RebuildOutcomeUnknown, ServerError, TransportError
from ._lifecycle import ActionFinding, judge_actions, shows_rebuild
from ._models import RebuildRequest, Server
from ._serde import parse_timestamp

__all__ = ["Accepted", "Operations", "reconcile_in_doubt", "submit_rebuild"]

logger = logging.getLogger("ecs_rebuild_async")


@attrs.frozen
class Operations:
    """The requests the rebuild flow needs, bound to a session by the client."""

    #: POST the rebuild: (202 body's Server or None when unreadable, the service's Date).
    post_rebuild: Callable[[str, RebuildRequest], Awaitable[tuple[Server | None, datetime | None]]]
    #: GET one server: (Server or None if 404, the service's Date of the answer).
    get_server: Callable[[str], Awaitable[tuple[Server | None, datetime | None]]]
    #: GET the server's instance actions (raw dicts), newest first as Nova lists them.
    list_actions: Callable[[str], Awaitable[Sequence[Mapping[str, Any]]]]


@attrs.frozen
class Accepted:
    """A rebuild the service accepted: its 202 body (when it arrived) and the service time."""

    server: Server | None
    accepted_at: datetime | None


def _action_records(actions: Sequence[Mapping[str, Any]]) -> list[tuple[str, datetime | None]]:
    """(action name, start time or None when unreadable) of each record that is a mapping."""
    records: list[tuple[str, datetime | None]] = []
    for action in actions:
        if not isinstance(action, Mapping):
            continue
        try:
            started: datetime | None = parse_timestamp(action.get("start_time"))
        except (TypeError, ValueError):
            started = None
        records.append((str(action.get("action")), started))
    return records


async def submit_rebuild(
    ops: Operations,
    server_id: str,
    request: RebuildRequest,
    *,
    before: Server | None,
    settle: float = 1.0,
    on_submitted: Callable[[bool], object] | None = None,
) -> Accepted:
    """POST the rebuild once; on a lost answer or a 5xx, reconcile before anything else.

    ``before`` is the server as read before the POST: the bound that tells this request's
    rebuild from an earlier one (without it, a rebuild listed in the instance actions cannot be
    told apart and the outcome is unknown). ``on_submitted`` is called with True as soon as the
    service accepted the request, or may have (its answer was lost, or was a 5xx), and with
    False if that turns out not to be so.
    """

    def submitted(value: bool) -> None:
        if on_submitted is not None:
            on_submitted(value)

    try:
        server, accepted_at = await ops.post_rebuild(server_id, request)
    except (TransportError, ServerError) as exc:
        if isinstance(exc, TransportError) and not exc.maybe_sent:
            raise
        cause: EcsError = exc
    else:
        submitted(True)
        return Accepted(server=server, accepted_at=accepted_at)
    # The answer was lost, or was a 5xx, which can come after the service recorded the rebuild
    # (Nova answers 500 to a race it did not expect): it counts as submitted until proven
    # otherwise, and nothing else happens before finding out.
    submitted(True)
    logger.warning("the rebuild of %s got no clear answer (%s); reconciling", server_id, cause)
    try:
        accepted = await _reconcile(
            ops, server_id, request, before=before, cause=cause, settle=settle
        )
    except _ResendRefused as refused:
        submitted(False)
        raise refused.error from None
    submitted(True)
    return accepted


async def reconcile_in_doubt(
    ops: Operations,
    server_id: str,
    request: RebuildRequest,
    *,
    before: Server | None,
    cause: EcsError,
    settle: float = 1.0,
) -> Accepted:
    """A rebuild that may have been sent earlier, with nothing known of its answer, as after the
    death of the process that sent it: the same rules as a lost answer, judged against
    ``before`` (the server as read before that request). Accepted when the server shows it;
    sent once more only when proven not carried out; RebuildOutcomeUnknown when that cannot be
    told (always, without a read from before: an old rebuild would pass for this one)."""
    logger.warning("the rebuild of %s may have been sent (%s); reconciling", server_id, cause)
    if before is None:
        evidence = [f"{cause}", "no read of the server from before the request bounds it"]
        raise _unknown(server_id, None, evidence, "it was not sent again")
    try:
        return await _reconcile(ops, server_id, request, before=before, cause=cause, settle=settle)
    except _ResendRefused as refused:
        raise refused.error from None


class _ResendRefused(Exception):
    """The first request proved not carried out, and the second was refused: ``error`` says why."""

    def __init__(self, error: EcsError) -> None:
        super().__init__(str(error))
        self.error = error


class _Finding(enum.Enum):
    NOT_CARRIED_OUT = "not carried out"
    CANNOT_TELL = "cannot tell"


async def _investigate(
    ops: Operations,
    server_id: str,
    request: RebuildRequest,
    *,
    before: Server | None,
    settle: float,
    evidence: list[str],
) -> tuple[Accepted | _Finding, Server | None]:
    """Look twice at the server and its instance actions: was the rebuild carried out?"""
    last: Server | None = None
    before_image = before.image_id if before is not None else None
    for look in range(2):
        if look:
            # The request may still be in the service's hands: give it time, then look again.
            await anyio.sleep(settle)
        try:
            server, _ = await ops.get_server(server_id)
        except EcsError as exc:
            evidence.append(f"reading the server failed: {exc}")
            return _Finding.CANNOT_TELL, last
        if server is None:
            evidence.append("the server is not found")
            return _Finding.CANNOT_TELL, last
        last = server
        if shows_rebuild(server) and (before is None or not shows_rebuild(before)):
            evidence.append(f"the server shows {server.status}/{server.task_state}")
            return Accepted(server=server, accepted_at=None), last
        shown = server.image_id
        if shown and before_image and shown != before_image and shown == request.image_ref:
            # Nova saves the new image before it answers: no read from before shows it.
            evidence.append(f"the server shows the requested image {shown}")
            return Accepted(server=server, accepted_at=None), last
        try:
            actions = await ops.list_actions(server_id)
        except EcsError as exc:
            evidence.append(f"listing the instance actions failed: {exc}")
            return _Finding.CANNOT_TELL, last
        finding, started = judge_actions(
            _action_records(actions), before.updated if before is not None else None
        )
        if finding is ActionFinding.OURS:
            assert started is not None  # judge_actions gives the start of what it found
            evidence.append(f"instance actions show a rebuild started at {started.isoformat()}")
            return Accepted(server=server, accepted_at=started), last
        if finding is ActionFinding.AMBIGUOUS:
            evidence.append(
                "instance actions list a rebuild that cannot be told apart from an earlier one"
                " (no read from before the request bounds it)"
            )
            return _Finding.CANNOT_TELL, last
        evidence.append(
            f"look {look + 1}: the server shows {server.status}/{server.task_state} and its "
            "instance actions show no rebuild since the read before the request"
        )
    # Twice, a settled server and no rebuild action since the read before: not carried out.
    return _Finding.NOT_CARRIED_OUT, last


async def _reconcile(
    ops: Operations,
    server_id: str,
    request: RebuildRequest,
    *,
    before: Server | None,
    cause: EcsError,
    settle: float,
) -> Accepted:
    evidence: list[str] = [f"the rebuild request failed without a clear answer: {cause}"]
    found, last = await _investigate(
        ops, server_id, request, before=before, settle=settle, evidence=evidence
    )
    if isinstance(found, Accepted):
        return found
    if found is _Finding.CANNOT_TELL:
        raise _unknown(server_id, last, evidence, "it was not sent again")
    logger.warning("the rebuild of %s was not carried out; sending it once more", server_id)
    try:
        server, accepted_at = await ops.post_rebuild(server_id, request)
    except (TransportError, ServerError) as exc:
        if isinstance(exc, TransportError) and not exc.maybe_sent:
            raise _ResendRefused(exc) from None
        # As uncertain as the first: look again, and never send a third time.
        evidence.append(f"the second request failed the same way: {exc}")
        found, last = await _investigate(
            ops, server_id, request, before=before, settle=settle, evidence=evidence
        )
        if isinstance(found, Accepted):
            return found
        if found is _Finding.NOT_CARRIED_OUT:
            raise _ResendRefused(exc) from None
        raise _unknown(server_id, last, evidence, "it was not sent a third time") from None
    except EcsError as exc:
        raise _ResendRefused(exc) from None
    return Accepted(server=server, accepted_at=accepted_at)


def _unknown(
    server_id: str, last: Server | None, evidence: list[str], what: str
) -> RebuildOutcomeUnknown:
    return RebuildOutcomeUnknown(
        f"cannot tell whether server {server_id} is being rebuilt; {what}",
        server=last,
        evidence=tuple(evidence),
    )
