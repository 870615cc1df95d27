"""Soak: a fleet rebuilt through every fault at once loses nothing and does nothing twice.

1,000 servers go through ``rebuild_many`` against the fake with 5xx answers, 429 with
Retry-After, lost POST answers, late answers, lagging reads, Keystone tokens that expire every
50 seconds of fake time, servers whose rebuild ends in ERROR and stopped servers. Both
backends run the full 1,000 in a few seconds each.

The fake's clock is stepped, not scaled: it stands still, and one task moves it 0.5 fake
seconds at a time, then sleeps 10 ms. That is about as fast as ``time_scale=50`` on an idle
machine, but fake time can only move one step per turn of the event loop, however busy the
CPU is. So a token cannot expire between a re-authentication and the request it repeats:
the tasks that waited for the new token pass the lock one per turn, at most CONCURRENCY + 2
of them, and a token lives TOKEN_STEPS steps. A busy machine slows the run, not the outcome.

Run with ``-s`` to see the counts it prints.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import anyio
import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    EcsError,
    KeystoneAuth,
    OutcomeKind,
    RebuildFailed,
    RebuildOutcomeUnknown,
    RebuildRequest,
    ServerError,
    TokenAuth,
    TransportError,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute, InjectedFault

OLD_IMAGE = DEFAULT_IMAGES["ubuntu-22.04"]
NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]
SERVERS = 1000
CONCURRENCY = 50
STEP = 0.5  # fake seconds the clock moves at a time
STEP_PERIOD = 0.01  # real seconds between steps (at most one step per turn of the loop)
# A token's life in steps: more than a re-authentication can wait for its repeat (the tasks
# that queue for the new token, one per turn of the loop, and one late answer of 2 steps).
TOKEN_STEPS = 100
# Each slot rebuilds SERVERS / CONCURRENCY servers one after another, each rebuild taking at
# least 16 steps: a run lasts over 300 steps, so tokens expire several times in every run.
assert TOKEN_STEPS > (CONCURRENCY + 2) + 2
COMPUTE_ROUTES = frozenset({"rebuild", "server", "servers_detail", "instance_actions"})

SETTINGS = ClientSettings(
    poll_first_delay=0.02,
    poll_interval=0.05,
    poll_interval_max=0.1,
    backoff_initial=0.001,
    retry_after_cap=0.05,
    # The fake's 429s are drawn at random, whatever the request rate: the default additive
    # increase (1 req/s per success) would settle near 40 req/s. Recover fast instead.
    pacing_recovery=50.0,
    reconcile_settle=0.01,
)


def fault_hook(seed: int) -> Callable[[str, str], InjectedFault | str | None]:
    """Per compute request: 10% 5xx, 5% 429 with Retry-After, 2% lost POST answers, 3% late."""
    rng = random.Random(seed)

    def pick(method: str, route: str) -> InjectedFault | str | None:
        if route not in COMPUTE_ROUTES:
            return None
        draw = rng.random()
        if draw < 0.05:
            return "500"
        if draw < 0.10:
            return "503"
        if draw < 0.15:
            return InjectedFault("429", retry_after="1")
        if method == "POST" and draw < 0.17:
            return "lost"
        if draw < 0.20:
            # Real time (the stepped clock stands still): about one step late.
            return InjectedFault("latency", seconds=STEP_PERIOD, real=True)
        return None

    return pick


def fleet(fake: FakeCompute) -> tuple[list[str], dict[str, str], set[str]]:
    """1,000 servers: every 50th stopped, 3% whose rebuild goes to ERROR."""
    ids: list[str] = []
    before: dict[str, str] = {}
    doomed: set[str] = set()
    for index in range(SERVERS):
        status = "SHUTOFF" if index % 50 == 7 else "ACTIVE"
        fail = index % 33 == 5
        server_id = fake.add_server(name=f"soak-{index}", status=status, fail=fail)
        ids.append(server_id)
        before[server_id] = status
        if fail:
            doomed.add(server_id)
    return ids, before, doomed


async def step_clock(fake: FakeCompute) -> None:
    """Move the fake's clock one step per period until cancelled."""
    while True:
        fake.advance(STEP)
        await anyio.sleep(STEP_PERIOD)


