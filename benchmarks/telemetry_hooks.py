"""What OpenTelemetry's hooks cost one rebuild-and-wait, without the noise of the requests.

Run ``.venv/bin/python -m benchmarks.telemetry_hooks``. In a fresh process for each mode (the
extra absent: every ``opentelemetry`` import fails; its API with no provider configured), it
counts the library's telemetry hooks over real rebuild-and-waits on the in-process fake, then
times that many calls of each hook alone, in CPU time. The hooks are all the library adds for
OpenTelemetry, so their cost bounds what ``--telemetry none`` adds to scenario 1's CPU per
rebuild-and-wait, far below the noise of a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ._worker import _NoOpenTelemetry

HERE_MODULE = "benchmarks.telemetry_hooks"
MODES = ("absent", "none")
#: The hooks other modules call (``url_template`` is a pure helper, not a hook).
HOOKS = (
    "about",
    "fleet",
    "http_request",
    "listing",
    "note_request_id",
    "phase",
    "rate_limited",
    "read_for",
    "rebuild",
    "rollback",
    "rollout_progress",
    "skipped",
    "waiting",
)


def _count(ops: int) -> dict[str, float]:
    """Hook calls per rebuild-and-wait, over ``ops`` of them on the in-process fake."""
    import anyio

    from ecs_rebuild_async import AsyncEcsClient, ClientSettings, RebuildRequest, TokenAuth
    from ecs_rebuild_async import _telemetry as telemetry
    from ecs_rebuild_async.testing import FakeCompute

    counts: Counter[str] = Counter()
    originals = {name: getattr(telemetry, name) for name in HOOKS}

    def counted(name: str, hook: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return hook(*args, **kwargs)

        return call

    async def run() -> None:
        fake = FakeCompute(rebuild_seconds=0.02)
        servers = fake.add_servers(4)
        images = [fake.images["ubuntu-24.04"], fake.images["ubuntu-22.04"]]
        settings = ClientSettings(poll_first_delay=0.02, poll_interval=0.02)
        async with AsyncEcsClient(
            fake.compute_url,
            auth=TokenAuth(fake.token),
            transport=fake.transport(),
            settings=settings,
        ) as ecs:
            await ecs.versions()  # discovery is once per client, not per operation
            for name, hook in originals.items():
                setattr(telemetry, name, counted(name, hook))
            try:
                for i in range(ops):  # each rebuild to a new image, as in scenario 1
                    request = RebuildRequest(image_ref=images[(i // len(servers)) % 2])
                    await ecs.rebuild_and_wait(servers[i % len(servers)], request)
            finally:
                for name, hook in originals.items():
                    setattr(telemetry, name, hook)

    anyio.run(run)
    return {name: count / ops for name, count in sorted(counts.items())}


def _time(per_op: dict[str, float], calls: int, repeats: int) -> list[float]:
    """CPU seconds of one rebuild-and-wait's hooks (as counted), best of batches."""
    from ecs_rebuild_async import _telemetry as telemetry
    from ecs_rebuild_async._bulk import outcome_kind

    poller = object()
    url = "http://compute.test/v2.1/p/servers/s-1"

    def times(name: str) -> range:
        return range(round(per_op.get(name, 0)))

    def one() -> None:
        with telemetry.rebuild("s-1", outcome_kind):
            for _ in times("about"):
                with telemetry.about("s-1"):
                    pass
            for _ in times("http_request"):
                with telemetry.http_request("GET", url, "2.60") as attempt:
                    attempt.answered(200, "req-1")
            for _ in times("note_request_id"):
                telemetry.note_request_id("req-1")
            with telemetry.waiting(poller, "s-1"):
                for i, _ in enumerate(times("phase")):
                    telemetry.phase(("submitted", "running", "done")[i % 3])
                for _ in times("read_for"):
                    with telemetry.read_for(poller, "s-1"):
                        pass

    found = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            one()
        found.append((time.process_time() - start) / calls)
    return found


def measure(mode: str, ops: int, calls: int, repeats: int) -> dict[str, Any]:
    if mode == "absent":
        sys.meta_path.insert(0, _NoOpenTelemetry())  # type: ignore[arg-type]  # a finder without the ABC's other methods
    per_op = _count(ops)
    seconds = _time(per_op, calls, repeats)
    loaded = any(name.startswith("opentelemetry") for name in sys.modules)
    return {"mode": mode, "per_op": per_op, "seconds": seconds, "opentelemetry": loaded}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {HERE_MODULE}", description=__doc__)
    parser.add_argument("--ops", type=int, default=50, help="rebuild-and-waits counted")
    parser.add_argument("--calls", type=int, default=100_000, help="timed per batch")
    parser.add_argument("--repeats", type=int, default=5, help="batches per mode")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one worker's part
    cfg = parser.parse_args(argv)
    if cfg.mode is not None:
        print(json.dumps(measure(cfg.mode, cfg.ops, cfg.calls, cfg.repeats)))
        return 0
    results = []
    for mode in MODES:  # each in a fresh process: the extra's absence is decided at import
        command = [sys.executable, "-m", HERE_MODULE, "--mode", mode, "--ops", str(cfg.ops)]
        command += ["--calls", str(cfg.calls), "--repeats", str(cfg.repeats)]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"Hook calls per rebuild-and-wait: {results[-1]['per_op']}\n")
    print("| OpenTelemetry | opentelemetry imported | hooks' CPU µs / rebuild-and-wait |")
    print("| --- | --- | --- |")
    for result in results:
        micros = [s * 1e6 for s in result["seconds"]]
        spread = f"{min(micros):.1f}-{max(micros):.1f}"
        print(
            f"| {result['mode']} | {'yes' if result['opentelemetry'] else 'no'} "
            f"| {statistics.median(micros):.1f} ({spread}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
