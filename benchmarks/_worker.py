"""One measurement in a fresh process: ``python -m benchmarks._worker < job.json``.

Prints one JSON line with the result. The job names the scenario, the library (``ours`` or
``sdk``), the transport (for ours) and the fake service's ready line.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import sys
import threading
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

Job = dict[str, Any]
_PROC = psutil.Process()


def _rss() -> int:
    return int(_PROC.memory_info().rss)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Meter:
    """Wall and process CPU time (every thread) over a block, optionally profiled; and the CPU
    time CPython's garbage collector took within it (``gc``, part of ``cpu``)."""

    def __init__(self, profile: bool) -> None:
        self.profiler = cProfile.Profile() if profile else None
        self.wall = self.cpu = self.gc = self.user = self.system = 0.0
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.process_time()
        else:
            self.gc += time.process_time() - self._gc_started

    def __enter__(self) -> _Meter:
        gc.collect()
        gc.callbacks.append(self._on_gc)
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        self._times = os.times()
        if self.profiler is not None:
            self.profiler.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.profiler is not None:
            self.profiler.disable()
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        times = os.times()
        self.user = times.user - self._times.user
        self.system = times.system - self._times.system
        gc.callbacks.remove(self._on_gc)

    def top(self, limit: int = 25, sort: str = "tottime") -> str | None:
        if self.profiler is None:
            return None
        out = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=out)
        stats.sort_stats(sort).print_stats(limit)
        return out.getvalue()


# -- ecs_rebuild_async ---------------------------------------------------------------------


