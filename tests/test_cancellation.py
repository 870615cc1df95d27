"""Cancelling a bulk run at any point: nothing left running, no connection left open, and the
report of submitted rebuilds is exactly what the service accepted. A single rebuild cancelled
by asyncio itself while its POST is on the wire: the answer is awaited, then the cancellation
goes on."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import httpx
import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    BulkReport,
    ClientClosed,
    ClientSettings,
    RebuildOutcomeUnknown,
    RebuildRequest,
    RebuildTimeout,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute, InjectedFault

NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]
SEEDS = [1, 2, 3, 4]
FAST = ClientSettings(
    poll_first_delay=0.02,
    poll_interval=0.05,
    poll_interval_max=0.1,
    backoff_initial=0.001,
    retry_after_cap=0.05,
    pacing_recovery=50.0,
    request_timeout=5.0,
    reconcile_settle=0.01,
)


def accepted_ids(fake: FakeCompute, ids: list[str]) -> set[str]:
    return {sid for sid in ids if fake.rebuilds_accepted(sid) == 1}


def running_tasks() -> set[object]:
    """Every asyncio task (the test runner's own included); empty under trio."""
    try:
        return set(asyncio.all_tasks())
    except RuntimeError:  # no asyncio loop in this thread: running under trio
        return set()


def fake_with_faults(seed: int) -> tuple[FakeCompute, list[str]]:
    fake = FakeCompute(time_scale=50, rebuild_seconds=5, read_lag=1, seed=seed)
    ids = fake.add_servers(40, prefix=f"cancel-{seed}")
    fake.advance(30)
    fake.faults.rate("503", 0.05, route="server")
    fake.faults.rate("429", 0.03, method="POST", route="rebuild", retry_after="1")
    fake.faults.rate("latency", 0.1, seconds=0.5)
    return fake, ids


@pytest.mark.anyio
@pytest.mark.parametrize("seed", SEEDS)
async def test_cancelled_bulk_run_over_tcp_leaves_nothing_behind(seed: int) -> None:
    rng = random.Random(seed)
    baseline = running_tasks()
    fake, ids = fake_with_faults(seed)
    report = BulkReport()
    cancel_after = rng.uniform(0.0, 0.4)
    async with fake.serve_tcp():
        async with AsyncEcsClient(
            fake.compute_url, auth=TokenAuth(fake.token), settings=FAST
        ) as ecs:
            with anyio.move_on_after(cancel_after) as scope:
                await ecs.rebuild_many(
                    ids, RebuildRequest(image_ref=NEW_IMAGE), concurrency=10, report=report
                )
        # The run was really cut short (a 40-server run takes longer than the cut).
        assert scope.cancelled_caught
        assert report.finished < len(ids)
        # Every rebuild the service accepted is in the report, and nothing else.
        assert report.submitted == accepted_ids(fake, ids)
        assert all(fake.rebuilds_accepted(sid) <= 1 for sid in ids)
        # The client closed its connections: the server sees each close once it reads it.
        for _ in range(500):  # at most 5 s
            if fake.open_connections == 0:
                break
            await anyio.sleep(0.01)
        assert fake.open_connections == 0
        # Only the fake's own server tasks may still run; they end with serve_tcp.
        leftovers = {t for t in running_tasks() - baseline if "serve" not in repr(t)}
        assert leftovers == set()
    assert running_tasks() - baseline == set()


@pytest.mark.anyio
@pytest.mark.parametrize("seed", SEEDS)
async def test_cancelled_bulk_run_in_process_reports_what_was_submitted(seed: int) -> None:
    rng = random.Random(seed * 7919)
    baseline = running_tasks()
    fake, ids = fake_with_faults(seed)
    fake.faults.rate("lost", 0.05, method="POST", route="rebuild")
    report = BulkReport()
    cancel_after = rng.uniform(0.0, 0.3)
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=FAST
    ) as ecs:
        with anyio.move_on_after(cancel_after) as scope:
            await ecs.rebuild_many(
                ids, RebuildRequest(image_ref=NEW_IMAGE), concurrency=8, report=report
            )
    assert scope.cancelled_caught
    assert report.submitted == accepted_ids(fake, ids)
    assert all(fake.rebuilds_accepted(sid) <= 1 for sid in ids)
    for sid, outcome in report.outcomes.items():
        assert outcome.submitted == (sid in report.submitted) or not outcome.ok
    assert running_tasks() - baseline == set()


