"""Handlers of the compute API routes: server GET and lists, rebuild, instance actions."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import attrs

from ._clock import iso_naive_micro, parse_iso
from ._replies import Reply, Request, json_reply, nova_fault
from ._schema import validate_rebuild
from ._service import Service, healthy
from ._state import InstanceAction, Observed, ServerRecord, observe
from ._versioning import Version
from ._views import Links, rebuild_view, server_view

__all__ = [
    "Context",
    "list_images",
    "get_server",
    "health",
    "instance_action",
    "instance_actions",
    "list_servers",
    "power",
    "rebuild",
]


@attrs.frozen
class Context:
    service: Service
    request: Request
    version: Version
    links: Links
    now: float
    request_id: str


def _not_found(server_id: str) -> Reply:
    return nova_fault(404, f"Instance {server_id} could not be found.")


def _view(ctx: Context, seen: Observed) -> dict[str, Any]:
    ident = ctx.service.identity
    return server_view(seen, ctx.version, ctx.links, ident.project_id, ident.user_id)


def get_server(ctx: Context, server_id: str) -> Reply:
    record = ctx.service.visible(server_id, ctx.now)
    if record is None:
        return _not_found(server_id)
    view = _view(ctx, observe(record, ctx.now))
    return json_reply(200, {"server": ctx.service.quirks.spoil(server_id, view, in_listing=False)})


def _time_param(params: dict[str, str], name: str) -> float | Reply | None:
    if name not in params:
        return None
    value = parse_iso(params[name])
    if value is None:
        text = params[name]
        return nova_fault(
            400,
            f"Invalid input for field/attribute {name}. Value: {text}. "
            f"'{text}' is not a 'date-time'",
        )
    return value


def _name_filter(pattern: str | None) -> Callable[[str], bool] | None:
    """Nova's ``name`` filter: a regular expression searched in the name."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error:
        return lambda name: pattern in name
    return lambda name: compiled.search(name) is not None


def _limit(params: dict[str, str], max_limit: int) -> int | Reply:
    if "limit" not in params:
        return max_limit
    try:
        limit = int(params["limit"])
    except ValueError:
        return nova_fault(400, "limit param must be an integer")
    if limit < 0:
        return nova_fault(400, "limit param must be positive")
    return min(limit, max_limit)


def _filters(params: dict[str, str], version: Version) -> Callable[[ServerRecord, Observed], bool]:
    """Nova's list filters besides ``name`` (see ``_name_filter``): ``image``, ``status`` and,
    from 2.26, ``tags`` (all must be present). Others are ignored, as Nova ignores filters a
    non-admin may not use."""
    image = params.get("image")
    status = params.get("status", "").upper() or None
    tags = set(params["tags"].split(",")) if version >= (2, 26) and params.get("tags") else None

    def check(record: ServerRecord, seen: Observed) -> bool:
        if image is not None and record.image_id != image:
            return False
        if status is not None and seen.status != status:
            return False
        return tags is None or tags <= set(record.tags)

    return check


