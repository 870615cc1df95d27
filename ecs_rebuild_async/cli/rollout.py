"""Rolling a fleet from the command line: the rollout options, choosing servers with
``--where``, the health command, asking at checkpoints, the plan, and the phase line of the
live display."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any, TextIO

import anyio
import anyio.to_thread

from .._bulk import BulkReport
from .._client import AsyncEcsClient
from .._models import RebuildRequest, Server
from .._rollout import (
    CheckpointCallback,
    HealthCheck,
    RolloutPhase,
    RolloutPlan,
    RolloutPolicy,
    RolloutProgress,
)
from .config import UsageError
from .output import mask_body

__all__ = [
    "add_rollout_options",
    "ask_at_checkpoints",
    "describe_phase",
    "find_arguments",
    "health_command",
    "policy_from_args",
    "print_plan",
    "run_plan",
    "stopped_line",
    "uses_rollout",
    "write_phase_changes",
]

_PLACEHOLDER = re.compile(r"\{(id|name|ip)\}")
_WHERE = re.compile(r"^(name~|image=|status=|metadata\.([^=]+)=)(.*)$", re.DOTALL)


def _count_or_share(text: str) -> int | float:
    """``3`` (a count) or ``10%`` (a fraction of the fleet)."""
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100
            if not 0 < share <= 1:
                raise ValueError
            return share
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a count or a percentage, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _share(text: str) -> float:
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a percentage such as 25%, got {text!r}") from None
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(f"a checkpoint is above 0% and below 100%, got {text}")
    return share


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _where(text: str) -> tuple[str, str, str]:
    match = _WHERE.match(text)
    if match is None or not match.group(3):
        raise argparse.ArgumentTypeError(
            f"expected name~REGEX, image=ID, status=STATUS or metadata.KEY=VALUE, got {text!r}"
        )
    operator, key, value = match.groups()
    if key is not None:
        return "metadata", key, value
    return operator[:-1], "", value


def add_rollout_options(parser: argparse.ArgumentParser) -> None:
    """The rollout options of ``ecs-rebuild rebuild``."""
    group = parser.add_argument_group(
        "rolling a fleet", "N is a count of servers, P% a share of the fleet"
    )
    group.add_argument(
        "--where",
        action="append",
        type=_where,
        metavar="COND",
        help="choose the servers instead of naming them: name~REGEX, image=ID, status=STATUS, "
        "metadata.KEY=VALUE (repeatable; all must hold)",
    )
    group.add_argument(
        "--max-unavailable", type=_count_or_share, metavar="N|P%", help="servers down at once"
    )
    group.add_argument("--canary", type=int, default=0, metavar="N", help="servers to try first")
    group.add_argument(
        "--max-failures", type=_count_or_share, metavar="N|P%", help="stop after more failures"
    )
    group.add_argument(
        "--health-cmd",
        metavar="CMD",
        help="a command (run without a shell; {id} {name} {ip} are replaced in each argument) "
        "that exits 0 once a rebuilt server serves",
    )
    group.add_argument(
        "--warmup", type=_seconds, default=300.0, metavar="S", help="time to pass (300)"
    )
    group.add_argument(
        "--health-interval", type=_seconds, default=5.0, metavar="S", help="between tries (5)"
    )
    group.add_argument(
        "--health-timeout", type=_seconds, default=10.0, metavar="S", help="for one try (10)"
    )
    group.add_argument(
        "--checkpoint", action="append", type=_share, metavar="P%", help="pause here (repeatable)"
    )
    pause = group.add_mutually_exclusive_group()
    pause.add_argument(
        "--checkpoint-delay", type=_seconds, metavar="S", help="pause S seconds at a checkpoint"
    )
    pause.add_argument(
        "--confirm", action="store_true", help="ask on the terminal at each checkpoint"
    )
    group.add_argument("--skip-matching", action="store_true", help="skip servers already done")
    group.add_argument(
        "--rollback", action="store_true", help="rebuild back what was rebuilt if the run stops"
    )
    group.add_argument(
        "--plan", action="store_true", help="print what the rollout would do; send nothing"
    )


def uses_rollout(args: argparse.Namespace) -> bool:
    return bool(
        args.max_unavailable is not None
        or args.canary
        or args.max_failures is not None
        or args.health_cmd
        or args.checkpoint
        or args.skip_matching
        or args.rollback
        or args.plan
    )


def find_arguments(args: argparse.Namespace) -> dict[str, Any] | None:
    """``find_servers`` keyword arguments from ``--where`` (None when not given)."""
    if not args.where:
        return None
    found: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for kind, key, value in args.where:
        if kind == "metadata":
            if metadata.get(key, value) != value:
                raise UsageError(f"--where metadata.{key} is given two different values")
            metadata[key] = value
        elif found.get(kind, value) != value:
            raise UsageError(f"--where {kind} is given two different values")
        else:
            found[kind] = value
    if metadata:
        found["metadata"] = metadata
    return found


def _address(server: Server) -> str:
    if server.access_ipv4:
        return server.access_ipv4
    for addresses in server.addresses.values():
        for address in addresses:
            return address.addr
    return ""


def health_command(command: str) -> HealthCheck:
    """A health check that runs ``command`` without a shell and passes when it exits 0.

    The command is split first; ``{id}``, ``{name}`` and ``{ip}`` are then replaced inside
    each argument, so a server's name stays one argument whatever it holds.
    """
    try:
        template = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--health-cmd cannot be split: {exc}") from None
    if not template:
        raise UsageError("--health-cmd is empty")
    if shutil.which(template[0]) is None:
        # Found now rather than as every server's failed health check, one by one.
        raise UsageError(f"--health-cmd: {template[0]!r} is not a command that can be run")

    async def check(server: Server) -> bool:
        values = {"id": server.id, "name": server.name or "", "ip": _address(server)}
        argv = [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in template]
        done = await anyio.run_process(
            argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return done.returncode == 0

    return check


def ask_at_checkpoints(stdin: TextIO, stderr: TextIO) -> CheckpointCallback:
    """``--confirm``: ask on the terminal at each checkpoint."""

    async def confirm(progress: RolloutProgress) -> bool:
        budget = "" if progress.budget_left is None else f", {progress.budget_left} more allowed"
        stderr.write(
            f"checkpoint {progress.checkpoint:.0%}: {progress.finished} of {progress.total} "
            f"done, {progress.failures} failed{budget}. Go on? [y/N] "
        )
        stderr.flush()
        answer = await anyio.to_thread.run_sync(stdin.readline, abandon_on_cancel=True)
        return answer.strip().lower() in ("y", "yes")

    return confirm


def policy_from_args(
    args: argparse.Namespace, stdin: TextIO, stderr: TextIO
) -> RolloutPolicy | None:
    """The RolloutPolicy the options ask for (None when no rollout option is given)."""
    if (args.confirm or args.checkpoint_delay is not None) and not args.checkpoint:
        raise UsageError("--confirm and --checkpoint-delay need --checkpoint")
    if not uses_rollout(args):
        return None
    if args.confirm and "-" in args.servers:
        raise UsageError("--confirm reads answers from standard input: do not read ids from it")
    return RolloutPolicy(
        max_unavailable=args.max_unavailable,
        canary=args.canary,
        max_failures=args.max_failures,
        health_check=health_command(args.health_cmd) if args.health_cmd else None,
        warmup=args.warmup,
        health_interval=max(args.health_interval, 0.01),
        health_timeout=max(args.health_timeout, 0.01),
        checkpoints=tuple(args.checkpoint or ()),
        on_checkpoint=ask_at_checkpoints(stdin, stderr) if args.confirm else None,
        checkpoint_delay=args.checkpoint_delay or 0.0,
        skip_matching=args.skip_matching,
        rollback=args.rollback,
    )


def plan_record(plan: RolloutPlan, prepared: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The plan as a JSON-ready mapping; ``prepared`` is each server's request as it is sent."""
    return {
        "skipped": list(plan.skipped),
        "canary": list(plan.canary),
        "waves": [list(wave) for wave in plan.waves],
        "checkpoints": [
            {"at": fraction, "after_wave": waves} for fraction, waves in plan.checkpoints
        ],
        "max_unavailable": plan.max_unavailable,
        "failure_budget": plan.failure_budget,
        "requests": {server_id: dict(body) for server_id, body in prepared.items()},
    }


