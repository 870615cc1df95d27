"""Requests and replies of the pure handler, and the error bodies of each component."""

from __future__ import annotations

import json
from typing import Any

import attrs

__all__ = [
    "FAULT_NAMES",
    "RecordedRequest",
    "Reply",
    "Request",
    "json_reply",
    "keystone_error",
    "nova_fault",
]

# nova/api/openstack/wsgi.py Fault: the root key of Nova's error bodies.
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}
_JSON = ("Content-Type", "application/json")


@attrs.define
class Request:
    method: str
    path: str  # percent-decoded, without the query
    raw_path: str  # as sent (for signature checks)
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    base: str  # scheme://host[:port] the client used

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


@attrs.frozen
class RecordedRequest:
    """A request as the fake received it: what a test compares between two runs."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: Any

    @classmethod
    def of(cls, request: Request) -> RecordedRequest:
        try:
            body: Any = json.loads(request.body) if request.body else None
        except ValueError:
            body = request.body
        return cls(request.method, request.path, request.query, tuple(request.headers), body)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


@attrs.define
class Reply:
    """An answer. ``delay`` is real seconds to wait before answering; ``lost`` drops it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    delay: float = 0.0
    lost: bool = False


def json_reply(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, [_JSON, *(headers or [])], json.dumps(obj).encode())


def nova_fault(
    status: int, message: str, *, name: str | None = None, retry_after: str | None = None
) -> Reply:
    """Nova's ``{"<name>": {"code", "message"}}``, with ``retryAfter`` for 413/429."""
    inner: dict[str, Any] = {"code": status, "message": message}
    headers: list[tuple[str, str]] = []
    if retry_after is not None:
        inner["retryAfter"] = retry_after
        headers.append(("Retry-After", retry_after))
    return json_reply(status, {name or FAULT_NAMES.get(status, "computeFault"): inner}, headers)


def keystone_error(status: int, title: str, message: str, www_uri: str | None) -> Reply:
    """Keystone's and keystonemiddleware's ``{"error": {"code", "title", "message"}}``."""
    headers = [("WWW-Authenticate", f'Keystone uri="{www_uri}"')] if www_uri else []
    body = {"error": {"code": status, "title": title, "message": message}}
    return json_reply(status, body, headers)