@pytest.mark.anyio
async def test_soak_one_outcome_per_server_nothing_twice_truth_matches(
    anyio_backend: str,
    figures: list[str],
) -> None:
    fake = FakeCompute(
        time_scale=0,
        rebuild_seconds=10,
        read_lag=2,
        token_lifetime=TOKEN_STEPS * STEP,
        jitter=0.2,
        seed=7,
    )
    ids, before, doomed = fleet(fake)
    fake.advance(30)  # the servers were last changed well before the run
    fake.faults.hook = fault_hook(11)
    auth = KeystoneAuth(
        fake.identity_url,
        username=fake.username,
        password=fake.password,
        user_domain_name=fake.user_domain_name,
        project_name=fake.project_name,
        project_domain_name=fake.user_domain_name,
    )
    report = BulkReport()
    async with (
        AsyncEcsClient(
            fake.compute_url, auth=auth, transport=fake.transport(), settings=SETTINGS
        ) as ecs,
        anyio.create_task_group() as clock,
    ):
        clock.start_soon(step_clock, fake)
        outcomes = await ecs.rebuild_many(
            ids,
            RebuildRequest(image_ref=NEW_IMAGE),
            concurrency=CONCURRENCY,
            timeout=60,
            report=report,
        )
        client_stats = ecs.stats
        clock.cancel_scope.cancel()

    # Exactly one outcome per server, in order; only the library's typed errors inside.
    assert [o.server_id for o in outcomes] == ids
    assert report.outcomes.keys() == set(ids)
    kinds = Counter(o.kind.value for o in outcomes)
    duplicates = [sid for sid in ids if fake.rebuilds_accepted(sid) > 1]
    accepted = {sid for sid in ids if fake.rebuilds_accepted(sid) == 1}
    tokens_issued = fake.stats.requests[("POST", "tokens")]

    stopped = list(before.values()).count("SHUTOFF")
    summary = (
        f"soak[{anyio_backend}]: servers={len(ids)} stopped={stopped} doomed={len(doomed)}\n"
        f"  injected faults: {dict(sorted(fake.stats.faults.items()))}\n"
        f"  responses: {dict(sorted(fake.stats.responses.items()))}"
        f" (401 = expired tokens; token requests: {tokens_issued})\n"
        f"  outcomes: {dict(sorted(kinds.items()))}\n"
        f"  rebuilds accepted: {len(accepted)} submitted: {len(report.submitted)}"
        f" duplicate rebuilds: {len(duplicates)}\n"
        f"  client requests: {client_stats}"
    )
    print("\n" + summary)
    figures.append(summary)

    assert duplicates == []
    # Submitted: accepted, or may have been (an outcome that cannot be proven, reported so).
    assert accepted <= report.submitted
    by_id = {outcome.server_id: outcome for outcome in outcomes}
    assert all(by_id[sid].kind is OutcomeKind.UNKNOWN for sid in report.submitted - accepted)
    # Every fault kind and token expiry really happened.
    for kind in ("500", "503", "429", "lost", "latency"):
        assert fake.stats.faults[kind] > 0, kind
    assert fake.stats.responses[401] > 0
    assert tokens_issued > 1

    for outcome in outcomes:
        sid = outcome.server_id
        truth = fake.truth(sid)
        if outcome.ok:
            assert outcome.kind is OutcomeKind.OK
            assert outcome.error is None
            assert fake.rebuilds_accepted(sid) == 1
            assert sid not in doomed
            assert truth.status == before[sid]
            assert truth.task_state is None
            assert truth.image_id == NEW_IMAGE
            assert outcome.server is not None
            assert outcome.server.status.value == truth.status
            assert outcome.server.image_id == NEW_IMAGE
            continue
        error = outcome.error
        assert isinstance(error, EcsError), outcome
        assert str(error), outcome  # every failure says why
        if outcome.kind is OutcomeKind.FAILED:
            assert isinstance(error, RebuildFailed)
            assert sid in doomed
            assert truth.status == "ERROR"
            assert fake.rebuilds_accepted(sid) == 1
            assert error.fault is not None
            assert error.fault.message == truth.fault
            assert error.server is not None
            assert error.server.status.value == "ERROR"
        elif outcome.kind is OutcomeKind.UNKNOWN:
            assert isinstance(error, RebuildOutcomeUnknown)
            assert error.evidence
            assert fake.rebuilds_accepted(sid) <= 1
        else:
            # A POST that failed twice (5xx, or an answer lost in the latency), each time proven
            # not carried out, is not sent a third time: nothing happened to the server. Never
            # Unauthorized: on the stepped clock no token expires before its repeat.
            assert outcome.kind is OutcomeKind.ERROR, outcome
            assert isinstance(error, (ServerError, TransportError)), outcome
            assert not outcome.submitted
            assert sid not in report.submitted
            assert fake.rebuilds_accepted(sid) == 0
            assert truth.status == before[sid]
            assert truth.image_id == OLD_IMAGE
    # Most of the fleet got through: the faults cost retries, not the run.
    assert kinds["ok"] > SERVERS * 0.8
    # Every doomed server whose rebuild was accepted is reported failed, unless its outcome
    # could not be proven (then it says so, with the evidence).
    proven = {sid for sid in doomed & accepted if by_id[sid].kind is not OutcomeKind.UNKNOWN}
    assert kinds["failed"] == len(proven)


@pytest.mark.anyio
async def test_a_failed_fleet_listing_is_no_one_servers_outcome() -> None:
    """The shared poll that fails after its retries is tried again, not blamed on the one
    server whose task happened to run it."""
    fake = FakeCompute(time_scale=50, rebuild_seconds=5, seed=3)
    ids = fake.add_servers(5, prefix="listing")
    fake.advance(30)
    # The first listing reads the fleet before the run; the next one fails twice.
    fake.faults.script("GET", "servers_detail", [None, "503", "503"])
    settings = ClientSettings(
        poll_first_delay=0.02, poll_interval=0.05, backoff_initial=0.001, retry_attempts=2
    )
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=settings
    ) as ecs:
        outcomes = await ecs.rebuild_many(ids, RebuildRequest(image_ref=NEW_IMAGE), timeout=30)
    assert fake.stats.responses[503] == 2
    assert [(o.kind, o.error) for o in outcomes] == [(OutcomeKind.OK, None)] * len(ids)
    assert all(fake.truth(sid).image_id == NEW_IMAGE for sid in ids)
