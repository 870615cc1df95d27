"""Traces, metrics and the context of log records: the one module that imports OpenTelemetry.

OpenTelemetry is optional: the ``otel`` extra brings its API only, and the host application
brings the SDK and its exporters, as OpenTelemetry's guidance for libraries says. Without the
API, or while no tracer or meter provider is configured, the hooks below create nothing and
record nothing: each costs a few attribute reads (OpenTelemetry sets a provider once per
process, so once one is found it is kept).

Other modules call this small API and never OpenTelemetry itself:

* :func:`rebuild` -- a scope per rebuild (``rebuild_and_wait``, each server of a fleet): a span
  with the server id, microversion, outcome kind and error type; the rebuild counter and the
  time to its proven outcome. A fleet's server ends its scope with the outcome its health gate
  gave (:meth:`_RebuildScope.ended`); :func:`rollback` is the scope of its rebuild back.
* :func:`waiting` -- one wait: a span the shared poller's listings link to, and the
  waits-in-flight counter.
* :func:`phase` -- a phase reached (submitted, running, done, failed, reconciled...): an event
  on the rebuild's span, and the phase of its log records.
* :func:`http_request` -- one HTTP attempt, by OpenTelemetry's HTTP client conventions.
* :func:`listing`, :func:`read_for` -- the shared poller's listings (their own spans, linked
  to every wait they served) and its per-server reads (children of the wait they serve).
* :func:`fleet` -- a bulk run, with its counts; :func:`rollout_progress` -- its rollout's
  phases (canary, checkpoints, failure budget, stop, rollback) as events on the run's span;
  :func:`skipped` -- servers a rollout skipped, counted with the rebuilds.
* :func:`rate_limited` -- a rate-limit pause.

Every log record of the ``ecs_rebuild_async`` logger made inside a rebuild or wait carries
``server_id``, ``request_id``, ``phase`` and ``microversion`` attributes (as ``extra`` would).
Nothing here ever takes a request body, a header or an error message: no secret can reach an
attribute, an event, a metric label or a log field through it.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

from ._errors import EcsError
from ._version import __version__

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind, StatusCode

    _AVAILABLE = True
except ImportError:  # the otel extra is not installed: every hook is a no-op
    _AVAILABLE = False

__all__ = [
    "LOG_FIELDS",
    "about",
    "fleet",
    "http_request",
    "listing",
    "phase",
    "rate_limited",
    "read_for",
    "rebuild",
    "rollback",
    "rollout_progress",
    "note_request_id",
    "skipped",
    "url_template",
    "waiting",
]

_NAME = "ecs_rebuild_async"
#: The attributes every log record about a server carries.
LOG_FIELDS = ("server_id", "request_id", "phase", "microversion")

# -- providers: looked up until one is configured, then kept ------------------------------------

_tracer: Any = None
_instruments: _Instruments | None = None


# Asking the API for its provider costs microseconds (it looks up an environment variable each
# time), and every request asks while none is set: first look at the API's own global, when it
# has the one this was written against, and at the variable as the process started. An API
# without that global is asked every time, which is only slower.
_TRACE_GLOBAL = _AVAILABLE and hasattr(otel_trace, "_TRACER_PROVIDER")
_METER_MODULE: Any = None
if _AVAILABLE:
    _METER_MODULE = sys.modules.get("opentelemetry.metrics._internal")
_METER_GLOBAL = _METER_MODULE is not None and hasattr(_METER_MODULE, "_METER_PROVIDER")
_FROM_ENVIRONMENT = any(
    name in os.environ for name in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")
)


def _live_tracer() -> Any:
    """The library's tracer, or None while no tracer provider is configured."""
    global _tracer
    if _tracer is not None or not _AVAILABLE:
        return _tracer
    if _TRACE_GLOBAL and not _FROM_ENVIRONMENT and otel_trace._TRACER_PROVIDER is None:
        return None
    provider = otel_trace.get_tracer_provider()
    if isinstance(provider, (ProxyTracerProvider, NoOpTracerProvider)):
        return None
    _tracer = provider.get_tracer(_NAME, __version__)
    return _tracer


