"""A wait in flight holds what it needs, not what it started from: a fleet holds one wait per
server, so the server read before each rebuild must not stay alive for the whole wait."""

from __future__ import annotations

import gc
import importlib.metadata
import weakref

import anyio
import pytest

from ecs_rebuild_async import (
    AsyncEcsClient,
    ClientSettings,
    RebuildEvent,
    RebuildRequest,
    TokenAuth,
)
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute


def _trio_keeps_frame_locals() -> bool:
    version = importlib.metadata.version("trio").split(".")
    return (int(version[0]), int(version[1])) < (0, 28)


SETTINGS = ClientSettings(poll_first_delay=0.01, poll_interval=0.02, poll_interval_max=0.05)


@pytest.mark.anyio
@pytest.mark.parametrize("bulk", [False, True], ids=["rebuild_and_wait", "rebuild_many"])
async def test_the_server_read_before_is_not_held_while_its_rebuild_is_waited_for(
    bulk: bool, anyio_backend: str
) -> None:
    if anyio_backend == "trio" and _trio_keeps_frame_locals():
        pytest.skip(
            "trio before 0.28 reads frame.f_locals for its KeyboardInterrupt protection, and "
            "the snapshot it leaves on a frame holds that frame's arguments until the frame ends"
        )
    # Rebuilds that last far longer than the test: every wait is in flight when it looks.
    fake = FakeCompute(rebuild_seconds=3600)
    ids = fake.add_servers(2, prefix="memory")
    fake.advance(30)  # the rebuild's reads fall in a later second than the reads before it
    request = RebuildRequest(image_ref=DEFAULT_IMAGES["ubuntu-24.04"])
    running = {server_id: anyio.Event() for server_id in ids}

    def on_event(event: RebuildEvent) -> None:
        if event.phase == "running":
            running[event.server_id].set()

    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=SETTINGS
    ) as ecs:
        befores = {server_id: await ecs.get_server(server_id) for server_id in ids}
        refs = [weakref.ref(server) for server in befores.values()]
        async with anyio.create_task_group() as group:
            if bulk:
                group.start_soon(
                    lambda: ecs.rebuild_many(
                        ids, request, before=befores, on_event=on_event, timeout=600
                    )
                )
            else:
                for server_id in ids:
                    group.start_soon(
                        lambda sid=server_id: ecs.rebuild_and_wait(
                            sid, request, before=befores[sid], on_event=on_event, timeout=600
                        )
                    )
            with anyio.fail_after(30):
                for event in running.values():
                    await event.wait()
            # The caller lets go of its reads: only the library could still hold them. The
            # poller ticks a few times more meanwhile (a read in flight may hold the one
            # before it for a moment).
            befores.clear()
            ticks = ecs.stats.get("poll_ticks", 0) + 3
            with anyio.move_on_after(10):
                while True:
                    gc.collect()
                    alive = sum(ref() is not None for ref in refs)
                    if not alive and ecs.stats.get("poll_ticks", 0) >= ticks:
                        break
                    await anyio.sleep(0.05)
            still_held = len([ref for ref in refs if ref() is not None])
            group.cancel_scope.cancel()
    assert still_held == 0
