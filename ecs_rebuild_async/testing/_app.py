"""The pure request handler: routing, auth, microversions, injected faults, counters."""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs

from . import _compute
from ._aftermath import AFTERMATH_KINDS, spoil_answer
from ._aksk import verify
from ._faults import InjectedFault
from ._identity import issue_token, unauthorized
from ._replies import Reply, Request, json_reply, nova_fault
from ._service import Service
from ._versioning import (
    VersionError,
    requested_version,
    version_document,
    versions_document,
)
from ._views import Links

__all__ = ["RECORD_PATH", "dispatch", "route_of"]

_IDENTITY = "/identity/v3"
#: Not part of the API: the fake's own record, for tests that drive it from another process.
RECORD_PATH = "/_fake/record"
#: Where the fake's image service (a sliver of Glance) lives, as its catalog says.
IMAGE_PREFIX = "/image"
_VERSION_HEADERS = ("OpenStack-API-Version", "X-OpenStack-Nova-API-Version")
_UNEXPECTED = (
    "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach "
    "the Nova API log if possible.\n<class 'RuntimeError'>"
)

#: Actions with a null body: ``{"os-stop": null}`` and ``{"os-start": null}``.
_POWER_ACTIONS = frozenset({"os-stop", "os-start"})

Handler = Callable[[Request], Reply]