def _live_instruments() -> _Instruments | None:
    """The library's instruments, or None while no meter provider is configured."""
    global _instruments
    if _instruments is not None or not _AVAILABLE:
        return _instruments
    if _METER_GLOBAL and not _FROM_ENVIRONMENT and _METER_MODULE._METER_PROVIDER is None:
        return None
    provider = otel_metrics.get_meter_provider()
    # Unset, the API answers with a private proxy class: recognised by name, not imported.
    if isinstance(provider, NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider":
        return None
    _instruments = _Instruments(provider.get_meter(_NAME, __version__))
    return _instruments


class _Instruments:
    """The library's metric instruments, made once a meter provider is configured."""

    def __init__(self, meter: Any) -> None:
        self.rebuilds = meter.create_counter(
            "ecs_rebuild.rebuilds", unit="{rebuild}", description="Rebuilds by outcome kind"
        )
        self.rebuild_duration = meter.create_histogram(
            "ecs_rebuild.rebuild.duration",
            unit="s",
            description="Time from the start of a rebuild to its proven outcome, by outcome kind",
        )
        self.requests = meter.create_counter(
            "ecs_rebuild.requests",
            unit="{request}",
            description="HTTP requests sent, by kind and status (or error type)",
        )
        self.request_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests",
        )
        self.pauses = meter.create_counter(
            "ecs_rebuild.rate_limit.pauses",
            unit="{pause}",
            description="Rate-limit refusals that paused every request to the endpoint",
        )
        self.pause_seconds = meter.create_counter(
            "ecs_rebuild.rate_limit.pause_duration",
            unit="s",
            description="Seconds of pause the rate-limit refusals asked for (capped, jittered)",
        )
        self.waits = meter.create_up_down_counter(
            "ecs_rebuild.waits.active", unit="{wait}", description="Waits in flight"
        )


# -- what a server's records carry ------------------------------------------------------------


class _About:
    """The server a piece of work is about: its log fields and, when tracing, its span."""

    __slots__ = ("microversion", "phase", "request_id", "server_id", "span")

    microversion: str | None
    phase: str | None
    request_id: str | None

    def __init__(self, server_id: str, span: Any) -> None:
        self.server_id = server_id
        self.span = span  # the span that phase events go to, or None
        self.phase = None
        self.request_id = None
        self.microversion = None


_current: contextvars.ContextVar[_About | None] = contextvars.ContextVar(
    "ecs_rebuild_async.about", default=None
)
# The bulk run in this context, while tracing: its span takes the rollout's events, and it
# knows the span of each server's rebuild (a rebuild back links to it).
_fleet_current: contextvars.ContextVar[_FleetScope | None] = contextvars.ContextVar(
    "ecs_rebuild_async.fleet", default=None
)


class _LogFields(logging.Filter):
    """Gives every record made about a server its fields, unless the caller passed them."""

    def filter(self, record: logging.LogRecord) -> bool:
        about = _current.get()
        if about is not None and not hasattr(record, "server_id"):
            record.server_id = about.server_id
            record.request_id = about.request_id
            record.phase = about.phase
            record.microversion = about.microversion
        return True


# The library's logger, and those that log on its behalf inside a server's work (httpx logs
# each request; httpcore each connection step).
_FIELDS_FILTER = _LogFields()
for _logger in (_NAME, "httpx", "httpcore.connection", "httpcore.http11", "httpx_aiohttp"):
    logging.getLogger(_logger).addFilter(_FIELDS_FILTER)


def _outcome(exc: BaseException | None, classify: Callable[[EcsError], Any]) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, EcsError):
        kind = classify(exc)
        return str(getattr(kind, "value", kind))
    if not isinstance(exc, Exception):  # cancellation (asyncio, trio, anyio), interruption
        return "cancelled"
    return "error"


def _end_span(
    span: Any, exc: BaseException | None, outcome: str | None, *, failed: bool = False
) -> None:
    if outcome is not None:
        span.set_attribute("ecs_rebuild.outcome", outcome)
    if exc is not None:
        # The type only: a message may quote what the service echoed back.
        span.set_attribute("error.type", type(exc).__name__)
    if exc is not None or failed:
        span.set_status(StatusCode.ERROR)
    span.end()


# -- a rebuild ---------------------------------------------------------------------------------


