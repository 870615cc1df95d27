"""A second, independent fake of Nova for the benchmarks: plain aiohttp, not ``FakeCompute``.

``python -m benchmarks._novafake --servers N --rebuild-seconds S [--max-version 2.60]`` prints
one JSON line when ready (the same keys as ``benchmarks._fakeproc``); on SIGTERM or SIGINT it
prints a second one with its request counters and CPU time, then exits.

It answers as Nova does, written from Nova's API reference and samples, and shares no code with
the library: a Keystone v3 token (with a catalog), the version documents, ``GET
/servers/{id}``, ``GET /servers/detail`` with ``changes-since``, ``limit`` and ``marker`` (pages
of at most 1,000, Nova's default ``max_limit``), and the rebuild action, which answers 202 with
the server (below 2.75 the short view with status ``REBUILD``; from 2.75 the full view, with
``vm_state`` kept and ``task_state`` ``rebuilding``). The server then shows ``REBUILD`` until
``--rebuild-seconds`` have passed and its former state after (0: at once). ``updated`` is the
time of the last change, so ``changes-since`` lists what changed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

PROJECT = "6f70656e737461636b20342065766572"
TOKEN = "gAAAAABbenchmarktokenbenchmarktokenbenchmarktoken"
IMAGES = ("70a599e0-31e7-49b7-b260-868f441e862b", "a2459075-d96c-40d5-893e-577ff92e721c")
MAX_LIMIT = 1000


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> float:
    text = text.replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


class Record:
    __slots__ = ("done_at", "id", "image", "index", "name", "stable", "updated")

    def __init__(self, index: int, now: float) -> None:
        self.index = index
        self.id = str(uuid.UUID(int=index + 1))
        self.name = f"server-{index}"
        self.image = IMAGES[0]
        self.stable = "ACTIVE"
        self.done_at = 0.0  # when the running rebuild ends (0: none running)
        self.updated = now - 3600

    def at(self, now: float) -> tuple[str, str | None, float]:
        """(status, task_state, updated) as of ``now``."""
        if self.done_at and now < self.done_at:
            return "REBUILD", "rebuilding", self.updated
        if self.done_at:
            self.updated, self.done_at = self.done_at, 0.0
        return self.stable, None, self.updated


class Nova:
    def __init__(self, servers: int, rebuild_seconds: float, max_version: str) -> None:
        now = time.time()
        self.records = [Record(i, now) for i in range(servers)]
        self.by_id = {r.id: r for r in self.records}
        self.rebuild_seconds = rebuild_seconds
        self.max_version = max_version
        self.counts: Counter[str] = Counter()
        self.done: dict[str, float] = {}  # server id -> when its last rebuild ended
        self.accepted: list[float] = []  # when the first and the last rebuild were accepted
        self.base = ""

    # -- views --

    def _version(self, request: web.Request) -> tuple[int, int]:
        header = request.headers.get("OpenStack-API-Version", "")
        value = header.split()[-1] if header.startswith("compute ") else "2.1"
        if value == "latest":
            value = self.max_version
        major, minor = value.split(".")
        return int(major), int(minor)

    def view(self, record: Record, now: float, full: bool = True) -> dict[str, Any]:
        status, task, updated = record.at(now)
        bookmark = f"{self.base}/{PROJECT}"
        server: dict[str, Any] = {
            "id": record.id,
            "name": record.name,
            "status": status,
            "tenant_id": PROJECT,
            "user_id": "fake",
            "metadata": {},
            "hostId": "2091634baaccdc4c5a1d57069c833e402921df696b7f970791b12ec6",
            "image": {
                "id": record.image,
                "links": [{"href": f"{bookmark}/images/{record.image}", "rel": "bookmark"}],
            },
            "flavor": {"id": "1", "links": [{"href": f"{bookmark}/flavors/1", "rel": "bookmark"}]},
            "created": "2026-01-01T00:00:00Z",
            "updated": _iso(updated),
            "addresses": {"private": [{"addr": f"10.0.0.{record.index % 250 + 2}", "version": 4}]},
            "accessIPv4": "",
            "accessIPv6": "",
            "links": [
                {"href": f"{self.base}/v2.1/{PROJECT}/servers/{record.id}", "rel": "self"},
                {"href": f"{bookmark}/servers/{record.id}", "rel": "bookmark"},
            ],
            "OS-DCF:diskConfig": "AUTO",
            "progress": 0,
            "key_name": None,
        }
        if full:
            server.update({
                "OS-EXT-STS:vm_state": "stopped" if record.stable == "SHUTOFF" else "active",
                "OS-EXT-STS:task_state": task,
                "OS-EXT-STS:power_state": 4 if record.stable == "SHUTOFF" else 1,
                "OS-EXT-AZ:availability_zone": "nova",
                "OS-SRV-USG:launched_at": "2026-01-01T00:00:05.000000",
                "OS-SRV-USG:terminated_at": None,
                "config_drive": "",
                "security_groups": [{"name": "default"}],
                "os-extended-volumes:volumes_attached": [],
            })  # fmt: skip
        return server

    # -- handlers --

    async def tokens(self, request: web.Request) -> web.Response:
        self.counts["POST tokens"] += 1
        await request.read()
        compute = f"{self.base}/v2.1/{PROJECT}"
        catalog = [
            {"type": "compute", "name": "nova", "id": "c0", "endpoints": [
                {"id": "e0", "interface": "public", "region": "RegionOne",
                 "region_id": "RegionOne", "url": compute}]},
            {"type": "identity", "name": "keystone", "id": "i0", "endpoints": [
                {"id": "e1", "interface": "public", "region": "RegionOne",
                 "region_id": "RegionOne", "url": f"{self.base}/identity/v3"}]},
        ]  # fmt: skip
        token = {
            "token": {
                "methods": ["password"],
                "expires_at": _iso(time.time() + 86400),
                "issued_at": _iso(time.time()),
                "user": {"id": "fake", "name": "bench", "domain": {"id": "default"}},
                "project": {"id": PROJECT, "name": "bench", "domain": {"id": "default"}},
                "roles": [{"id": "r0", "name": "member"}],
                "catalog": catalog,
            }
        }
        return web.json_response(token, status=201, headers={"X-Subject-Token": TOKEN})

    def _version_doc(self) -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": self.max_version,
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"href": f"{self.base}/v2.1/", "rel": "self"}],
            "media-types": [
                {
                    "base": "application/json",
                    "type": "application/vnd.openstack.compute+json;version=2.1",
                }
            ],
        }

    async def versions(self, request: web.Request) -> web.Response:
        self.counts["GET versions"] += 1
        return web.json_response({"versions": [self._version_doc()]})

    async def version(self, request: web.Request) -> web.Response:
        self.counts["GET version"] += 1
        return web.json_response({"version": self._version_doc()})

    def _authorized(self, request: web.Request) -> None:
        if request.headers.get("X-Auth-Token") != TOKEN:
            raise web.HTTPUnauthorized()

    def _record(self, request: web.Request) -> Record:
        record = self.by_id.get(request.match_info["server_id"])
        if record is None:
            raise web.HTTPNotFound(
                text=json.dumps({"itemNotFound": {"code": 404, "message": "not found"}}),
                content_type="application/json",
            )
        return record

    def _headers(self, request: web.Request) -> dict[str, str]:
        major, minor = self._version(request)
        return {
            "OpenStack-API-Version": f"compute {major}.{minor}",
            "X-OpenStack-Nova-API-Version": f"{major}.{minor}",
            "x-openstack-request-id": f"req-{uuid.uuid4()}",
        }

    async def get_server(self, request: web.Request) -> web.Response:
        self.counts["GET server"] += 1
        self._authorized(request)
        record = self._record(request)
        return web.json_response(
            {"server": self.view(record, time.time())}, headers=self._headers(request)
        )

    async def action(self, request: web.Request) -> web.Response:
        self.counts["POST action"] += 1
        self._authorized(request)
        record = self._record(request)
        body = await request.json()
        rebuild = body.get("rebuild")
        if not isinstance(rebuild, dict) or "imageRef" not in rebuild:
            raise web.HTTPBadRequest()
        now = time.time()
        status, task, _ = record.at(now)
        if task is not None:
            raise web.HTTPConflict(
                text=json.dumps({"conflictingRequest": {"code": 409, "message": "in rebuild"}}),
                content_type="application/json",
            )
        record.stable = status
        record.image = str(rebuild["imageRef"])
        record.name = str(rebuild.get("name", record.name))
        record.updated = now
        record.done_at = now + self.rebuild_seconds if self.rebuild_seconds > 0 else now
        self.done[record.id] = record.done_at
        if self.accepted:
            self.accepted[1] = now
        else:
            self.accepted = [now, now]
        self.done[record.id] = record.done_at
        if self.accepted:
            self.accepted[1] = now
        else:
            self.accepted = [now, now]
        # The answer shows the rebuild running (task_state was set before the cast).
        record_view_at = now if self.rebuild_seconds > 0 else now - 1e-9
        server = self.view(record, record_view_at, full=self._version(request) >= (2, 75))
        if self.rebuild_seconds <= 0:
            server["status"] = "REBUILD"
            if "OS-EXT-STS:task_state" in server:
                server["OS-EXT-STS:task_state"] = "rebuilding"
        server["adminPass"] = "seekr3t"
        return web.json_response({"server": server}, status=202, headers=self._headers(request))

    async def detail(self, request: web.Request) -> web.Response:
        self.counts["GET servers_detail"] += 1
        self._authorized(request)
        now = time.time()
        query = request.query
        since = _parse_iso(query["changes-since"]) if "changes-since" in query else None
        limit = min(int(query.get("limit", MAX_LIMIT)), MAX_LIMIT)
        records = self.records
        if "marker" in query:
            marker = self.by_id.get(query["marker"])
            if marker is None:
                raise web.HTTPBadRequest()
            records = records[marker.index + 1 :]
        page: list[dict[str, Any]] = []
        last: Record | None = None
        for record in records:
            _, _, updated = record.at(now)
            if since is not None and updated < since:
                continue
            if len(page) == limit:
                break
            page.append(self.view(record, now))
            last = record
        body: dict[str, Any] = {"servers": page}
        if len(page) == limit and last is not None:
            params = "&".join(f"{k}={v}" for k, v in query.items() if k != "marker")
            href = f"{self.base}/v2.1/{PROJECT}/servers/detail?{params}&marker={last.id}"
            body["servers_links"] = [{"href": href, "rel": "next"}]
        return web.json_response(body, headers=self._headers(request))


async def _serve(args: argparse.Namespace) -> None:
    nova = Nova(args.servers, args.rebuild_seconds, args.max_version)
    app = web.Application()
    app.router.add_post("/identity/v3/auth/tokens", nova.tokens)
    app.router.add_get("/", nova.versions)
    app.router.add_get("/v2.1", nova.version)
    app.router.add_get("/v2.1/", nova.version)
    app.router.add_get(f"/v2.1/{PROJECT}", nova.version)
    app.router.add_get(f"/v2.1/{PROJECT}/", nova.version)
    app.router.add_get(f"/v2.1/{PROJECT}/servers/detail", nova.detail)
    app.router.add_get(f"/v2.1/{PROJECT}/servers/{{server_id}}", nova.get_server)
    app.router.add_post(f"/v2.1/{PROJECT}/servers/{{server_id}}/action", nova.action)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    nova.base = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = {
        "compute_url": f"{nova.base}/v2.1/{PROJECT}",
        "identity_url": f"{nova.base}/identity/v3",
        "token": TOKEN,
        "username": "bench",
        "password": "bench-password",
        "project_name": "bench",
        "user_domain_name": "Default",
        "servers": [r.id for r in nova.records],
        "image": IMAGES[1],
        # Rebuilds alternate between these, the first a new image for every server.
        "images": [IMAGES[1], IMAGES[0]],
    }
    print(json.dumps(ready), flush=True)
    cpu = time.process_time()
    await stop.wait()
    used = time.process_time() - cpu
    await runner.cleanup()
    report = {"requests": dict(nova.counts), "cpu": used, "done": nova.done,
              "accepted": nova.accepted}  # fmt: skip
    print(json.dumps(report), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._novafake")
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--rebuild-seconds", type=float, default=0.0)
    parser.add_argument("--max-version", default="2.60")
    asyncio.run(_serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
