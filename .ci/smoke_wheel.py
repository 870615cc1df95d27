"""The installed package, as a user gets it: import it, rebuild a few servers on the fake.

Run by ``.ci/wheel`` with the wheel's own virtual environment (no extras, nothing else), from
outside the source tree, so that only what the wheel and its declared dependencies bring is
importable. Under asyncio, with the default transport (httpx-aiohttp) over loopback TCP.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import anyio

import ecs_rebuild_async
from ecs_rebuild_async import AsyncEcsClient, OutcomeKind, RebuildRequest, TokenAuth
from ecs_rebuild_async.testing import DEFAULT_IMAGES, FakeCompute

SERVERS = 5


async def main() -> None:
    fake = FakeCompute(time_scale=100, rebuild_seconds=2)
    ids = fake.add_servers(SERVERS, prefix="smoke")
    fake.advance(60)
    image = DEFAULT_IMAGES["ubuntu-24.04"]
    # The client is made once the fake serves: compute_url is then its loopback URL.
    async with (
        fake.serve_tcp(),
        AsyncEcsClient(fake.compute_url, auth=TokenAuth(fake.token)) as ecs,
    ):
        outcomes = await ecs.rebuild_many(ids, RebuildRequest(image_ref=image), timeout=60)
    kinds = [outcome.kind for outcome in outcomes]
    assert kinds == [OutcomeKind.OK] * SERVERS, outcomes
    assert all(fake.rebuilds_accepted(server_id) == 1 for server_id in ids)
    assert all(fake.truth(server_id).image_id == image for server_id in ids)


if __name__ == "__main__":
    installed = Path(ecs_rebuild_async.__file__).resolve()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert site in installed.parents, f"imported from {installed}, not from the wheel"
    anyio.run(main, backend="asyncio")
    print(
        f"-- the wheel's ecs_rebuild_async {ecs_rebuild_async.__version__} rebuilt "
        f"{SERVERS} servers on the fake under asyncio (Python {sys.version.split()[0]})"
    )