def _ours_client(job: Job, **settings: Any) -> Any:
    import httpx

    from ecs_rebuild_async import AsyncEcsClient, ClientSettings, TokenAuth

    transport = None
    if job["transport"] == "httpx":
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        transport = httpx.AsyncHTTPTransport(limits=limits)
    return AsyncEcsClient(
        job["fake"]["compute_url"],
        auth=TokenAuth(job["fake"]["token"]),
        settings=ClientSettings(**settings),
        transport=transport,
    )


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _plan(fake: dict[str, Any], warmup: int, ops: int) -> list[tuple[str, str]]:
    """(server, image) of each operation: servers in turn, each rebuild to a new image.

    Every rebuild shows a new image, so that both clients can tell the finished rebuild from
    the state before it on the first read (a rebuild to the same image needs a read of it
    running or a later second, which an instant service cannot give).
    """
    servers, images = fake["servers"], fake["images"]
    plan = []
    for i in range(warmup + ops):
        plan.append((servers[i % len(servers)], images[(i // len(servers)) % len(images)]))
    return plan


async def _ours_single(job: Job) -> dict[str, Any]:
    from ecs_rebuild_async import RebuildRequest

    fake, ops = job["fake"], job["ops"]
    interval = job["interval"]
    plan = _plan(fake, 3 + len(fake["servers"]), ops)
    requests = {image: RebuildRequest(image_ref=image, name="bench") for image in fake["images"]}
    async with _ours_client(
        job, poll_first_delay=job.get("first_delay", interval), poll_interval=interval
    ) as ecs:
        # With "reuse": each rebuild starts from the server its previous rebuild-and-wait
        # returned (before=), as a caller that keeps it may; else from a read of its own.
        reuse = job.get("reuse", False)
        last: dict[str, Any] = {}

        async def one(server: str, image: str) -> None:
            options = {"before": last.get(server)} if reuse else {}
            last[server] = await ecs.rebuild_and_wait(
                server, requests[image], timeout=60, **options
            )

        for server, image in plan[: 3 + len(fake["servers"])]:  # warm-up: discovery, connections
            await one(server, image)
        before = dict(ecs.stats)
        with _Meter(job.get("profile", False)) as meter:
            for server, image in plan[3 + len(fake["servers"]) :]:
                await one(server, image)
        counts = _delta(dict(ecs.stats), before)
    return {
        "wall": meter.wall,
        "cpu": meter.cpu,
        "user": meter.user,
        "system": meter.system,
        "gc": meter.gc,
        "counts": counts,
        "profile": meter.top(limit=job.get("limit", 25), sort=job.get("sort", "tottime")),
    }


def _policy(rollout: dict[str, Any] | None) -> Any:
    """The job's rollout policy: its settings, and ``stop_at_checkpoint`` (the first checkpoint
    answers no: the rollout stops there and rolls back what it rebuilt)."""
    if not rollout:
        return None
    from ecs_rebuild_async import RolloutPolicy

    settings = dict(rollout)
    if settings.pop("stop_at_checkpoint", False):

        async def stop(progress: Any) -> bool:
            return False

        settings.update(on_checkpoint=stop, rollback=True)
    settings["checkpoints"] = tuple(settings.get("checkpoints", ()))
    return RolloutPolicy(**settings)


async def _ours_bulk(job: Job) -> dict[str, Any]:
    from ecs_rebuild_async import OutcomeKind, RebuildRequest

    fake = job["fake"]
    request = RebuildRequest(image_ref=fake["image"], name="bench")
    servers = fake["servers"]
    settings = {"poll_interval": job["interval"], "poll_first_delay": job["first_delay"]}
    if job.get("fleet_interval") is not None:
        settings["fleet_poll_interval"] = job["fleet_interval"]
    ended: dict[str, float] = {}  # server id -> wall clock of its outcome

    def on_outcome(outcome: Any) -> None:
        ended[outcome.server_id] = time.time()

    async with _ours_client(job, **settings) as ecs:
        await ecs.versions()  # discovery is per client, once; not part of the run
        base_rss = _rss()
        before = dict(ecs.stats)
        started = time.time()
        journal = job.get("journal")
        with _Meter(job.get("profile", False)) as meter:
            outcomes = await ecs.rebuild_many(
                servers, request, concurrency=job.get("concurrency") or len(servers), timeout=600,
                journal=journal, on_outcome=on_outcome, policy=_policy(job.get("rollout")),
            )  # fmt: skip
        counts = _delta(dict(ecs.stats), before)
    # A rollout stopped at its checkpoint: the servers it rolled back count as done.
    done = (OutcomeKind.OK, OutcomeKind.ROLLED_BACK, OutcomeKind.SKIPPED)
    ok = sum(1 for o in outcomes if o.kind in (done if job.get("rollout") else done[:1]))
    if journal:
        import sqlite3

        with sqlite3.connect(journal) as conn:
            rows = conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall()
        counts.update({f"journal {kind}": n for kind, n in rows})
    return {
        "wall": meter.wall,
        "cpu": meter.cpu,
        "gc": meter.gc,
        "counts": counts,
        "ok": ok,
        "peak_rss": _peak_rss(),
        "base_rss": base_rss,
        "profile": meter.top(sort=job.get("sort", "tottime")),
        "started": started,
        "ended": ended,
    }


async def _ours_waits(job: Job) -> dict[str, Any]:
    import anyio

    from ecs_rebuild_async import RebuildRequest

    fake = job["fake"]
    request = RebuildRequest(image_ref=fake["image"], name="bench")
    servers = fake["servers"]
    async with _ours_client(job, poll_interval=job["interval"], poll_first_delay=0.5) as ecs:
        limiter = anyio.Semaphore(100)

        async def submit(server_id: str) -> None:
            async with limiter:
                await ecs.rebuild(server_id, request)

        async with anyio.create_task_group() as group:
            for server_id in servers:
                group.start_soon(submit, server_id)
        # What spawning the tasks costs alone (a task group, a task, a sleeping frame).
        gc.collect()
        tracemalloc.start()
        spawn0 = tracemalloc.get_traced_memory()[0]
        async with anyio.create_task_group() as group:
            for _ in servers:
                group.start_soon(anyio.sleep, 3600)
            await anyio.sleep(0.1)
            gc.collect()
            spawn = tracemalloc.get_traced_memory()[0] - spawn0
            group.cancel_scope.cancel()
        tracemalloc.stop()
        gc.collect()
        rss0 = _rss()
        tracemalloc.start()
        traced0 = tracemalloc.get_traced_memory()[0]
        listings0 = ecs.stats.get("poll_listings", 0)
        async with anyio.create_task_group() as group:
            for server_id in servers:
                group.start_soon(ecs.wait_for_rebuild, server_id)
            # Every wait registered and one shared tick read: all of them are in flight.
            for _ in range(6000):
                if ecs.stats.get("poll_listings", 0) != listings0:
                    break
                await anyio.sleep(0.05)
            await anyio.sleep(0.2)
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] - traced0
            rss = _rss() - rss0
            top = tracemalloc.take_snapshot().statistics("lineno")[:15]
            tracemalloc.stop()
            group.cancel_scope.cancel()
        left = len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])
    n = len(servers)
    lines = [f"{s.size / n:8.0f} B/wait {s.count / n:6.1f} blocks/wait  {s.traceback}" for s in top]
    profile = "\n".join(lines) + "\n"
    return {
        "waits": n,
        "traced": traced,
        "rss": rss,
        "spawn": spawn,
        "tasks_left": left,
        "profile": profile,
    }


# -- openstacksdk --------------------------------------------------------------------------


def _sdk_connection(fake: dict[str, Any], pool: int) -> tuple[Any, Counter[str]]:
    import openstack
    from keystoneauth1.session import TCPKeepAliveAdapter

    counts: Counter[str] = Counter()

    class CountingAdapter(TCPKeepAliveAdapter):  # type: ignore[misc]
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            path = request.path_url.split("?", 1)[0].rstrip("/")
            if path.endswith("/action"):
                kind = "POST action"
            elif path.endswith("/servers/detail"):
                kind = "GET list"
            elif "/servers/" in path:
                kind = f"{request.method} server"
            else:
                kind = f"{request.method} other"
            counts[kind] += 1
            return super().send(request, *args, **kwargs)

    conn = openstack.connect(
        auth_type="v3password",
        auth_url=fake["identity_url"],
        username=fake["username"],
        password=fake["password"],
        project_name=fake["project_name"],
        user_domain_name=fake["user_domain_name"],
        project_domain_name=fake["user_domain_name"],
        region_name="RegionOne",
        compute_endpoint_override=fake["compute_url"],
    )
    # The default pool keeps 10 connections; give every thread one, as a tuned user would.
    adapter = CountingAdapter(pool_connections=pool, pool_maxsize=pool)
    conn.session.session.mount("http://", adapter)
    return conn, counts


def _sdk_rebuild_and_wait(conn: Any, image: str, server_id: str, interval: float) -> Any:
    # What openstacksdk's users write: the rebuild, then its waiter on the returned server.
    server = conn.compute.rebuild_server(server_id, image=image, name="bench")
    return conn.compute.wait_for_server(server, status="ACTIVE", interval=interval, wait=600)


def _sdk_single(job: Job) -> dict[str, Any]:
    fake, ops, interval = job["fake"], job["ops"], job["interval"]
    conn, counts = _sdk_connection(fake, 10)
    warmup = 3 + len(fake["servers"])
    plan = _plan(fake, warmup, ops)
    for server, image in plan[:warmup]:
        _sdk_rebuild_and_wait(conn, image, server, interval)
    before = dict(counts)
    with _Meter(job.get("profile", False)) as meter:
        for server, image in plan[warmup:]:
            _sdk_rebuild_and_wait(conn, image, server, interval)
    return {
        "wall": meter.wall,
        "cpu": meter.cpu,
        "user": meter.user,
        "system": meter.system,
        "counts": _delta(dict(counts), before),
        "profile": meter.top(),
    }


def _sdk_bulk(job: Job) -> dict[str, Any]:
    fake, interval, threads = job["fake"], job["interval"], job["threads"]
    conn, counts = _sdk_connection(fake, threads)
    servers = fake["servers"]
    conn.compute.get_server(servers[0])  # token, catalog and version discovery
    base_rss = _rss()
    before = dict(counts)
    ok = 0
    ended: dict[str, float] = {}

    def one(server_id: str) -> Any:
        server = _sdk_rebuild_and_wait(conn, fake["image"], server_id, interval)
        ended[server_id] = time.time()
        return server

    started = time.time()
    with _Meter(False) as meter, ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(one, sid) for sid in servers]
        for future in futures:
            try:
                ok += future.result().status == "ACTIVE"
            except Exception as exc:  # counted as not ok; the first one is shown
                print(f"sdk bulk: {type(exc).__name__}: {exc}", file=sys.stderr)
    return {
        "wall": meter.wall,
        "cpu": meter.cpu,
        "counts": _delta(dict(counts), before),
        "ok": ok,
        "peak_rss": _peak_rss(),
        "base_rss": base_rss,
        "started": started,
        "ended": ended,
    }


