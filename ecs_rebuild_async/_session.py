"""The session: the one ``httpx.AsyncClient``, and everything between a call and the wire.

It resolves the compute endpoint, discovers the service's microversions once, sends both
microversion headers, retries safe requests, paces every request to the endpoint under rate
limits, logs with secrets redacted, and turns every failure into the library's typed errors.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import attrs
import httpx
import tenacity

from . import _telemetry
from ._auth import Auth
from ._bounded import (
    ACCEPTED_ENCODINGS,
    MAX_ANSWER_BYTES,
    AnswerTooLarge,
    read_body,
    redirect_error,
)
from ._engine import AiohttpEngine, header_dict
from ._errors import (
    ClientClosed,
    EcsError,
    InvalidRequest,
    RateLimited,
    ResponseError,
    ServerError,
    ServiceError,
    TransportError,
    error_from_response,
    request_id_from_headers,
)
from ._microversion import APIVersion, VersionRange, parse_version
from ._redact import SecretStore, install_log_scrubbing, request_secrets
from ._serde import wire_version_header
from ._settings import ClientSettings
from ._slots import Slots
from ._validation import check_endpoint, check_no_userinfo
from ._version import __version__

__all__ = ["Answer", "Session", "default_engine", "default_transport"]

logger = logging.getLogger("ecs_rebuild_async")

USER_AGENT = f"ecs-rebuild-async/{__version__}"

# -- redaction --------------------------------------------------------------------------------

# The HTTP stack logs whole headers at DEBUG (httpcore, hpack under HTTP/2): every record of the
# library's and the stack's loggers is scrubbed as it is made (see _redact).
install_log_scrubbing()


# -- answers -----------------------------------------------------------------------------------


@attrs.frozen
class Answer:
    """A successful answer, read: status, headers (lower-case names), JSON body, service time."""

    status: int
    headers: Mapping[str, str]
    body: Any
    date: datetime | None
    request_id: str | None
    version: APIVersion | None


# A Date outside these years is garbage: kept, it would overflow the arithmetic of a wait
# (``date + elapsed``, ``since - margin``), so it is treated as no Date at all.
_PLAUSIBLE_YEARS = range(1971, 9000)


def _service_date(headers: Mapping[str, str]) -> datetime | None:
    value = headers.get("date")
    if not value:
        return None
    return _parsed_date(value)


# The same Date comes back on every answer within a second: parsed once.
@functools.lru_cache(maxsize=64)
def _parsed_date(value: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        parsed = parsed.astimezone(timezone.utc)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.year in _PLAUSIBLE_YEARS else None


def _echoed_version(headers: Mapping[str, str]) -> APIVersion | None:
    return _parsed_echo(
        headers.get("openstack-api-version", ""), headers.get("x-openstack-nova-api-version")
    )


# A service echoes the same version on every answer: read once.
@functools.lru_cache(maxsize=64)
def _parsed_echo(standard: str, legacy: str | None) -> APIVersion | None:
    for entry in reversed(standard.split(",")):
        service, _, value = entry.strip().partition(" ")
        if service.lower() == "compute":
            try:
                return parse_version(value.strip())
            except EcsError:
                return None
    if legacy:
        try:
            return parse_version(legacy.split(",")[-1].strip())
        except EcsError:
            return None
    return None


_AIOHTTP_NOT_SENT = frozenset(
    {"ClientConnectorError", "ClientConnectorDNSError", "ConnectionTimeoutError"}
)


def _maybe_sent(exc: httpx.TransportError) -> bool:
    """Whether a failed request may have reached the service.

    Only a failure to connect proves it did not. httpx-aiohttp reports a connection closed
    after sending as ``ConnectTimeout``, so the cause decides for that transport.
    """
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        # No connection, or none in time (connecting, the TLS handshake, a pooled one): the
        # request never left.
        return not any(kind.__name__ in _AIOHTTP_NOT_SENT for kind in type(cause).__mro__)
    return not isinstance(
        exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol)
    )


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception behind it (causes, contexts, members of groups), bounded."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack and len(seen) < 32:
        item = stack.pop()
        if any(item is known for known in seen):
            continue
        seen.append(item)
        stack.extend(getattr(item, "exceptions", ()) or ())  # an ExceptionGroup's members
        for attribute in ("certificate_error", "os_error"):  # aiohttp keeps them here
            inner = getattr(item, attribute, None)
            if isinstance(inner, BaseException):
                stack.append(inner)
        for inner in (item.__cause__, item.__context__):
            if inner is not None:
                stack.append(inner)
    return seen


#: (what the OS said, reason): the first kind found behind a transport failure names it.
_OS_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (ssl.SSLError, "tls"),
    (ssl.CertificateError, "tls"),
    (ConnectionRefusedError, "refused"),
    (socket.gaierror, "dns"),
    (ConnectionResetError, "reset"),
    (BrokenPipeError, "reset"),
    (TimeoutError, "timeout"),
)

_REASON_WORDS = {
    "tls": "TLS failed",
    "refused": "connection refused",
    "dns": "host name not resolved",
    "reset": "connection reset",
    "timeout": "timed out",
    "other": "failed",
}


def transport_failure(exc: BaseException) -> tuple[str, BaseException | None]:
    """(reason, the operating system's error) behind a transport failure. Pure.

    The reason is ``tls``, ``refused``, ``dns``, ``reset``, ``timeout`` or ``other``: read
    from the OS error under the HTTP stack's own exception, since httpx-aiohttp reports a
    refused connection and a certificate failure alike as ``ConnectTimeout``.
    """
    causes = _causes(exc)
    for kind, reason in _OS_REASONS:
        for cause in causes:
            if isinstance(cause, kind):
                return reason, cause
    # Before timeouts: httpx-aiohttp names a dropped connection a ConnectTimeout.
    if any(type(cause).__name__ == "ServerDisconnectedError" for cause in causes):
        return "reset", None
    if any(isinstance(cause, httpx.TimeoutException) for cause in causes):
        return "timeout", None
    return "other", next((c for c in causes if isinstance(c, OSError)), None)


def transport_message(method: str, url: object, reason: str, cause: BaseException | None) -> str:
    """One line for a failed request: what was asked, what happened, what the OS said."""
    text = f"{method} {url} failed: {_REASON_WORDS.get(reason, 'failed')}"
    if cause is not None:
        said = " ".join(str(getattr(cause, "strerror", None) or cause).split())[:200]
        if not said and isinstance(cause, ConnectionResetError):
            said = "the connection was reset while it was being set up"
        if said and said.lower() not in text.lower():
            text += f" ({said})"
    return text


#: Failures that the same request, repeated at once, would meet again: repeating them only
#: delays the report (a refused connection retried with back-off took 12 s to be told).
NOT_RETRIED_REASONS = frozenset({"refused", "dns", "tls"})


def _failed_request(exc: httpx.TransportError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:  # httpx raises when the error carries no request
        return None


# -- pacing ------------------------------------------------------------------------------------


class Pacer:
    """Paces requests to one endpoint: a shared pause after 429, and an AIMD rate limit.

    A 429 pauses *every* request for the Retry-After time and halves the allowed request rate;
    each success raises it again a little, until no limit is left (or the user's ceiling). The
    requests already in flight when the limit was hit are refused too: they extend the pause
    but do not cut the rate again within the same window.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._paused_until = 0.0
        self._rate: float | None = None
        self._next_slot = 0.0
        self._recent: deque[float] = deque(maxlen=256)
        self._window_ends = 0.0
        self.limited_count = 0

    @property
    def rate(self) -> float | None:
        """The current allowed requests per second; None when unlimited."""
        ceiling = self._settings.max_requests_per_second
        if self._rate is None:
            return ceiling
        return self._rate if ceiling is None else min(self._rate, ceiling)

    async def acquire(self) -> None:
        now = anyio.current_time()
        # Another 429 may extend the pause while this task sleeps: look again after each sleep.
        while self._paused_until > now:
            await anyio.sleep(self._paused_until - now)
            now = anyio.current_time()
        rate = self.rate
        if rate is not None and rate > 0:
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / rate
            if slot > now:
                await anyio.sleep(slot - now)
        self._recent.append(anyio.current_time())

    def _observed_rate(self) -> float:
        if len(self._recent) < 2:
            return 10.0
        span = self._recent[-1] - self._recent[0]
        return (len(self._recent) - 1) / span if span > 0 else 100.0

    def on_rate_limited(self, retry_after: float | None) -> None:
        settings = self._settings
        self.limited_count += 1
        wait = settings.retry_after_default if retry_after is None else retry_after
        wait = min(wait, settings.retry_after_cap)
        wait *= 1.0 + random.uniform(0.0, 0.2)  # jitter: the paused tasks do not return at once
        _telemetry.rate_limited(wait)
        now = anyio.current_time()
        self._paused_until = max(self._paused_until, now + wait)
        if now < self._window_ends:
            return  # the same burst of refusals: the rate was cut for it already
        self._window_ends = now + max(1.0, wait)
        current = self._rate if self._rate is not None else self._observed_rate()
        self._rate = max(settings.pacing_floor, current * settings.pacing_decrease)

    def on_success(self) -> None:
        if self._rate is None:
            return
        self._rate += self._settings.pacing_recovery
        # Far above what was seen when limited: the limit is gone.
        if self._rate > 4 * self._observed_rate() + 50:
            self._rate = None


# -- transport ---------------------------------------------------------------------------------


def tls_verification(verify: bool | str) -> bool | ssl.SSLContext:
    """TLS verification as httpx takes it: on, off, or a CA bundle file turned into a context."""
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidRequest(
                f"cannot read the CA bundle {verify!r}: {exc.strerror or exc}", field="verify"
            ) from None
    return verify


_T = TypeVar("_T")
_Exchanged = tuple[int, dict[str, str], bytes, bool]


async def _answered_despite_native_cancellation(exchange: Awaitable[_T]) -> _T:
    """Await ``exchange`` to its end even if this asyncio task is cancelled natively meanwhile
    (``asyncio.timeout``, ``asyncio.wait_for``, ``Task.cancel()``), then let the cancellation go
    on at the next await.

    anyio's shield keeps out anyio's cancellations only: a native one reaches inside it, and
    would drop a rebuild on the wire whose answer says whether the service carried it out. The
    exchange runs in a task of its own (``asyncio.shield``) and bounds itself; the cancellation
    is requested again once its answer has been taken in, so that the caller still gets its
    ``TimeoutError`` or ``CancelledError``, and what the answer said is recorded first.
    """
    task = asyncio.ensure_future(exchange)
    cancelled = False
    try:
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise  # the exchange itself was cancelled: nothing to wait for
                cancelled = True
    finally:
        if cancelled:
            current = asyncio.current_task()
            if current is not None:
                # One cancellation taken, one asked again: the task's count of pending
                # cancellations (what asyncio.timeout reads) stays as it was.
                uncancel = getattr(current, "uncancel", None)  # Python 3.11+
                if uncancel is not None:
                    uncancel()
                current.cancel()


def running_under_asyncio() -> bool:
    """True inside an asyncio task. Asked of asyncio itself rather than of sniffio, which is
    not a dependency of this package (anyio no longer brings it): under trio no asyncio loop
    runs in the thread, so ``asyncio.current_task()`` raises."""
    try:
        return asyncio.current_task() is not None
    except RuntimeError:
        return False


def default_transport(
    settings: ClientSettings, *, verify: bool | str = True
) -> httpx.AsyncBaseTransport:
    """The fastest engine under httpx for the running event loop.

    Under asyncio that is aiohttp (through httpx-aiohttp): it costs a third to a fifth of the
    CPU per request of httpx's own transport. aiohttp is asyncio-only, so trio uses httpx's own.
    ``verify`` is True, False (no TLS verification) or the path of a CA bundle.
    """
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
    )
    tls = tls_verification(verify)
    if running_under_asyncio():
        from httpx_aiohttp import AiohttpTransport

        transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits, verify=tls)
        return transport
    return httpx.AsyncHTTPTransport(limits=limits, verify=tls)


