"""AsyncEcsClient: the thin facade over the session, the rebuild flow, the poller and bulk runs."""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream

from . import _telemetry
from ._auth import Auth, build_auth
from ._bulk import (
    BulkReport,
    OutcomeCallback,
    check_run_options,
    normalize_targets,
    outcome_kind,
    plan_bulk,
    run_bulk,
)
from ._compute import ComputeApi, check_server_id
from ._config import ClientConfig, config_from_cloud, config_from_env
from ._durable import JournalStore, journal_at, journaled_run, open_durable, recorded_policy
from ._errors import (
    ClientClosed,
    EcsError,
    InvalidRequest,
    MicroversionError,
    NotFound,
    RebuildOutcomeUnknown,
    RebuildTimeout,
)
from ._lifecycle import RebuildTracker
from ._microversion import APIVersion, VersionRange, parse_version
from ._models import (
    ECS,
    UNSET,
    Dialect,
    RebuildEvent,
    RebuildOutcome,
    RebuildRequest,
    Server,
    ServerStatus,
    Unset,
    as_dialect,
)
from ._poll import EventCallback, FleetPoller, wait_for_rebuild
from ._rebuild import Accepted, Operations, submit_rebuild
from ._rollout import RolloutPlan, RolloutPolicy
from ._selection import TAGS_VERSION, make_filter
from ._serde import request_to_wire
from ._session import Session
from ._settings import ClientSettings

__all__ = ["AsyncEcsClient", "OutcomeCallback", "options_from_config"]


class _Submission:
    """Whether a rebuild was (or may have been) accepted, told on to the caller's callback.
    An object rather than a closure: a fleet holds one per server in flight."""

    __slots__ = ("forward", "maybe_submitted")

    def __init__(self, forward: Callable[[bool], None] | None) -> None:
        self.forward = forward
        self.maybe_submitted = False

    def __call__(self, value: bool) -> None:
        self.maybe_submitted = value
        if self.forward is not None:
            self.forward(value)


# How many accepted rebuilds a client remembers for a later wait_for_rebuild.
_ACCEPTED_KEPT = 10_000
# How long (seconds) a fleet listing's states stand for each server's state before its rebuild;
# a server whose turn comes later is read on its own just before its request.
_FLEET_STATE_FRESH = 30.0


@attrs.frozen
class _Overrides:
    """The keyword arguments of from_env / from_cloud that replace configured values."""

    endpoint: str | None
    microversion: str | APIVersion | None
    dialect: Dialect | str | None
    settings: ClientSettings | None
    http_client: httpx.AsyncClient | None
    transport: httpx.AsyncBaseTransport | None
    region: str | None
    interface: str | None
    verify: bool | str | None


def options_from_config(config: ClientConfig) -> tuple[str | None, dict[str, Any]]:
    """The endpoint, and the AsyncEcsClient keyword arguments, that a configuration read from
    clouds.yaml or the environment gives (the one place that maps one onto the other)."""
    options: dict[str, Any] = {
        "auth": build_auth(config),
        "region": config.region,
        "interface": config.interface or "public",
    }
    if config.verify is not True:
        options["verify"] = config.verify
    if config.microversion:
        options["microversion"] = config.microversion
    if isinstance(config.dialect, Dialect):
        options["dialect"] = config.dialect
    return config.endpoint, options


def _check_callback(value: object, field: str) -> None:
    """None, or a plain function: it is called without await at each event (or outcome), so a
    value that cannot be called would fail only after a rebuild was sent, and an async function
    would never run."""
    if value is None:
        return
    if not callable(value):
        raise InvalidRequest(
            f"{field} must be a function (or None), got {type(value).__name__}", field=field
        )
    call = getattr(value, "__call__", None)  # noqa: B004  # an async __call__ counts too
    if inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(call):
        raise InvalidRequest(
            f"{field} is called without await: give a plain function, not an async one",
            field=field,
        )


def _check_since(since: object) -> None:
    """None, or an aware datetime: the service's times are in UTC, and a naive datetime
    cannot be compared with them."""
    if since is None:
        return
    if not isinstance(since, datetime):
        raise InvalidRequest(f"since must be a datetime, got {type(since).__name__}", field="since")
    if since.utcoffset() is None:
        raise InvalidRequest(
            "since has no timezone: give an aware datetime, such as "
            "datetime.now(timezone.utc) or the service's Date",
            field="since",
        )


