"""Random fleets under random rollout policies and service faults, with the rollout's promises
checked on every run against the fake service's own record."""

from __future__ import annotations

import random

import pytest

from ecs_rebuild_async import (
    NOVA,
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    OutcomeKind,
    RebuildRequest,
    RolloutPolicy,
    Server,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

NEW = DEFAULT_IMAGES["ubuntu-24.04"]
FORMER = [DEFAULT_IMAGES["ubuntu-22.04"], DEFAULT_IMAGES["centos-9"]]
FAST = ClientSettings(
    poll_first_delay=0.01,
    poll_interval=0.02,
    poll_interval_max=0.05,
    backoff_initial=0.001,
    retry_after_cap=0.02,
    reconcile_settle=0.01,
)
RUNS = 12


def random_policy(rng: random.Random, fake: FakeCompute) -> RolloutPolicy:
    async def healthy(server: Server) -> bool:
        return fake.health(server.id)

    return RolloutPolicy(
        max_unavailable=rng.choice([None, 1, 2, 3, 0.25, 0.5]),
        canary=rng.choice([0, 0, 1, 2]),
        max_failures=rng.choice([None, 0, 1, 2, 0.2]),
        health_check=rng.choice([None, healthy]),
        warmup=0.1,
        health_interval=0.02,
        checkpoints=rng.choice([(), (0.5,), (0.3, 0.6)]),
        checkpoint_delay=0.0,
        skip_matching=rng.choice([False, True]),
        rollback=rng.choice([False, True]),
    )


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(RUNS))
async def test_random_rollouts_keep_their_promises(seed: int, figures: list[str]) -> None:
    rng = random.Random(seed)
    fake = FakeCompute(time_scale=50, dialect="nova", jitter=0.5, seed=seed)
    former: dict[str, str] = {}
    fleet: list[str] = []
    for index in range(rng.randint(4, 14)):
        image = rng.choice([*FORMER, NEW] if index % 4 == 3 else FORMER)
        server_id = fake.add_server(
            name=f"web-{index}",
            image_id=image,
            fail_image=NEW if rng.random() < 0.2 else None,
            health=rng.random() > 0.15,
        )
        former[server_id] = image
        fleet.append(server_id)
    fake.faults.rate("503", 0.05, method="GET", route="server")
    fake.faults.rate("429", 0.05, method="POST", route="rebuild")
    policy = random_policy(rng, fake)
    concurrency = rng.choice([1, 2, 5, 50])
    report = BulkReport()
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        settings=FAST,
        dialect=NOVA,
    ) as ecs:
        outcomes = await ecs.rebuild_many(
            fleet,
            RebuildRequest(image_ref=NEW),
            concurrency=concurrency,
            policy=policy,
            report=report,
            timeout=60,
        )

    # One outcome per server, in order; the report agrees with the list.
    assert [o.server_id for o in outcomes] == fleet
    assert all(report.outcomes[o.server_id] is o for o in outcomes)
    assert report.finished == report.total == len(fleet)
    accepted = {sid: fake.rebuilds_accepted(sid) for sid in fleet}
    # Submitted means the fake accepted it (no answer is lost here, so nothing is unknown).
    assert report.submitted == {sid for sid, count in accepted.items() if count >= 1}
    # Pacing: never more rebuilding at once than the policy and the concurrency allow.
    limit = policy.unavailable_limit(
        len(fleet) - sum(o.reason == "already matches" for o in outcomes)
    )
    assert fake.max_rebuilding <= min(concurrency, limit or concurrency)
    for outcome in outcomes:
        sid = outcome.server_id
        truth = fake.truth(sid)
        if outcome.kind is OutcomeKind.SKIPPED:
            assert accepted[sid] == 0
            assert outcome.reason == "already matches" or outcome.reason.startswith("not started")
            assert (outcome.reason == "already matches") is (former[sid] == NEW)
        elif outcome.kind is OutcomeKind.OK:
            assert (accepted[sid], truth.image_id, truth.status) == (1, NEW, "ACTIVE")
        elif outcome.kind is OutcomeKind.ROLLED_BACK:
            # Rebuilt once forward, once back: exactly twice, and on its former image again.
            assert fake.rebuild_images(sid) == [NEW, former[sid]]
            assert (truth.image_id, truth.status) == (former[sid], "ACTIVE")
        else:
            assert outcome.kind in (OutcomeKind.FAILED, OutcomeKind.UNHEALTHY), outcome
            assert accepted[sid] == 1
    stopped = report.stopped_reason
    never_started = [o for o in outcomes if (o.reason or "").startswith("not started")]
    assert bool(never_started) <= (stopped is not None)
    rolled = [o for o in outcomes if o.kind is OutcomeKind.ROLLED_BACK]
    if stopped is None or not policy.rollback:
        assert rolled == []
    else:
        assert {o.server_id for o in rolled} == report.submitted
    figures.append(
        f"rollout seed {seed}: {len(fleet)} servers, stopped: {stopped or 'no'}, "
        f"outcomes {report.counts()}, most rebuilding at once {fake.max_rebuilding}"
    )