def default_engine(
    settings: ClientSettings, *, verify: bool | str = True
) -> tuple[AiohttpEngine, httpx.AsyncBaseTransport]:
    """Under asyncio, with no client or transport of the caller's: aiohttp driven directly
    (:mod:`._engine`), and the transport over the same connections for what goes through
    httpx's client (the auth flows' catalog reads)."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    # The TLS context as httpx-aiohttp makes it (certifi's CAs, SSL_CERT_FILE honoured).
    tls = httpx.create_ssl_context(verify=tls_verification(verify))
    connector = aiohttp.TCPConnector(limit=settings.max_connections, keepalive_timeout=5.0, ssl=tls)
    # Proxies from the environment are not used, as on the httpx-aiohttp path.
    connections = aiohttp.ClientSession(connector=connector, trust_env=False)
    # aiohttp sends an idempotent request (a GET) once more by itself after a lost connection:
    # every repeat is the session's to decide (retry_attempts, the rebuild's reconciliation).
    connections._retry_connection = False
    engine = AiohttpEngine(
        connections,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.request_timeout,
    )
    return engine, AiohttpTransport(client=connections)


#: One encoder for every request body (``json.dumps`` with options builds a new one per call).
_JSON = json.JSONEncoder(separators=(",", ":"))


def _header_dict(headers: httpx.Headers) -> dict[str, str]:
    """The answer's headers by lower-case name, decoded once (httpx's ``items()`` works out
    the headers' text encoding again for every header)."""
    return header_dict(headers.raw)


