"""``ecs-rebuild``: rebuild servers from the command line, try it on a built-in demo, and see
which microversion a request would use.

Progress and logs go to standard error, results to standard output. Exit status:

* 0 -- every server was rebuilt (or, with ``--no-wait``, every rebuild was accepted;
  with ``--dry-run``, every request was built)
* 1 -- some servers failed, timed out or could not be rebuilt, or the service failed
* 2 -- usage or configuration error (bad arguments, missing credentials, a request the
  endpoint or microversion cannot take, rejected credentials); nothing was rebuilt
* 130 -- interrupted (Ctrl-C); the rebuilds already submitted are listed on standard error

The live display and the summary tables need rich: ``pip install 'ecs-rebuild-async[cli]'``.
``--json``, ``--dry-run`` and ``versions`` work without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn, TextIO

import anyio
import attrs
import httpx

from .._client import AsyncEcsClient
from .._errors import (
    EcsError,
    Forbidden,
    InvalidRequest,
    MicroversionError,
    NotFound,
    Unauthorized,
)
from .._microversion import LIBRARY_MAX
from .._settings import ClientSettings
from .._version import __version__
from .config import UsageError, build_request, client_spec, read_server_ids
from .logs import formatter
from .output import dry_run_record, print_dry_run
from .run import EXIT_INTERRUPTED, BulkOptions, run_bulk_command

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

PROG = "ecs-rebuild"
_EPILOG = """exit status:
  0    every server rebuilt (--no-wait: every rebuild accepted; --dry-run: built)
  1    some servers failed, timed out or could not be rebuilt
  2    usage or configuration error; nothing was rebuilt
  130  interrupted (Ctrl-C); the rebuilds already submitted are listed on stderr"""

_CONFIG_ERRORS = (UsageError, InvalidRequest, MicroversionError, Unauthorized, Forbidden)


@attrs.frozen
class Io:
    """Where the command reads and writes, and what it connects with."""

    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    environ: Mapping[str, str]
    transport: httpx.AsyncBaseTransport | None


# -- arguments ----------------------------------------------------------------------------------


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


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "connection",
        "default: --os-cloud or OS_CLOUD (clouds.yaml), else OS_* / HUAWEICLOUD_SDK_* variables",
    )
    group.add_argument("--os-cloud", metavar="NAME", help="the clouds.yaml entry to use")
    group.add_argument("--endpoint", metavar="URL", help="compute endpoint, with a token")
    group.add_argument(
        "--token", metavar="TOKEN", help="token for --endpoint (prefer the OS_TOKEN variable)"
    )
    group.add_argument("--microversion", metavar="X.Y", help="pin a microversion")
    group.add_argument("--dialect", choices=("ecs", "nova"), help="whose rules apply")
    return parent


def _request_options(*, image_required: bool) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("rebuild request")
    group.add_argument("--image", required=image_required, help="image id to rebuild with")
    group.add_argument("--name", help="new server name")
    group.add_argument(
        "--metadata", action="append", metavar="KEY=VALUE", help="metadata item (repeatable)"
    )
    keys = group.add_mutually_exclusive_group()
    keys.add_argument("--key-name", metavar="NAME", help="key pair to set (2.54+)")
    keys.add_argument("--no-key-name", action="store_true", help="remove the key pair (2.54+)")
    group.add_argument("--user-data", metavar="FILE", help="user data from FILE (2.57+)")
    group.add_argument("--description", help="server description (2.19+)")
    group.add_argument("--hostname", help="server hostname (2.90+)")
    return parent


def _output_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="JSON lines on standard output")
    parent.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to standard error (-vv: more)"
    )
    parent.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on standard error: text, or one JSON object per line",
    )
    return parent


def _add_rebuild(commands: Any) -> None:
    rebuild = commands.add_parser(
        "rebuild",
        parents=[_request_options(image_required=True), _connection_options(), _output_options()],
        help="rebuild servers and wait until each one has finished",
        description="Rebuild servers; print one result per server as it completes.",
    )
    rebuild.add_argument(
        "server_ids", nargs="*", metavar="SERVER_ID", help="server ids; '-' reads them from stdin"
    )
    rebuild.add_argument(
        "--from-file", action="append", metavar="PATH", help="read server ids from PATH"
    )
    rebuild.add_argument(
        "--concurrency", type=_positive_int, default=50, metavar="N", help="default 50"
    )
    rebuild.add_argument(
        "--timeout", type=_positive_float, metavar="S", help="bound on each server's wait"
    )
    rebuild.add_argument(
        "--poll-interval", type=_positive_float, metavar="S", help="seconds between status reads"
    )
    rebuild.add_argument("--no-wait", action="store_true", help="submit only; do not wait")
    rebuild.add_argument(
        "--dry-run", action="store_true", help="print the requests without sending them"
    )
    rebuild.set_defaults(handler=_cmd_rebuild)


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[_output_options()],
        help="a bulk rebuild against the built-in fake service",
        description=(
            "Rebuild a fleet of fake servers in process, with live progress. Some rebuilds fail "
            "on purpose (--fail-rate); the exit status is 0 when every outcome reported is the "
            "truth as the fake service knows it, 1 otherwise."
        ),
    )
    demo.add_argument("--servers", type=int, default=200, metavar="N")
    demo.add_argument("--fail-rate", type=float, default=0.05, metavar="F", help="0 to 1")
    demo.add_argument("--duration", type=float, default=3.0, metavar="S", help="each rebuild")
    demo.add_argument("--concurrency", type=int, default=100, metavar="N")
    demo.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    demo.add_argument(
        "--trace",
        action="store_true",
        help="after the summary, print one server's spans (needs opentelemetry-sdk)",
    )
    demo.set_defaults(handler=_cmd_demo)


def _add_versions(commands: Any) -> None:
    versions = commands.add_parser(
        "versions",
        parents=[_request_options(image_required=False), _connection_options(), _output_options()],
        help="the microversions the endpoint offers, and what a request would use",
        description="Show the service's microversions; with --image, what a request negotiates.",
    )
    versions.set_defaults(handler=_cmd_versions)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Rebuild ECS / OpenStack Nova servers and know how each one ended.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_rebuild(commands)
    _add_demo(commands)
    _add_versions(commands)
    return parser


# -- commands -----------------------------------------------------------------------------------


async def _cmd_rebuild(args: argparse.Namespace, io: Io) -> int:
    request = build_request(args)
    assert request is not None  # --image is required
    server_ids, repeated = read_server_ids(args, io.stdin)
    for server_id in repeated:
        io.stderr.write(f"warning: {server_id} is listed more than once; rebuilt once\n")
    spec = client_spec(args, io.environ)
    console = None if args.json or args.dry_run else _console(io.stderr)
    async with spec.open(transport=io.transport, settings=_settings(args)) as client:
        # Every check a rebuild makes, before anything is sent: bad input fails here, once.
        await client.prepare(server_ids[0], request)
        if args.dry_run:
            for server_id in server_ids:
                prepared = await client.prepare(server_id, request)
                record = await dry_run_record(server_id, prepared, spec.auth)
                print_dry_run(record, io.stdout, as_json=args.json)
            return EXIT_OK
        await _check_access(client, server_ids[0])
        options = BulkOptions(
            concurrency=args.concurrency,
            timeout=args.timeout,
            wait=not args.no_wait,
            as_json=args.json,
            label="submitting" if args.no_wait else "rebuilding",
        )
        return await run_bulk_command(
            client,
            server_ids,
            request,
            options,
            stdout=io.stdout,
            stderr=io.stderr,
            console=console,
        )


async def _check_access(client: AsyncEcsClient, server_id: str) -> None:
    """One read before the run: rejected credentials stop it here rather than once per server."""
    with contextlib.suppress(NotFound):
        await client.get_server(server_id)


def _settings(args: argparse.Namespace) -> ClientSettings | None:
    if args.poll_interval is None:
        return None
    return ClientSettings(poll_first_delay=args.poll_interval, poll_interval=args.poll_interval)


async def _cmd_demo(args: argparse.Namespace, io: Io) -> int:
    from .demo import check_demo_args, run_demo

    check_demo_args(args)
    return await run_demo(args, stdout=io.stdout, stderr=io.stderr, console=_console(io.stderr))


async def _cmd_versions(args: argparse.Namespace, io: Io) -> int:
    request = build_request(args)
    spec = client_spec(args, io.environ)
    async with spec.open(transport=io.transport) as client:
        offered = await client.versions()
        chosen = await client.negotiate(request)
        if request is not None:
            request.check(dialect=client.dialect, microversion=chosen)
    record: dict[str, Any] = {
        "offered": None
        if offered is None
        else {"min": str(offered.minimum), "max": str(offered.maximum)},
        "library_max": str(LIBRARY_MAX),
        "dialect": client.dialect.value,
        "request_fields": None if request is None else sorted(request.wire_fields()),
        "request_needs": None if request is None else str(request.min_microversion()),
        "negotiated": None if chosen is None else str(chosen),
    }
    _print_versions(record, io.stdout, as_json=args.json)
    return EXIT_OK


def _print_versions(record: Mapping[str, Any], stream: TextIO, *, as_json: bool) -> None:
    if as_json:
        stream.write(json.dumps(record, sort_keys=True) + "\n")
        return
    offered = record["offered"]
    lines = [
        "service offers: "
        + (
            "no microversions (a /v2 endpoint)"
            if offered is None
            else f"{offered['min']} to {offered['max']}"
        ),
        f"library knows: up to {record['library_max']}",
        f"dialect: {record['dialect']}",
    ]
    if record["request_fields"] is not None:
        lines.append(f"request fields: {', '.join(record['request_fields'])}")
        lines.append(f"request needs: {record['request_needs']} or later")
    lines.append(f"would send: {record['negotiated'] or 'no microversion header'}")
    stream.write("\n".join(lines) + "\n")


def _console(stream: TextIO) -> Any:
    from .display import make_console

    return make_console(stream)


# -- running ------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, UsageError) else f"{type(exc).__name__}: {text}"


def _run(
    handler: Callable[[argparse.Namespace, Io], Awaitable[int]], args: argparse.Namespace, io: Io
) -> int:
    try:
        return anyio.run(handler, args, io)
    except _CONFIG_ERRORS as exc:
        io.stderr.write(f"{PROG}: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except EcsError as exc:
        io.stderr.write(f"{PROG}: {_one_line(exc)}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        io.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED


class _Logging:
    """Library logs on standard error while a command runs (-v: info, -vv: debug and HTTP)."""

    _NAMES = ("ecs_rebuild_async", "httpx")

    def __init__(self, verbose: int, stream: TextIO, log_format: str = "text") -> None:
        self._handler = logging.StreamHandler(stream)
        self._handler.setFormatter(formatter(log_format))
        self._level = (
            logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
        )
        self._saved: list[tuple[logging.Logger, int, bool]] = []

    def __enter__(self) -> None:
        for name in self._NAMES:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level, logger.propagate))
            logger.addHandler(self._handler)
            logger.setLevel(self._level)
            logger.propagate = False

    def __exit__(self, *exc: object) -> None:
        for logger, level, propagate in self._saved:
            logger.removeHandler(self._handler)
            logger.setLevel(level)
            logger.propagate = propagate


def main(
    argv: Sequence[str] | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the command line; returns the exit status.

    ``transport`` (an ``httpx.AsyncBaseTransport``, e.g. ``FakeCompute().transport()``) carries
    every request in place of the network; ``environ`` replaces ``os.environ``.
    """
    io = Io(
        stdin=sys.stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
        environ=os.environ if environ is None else environ,
        transport=transport,
    )
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        io.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    with _Logging(args.verbose, io.stderr, args.log_format):
        return _run(args.handler, args, io)