def print_plan(record: Mapping[str, Any], stream: TextIO, *, as_json: bool) -> None:
    if as_json:
        stream.write(json.dumps(record, sort_keys=True) + "\n")
        return
    lines = [f"skipped, already matching: {len(record['skipped'])}"]
    lines.extend(f"  {server_id}" for server_id in record["skipped"])
    lines.append(f"canary: {', '.join(record['canary']) or 'none'}")
    pauses = {c["after_wave"]: c["at"] for c in record["checkpoints"]}
    for number, wave in enumerate(record["waves"]):
        if number in pauses:
            lines.append(f"checkpoint {pauses[number]:.0%}: pause")
        lines.append(f"wave {number + 1}: {' '.join(wave)}")
    budget = record["failure_budget"]
    lines.append(f"failures allowed: {'any' if budget is None else budget}")
    for server_id, body in record["requests"].items():
        lines.append(f"{server_id}: {json.dumps(body, sort_keys=True)}")
    stream.write("\n".join(lines) + "\n")


_PHASE_WORDS = {
    RolloutPhase.CANARY: "canary",
    RolloutPhase.ROLLING: "rolling",
    RolloutPhase.PAUSED: "paused at checkpoint",
    RolloutPhase.STOPPED: "stopped",
    RolloutPhase.ROLLING_BACK: "rolling back",
    RolloutPhase.DONE: "done",
}


