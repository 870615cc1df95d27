"""Outcomes to and from their stored form (pure). Errors come back as the same classes, with
their message, status and request id; a server as its last seen status, image and time."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .. import _errors
from .._errors import EcsError, ServiceError
from .._models import ImageRef, OutcomeKind, RebuildOutcome, Server, ServerStatus
from .records import BeforeRecord, OutcomeRecord

__all__ = ["before_record", "outcome_from_record", "outcome_to_record", "server_from_before"]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def outcome_to_record(outcome: RebuildOutcome, *, secrets: Iterable[str] = ()) -> OutcomeRecord:
    """What is stored of an outcome; any text of ``secrets`` an error echoes is masked."""
    secrets = tuple(secrets)
    error, server = outcome.error, outcome.server
    record = OutcomeRecord(
        kind=outcome.kind.value,
        ok=outcome.ok,
        submitted=outcome.submitted,
        reason=None if outcome.reason is None else _scrub(outcome.reason, secrets),
    )
    if error is not None:
        if isinstance(error, ServiceError):
            record = attrs.evolve(
                record,
                message=error.message,
                http_status=error.status,
                code=error.code,
                request_id=error.request_id,
            )
        else:
            record = attrs.evolve(record, message=str(error))
        record = attrs.evolve(
            record, error_type=type(error).__name__, message=_scrub(record.message or "", secrets)
        )
    if server is not None:
        record = attrs.evolve(
            record, status=server.status.value, image_id=server.image_id, updated=server.updated
        )
    return record


def _error_from(record: OutcomeRecord, server: Server | None) -> EcsError | None:
    if record.error_type is None:
        return None
    message = record.message or ""
    cls = getattr(_errors, record.error_type, None)
    if not (isinstance(cls, type) and issubclass(cls, EcsError)):
        return EcsError(message)
    if issubclass(cls, ServiceError):
        return cls(
            message, status=record.http_status or 0, code=record.code, request_id=record.request_id
        )
    if record.error_type == "RebuildFailed":
        return _errors.RebuildFailed(message, server=server, fault=None)
    if record.error_type == "RebuildTimeout":
        return _errors.RebuildTimeout(message, server=server)
    if record.error_type == "RebuildOutcomeUnknown":
        return _errors.RebuildOutcomeUnknown(message, server=server, evidence=())
    try:
        return cls(message)
    except TypeError:
        return EcsError(message)


def outcome_from_record(server_id: str, record: OutcomeRecord) -> RebuildOutcome:
    server = None
    if record.status is not None:
        server = Server(
            id=server_id,
            status=ServerStatus(record.status),
            image=None if record.image_id is None else ImageRef(record.image_id),
            updated=record.updated,
        )
    return RebuildOutcome(
        server_id=server_id,
        ok=record.ok,
        kind=OutcomeKind(record.kind),
        server=server,
        error=_error_from(record, server),
        submitted=record.submitted,
        reason=record.reason,
    )


def before_record(server: Server) -> BeforeRecord:
    """What is kept of a server's state before its rebuild (no secret: never its user_data)."""
    return BeforeRecord(
        status=server.status.value,
        image_id=server.image_id,
        name=server.name,
        metadata=dict(server.metadata),
        key_name=server.key_name,
        description=server.description,
        hostname=server.hostname,
        access_ipv4=server.access_ipv4,
        access_ipv6=server.access_ipv6,
        updated=server.updated,
    )


def server_from_before(server_id: str, record: BeforeRecord) -> Server:
    """The server as it was before, from its record (what a rollback puts back)."""
    return Server(
        id=server_id,
        status=ServerStatus(record.status),
        image=None if record.image_id is None else ImageRef(record.image_id),
        name=record.name,
        metadata=dict(record.metadata),
        key_name=record.key_name,
        description=record.description,
        hostname=record.hostname,
        access_ipv4=record.access_ipv4,
        access_ipv6=record.access_ipv6,
        updated=record.updated,
    )
