"""The command line's durable runs: ``rebuild --journal FILE``, ``resume FILE`` and
``journal show FILE [--json]`` (the run's audit record)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from .._durable import audit, journaled_run
from .._models import UNSET

__all__ = ["add_journal_commands", "add_journal_option", "print_audit", "resume_targets"]


def add_journal_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--journal",
        metavar="FILE",
        help=(
            "record the run in FILE (SQLite) and continue it if FILE already records it: "
            "a run that dies is resumed without rebuilding any server twice"
        ),
    )


def add_journal_commands(
    commands: Any,
    *,
    parents: Sequence[argparse.ArgumentParser],
    run_options: Callable[[argparse.ArgumentParser], None],
    resume_handler: Any,
    show_handler: Any,
) -> None:
    resume = commands.add_parser(
        "resume",
        parents=list(parents),
        help="continue the run a journal records (after a crash, Ctrl-C or a stop)",
        description=(
            "Continue a journaled run: finished servers are reported from the journal, a "
            "rebuild that may have been sent is reconciled (never sent twice), the rest run."
        ),
    )
    resume.add_argument("journal", metavar="FILE", help="the journal of the run")
    resume.add_argument(
        "--user-data",
        metavar="FILE",
        help="the user data the run was started with (the journal does not store it)",
    )
    resume.add_argument(
        "--admin-pass-env",
        metavar="VAR",
        help="the environment variable holding the adminPass the run was started with",
    )
    run_options(resume)
    resume.set_defaults(handler=resume_handler)

    journal = commands.add_parser(
        "journal", help="read a run's journal", description="Read a run's journal."
    )
    actions = journal.add_subparsers(dest="journal_command", required=True)
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
    show.set_defaults(handler=show_handler)


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
    for entry in record["rollout"]:
        details = " ".join(f"{k}={v}" for k, v in sorted(entry.items()) if k != "at")
        lines.append(f"rollout {_when(entry['at'])} {details}")
    for server in record["servers"]:
        outcome = server["outcome"]
        ended = "not finished" if outcome is None else outcome["kind"]
        if outcome is not None and outcome["message"]:
            ended += f": {outcome['message']}"
        lines.append(f"{server['server_id']}  {ended}")
        for sent in server["requests"]:
            lines.append(
                f"    #{sent['attempt']} {sent['result']}"
                f"  request id {sent['request_id'] or '-'}"
                f"  sent after {_when(sent.get('sent_after'))}"
                f"  accepted at {_when(sent.get('service_time'))}"
            )
    stream.write("\n".join(lines) + "\n")