def _checked_befores(before: object) -> dict[str, Server]:
    """``before`` of a bulk run: server ids mapped to the servers as read just before."""
    if before is None:
        return {}
    if not isinstance(before, Mapping):
        raise InvalidRequest(
            f"before must map server ids to Server, got {type(before).__name__}", field="before"
        )
    known: dict[str, Server] = {}
    for server_id, server in before.items():
        if not isinstance(server, Server) or server.id != server_id:
            raise InvalidRequest(
                f"before[{str(server_id)[:60]!r}] must be that server as read before the run",
                field="before",
            )
        known[server_id] = server
    return known


class AsyncEcsClient:
    """An async client for the rebuild-server action of an ECS / OpenStack Nova compute API.

    Use it as an async context manager. ``endpoint`` is the compute endpoint
    (``https://host/v2.1/<project_id>``, ``.../v2/<project_id>`` or project-less ``.../v2.1``);
    leave it out when ``auth`` has a service catalog. ``verify`` is True, False or the path of a
    CA bundle (for the default transport; a given ``http_client`` or ``transport`` keeps its own).
    ``microversion=None`` negotiates per request; a pinned ``"2.54"`` is used as given.
    ``dialect`` says whose rules apply: ``ECS`` (Huawei Cloud, Open Telekom Cloud) or ``NOVA``
    (upstream OpenStack), or their names as strings in any case (``"nova"``).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        auth: Auth,
        microversion: str | APIVersion | None = None,
        dialect: Dialect | str = ECS,
        settings: ClientSettings | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        region: str | None = None,
        interface: str = "public",
        verify: bool | str = True,
    ) -> None:
        if not isinstance(auth, Auth):
            raise InvalidRequest("auth must be TokenAuth, KeystoneAuth or AkSkAuth", field="auth")
        self._dialect = as_dialect(dialect)
        if settings is not None and not isinstance(settings, ClientSettings):
            raise InvalidRequest(
                f"settings must be ClientSettings, got {type(settings).__name__}", field="settings"
            )
        self._pinned = parse_version(microversion) if microversion is not None else None
        self._settings = settings or ClientSettings()
        self._session = Session(
            endpoint,
            auth,
            settings=self._settings,
            http_client=http_client,
            transport=transport,
            interface=interface,
            region=region,
            verify=verify,
        )
        self._compute = ComputeApi(
            self._session, self._settings, pinned=self._pinned, dialect=self._dialect
        )
        compute = self._compute
        self._poller = FleetPoller(compute.fetch_for_poller, compute.list_changed, self._settings)
        # Bound once: every wait in flight would otherwise hold bound methods of its own.
        self._fetch_for_poller = compute.fetch_for_poller
        self._keep_tracker = self._keep
        self._prove_finished = self._rebuild_finished
        self._accepted: dict[str, RebuildTracker] = {}
        self._ops = Operations(
            post_rebuild=compute.post_rebuild,
            get_server=compute.read_server,
            list_actions=compute.list_actions,
        )

    # -- construction from what users already have --

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        endpoint: str | None = None,
        microversion: str | APIVersion | None = None,
        dialect: Dialect | str | None = None,
        settings: ClientSettings | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        region: str | None = None,
        interface: str | None = None,
        verify: bool | str | None = None,
    ) -> AsyncEcsClient:
        """A client from ``OS_*`` or ``HUAWEICLOUD_SDK_*`` environment variables.

        Each keyword given replaces what the environment says (``endpoint``: a compute
        endpoint in place of the catalog's or the variables').
        """
        config = config_from_env(os.environ if environ is None else environ)
        return cls._from_config(
            config,
            _Overrides(endpoint, microversion, dialect, settings, http_client, transport,
                       region, interface, verify),
        )  # fmt: skip

    @classmethod
    def from_cloud(
        cls,
        name: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        endpoint: str | None = None,
        microversion: str | APIVersion | None = None,
        dialect: Dialect | str | None = None,
        settings: ClientSettings | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        region: str | None = None,
        interface: str | None = None,
        verify: bool | str | None = None,
    ) -> AsyncEcsClient:
        """A client from a ``clouds.yaml`` entry (``OS_CLOUD`` when ``name`` is left out).

        Each keyword given replaces what the entry says.
        """
        config = config_from_cloud(name, os.environ if environ is None else environ)
        return cls._from_config(
            config,
            _Overrides(endpoint, microversion, dialect, settings, http_client, transport,
                       region, interface, verify),
        )  # fmt: skip

    @classmethod
    def _from_config(cls, config: ClientConfig, overrides: _Overrides) -> AsyncEcsClient:
        endpoint, options = options_from_config(config)
        given = {
            name: value
            for name, value in attrs.asdict(overrides, recurse=False).items()
            if value is not None
        }
        endpoint = given.pop("endpoint", endpoint)
        options.update(given)
        return cls(endpoint, **options)

    # -- lifecycle --

    async def __aenter__(self) -> AsyncEcsClient:
        await self._session.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._session.aclose()

    async def aclose(self) -> None:
        await self._session.aclose()

    def __repr__(self) -> str:
        endpoint = self._session.endpoint or "<from the service catalog>"
        return (
            f"AsyncEcsClient({endpoint!r}, dialect={self._dialect.name}, "
            f"microversion={self._pinned})"
        )

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def settings(self) -> ClientSettings:
        return self._settings

    @property
    def stats(self) -> dict[str, int]:
        """Requests sent by kind, and the shared poller's ticks."""
        return {
            **self._session.counts,
            "poll_ticks": self._poller.ticks,
            "poll_listings": self._poller.listings,
            "poll_single_reads": self._poller.single_reads,
            "rate_limited": self._session.pacer.limited_count,
        }

    # -- versions --

    async def versions(self) -> VersionRange | None:
        """The microversions the service offers (None for a ``/v2`` endpoint)."""
        return await self._compute.versions()

    async def negotiate(self, request: RebuildRequest | None = None) -> APIVersion | None:
        """The microversion a request would be sent with (None: no microversion header)."""
        return await self._compute.negotiate(request)

    async def prepare(self, server_id: str, request: RebuildRequest) -> dict[str, Any]:
        """What :meth:`rebuild` would send, without sending it: method, url, microversion, body.

        Runs every check that :meth:`rebuild` runs first, so bad input fails here too.
        """
        check_server_id(server_id)
        version = await self._compute.checked_version(request)
        return {
            "method": "POST",
            "url": await self._compute.rebuild_url(server_id),
            "microversion": None if version is None else str(version),
            "body": request_to_wire(request),
        }

    # -- single server --

    async def get_server(self, server_id: str) -> Server:
        """The server as the service shows it now. Raises NotFound."""
        check_server_id(server_id)
        with _telemetry.about(server_id):
            server, _ = await self._compute.server_answer(server_id)
        return server

    async def find_images(self, name: str) -> list[str]:
        """The ids of the images called exactly ``name``, from the catalog's image service.

        Raises InvalidRequest when the credentials have no service catalog (a token or AK/SK).
        """
        if not isinstance(name, str) or not name:
            raise InvalidRequest("an image name is a non-empty string", field="image_ref")
        return await self._compute.image_ids_named(name)

    async def rebuild(self, server_id: str, request: RebuildRequest) -> Server:
        """Send the rebuild (at most once) and return the server of the 202 answer.

        The answer never proves completion: use :meth:`wait_for_rebuild` next, or
        :meth:`rebuild_and_wait`. Bad input raises before anything is sent. The server is read
        first, as :meth:`rebuild_and_wait` does, so that the wait that follows knows the state
        to return to and a lost answer is judged against a read from before the request.
        """
        check_server_id(server_id)
        await self._compute.checked_version(request)
        with _telemetry.about(server_id):
            before = await self.get_server(server_id)
            accepted = await submit_rebuild(
                self._ops,
                server_id,
                request,
                before=before,
                settle=self._settings.reconcile_settle,
            )
        self._keep(self._track(server_id, request, before, accepted))
        if accepted.server is None:
            return await self.get_server(server_id)
        # A cancellation that came while the answer was awaited (the POST is shielded) takes
        # effect here, once the acceptance is kept for a later wait_for_rebuild: the caller's
        # own timeout (asyncio.timeout, wait_for) still ends this call, not a later await.
        await anyio.lowlevel.checkpoint()
        return accepted.server

    def _track(
        self, server_id: str, request: RebuildRequest, before: Server | None, accepted: Accepted
    ) -> RebuildTracker:
        return RebuildTracker.start(
            server_id,
            before=before,
            accepted_at=accepted.accepted_at,
            accepted=accepted.server,
            image=request.image_ref,
        )

    async def _rebuild_finished(self, tracker: RebuildTracker) -> bool:
        return await self._compute.rebuild_finished(tracker.server_id, tracker.before_updated)

    def _keep(self, tracker: RebuildTracker) -> None:
        """Remember what is known of an accepted rebuild until a wait ends it."""
        if tracker.terminal:
            self._accepted.pop(tracker.server_id, None)
            return
        self._accepted[tracker.server_id] = tracker
        while len(self._accepted) > _ACCEPTED_KEPT:
            # Rebuilds never waited for: forget the oldest rather than grow without bound.
            self._accepted.pop(next(iter(self._accepted)))

    async def wait_for_rebuild(
        self,
        server_id: str,
        *,
        timeout: float | None = None,
        since: datetime | None = None,
        on_event: EventCallback | None = None,
    ) -> Server:
        """Wait until the server's rebuild is proven finished; return the final Server.

        Raises RebuildFailed (ERROR, deleted, gone) or RebuildTimeout after ``timeout`` seconds
        (default ``settings.wait_timeout``). After :meth:`rebuild` on this client the wait knows
        the state before and when the service accepted it (kept across a timeout or a
        cancelled wait); otherwise pass ``since`` (the service time of the request).
        """
        check_server_id(server_id)
        limit = self._checked_timeout(timeout)
        _check_since(since)
        _check_callback(on_event, "on_event")
        tracker = self._accepted.get(server_id)
        if tracker is None:
            tracker = RebuildTracker.start(server_id, before=None, accepted_at=since)
        elif since is not None:
            tracker = tracker.knowing_acceptance(since)
        waiting = self._wait(tracker, limit, on_event)
        del tracker  # the wait keeps its own, newer one: this frame holds no older one
        return await waiting

    def _checked_timeout(self, timeout: object) -> float:
        """The timeout in seconds (the default for None); InvalidRequest for anything else
        than a non-negative number (NaN, a string), before anything is sent."""
        if timeout is None:
            return self._settings.wait_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise InvalidRequest(
                f"timeout must be a number of seconds, got {type(timeout).__name__}",
                field="timeout",
            )
        try:
            seconds = float(timeout)
        except OverflowError:
            # An int too large for a float: math.inf is how to say "no deadline".
            raise InvalidRequest(
                f"timeout is an int of {len(str(timeout))} digits, too large for a number of "
                "seconds (math.inf waits without a deadline)",
                field="timeout",
            ) from None
        if math.isnan(seconds) or seconds < 0:
            raise InvalidRequest(
                f"timeout must be a non-negative number of seconds, got {timeout!r}",
                field="timeout",
            )
        return seconds

    def _checked_run_arguments(
        self,
        timeout: object,
        concurrency: object,
        policy: object,
        *,
        on_outcome: object = None,
        on_event: object = None,
        report: object = None,
    ) -> float:
        """The options of a bulk run checked before anything is read or sent; its timeout."""
        limit = self._checked_timeout(timeout)
        check_run_options(concurrency, policy)
        _check_callback(on_outcome, "on_outcome")
        _check_callback(on_event, "on_event")
        if report is not None and not isinstance(report, BulkReport):
            raise InvalidRequest(
                f"report must be a BulkReport (or None), got {type(report).__name__}",
                field="report",
            )
        return limit

    def _wait(
        self,
        tracker: RebuildTracker,
        timeout: float,
        on_event: EventCallback | None,
        stated_timeout: float | None = None,
    ) -> Awaitable[Server]:
        # Whatever ends this wait (a timeout, the caller's cancellation), what it learnt stays
        # for the next wait (``keep``); only a proven end (done or failed) forgets the rebuild.
        # Not a coroutine of its own: a fleet holds one wait per server in flight.
        return wait_for_rebuild(
            tracker,
            poller=self._poller,
            fetch_one=self._fetch_for_poller,
            timeout=timeout,
            on_event=on_event,
            keep=self._keep_tracker,
            stated_timeout=stated_timeout,
            prove=self._prove_finished,
        )

    async def rebuild_and_wait(
        self,
        server_id: str,
        request: RebuildRequest,
        *,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        before: Server | None = None,
    ) -> Server:
        """Read the server, rebuild it, and wait until the rebuild is proven finished.

        ``timeout`` bounds the whole call: the read before, the request (and any Retry-After
        pause before it), reconciling an unclear answer, and the wait. ``before`` is the server
        as the caller read it just before (``get_server``, a listing): it takes the place of
        the read before, so an instant rebuild is two requests instead of three.
        """
        limit = self._checked_timeout(timeout)
        check_server_id(server_id)
        _check_callback(on_event, "on_event")
        if before is not None and (not isinstance(before, Server) or before.id != server_id):
            raise InvalidRequest(
                f"before must be server {server_id} as read before the rebuild",
                field="before",
            )
        with _telemetry.rebuild(server_id, outcome_kind):
            running = self._rebuild_and_wait(
                server_id, request, before, None, timeout=limit, on_event=on_event
            )
            # Not held here for the whole wait: the wait keeps what it needs of it.
            before = None
            return await running

    async def _rebuild_and_wait(
        self,
        server_id: str,
        request: RebuildRequest,
        before: Server | None,
        mark_submitted: Callable[[bool], None] | None,
        *,
        timeout: float,
        on_event: EventCallback | None,
        ops: Operations | None = None,
        on_accepted: Callable[[Accepted], Awaitable[None]] | None = None,
    ) -> Server:
        check_server_id(server_id)
        deadline = anyio.current_time() + timeout
        mark = _Submission(mark_submitted)
        accepted: Accepted | None = None
        with anyio.move_on_after(timeout):
            await self._compute.checked_version(request)
            if before is None:
                before = await self.get_server(server_id)
            if before.status is ServerStatus.ERROR and self._dialect is ECS:
                raise InvalidRequest(
                    f"server {server_id} is in ERROR, and ECS cannot rebuild a server in ERROR; "
                    "repair it first (or use dialect=NOVA for upstream Nova, which can)",
                    field="server_id",
                )
            # A deadline that has passed already (0, or spent on the read before without an
            # await that yielded) sends nothing; cancel scopes act only at an await.
            if anyio.current_time() < deadline:
                # The session awaits the answer of a rebuild on the wire even if this task is
                # cancelled, and ``mark`` runs as soon as it is known, so that a cancelled bulk
                # run knows exactly which rebuilds the service accepted (or may have).
                accepted = await submit_rebuild(
                    ops or self._ops,
                    server_id,
                    request,
                    before=before,
                    settle=self._settings.reconcile_settle,
                    on_submitted=mark,
                )
                if on_accepted is not None:
                    await on_accepted(accepted)
        if accepted is None:
            if mark.maybe_submitted:
                raise RebuildOutcomeUnknown(
                    f"cannot tell whether server {server_id} is being rebuilt: the timeout of "
                    f"{timeout:g}s passed while reconciling an unclear answer; it was not sent "
                    "again",
                    server=before,
                    evidence=("the deadline passed during reconciliation",),
                )
            raise RebuildTimeout(
                f"server {server_id} was not rebuilt: the timeout of {timeout:g}s passed "
                "before the rebuild was sent (nothing was sent)",
                server=before,
            )
        tracker = self._track(server_id, request, before, accepted)
        if on_event is not None and accepted.server is not None:
            on_event(
                RebuildEvent(
                    server_id=server_id,
                    phase="submitted",
                    status=accepted.server.status,
                    task_state=accepted.server.task_state,
                    updated=accepted.server.updated,
                )
            )
        # The wait has what is left of the call's timeout; its error names the one given.
        left = max(0.0, deadline - anyio.current_time())
        wait = self._wait(tracker, left, on_event, stated_timeout=timeout)
        # The wait keeps what it needs: this frame, alive while it waits, holds no older
        # tracker or 202 body (a fleet holds one such frame per server in flight).
        del tracker, accepted, before
        try:
            return await wait
        except ClientClosed:
            raise ClientClosed(
                f"server {server_id}: its rebuild was accepted, but the client was closed before "
                "the wait proved it finished (wait_for_rebuild on an open client can still "
                "prove it)"
            ) from None

    # -- fleets --

    async def rebuild_many(
        self,
        servers: Iterable[str | tuple[str, RebuildRequest]],
        request: RebuildRequest | None = None,
        *,
        concurrency: int = 50,
        timeout: float | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_event: EventCallback | None = None,
        report: BulkReport | None = None,
        before: Mapping[str, Server] | None = None,
        policy: RolloutPolicy | None = None,
        journal: str | os.PathLike[str] | None = None,
    ) -> list[RebuildOutcome]:
        """Rebuild many servers and wait for each; one RebuildOutcome per server, in order.

        ``servers`` are ids (rebuilt with ``request``) or ``(id, RebuildRequest)`` pairs;
        ``on_outcome(outcome)`` is called as each server finishes, ``on_event(event)`` for
        each change of state the waits see. At most ``concurrency`` rebuilds are in flight;
        ``timeout`` bounds each server's whole rebuild (its request and wait). One server's
        failure never stops the others, unless ``policy`` (a RolloutPolicy) says so: it paces
        the run, gates it on a canary, health checks and checkpoints, stops it on a failure
        budget and can roll it back. ``report`` (a BulkReport) is filled as the run goes, so
        that after a cancellation it says which rebuilds were submitted. ``before`` holds
        servers as the caller read them just before the run: each one's wait starts from that
        state instead of a read of its own (as a listing's states, for the first 30 seconds of
        the run).

        ``journal`` (a file path) makes the run durable: every intent, acceptance and outcome
        is written there first, and a rollout's policy and decisions with them; calling again
        with the same journal (and the same policy), or :meth:`resume`, continues the run after
        a crash or a Ctrl-C without rebuilding any server twice.
        """
        limit = self._checked_run_arguments(
            timeout, concurrency, policy, on_outcome=on_outcome, on_event=on_event, report=report
        )
        targets = normalize_targets(servers, request)
        report = report if report is not None else BulkReport()
        known = _checked_befores(before)
        if journal is not None:
            return await self._rebuild_many_journaled(
                targets,
                journal_at(journal),
                name=os.fspath(journal),
                concurrency=concurrency,
                timeout=timeout,
                limit=limit,
                on_outcome=on_outcome,
                on_event=on_event,
                report=report,
                known=known,
                policy=policy,
            )

        # Bound here rather than wrapped in a coroutine: a fleet holds one per server in flight.
        run_one = functools.partial(self._rebuild_and_wait, timeout=limit, on_event=on_event)

        # The run's span covers the listing of the fleet before it (run_bulk's is this one).
        with _telemetry.fleet(report):
            befores, listed_at = await self._read_fleet(
                [sid for sid, _ in targets if sid not in known]
            )
            befores.update(known)
            # Each server's read is dropped once its rebuild is sent (``read_before`` pops it):
            # no other reference to them stays alive for the whole run.
            del known
            return await run_bulk(
                targets,
                run_one,
                concurrency=concurrency,
                report=report,
                on_outcome=on_outcome,
                policy=policy,
                read_before=self._before_reader(befores, listed_at, limit),
            )

    def _before_reader(
        self, befores: dict[str, Server], listed_at: float, limit: float
    ) -> Callable[[str], Awaitable[Server]]:
        """Each server's state before its rebuild: from the fleet's listing while it is fresh,
        else its own read."""

        async def read_before(server_id: str) -> Server:
            before = befores.pop(server_id, None)
            if before is None or anyio.current_time() - listed_at > _FLEET_STATE_FRESH:
                # Listed long before this server's turn (a rollout may reach it hours later):
                # the server may have changed since. Its own read is the evidence close to
                # the request, and it is part of the server's rebuild, inside its timeout.
                with anyio.move_on_after(limit) as scope:
                    before = await self.get_server(server_id)
                if scope.cancelled_caught or before is None:
                    raise RebuildTimeout(
                        f"server {server_id} was not rebuilt: the timeout of {limit:g}s passed "
                        "while it was read, before the rebuild was sent (nothing was sent)",
                        server=None,
                    )
            return before

        return read_before

    async def plan_rollout(
        self,
        servers: Iterable[str | tuple[str, RebuildRequest]],
        request: RebuildRequest | None = None,
        *,
        policy: RolloutPolicy | None = None,
        concurrency: int = 50,
    ) -> RolloutPlan:
        """What :meth:`rebuild_many` with this policy would do, without sending any rebuild:
        the servers skipped as already matching, the canary, the waves the pacing allows, and
        the request each server gets. Every request is checked as a rebuild would check it;
        servers are read only for ``skip_matching``."""
        check_run_options(concurrency, policy)
        targets = normalize_targets(servers, request)
        for server_id, _ in targets:
            check_server_id(server_id)
        policy = policy or RolloutPolicy()
        befores: dict[str, Server] = {}
        if policy.skip_matching:
            befores, _ = await self._read_fleet([server_id for server_id, _ in targets])

        async def read_state(server_id: str) -> Server | None:
            before = befores.get(server_id)
            if before is None:
                try:
                    before = await self.get_server(server_id)
                except NotFound:
                    return None  # the run would report it not found
            return before

        return await plan_bulk(
            targets,
            policy,
            check_request=self._compute.checked_version,
            read_state=read_state,
            concurrency=concurrency,
        )

    async def find_servers(
        self,
        name: str | None = None,
        *,
        exact_name: str | None = None,
        image: str | None = None,
        status: str | ServerStatus | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
    ) -> list[Server]:
        """The servers matching every condition given: ``name`` a regular expression searched
        in the name (as Nova's filter is), ``exact_name`` the whole name (names need not be
        unique: none, one or several), ``image`` an image id, ``status`` (``ACTIVE``...),
        ``metadata`` items that must all be set, ``tags`` that must all be present (2.26+).
        The service filters what it can; every server listed is checked again here."""
        wanted = make_filter(name=name, image=image, status=status, metadata=metadata, tags=tags)
        if exact_name is not None:
            if not isinstance(exact_name, str) or not exact_name:
                raise InvalidRequest("a server name is a non-empty string", field="name")
            return [s for s in await self._compute.servers_named(exact_name) if wanted(s)]
        version = await self._compute.read_version()
        if wanted.tags and (version is None or version < TAGS_VERSION):
            raise MicroversionError(
                f"servers show their tags from microversion {TAGS_VERSION} on; "
                f"this endpoint serves {version or '2.1'}",
                field="tags",
                required=str(TAGS_VERSION),
            )
        found: list[Server] = []
        async for page, _ in self._compute.server_pages(wanted.params(version)):
            found.extend(server for server in page.servers if wanted(server))
        return found

    async def _rebuild_many_journaled(
        self,
        targets: list[tuple[str, RebuildRequest | None]],
        store: JournalStore,
        *,
        name: str,
        concurrency: int,
        timeout: float | None,
        limit: float,
        on_outcome: OutcomeCallback | None,
        on_event: EventCallback | None,
        report: BulkReport,
        known: Mapping[str, Server],
        policy: RolloutPolicy | None,
        continue_stopped: bool = False,
    ) -> list[RebuildOutcome]:
        durable = await open_durable(
            store,
            targets,
            name=os.path.basename(name),
            endpoint=await self._session.compute_url(),
            concurrency=concurrency,
            timeout=timeout,
            policy=policy,
            continue_stopped=continue_stopped,
        )
        try:
            fresh = durable.not_started([server_id for server_id, _ in targets])
            befores, listed_at = await self._read_fleet([s for s in fresh if s not in known])
            befores.update(known)
            del known  # as in rebuild_many: read_before drops each one once it is used
            ops = durable.operations(
                self._ops, self._compute.post_rebuild_answer, self._compute.service_now
            )

            async def rebuild(
                server_id: str,
                one: RebuildRequest,
                before: Server,
                mark: Callable[[bool], None],
                ops: Operations,
                on_accepted: Callable[[Accepted], Awaitable[None]],
            ) -> Server:
                return await self._rebuild_and_wait(
                    server_id,
                    one,
                    before,
                    mark,
                    timeout=limit,
                    on_event=on_event,
                    ops=ops,
                    on_accepted=on_accepted,
                )

            async def wait(
                server_id: str, one: RebuildRequest, before: Server | None, accepted: Accepted
            ) -> Server:
                tracker = self._track(server_id, one, before, accepted)
                return await self._wait(tracker, limit, on_event)

            def run_in_phase(rollback: bool) -> Callable[..., Awaitable[Server]]:
                async def run_one(
                    server_id: str, one: RebuildRequest, before: Server | None, mark: Any
                ) -> Server:
                    return await durable.run_one(
                        server_id,
                        one,
                        mark,
                        before=before,
                        read=self.get_server,
                        rebuild=rebuild,
                        wait=wait,
                        ops=ops,
                        settle=self._settings.reconcile_settle,
                        rollback=rollback,
                    )

                return run_one

            outcomes: list[RebuildOutcome] = []
            async with anyio.create_task_group() as group:

                async def guard() -> None:
                    await durable.keep_alive()
                    # Another process took the run over: this one stops at once.
                    group.cancel_scope.cancel()

                group.start_soon(guard)
                outcomes = await run_bulk(
                    targets,
                    run_in_phase(False),
                    concurrency=concurrency,
                    report=report,
                    on_outcome=on_outcome,
                    policy=policy,
                    read_before=self._before_reader(befores, listed_at, limit),
                    roll_back_one=run_in_phase(True),
                    journal=durable,
                    continue_stopped=continue_stopped,
                )
                group.cancel_scope.cancel()
        finally:
            await durable.close()
        if durable.lost is not None:
            raise durable.lost
        return outcomes

    async def resume(
        self,
        journal: str | os.PathLike[str],
        *,
        policy: RolloutPolicy | None = None,
        continue_stopped: bool = False,
        admin_pass: str | Unset = UNSET,
        user_data: str | bytes | Unset | None = UNSET,
        concurrency: int | None = None,
        timeout: float | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_event: EventCallback | None = None,
        report: BulkReport | None = None,
    ) -> list[RebuildOutcome]:
        """Continue the run a journal records, as :meth:`rebuild_many` with that journal would.

        The servers and requests come from the journal. A request sent with ``adminPass`` or
        ``user_data`` is not stored with them: give them again (they must be the same). A
        rollout goes on under the policy it began with: ``policy=None`` takes it from the
        journal, which cannot store code, so a policy with a ``health_check`` or an
        ``on_checkpoint`` must be given again (another policy raises ``JournalMismatch``).

        A rollout that stopped (a failed canary, its failure budget, a checkpoint's no) stays
        stopped: its outcomes are reported from the journal, nothing is sent, and the servers
        the stop left unstarted stay ``skipped`` with the stop's reason. ``continue_stopped``
        starts them: the rollout goes on where it stopped, with the budget it had used (its
        failures still count, so after a stop on the budget the next failure stops it again).
        It cannot be used with a policy that rolls back.
        """
        if not isinstance(continue_stopped, bool):
            raise InvalidRequest("continue_stopped must be True or False", field="continue_stopped")
        targets, run = journaled_run(journal, admin_pass=admin_pass, user_data=user_data)
        if policy is None:
            policy = recorded_policy(run, os.path.basename(os.fspath(journal)))
        concurrency = run.concurrency if concurrency is None else concurrency
        timeout = run.timeout if timeout is None else timeout
        limit = self._checked_run_arguments(
            timeout, concurrency, policy, on_outcome=on_outcome, on_event=on_event, report=report
        )
        if continue_stopped and policy is not None and policy.rollback:
            raise InvalidRequest(
                "continue_stopped cannot go on with a rollout that rolls back when it stops "
                "(its stop rebuilt back what it had rebuilt)",
                field="continue_stopped",
            )
        return await self._rebuild_many_journaled(
            normalize_targets(targets, None),
            journal_at(journal),
            name=os.fspath(journal),
            concurrency=concurrency,
            timeout=timeout,
            limit=limit,
            on_outcome=on_outcome,
            on_event=on_event,
            report=report if report is not None else BulkReport(),
            known={},
            policy=policy,
            continue_stopped=continue_stopped,
        )

    async def _read_fleet(self, server_ids: list[str]) -> tuple[dict[str, Server], float]:
        """The servers' states before a bulk run, by listing rather than one GET each, and
        when (the local clock) the listing began.

        Servers the listing does not show are read one by one later (and may be not found).
        """
        listed_at = anyio.current_time()
        wanted = {server_id for server_id in server_ids if isinstance(server_id, str)}
        if len(wanted) < self._settings.fleet_threshold:
            return {}, listed_at
        found: dict[str, Server] = {}
        # A project may hold far more servers than the run names: read a few pages more than
        # the run needs, and let per-server reads find the rest.
        pages_left = 2 + len(wanted) // self._settings.list_page_size
        pages = self._compute.server_pages({})
        try:
            async for page, _ in pages:
                found.update((s.id, s) for s in page.servers if s.id in wanted)
                pages_left -= 1
                if pages_left <= 0 or wanted <= found.keys():
                    break
        except EcsError:
            pass  # per-server reads take over
        finally:
            await pages.aclose()
        return found, listed_at

    @asynccontextmanager
    async def rebuild_stream(
        self,
        servers: Iterable[str | tuple[str, RebuildRequest]],
        request: RebuildRequest | None = None,
        *,
        concurrency: int = 50,
        timeout: float | None = None,
        on_event: EventCallback | None = None,
        report: BulkReport | None = None,
        policy: RolloutPolicy | None = None,
    ) -> AsyncIterator[MemoryObjectReceiveStream[RebuildOutcome]]:
        """Run :meth:`rebuild_many` and receive outcomes as they complete::

            async with ecs.rebuild_stream(ids, request) as outcomes:
                async for outcome in outcomes:
                    ...

        Leaving the block early cancels the rest of the run (and ``report`` says what was sent).
        With a ``policy`` that rolls back, a server rolled back is received again, with the
        kind ``rolled_back`` (or ``rollback_failed``).
        """
        # Checked here, before the run's task starts: an error inside it would come out of
        # the task group wrapped in an exception group.
        self._checked_run_arguments(timeout, concurrency, policy, on_event=on_event, report=report)
        send, receive = anyio.create_memory_object_stream[RebuildOutcome](
            max_buffer_size=float("inf")
        )

        async def produce() -> None:
            async with send:
                await self.rebuild_many(
                    servers,
                    request,
                    concurrency=concurrency,
                    timeout=timeout,
                    on_outcome=send.send_nowait,
                    on_event=on_event,
                    report=report,
                    policy=policy,
                )

        async with receive, anyio.create_task_group() as group:
            group.start_soon(produce)
            try:
                yield receive
            finally:
                group.cancel_scope.cancel()