#: Outcomes that no answer of the service shows, reached at the end of a fleet server's work:
#: each is its span's last event, as the phases the service shows are theirs.
_LATE_OUTCOMES = frozenset({"unhealthy", "rolled_back", "rollback_failed"})


class _RebuildScope:
    __slots__ = (
        "_about",
        "_classify",
        "_context",
        "_ended",
        "_follows",
        "_name",
        "_started",
        "_token",
    )

    def __init__(
        self,
        name: str,
        server_id: str,
        classify: Callable[[EcsError], Any],
        follows: Any = None,
    ) -> None:
        self._name = name
        self._classify = classify
        self._follows = follows  # the span context of the rebuild this one undoes, if any
        self._about = _About(server_id, None)
        self._started = 0.0
        self._context: object = None
        self._token: contextvars.Token[_About | None] | None = None
        self._ended: tuple[str, BaseException | None, bool] | None = None

    def __enter__(self) -> _RebuildScope:
        tracer = _live_tracer()
        if tracer is not None:
            server_id = self._about.server_id
            links = () if self._follows is None else (otel_trace.Link(self._follows),)
            span = tracer.start_span(
                self._name, attributes={"ecs_rebuild.server_id": server_id}, links=links
            )
            self._about.span = span
            self._context = otel_context.attach(otel_trace.set_span_in_context(span))
            fleet = _fleet_current.get()
            if fleet is not None and self._follows is None:
                # A server's rebuild in a fleet: its rebuild back, if one comes, links to it.
                fleet.forward[server_id] = span.get_span_context()
        if _live_instruments() is not None:
            self._started = time.perf_counter()
        self._token = _current.set(self._about)
        return self

    def ended(self, kind: str, error: BaseException | None = None, *, failed: bool = False) -> None:
        """The outcome this rebuild ended with, when no exception says it: its kind, the error
        it carries, and whether it failed without one (a health gate not passed)."""
        self._ended = (kind, error, failed or error is not None)
        if kind in _LATE_OUTCOMES:
            phase(kind)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
        span = self._about.span
        instruments = _instruments if self._started else None
        if span is None and instruments is None:
            return
        error, failed = exc, exc is not None
        if exc is None and self._ended is not None:
            outcome, error, failed = self._ended
        else:
            outcome = _outcome(exc, self._classify)
        if span is not None:
            otel_context.detach(self._context)  # type: ignore[arg-type]  # a token from attach(), typed object here
            if self._about.microversion is not None:
                span.set_attribute("ecs_rebuild.microversion", self._about.microversion)
            _end_span(span, error, outcome, failed=failed)
        if instruments is not None:
            labels = {"ecs_rebuild.outcome": outcome}
            instruments.rebuilds.add(1, labels)
            instruments.rebuild_duration.record(time.perf_counter() - self._started, labels)


def rebuild(
    server_id: str, classify: Callable[[EcsError], Any], *, name: str = "rebuild_and_wait"
) -> _RebuildScope:
    """The scope of one server's rebuild; ``classify`` names the outcome kind of an error."""
    return _RebuildScope(name, server_id, classify)


def rollback(server_id: str, classify: Callable[[EcsError], Any]) -> _RebuildScope:
    """The scope of a fleet server's rebuild back: a span of its own, linked to the span of
    the rebuild it undoes (which ended with that rebuild)."""
    fleet = _fleet_current.get()
    follows = None if fleet is None else fleet.forward.get(server_id)
    return _RebuildScope("rollback", server_id, classify, follows)


def skipped(count: int) -> None:
    """A rollout skipped ``count`` servers (already matching, or never started): outcomes
    reached without a rebuild, counted with the rebuilds."""
    instruments = _live_instruments()
    if instruments is not None and count:
        instruments.rebuilds.add(count, {"ecs_rebuild.outcome": "skipped"})


class _AboutScope:
    """Work about one server outside a rebuild (a read, a rebuild sent without waiting)."""

    __slots__ = ("_server_id", "_token")

    def __init__(self, server_id: str) -> None:
        self._server_id = server_id
        self._token: contextvars.Token[_About | None] | None = None

    def __enter__(self) -> None:
        current = _current.get()
        if current is None or current.server_id != self._server_id:
            self._token = _current.set(_About(self._server_id, None))

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)