@pytest.mark.anyio
async def test_cancelling_a_stream_midway_stops_the_run_and_reports_it() -> None:
    baseline = running_tasks()
    fake = FakeCompute(time_scale=50, rebuild_seconds=5, seed=5)
    ids = fake.add_servers(30, prefix="stream")
    fake.advance(30)
    fake.faults.script("GET", "servers_detail", [InjectedFault("latency", seconds=0.5)])
    report = BulkReport()
    received = 0
    async with (
        AsyncEcsClient(
            fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=FAST
        ) as ecs,
        ecs.rebuild_stream(
            ids, RebuildRequest(image_ref=NEW_IMAGE), concurrency=5, report=report
        ) as outcomes,
    ):
        async for _ in outcomes:
            received += 1
            if received == 3:
                break
    assert received == 3
    assert report.finished < len(ids)
    assert report.submitted == accepted_ids(fake, ids)
    assert running_tasks() - baseline == set()


@contextlib.asynccontextmanager
async def _served(fake: FakeCompute, tcp: bool) -> AsyncIterator[httpx.AsyncBaseTransport | None]:
    """The fake over TCP (the client then needs no transport) or in process (its transport)."""
    if tcp:
        async with fake.serve_tcp():
            yield None
    else:
        yield fake.transport()


async def _cancelled_natively(how: str, call: Coroutine[Any, Any, object]) -> None:
    """Await ``call`` under asyncio's own cancellation, cut after 0.1 s."""
    if how == "asyncio.timeout":
        async with asyncio.timeout(0.1):
            await call
    else:
        await asyncio.wait_for(call, 0.1)


@pytest.mark.skipif(not hasattr(asyncio, "timeout"), reason="asyncio.timeout is new in Python 3.11")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # asyncio's own cancellation: asyncio only
@pytest.mark.parametrize("tcp", [False, True], ids=["in-process", "tcp"])
@pytest.mark.parametrize("how", ["asyncio.timeout", "asyncio.wait_for"])
@pytest.mark.parametrize("call", ["rebuild", "rebuild_and_wait"])
@pytest.mark.anyio
async def test_a_rebuild_on_the_wire_is_awaited_under_asyncio_cancellation(
    anyio_backend: str, tcp: bool, how: str, call: str
) -> None:
    # The service takes the rebuild at once and answers it 0.5 s later; the caller's own
    # asyncio timeout (0.1 s) comes while the answer is awaited.
    fake = FakeCompute(rebuild_seconds=0.2)
    sid = fake.add_server(name="native")
    fake.advance(30)
    fake.faults.script("POST", "rebuild", [InjectedFault("latency", seconds=0.5, real=True)])
    request = RebuildRequest(image_ref=NEW_IMAGE)
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(_served(fake, tcp))
        ecs = await stack.enter_async_context(
            AsyncEcsClient(
                fake.compute_url, auth=TokenAuth(fake.token), transport=transport, settings=FAST
            )
        )
        await ecs.get_server(sid)  # the version document is read: the cut falls on the POST
        started = anyio.current_time()
        running = (
            ecs.rebuild(sid, request)
            if call == "rebuild"
            else ecs.rebuild_and_wait(sid, request, timeout=60)
        )
        with pytest.raises(TimeoutError):
            await _cancelled_natively(how, running)
        # The answer was awaited (not dropped on the wire), and the caller still got its
        # timeout, with no cancellation left over for its next await.
        assert anyio.current_time() - started >= 0.45
        assert fake.rebuilds_accepted(sid) == 1
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
        await asyncio.sleep(0)
        # The acceptance was kept: the wait that follows knows it and proves the end.
        done = await ecs.wait_for_rebuild(sid, timeout=30)
        assert done.image_id == NEW_IMAGE
        assert fake.rebuilds_accepted(sid) == 1


async def _rebuild_outliving_the_client(
    fake: FakeCompute, sid: str, tcp: bool, settings: ClientSettings
) -> tuple[list[object], float]:
    """Start a rebuild in a task that outlives the client's ``async with``, close the client
    while its POST is on the wire; what the rebuild ended with, and how long closing took."""
    ended: list[object] = []
    request = RebuildRequest(image_ref=NEW_IMAGE)
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(_served(fake, tcp))
        async with anyio.create_task_group() as group:
            async with AsyncEcsClient(
                fake.compute_url, auth=TokenAuth(fake.token), transport=transport, settings=settings
            ) as ecs:
                await ecs.get_server(sid)  # the version document is read: only the POST is left

                async def rebuild() -> None:
                    try:
                        ended.append(await ecs.rebuild(sid, request))
                    except Exception as exc:  # what it ended with is the test's finding
                        ended.append(exc)

                group.start_soon(rebuild)
                while fake.rebuilds_accepted(sid) == 0:  # noqa: ASYNC110 - the fake sets no event
                    await anyio.sleep(0.01)
                closing = anyio.current_time()
            took = anyio.current_time() - closing
    return ended, took


