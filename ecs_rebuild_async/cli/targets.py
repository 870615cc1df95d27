"""What a run is about: servers and images given by id or by name, resolved to ids, and the
servers read before the run (their names, images and states)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

import anyio

from .._client import AsyncEcsClient
from .._errors import NotFound
from .._models import Server
from .config import UsageError

__all__ = ["looks_like_id", "read_servers", "resolve_image", "resolve_servers"]

# Nova's and Glance's ids are UUIDs (with or without dashes): anything else is a name first.
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


def looks_like_id(text: str) -> bool:
    return _UUID.match(text) is not None


def _candidates(servers: Sequence[Server]) -> str:
    return ", ".join(f"{s.id} ({s.status})" for s in servers[:10]) + (
        f" and {len(servers) - 10} more" if len(servers) > 10 else ""
    )


async def resolve_servers(
    client: AsyncEcsClient, given: Sequence[str]
) -> tuple[list[str], dict[str, Server]]:
    """Server ids for what was given, and the servers that finding them read.

    An id is taken as it is; a name must match exactly one server (else a UsageError listing
    the candidates). A name that matches none is tried as an id, as OSC does.
    """
    ids: list[str] = []
    read: dict[str, Server] = {}
    for item in given:
        if looks_like_id(item):
            ids.append(item)
            continue
        found = await client.find_servers(exact_name=item)
        if len(found) > 1:
            raise UsageError(
                f"server name {item!r} matches {len(found)} servers: {_candidates(found)}; "
                "give an id"
            )
        if found:
            ids.append(found[0].id)
            read[found[0].id] = found[0]
            continue
        try:
            server = await client.get_server(item)
        except (NotFound, ValueError):
            raise UsageError(f"no server is named {item!r}, and no server has that id") from None
        ids.append(server.id)
        read[server.id] = server
    return list(dict.fromkeys(ids)), read


async def read_servers(
    client: AsyncEcsClient, server_ids: Sequence[str], concurrency: int
) -> dict[str, Server]:
    """Read each server once (at most ``concurrency`` at a time); the ones not found are left
    out, for the run to report as not found."""
    found: dict[str, Server] = {}
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(server_id: str) -> None:
        async with limiter:
            with contextlib.suppress(NotFound):
                found[server_id] = await client.get_server(server_id)

    async with anyio.create_task_group() as group:
        for server_id in server_ids:
            group.start_soon(one, server_id)
    return found


async def resolve_image(client: AsyncEcsClient, given: str) -> str:
    """An image id for an id or a name (a name must match exactly one image)."""
    if looks_like_id(given):
        return given
    found = await client.find_images(given)
    if not found:
        raise UsageError(f"no image is named {given!r}")
    if len(found) > 1:
        raise UsageError(
            f"image name {given!r} matches {len(found)} images: {', '.join(found[:10])}; give an id"
        )
    return found[0]