def _split(path: str) -> tuple[str | None, list[str]]:
    """``("v2.1"|"v2"|None, segments after the API prefix)``."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] in ("v2.1", "v2"):
        return parts[0], parts[1:]
    return None, parts


def _compute_parts(parts: list[str]) -> tuple[str | None, list[str]]:
    """Strip the optional project id: ``(project_id or None, rest)``."""
    if parts and parts[0] != "servers":
        return parts[0], parts[1:]
    return None, parts


def route_of(request: Request) -> str:
    """The route name counted in ``stats.requests`` and matched by fault scripts."""
    method, path = request.method, request.path
    if path == "/":
        return "versions" if method == "GET" else "unknown"
    if path.rstrip("/") == RECORD_PATH:
        return "fake_record" if method == "GET" else "unknown"
    if path.rstrip("/") == _IDENTITY + "/auth/tokens":
        return "tokens" if method == "POST" else "unknown"
    if path.startswith("/health/") and method == "GET":
        return "health"
    if path.rstrip("/") == IMAGE_PREFIX + "/v2/images":
        return "images" if method == "GET" else "unknown"
    prefix, parts = _split(path)
    if prefix is None:
        return "unknown"
    if not parts:
        return "version" if method == "GET" else "unknown"
    _, rest = _compute_parts(parts)
    n = len(rest)
    if n == 0 or rest[0] != "servers":
        return "unknown"
    if method == "GET":
        if n == 1:
            return "servers"
        if n == 2:
            return "servers_detail" if rest[1] == "detail" else "server"
        if n == 3 and rest[2] == "os-instance-actions":
            return "instance_actions"
        if n == 4 and rest[2] == "os-instance-actions":
            return "instance_action"
    if method == "POST" and n == 3 and rest[2] == "action":
        return "rebuild" if _peek_action(request.body) == "rebuild" else "action"
    return "unknown"


def _peek_action(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, dict) and len(parsed) == 1:
        return str(next(iter(parsed)))
    return None


def _authenticated(service: Service, request: Request, now: float) -> Reply | None:
    """None when the request may pass; else the 401 that the gateway or keystonemiddleware sends."""
    token = request.header("X-Auth-Token")
    if token is not None:
        if service.tokens.valid(token, now):
            return None
        return unauthorized(f"{request.base}{_IDENTITY}")
    auth = request.header("Authorization")
    if auth is not None and auth.startswith("SDK-HMAC-SHA256"):
        ident = service.identity
        ok = verify(
            request.method,
            request.raw_path,
            request.query,
            request.headers,
            request.body,
            access_key=ident.access_key,
            secret_key=ident.secret_key,
        )
        if ok:
            return None
        body = {
            "error_code": "APIGW.0301",
            "error_msg": "Incorrect IAM authentication information: verify aksk signature fail",
            "request_id": service.new_uuid().replace("-", ""),
        }
        return json_reply(401, body)
    return unauthorized(f"{request.base}{_IDENTITY}")


def _compute_api(service: Service, request: Request, route: str, now: float) -> Reply:
    prefix, parts = _split(request.path)
    legacy = prefix == "v2"
    if not parts:
        major = "v2.0" if legacy else "v2.1"
        settings = service.settings
        doc = version_document(request.base, major, settings.min_version, settings.max_version)
        return json_reply(200, doc)
    denied = _authenticated(service, request, now)
    if denied is not None:
        return denied
    request_id = service.new_request_id()
    ids = [("x-openstack-request-id", request_id), ("x-compute-request-id", request_id)]
    if legacy:
        # /v2 strips the microversion headers and answers as 2.1 (LegacyV2CompatibleWrapper).
        reply = _compute_route(service, request, route, (2, 1), now, request_id)
        reply.headers.extend(ids)
        return reply
    settings = service.settings
    try:
        version = requested_version(request.headers, settings.min_version, settings.max_version)
    except VersionError as exc:
        name = "computeFault" if exc.status == 406 else None
        reply = nova_fault(exc.status, exc.message, name=name)
        if exc.echoed is not None:
            reply.headers.extend(_echo(exc.echoed))
        reply.headers.extend(ids)
        return reply
    reply = _compute_route(service, request, route, version, now, request_id)
    reply.headers.extend(_echo(version))
    reply.headers.extend(ids)
    return reply


def _echo(version: tuple[int, int]) -> list[tuple[str, str]]:
    text = f"{version[0]}.{version[1]}"
    return [
        ("OpenStack-API-Version", f"compute {text}"),
        ("X-OpenStack-Nova-API-Version", text),
        ("Vary", _VERSION_HEADERS[0]),
        ("Vary", _VERSION_HEADERS[1]),
    ]


def _compute_route(
    service: Service,
    request: Request,
    route: str,
    version: tuple[int, int],
    now: float,
    request_id: str,
) -> Reply:
    _, parts = _split(request.path)
    project, rest = _compute_parts(parts)
    ident = service.identity
    if project is not None and project != ident.project_id:
        return nova_fault(
            400,
            f"Malformed request URL: URL's project_id '{project}' doesn't match Context's "
            f"project_id '{ident.project_id}'",
        )
    links = Links(request.base, ident.project_id)
    ctx = _compute.Context(service, request, version, links, now, request_id)
    if route == "servers":
        return _compute.list_servers(ctx, detail=False)
    if route == "servers_detail":
        return _compute.list_servers(ctx, detail=True)
    if route == "server":
        return _compute.get_server(ctx, rest[1])
    if route == "instance_actions":
        return _compute.instance_actions(ctx, rest[1])
    if route == "instance_action":
        return _compute.instance_action(ctx, rest[1], rest[3])
    if route in ("rebuild", "action"):
        parsed = _compute.parse_action(request.body)
        if isinstance(parsed, Reply):
            return parsed
        name, value = parsed
        if name in _POWER_ACTIONS:
            return _compute.power(ctx, rest[1], start=name == "os-start")
        if name != "rebuild":
            return nova_fault(400, f"There is no such action: {name}")
        return _compute.rebuild(ctx, rest[1], value)
    return nova_fault(404, "The resource could not be found.")


def _answer(service: Service, request: Request, route: str, now: float) -> Reply:
    if len(request.body) > service.settings.max_body:
        # oslo.middleware's size limiter answers before Nova: no JSON fault, no Retry-After.
        return Reply(413, [("Content-Type", "text/plain")], b"Request is too large.")
    if route == "versions":
        settings = service.settings
        doc = versions_document(request.base, settings.min_version, settings.max_version)
        return json_reply(200, doc)
    if route == "health":
        return _compute.health(service, request.path.split("/")[2], now)
    if route == "tokens":
        ident = service.identity
        return issue_token(
            request,
            ident,
            service.tokens,
            now=now,
            lifetime=service.settings.token_lifetime,
            compute_url=f"{request.base}/v2.1/{ident.project_id}",
            identity_url=f"{request.base}{_IDENTITY}",
            image_url=f"{request.base}{IMAGE_PREFIX}",
        )
    if route == "images":
        denied = _authenticated(service, request, now)
        return denied if denied is not None else _compute.list_images(service, request.query)
    prefix, _ = _split(request.path)
    if prefix is None:
        settings = service.settings
        doc = versions_document(request.base, settings.min_version, settings.max_version)
        return json_reply(300, doc)
    return _compute_api(service, request, route, now)


def _injected(service: Service, fault: InjectedFault) -> Reply | None:
    """The reply that replaces the real one, or None when the fault only changes delivery."""
    if fault.kind == "500":
        return nova_fault(500, _UNEXPECTED, name="computeFault")
    if fault.kind == "503":
        return nova_fault(503, "Service Unavailable")
    if fault.kind in ("429", "413"):
        retry = fault.retry_after or service.faults.retry_after
        return nova_fault(int(fault.kind), "This request was rate-limited.", retry_after=retry)
    return None


Recorder = Callable[[], object]


def _mixed_up(service: Service, request: Request) -> Request:
    """The request as a confused proxy forwards it: for the next server in creation order.

    Only the routed path changes; the raw path (what a signature covers) stays as sent."""
    head, _, server_id = request.path.rstrip("/").rpartition("/")
    record = service.servers.get(server_id)
    if record is None:
        return request
    order = service.order
    for step in range(1, len(order)):
        other = order[(record.index + step) % len(order)]
        if other.deleted_at is None:
            return attrs.evolve(request, path=f"{head}/{other.id}")
    return request


def dispatch(service: Service, request: Request, recorder: Recorder | None = None) -> Reply:
    """Answer one request from the in-memory state at the fake clock's current time."""
    now = service.clock.now()
    route = route_of(request)
    if route == "fake_record" and recorder is not None:
        # Neither counted, logged nor faulted: reading the record must not change it.
        record = json_reply(200, recorder())
        date = service.quirks.date_value(now)
        if date is not None:
            record.headers.append(("Date", date))
        return record
    service.log.append(request)
    service.stats.requests[(request.method, route)] += 1
    fault = service.faults.pick(request.method, route)
    if fault is not None and fault.kind == "other_server" and route == "server":
        request = _mixed_up(service, request)
    reply = _injected(service, fault) if fault is not None else None
    if reply is None:
        reply = _answer(service, request, route, now)
    if fault is not None and fault.kind in AFTERMATH_KINDS:
        reply = spoil_answer(fault.kind, reply)
    if fault is not None:
        service.stats.faults[fault.kind] += 1
        if fault.kind == "latency":
            reply.delay = fault.seconds if fault.real else service.clock.to_real(fault.seconds)
        elif fault.kind == "lost":
            reply.lost = True
    date = service.quirks.date_value(now)
    if date is not None:
        reply.headers.append(("Date", date))
    service.stats.responses[reply.status] += 1
    return reply
