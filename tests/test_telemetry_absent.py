"""Without the ``otel`` extra: the library imports and runs as before.

Run in a fresh interpreter in which every ``opentelemetry`` import fails, as in an environment
where the extra was never installed (the test process itself has the SDK, for the other tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoOpenTelemetry(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoOpenTelemetry())
    try:
        import opentelemetry  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the finder did not block opentelemetry")

    import logging
    import anyio
    from ecs_rebuild_async import (
        AsyncEcsClient, ClientSettings, RebuildRequest, RolloutPolicy, TokenAuth,
    )
    from ecs_rebuild_async.cli import main
    from ecs_rebuild_async.testing import FakeCompute

    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append({f: getattr(record, f, None) for f in ("server_id", "phase")})

    logging.getLogger("ecs_rebuild_async").addHandler(Keep())

    async def rebuild(backend):
        fake = FakeCompute(rebuild_seconds=0.1)
        fake.faults.script("POST", "rebuild", ["lost"])
        server_id = fake.add_server()
        settings = ClientSettings(
            poll_first_delay=0.02, poll_interval=0.05, reconcile_settle=0.01, request_timeout=0.5
        )
        async with AsyncEcsClient(
            fake.compute_url, auth=TokenAuth(fake.token), transport=fake.transport(),
            settings=settings,
        ) as ecs:
            request = RebuildRequest(image_ref=fake.images["ubuntu-24.04"])
            server = await ecs.rebuild_and_wait(server_id, request)
            outcomes = await ecs.rebuild_many(fake.add_servers(3), request)
            # A rollout: a canary, a failure that stops it, a rollback (one cannot be undone).
            broken = fake.add_server(fail_image=request.image_ref)
            policy = RolloutPolicy(canary=1, max_failures=0, rollback=True)
            rolled = await ecs.rebuild_many(
                [fake.add_server(), broken, fake.add_server()], request, policy=policy,
                concurrency=1,
            )
        return {
            "backend": backend,
            "status": str(server.status),
            "accepted": fake.rebuilds_accepted(server_id),
            "fleet_ok": [o.ok for o in outcomes],
            "rollout": [o.kind.value for o in rolled],
            "server_id": server_id,
        }

    results = [anyio.run(rebuild, backend, backend=backend) for backend in ("asyncio", "trio")]
    trace_code = main(["demo", "--servers", "1", "--duration", "0.1", "--trace"])
    print(json.dumps({
        "results": results,
        "records": records,
        "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
        "trace_code": trace_code,
    }))
    """
)


def test_without_opentelemetry_the_library_imports_and_runs_as_before() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED_RUN], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["loaded"] == []
    for result in found["results"]:
        assert result["status"] == "ACTIVE"
        assert result["accepted"] == 1
        assert result["fleet_ok"] == [True, True, True]
        assert result["rollout"] == ["rolled_back", "rollback_failed", "skipped"]
    assert [r["backend"] for r in found["results"]] == ["asyncio", "trio"]
    # The log records about a server carry its fields without OpenTelemetry too.
    warned = [r for r in found["records"] if r["phase"] == "submitted"]
    assert {r["server_id"] for r in warned} == {r["server_id"] for r in found["results"]}
    # The demo's --trace needs the SDK, and says so rather than failing later.
    assert found["trace_code"] == 2
    assert "--trace needs the OpenTelemetry SDK" in done.stderr