@pytest.mark.parametrize("tcp", [False, True], ids=["in-process", "tcp"])
@pytest.mark.anyio
async def test_closing_the_client_awaits_a_rebuild_on_the_wire(tcp: bool) -> None:
    # The service takes the rebuild at once and answers it 0.5 s later; the client is closed
    # meanwhile, by a caller whose rebuild runs in a task of its own.
    fake = FakeCompute(rebuild_seconds=0.2)
    sid = fake.add_server(name="closing")
    fake.advance(30)
    fake.faults.script("POST", "rebuild", [InjectedFault("latency", seconds=0.5, real=True)])
    ended, took = await _rebuild_outliving_the_client(fake, sid, tcp, FAST)
    # Closing waited for the answer, and the rebuild learnt that the service accepted it.
    assert took >= 0.3
    assert len(ended) == 1
    server = ended[0]
    assert not isinstance(server, BaseException), repr(server)
    assert getattr(server, "id", None) == sid
    assert fake.rebuilds_accepted(sid) == 1


@pytest.mark.parametrize("tcp", [False, True], ids=["in-process", "tcp"])
@pytest.mark.anyio
async def test_closing_the_client_waits_for_a_silent_rebuild_no_longer_than_request_timeout(
    tcp: bool,
) -> None:
    fake = FakeCompute(rebuild_seconds=0.2)
    sid = fake.add_server(name="silent")
    fake.advance(30)
    fake.faults.script("POST", "rebuild", [InjectedFault("latency", seconds=30, real=True)])
    settings = attrs.evolve(FAST, request_timeout=0.5)
    with anyio.fail_after(10):
        ended, took = await _rebuild_outliving_the_client(fake, sid, tcp, settings)
    assert took < 0.5 + 1.0
    assert len(ended) == 1
    # Never answered: the service did take it, and the rebuild never says otherwise. Either
    # reconciliation proved it (the in-process transport still answers the reads after the
    # close), or the outcome is unknown, because closing stopped those reads.
    outcome = ended[0]
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, RebuildOutcomeUnknown), repr(outcome)
    else:
        assert getattr(outcome, "id", None) == sid
    assert fake.rebuilds_accepted(sid) == 1


def _closing_fake(answer_after: float, count: int = 3) -> tuple[FakeCompute, list[str]]:
    """``count`` servers whose rebuild is taken at once and answered ``answer_after`` s later."""
    fake = FakeCompute(rebuild_seconds=0.2)
    ids = [fake.add_server(name=f"closing-{i}") for i in range(count)]
    fake.advance(30)
    fake.faults.script(
        "POST", "rebuild", [InjectedFault("latency", seconds=answer_after, real=True)] * count
    )
    return fake, ids


@pytest.mark.parametrize("tcp", [False, True], ids=["in-process", "tcp"])
@pytest.mark.anyio
async def test_a_deadline_that_passes_while_closing_waits_still_ends_the_block(tcp: bool) -> None:
    fake, ids = _closing_fake(1.0)
    ended: list[object] = []
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(_served(fake, tcp))
        ecs = AsyncEcsClient(
            fake.compute_url, auth=TokenAuth(fake.token), transport=transport, settings=FAST
        )
        async with anyio.create_task_group() as group:

            async def rebuild() -> None:
                ended.append(await ecs.rebuild(ids[0], RebuildRequest(image_ref=NEW_IMAGE)))

            async def leave_the_client_under_a_deadline() -> None:
                with anyio.fail_after(0.4):
                    async with ecs:
                        group.start_soon(rebuild)
                        await anyio.sleep(0.2)  # the POST is on the wire: leave the client

            started = anyio.current_time()
            with pytest.raises(TimeoutError):
                await leave_the_client_under_a_deadline()
            # The deadline ended the block, once closing had the rebuild's answer.
            assert anyio.current_time() - started >= 0.9
            await anyio.lowlevel.checkpoint()  # no cancellation left over for the next await
    assert [getattr(server, "id", None) for server in ended] == [ids[0]]
    assert fake.rebuilds_accepted(ids[0]) == 1