def describe_phase(report: BulkReport, default: str) -> str:
    """The live display's label: the rollout's phase and the failure budget left."""
    state = report.rollout
    if state is None:
        return default
    words = _PHASE_WORDS[state.phase]
    if state.phase is RolloutPhase.PAUSED and state.checkpoint_due is not None:
        words += f" {state.checkpoint_due:.0%}"
    elif state.phase is RolloutPhase.ROLLING_BACK:
        words += f" {state.rollback_finished}/{state.rollback_total}"
    if state.budget_left is not None:
        words += f" · failure budget left: {state.budget_left}"
    return words


async def write_phase_changes(report: BulkReport, stream: TextIO, interval: float = 0.1) -> None:
    """A line on ``stream`` each time the rollout changes phase, until cancelled (for runs
    without the live display: ``--json``, or standard error not a terminal)."""
    shown: tuple[RolloutPhase, float | None] | None = None
    while True:
        state = report.rollout
        if state is not None and (state.phase, state.checkpoint_due) != shown:
            shown = (state.phase, state.checkpoint_due)
            if state.phase is not RolloutPhase.DONE:
                stream.write(f"rollout: {describe_phase(report, '')}\n")
                stream.flush()
        await anyio.sleep(interval)


def stopped_line(report: BulkReport) -> str | None:
    """One line saying why the rollout stopped early, for standard error."""
    reason = report.stopped_reason
    return None if reason is None else f"rollout stopped: {reason}"


async def run_plan(
    client: AsyncEcsClient,
    requests: Mapping[str, RebuildRequest],
    policy: RolloutPolicy | None,
    *,
    concurrency: int,
    stdout: TextIO,
    as_json: bool,
) -> None:
    """Print what the rollout would do with each server's request; no rebuild is sent."""
    plan = await client.plan_rollout(list(requests.items()), policy=policy, concurrency=concurrency)
    prepared = {
        server_id: mask_body((await client.prepare(server_id, one))["body"])
        for server_id, one in plan.requests.items()
    }
    print_plan(plan_record(plan, prepared), stdout, as_json=as_json)
