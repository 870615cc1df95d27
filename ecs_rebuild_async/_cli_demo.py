"""``ecs-rebuild demo``: a bulk rebuild against the built-in fake service, in process."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from ._auth import TokenAuth
from ._cli_config import UsageError
from ._cli_run import BulkOptions, run_bulk_command
from ._client import AsyncEcsClient
from ._models import RebuildRequest
from ._settings import ClientSettings

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["check_demo_args", "run_demo"]


def check_demo_args(args: argparse.Namespace) -> None:
    if args.servers < 1:
        raise UsageError("--servers must be at least 1")
    if not 0.0 <= args.fail_rate <= 1.0:
        raise UsageError("--fail-rate must be between 0 and 1")
    if args.duration < 0:
        raise UsageError("--duration must not be negative")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")


def _demo_settings(duration: float) -> ClientSettings:
    """Polling quick enough that a short demo shows its servers finishing as they do."""
    interval = min(1.0, max(0.1, duration / 4))
    return ClientSettings(
        poll_first_delay=interval, poll_interval=interval, poll_interval_max=interval
    )


async def run_demo(
    args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO, console: Console
) -> int:
    from .testing import FakeCompute

    fake = FakeCompute(
        rebuild_seconds=args.duration, jitter=0.3, fail_rate=args.fail_rate, seed=args.seed
    )
    server_ids = fake.add_servers(args.servers, prefix="demo")
    console.print(
        f"demo: rebuilding {args.servers} servers on the built-in fake service "
        f"({args.duration:g} s each, {args.fail_rate:.0%} fail)"
    )
    client = AsyncEcsClient(
        fake.compute_url,
        auth=TokenAuth(fake.token),
        transport=fake.transport(),
        settings=_demo_settings(args.duration),
    )
    options = BulkOptions(
        concurrency=args.concurrency,
        timeout=None,
        wait=True,
        as_json=False,
        label="rebuilding",
        write_outcomes=False,
    )
    async with client:
        return await run_bulk_command(
            client,
            server_ids,
            RebuildRequest(image_ref=fake.images["ubuntu-24.04"]),
            options,
            stdout=stdout,
            stderr=stderr,
            console=console,
        )