def about(server_id: str) -> _AboutScope:
    """The scope of work about ``server_id``, for its log records' fields (no span)."""
    return _AboutScope(server_id)


def phase(name: str) -> None:
    """The rebuild in this context reached a phase: an event on its span (once per change)."""
    about = _current.get()
    if about is None or about.phase == name:
        return
    about.phase = name
    if about.span is not None:
        about.span.add_event(name)


# -- a wait ------------------------------------------------------------------------------------

# The waits in flight while tracing, by (poller, server id): a listing links to their spans,
# and a read of one server is made in the context of a wait for it.
_waits: dict[tuple[int, str], list[tuple[_About, Any]]] = {}


class _WaitScope:
    __slots__ = ("_context", "_counted", "_entry", "_key", "_token")

    def __init__(self, poller: object, server_id: str) -> None:
        self._key = (id(poller), server_id)
        self._entry: tuple[_About, Any] | None = None
        self._context: object = None
        self._token: contextvars.Token[_About | None] | None = None
        self._counted = False

    def __enter__(self) -> None:
        about = _current.get()
        if about is None:  # a wait on its own, not inside a rebuild
            about = _About(self._key[1], None)
            self._token = _current.set(about)
        tracer = _live_tracer()
        if tracer is not None:
            span = tracer.start_span(
                "wait_for_rebuild", attributes={"ecs_rebuild.server_id": self._key[1]}
            )
            if about.span is None:  # on its own, the wait's span has the phase events
                about.span = span
            self._context = otel_context.attach(otel_trace.set_span_in_context(span))
            self._entry = (about, span)
            _waits.setdefault(self._key, []).append(self._entry)
        instruments = _live_instruments()
        if instruments is not None:
            instruments.waits.add(1)
            self._counted = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
        if self._counted and _instruments is not None:
            _instruments.waits.add(-1)
        entry = self._entry
        if entry is None:
            return
        waits = _waits.get(self._key, [])
        if entry in waits:
            waits.remove(entry)
        if not waits:
            _waits.pop(self._key, None)
        otel_context.detach(self._context)  # type: ignore[arg-type]  # a token from attach(), typed object here
        _end_span(entry[1], exc, None)


def waiting(poller: object, server_id: str) -> _WaitScope:
    """The scope of one wait for ``server_id`` served by ``poller``."""
    return _WaitScope(poller, server_id)


class _Nothing:
    """The scope of a hook with nothing to do."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOTHING = _Nothing()


class _ReadScope:
    """A read made by the shared poller for one wait, in that wait's context."""

    __slots__ = ("_context", "_entry", "_token")

    def __init__(self, entry: tuple[_About, Any]) -> None:
        self._entry = entry
        self._context: object = None
        self._token: contextvars.Token[_About | None] | None = None

    def __enter__(self) -> None:
        about, span = self._entry
        self._token = _current.set(about)
        self._context = otel_context.attach(otel_trace.set_span_in_context(span))

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self._context)  # type: ignore[arg-type]  # a token from attach(), typed object here
        if self._token is not None:
            _current.reset(self._token)


def read_for(poller: object, server_id: str) -> _ReadScope | _Nothing:
    """The scope of the poller's read of one server: a child of (one of) the waits it serves."""
    if not _waits:
        return _NOTHING
    entries = _waits.get((id(poller), server_id))
    return _ReadScope(entries[0]) if entries else _NOTHING


class _WithServerId(Protocol):
    @property
    def server_id(self) -> str: ...


class _ListingScope:
    """One listing of the shared poller: a span of its own, linked to every wait it served."""

    __slots__ = ("_context", "_span")

    def __init__(self, span: Any) -> None:
        self._span = span
        self._context: object = None

    def __enter__(self) -> None:
        self._context = otel_context.attach(otel_trace.set_span_in_context(self._span))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._context)  # type: ignore[arg-type]  # a token from attach(), typed object here
        _end_span(self._span, exc, None)


def listing(poller: object, watches: Iterable[_WithServerId]) -> _ListingScope | _Nothing:
    """The scope of one listing by ``poller`` for ``watches`` (anything with a ``server_id``)."""
    tracer = _live_tracer()
    if tracer is None:
        return _NOTHING
    key = id(poller)
    links = []
    served = 0
    for watch in watches:
        served += 1
        for _, span in _waits.get((key, watch.server_id), ()):
            links.append(otel_trace.Link(span.get_span_context()))
    # A root span: the listing serves every wait alike, not the one whose task runs it.
    span = tracer.start_span(
        "poll_listing",
        context=otel_context.Context(),
        links=links,
        attributes={"ecs_rebuild.poll.watched": served},
    )
    return _ListingScope(span)