@pytest.mark.skipif(not hasattr(asyncio, "timeout"), reason="asyncio.timeout is new in Python 3.11")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # asyncio's own cancellation: asyncio only
@pytest.mark.parametrize("call", ["rebuild", "rebuild_many"])
@pytest.mark.anyio
async def test_asyncio_timeout_around_a_closing_client_raises_and_leaves_the_rebuilds_alone(
    anyio_backend: str, call: str
) -> None:
    fake, ids = _closing_fake(1.0)
    ecs = AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=FAST
    )
    request = RebuildRequest(image_ref=NEW_IMAGE)
    started: list[asyncio.Future[object]] = []

    async def leave_the_client_under_a_deadline() -> None:
        async with asyncio.timeout(0.4), ecs:
            work = (
                ecs.rebuild(ids[0], request)
                if call == "rebuild"
                else ecs.rebuild_many(ids, request)
            )
            started.append(asyncio.ensure_future(work))
            await asyncio.sleep(0.2)

    with pytest.raises(TimeoutError):
        await leave_the_client_under_a_deadline()
    (running,) = started
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # no stray cancellation for the caller
    # The task nobody cancelled is not cancelled; it ends with what the service said.
    result = await running
    if call == "rebuild":
        assert getattr(result, "id", None) == ids[0]
    else:
        assert isinstance(result, list)
        assert [o.kind.value for o in result] == ["cancelled"] * 3
        assert all(o.submitted for o in result)
    assert [fake.rebuilds_accepted(sid) for sid in ids] == [1] * (3 if call != "rebuild" else 1) + (
        [0, 0] if call == "rebuild" else []
    )


@pytest.mark.parametrize("tcp", [False, True], ids=["in-process", "tcp"])
@pytest.mark.anyio
async def test_a_wait_outliving_its_client_ends_in_client_closed_saying_it_was_accepted(
    tcp: bool,
) -> None:
    fake, ids = _closing_fake(0.5)
    ended: dict[str, object] = {}
    request = RebuildRequest(image_ref=NEW_IMAGE)
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(_served(fake, tcp))
        async with (
            anyio.create_task_group() as group,
            AsyncEcsClient(
                fake.compute_url, auth=TokenAuth(fake.token), transport=transport, settings=FAST
            ) as ecs,
        ):

            async def one() -> None:
                try:
                    ended["one"] = await ecs.rebuild_and_wait(ids[0], request, timeout=30)
                except Exception as exc:  # what it ended with is the test's finding
                    ended["one"] = exc

            async def fleet() -> None:
                ended["fleet"] = await ecs.rebuild_many(ids[1:], request, timeout=30)

            group.start_soon(one)
            group.start_soon(fleet)
            while sum(fake.rebuilds_accepted(sid) for sid in ids) < 3:  # noqa: ASYNC110 - the fake sets no event
                await anyio.sleep(0.01)
    single = ended["one"]
    assert isinstance(single, ClientClosed), repr(single)
    assert "accepted" in str(single)
    outcomes = ended["fleet"]
    assert isinstance(outcomes, list)
    assert [(o.kind.value, o.submitted) for o in outcomes] == [("cancelled", True)] * 2
    assert all(isinstance(o.error, ClientClosed) for o in outcomes)
    assert [fake.rebuilds_accepted(sid) for sid in ids] == [1, 1, 1]


# (transport, the limit that makes rebuilds queue): requests in flight, or connections.
_QUEUED = [
    (False, {"max_in_flight": 2}),
    (True, {"max_in_flight": 2}),
    (True, {"max_connections": 2}),
    (True, {"max_connections": 1}),
]