def list_servers(ctx: Context, *, detail: bool) -> Reply:
    """``GET /servers[/detail]``: newest first, changes-since/-before, limit and marker."""
    service = ctx.service
    params = dict(parse_qsl(ctx.request.query, keep_blank_values=True))
    since = _time_param(params, "changes-since")
    # Below 2.66 Nova silently drops changes-before as an unknown filter.
    before = _time_param(params, "changes-before") if ctx.version >= (2, 66) else None
    if isinstance(since, Reply):
        return since
    if isinstance(before, Reply):
        return before
    if since is not None and before is not None and before < since:
        return nova_fault(
            400, "The value of changes-since must be less than or equal to changes-before."
        )
    limit = _limit(params, service.settings.max_limit)
    if isinstance(limit, Reply):
        return limit
    name_filter = _name_filter(params.get("name"))
    start = len(service.order) - 1
    quirks = service.quirks
    marker = params.get("marker")
    if marker is not None and quirks.paging != "ignore_marker":
        if marker not in service.position:
            return nova_fault(400, f"marker [{marker}] not found")
        start = service.position[marker] - 1
    matching = _filters(params, ctx.version)
    with_deleted = since is not None or before is not None
    oldest_deleted = ctx.now - service.settings.deleted_retention
    page: list[dict[str, Any]] = []
    last_id = ""
    order = service.order
    for i in range(start, -1, -1):
        if len(page) >= limit:
            break
        record = order[i]
        if record.deleted_at is not None and (
            not with_deleted or record.deleted_at < oldest_deleted
        ):
            continue
        if name_filter is not None and not name_filter(record.name):
            continue
        seen = observe(record, ctx.now)
        if since is not None and seen.updated_at < since:
            continue
        if not matching(record, seen):
            continue
        if before is not None and seen.updated_at > before:
            continue
        last_id = record.id
        if detail:
            page.append(quirks.spoil(record.id, _view(ctx, seen), in_listing=True))
        else:
            page.append(
                {"id": record.id, "name": record.name, "links": ctx.links.server(record.id)}
            )
    body: dict[str, Any] = {"servers": page}
    if page and len(page) == limit:
        suffix = "/detail" if detail else ""
        if quirks.paging == "next_to_self":
            href = f"{ctx.links.compute}/servers{suffix}?{ctx.request.query}"
        else:
            params["marker"] = last_id
            params["limit"] = str(limit)
            href = f"{ctx.links.compute}/servers{suffix}?{urlencode(params)}"
        body["servers_links"] = [{"href": href, "rel": "next"}]
    return json_reply(200, body)


def _conflict(
    record: ServerRecord, seen: Observed, allowed: tuple[str, ...], action: str = "rebuild"
) -> Reply | None:
    if record.locked:
        return nova_fault(409, f"Instance {record.id} is locked")
    if seen.vm_state not in allowed:
        attr, state = "vm_state", seen.vm_state
    elif seen.task_state is not None:
        attr, state = "task_state", seen.task_state
    else:
        return None
    return nova_fault(409, f"Cannot '{action}' instance {record.id} while it is in {attr} {state}")


def rebuild(ctx: Context, server_id: str, body: Any) -> Reply:
    """``POST /servers/{id}/action`` with ``rebuild``; ``body`` is the ``rebuild`` value."""
    service = ctx.service
    settings = service.settings
    problem = validate_rebuild(body, ctx.version, ecs=settings.dialect == "ecs")
    if problem is not None:
        return nova_fault(400, problem)
    record = service.visible(server_id, ctx.now)
    if record is None:
        return _not_found(server_id)
    # The checks use the true state: a lagging read replica does not fool the API's own save.
    truth = observe(record, ctx.now, lagged=False)
    allowed = ("active", "stopped") if settings.dialect == "ecs" else ("active", "stopped", "error")
    conflict = _conflict(record, truth, allowed)
    if conflict is not None:
        return conflict
    if body["imageRef"] not in service.images:
        return nova_fault(400, "Cannot find image for rebuild")
    key_name = body.get("key_name")
    if key_name is not None and key_name not in service.keypairs:
        return nova_fault(400, "Invalid key_name provided.")
    if len(body.get("metadata", {})) > settings.metadata_items:
        return nova_fault(
            403, f"Maximum number of metadata items exceeds {settings.metadata_items}"
        )
    admin_pass = body.get("adminPass") or service.new_password()
    service.accept_rebuild(record, body, ctx.now, ctx.request_id)
    if settings.accepted_body == "stale":
        # Nova's samples: the new fields, but the state from before the rebuild.
        seen = Observed(record, truth.vm_state, None, truth.updated_at, None)
    else:
        seen = observe(record, ctx.now, lagged=False)
    ident = service.identity
    view = rebuild_view(seen, ctx.version, ctx.links, ident.project_id, ident.user_id, admin_pass)
    location = ctx.links.server(record.id)[0]["href"]
    return json_reply(202, {"server": view}, [("Location", location)])


