"""Durable runs through the public API: rebuild_many(journal=...), resume(), the file itself,
the owner lock, refusals of another run, and secrets never written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    JournalInUse,
    JournalMismatch,
    OutcomeKind,
    RebuildOutcome,
    RebuildRequest,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

pytestmark = pytest.mark.anyio

NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]
FAST = ClientSettings(
    poll_first_delay=0.02,
    poll_interval=0.05,
    poll_interval_max=0.1,
    backoff_initial=0.001,
    reconcile_settle=0.01,
)
PASSWORD = "correct-horse-battery"
USER_DATA = "#!/bin/sh\necho the-user-data-marker\n"


@asynccontextmanager
async def client(fake: FakeCompute) -> AsyncIterator[AsyncEcsClient]:
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=FAST
    ) as ecs:
        yield ecs


def rebuild_posts(fake: FakeCompute) -> int:
    return fake.stats.requests[("POST", "rebuild")]


async def test_a_finished_run_resumed_reports_from_the_journal_and_sends_nothing(
    tmp_path: Path,
) -> None:
    fake = FakeCompute(time_scale=50)
    ids = fake.add_servers(12)
    journal = tmp_path / "rollout.sqlite"
    async with client(fake) as ecs:
        first = await ecs.rebuild_many(ids, RebuildRequest(image_ref=NEW_IMAGE), journal=journal)
        assert [o.kind for o in first] == [OutcomeKind.OK] * 12
        fake.stats.reset()
        again = await ecs.rebuild_many(ids, RebuildRequest(image_ref=NEW_IMAGE), journal=journal)
        resumed = await ecs.resume(journal)
    assert [o.server_id for o in again] == ids == [o.server_id for o in resumed]
    assert all(o.ok and o.submitted for o in again + resumed)
    assert [o.server.image_id for o in resumed if o.server] == [NEW_IMAGE] * 12
    # Reported from the journal: not one request about these servers.
    assert rebuild_posts(fake) == 0
    assert fake.stats.requests[("GET", "server")] == 0
    assert fake.stats.requests[("GET", "servers_detail")] == 0
    assert all(fake.rebuilds_accepted(s) == 1 for s in ids)


async def test_the_journal_is_private_and_holds_no_secret(tmp_path: Path) -> None:
    fake = FakeCompute(time_scale=50)
    ids = fake.add_servers(3)
    journal = tmp_path / "rollout.sqlite"
    request = RebuildRequest(image_ref=NEW_IMAGE, admin_pass=PASSWORD, user_data=USER_DATA)
    async with client(fake) as ecs:
        await ecs.rebuild_many(ids, request, journal=journal)
    encoded = request.encoded_user_data()
    assert isinstance(encoded, str)
    secrets = (PASSWORD, "the-user-data-marker", encoded, fake.token)
    _check_private_and_clean(tmp_path, "rollout.sqlite", secrets)


def _check_private_and_clean(folder: Path, name: str, secrets: tuple[str, ...]) -> None:
    files = [path for path in folder.iterdir() if path.name.startswith(name)]
    assert folder / name in files
    for path in files:  # the database, its write-ahead log and shared memory
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path.name
        content = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in content, (path.name, secret[:8])


async def test_a_resume_needs_the_secrets_again_and_refuses_other_ones(tmp_path: Path) -> None:
    fake = FakeCompute(time_scale=50)
    ids = fake.add_servers(6)
    journal = tmp_path / "rollout.sqlite"
    request = RebuildRequest(image_ref=NEW_IMAGE, admin_pass=PASSWORD, user_data=USER_DATA)
    async with client(fake) as ecs:
        with anyio.CancelScope() as scope:

            def stop_after_two(outcome: RebuildOutcome, seen: list[str] = []) -> None:  # noqa: B006
                seen.append(outcome.server_id)
                if len(seen) == 2:
                    scope.cancel()

            await ecs.rebuild_many(
                ids, request, journal=journal, concurrency=1, on_outcome=stop_after_two
            )
        with pytest.raises(JournalMismatch, match="adminPass and user_data"):
            await ecs.resume(journal)
        with pytest.raises(JournalMismatch, match="another request"):
            await ecs.resume(journal, admin_pass="not-the-password", user_data=USER_DATA)
        with pytest.raises(JournalMismatch, match="another request"):
            await ecs.resume(journal, admin_pass=PASSWORD, user_data="other data")
        posts_before = rebuild_posts(fake)
        outcomes = await ecs.resume(journal, admin_pass=PASSWORD, user_data=USER_DATA)
    assert [o.kind for o in outcomes] == [OutcomeKind.OK] * 6
    assert rebuild_posts(fake) - posts_before == 4  # only the ones never started
    assert all(fake.rebuilds_accepted(s) == 1 for s in ids)


async def test_a_journal_of_another_run_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    fake = FakeCompute(time_scale=50)
    ids = fake.add_servers(4)
    others = fake.add_servers(2, prefix="other")
    journal = tmp_path / "rollout.sqlite"
    async with client(fake) as ecs:
        await ecs.rebuild_many(ids, RebuildRequest(image_ref=NEW_IMAGE), journal=journal)
        fake.stats.reset()
        with pytest.raises(JournalMismatch, match="other servers"):
            await ecs.rebuild_many(
                [*ids, *others], RebuildRequest(image_ref=NEW_IMAGE), journal=journal
            )
        with pytest.raises(JournalMismatch, match="another request"):
            await ecs.rebuild_many(
                ids, RebuildRequest(image_ref=NEW_IMAGE, name="renamed"), journal=journal
            )
    assert rebuild_posts(fake) == 0


async def test_cancelled_midway_then_resumed_each_server_rebuilt_once(tmp_path: Path) -> None:
    fake = FakeCompute(time_scale=50)
    ids = fake.add_servers(30)
    journal = tmp_path / "rollout.sqlite"
    report = BulkReport()
    async with client(fake) as ecs:
        with anyio.CancelScope() as scope:

            def stop_after_ten(outcome: RebuildOutcome) -> None:
                if len(report.outcomes) >= 10:
                    scope.cancel()

            await ecs.rebuild_many(
                ids,
                RebuildRequest(image_ref=NEW_IMAGE),
                journal=journal,
                concurrency=8,
                on_outcome=stop_after_ten,
                report=report,
            )
        assert scope.cancelled_caught
        interrupted = {s for s in ids if fake.rebuilds_accepted(s)}
        assert report.submitted == interrupted
        resumed = await ecs.resume(journal)
    assert [o.server_id for o in resumed] == ids
    assert all(o.ok for o in resumed)
    assert all(fake.rebuilds_accepted(s) == 1 for s in ids)
    assert all(fake.truth(s).image_id == NEW_IMAGE for s in ids)


async def test_a_second_driver_of_a_journal_in_use_is_refused(tmp_path: Path) -> None:
    fake = FakeCompute(time_scale=0)  # frozen: the first run waits until the clock moves
    ids = fake.add_servers(3)
    journal = tmp_path / "rollout.sqlite"
    async with client(fake) as ecs, anyio.create_task_group() as group:
        started = anyio.Event()

        async def first() -> None:
            await ecs.rebuild_many(
                ids,
                RebuildRequest(image_ref=NEW_IMAGE),
                journal=journal,
                on_event=lambda event: started.set(),
            )

        group.start_soon(first)
        await started.wait()
        with pytest.raises(JournalInUse, match=f"process {os.getpid()}"):
            await ecs.rebuild_many(ids, RebuildRequest(image_ref=NEW_IMAGE), journal=journal)
        # Another process is refused too (it reaches the fake over loopback).
        async with fake.serve_tcp():
            other = await anyio.to_thread.run_sync(
                lambda: subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "ecs_rebuild_async",
                        "resume",
                        str(journal),
                        "--endpoint",
                        fake.compute_url,
                        "--token",
                        fake.token,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            )
        assert other.returncode == 1
        assert "in use by process" in other.stderr
        fake.advance(600)
    assert all(fake.rebuilds_accepted(s) == 1 for s in ids)


@pytest.mark.parametrize("seed", range(4))
async def test_cancelled_at_random_points_with_faults_then_resumed(
    tmp_path: Path, seed: int
) -> None:
    import random

    rng = random.Random(seed * 104729)
    fake = FakeCompute(time_scale=50, seed=seed)
    ids = fake.add_servers(40)
    fake.faults.rate("lost", 0.1, method="POST", route="rebuild")
    fake.faults.rate("500", 0.1, method="POST", route="rebuild")
    fake.faults.rate("503", 0.05, method="GET")
    journal = tmp_path / "rollout.sqlite"
    request = RebuildRequest(image_ref=NEW_IMAGE)
    async with client(fake) as ecs:
        for _ in range(3):
            with anyio.move_on_after(rng.uniform(0.0, 0.4)):
                await ecs.rebuild_many(ids, request, journal=journal, concurrency=8)
        outcomes = await ecs.resume(journal)
        fake.stats.reset()
        again = await ecs.resume(journal)
    assert [o.server_id for o in outcomes] == ids
    assert all(fake.rebuilds_accepted(s) <= 1 for s in ids)
    for outcome in outcomes:
        rebuilt = fake.rebuilds_accepted(outcome.server_id)
        if outcome.ok:
            assert rebuilt == 1
            assert fake.truth(outcome.server_id).image_id == NEW_IMAGE
        else:
            # A rebuild refused by a 5xx twice was never carried out; nothing else fails here.
            assert outcome.kind is OutcomeKind.ERROR, outcome
            assert rebuilt == 0
    assert [(o.server_id, o.kind, o.ok) for o in again] == [
        (o.server_id, o.kind, o.ok) for o in outcomes
    ]
    assert fake.stats.requests[("POST", "rebuild")] == 0


async def test_pairs_duplicates_and_a_bad_path(tmp_path: Path) -> None:
    from ecs_rebuild_async import JournalError

    fake = FakeCompute(time_scale=50)
    a, b = fake.add_servers(2)
    other = RebuildRequest(image_ref=DEFAULT_IMAGES["centos-9"], name="other")
    journal = tmp_path / "rollout.sqlite"
    servers: list[str | tuple[str, RebuildRequest]] = [a, (b, other), a]
    async with client(fake) as ecs:
        outcomes = await ecs.rebuild_many(
            servers, RebuildRequest(image_ref=NEW_IMAGE), journal=journal
        )
        assert [o.kind for o in outcomes] == [OutcomeKind.OK, OutcomeKind.OK, OutcomeKind.INVALID]
        resumed = await ecs.resume(journal)
        with pytest.raises(JournalError, match="cannot be used"):
            await ecs.rebuild_many(
                [a], RebuildRequest(image_ref=NEW_IMAGE), journal=tmp_path / "no" / "j"
            )
    assert [o.kind for o in resumed] == [OutcomeKind.OK, OutcomeKind.OK]
    assert fake.truth(a).image_id == NEW_IMAGE
    assert fake.truth(b).image_id == DEFAULT_IMAGES["centos-9"]
    assert fake.rebuilds_accepted(a) == fake.rebuilds_accepted(b) == 1