def _retryable(exc: BaseException, idempotent: bool) -> bool:
    """Whether a failed attempt may be made again: never a rebuild that may have been sent."""
    if isinstance(exc, RateLimited):
        return True
    if isinstance(exc, TransportError):
        if exc.reason in NOT_RETRIED_REASONS:
            return False
        return idempotent or not exc.maybe_sent
    return idempotent and isinstance(exc, ServerError) and exc.status in _RETRYABLE_STATUS


def _retry_delay(settings: ClientSettings, exc: BaseException | None, attempt: int) -> float:
    """The pause before attempt number ``attempt`` + 1: exponential backoff, full jitter."""
    if isinstance(exc, RateLimited):
        return 0.0  # the pacer already holds every request for Retry-After
    backoff = settings.backoff_initial * (2 ** (attempt - 1))
    return random.uniform(0, min(settings.backoff_max, backoff))


@functools.lru_cache(maxsize=4096)
def _parsed_url(url: str) -> httpx.URL:
    """The URL, parsed once: a wait reads the same server's URL again and again, and httpx
    checks every character of a URL string each time it is given one."""
    return httpx.URL(url)


@functools.lru_cache(maxsize=4096)
def _url_text(url: str) -> str:
    """The URL as httpx writes it on the wire (normalized, percent-encoded), worked out once."""
    return str(_parsed_url(url))