def power(ctx: Context, server_id: str, *, start: bool) -> Reply:
    """``os-start`` / ``os-stop``: 202 with no body; 409 unless stopped / active or error
    with no task (nova/compute/api.py ``start`` and ``stop``)."""
    service = ctx.service
    record = service.visible(server_id, ctx.now)
    if record is None:
        return _not_found(server_id)
    truth = observe(record, ctx.now, lagged=False)
    allowed = ("stopped",) if start else ("active", "error")
    conflict = _conflict(record, truth, allowed, "start" if start else "stop")
    if conflict is not None:
        return conflict
    service.accept_power(record, start=start, now=ctx.now, request_id=ctx.request_id)
    return Reply(202, [("Content-Type", "application/json")], b"")


def parse_action(raw: bytes) -> tuple[str, Any] | Reply:
    """The action name and its value, or Nova's 400 for a body it cannot route."""
    try:
        body = json.loads(raw)
    except ValueError:
        return nova_fault(400, "Malformed request body")
    if not isinstance(body, dict) or len(body) != 1:
        return nova_fault(400, "Malformed request body")
    ((name, value),) = body.items()
    return name, value


def _action_body(ctx: Context, record: ServerRecord, action: InstanceAction) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": action.name,
        "instance_uuid": record.id,
        "message": "Error" if action.failed else None,
        "project_id": action.project_id,
        "request_id": action.request_id,
        "start_time": iso_naive_micro(action.start_time),
        "user_id": action.user_id,
    }
    if ctx.version >= (2, 58):
        body["updated_at"] = iso_naive_micro(action.finish_time or action.start_time)
    return body


def instance_actions(ctx: Context, server_id: str) -> Reply:
    record = ctx.service.visible(server_id, ctx.now)
    if record is None:
        return _not_found(server_id)
    observe(record, ctx.now, lagged=False)  # settles a finished rebuild's action
    actions = [_action_body(ctx, record, a) for a in reversed(record.actions)]
    return json_reply(200, {"instanceActions": actions})


def instance_action(ctx: Context, server_id: str, request_id: str) -> Reply:
    record = ctx.service.visible(server_id, ctx.now)
    if record is None:
        return _not_found(server_id)
    observe(record, ctx.now, lagged=False)
    action = next((a for a in record.actions if a.request_id == request_id), None)
    if action is None:
        return nova_fault(
            404, f"Action for request_id {request_id} on instance {server_id} not found"
        )
    body = _action_body(ctx, record, action)
    if ctx.version >= (2, 51):
        # Events are visible to non-admins from 2.51.
        finish = action.finish_time
        body["events"] = [
            {
                "event": f"compute_{action.name}_instance",
                "start_time": iso_naive_micro(action.start_time),
                "finish_time": iso_naive_micro(finish) if finish is not None else None,
                "result": None if finish is None else ("Error" if action.failed else "Success"),
            }
        ]
    return json_reply(200, {"instanceAction": body})


def health(service: Service, server_id: str, now: float) -> Reply:
    """``GET /health/{id}``: what the server's own health endpoint would answer (no auth)."""
    record = service.visible(server_id, now)
    if record is None:
        return Reply(404, [("Content-Type", "text/plain")], b"no such server\n")
    if healthy(record, now):
        return Reply(200, [("Content-Type", "text/plain")], b"ok\n")
    return Reply(503, [("Content-Type", "text/plain")], b"unhealthy\n")


def list_images(service: Service, query: str) -> Reply:
    """Glance's ``GET /v2/images[?name=...]``, just enough to find an image by name."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    wanted = params.get("name")
    images = [
        {"id": image_id, "name": name, "status": "active", "visibility": "public"}
        for image_id, name in service.images.items()
        if wanted is None or name == wanted
    ]
    return json_reply(
        200, {"images": images, "first": "/v2/images", "schema": "/v2/schemas/images"}
    )