# -- HTTP requests -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _url_parts(url: str) -> tuple[str, str, str | None, int | None, str]:
    """(url template, request kind, host, port, scheme) of a URL without its query."""
    parts = urlsplit(url)
    segments = [segment for segment in parts.path.split("/") if segment]
    template: list[str] = []
    previous = ""
    for segment in segments:
        if previous in ("v2.1", "v2") and segment != "servers":
            template.append("{project_id}")
        elif previous == "servers" and segment != "detail":
            template.append("{server_id}")
        elif previous == "os-instance-actions":
            template.append("{request_id}")
        else:
            template.append(segment)
        previous = segment
    path = "/" + "/".join(template)
    if path.endswith("/action"):
        kind = "action"
    elif path.endswith("/servers/detail"):
        kind = "list"
    elif path.endswith("/os-instance-actions"):
        kind = "instance-actions"
    elif path.endswith("/servers/{server_id}"):
        kind = "server"
    elif not template or template[-1] in ("v2.1", "v2"):
        kind = "versions"
    else:
        kind = "other"
    try:
        port = parts.port
    except ValueError:
        port = None
    return path, kind, parts.hostname, port, parts.scheme


def url_template(url: str) -> str:
    """The URL's path with its ids (project, server, request) as placeholders, no query."""
    return _url_parts(url)[0]


class _HttpScope:
    """One HTTP attempt: a CLIENT span by OpenTelemetry's HTTP conventions, and its metrics."""

    __slots__ = (
        "_context",
        "_instruments",
        "_kind",
        "_method",
        "_request_id",
        "_span",
        "_started",
        "_status",
        "_template",
        "_version",
    )

    def __init__(self, method: str, url: str, version: object, tracer: Any, instruments: Any):
        template, kind, host, port, scheme = _url_parts(url)
        self._method = method
        self._template = template
        self._kind = kind
        self._version = None if version is None else str(version)
        self._instruments = instruments
        self._status: int | None = None
        self._request_id: str | None = None
        self._context: object = None
        self._span: Any = None
        if tracer is not None:
            attributes: dict[str, Any] = {
                "http.request.method": method,
                "url.template": template,
                "url.scheme": scheme,
                "ecs_rebuild.request.kind": kind,
            }
            if host:
                attributes["server.address"] = host
            if port is not None:
                attributes["server.port"] = port
            if self._version is not None:
                attributes["ecs_rebuild.microversion"] = self._version
            self._span = tracer.start_span(
                f"{method} {template}", kind=SpanKind.CLIENT, attributes=attributes
            )
        self._started = time.perf_counter()
        _note_version(kind, version)

    def __enter__(self) -> _HttpScope:
        if self._span is not None:
            self._context = otel_context.attach(otel_trace.set_span_in_context(self._span))
        return self

    def answered(self, status: int, request_id: str | None) -> None:
        self._status, self._request_id = status, request_id

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        status, request_id = self._status, self._request_id
        error_type: str | None = None
        if exc is not None:
            status = getattr(exc, "status", None) or status
            request_id = getattr(exc, "request_id", None) or request_id
            # By the conventions: the status code of an error answer, else the error's type
            # (a transport failure, or a 2xx whose body cannot be read).
            error_type = str(status) if status is not None and status >= 400 else type(exc).__name__
        span = self._span
        if span is not None:
            otel_context.detach(self._context)  # type: ignore[arg-type]  # a token from attach(), typed object here
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if request_id is not None:
                span.set_attribute("ecs_rebuild.request_id", request_id)
            if error_type is not None:
                span.set_attribute("error.type", error_type)
                span.set_status(StatusCode.ERROR)
            span.end()
        instruments = self._instruments
        if instruments is not None:
            labels: dict[str, Any] = {
                "http.request.method": self._method,
                "url.template": self._template,
                "ecs_rebuild.request.kind": self._kind,
            }
            if status is not None:
                labels["http.response.status_code"] = status
            if error_type is not None:
                labels["error.type"] = error_type
            instruments.requests.add(1, labels)
            instruments.request_duration.record(time.perf_counter() - self._started, labels)


