"""Dry runs: every check a rebuild makes, and the exact request it would send, without
sending it. Online, each server is read; offline (a pinned microversion, or ``--offline``),
nothing is read or sent at all."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .._client import AsyncEcsClient
from .._compute import check_server_id
from .._errors import InvalidRequest, NotFound
from .._microversion import parse_version
from .._models import ECS, RebuildRequest, Server, ServerStatus
from .._serde import request_to_wire
from .config import ClientSpec, UsageError, build_request
from .output import DryRunWriter, dry_run_failure, dry_run_record
from .parse import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from .main import Io

__all__ = ["OutputClosed", "offline_dry_run", "online_dry_run"]


class OutputClosed(Exception):
    """Standard output was closed under a command that only prints (a dry run, versions)."""


def _checks(client_dialect: str, version: str | None, *, online: bool) -> list[str]:
    checks = [
        "arguments",
        "request values",
        f"{client_dialect} rules",
        f"fields allowed at microversion {version or '2.1 (no header)'}",
    ]
    if online:
        checks += ["the service's microversions", "the server exists", "the server's state"]
    return checks


async def online_dry_run(
    client: AsyncEcsClient,
    spec: ClientSpec,
    server_ids: Sequence[str],
    requests: Mapping[str, RebuildRequest],
    before: Mapping[str, Server],
    args: argparse.Namespace,
    io: Io,
) -> int:
    writer = DryRunWriter(io.stdout, as_json=args.json or args.format == "json")
    failed = 0
    for server_id in server_ids:
        request = requests[server_id]
        prepared = await client.prepare(server_id, request)
        checks = _checks(client.dialect.value, prepared["microversion"], online=True)
        server = before.get(server_id)
        problem: Exception | None = None
        if server is None:
            problem = NotFound(f"server {server_id} was not found", status=404)
        elif server.status is ServerStatus.ERROR and client.dialect is ECS:
            problem = InvalidRequest(f"server {server_id} is in ERROR, which ECS cannot rebuild")
        if problem is None:
            writer(await dry_run_record(server_id, prepared, spec.auth, checks=checks))
        else:
            failed += 1
            writer(dry_run_failure(server_id, problem, checks))
        if writer.closed:
            raise OutputClosed
    return EXIT_FAILED if failed else EXIT_OK


async def offline_dry_run(
    args: argparse.Namespace, spec: ClientSpec, given: Sequence[str], io: Io
) -> int:
    """Build and check every request with no network at all: the endpoint and the pinned
    microversion come from the arguments, and servers must be given by id."""
    if spec.endpoint is None:
        raise UsageError("an offline dry run needs --endpoint: the service catalog is not read")
    pinned = spec.options.get("microversion")
    if pinned is None:
        raise UsageError("an offline dry run needs --microversion: there is no service to ask")
    if args.image is None:
        raise UsageError("an offline dry run needs --image: the servers are not read")
    request = build_request(args)
    assert request is not None
    version = parse_version(pinned)
    dialect = spec.options.get("dialect", ECS)
    # The client's own checks of the endpoint, auth and options, without opening it.
    spec.open(transport=io.transport)
    request.check(dialect=dialect, microversion=version)
    writer = DryRunWriter(io.stdout, as_json=args.json or args.format == "json")
    checks = [*_checks(dialect.value, str(version), online=False), "offline: nothing read"]
    for server_id in given:
        check_server_id(server_id)
        prepared = {
            "method": "POST",
            "url": f"{spec.endpoint.rstrip('/')}/servers/{server_id}/action",
            "microversion": str(version),
            "body": request_to_wire(request),
        }
        writer(await dry_run_record(server_id, prepared, spec.auth, checks=checks))
        if writer.closed:
            raise OutputClosed
    return EXIT_OK