@pytest.mark.parametrize(
    ("tcp", "limit"),
    _QUEUED,
    ids=["in-process-2-in-flight", "tcp-2-in-flight", "tcp-2-conns", "tcp-1-conn"],
)
@pytest.mark.anyio
async def test_closing_the_client_sends_no_rebuild_still_waiting_for_its_turn(
    tcp: bool, limit: dict[str, int]
) -> None:
    # Six rebuilds, each answered 1 s after the service takes it, and room for only a few on
    # the wire at once: the client is closed while the rest wait for their turn.
    fake, ids = _closing_fake(1.0, count=6)
    on_the_wire = min(limit.values())
    settings = attrs.evolve(FAST, **limit)
    request = RebuildRequest(image_ref=NEW_IMAGE)
    ended: dict[str, object] = {}
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(_served(fake, tcp))
        # The rebuilds run in tasks of a group that outlives the client: a stray
        # cancellation from closing would cancel the whole group, and this test with it.
        async with anyio.create_task_group() as group:
            async with AsyncEcsClient(
                fake.compute_url, auth=TokenAuth(fake.token), transport=transport, settings=settings
            ) as ecs:
                await ecs.get_server(ids[0])  # the version document is read: only POSTs are left

                async def rebuild(sid: str) -> None:
                    try:
                        ended[sid] = await ecs.rebuild(sid, request)
                    except Exception as exc:  # what it ended with is the test's finding
                        ended[sid] = exc

                for sid in ids:
                    group.start_soon(rebuild, sid)
                while sum(fake.rebuilds_accepted(sid) for sid in ids) < on_the_wire:  # noqa: ASYNC110 - the fake sets no event
                    await anyio.sleep(0.01)
                await anyio.sleep(0.1)
                closing = anyio.current_time()
            took = anyio.current_time() - closing
    # Closing waited for the rebuilds on the wire (answered 1 s after being taken), and for
    # nothing else: the ones still waiting were never sent.
    assert 0.5 <= took < 1.5, took
    accepted = [sid for sid in ids if fake.rebuilds_accepted(sid) == 1]
    assert len(accepted) == on_the_wire
    assert set(ended) == set(ids)
    for sid in ids:
        if sid in accepted:
            assert getattr(ended[sid], "id", None) == sid, repr(ended[sid])
        else:
            assert isinstance(ended[sid], ClientClosed), repr(ended[sid])
            assert "not sent" in str(ended[sid])
            assert fake.rebuilds_accepted(sid) == 0


@pytest.mark.parametrize("tcp", [False, True], ids=["in-process", "tcp"])
@pytest.mark.anyio
async def test_a_fleet_closed_under_it_reports_queued_rebuilds_as_cancelled_and_not_submitted(
    tcp: bool,
) -> None:
    fake, ids = _closing_fake(1.0, count=6)
    settings = attrs.evolve(FAST, max_in_flight=2)
    ended: dict[str, object] = {}
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(_served(fake, tcp))
        async with (
            anyio.create_task_group() as group,
            AsyncEcsClient(
                fake.compute_url, auth=TokenAuth(fake.token), transport=transport, settings=settings
            ) as ecs,
        ):

            async def fleet() -> None:
                ended["fleet"] = await ecs.rebuild_many(
                    ids, RebuildRequest(image_ref=NEW_IMAGE), concurrency=6, timeout=30
                )

            group.start_soon(fleet)
            while sum(fake.rebuilds_accepted(sid) for sid in ids) < 2:  # noqa: ASYNC110 - the fake sets no event
                await anyio.sleep(0.01)
            await anyio.sleep(0.1)
    outcomes = ended["fleet"]
    assert isinstance(outcomes, list)
    taken = {sid for sid in ids if fake.rebuilds_accepted(sid) == 1}
    assert len(taken) == 2
    # Every server is cancelled; submitted is true for exactly the rebuilds the service took.
    assert {o.server_id: (o.kind.value, o.submitted) for o in outcomes} == {
        sid: ("cancelled", sid in taken) for sid in ids
    }
    assert all(isinstance(o.error, ClientClosed) for o in outcomes)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.anyio
async def test_requests_cancelled_while_queued_for_their_turn_leave_every_slot_free(
    seed: int,
) -> None:
    # Two requests in flight at once, forty queued behind them, and cancellations falling at
    # random points: while queued, just as a slot is handed over, and on the wire.
    rng = random.Random(seed)
    fake = FakeCompute()
    ids = [fake.add_server(name=f"slot-{i}") for i in range(40)]
    fake.faults.rate("latency", 0.5, seconds=0.02, real=True, route="server")
    settings = attrs.evolve(FAST, max_in_flight=2)
    read: set[str] = set()
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=settings
    ) as ecs:
        await ecs.versions()

        async def read_one(sid: str, cut_after: float | None) -> None:
            with anyio.CancelScope() as scope:
                if cut_after is not None:
                    scope.deadline = anyio.current_time() + cut_after
                await ecs.get_server(sid)
                read.add(sid)

        cut = {sid: rng.choice([None, 0.0, rng.uniform(0.0, 0.3)]) for sid in ids}
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for sid in ids:
                    group.start_soon(read_one, sid, cut[sid])
        # Every uncut read was served, whatever was cut around it.
        assert {sid for sid in ids if cut[sid] is None} <= read
        # No slot was lost to a cancellation: both are free, and two reads that each wait on
        # the other's company (a slow answer) run side by side.
        fake.faults.script("GET", "server", [InjectedFault("latency", seconds=0.3, real=True)] * 2)
        started = anyio.current_time()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(ecs.get_server, ids[0])
                group.start_soon(ecs.get_server, ids[1])
        assert anyio.current_time() - started < 0.55


