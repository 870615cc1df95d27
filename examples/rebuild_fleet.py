"""A user's script over the whole public API, checked by ``mypy --strict`` in the test suite.

Run it as it is: it rebuilds a small fleet on the library's fake service.
"""

from __future__ import annotations

import anyio

from ecs_rebuild_async import (
    ECS,
    UNSET,
    AsyncEcsClient,
    BulkReport,
    ClientSettings,
    Conflict,
    EcsError,
    OutcomeKind,
    RebuildEvent,
    RebuildFailed,
    RebuildOutcome,
    RebuildRequest,
    RebuildTimeout,
    Server,
    ServerStatus,
    TokenAuth,
    TransportError,
)
from ecs_rebuild_async.testing import FakeCompute


def show(outcome: RebuildOutcome) -> None:
    print(outcome)  # one line per server


def seen(event: RebuildEvent) -> None:
    if event.phase == "done":
        print(f"{event.server_id} finished as {event.status}")


async def main() -> int:
    fake = FakeCompute(time_scale=50)
    ids = fake.add_servers(3, prefix="web")
    settings = ClientSettings(poll_first_delay=0.02, poll_interval=0.02)
    request = RebuildRequest(image_ref=fake.images["ubuntu-24.04"], key_name=UNSET)
    async with AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        dialect=ECS,
        settings=settings,
    ) as ecs:
        server: Server = await ecs.get_server(ids[0])
        assert server.status is ServerStatus.ACTIVE
        report = BulkReport()
        outcomes = await ecs.rebuild_many(
            ids, request, concurrency=2, on_outcome=show, on_event=seen, report=report
        )
        async with ecs.rebuild_stream(ids[:1], request, on_event=seen) as stream:
            async for outcome in stream:
                show(outcome)
        try:
            await ecs.rebuild_and_wait(ids[0], request, timeout=30)
        except RebuildFailed as failed:
            print(failed.fault)
        except (RebuildTimeout, Conflict, TransportError) as error:
            print(repr(error))
        except EcsError as error:
            print(f"error: {error}")
    ok = sum(1 for o in outcomes if o.kind is OutcomeKind.OK)
    print(repr(ecs), f"{ok} ok of {report.total}")
    return 0 if ok == len(ids) else 1


if __name__ == "__main__":
    raise SystemExit(anyio.run(main))
