"""The exception tree, and a pure parser that turns an error answer into one of its classes.

Every error the library raises is an :class:`EcsError`. Service errors carry the HTTP status,
the service's own code and message, and the request id, whichever of the body shapes in use
(Nova, Keystone, Huawei Cloud's gateway and ECS APIs) the answer came in.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from ._redact import clean_text

if TYPE_CHECKING:
    from ._models import Fault, Server

__all__ = [
    "BadRequest",
    "ClientClosed",
    "Conflict",
    "EcsError",
    "Forbidden",
    "InvalidRequest",
    "JournalError",
    "JournalInUse",
    "JournalMismatch",
    "MicroversionError",
    "NotFound",
    "RateLimited",
    "RebuildFailed",
    "RebuildOutcomeUnknown",
    "RebuildTimeout",
    "ResponseError",
    "ServerError",
    "ServiceError",
    "TransportError",
    "Unauthorized",
    "error_from_response",
    "parse_retry_after",
    "request_id_from_headers",
]

# Longest piece of a service's text kept in an error message: a whole HTML error page is noise.
_MAX_MESSAGE = 500


class EcsError(Exception):
    """The root of every error this library raises.

    Its text never holds a secret the library knows (see ``_redact``) nor a control character:
    messages are scrubbed and escaped when the error is made, and again whenever it is shown
    (a secret learnt later is masked too).
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(clean_text(arg) if isinstance(arg, str) else arg for arg in args))

    def __str__(self) -> str:
        return clean_text(super().__str__())

    def __repr__(self) -> str:
        return clean_text(super().__repr__())


class InvalidRequest(EcsError, ValueError):
    """Bad input, found before anything was sent. ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MicroversionError(EcsError):
    """The request needs a microversion that was not pinned or that the service cannot serve."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        required: str | None = None,
        available: str | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.required = required
        self.available = available


class TransportError(EcsError):
    """The request could not be carried out: connection refused, reset, timed out.

    ``maybe_sent`` is true when the request may have reached the service (the answer was
    lost), which is what matters for a request that must not run twice. ``reason`` says what
    happened: ``"refused"``, ``"dns"`` (the host name did not resolve), ``"tls"``,
    ``"timeout"``, ``"reset"`` (the connection broke) or ``"other"``; the operating system's
    own error, when there was one, is the exception's ``__cause__``.
    """

    def __init__(self, message: str, *, maybe_sent: bool = True, reason: str = "other") -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"TransportError({str(self)!r}, reason={self.reason!r}, maybe_sent={self.maybe_sent})"
        )


