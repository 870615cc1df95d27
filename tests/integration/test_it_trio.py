"""One rebuild under trio, on httpx's own engine, against the same service."""

from __future__ import annotations

from typing import Any

import pytest

from ecs_rebuild_async import RebuildRequest, ServerStatus

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_rebuild_and_wait_under_trio(target: Any) -> None:
    server_id = target.take_server()
    # Another image than the seed's, so that the end is proven by the image shown however
    # quickly the fake virt driver finishes (see the README on same-image rebuilds).
    image = target.need("image_alt")
    async with target.client() as ecs:
        before = await ecs.get_server(server_id)
        done = await ecs.rebuild_and_wait(
            server_id,
            RebuildRequest(image_ref=image, name="trio", metadata={"loop": "trio"}),
            timeout=target.wait_timeout,
        )
    assert before.status is ServerStatus.ACTIVE
    assert (done.status, done.task_state, done.name) == (ServerStatus.ACTIVE, None, "trio")
    assert (done.image_id, dict(done.metadata)) == (image, {"loop": "trio"})
