"""What a journal holds, as attrs records (stored as JSON through the one converter).

A journal is one run: the run itself (:class:`RunRecord`), the servers it covers in order
(:class:`ServerRecord`), the distinct requests they are rebuilt with, secrets removed
(:class:`RequestRecord`), and an append-only list of :class:`Event` s: the audit record.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

__all__ = [
    "BEGAN",
    "CHECKPOINT",
    "ENDED",
    "FORWARD",
    "PHASE",
    "RESTARTED",
    "ROLLBACK",
    "BeforeRecord",
    "EventKind",
    "Event",
    "JournalState",
    "OutcomeRecord",
    "Owner",
    "RequestRecord",
    "RolloutRecord",
    "RunRecord",
    "ServerRecord",
    "SCHEMA_VERSION",
]

#: Bumped when the stored layout changes; a journal of another version is refused.
SCHEMA_VERSION = 1


class EventKind(enum.Enum):
    #: About to POST (attempt n): written, durably, before the request leaves.
    INTENT = "intent"
    #: The service accepted attempt n (its request id and the service's time), or
    #: reconciliation proved that it (or an earlier attempt) was carried out.
    ACCEPTED = "accepted"
    #: Attempt n proven not carried out: never sent (the connection failed before any byte
    #: left) or refused by the service with a 4xx answer.
    NOT_SENT = "not_sent"
    #: Attempt n got no clear answer (lost, 5xx): it stays in doubt until reconciled.
    UNCLEAR = "unclear"
    #: How the server ended. At most one per server and run.
    OUTCOME = "outcome"
    #: A change of the rollout's own state (see :class:`RolloutRecord`).
    ROLLOUT = "rollout"


@attrs.frozen
class RunRecord:
    """The run a journal belongs to. ``salt`` keys the request fingerprints (hex)."""

    run_id: str
    created_at: datetime
    salt: str
    endpoint: str | None = None
    library_version: str = ""
    concurrency: int = 50
    timeout: float | None = None
    #: The rollout policy's settings, its callables only as set or not (None: a plain bulk run).
    policy: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION


@attrs.frozen
class RequestRecord:
    """One distinct request of the run: its wire body without secrets, and its fingerprint.

    ``secret_fields`` names the wire fields that were removed (``adminPass``, ``user_data``):
    a resume has to be given them again, and they must give the same fingerprint.
    """

    fingerprint: str
    body: dict[str, Any]
    secret_fields: tuple[str, ...] = ()


@attrs.frozen
class ServerRecord:
    position: int
    server_id: str
    fingerprint: str


@attrs.frozen
class OutcomeRecord:
    """An outcome as stored: enough to report it again without asking the service."""

    kind: str
    ok: bool
    submitted: bool
    error_type: str | None = None
    message: str | None = None
    http_status: int | None = None
    code: str | None = None
    request_id: str | None = None
    status: str | None = None
    image_id: str | None = None
    updated: datetime | None = None
    #: Why a server was skipped, found unhealthy or rolled back (the outcome's ``reason``).
    reason: str | None = None


#: What a :class:`RolloutRecord` says changed.
BEGAN = "began"  # the rollout's servers are chosen (after skip-matching): its first record
PHASE = "phase"  # its phase changed (canary passed, paused, stopped, rolling back, done)
CHECKPOINT = "checkpoint"  # a checkpoint was answered: ``checkpoint`` and ``go_on``
RESTARTED = "restarted"  # a stopped rollout was continued on request (continue_stopped)
ENDED = "ended"  # the run ended: the rollout's state at its end


@attrs.frozen
class RolloutRecord:
    """A change of a rollout's state, and the state after it (a ``RolloutState`` as data).

    The decisions that cannot be made again from the servers' outcomes (a checkpoint's answer,
    a restart) are written before anything that follows them is sent.
    """

    change: str
    state: dict[str, Any] = attrs.Factory(dict)
    checkpoint: float | None = None
    go_on: bool | None = None


#: The phases a server goes through in one run: its rebuild, then maybe its rebuild back.
FORWARD = "forward"
ROLLBACK = "rollback"


@attrs.frozen
class BeforeRecord:
    """What a server showed before its rebuild: what a rollback puts back, and the audit's
    "from". Only fields a server shows and no secret (never its user_data)."""

    status: str
    image_id: str | None = None
    name: str | None = None
    metadata: dict[str, str] = attrs.Factory(dict)
    key_name: str | None = None
    description: str | None = None
    hostname: str | None = None
    access_ipv4: str | None = None
    access_ipv6: str | None = None
    #: The service's ``updated`` of that read: what a rebuild must be after to be this one's.
    updated: datetime | None = None


@attrs.frozen
class Event:
    """One line of the audit record. ``seq`` is given by the store, in the order written."""

    kind: EventKind
    server_id: str | None = None
    attempt: int = 0
    recorded_at: datetime | None = None
    #: INTENT: the service's time just before sending (the bound a rebuild must be after);
    #: ACCEPTED: the service's time of its answer (or of the rebuild it proved).
    service_time: datetime | None = None
    request_id: str | None = None
    detail: str | None = None
    outcome: OutcomeRecord | None = None
    #: INTENT: what the server was before, for rollbacks and the audit.
    before: BeforeRecord | None = None
    #: FORWARD (the run's rebuild) or ROLLBACK (its rebuild back).
    phase: str = FORWARD
    #: ROLLOUT: what changed in the rollout, and its state after.
    rollout: RolloutRecord | None = None
    seq: int = 0


@attrs.frozen
class Owner:
    """The process driving the run: the lock kept in the journal itself."""

    token: str
    pid: int
    host: str
    started_at: float
    heartbeat_at: float


@attrs.frozen
class JournalState:
    """Everything a journal holds, as read."""

    run: RunRecord
    servers: tuple[ServerRecord, ...]
    requests: dict[str, RequestRecord]
    events: tuple[Event, ...]