class ResponseError(EcsError):
    """The service answered with something the library cannot read (bad JSON, wrong shape)."""

    def __init__(
        self, message: str, *, status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"ResponseError({str(self)!r}, status={self.status}, request_id={self.request_id!r})"


class ServiceError(EcsError):
    """The service refused the request. The base of every HTTP error answer."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = _clean_or_none(code)
        self.message: str = self.args[0]
        self.request_id = _clean_or_none(request_id)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}"]
        if self.code:
            parts.append(str(self.code))
        text = f"{' '.join(parts)}: {self.message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return clean_text(text)


class BadRequest(ServiceError):
    """400: the service rejected the request's content."""


class Unauthorized(ServiceError):
    """401: the credentials are missing, wrong or expired."""


class Forbidden(ServiceError):
    """403: policy or quota forbids the request."""


class NotFound(ServiceError):
    """404: the server (or the endpoint) does not exist or is not visible."""


class Conflict(ServiceError):
    """409: the server's state forbids the action. ``state`` names it when the service did."""

    @property
    def state(self) -> str | None:
        """The state named by the service, such as ``"task_state rebuilding"`` or ``"locked"``."""
        return _conflict_state(self.message)


class RateLimited(ServiceError):
    """429 (or 413 ``overLimit``): too many requests; ``retry_after`` is in seconds when known."""


class ServerError(ServiceError):
    """5xx: the service failed."""


class ClientClosed(EcsError):
    """The client was closed while a call still needed it: nothing more was sent on it.

    A rebuild it had sent before may have been accepted (closing waits for the answer of every
    rebuild on the wire): a fleet's outcome says so with ``submitted`` (kind ``cancelled``).
    """


class RebuildFailed(EcsError):
    """The rebuild ended in failure: the server went to ERROR, or was deleted or not found."""

    def __init__(self, message: str, *, server: Server | None, fault: Fault | None) -> None:
        super().__init__(message)
        self.server = server
        self.fault = _clean_fault(fault)


class RebuildTimeout(EcsError):
    """The deadline passed before the rebuild was proven finished. ``server`` is the last seen."""

    def __init__(self, message: str, *, server: Server | None) -> None:
        super().__init__(message)
        self.server = server


class RebuildOutcomeUnknown(EcsError):
    """The answer to the rebuild request was lost and what the service did cannot be proven.

    The rebuild was *not* sent again. ``evidence`` lists what was checked.
    """

    def __init__(self, message: str, *, server: Server | None, evidence: tuple[str, ...]) -> None:
        super().__init__(message)
        self.server = server
        self.evidence = tuple(clean_text(item) for item in evidence)


def _clean_or_none(value: str | None) -> str | None:
    return None if value is None else clean_text(str(value))


def _clean_fault(fault: Fault | None) -> Fault | None:
    """The fault with the service's text scrubbed: it is shown with the error."""
    if fault is None or not attrs.has(type(fault)):
        return fault
    message = clean_text(fault.message) if isinstance(fault.message, str) else fault.message
    details = clean_text(fault.details) if isinstance(fault.details, str) else fault.details
    if message == fault.message and details == fault.details:
        return fault
    return attrs.evolve(fault, message=message, details=details)


class JournalError(EcsError):
    """A run's journal cannot be used: unreadable, of another version, or not this run's."""


class JournalInUse(JournalError):
    """Another live process drives the run of this journal (one driver per journal)."""


class JournalMismatch(JournalError, InvalidRequest):
    """The journal records another run (other servers, another request, other secrets)."""


def _conflict_state(message: str) -> str | None:
    marker = "while it is in "
    index = message.find(marker)
    if index >= 0:
        return message[index + len(marker) :].rstrip(". ")
    if message.rstrip(". ").endswith("is locked"):
        return "locked"
    return None


_HEADER_REQUEST_IDS = ("x-openstack-request-id", "x-compute-request-id", "x-request-id")


def request_id_from_headers(headers: Mapping[str, str]) -> str | None:
    """The request id from any of the headers the services use, or None."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for name in _HEADER_REQUEST_IDS:
        value = lowered.get(name)
        if value:
            return value
    return None


def parse_retry_after(value: object, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.

    Anything unreadable is None, never an exception; negative values are 0.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            return None
        return max(0.0, number) if number == number and number != float("inf") else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number != number or number in (float("inf"), float("-inf")):
            return None
        return max(0.0, number)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


_STATUS_CLASSES: dict[int, type[ServiceError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}


def _text(value: object) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _code_and_message(body: object) -> tuple[str | None, str | None, object]:
    """Find (code, message, retryAfter) in any of the known error body shapes.

    Order follows Huawei's SDK: ``error_code``/``error_msg``, ``errorCode``/``errorMsg``,
    ``code``/``message`` at the top level, then the same one level down, which covers Nova's
    ``{"itemNotFound": {...}}``, Keystone's and ECS's ``{"error": {...}}``.
    """
    if not isinstance(body, dict):
        return None, None, None
    pairs = (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message"))
    for code_key, message_key in pairs:
        if message_key in body and not isinstance(body[message_key], (dict, list)):
            return _text(body.get(code_key)), _text(body[message_key]), body.get("retryAfter")
    for name, inner in body.items():
        if not isinstance(inner, dict):
            continue
        for code_key, message_key in pairs:
            if message_key in inner and not isinstance(inner[message_key], (dict, list)):
                code = _text(inner.get(code_key))
                # Nova's code is the HTTP status; its fault name says more. Keystone's wrapper is
                # the uninformative "error", and its "title" names the failure instead.
                if code is not None and code.isdigit():
                    if name != "error":
                        code = str(name)
                    elif isinstance(inner.get("title"), str) and inner["title"]:
                        code = inner["title"]
                return code, _text(inner[message_key]), inner.get("retryAfter")
    return None, None, None


def _shorten(text: str) -> str:
    """One line of at most ``_MAX_MESSAGE`` characters: whitespace runs made one space, then
    secrets masked and control characters escaped (before the cut: a secret cut in two would
    no longer be recognized, and escapes lengthen the text)."""
    text = clean_text(" ".join(text.split()))
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


# Of a body quoted as the message, only this much is read: the message keeps 500 characters.
_QUOTED = 20_000


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    now: datetime | None = None,
) -> ServiceError:
    """Build the typed error for an HTTP error answer. Pure: it never raises on any input."""
    request_id = request_id_from_headers(headers)
    body: Any = None
    if content:
        try:
            body = json.loads(content)
        except (ValueError, UnicodeDecodeError, RecursionError):
            body = None
    code, message, body_retry_after = _code_and_message(body)
    if message is None:
        if content:
            raw = content.decode("utf-8", "replace")
            # Compact JSON, as Huawei's SDK reports a body it cannot read.
            compact = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            message = raw[:_QUOTED] if body is None else compact[:_QUOTED]
        else:
            message = f"HTTP {status} with an empty body"
    if code is None and isinstance(body, dict) and "error_code" in body:
        code = _text(body.get("error_code"))
    lowered = {key.lower(): value for key, value in headers.items()}
    retry_after = parse_retry_after(lowered.get("retry-after"), now=now)
    if retry_after is None:
        retry_after = parse_retry_after(body_retry_after, now=now)
    cls: type[ServiceError]
    if status == 413 and (code == "overLimit" or retry_after is not None):
        cls = RateLimited
    elif status in _STATUS_CLASSES:
        cls = _STATUS_CLASSES[status]
    elif status >= 500:
        cls = ServerError
    else:
        cls = ServiceError
    return cls(
        _shorten(message),
        status=status,
        code=code,
        request_id=request_id,
        retry_after=retry_after,
    )
