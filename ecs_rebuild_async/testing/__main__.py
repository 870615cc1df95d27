"""``python -m ecs_rebuild_async.testing serve``: run the fake on loopback until SIGTERM/SIGINT.

Prints one JSON line on stdout when ready (urls, token, ids); logs nothing else there.
``GET <url>/_fake/record`` answers what the fake has done (every server's true status and
image, its rebuilds accepted and their request ids), so that a test can check a client that
ran, or died, in another process.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence

import anyio

from ._app import RECORD_PATH
from ._fake import FakeCompute
from ._faults import FAULT_KINDS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ecs_rebuild_async.testing")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the fake compute API on a loopback port")
    serve.add_argument("--host", default="127.0.0.1", help="a loopback address")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--servers", type=int, default=2, help="ACTIVE servers to add")
    serve.add_argument("--rebuild-seconds", type=float, default=2.0)
    serve.add_argument("--jitter", type=float, default=0.0)
    serve.add_argument("--fail-rate", type=float, default=0.0)
    serve.add_argument("--read-lag", type=float, default=0.0)
    serve.add_argument("--time-scale", type=float, default=1.0)
    serve.add_argument("--dialect", choices=("ecs", "nova"), default="ecs")
    serve.add_argument("--min-version", default="2.1")
    serve.add_argument("--max-version", default="2.60")
    serve.add_argument("--accepted-body", choices=("rebuild", "stale"), default="rebuild")
    serve.add_argument("--token-lifetime", type=float, default=3600.0)
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument(
        "--slow-spawn-seconds",
        type=float,
        default=600.0,
        help="spawn time of the slow-to-spawn image, in fake seconds",
    )
    serve.add_argument("--max-limit", type=int, default=1000, help="servers per listing page")
    serve.add_argument(
        "--date-header", choices=("service", "missing", "garbage"), default="service"
    )
    serve.add_argument("--date-skew", type=float, default=0.0, help="seconds Date runs ahead")
    serve.add_argument(
        "--paging", choices=("nova", "ignore_marker", "next_to_self"), default="nova"
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ROUTE:KIND:P[:SECONDS]",
        help=(
            "inject a fault with probability P into requests of ROUTE (rebuild, server, "
            "servers_detail, instance_actions, ...; '*' for all): KIND is 500, 503, 429, "
            "latency (SECONDS, real) or lost (carried out, the answer never arrives); repeatable"
        ),
    )
    serve.add_argument(
        "--lost-error",
        choices=("timeout", "disconnect"),
        default="timeout",
        help="how a lost answer looks to the client",
    )
    return parser


def _add_faults(fake: FakeCompute, specs: Sequence[str]) -> None:
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"--fault takes ROUTE:KIND:P[:SECONDS], got {spec!r}")
        route, kind, probability = parts[0], parts[1], float(parts[2])
        seconds = float(parts[3]) if len(parts) == 4 else 0.0
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}: one of {sorted(FAULT_KINDS)}")
        fake.faults.rate(
            kind,
            probability,
            route=None if route == "*" else route,
            seconds=seconds,
            real=kind == "latency",
        )


def _fake_from(args: argparse.Namespace) -> FakeCompute:
    fake = FakeCompute(
        dialect=args.dialect,
        min_version=args.min_version,
        max_version=args.max_version,
        time_scale=args.time_scale,
        rebuild_seconds=args.rebuild_seconds,
        jitter=args.jitter,
        fail_rate=args.fail_rate,
        read_lag=args.read_lag,
        accepted_body=args.accepted_body,
        token_lifetime=args.token_lifetime,
        seed=args.seed,
        slow_spawn_seconds=args.slow_spawn_seconds,
        max_limit=args.max_limit,
        date_header=args.date_header,
        date_skew=args.date_skew,
        paging=args.paging,
        lost_error=args.lost_error,
    )
    _add_faults(fake, args.fault)
    fake.add_keypair("default")
    for i in range(args.servers):
        fake.add_server(name=f"server-{i}")
    fake.add_server(name="server-stopped", status="SHUTOFF")
    fake.add_server(name="server-locked", locked=True)
    fake.add_server(name="server-paused", status="PAUSED")
    fake.add_server(name="server-error", status="ERROR")
    fake.add_server(name="server-fails", fail=True)
    return fake


def _ready_line(fake: FakeCompute) -> str:
    servers = {fake.truth(sid).name: sid for sid in fake.server_ids()}
    return json.dumps(
        {
            "url": fake.base_url,
            "compute_url": fake.compute_url,
            "identity_url": fake.identity_url,
            "token": fake.token,
            "project_id": fake.project_id,
            "username": fake.username,
            "password": fake.password,
            "ak": fake.ak,
            "sk": fake.sk,
            "servers": servers,
            "images": fake.images,
            "failing_image": fake.failing_image,
            "slow_image": fake.slow_image,
            "slow_spawn_seconds": fake.slow_spawn_seconds,
            "keypairs": ["default"],
            "record_url": fake.base_url + RECORD_PATH,
        },
        sort_keys=True,
    )


async def _serve(args: argparse.Namespace) -> None:
    fake = _fake_from(args)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with fake.serve_tcp(args.host, args.port):
            print(_ready_line(fake), flush=True)
            async for _ in signals:
                break


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        anyio.run(_serve, args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