@functools.lru_cache(maxsize=4096)
def _request_kind(method: str, url: str) -> str:
    """A short name for what a request does, for the client's counters."""
    path = url.split("?", 1)[0].rstrip("/")
    if path.endswith("/action"):
        return f"{method} action"
    if path.endswith("/servers/detail"):
        return f"{method} list"
    if path.endswith("/os-instance-actions"):
        return f"{method} instance-actions"
    if "/servers/" in path:
        return f"{method} server"
    if path.endswith(("/v2.1", "/v2")) or "/" not in path.split("://", 1)[-1]:
        return f"{method} versions"
    return f"{method} other"


# -- where credentials may go ------------------------------------------------------------------


def checked_endpoint(endpoint: str | None) -> str | None:
    """The compute endpoint given by the caller, if it is an http(s) URL; else InvalidRequest."""
    if endpoint is None:
        return None
    if not isinstance(endpoint, str) or not _is_web_url(endpoint):
        raise InvalidRequest(
            f"the endpoint must be an http:// or https:// URL with a host, got {endpoint!r:.80}",
            field="endpoint",
        )
    return endpoint.rstrip("/")


def _is_web_url(text: str) -> bool:
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def checked_catalog_endpoint(found: str, auth_url: str | None, *, allow_http: bool) -> str:
    """The compute endpoint a service catalog named, if credentials may be sent to it.

    The catalog is the service's answer: a URL that cannot be parsed is a ResponseError, and so
    is plain ``http://`` when Keystone itself was reached over ``https://`` (the token would
    travel in clear), unless ``ClientSettings.allow_http_from_catalog`` says so.
    """
    try:
        check_no_userinfo(found, "endpoint")
    except InvalidRequest:
        # Not repeated: the part before the @ may be a password.
        raise ResponseError(
            "the service catalog's compute endpoint has credentials in it (user:password@host)"
        ) from None
    if not _is_web_url(found):
        raise ResponseError(
            f"the service catalog's compute endpoint is not an http(s) URL: {found!r:.120}"
        )
    downgrade = (
        auth_url is not None
        and auth_url.lower().startswith("https://")
        and found.lower().startswith("http://")
    )
    if downgrade and not allow_http:
        raise ResponseError(
            f"the service catalog names {found[:120]} (plain http) as the compute endpoint, "
            "while Keystone is on https: refused, the token would travel in clear "
            "(pass the endpoint explicitly, or set ClientSettings(allow_http_from_catalog=True))"
        )
    if downgrade:
        logger.warning("the compute endpoint %s from the service catalog is plain http", found)
    return found.rstrip("/")


def warn_if_unverified(verify: bool | str) -> None:
    """One warning per client that turns TLS verification off (verify=False, OS_INSECURE,
    clouds.yaml ``insecure: true`` or ``verify: false``)."""
    if verify is False:
        logger.warning(
            "TLS certificate verification is off for this client: anyone on the network path "
            "can read and change its requests, credentials included"
        )


# -- the session -------------------------------------------------------------------------------