def _sdk_waits(job: Job) -> dict[str, Any]:
    fake, interval = job["fake"], job["interval"]
    servers = fake["servers"]
    conn, counts = _sdk_connection(fake, 50)
    with ThreadPoolExecutor(50) as pool:
        rebuilt = list(
            pool.map(lambda sid: conn.compute.rebuild_server(sid, image=fake["image"]), servers)
        )
    gc.collect()
    rss0 = _rss()
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    gets0 = counts["GET server"]

    def wait(server: Any) -> None:
        try:
            conn.compute.wait_for_server(server, status="ACTIVE", interval=interval, wait=3600)
        except Exception:  # the process exits with these threads still waiting
            return

    for server in rebuilt:
        threading.Thread(target=wait, args=(server,), daemon=True).start()
    deadline = time.monotonic() + 120
    while counts["GET server"] - gets0 < len(rebuilt) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced0
    rss = _rss() - rss0
    tracemalloc.stop()
    return {"waits": len(rebuilt), "traced": traced, "rss": rss, "spawn": 0, "tasks_left": None}


# -- serialization -------------------------------------------------------------------------


def _rate(fn: Any, seconds: float) -> float:
    """Operations per second of ``fn`` (CPU time), best of three batches."""
    fn()
    batch, best = 100, 0.0
    while True:
        start = time.process_time()
        for _ in range(batch):
            fn()
        took = time.process_time() - start
        if took > seconds / 3 / 5:
            break
        batch *= 4
    for _ in range(3):
        start = time.process_time()
        for _ in range(batch):
            fn()
        best = max(best, batch / (time.process_time() - start))
    return best