def _note_version(kind: str, version: object) -> None:
    """The microversion a rebuild is sent with is its records' microversion."""
    if kind == "action" and version is not None:
        about = _current.get()
        if about is not None:
            about.microversion = str(version)


def note_request_id(value: str | None) -> None:
    """An answer came with this request id: the id of the records about it from now on."""
    if value is not None:
        about = _current.get()
        if about is not None:
            about.request_id = value


class _NoHttp:
    """An HTTP attempt with nothing to record (the session notes its request id itself)."""

    __slots__ = ()

    def __enter__(self) -> _NoHttp:
        return self

    def answered(self, status: int, request_id: str | None) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_HTTP = _NoHttp()


def http_request(method: str, url: str, version: object = None) -> _HttpScope | _NoHttp:
    """The scope of one HTTP attempt to ``url`` (without its query) with a microversion."""
    tracer = _live_tracer()
    instruments = _live_instruments()
    if tracer is None and instruments is None:
        if version is not None and url.endswith("/action"):
            _note_version("action", version)
        return _NO_HTTP
    return _HttpScope(method, url, version, tracer, instruments)


def rate_limited(pause: float) -> None:
    """The endpoint refused a request for its rate: every request pauses ``pause`` seconds."""
    instruments = _live_instruments()
    if instruments is not None:
        instruments.pauses.add(1)
        instruments.pause_seconds.add(pause)
    if _live_tracer() is not None:
        otel_trace.get_current_span().add_event(
            "rate_limited", {"ecs_rebuild.pause_seconds": pause}
        )


# -- fleets ----------------------------------------------------------------------------------