_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class Session:
    """One client's connection to one compute endpoint."""

    def __init__(
        self,
        endpoint: str | None,
        auth: Auth,
        *,
        settings: ClientSettings,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        interface: str = "public",
        region: str | None = None,
        verify: bool | str = True,
    ) -> None:
        self._verify = verify
        # The common slips first (check_endpoint), then what httpx itself cannot parse.
        self._endpoint = checked_endpoint(
            check_endpoint(endpoint) if endpoint is not None else None
        )
        # The secrets of this client's requests (adminPass, user_data), masked wherever echoed.
        self._secrets = SecretStore()
        self._auth = auth
        self._settings = settings
        self._given_client = http_client
        self._given_transport = transport
        self._client: httpx.AsyncClient | None = None
        # Under asyncio with no client or transport of the caller's: requests go through it.
        self._engine: AiohttpEngine | None = None
        self._client_headers: dict[str, str] = {}
        self._interface = interface
        self._region = region
        # On the connections this client makes, no more requests go at once than it has
        # connections: one waiting for a connection would wait in the pool, where closing the
        # client can neither hold it back unsent nor wait for its answer.
        own_pool = http_client is None and transport is None
        self._in_flight = Slots(
            min(settings.max_in_flight, settings.max_connections)
            if own_pool
            else settings.max_in_flight
        )
        self._discovery_lock = anyio.Lock()
        self._endpoint_lock = anyio.Lock()
        self._versions: VersionRange | None = None
        self._versions_known = False
        self.pacer = Pacer(settings)
        self.counts: dict[str, int] = {}
        # Requests that must not run twice (a rebuild) on the wire right now, and what closing
        # the client waits on until there are none: their answers say what the service did.
        self._unrepeatable_on_wire = 0
        self._drained_event: anyio.Event | None = None
        # What closing cancels: requests waiting for their turn or a pause, reads on the wire.
        self._stoppable: set[anyio.CancelScope] = set()
        self._close_finished: anyio.Event | None = None  # set once a close under way ends
        self._closed = False  # closed after being open: a request then is a ClientClosed
        # Closing has begun: nothing more is sent, and what waits is cut (ClientClosed).
        self._closing = False

    @property
    def settings(self) -> ClientSettings:
        return self._settings

    @property
    def endpoint(self) -> str | None:
        """The compute endpoint, once known (given, or read from the catalog)."""
        return self._endpoint

    # -- lifecycle --

    async def open(self) -> None:
        # Being closed: from the moment closing begins until its connections are closed (the
        # client is let go of before that, while its connections close).
        if self._close_finished is not None or (self._client is not None and self._closing):
            raise ClientClosed(
                "the client is being closed: open it again once aclose() has returned"
            )
        if self._client is not None:
            return
        self._closed = False
        self._closing = False
        if self._given_client is not None:
            self._client = self._given_client
            return
        if self._given_transport is None:
            warn_if_unverified(self._verify)
        transport = self._given_transport
        if transport is None and running_under_asyncio():
            self._engine, transport = default_engine(self._settings, verify=self._verify)
        elif transport is None:
            transport = default_transport(self._settings, verify=self._verify)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(
                self._settings.request_timeout, connect=self._settings.connect_timeout
            ),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
        )
        self._client_headers = dict(self._client.headers.items())

    async def aclose(self) -> None:
        """Close the connections, once every rebuild on the wire has its answer (each within
        ``request_timeout`` of being sent): closing under one would cut it unanswered, and only
        its answer says whether the service carried it out. Everything else is cut at once and
        ends in ``ClientClosed``: a request still waiting for its turn or a pause (not sent),
        a read on the wire (its connection closed before closing returns)."""
        self._closing = self._client is not None
        for waiting in list(self._stoppable):
            waiting.cancel()
        closing = self._close()
        if not (self._unrepeatable_on_wire or self._stoppable or self._close_finished):
            await closing  # nothing to wait for: a cancelled caller still closes the client
            return
        # Shielded, so that a caller whose scope is cancelled already (a deadline that passed,
        # a task group cancelled around ``async with``) still closes the client whole.
        with anyio.CancelScope(shield=True):
            if running_under_asyncio():
                closing = _answered_despite_native_cancellation(closing)
            await closing
        # A cancellation that came while closing waited (the caller's deadline, anyio's or
        # asyncio's) takes effect here, once the client is closed: not at a later await.
        await anyio.lowlevel.checkpoint()

    async def _close(self) -> None:
        if self._close_finished is not None:
            # Another task is closing: this close returns once that one has closed it all.
            await self._close_finished.wait()
            return
        self._close_finished = finished = anyio.Event()
        try:
            await self._drained()
            client, self._client = self._client, None
            self._closed = self._closed or client is not None
            self._engine = None  # its connections are the transport's, closed with the client
            if client is not None and client is not self._given_client:
                with anyio.CancelScope(shield=True):
                    await client.aclose()
        finally:
            self._close_finished = None
            finished.set()

    async def _drained(self) -> None:
        """Until no rebuild is on the wire and every request that closing cancelled has
        stopped (its connection closed under it, not left to the pool after it closed)."""
        # Each one bounds itself by request_timeout; this bound only guards against a bug.
        with anyio.move_on_after(self._settings.request_timeout + 1.0):
            while self._unrepeatable_on_wire or self._stoppable:
                if self._drained_event is None:
                    self._drained_event = anyio.Event()
                await self._drained_event.wait()

    def _maybe_drained(self) -> None:
        if self._unrepeatable_on_wire or self._stoppable:
            return
        if self._drained_event is not None:
            self._drained_event.set()
            self._drained_event = None

    def _stoppable_scope(self) -> anyio.CancelScope:
        """A scope that closing the client cancels (until :meth:`_unstoppable`)."""
        scope = anyio.CancelScope()
        if self._closing:
            scope.cancel()  # begun while closing waits for rebuilds on the wire: nothing is sent
        self._stoppable.add(scope)
        return scope

    def _unstoppable(self, scope: anyio.CancelScope) -> None:
        if scope in self._stoppable:
            self._stoppable.discard(scope)
            self._maybe_drained()

    async def _pause(self, seconds: float) -> None:
        """A pause between attempts, cut short by closing the client (then ClientClosed)."""
        scope = self._stoppable_scope()
        try:
            with scope:
                await anyio.sleep(seconds)
        finally:
            self._unstoppable(scope)
        if scope.cancelled_caught:
            raise ClientClosed("the client was closed while a request waited to be retried")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            if self._closed:
                raise ClientClosed("the client was closed: nothing more is sent on it")
            raise EcsError("the client is not open: use 'async with AsyncEcsClient(...) as ecs'")
        return self._client

    # -- endpoint and versions --

    async def compute_url(self) -> str:
        """The compute endpoint, from the constructor or, once, from the service catalog."""
        if self._endpoint is not None:
            return self._endpoint
        async with self._endpoint_lock:
            if self._endpoint is None:
                found = await self._auth.compute_endpoint(
                    self._http(),
                    interface=self._interface,
                    region=self._region,
                    max_answer_bytes=self._settings.max_answer_bytes,
                )
                if not found:
                    raise EcsError(
                        "no compute endpoint: pass one to AsyncEcsClient, or use credentials "
                        "whose service catalog lists a 'compute' service"
                    )
                self._endpoint = checked_catalog_endpoint(
                    found,
                    getattr(self._auth, "auth_url", None),
                    allow_http=self._settings.allow_http_from_catalog,
                )
                logger.info(
                    "compute endpoint from the service catalog: %s (interface %s%s)",
                    self._endpoint,
                    self._interface,
                    f", region {self._region}" if self._region else "",
                )
            return self._endpoint

    async def service_url(self, service_type: str) -> str | None:
        """Another service's endpoint (``image``...) from the auth's catalog; None without."""
        found = await self._auth.service_endpoint(
            self._http(),
            service_type,
            interface=self._interface,
            region=self._region,
            max_answer_bytes=self._settings.max_answer_bytes,
        )
        if found is None:
            return None
        # The token goes there too: the same checks as for the compute endpoint.
        return checked_catalog_endpoint(
            found,
            getattr(self._auth, "auth_url", None),
            allow_http=self._settings.allow_http_from_catalog,
        )

    @staticmethod
    def _version_root(compute_url: str) -> tuple[str, str | None]:
        """(root URL of the compute API, "v2.1" / "v2" / None) from the endpoint's path."""
        url = httpx.URL(compute_url)
        segments = [segment for segment in url.path.split("/") if segment]
        for index, segment in enumerate(segments):
            if segment in ("v2.1", "v2"):
                root_path = "/" + "/".join(segments[: index + 1]) + "/"
                return str(url.copy_with(path=root_path, query=None)), segment
        return compute_url.rstrip("/") + "/", None

    async def service_versions(self) -> VersionRange | None:
        """The service's microversion range, discovered once (concurrent first calls share it).

        None for a legacy ``/v2`` endpoint, which has no microversions. A service that refuses
        the version document (404 and other 4xx) is taken as 2.1 only, with a warning; a
        malformed document is a ResponseError, and a 5xx or 429 is raised and not remembered.
        """
        if self._versions_known:
            return self._versions
        async with self._discovery_lock:
            if not self._versions_known:
                self._versions = await self._discover()
                self._versions_known = True
        return self._versions

    async def _discover(self) -> VersionRange | None:
        root, kind = self._version_root(await self.compute_url())
        if kind == "v2":
            return None
        try:
            answer = await self.request("GET", root, version=None, authenticated=False)
        except AnswerTooLarge:
            raise
        except ResponseError as exc:
            raise ResponseError(
                f"the version document at {root} is not JSON",
                status=exc.status,
                request_id=exc.request_id,
            ) from None
        except ServiceError as exc:
            # A failing or overloaded service says nothing about its versions: raise, and ask
            # again on the next call, rather than remember 2.1 for the client's lifetime.
            if isinstance(exc, (RateLimited, ServerError)):
                raise
            logger.warning(
                "cannot read the version document at %s (%s); assuming 2.1 only", root, exc
            )
            return VersionRange(APIVersion(2, 1), APIVersion(2, 1))
        document = answer.body.get("version") if isinstance(answer.body, dict) else None
        if not isinstance(document, dict):
            raise ResponseError(
                f"the version document at {root} has no 'version' object",
                status=answer.status,
                request_id=answer.request_id,
            )
        maximum, minimum = document.get("version"), document.get("min_version")
        if maximum in ("", None) and minimum in ("", None):
            return None
        try:
            found = VersionRange(parse_version(minimum), parse_version(maximum))
        except EcsError:
            raise ResponseError(
                f"the version document at {root} has unreadable versions "
                f"(min_version={str(minimum)[:20]!r}, version={str(maximum)[:20]!r})",
                status=answer.status,
            ) from None
        logger.debug("compute API at %s offers microversions %s", root, found)
        return found

    # -- requests --

    def _url(self, base: str, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return base + "/" + path.lstrip("/")

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        version: APIVersion | None = None,
        idempotent: bool = True,
        authenticated: bool = True,
    ) -> Answer:
        """Send one request and read its answer, retrying what is safe to retry.

        ``idempotent=False`` (the rebuild POST) is repeated only when the service cannot have
        carried it out: a failure to connect, or a 429 / overLimit refusal.
        """
        url = (
            path
            if path.startswith(("http://", "https://"))
            else self._url(await self.compute_url(), path)
        )
        if json_body is not None:
            request_secrets(json_body, self._secrets)
        # The first attempt goes without the retry machinery, and makes no closure (most
        # requests need no retry, and a fleet's rebuilds wait for their turn in this frame);
        # the retries after it follow the same budget, counted from the first attempt.
        first_started = time.monotonic()
        try:
            return await self._send_traced(
                method, url, params, json_body, version, authenticated, idempotent
            )
        except EcsError as exc:
            elapsed = time.monotonic() - first_started
            if self._settings.retry_attempts <= 1 or elapsed >= self._settings.retry_budget:
                raise
            if not _retryable(exc, idempotent):
                raise
            await self._pause(_retry_delay(self._settings, exc, 1))
        return await self._retried(
            method, url, params, json_body, version, authenticated, idempotent, first_started
        )

    async def _retried(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        version: APIVersion | None,
        authenticated: bool,
        idempotent: bool,
        first_started: float,
    ) -> Answer:
        """The attempts after the first, within what is left of the retry budget."""
        settings = self._settings

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return _retry_delay(settings, exc, state.attempt_number + 1)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(settings.retry_attempts - 1)
            | tenacity.stop_after_delay(
                max(0.0, settings.retry_budget - (time.monotonic() - first_started))
            ),
            wait=wait,
            retry=tenacity.retry_if_exception(lambda exc: _retryable(exc, idempotent)),
            sleep=self._pause,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send_traced(
                    method, url, params, json_body, version, authenticated, idempotent
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _send_traced(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        version: APIVersion | None,
        authenticated: bool,
        idempotent: bool,
    ) -> Answer:
        with _telemetry.http_request(method, url, version) as traced:
            answer = await self._send_once(
                method, url, params=params, json_body=json_body, version=version,
                authenticated=authenticated, idempotent=idempotent,
            )  # fmt: skip
            traced.answered(answer.status, answer.request_id)
            return answer

    async def _send_once(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        json_body: Any,
        version: APIVersion | None,
        authenticated: bool,
        idempotent: bool = True,
    ) -> Answer:
        client = self._http()
        started = time.perf_counter()
        key = _request_kind(method, url)
        # Closing the client cancels this (its wait for a turn, for a pause to end, or a read
        # on the wire), so that it neither waits on nor sends anything on a closed client; a
        # rebuild leaves it just before it is sent, and closing then waits for its answer.
        stopper = self._stoppable_scope()
        sent = False
        try:
            with stopper:
                async with self._in_flight:
                    # Paced once its turn came: a pause that began while it waited holds it too.
                    await self.pacer.acquire()
                    if self._closing:
                        # Its turn came after closing began: nothing more is sent (a rebuild
                        # sent now would be on the wire while closing may no longer wait).
                        raise ClientClosed(f"{method} {url} was not sent: the client is closing")
                    if not idempotent:
                        # A deadline or cancellation that came while it waited for its turn
                        # (a turn that came at once does not yield) stops it here, unsent.
                        await anyio.lowlevel.checkpoint_if_cancelled()
                        self._unstoppable(stopper)
                    # Built once its turn came: a fleet's rebuilds queued behind the limit hold
                    # no request each meanwhile (the garbage collector would walk them all).
                    request = self._request(client, method, url, params, json_body, version)
                    # Counted once it is past the last point where a cancellation can stop it
                    # unsent, so that "requests sent" does not count one that never left.
                    self.counts[key] = self.counts.get(key, 0) + 1
                    sent = True
                    # Once a request that must not run twice is on the wire, its answer is
                    # awaited even if the caller is cancelled meanwhile (bounded by the request
                    # timeout): only then is it known whether the service carried it out.
                    # httpx's timeouts bound each read, not the whole answer, so one dripped a
                    # byte at a time is bounded here, as a whole, by ``request_timeout``.
                    exchanging = self._exchange(client, request, url, params, authenticated)
                    if idempotent:
                        status, headers, raw, timed_out = await exchanging
                    else:
                        self._unrepeatable_on_wire += 1
                        try:
                            with anyio.CancelScope(shield=True):
                                if running_under_asyncio():
                                    exchanging = _answered_despite_native_cancellation(exchanging)
                                status, headers, raw, timed_out = await exchanging
                        finally:
                            self._unrepeatable_on_wire -= 1
                            self._maybe_drained()
                    if timed_out:
                        raise httpx.ReadTimeout(
                            f"no whole answer within request_timeout "
                            f"({self._settings.request_timeout:g} s)",
                            request=request,
                        )
            if stopper.cancelled_caught:
                what = "answered" if sent else "sent"
                raise ClientClosed(f"{method} {url} was not {what}: the client was closed")
        except httpx.TransportError as exc:
            # A failure of a request the auth flow sent first (a Keystone token request)
            # means this request never left.
            maybe_sent = _maybe_sent(exc) and _failed_request(exc) in (None, request)
            reason, os_error = transport_failure(exc)
            if reason in ("refused", "dns"):
                maybe_sent = False  # no connection was made: nothing can have been sent
            elif reason == "reset" and not maybe_sent and request.url.scheme == "https":
                # Connected, then cut off before a request could go: under asyncio a failed
                # TLS handshake often reads as a bare reset (a plain-HTTP port, say).
                reason = "tls"
                os_error = os_error or ConnectionResetError("connection reset during TLS setup")
            logger.debug(
                "%s %s failed after %.3fs: %s (%s)",
                method,
                url,
                time.perf_counter() - started,
                type(exc).__name__,
                reason,
            )
            message = transport_message(method, request.url.copy_with(query=None), reason, os_error)
            raise TransportError(
                message + ("" if maybe_sent else " (not sent)"),
                maybe_sent=maybe_sent,
                reason=reason,
            ) from os_error
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{method} {url} failed: {type(exc).__name__}", maybe_sent=True
            ) from None
        finally:
            self._unstoppable(stopper)
        return self._read(method, url, status, headers, raw, version, time.perf_counter() - started)

    def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        version: APIVersion | None,
    ) -> httpx.Request:
        """The request as it goes on the wire (before its auth flow adds credentials)."""
        headers = dict(wire_version_header(version))
        # What the answer may be encoded with: what read_body decodes within its size limit.
        headers["Accept-Encoding"] = ACCEPTED_ENCODINGS
        content: bytes | None = None
        if json_body is not None:
            content = _JSON.encode(json_body).encode()
            headers["Content-Type"] = "application/json"
        extensions = {MAX_ANSWER_BYTES: self._settings.max_answer_bytes}
        if self._engine is not None:
            # The client's own headers under this request's, as build_request merges them; the
            # rest of what it merges (a base URL, cookies, its timeouts) this client has none
            # of, or the engine does not use. It costs three times what the request itself does.
            return httpx.Request(
                method,
                _parsed_url(url),
                params=params,
                headers={**self._client_headers, **headers},
                content=content,
                extensions=extensions,
            )
        return client.build_request(
            method,
            _parsed_url(url),
            params=params,
            headers=headers,
            content=content,
            extensions=extensions,
        )

    async def _exchange(
        self,
        client: httpx.AsyncClient,
        request: httpx.Request,
        url: str,
        params: Mapping[str, str] | None,
        authenticated: bool,
    ) -> _Exchanged:
        """The request on the wire and its whole answer: status, headers, body, and whether
        ``request_timeout`` ran out first (then the rest is empty)."""
        with anyio.move_on_after(self._settings.request_timeout):
            engine = self._engine
            try:
                if engine is not None:
                    auth = self._auth if authenticated else None
                    text = _url_text(url) if params is None else None
                    _, answer = await engine.send(request, auth, text)
                    return answer.status, answer.headers, answer.body, False
                response = await self._send_unredirected(client, request, authenticated)
            except RuntimeError:
                # httpx and aiohttp refuse to send on a closed client: the client was closed
                # while this request waited for its turn (a reconciliation after a rebuild's
                # answer that closing waited for), so it was never sent.
                if self._client is not client:
                    raise ClientClosed(
                        f"{request.method} {url} was not sent: the client was closed"
                    ) from None
                raise
            try:
                raw = await read_body(response, self._settings.max_answer_bytes)
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
            return response.status_code, _header_dict(response.headers), raw, False
        return 0, {}, b"", True

    async def _send_unredirected(
        self, client: httpx.AsyncClient, request: httpx.Request, authenticated: bool
    ) -> httpx.Response:
        """Send without following redirects, whatever the client's own setting (a caller's
        client may follow them): a redirect would take the credentials to another host. The
        answer is streamed, for :func:`read_body` to read within the size limit."""
        return await client.send(
            request,
            auth=self._auth if authenticated else None,
            stream=True,
            follow_redirects=False,
        )

    def _read(
        self,
        method: str,
        url: str,
        status: int,
        headers: dict[str, str],
        raw: bytes,
        version: APIVersion | None,
        elapsed: float,
    ) -> Answer:
        request_id = request_id_from_headers(headers)
        _telemetry.note_request_id(request_id)  # before the log line below, which is about it
        echoed = _echoed_version(headers)
        logger.debug(
            "%s %s -> %d in %.3fs request_id=%s microversion=%s",
            method, url, status, elapsed, request_id, echoed or version,
        )  # fmt: skip
        if version is not None and echoed is not None and echoed != version:
            logger.warning(
                "asked for microversion %s, the service answered with %s", version, echoed
            )
        if 300 <= status < 400:
            raise redirect_error(method, url, status, headers)
        if status >= 400:
            error = error_from_response(status, headers, raw)
            if isinstance(error, RateLimited):
                self.pacer.on_rate_limited(error.retry_after)
            raise error
        self.pacer.on_success()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise ResponseError(
                    f"{method} {url} answered {status} with a body that is not JSON",
                    status=status,
                    request_id=request_id,
                ) from None
        return Answer(
            status=status,
            headers=headers,
            body=body,
            date=_service_date(headers),
            request_id=request_id,
            version=echoed,
        )
