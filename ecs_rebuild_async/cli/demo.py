"""``ecs-rebuild demo``: a bulk rebuild against the built-in fake service, in process."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from .._auth import TokenAuth
from .._bulk import BulkReport
from .._client import AsyncEcsClient
from .._models import OutcomeKind, RebuildRequest
from .._settings import ClientSettings
from .config import UsageError
from .parse import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTPUT_CLOSED
from .run import BulkOptions, run_bulk_command
from .telemetry import SpanCollector, span_tree

if TYPE_CHECKING:
    from rich.console import Console

    from ..testing import FakeCompute

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
    args: argparse.Namespace,
    *,
    stdout: TextIO,
    stderr: TextIO,
    console: Console | None,
    as_json: bool = False,
) -> int:
    """The demo's run; with ``as_json`` (no console), one JSON line per server on stdout."""
    from ..testing import FakeCompute

    collector = SpanCollector() if args.trace else None
    fake = FakeCompute(
        rebuild_seconds=args.duration, jitter=0.3, fail_rate=args.fail_rate, seed=args.seed
    )
    server_ids = fake.add_servers(args.servers, prefix="demo")
    say = console.print if console is not None else (lambda text: stderr.write(text + "\n"))
    say(
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
        as_json=as_json,
        label="rebuilding",
        write_outcomes=as_json,
    )
    image = fake.images["ubuntu-24.04"]
    report = BulkReport()
    async with client:
        code = await run_bulk_command(
            client,
            server_ids,
            RebuildRequest(image_ref=image),
            options,
            stdout=stdout,
            stderr=stderr,
            console=console,
            report=report,
        )
    if code in (EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED):
        return code
    # The demo fails some rebuilds on purpose: it succeeds when every outcome it reported is
    # the truth, as the fake service knows it.
    wrong = [sid for sid in server_ids if not _matches_truth(fake, sid, report, image)]
    say(
        f"checked against the fake service's own record: "
        f"{len(server_ids) - len(wrong)} of {len(server_ids)} outcomes are the truth"
    )
    if collector is not None:
        stderr.write(span_tree(collector.close()))
    return EXIT_OK if not wrong else EXIT_FAILED


def _matches_truth(fake: FakeCompute, server_id: str, report: BulkReport, image: str) -> bool:
    outcome = report.outcomes.get(server_id)
    if outcome is None:
        return False
    truth = fake.truth(server_id)
    rebuilt = truth.status == "ACTIVE" and truth.task_state is None and truth.image_id == image
    if outcome.ok:
        return rebuilt and fake.rebuilds_accepted(server_id) == 1
    return outcome.kind is OutcomeKind.FAILED and truth.status == "ERROR"
