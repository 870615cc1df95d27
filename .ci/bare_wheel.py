"""Run by .ci/wheel in a fresh environment holding only the built wheel (no extras): the library
imports without OpenTelemetry (or rich), and a rebuild on the fake service ends as it should."""

import importlib.util

import anyio

from ecs_rebuild_async import AsyncEcsClient, ClientSettings, RebuildRequest, TokenAuth
from ecs_rebuild_async.testing import FakeCompute

assert importlib.util.find_spec("opentelemetry") is None, "this environment has opentelemetry"


async def main() -> None:
    fake = FakeCompute(rebuild_seconds=0.2)
    server_id = fake.add_server()
    settings = ClientSettings(poll_first_delay=0.05, poll_interval=0.05)
    async with AsyncEcsClient(
        fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(), settings=settings
    ) as ecs:
        request = RebuildRequest(image_ref=fake.images["ubuntu-24.04"])
        server = await ecs.rebuild_and_wait(server_id, request, timeout=60)
        outcomes = await ecs.rebuild_many(fake.add_servers(5), request, timeout=60)
    assert server.status == "ACTIVE", server
    assert all(outcome.ok for outcome in outcomes), outcomes
    assert fake.rebuilds_accepted(server_id) == 1
    print("bare wheel: rebuild_and_wait and rebuild_many ran without OpenTelemetry")


anyio.run(main)  # asyncio: trio is not a dependency of the library