class _RolloutState(Protocol):
    """What the fleet's span reads of a rollout's state (the scheduler's record of it)."""

    @property
    def phase(self) -> str: ...
    @property
    def canary(self) -> Sequence[str]: ...
    @property
    def canary_passed(self) -> bool: ...
    @property
    def started(self) -> int: ...
    @property
    def finished(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def failure_budget(self) -> int | None: ...
    @property
    def checkpoints_passed(self) -> Sequence[float]: ...
    @property
    def checkpoint_due(self) -> float | None: ...
    @property
    def stopped_reason(self) -> str | None: ...
    @property
    def skipped_matching(self) -> int: ...
    @property
    def rollback_total(self) -> int: ...
    @property
    def rollback_finished(self) -> int: ...


class _Report(Protocol):
    """What a fleet span reads of a bulk run's report when it ends."""

    @property
    def total(self) -> int: ...

    @property
    def submitted(self) -> set[str]: ...

    @property
    def rollout(self) -> _RolloutState | None: ...

    def counts(self) -> Mapping[str, int]: ...


_ROLLOUT = "ecs_rebuild.rollout."


class _RolloutEvents:
    """The rollout's phases as events on the fleet's span: each change of its state, once."""

    __slots__ = (
        "_budget_spent",
        "_canary_passed",
        "_canary_started",
        "_due",
        "_passed",
        "_rollback_finished",
        "_rollback_started",
        "_stopped",
    )

    def __init__(self) -> None:
        self._canary_started = self._canary_passed = self._budget_spent = False
        self._stopped = self._rollback_started = self._rollback_finished = False
        self._due: float | None = None
        self._passed = 0

    def seen(self, state: _RolloutState, span: Any) -> None:
        if state.canary and state.started and not self._canary_started:
            self._canary_started = True
            span.add_event("canary_started", {_ROLLOUT + "canary": len(state.canary)})
        if state.canary and state.canary_passed and not self._canary_passed:
            self._canary_passed = True
            span.add_event("canary_passed", {_ROLLOUT + "finished": state.finished})
        due = state.checkpoint_due
        if due is not None and due != self._due:
            span.add_event(
                "checkpoint_reached",
                {_ROLLOUT + "checkpoint": due, _ROLLOUT + "finished": state.finished},
            )
        self._due = due
        stopping = state.stopped_reason is not None and not self._stopped
        answered = list(state.checkpoints_passed[self._passed :])
        self._passed += len(answered)
        if stopping and answered:
            # Nothing runs while a checkpoint is due: a stop seen with its answer is that
            # answer (no), told by the stop event below.
            answered.pop()
        for fraction in answered:
            span.add_event("checkpoint_passed", {_ROLLOUT + "checkpoint": fraction})
        budget = state.failure_budget
        if budget is not None and state.failures > budget and not self._budget_spent:
            self._budget_spent = True
            span.add_event(
                "budget_spent",
                {_ROLLOUT + "failures": state.failures, _ROLLOUT + "failure_budget": budget},
            )
        if stopping:
            self._stopped = True
            span.add_event("stopped", {_ROLLOUT + "stopped_reason": str(state.stopped_reason)})
        if state.phase == "rolling_back":
            if not self._rollback_started:
                self._rollback_started = True
                span.add_event(
                    "rollback_started", {_ROLLOUT + "rollback.total": state.rollback_total}
                )
            if state.rollback_finished >= state.rollback_total and not self._rollback_finished:
                self._rollback_finished = True
                span.add_event(
                    "rollback_finished",
                    {_ROLLOUT + "rollback.finished": state.rollback_finished},
                )


def _rollout_attributes(state: _RolloutState) -> dict[str, Any]:
    """The rollout's counts on the fleet's span, those that say something (none for a run
    without a policy)."""
    found: dict[str, Any] = {}
    if state.canary:
        found[_ROLLOUT + "canary"] = len(state.canary)
    if state.failure_budget is not None:
        found[_ROLLOUT + "failure_budget"] = state.failure_budget
    if state.checkpoints_passed:
        found[_ROLLOUT + "checkpoints_passed"] = len(state.checkpoints_passed)
    if state.skipped_matching:
        found[_ROLLOUT + "skipped_matching"] = state.skipped_matching
    if state.stopped_reason is not None:
        found[_ROLLOUT + "stopped_reason"] = state.stopped_reason
    if state.phase == "rolling_back":
        found[_ROLLOUT + "rollback.total"] = state.rollback_total
        found[_ROLLOUT + "rollback.finished"] = state.rollback_finished
    return found


class _FleetScope:
    __slots__ = ("_context", "_events", "_span", "_token", "forward", "report")

    def __init__(self, span: Any, report: _Report) -> None:
        self._span = span
        self.report = report
        self._context: object = None
        self._token: contextvars.Token[_FleetScope | None] | None = None
        self._events = _RolloutEvents()
        #: The span context of each server's rebuild, for the link of its rebuild back.
        self.forward: dict[str, Any] = {}

    def __enter__(self) -> None:
        self._context = otel_context.attach(otel_trace.set_span_in_context(self._span))
        self._token = _fleet_current.set(self)

    def progress(self, state: _RolloutState) -> None:
        self._events.seen(state, self._span)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _fleet_current.reset(self._token)
        otel_context.detach(self._context)  # type: ignore[arg-type]  # a token from attach(), typed object here
        report, span = self.report, self._span
        span.set_attribute("ecs_rebuild.fleet.total", report.total)
        span.set_attribute("ecs_rebuild.fleet.submitted", len(report.submitted))
        for kind, count in sorted(report.counts().items()):
            span.set_attribute(f"ecs_rebuild.fleet.outcomes.{kind}", count)
        state = report.rollout
        if state is not None:
            self.progress(state)  # what changed since the runner last told
            span.set_attributes(_rollout_attributes(state))
        _end_span(span, exc, None)


def fleet(report: _Report, *, name: str = "rebuild_many") -> _FleetScope | _Nothing:
    """The scope of a bulk run whose ``report`` gives the span its counts when it ends
    (inside the scope of the same run, nothing more: the caller began its span earlier)."""
    tracer = _live_tracer()
    if tracer is None:
        return _NOTHING
    current = _fleet_current.get()
    if current is not None and current.report is report:
        return _NOTHING
    return _FleetScope(tracer.start_span(name), report)


def rollout_progress(state: _RolloutState) -> None:
    """The bulk run in this context asked its rollout's scheduler, or told it something: the
    phases its state reached since (canary, checkpoints, budget, stop, rollback) as events."""
    scope = _fleet_current.get()
    if scope is not None:
        scope.progress(state)
