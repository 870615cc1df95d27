"""``ecs-rebuild``: rebuild servers from the command line, try it on a built-in demo, and see
which microversion a request would use.

Progress and logs go to standard error, results to standard output. The exit statuses are in
``parse.EPILOG`` (and ``--help``). The live display and the summary tables need rich:
``pip install 'ecs-rebuild-async[cli]'``; ``--json``, ``--dry-run`` and ``versions`` work
without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import anyio
import attrs
import httpx

from .._auth import KeystoneAuth, TokenAuth
from .._errors import (
    EcsError,
    Forbidden,
    InvalidRequest,
    MicroversionError,
    TransportError,
    Unauthorized,
)
from .._microversion import LIBRARY_MAX
from .._models import RebuildRequest, Server
from .._rollout import RolloutPolicy
from .._settings import ClientSettings
from .config import (
    ClientSpec,
    UsageError,
    build_request,
    client_spec,
    read_server_ids,
    user_data_file,
)
from .dryrun import OutputClosed, offline_dry_run, online_dry_run
from .journal import print_audit, resume_policy, resume_targets
from .logs import formatter
from .output import check_columns
from .parse import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT_CLOSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PROG,
    build_parser,
)
from .rollout import add_rollout_options, find_arguments, policy_from_args, run_plan
from .run import BulkOptions, run_bulk_command
from .targets import read_servers, resolve_image, resolve_servers

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT_CLOSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "main",
]

_CONFIG_ERRORS = (UsageError, InvalidRequest, MicroversionError, Forbidden)

# Up to this many servers, each is read before the run; more are listed by the library.
_READ_ALL_UP_TO = 50


@attrs.frozen
class Io:
    """Where the command reads and writes, and what it connects with."""

    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    environ: Mapping[str, str]
    transport: httpx.AsyncBaseTransport | None


# -- rebuild ------------------------------------------------------------------------------------


def _output_format(args: argparse.Namespace) -> str:
    fmt: str = "json" if args.json else (args.format or "table")
    check_columns(args.columns)
    return fmt


def _settings(args: argparse.Namespace) -> ClientSettings | None:
    settings = ClientSettings()
    if args.poll_interval is not None:
        poll = args.poll_interval
        settings = attrs.evolve(settings, poll_first_delay=poll, poll_interval=poll)
    if getattr(args, "reconcile_settle", None) is not None:
        settings = attrs.evolve(settings, reconcile_settle=args.reconcile_settle)
    return None if settings == ClientSettings() else settings


def _offline(args: argparse.Namespace, spec: ClientSpec) -> bool:
    """A dry run is offline when asked, or when a pinned microversion leaves nothing to ask."""
    return bool(args.dry_run and (args.offline or "microversion" in spec.options))


async def _cmd_rebuild(args: argparse.Namespace, io: Io) -> int:
    fmt = _output_format(args)
    if args.offline and not args.dry_run:
        raise UsageError("--offline is for --dry-run")
    if args.journal and args.no_wait:
        raise UsageError("--journal records whole runs: it cannot be used with --no-wait")
    build_request(args, image="70a5e0a4-0000-4000-8000-00000000000a")  # bad values fail here
    policy = policy_from_args(args, io.stdin, io.stderr)
    if policy is not None and args.no_wait:
        raise UsageError("a rollout waits for each server: --no-wait cannot be used with it")
    where = find_arguments(args)
    given: list[str] = []
    if where is None:
        given, repeated = read_server_ids(args, io.stdin)
        for item in repeated:
            io.stderr.write(f"warning: {item} is listed more than once; rebuilt once\n")
    elif args.servers or args.from_file:
        raise UsageError("--where chooses the servers: give no SERVER or --from-file with it")
    spec = client_spec(args, io.environ)
    if _offline(args, spec):
        if where is not None:
            raise UsageError("--where asks the service for the servers: not with --offline")
        return await offline_dry_run(args, spec, given, io)
    console = None if fmt != "table" or args.dry_run or args.plan else _console(io.stderr)
    with _explaining_401(spec.auth):
        return await _rebuild_online(args, spec, given, fmt, console, io, Rollout(policy, where))


@attrs.frozen
class Rollout:
    """The rollout options of a rebuild: how to roll, and which servers --where chooses."""

    policy: RolloutPolicy | None
    where: dict[str, Any] | None


async def _rebuild_online(
    args: argparse.Namespace,
    spec: ClientSpec,
    given: Sequence[str],
    fmt: str,
    console: Any,
    io: Io,
    rollout: Rollout,
) -> int:
    async with spec.open(transport=io.transport, settings=_settings(args)) as client:
        if rollout.where is None:
            server_ids, before = await resolve_servers(client, given)
        else:
            found = await client.find_servers(**rollout.where)
            io.stderr.write(f"--where chose {len(found)} servers\n")
            if not found:
                return EXIT_OK
            server_ids, before = [s.id for s in found], {s.id: s for s in found}
        image = None if args.image is None else await resolve_image(client, args.image)
        # The servers are read before anything is sent, once each: rejected credentials or an
        # unreachable service stop the run here; a dry run checks each server; without --image
        # each server's current image is the one to rebuild with.
        # A run of a few servers reads them all (the library would read each one anyway): the
        # results then name every server, conflicts and not-found ones included.
        few = len(server_ids) <= _READ_ALL_UP_TO
        must_read = server_ids if (args.dry_run or image is None or few) else server_ids[:1]
        unread = [sid for sid in must_read if sid not in before]
        before.update(await read_servers(client, unread, args.concurrency))
        requests = _requests(args, image, server_ids, before)
        if not args.dry_run:
            # Every check a rebuild makes, before anything is sent: bad input fails here, once.
            for server_id, request in {id(r): (s, r) for s, r in requests.items()}.values():
                await client.prepare(server_id, request)
        if args.dry_run:
            return await online_dry_run(client, spec, server_ids, requests, before, args, io)
        if args.plan:
            await run_plan(
                client,
                requests,
                rollout.policy,
                concurrency=args.concurrency,
                stdout=io.stdout,
                as_json=fmt == "json",
            )
            return EXIT_OK
        options = BulkOptions(
            concurrency=args.concurrency,
            timeout=args.timeout,
            wait=not args.no_wait,
            as_json=fmt == "json",
            fmt=fmt,
            columns=tuple(args.columns) if args.columns else None,
            label="submitting" if args.no_wait else "rebuilding",
            show_events=args.verbose >= 1,
            policy=rollout.policy,
            journal=args.journal,
        )
        shared = next(iter(requests.values()))
        return await run_bulk_command(
            client,
            server_ids,
            shared,
            options,
            stdout=io.stdout,
            stderr=io.stderr,
            console=console,
            before=before,
            requests=None if image is not None else requests,
        )


def _requests(
    args: argparse.Namespace,
    image: str | None,
    server_ids: Sequence[str],
    before: Mapping[str, Server],
) -> dict[str, RebuildRequest]:
    """The request for each server: one shared request with --image; otherwise each server's
    own current image (a reinstall, as ``openstack server rebuild`` does without --image)."""
    if image is not None:
        shared = build_request(args, image)
        assert shared is not None
        return dict.fromkeys(server_ids, shared)
    requests: dict[str, RebuildRequest] = {}
    for server_id in server_ids:
        server = before.get(server_id)
        if server is None:
            raise UsageError(f"server {server_id} was not found (its image is needed: no --image)")
        if server.image_id is None:
            raise UsageError(
                f"server {server_id} boots from a volume and has no image: give --image"
            )
        request = build_request(args, server.image_id)
        assert request is not None
        requests[server_id] = request
    return requests


# -- durable runs -------------------------------------------------------------------------------


async def _cmd_resume(args: argparse.Namespace, io: Io) -> int:
    fmt = _output_format(args)
    targets, run, secrets = resume_targets(args, io.environ, user_data_file)
    server_ids = [t if isinstance(t, str) else t[0] for t in targets]
    if not server_ids:
        raise UsageError(f"the journal {args.journal} records no server")
    policy = resume_policy(args, run, io.stdin, io.stderr)
    spec = client_spec(args, io.environ)
    console = None if fmt != "table" else _console(io.stderr)
    with _explaining_401(spec.auth):
        async with spec.open(transport=io.transport, settings=_settings(args)) as client:
            options = BulkOptions(
                concurrency=args.concurrency or run.concurrency,
                timeout=args.timeout if args.timeout is not None else run.timeout,
                wait=True,
                as_json=fmt == "json",
                fmt=fmt,
                columns=tuple(args.columns) if args.columns else None,
                label="resuming",
                show_events=args.verbose >= 1,
                policy=policy,
                journal=args.journal,
                resume_secrets=secrets,
                continue_stopped=args.continue_stopped,
            )
            return await run_bulk_command(
                client,
                server_ids,
                None,
                options,
                stdout=io.stdout,
                stderr=io.stderr,
                console=console,
            )


async def _cmd_journal(args: argparse.Namespace, io: Io) -> int:
    print_audit(args.journal, io.stdout, as_json=args.json)
    return EXIT_OK


# -- demo and versions --------------------------------------------------------------------------


async def _cmd_demo(args: argparse.Namespace, io: Io) -> int:
    from .demo import check_demo_args, run_demo

    check_demo_args(args)
    as_json = bool(args.json or args.format == "json")
    console = None if as_json else _console(io.stderr)
    return await run_demo(
        args, stdout=io.stdout, stderr=io.stderr, console=console, as_json=as_json
    )


async def _cmd_versions(args: argparse.Namespace, io: Io) -> int:
    request = build_request(args)
    spec = client_spec(args, io.environ)
    with _explaining_401(spec.auth):
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
    _print_versions(record, io.stdout, as_json=args.json or args.format == "json")
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


def _unauthorized(exc: Unauthorized, spec_auth: object) -> str:
    """Whether the token expired, was refused, or the credentials were: what a 401 means here."""
    rid = f" (request id {exc.request_id})" if exc.request_id else ""
    if isinstance(spec_auth, TokenAuth):
        why = "the token was refused: it has expired or been revoked, or it is not for this cloud"
        fix = "get a new one (openstack token issue)"
    elif isinstance(spec_auth, KeystoneAuth):
        if spec_auth.project_id is None:
            why, fix = "Keystone refused the credentials", "check the user, password and project"
        else:
            why = "the service refused a token Keystone had just issued"
            fix = "check that the project may use this compute endpoint"
    else:
        why, fix = "the service refused the AK/SK signature", "check the AK, SK and project"
    return f"HTTP 401: {why}{rid}; {fix}"


@contextlib.contextmanager
def _explaining_401(auth: object) -> Iterator[None]:
    """A 401 before the run becomes a configuration error that says what was refused."""
    try:
        yield
    except Exception as raised:
        exc = _unwrap(raised)
        if isinstance(exc, Unauthorized):
            raise UsageError(_unauthorized(exc, auth)) from None
        raise


def _unwrap(exc: BaseException) -> BaseException:
    """The one error inside exception groups of one (task groups wrap what they raise)."""
    while True:
        inner = getattr(exc, "exceptions", None)
        if not isinstance(inner, tuple) or len(inner) != 1:
            return exc
        exc = inner[0]


def _run(
    handler: Callable[[argparse.Namespace, Io], Awaitable[int]], args: argparse.Namespace, io: Io
) -> int:
    try:
        return anyio.run(handler, args, io)
    except BaseException as raised:
        code = _exit_for(_unwrap(raised), io)
        if code is None:
            raise
        return code


def _exit_for(exc: BaseException, io: Io) -> int | None:
    """Report an error that ended a command in one line; its exit status (None: not ours)."""
    if isinstance(exc, (*_CONFIG_ERRORS, Unauthorized)):
        io.stderr.write(f"{PROG}: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    if isinstance(exc, TransportError):
        io.stderr.write(f"{PROG}: error: cannot reach the service: {exc}\n")
        return EXIT_UNREACHABLE  # raised before the run: no rebuild was sent
    if isinstance(exc, EcsError):
        io.stderr.write(f"{PROG}: error: {_one_line(exc)}\n")
        return EXIT_FAILED
    if isinstance(exc, (OutputClosed, BrokenPipeError)):
        with contextlib.suppress(OSError):
            io.stderr.write(f"{PROG}: output closed: stopped\n")
        return EXIT_OUTPUT_CLOSED
    if isinstance(exc, KeyboardInterrupt):
        io.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    return None


class _Logging:
    """Library logs on standard error while a command runs: -v the library's notices (the
    changes of state are printed by the run), -vv every HTTP request and the debug detail."""

    def __init__(self, verbose: int, stream: TextIO, log_format: str = "text") -> None:
        self._handler = logging.StreamHandler(stream)
        self._handler.setFormatter(formatter(log_format))
        debug = verbose >= 2
        self._levels = {
            "ecs_rebuild_async": (
                logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
            ),
            "httpx": logging.INFO if debug else logging.WARNING,
        }
        self._saved: list[tuple[logging.Logger, int, bool]] = []

    def __enter__(self) -> None:
        for name, level in self._levels.items():
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.level, logger.propagate))
            logger.addHandler(self._handler)
            logger.setLevel(level)
            logger.propagate = False

    def __exit__(self, *exc: object) -> None:
        for logger, level, propagate in self._saved:
            logger.removeHandler(self._handler)
            logger.setLevel(level)
            logger.propagate = propagate


_HANDLERS: dict[str, Callable[[argparse.Namespace, Io], Awaitable[int]]] = {
    "rebuild": _cmd_rebuild,
    "demo": _cmd_demo,
    "versions": _cmd_versions,
    "resume": _cmd_resume,
    "journal": _cmd_journal,
}


def _silence_closed_stdout(stream: TextIO) -> None:
    """After a closed pipe, point standard output at /dev/null: Python's own flush at exit
    would otherwise print "Exception ignored ... BrokenPipeError"."""
    if stream is not sys.__stdout__:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


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
        args = build_parser([add_rollout_options]).parse_args(argv)
    except UsageError as exc:
        io.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    with _Logging(args.verbose, io.stderr, getattr(args, "log_format", "text")):
        code = _run(_HANDLERS[args.command], args, io)
    if code == EXIT_OUTPUT_CLOSED:
        _silence_closed_stdout(io.stdout)
    return code
