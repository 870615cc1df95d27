"""How many requests a rebuild-and-wait sends: counted at the service (FakeCompute), not timed.

On an instant service one rebuild-and-wait is three requests (the read before, the POST, one
read that proves the end); two when the caller hands over the server as read before. The
version document is read once per client, however many calls follow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    ClientSettings,
    InvalidRequest,
    RebuildRequest,
    ServerStatus,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

OLD_IMAGE = DEFAULT_IMAGES["ubuntu-22.04"]
NEW_IMAGE = DEFAULT_IMAGES["ubuntu-24.04"]


@asynccontextmanager
async def client_for(fake: FakeCompute, **settings: Any) -> AsyncIterator[AsyncEcsClient]:
    options = {"poll_first_delay": 0.0, "poll_interval": 0.01, **settings}
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        settings=ClientSettings(**options),
    ) as ecs:
        yield ecs


def instant_fake(servers: int) -> tuple[FakeCompute, list[str]]:
    """A fake whose rebuilds end at once; its servers were last changed long ago."""
    fake = FakeCompute(rebuild_seconds=0.0)
    ids = [fake.add_server(name=f"web-{i}", image_id=OLD_IMAGE) for i in range(servers)]
    fake.advance(30)
    return fake, ids


def requests(fake: FakeCompute) -> dict[tuple[str, str], int]:
    return {key: count for key, count in fake.stats.requests.items() if count}


@pytest.mark.anyio
async def test_an_instant_rebuild_and_wait_is_three_requests_and_the_versions_one() -> None:
    fake, (sid,) = instant_fake(1)
    async with client_for(fake) as ecs:
        done = await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=30)
    assert done.status is ServerStatus.ACTIVE
    assert requests(fake) == {
        ("GET", "version"): 1,
        ("GET", "server"): 2,  # the read before, and the one that proves the end
        ("POST", "rebuild"): 1,
    }


@pytest.mark.anyio
async def test_a_server_read_before_makes_it_two_requests() -> None:
    fake, (sid,) = instant_fake(1)
    async with client_for(fake) as ecs:
        before = await ecs.get_server(sid)
        counted = dict(fake.stats.requests)
        done = await ecs.rebuild_and_wait(
            sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=30, before=before
        )
    assert done.status is ServerStatus.ACTIVE
    assert done.image is not None
    assert done.image.id == NEW_IMAGE
    sent = {k: v - counted.get(k, 0) for k, v in fake.stats.requests.items()}
    assert {k: v for k, v in sent.items() if v} == {("POST", "rebuild"): 1, ("GET", "server"): 1}


@pytest.mark.anyio
async def test_the_version_document_is_read_once_per_client() -> None:
    fake, ids = instant_fake(3)
    async with client_for(fake) as ecs:
        for round_, image in enumerate((NEW_IMAGE, OLD_IMAGE)):
            for sid in ids:
                await ecs.rebuild_and_wait(sid, RebuildRequest(image_ref=image), timeout=30)
            assert fake.stats.requests[("GET", "version")] == 1, round_
    assert fake.stats.requests[("POST", "rebuild")] == 6
    async with client_for(fake) as ecs:
        await ecs.rebuild_and_wait(ids[0], RebuildRequest(image_ref=NEW_IMAGE), timeout=30)
    assert fake.stats.requests[("GET", "version")] == 2  # a new client asks again


@pytest.mark.anyio
async def test_a_fleet_of_instant_rebuilds_is_one_post_each_and_a_few_listings() -> None:
    fake, ids = instant_fake(40)
    async with client_for(fake) as ecs:
        outcomes = await ecs.rebuild_many(ids, RebuildRequest(image_ref=NEW_IMAGE), concurrency=40)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    seen = requests(fake)
    assert seen[("POST", "rebuild")] == 40
    # Servers are read on their own only once fewer than two waits are left to share a listing.
    assert seen.get(("GET", "server"), 0) <= 2
    assert 1 <= seen[("GET", "servers_detail")] <= 10


@pytest.mark.anyio
async def test_a_server_read_before_must_be_that_server() -> None:
    fake, (sid, other) = instant_fake(2)
    async with client_for(fake) as ecs:
        before = await ecs.get_server(other)
        counted = sum(fake.stats.requests.values())
        with pytest.raises(InvalidRequest, match="before"):
            await ecs.rebuild_and_wait(
                sid, RebuildRequest(image_ref=NEW_IMAGE), timeout=30, before=before
            )
        with pytest.raises(InvalidRequest, match="before"):
            await ecs.rebuild_and_wait(
                sid,
                RebuildRequest(image_ref=NEW_IMAGE),
                timeout=30,
                before="not a server",  # type: ignore[arg-type]
            )
    assert sum(fake.stats.requests.values()) == counted  # nothing sent
    assert fake.rebuilds_accepted(sid) == 0