@pytest.mark.parametrize("step", range(11))
@pytest.mark.anyio
async def test_closing_while_the_first_connection_opens_leaves_nothing_on_the_wire(
    step: int,
) -> None:
    # The client is closed 0-5 ms after a rebuild starts on it: while it opens its first
    # connection, sends the version document's GET, or reads the server. Once aclose returns,
    # the service receives nothing more and no connection of the client is left open.
    fake = FakeCompute(rebuild_seconds=0.2)
    sid = fake.add_server(name="connecting")
    fake.advance(30)
    closed = False
    late: list[tuple[str, str]] = []

    def after_close(method: str, route: str) -> None:
        if closed:
            late.append((method, route))

    fake.faults.hook = after_close
    ended: list[object] = []
    async with fake.serve_tcp():
        ecs = AsyncEcsClient(fake.compute_url, auth=TokenAuth(fake.token), settings=FAST)
        async with anyio.create_task_group() as group:
            await ecs.__aenter__()

            async def rebuild() -> None:
                try:
                    ended.append(await ecs.rebuild(sid, RebuildRequest(image_ref=NEW_IMAGE)))
                except Exception as exc:  # what it ended with is the test's finding
                    ended.append(exc)

            group.start_soon(rebuild)
            await anyio.sleep(step * 0.0005)
            await ecs.aclose()
            closed = True
        for _ in range(100):  # the server sees a close once it reads it: at most 1 s
            if fake.open_connections == 0:
                break
            await anyio.sleep(0.01)
        assert late == []
        assert fake.open_connections == 0
    # The rebuild was either sent before closing began and answered, or never sent.
    (outcome,) = ended
    if fake.rebuilds_accepted(sid):
        assert getattr(outcome, "id", None) == sid, repr(outcome)
    else:
        assert isinstance(outcome, ClientClosed), repr(outcome)


@pytest.mark.parametrize(
    ("tcp", "limit"),
    [(False, {"max_in_flight": 1}), (True, {"max_in_flight": 1}), (True, {"max_connections": 1})],
    ids=["in-process-1-in-flight", "tcp-1-in-flight", "tcp-1-conn"],
)
@pytest.mark.anyio
async def test_a_retry_after_pause_holds_the_rebuilds_queued_behind_the_limit(
    tcp: bool, limit: dict[str, int]
) -> None:
    # Two rebuilds, room for one request at a time: the first POST is refused with a 429 and
    # Retry-After: 2 while the second waits for its turn. Neither goes before the pause ends.
    fake = FakeCompute(rebuild_seconds=0.2)
    ids = [fake.add_server(name=f"paused-{i}") for i in range(2)]
    fake.advance(30)
    posts: list[float] = []
    refused: list[float] = []

    def refuse_the_first(method: str, route: str) -> InjectedFault | None:
        if (method, route) != ("POST", "rebuild"):
            return None
        if not refused:
            refused.append(time.monotonic())
            return InjectedFault("429", retry_after="2")
        posts.append(time.monotonic())
        return None

    fake.faults.hook = refuse_the_first
    settings = attrs.evolve(FAST, retry_after_cap=60.0, **limit)
    request = RebuildRequest(image_ref=NEW_IMAGE)
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(_served(fake, tcp))
        ecs = await stack.enter_async_context(
            AsyncEcsClient(
                fake.compute_url, auth=TokenAuth(fake.token), transport=transport, settings=settings
            )
        )
        befores = {sid: await ecs.get_server(sid) for sid in ids}
        assert all(befores.values())
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for sid in ids:
                    group.start_soon(ecs.rebuild, sid, request)
    assert len(refused) == 1
    assert len(posts) == 2  # the refused one again, and the other: each accepted once
    assert min(posts) - refused[0] >= 1.9
    assert [fake.rebuilds_accepted(sid) for sid in ids] == [1, 1]


