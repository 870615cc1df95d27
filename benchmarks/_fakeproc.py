"""The fake service in its own process, so that the client's CPU is measured alone.

``python -m benchmarks._fakeproc --servers N --rebuild-seconds S`` prints one JSON line when
ready; on SIGTERM or SIGINT it prints a second one with the service's own request counters
(by method and route) and the CPU time it used, then exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import anyio

from ecs_rebuild_async.testing import FakeCompute


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeCompute(rebuild_seconds=args.rebuild_seconds, max_version=args.max_version)
    fake.add_keypair("default")
    ids = [fake.add_server(name=f"server-{i}") for i in range(args.servers)]
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with fake.serve_tcp("127.0.0.1", 0):
            ready = {
                "compute_url": fake.compute_url,
                "identity_url": fake.identity_url,
                "token": fake.token,
                "username": fake.username,
                "password": fake.password,
                "project_name": fake.project_name,
                "user_domain_name": fake.user_domain_name,
                "servers": ids,
                "image": fake.images["ubuntu-24.04"],
                # Rebuilds alternate between these, so that each one shows a new image.
                "images": [fake.images["ubuntu-24.04"], fake.default_image],
            }
            print(json.dumps(ready), flush=True)
            cpu = time.process_time()
            async for _ in signals:
                break
    requests = {f"{method} {route}": n for (method, route), n in fake.stats.requests.items()}
    print(json.dumps({"requests": requests, "cpu": time.process_time() - cpu}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._fakeproc")
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--rebuild-seconds", type=float, default=2.0)
    parser.add_argument("--max-version", default="2.60")
    anyio.run(_serve, parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
