"""Sending a rebuild at most once, and reconciling when its answer is lost.

A POST whose answer was lost (a read timeout, a reset after sending), or that got a 5xx, may
already have been carried out. It is never blindly sent again: the server's state and its
instance actions are read first. Accepted: wait as usual. Proven not carried out: send once
more. Cannot tell: :class:`RebuildOutcomeUnknown` with the evidence, rather than a second
rebuild.

Takes callables, not the client (see ``Operations``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
import attrs

from . import _telemetry
from ._errors import EcsError, RebuildOutcomeUnknown, ServerError, TransportError
from ._lifecycle import shows_rebuild
from ._models import RebuildRequest, Server
from ._serde import parse_timestamp

__all__ = ["Accepted", "Operations", "submit_rebuild"]

logger = logging.getLogger("ecs_rebuild_async")

# Clocks differ and Nova's times have one-second precision: compare with this slack.
_CLOCK_SLACK = timedelta(seconds=2)


@attrs.frozen
class Operations:
    """The requests the rebuild flow needs, bound to a session by the client."""

    #: POST the rebuild: (202 body's Server, the service's Date of the answer).
    post_rebuild: Callable[[str, RebuildRequest], Awaitable[tuple[Server, datetime | None]]]
    #: GET one server: (Server or None if 404, the service's Date of the answer).
    get_server: Callable[[str], Awaitable[tuple[Server | None, datetime | None]]]
    #: GET the server's instance actions (raw dicts), newest first as Nova lists them.
    list_actions: Callable[[str], Awaitable[Sequence[Mapping[str, Any]]]]


@attrs.frozen
class Accepted:
    """A rebuild the service accepted: its 202 body (when it arrived) and the service time."""

    server: Server | None
    accepted_at: datetime | None


def _rebuild_since(actions: Sequence[Mapping[str, Any]], since: datetime) -> datetime | None:
    """The start of a rebuild action at or after ``since`` (with clock slack), if any."""
    for action in actions:
        if not isinstance(action, Mapping) or action.get("action") != "rebuild":
            continue
        try:
            started = parse_timestamp(action.get("start_time"))
        except (TypeError, ValueError):
            continue
        if started >= since - _CLOCK_SLACK:
            return started
    return None


async def submit_rebuild(
    ops: Operations,
    server_id: str,
    request: RebuildRequest,
    *,
    service_now: Callable[[], datetime | None],
    settle: float = 1.0,
    on_submitted: Callable[[bool], object] | None = None,
) -> Accepted:
    """POST the rebuild once; on a lost answer, reconcile before anything else.

    ``service_now`` estimates the service's current time (from its last Date header), so that
    "after the send" is judged on the service's clock, not the local one. ``on_submitted`` is
    called with True as soon as the service accepted the request, or may have (its answer was
    lost), and with False if that turns out not to be so.
    """

    def submitted(value: bool) -> None:
        if value:
            _telemetry.phase("submitted")
        if on_submitted is not None:
            on_submitted(value)

    sent_at = service_now()
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
    # (Nova answers 500 to a race it did not expect): find out before anything else.
    if isinstance(cause, TransportError):
        submitted(True)  # it may well have been carried out: counted until proven otherwise
    logger.warning("the rebuild of %s got no clear answer (%s); reconciling", server_id, cause)
    try:
        accepted = await _reconcile(
            ops,
            server_id,
            request,
            sent_at=sent_at,
            cause=cause,
            settle=settle,
            service_now=service_now,
        )
    except _ResendRefused as refused:
        submitted(False)
        raise refused.error from None
    except RebuildOutcomeUnknown:
        submitted(True)
        raise
    submitted(True)
    _telemetry.phase("reconciled")
    return accepted


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
    *,
    sent_at: datetime | None,
    settle: float,
    evidence: list[str],
) -> tuple[Accepted | _Finding, Server | None]:
    """Look twice at the server and its instance actions: was the rebuild carried out?"""
    last: Server | None = None
    for look in range(2):
        if look:
            # The request may still be in the service's hands: give it time, then look again.
            await anyio.sleep(settle)
        try:
            server, read_at = await ops.get_server(server_id)
        except EcsError as exc:
            evidence.append(f"reading the server failed: {exc}")
            return _Finding.CANNOT_TELL, last
        if server is None:
            evidence.append("the server is not found")
            return _Finding.CANNOT_TELL, last
        last = server
        since = sent_at or (read_at - timedelta(seconds=60) if read_at else None)
        if shows_rebuild(server):
            evidence.append(f"the server shows {server.status}/{server.task_state}")
            return Accepted(server=server, accepted_at=since), last
        try:
            actions = await ops.list_actions(server_id)
        except EcsError as exc:
            evidence.append(f"listing the instance actions failed: {exc}")
            return _Finding.CANNOT_TELL, last
        if since is None:
            if any(isinstance(a, Mapping) and a.get("action") == "rebuild" for a in actions):
                # Without the service's time there is no telling whether it is this request's.
                evidence.append("instance actions list a rebuild that cannot be dated")
                return _Finding.CANNOT_TELL, last
            started = None
        else:
            started = _rebuild_since(actions, since)
        if started is not None:
            evidence.append(f"instance actions show a rebuild started at {started.isoformat()}")
            return Accepted(server=server, accepted_at=started), last
        evidence.append(
            f"look {look + 1}: the server shows {server.status}/{server.task_state} and its "
            "instance actions show no rebuild since the request"
        )
    # Twice, a settled server and no rebuild action since the send: it was not carried out.
    return _Finding.NOT_CARRIED_OUT, last


async def _reconcile(
    ops: Operations,
    server_id: str,
    request: RebuildRequest,
    *,
    sent_at: datetime | None,
    cause: EcsError,
    settle: float,
    service_now: Callable[[], datetime | None],
) -> Accepted:
    evidence: list[str] = [f"the rebuild request failed without a clear answer: {cause}"]
    found, last = await _investigate(
        ops, server_id, sent_at=sent_at, settle=settle, evidence=evidence
    )
    if isinstance(found, Accepted):
        return found
    if found is _Finding.CANNOT_TELL:
        raise _unknown(server_id, last, evidence, "it was not sent again")
    logger.warning("the rebuild of %s was not carried out; sending it once more", server_id)
    resent_at = service_now()
    try:
        server, accepted_at = await ops.post_rebuild(server_id, request)
    except (TransportError, ServerError) as exc:
        if isinstance(exc, TransportError) and not exc.maybe_sent:
            raise _ResendRefused(exc) from None
        # As uncertain as the first: look again, and never send a third time.
        evidence.append(f"the second request failed the same way: {exc}")
        found, last = await _investigate(
            ops, server_id, sent_at=resent_at, settle=settle, evidence=evidence
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