@pytest.mark.parametrize("tcp", [False, True], ids=["in-process", "tcp"])
@pytest.mark.parametrize("call", ["rebuild", "rebuild_and_wait", "rebuild_many"])
@pytest.mark.anyio
async def test_closing_the_client_ends_a_rebuild_sitting_out_a_retry_after_pause(
    tcp: bool, call: str
) -> None:
    fake = FakeCompute(rebuild_seconds=0.2)
    sid = fake.add_server(name="pause")
    fake.advance(30)
    fake.faults.script("POST", "rebuild", [InjectedFault("429", retry_after="30")])
    settings = attrs.evolve(FAST, retry_after_cap=60.0)
    request = RebuildRequest(image_ref=NEW_IMAGE)
    ended: list[object] = []
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(_served(fake, tcp))
        ecs = AsyncEcsClient(
            fake.compute_url, auth=TokenAuth(fake.token), transport=transport, settings=settings
        )
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:

                async def run() -> None:
                    try:
                        if call == "rebuild":
                            ended.append(await ecs.rebuild(sid, request))
                        elif call == "rebuild_and_wait":
                            ended.append(await ecs.rebuild_and_wait(sid, request, timeout=100))
                        else:
                            ended.append(await ecs.rebuild_many([sid], request, timeout=100))
                    except Exception as exc:  # what it ended with is the test's finding
                        ended.append(exc)
                    ended.append(anyio.current_time())

                async with ecs:
                    group.start_soon(run)
                    while not fake.stats.faults:  # noqa: ASYNC110 - the fake sets no event
                        await anyio.sleep(0.005)
                    await anyio.sleep(0.2)  # the 429 is in: the rebuild sits out its pause
                    closed_at = anyio.current_time()
    outcome, ended_at = ended
    # The pause did not outlast the client: the call ended as soon as it was closed, and the
    # rebuild the 429 refused was never sent again.
    assert isinstance(ended_at, float)
    assert ended_at - closed_at < 1.0
    assert fake.rebuilds_accepted(sid) == 0
    if call == "rebuild_many":
        assert isinstance(outcome, list)
        assert [(o.kind.value, o.submitted) for o in outcome] == [("cancelled", False)]
        assert isinstance(outcome[0].error, ClientClosed)
    else:
        assert isinstance(outcome, ClientClosed), repr(outcome)
        assert "not sent" in str(outcome)


@pytest.mark.anyio
async def test_leaving_the_client_in_a_cancelled_scope_still_closes_it_whole() -> None:
    # Three idle connections in the pool and a sibling's read on the wire when the scope
    # around ``async with`` is cancelled: the client is closed all the same.
    fake = FakeCompute()
    ids = [fake.add_server(name=f"scoped-{i}") for i in range(2)]
    slow = False
    on_the_wire = anyio.Event()

    def slow_reads(method: str, route: str) -> InjectedFault | None:
        if slow and method == "GET":
            on_the_wire.set()
            return InjectedFault("latency", seconds=0.5, real=True)
        return None

    fake.faults.hook = slow_reads
    read: list[object] = []
    async with fake.serve_tcp():
        ecs = AsyncEcsClient(fake.compute_url, auth=TokenAuth(fake.token), settings=FAST)

        async def reader() -> None:
            try:
                read.append(await ecs.get_server(ids[0]))
            except Exception as exc:  # what it ended with is the test's finding
                read.append(exc)

        async with anyio.create_task_group() as group:
            with anyio.CancelScope() as scope:
                async with ecs:
                    async with anyio.create_task_group() as warm:
                        for _ in range(3):
                            warm.start_soon(ecs.get_server, ids[1])
                    slow = True
                    group.start_soon(reader)
                    await on_the_wire.wait()
                    scope.cancel()
                    await anyio.sleep(10)
        for _ in range(100):  # the server sees a close once it reads it: at most 1 s
            if fake.open_connections == 0:
                break
            await anyio.sleep(0.01)
        assert fake.open_connections == 0
        (outcome,) = read
        assert isinstance(outcome, ClientClosed), repr(outcome)
        with pytest.raises(ClientClosed, match="nothing more is sent"):
            await ecs.get_server(ids[1])
        slow = False
        # Closed whole, it opens again.
        async with ecs:
            server = await ecs.get_server(ids[1])
            assert server is not None
            assert server.id == ids[1]


