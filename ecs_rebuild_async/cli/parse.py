"""The command line's arguments: one function per option group, so that a new group (rollout
options, say) is one more function in a command's list, not an edit of the others.

Options an ``openstack server rebuild`` user types are accepted with OSC's meaning:
``--property``, ``--password``, ``--wait``, ``-f``/``-c``, the ``--os-*`` connection options.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .._version import __version__
from .config import UsageError
from .journal import add_journal_commands, journal_options

__all__ = [
    "DEMO_GROUPS",
    "EPILOG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT_CLOSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "FORMATS",
    "PROG",
    "REBUILD_GROUPS",
    "VERSIONS_GROUPS",
    "OptionGroup",
    "build_parser",
]

PROG = "ecs-rebuild"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a pipeline cut short

EPILOG = """exit status:
  0    every server rebuilt (--no-wait: every rebuild accepted; --dry-run: every check passed)
  1    some servers failed, timed out or could not be rebuilt (or a dry run's check failed)
  2    usage or configuration error (arguments, credentials, the request); nothing was rebuilt
  3    the service could not be reached (refused, DNS, TLS, timeout); nothing was sent
  130  interrupted (Ctrl-C); the rebuilds already submitted are listed on stderr
  141  standard output was closed (e.g. '| head'); the rebuilds submitted are listed on stderr"""

FORMATS = ("table", "json", "value", "yaml")

#: Adds one group of options to a subcommand's parser.
OptionGroup = Callable[[argparse.ArgumentParser], None]


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line (``error()``), as a UsageError."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


# -- option groups ------------------------------------------------------------------------------


def server_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("servers")
    group.add_argument(
        "servers",
        nargs="*",
        metavar="SERVER",
        help="server id or name (a name must match exactly one server); '-' reads stdin",
    )
    group.add_argument(
        "--from-file", action="append", metavar="PATH", help="read server ids or names from PATH"
    )


def request_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("rebuild request (as in 'openstack server rebuild')")
    group.add_argument(
        "--image", metavar="IMAGE", help="image id or name (default: the server's current image)"
    )
    group.add_argument("--name", help="new server name")
    group.add_argument(
        "--metadata",
        "--property",
        dest="metadata",
        action="append",
        metavar="KEY=VALUE",
        help="metadata item (repeatable); replaces the server's metadata",
    )
    group.add_argument(
        "--password", dest="admin_pass", metavar="PASSWORD", help="admin password to set"
    )
    ephemeral = group.add_mutually_exclusive_group()
    ephemeral.add_argument(
        "--preserve-ephemeral",
        dest="preserve_ephemeral",
        action="store_true",
        default=None,
        help="keep the ephemeral partition (Nova only)",
    )
    ephemeral.add_argument(
        "--no-preserve-ephemeral", dest="preserve_ephemeral", action="store_false"
    )
    keys = group.add_mutually_exclusive_group()
    keys.add_argument("--key-name", metavar="NAME", help="key pair to set (2.54+)")
    keys.add_argument(
        "--no-key-name", "--key-unset", action="store_true", help="remove the key pair (2.54+)"
    )
    user_data = group.add_mutually_exclusive_group()
    user_data.add_argument("--user-data", metavar="FILE", help="user data from FILE (2.57+)")
    user_data.add_argument(
        "--no-user-data", action="store_true", help="remove the user data (2.57+)"
    )
    certs = group.add_mutually_exclusive_group()
    certs.add_argument(
        "--trusted-image-cert",
        dest="trusted_image_certs",
        action="append",
        metavar="CERT_ID",
        help="trusted certificate id (repeatable; 2.63+)",
    )
    certs.add_argument(
        "--no-trusted-image-certs",
        action="store_true",
        help="remove the trusted certificates (2.63+)",
    )
    group.add_argument("--description", help="server description (2.19+)")
    group.add_argument("--hostname", help="server hostname (2.90+)")
    reimage = group.add_mutually_exclusive_group()
    reimage.add_argument(
        "--reimage-boot-volume",
        dest="reimage_boot_volume",
        action="store_true",
        default=None,
        help="rebuild a volume-backed server's root volume (2.93+)",
    )
    reimage.add_argument(
        "--no-reimage-boot-volume",
        dest="reimage_boot_volume",
        action="store_false",
        help="do not reimage a root volume (keeps the request below 2.93)",
    )


def run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("running")
    group.add_argument("--concurrency", type=_positive_int, default=50, metavar="N")
    group.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="bound on each server's wait"
    )
    group.add_argument(
        "--poll-interval", type=_positive_float, metavar="S", help="seconds between status reads"
    )
    waiting = group.add_mutually_exclusive_group()
    waiting.add_argument(
        "--wait", action="store_true", help="wait until each rebuild ends (the default)"
    )
    waiting.add_argument("--no-wait", action="store_true", help="submit only; do not wait")
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="check and print the requests without sending them; online, each server is "
        "read (it must exist and be rebuildable)",
    )
    group.add_argument(
        "--offline",
        action="store_true",
        help="with --dry-run: no network at all (needs --endpoint and --microversion; "
        "implied by --microversion)",
    )


def connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "connection",
        "--endpoint with --token (or OS_TOKEN); or --os-cloud / OS_CLOUD (clouds.yaml, which "
        "--endpoint may override); or the --os-* options and OS_* / HUAWEICLOUD_SDK_* variables",
    )
    group.add_argument("--os-cloud", metavar="NAME", help="the clouds.yaml entry to use")
    group.add_argument(
        "--endpoint",
        "--os-endpoint-override",
        dest="endpoint",
        metavar="URL",
        help="compute endpoint (https://host/v2.1/<project_id>)",
    )
    group.add_argument(
        "--token",
        "--os-token",
        dest="token",
        metavar="TOKEN",
        help="token (prefer the OS_TOKEN variable)",
    )
    group.add_argument(
        "--microversion",
        "--os-compute-api-version",
        dest="microversion",
        metavar="X.Y",
        help="pin a microversion (default: OS_COMPUTE_API_VERSION, else negotiated)",
    )
    group.add_argument("--dialect", choices=("ecs", "nova"), help="whose rules apply")
    for flag, metavar in (
        ("--os-auth-url", "URL"),
        ("--os-auth-type", "TYPE"),
        ("--os-username", "NAME"),
        ("--os-user-id", "ID"),
        ("--os-password", "PASSWORD"),
        ("--os-user-domain-name", "NAME"),
        ("--os-user-domain-id", "ID"),
        ("--os-project-name", "NAME"),
        ("--os-project-id", "ID"),
        ("--os-project-domain-name", "NAME"),
        ("--os-project-domain-id", "ID"),
        ("--os-application-credential-id", "ID"),
        ("--os-application-credential-secret", "SECRET"),
        ("--os-region-name", "REGION"),
        ("--os-interface", "INTERFACE"),
        ("--os-cacert", "PATH"),
    ):
        variable = flag[2:].upper().replace("-", "_")
        group.add_argument(flag, metavar=metavar, help=f"as {variable}")
    group.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")


def output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--json", action="store_true", help="JSON lines on standard output (same as -f json)"
    )
    group.add_argument(
        "-f", "--format", choices=FORMATS, help="table (default), json (lines), value or yaml"
    )
    group.add_argument(
        "-c",
        "--column",
        action="append",
        dest="columns",
        metavar="COLUMN",
        help="show only COLUMN (repeatable; a JSON field name)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: each server's changes of state on stderr; -vv: and every HTTP request",
    )


def demo_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("demo")
    group.add_argument("--servers", type=int, default=200, metavar="N")
    group.add_argument("--fail-rate", type=float, default=0.05, metavar="F", help="0 to 1")
    group.add_argument("--duration", type=float, default=3.0, metavar="S", help="each rebuild")
    group.add_argument("--concurrency", type=int, default=100, metavar="N")
    group.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)


def _versions_request(parser: argparse.ArgumentParser) -> None:
    request_options(parser)


#: The option groups of each command, in the order ``--help`` shows them.
REBUILD_GROUPS: list[OptionGroup] = [
    server_arguments,
    request_options,
    run_options,
    connection_options,
    output_options,
    journal_options,
]
DEMO_GROUPS: list[OptionGroup] = [demo_options, output_options]
VERSIONS_GROUPS: list[OptionGroup] = [_versions_request, connection_options, output_options]


def _command(
    commands: Any,
    name: str,
    groups: Sequence[OptionGroup],
    *,
    help: str,
    description: str,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=description)
    for add_group in groups:
        add_group(parser)
    parser.set_defaults(command=name)
    return parser


def build_parser(extra_rebuild_groups: Sequence[OptionGroup] = ()) -> argparse.ArgumentParser:
    """The whole parser; ``extra_rebuild_groups`` add option groups to ``rebuild``."""
    parser = _Parser(
        prog=PROG,
        description="Rebuild ECS / OpenStack Nova servers and know how each one ended.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _command(
        commands,
        "rebuild",
        [*REBUILD_GROUPS, *extra_rebuild_groups],
        help="rebuild servers and wait until each one has finished",
        description="Rebuild servers; print one result per server as it completes.",
    )
    _command(
        commands,
        "demo",
        DEMO_GROUPS,
        help="a bulk rebuild against the built-in fake service",
        description=(
            "Rebuild a fleet of fake servers in process, with live progress. Some rebuilds fail "
            "on purpose (--fail-rate); the exit status is 0 when every outcome reported is the "
            "truth as the fake service knows it, 1 otherwise."
        ),
    )
    _command(
        commands,
        "versions",
        VERSIONS_GROUPS,
        help="the microversions the endpoint offers, and what a request would use",
        description="Show the service's microversions; with --image, what a request negotiates.",
    )
    add_journal_commands(commands, _command, connection=connection_options, output=output_options)
    return parser
