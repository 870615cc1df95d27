"""The command line's durable runs: ``rebuild --journal FILE``, ``resume FILE`` and
``journal show FILE [--json]`` (the run's audit record)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from .._durable import audit, journaled_run
from .._errors import InvalidRequest
from .._models import UNSET
from .._rollout import RolloutPolicy, policy_from_description
from .config import UsageError
from .rollout import ask_at_checkpoints, health_command

__all__ = [
    "add_journal_commands",
    "journal_options",
    "print_audit",
    "resume_policy",
    "resume_targets",
]


def journal_options(parser: argparse.ArgumentParser) -> None:
    """``rebuild --journal FILE`` (and the hidden ``--reconcile-settle``)."""
    group = parser.add_argument_group("durable run")
    group.add_argument(
        "--journal",
        metavar="FILE",
        help=(
            "record the run in FILE (SQLite) and continue it if FILE already records it: "
            "a run that dies is resumed without rebuilding any server twice"
        ),
    )
    settle_option(group)


def settle_option(group: Any) -> None:
    # The pause between the two looks at a server whose rebuild may have been sent; for tests
    # on a fast fake clock (the default suits real clouds).
    group.add_argument("--reconcile-settle", type=float, metavar="S", help=argparse.SUPPRESS)


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def resume_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("journal", metavar="FILE", help="the journal of the run")
    group = parser.add_argument_group("resuming")
    group.add_argument(
        "--user-data",
        metavar="FILE",
        help="the user data the run was started with (the journal does not store it)",
    )
    group.add_argument(
        "--admin-pass-env",
        metavar="VAR",
        help="the environment variable holding the adminPass the run was started with",
    )
    group.add_argument("--concurrency", type=_count, metavar="N", help="default: the run's own")
    group.add_argument("--timeout", type=_seconds, metavar="S", help="default: the run's own")
    group.add_argument(
        "--poll-interval", type=_seconds, metavar="S", help="seconds between status reads"
    )
    settle_option(group)
    rollout = parser.add_argument_group(
        "resuming a rollout",
        "a rollout goes on under the options it began with, read from the journal; the code "
        "among them is not stored, so it is given again",
    )
    rollout.add_argument(
        "--health-cmd", metavar="CMD", help="the run's --health-cmd (needed if it had one)"
    )
    rollout.add_argument(
        "--confirm", action="store_true", help="the run's --confirm (needed if it had it)"
    )
    rollout.add_argument(
        "--continue-stopped",
        action="store_true",
        help="start the servers a stopped rollout left unstarted (failures so far still count "
        "against --max-failures)",
    )


def add_journal_commands(
    commands: Any,
    command: Callable[..., argparse.ArgumentParser],
    *,
    connection: Callable[[argparse.ArgumentParser], None],
    output: Callable[[argparse.ArgumentParser], None],
) -> None:
    """``resume FILE`` and ``journal show FILE``."""
    command(
        commands,
        "resume",
        [resume_options, connection, output],
        help="continue the run a journal records (after a crash, Ctrl-C or a stop)",
        description=(
            "Continue a journaled run: finished servers are reported from the journal, a "
            "rebuild that may have been sent is reconciled (never sent twice), the rest run."
        ),
    )
    journal = commands.add_parser(
        "journal", help="read a run's journal", description="Read a run's journal."
    )
    journal.set_defaults(command="journal")
    actions = journal.add_subparsers(
        dest="journal_command", required=True, parser_class=type(journal)
    )
    show = actions.add_parser(
        "show",
        help="the audit record: every server, every request sent, every outcome",
        description=(
            "Print the audit record of a journaled run: each server, each rebuild request "
            "sent (its request id and the service's time), and each outcome."
        ),
    )
    show.add_argument("journal", metavar="FILE")
    show.add_argument("--json", action="store_true", help="one JSON document on stdout")
    show.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)


def resume_targets(
    args: argparse.Namespace, environ: Mapping[str, str], read_user_data: Callable[[str], bytes]
) -> tuple[list[Any], Any, dict[str, Any]]:
    """The servers and requests to resume with, the run record, and the secrets given again."""
    secrets: dict[str, Any] = {}
    if args.user_data:
        secrets["user_data"] = read_user_data(args.user_data)
    if args.admin_pass_env:
        secrets["admin_pass"] = environ.get(args.admin_pass_env, UNSET)
    targets, run = journaled_run(args.journal, **secrets)
    return targets, run, secrets


_CODE_OPTIONS = {"health_check": "--health-cmd", "on_checkpoint": "--confirm"}


def resume_policy(
    args: argparse.Namespace, run: Any, stdin: TextIO, stderr: TextIO
) -> RolloutPolicy | None:
    """The rollout policy a journal records, with the code given again by its options."""
    description = run.policy
    if description is None:
        if args.health_cmd or args.confirm or args.continue_stopped:
            raise UsageError(
                "the journal records a run without rollout options: --health-cmd, --confirm "
                "and --continue-stopped are for resuming a rollout"
            )
        return None
    try:
        return policy_from_description(
            description,
            health_check=health_command(args.health_cmd) if args.health_cmd else None,
            on_checkpoint=ask_at_checkpoints(stdin, stderr) if args.confirm else None,
        )
    except InvalidRequest as exc:
        option = _CODE_OPTIONS.get(exc.field or "")
        if option is None:
            raise
        had = bool(description.get(exc.field or ""))
        raise UsageError(
            f"the run was started with {option}, which the journal does not store: give it again"
            if had
            else f"the run was started without {option}: do not give it"
        ) from None


def _when(text: str | None) -> str:
    return "-" if not text else text.replace("+00:00", "Z")


def print_audit(path: str, stream: TextIO, *, as_json: bool) -> None:
    record = audit(path)
    if as_json:
        stream.write(json.dumps(record, sort_keys=True, indent=2) + "\n")
        return
    run = record["run"]
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(run["outcomes"].items())) or "none"
    lines = [
        f"run {run['run_id']} created {_when(run['created_at'])} on {run['endpoint'] or '-'}",
        f"servers: {run['servers']}, finished: {run['finished']} ({counts}), "
        f"rebuild requests sent: {run['requests_sent']}",
    ]
    if run["policy"] is not None:
        lines.append("policy: " + " ".join(f"{k}={v}" for k, v in sorted(run["policy"].items())))
    for entry in record["rollout"]:
        lines.append(f"rollout {_when(entry['at'])} {_rollout_line(entry)}")
    for server in record["servers"]:
        outcome = server["outcome"]
        ended = "not finished" if outcome is None else outcome["kind"]
        if outcome is not None and (outcome["message"] or outcome["reason"]):
            ended += f": {outcome['message'] or outcome['reason']}"
        lines.append(f"{server['server_id']}  {ended}")
        for sent in server["requests"]:
            phase = "rollback " if sent["phase"] == "rollback" else ""
            lines.append(
                f"    {phase}#{sent['attempt']} {sent['result']}"
                f"  request id {sent['request_id'] or '-'}"
                f"  sent after {_when(sent.get('sent_after'))}"
                f"  accepted at {_when(sent.get('service_time'))}"
            )
    stream.write("\n".join(lines) + "\n")


def _rollout_line(entry: Mapping[str, Any]) -> str:
    """One change of a rollout: what changed, then where it stood."""
    change = entry["change"]
    if change == "checkpoint":
        change += f" {entry['checkpoint']:.0%} {'go on' if entry['go_on'] else 'stop'}"
    budget = entry.get("failure_budget")
    parts = [
        change,
        f"phase {entry['phase']}",
        f"finished {entry['finished']} of {entry['total']}",
        f"failures {entry['failures']}" + ("" if budget is None else f" of {budget} allowed"),
        f"canary passed {'yes' if entry['canary_passed'] else 'no'}",
    ]
    if entry.get("checkpoints_passed"):
        passed = ", ".join(f"{c:.0%}" for c in entry["checkpoints_passed"])
        parts.append(f"checkpoints passed {passed}")
    if entry.get("stopped_reason"):
        parts.append(f"stopped: {entry['stopped_reason']}")
    if entry.get("rollback_total"):
        parts.append(f"rolled back {entry['rollback_finished']} of {entry['rollback_total']}")
    return "; ".join(parts)