def _serde(job: Job) -> dict[str, Any]:
    from openstack.compute.v2.server import Server as SdkServer

    from ecs_rebuild_async import RebuildRequest
    from ecs_rebuild_async._serde import request_to_wire, server_from_wire
    from ecs_rebuild_async.testing import FakeCompute

    fake = FakeCompute()
    sid = fake.add_server(name="web-1", metadata={"role": "web", "tier": "1"}, key_name=None)
    status, _, body = fake.handle(
        "GET",
        f"/v2.1/{fake.project_id}/servers/{sid}",
        headers={"X-Auth-Token": fake.token, "OpenStack-API-Version": "compute 2.60"},
    )
    assert status == 200, status
    request = RebuildRequest(
        image_ref=fake.default_image,
        name="web-1",
        metadata={"role": "web", "tier": "1"},
        description="rebuilt by the benchmark",
        key_name="default",
        user_data="#cloud-config\npackages: [nginx]\n",
    )
    seconds = job["seconds"]

    def ours_request() -> bytes:
        return json.dumps(request_to_wire(request), separators=(",", ":")).encode()

    def sdk_request() -> bytes:
        # openstacksdk builds the rebuild body inline in Server.rebuild; this is that dict.
        attrs = {
            "imageRef": fake.default_image,
            "name": "web-1",
            "metadata": {"role": "web", "tier": "1"},
            "description": "rebuilt by the benchmark",
            "key_name": "default",
            "user_data": "I2Nsb3VkLWNvbmZpZwpwYWNrYWdlczogW25naW54XQo=",
        }
        return json.dumps({"rebuild": attrs}).encode()

    def ours_response() -> Any:
        server = server_from_wire(json.loads(body))
        return server.status, server.task_state, server.updated

    def sdk_response() -> Any:
        server = SdkServer.existing(**json.loads(body)["server"])
        return server.status, server.task_state, server.updated_at

    return {
        "ours_request": _rate(ours_request, seconds),
        "sdk_request": _rate(sdk_request, seconds),
        "ours_response": _rate(ours_response, seconds),
        "sdk_response": _rate(sdk_response, seconds),
        "body_bytes": len(body),
    }


# -- entry point ---------------------------------------------------------------------------

_ASYNC = {"single": _ours_single, "bulk": _ours_bulk, "waits": _ours_waits}
_SYNC = {"single": _sdk_single, "bulk": _sdk_bulk, "waits": _sdk_waits}


class _NoOpenTelemetry:
    """A meta path finder under which every ``opentelemetry`` import fails: the extra absent."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _telemetry(mode: str) -> None:
    """Set up OpenTelemetry as the job says, before the library is imported."""
    if mode == "absent":
        sys.meta_path.insert(0, _NoOpenTelemetry())  # type: ignore[arg-type]
    elif mode == "console":
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        trace.set_tracer_provider(provider)
        reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr))
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def _flush_telemetry() -> None:
    if "opentelemetry.sdk" in sys.modules:
        from opentelemetry import metrics, trace

        for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
            shutdown = getattr(provider, "shutdown", None)
            if shutdown is not None:
                shutdown()


def run(job: Job) -> dict[str, Any]:
    _telemetry(job.get("telemetry", "none"))
    if job["scenario"] == "serde":
        return _serde(job)
    if job["lib"] == "sdk":
        return _SYNC[job["scenario"]](job)
    import anyio

    backend = "trio" if job["transport"] == "trio" else "asyncio"
    result: dict[str, Any] = anyio.run(_ASYNC[job["scenario"]], job, backend=backend)
    return result


def main() -> int:
    job = json.loads(sys.stdin.read())
    result = run(job)
    _flush_telemetry()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    import os

    code = main()
    os._exit(code)  # leave waiting threads (scenario 3) behind without joining them