@pytest.mark.parametrize("tcp", [False, True], ids=["in-process", "tcp"])
@pytest.mark.anyio
async def test_a_timeout_of_zero_sends_no_rebuild(tcp: bool) -> None:
    fake = FakeCompute(rebuild_seconds=0.2)
    ids = [fake.add_server(name=f"zero-{i}") for i in range(3)]
    fake.advance(30)
    request = RebuildRequest(image_ref=NEW_IMAGE)
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(_served(fake, tcp))
        ecs = await stack.enter_async_context(
            AsyncEcsClient(
                fake.compute_url, auth=TokenAuth(fake.token), transport=transport, settings=FAST
            )
        )
        befores = {sid: await ecs.get_server(sid) for sid in ids}
        outcomes = await ecs.rebuild_many(ids[:2], request, timeout=0)
        assert [(o.kind.value, o.submitted) for o in outcomes] == [("timed_out", False)] * 2
        with pytest.raises(RebuildTimeout, match="nothing was sent"):
            await ecs.rebuild_and_wait(ids[2], request, before=befores[ids[2]], timeout=0)
    assert [fake.rebuilds_accepted(sid) for sid in ids] == [0, 0, 0]


@pytest.mark.anyio
async def test_two_tasks_closing_at_once_both_return_with_every_connection_closed() -> None:
    fake = FakeCompute(rebuild_seconds=0.2)
    ids = [fake.add_server(name=f"twice-{i}") for i in range(3)]
    fake.advance(30)
    fake.faults.script("POST", "rebuild", [InjectedFault("latency", seconds=0.5, real=True)])
    open_at_return: list[int] = []
    async with fake.serve_tcp():
        ecs = AsyncEcsClient(fake.compute_url, auth=TokenAuth(fake.token), settings=FAST)
        await ecs.__aenter__()
        async with anyio.create_task_group() as warm:  # connections in the pool, idle
            for sid in ids:
                warm.start_soon(ecs.get_server, sid)
        async with anyio.create_task_group() as group:
            group.start_soon(ecs.rebuild, ids[0], RebuildRequest(image_ref=NEW_IMAGE))
            while fake.rebuilds_accepted(ids[0]) == 0:  # noqa: ASYNC110 - the fake sets no event
                await anyio.sleep(0.01)

            async def close() -> None:
                await ecs.aclose()
                await anyio.sleep(0.01)  # the server reads each close
                open_at_return.append(fake.open_connections)

            group.start_soon(close)
            group.start_soon(close)
            await anyio.sleep(0.05)
            # Opening a client that is being closed is refused, not silently a dead client.
            with pytest.raises(ClientClosed, match="being closed"):
                await ecs.__aenter__()
    assert open_at_return == [0, 0]
    assert fake.rebuilds_accepted(ids[0]) == 1


@pytest.mark.anyio
async def test_opening_a_client_while_its_connections_close_is_refused_until_they_are(
    anyio_backend: str,
) -> None:
    # Nothing on the wire, three idle connections: the client is let go of at once, and its
    # connections close after. Opening it meanwhile is refused; once the close returned, it
    # opens, and a close then leaves nothing open.
    fake = FakeCompute()
    sid = fake.add_server(name="reopen")
    async with fake.serve_tcp():
        ecs = AsyncEcsClient(fake.compute_url, auth=TokenAuth(fake.token), settings=FAST)
        await ecs.__aenter__()
        async with anyio.create_task_group() as warm:
            for _ in range(3):
                warm.start_soon(ecs.get_server, sid)
        closed = anyio.Event()
        refusals: list[str] = []
        reopened = False
        async with anyio.create_task_group() as group:

            async def open_meanwhile() -> None:
                nonlocal reopened
                while not (reopened or closed.is_set()):
                    try:
                        await ecs.__aenter__()
                    except ClientClosed as exc:
                        refusals.append(str(exc))
                        await anyio.lowlevel.checkpoint()
                    else:
                        reopened = True  # the close had ended (its last step is a checkpoint)

            # Started before the close, it first runs once the close has begun (start_soon
            # does not yield, and aclose marks the client closing before its first await).
            group.start_soon(open_meanwhile)
            await ecs.aclose()
            closed.set()
        assert all("being closed" in refusal for refusal in refusals)
        if anyio_backend == "asyncio":
            # aiohttp closes its connections over several turns of the loop: the window is
            # always there (trio's may close them all within one, leaving none to refuse in).
            assert refusals
        if not reopened:
            await ecs.__aenter__()
        # Whenever it opened again, it is a whole client: it reads, and closes cleanly.
        server = await ecs.get_server(sid)
        assert server is not None
        await ecs.aclose()
        for _ in range(100):  # the server sees a close once it reads it: at most 1 s
            if fake.open_connections == 0:
                break
            await anyio.sleep(0.01)
        assert fake.open_connections == 0
