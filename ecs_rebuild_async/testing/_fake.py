"""``FakeCompute``: the public face of the fake ECS / Nova compute service."""

from __future__ import annotations

import enum
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import unquote

import attrs

from ._app import dispatch
from ._clock import FakeClock
from ._faults import FaultPlan
from ._identity import Identity
from ._quirks import DATE_HEADERS, DEFAULT_CORRUPTION, PAGING, Corruption, DateHeader, Paging
from ._replies import RecordedRequest, Reply, Request
from ._service import (
    DEFAULT_IMAGES,
    FAILING_IMAGE,
    SLOW_IMAGE,
    Service,
    Settings,
    healthy,
    most_at_once,
)
from ._state import ServerTruth, truth_of
from ._stats import Stats
from ._tcp import ConnectionCount, serve
from ._transport import FakeTransport
from ._versioning import Version, parse_version_text

__all__ = ["IN_PROCESS_BASE", "FakeCompute"]

IN_PROCESS_BASE = "http://fake-compute.test"
_PROJECT_ID = "6f70656e737461636b20342065766572"
_USER_ID = "a7c2a1e6b0d54c0f9d5c4f6e2b1a0d9c"

Headers = Mapping[str, str] | Sequence[tuple[str, str]]


def _version(text: str) -> Version:
    parsed = parse_version_text(text)
    if parsed is None:
        raise ValueError(f"not a microversion: {text!r}")
    return parsed


def _dialect(value: object) -> Literal["ecs", "nova"]:
    """A dialect as AsyncEcsClient takes it: its name in any case, or the library's ECS / NOVA
    (an enum whose value is the name)."""
    named = getattr(value, "value", value)
    key = named.strip().lower() if isinstance(named, str) else None
    if key == "ecs":
        return "ecs"
    if key == "nova":
        return "nova"
    raise ValueError(f"dialect must be 'ecs' or 'nova' (or ECS or NOVA), got {value!r:.40}")


class FakeCompute:
    """A stateful fake of the ECS / Nova compute API (rebuild, GET, lists, Keystone, AK/SK).

    State moves lazily with the fake clock: ``time_scale=0`` freezes it so that tests step
    it with ``advance()``; ``time_scale=50`` makes a 2 s rebuild take 40 ms of real time.

    Two default images change how a rebuild goes: ``fails-to-spawn`` (``failing_image``)
    ends it in ERROR with the fault ``RuntimeError``, and ``slow-to-spawn`` (``slow_image``)
    keeps it in ``rebuild_spawning`` for ``slow_spawn_seconds`` fake seconds.
    """

    def __init__(
        self,
        *,
        dialect: str | enum.Enum = "ecs",
        min_version: str = "2.1",
        max_version: str = "2.60",
        time_scale: float = 1.0,
        rebuild_seconds: float = 2.0,
        jitter: float = 0.0,
        fail_rate: float = 0.0,
        read_lag: float = 0.0,
        accepted_body: Literal["rebuild", "stale"] = "rebuild",
        token_lifetime: float = 3600.0,
        retry_after: str = "1",
        lost_error: Literal["timeout", "disconnect"] = "timeout",
        deleted_retention: float = 3600.0,
        max_limit: int = 1000,
        region: str = "RegionOne",
        project_id: str = _PROJECT_ID,
        ak: str | None = None,
        sk: str | None = None,
        seed: int | None = 0,
        slow_spawn_seconds: float = 600.0,
        date_header: DateHeader = "service",
        date_skew: float = 0.0,
        paging: Paging = "nova",
    ) -> None:
        chosen = _dialect(dialect)
        if accepted_body not in ("rebuild", "stale"):
            raise ValueError("accepted_body must be 'rebuild' or 'stale'")
        self._settings = Settings(
            dialect=chosen,
            min_version=_version(min_version),
            max_version=_version(max_version),
            rebuild_seconds=rebuild_seconds,
            jitter=jitter,
            fail_rate=fail_rate,
            read_lag=read_lag,
            accepted_body=accepted_body,
            token_lifetime=token_lifetime,
            deleted_retention=deleted_retention,
            max_limit=max_limit,
            max_body=114688,
            metadata_items=128,
            lost_error=lost_error,
            slow_spawn_seconds=slow_spawn_seconds,
        )
        identity = Identity(
            user_id=_USER_ID,
            username="demo",
            password=secrets.token_urlsafe(12),
            user_domain_id="default",
            user_domain_name="Default",
            project_id=project_id,
            project_name="demo",
            app_cred_id=secrets.token_hex(16),
            app_cred_secret=secrets.token_urlsafe(24),
            access_key=ak or "FAKEAK" + secrets.token_hex(7).upper(),
            secret_key=sk or secrets.token_urlsafe(30),
            region=region,
        )
        self._service = Service(self._settings, identity, FakeClock(time_scale), seed)
        self._service.faults.retry_after = retry_after
        self.date_header = date_header
        self.date_skew = date_skew
        self.paging = paging
        # The pre-issued token never expires on its own; expire_tokens() ends it too.
        self._token = self._service.tokens.issue(None)
        self._connections = ConnectionCount()
        self._base = IN_PROCESS_BASE

    def __repr__(self) -> str:
        return f"<FakeCompute {self._settings.dialect} servers={len(self._service.servers)}>"

    # -- endpoints and credentials -------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The in-process URL, or the TCP URL while ``serve_tcp`` runs."""
        return self._base

    @property
    def compute_url(self) -> str:
        return f"{self._base}/v2.1/{self.project_id}"

    @property
    def identity_url(self) -> str:
        return f"{self._base}/identity/v3"

    @property
    def token(self) -> str:
        return self._token

    @property
    def project_id(self) -> str:
        return self._service.identity.project_id

    @property
    def user_id(self) -> str:
        return self._service.identity.user_id

    @property
    def username(self) -> str:
        return self._service.identity.username

    @property
    def password(self) -> str:
        return self._service.identity.password

    @property
    def user_domain_name(self) -> str:
        return self._service.identity.user_domain_name

    @property
    def project_name(self) -> str:
        return self._service.identity.project_name

    @property
    def app_cred_id(self) -> str:
        return self._service.identity.app_cred_id

    @property
    def app_cred_secret(self) -> str:
        return self._service.identity.app_cred_secret

    @property
    def ak(self) -> str:
        return self._service.identity.access_key

    @property
    def sk(self) -> str:
        return self._service.identity.secret_key

    @property
    def region(self) -> str:
        return self._service.identity.region

    # -- world ---------------------------------------------------------------------------

    @property
    def images(self) -> dict[str, str]:
        """Image name -> id (the defaults have fixed ids)."""
        return {name: image_id for image_id, name in self._service.images.items()}

    @property
    def default_image(self) -> str:
        return DEFAULT_IMAGES["ubuntu-22.04"]

    @property
    def failing_image(self) -> str:
        """The image whose spawn fails: a rebuild to it ends in ERROR."""
        return DEFAULT_IMAGES[FAILING_IMAGE]

    @property
    def slow_image(self) -> str:
        """The image whose spawn takes ``slow_spawn_seconds``."""
        return DEFAULT_IMAGES[SLOW_IMAGE]

    @property
    def slow_spawn_seconds(self) -> float:
        return self._settings.slow_spawn_seconds

    def add_image(self, name: str, image_id: str | None = None) -> str:
        image_id = image_id or self._service.new_uuid()
        self._service.images[image_id] = name
        return image_id

    def add_keypair(self, name: str) -> None:
        self._service.keypairs.add(name)

    def add_server(
        self,
        *,
        name: str = "server",
        status: str = "ACTIVE",
        image_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        key_name: str | None = None,
        locked: bool = False,
        server_id: str | None = None,
        fail: bool = False,
        rebuild_seconds: float | None = None,
        fail_image: str | None = None,
        health: bool | float = True,
        tags: Sequence[str] = (),
    ) -> str:
        """Add a server; ``fail=True`` sends its rebuilds to ERROR, ``fail_image`` only its
        rebuilds to that image; ``health`` is what its health probe answers (see
        :meth:`set_health`). Returns its id."""
        server_id = self._service.add_server(
            name=name,
            status=status,
            image_id=image_id or self.default_image,
            metadata=dict(metadata or {}),
            key_name=key_name,
            locked=locked,
            server_id=server_id,
            fail=fail,
            rebuild_seconds=rebuild_seconds,
            fail_image=fail_image,
            tags=list(tags),
        )
        self.set_health(server_id, health)
        return server_id

    def add_servers(
        self,
        count: int,
        *,
        prefix: str = "server",
        status: str = "ACTIVE",
        image_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        key_name: str | None = None,
        locked: bool = False,
        fail: bool = False,
        rebuild_seconds: float | None = None,
        fail_image: str | None = None,
        health: bool | float = True,
        tags: Sequence[str] = (),
    ) -> list[str]:
        """Add ``count`` servers named ``{prefix}-0``, ``{prefix}-1``...; returns their ids."""
        return [
            self.add_server(
                name=f"{prefix}-{index}",
                status=status,
                image_id=image_id,
                metadata=metadata,
                key_name=key_name,
                locked=locked,
                fail=fail,
                rebuild_seconds=rebuild_seconds,
                fail_image=fail_image,
                health=health,
                tags=tags,
            )
            for index in range(count)
        ]

    def delete_server(self, server_id: str) -> None:
        """Delete: 404 on GET, ``DELETED`` in changes-since lists for ``deleted_retention``."""
        self._service.delete_server(server_id)

    def set_locked(self, server_id: str, locked: bool = True) -> None:
        self._service.servers[server_id].locked = locked

    def set_health(self, server_id: str, health: bool | float) -> None:
        """What the server's health probe answers once it is ACTIVE with no task: True
        (healthy), False (never healthy), or a number: healthy that many fake seconds after
        its last rebuild spawned the guest. While rebuilding, or not ACTIVE, it is unhealthy."""
        if not isinstance(health, (bool, int, float)) or (
            not isinstance(health, bool) and health < 0
        ):
            raise ValueError("health is True, False or a number of seconds (0 or more)")
        self._service.servers[server_id].health = (
            health if isinstance(health, bool) else float(health)
        )

    def health(self, server_id: str) -> bool:
        """The server's health probe now (also served as ``GET {base_url}/health/{id}``)."""
        record = self._service.visible(server_id, self.now())
        return record is not None and healthy(record, self.now())

    @property
    def max_rebuilding(self) -> int:
        """The most servers ever rebuilding at once (from acceptance to the end of the task)."""
        return most_at_once(self._service.rebuild_spans)

    def rebuild_images(self, server_id: str) -> list[str]:
        """The image of each rebuild the server accepted, in order."""
        return list(self._service.servers[server_id].rebuilt_images)

    def server_ids(self) -> list[str]:
        return [r.id for r in self._service.order if r.deleted_at is None]

    # -- standing quirks of the service ---------------------------------------------------

    @property
    def date_header(self) -> DateHeader:
        """``"service"`` (the fake's clock plus ``date_skew``), ``"missing"`` (no ``Date``
        header on any answer, as behind a gateway that strips it) or ``"garbage"`` (a ``Date``
        that is not an HTTP date)."""
        return self._service.quirks.date_header

    @date_header.setter
    def date_header(self, value: DateHeader) -> None:
        if value not in DATE_HEADERS:
            raise ValueError(f"date_header must be one of {sorted(DATE_HEADERS)}")
        self._service.quirks.date_header = value

    @property
    def date_skew(self) -> float:
        """Seconds the ``Date`` header runs ahead of the clock that writes the servers' times
        (``updated`` and the changes-since filter); negative runs behind."""
        return self._service.quirks.date_skew

    @date_skew.setter
    def date_skew(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ValueError("date_skew must be a number of seconds")
        self._service.quirks.date_skew = float(value)

    @property
    def max_limit(self) -> int:
        """The most servers one listing page holds (Nova's ``[api]max_limit``): a larger
        ``limit`` is cut to it, and a full page carries a ``next`` link."""
        return self._settings.max_limit

    @max_limit.setter
    def max_limit(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("max_limit must be an integer of at least 1")
        self._settings = attrs.evolve(self._settings, max_limit=value)
        self._service.settings = self._settings

    @property
    def paging(self) -> Paging:
        """``"nova"``; ``"ignore_marker"`` (every page is the first, with a ``next`` link);
        ``"next_to_self"`` (a full page's ``next`` link is the request that produced it)."""
        return self._service.quirks.paging

    @paging.setter
    def paging(self, value: Paging) -> None:
        if value not in PAGING:
            raise ValueError(f"paging must be one of {sorted(PAGING)}")
        self._service.quirks.paging = value

    def corrupt_record(
        self,
        server_id: str,
        fields: Mapping[str, Any] | None = None,
        *,
        listings_only: bool = False,
    ) -> None:
        """From now on the server is shown with ``fields`` merged in (by default
        ``{"metadata": {"count": 3}}``, which no client can read as a server): in every
        ``/servers/detail`` listing, and in its own GET unless ``listings_only``."""
        if server_id not in self._service.servers:
            raise KeyError(server_id)
        chosen = dict(DEFAULT_CORRUPTION if fields is None else fields)
        self._service.quirks.corrupted[server_id] = Corruption(chosen, not listings_only)

    def repair_record(self, server_id: str) -> None:
        """Undo :meth:`corrupt_record`."""
        self._service.quirks.corrupted.pop(server_id, None)

    # -- clock, tokens, faults, counters -------------------------------------------------

    def now(self) -> float:
        """The fake clock, in epoch seconds."""
        return self._service.clock.now()

    def advance(self, seconds: float) -> None:
        self._service.clock.advance(seconds)

    def issue_token(self, lifetime: float | None = None) -> str:
        """A new valid token (``lifetime`` fake seconds; None never expires)."""
        expires = None if lifetime is None else self.now() + lifetime
        return self._service.tokens.issue(expires)

    @property
    def issued_tokens(self) -> list[str]:
        """Every token the fake has issued (the pre-issued one and Keystone's), in order."""
        return self._service.tokens.issued()

    @property
    def open_connections(self) -> int:
        """Client connections open to the fake's TCP server right now (0 when not serving)."""
        return self._connections.open

    def expire_tokens(self) -> None:
        """Every token issued so far, the pre-issued one included, is now expired."""
        self._service.tokens.expire_all(self.now())

    @property
    def faults(self) -> FaultPlan:
        return self._service.faults

    @property
    def stats(self) -> Stats:
        return self._service.stats

    @property
    def requests(self) -> list[RecordedRequest]:
        """The latest requests received (up to 10,000), oldest first."""
        return [RecordedRequest.of(request) for request in self._service.log]

    def rebuilds_accepted(self, server_id: str) -> int:
        return self._service.servers[server_id].rebuilds

    def record(self) -> dict[str, Any]:
        """What the fake has done, as JSON-ready data: for each server its true status, image,
        how many rebuilds it accepted and their request ids; and the requests by route.
        Served at ``GET /_fake/record`` too, for a test whose client runs in another process."""
        now = self.now()
        servers = {}
        for server_id, record in self._service.servers.items():
            truth = truth_of(record, now)
            servers[server_id] = {
                "name": truth.name,
                "status": truth.status,
                "task_state": truth.task_state,
                "image_id": truth.image_id,
                "rebuilds": truth.rebuilds,
                "rebuild_request_ids": [
                    a.request_id for a in record.actions if a.name == "rebuild"
                ],
            }
        requests = {f"{m} {r}": n for (m, r), n in sorted(self.stats.requests.items())}
        return {"servers": servers, "requests": requests, "faults": dict(self.stats.faults)}

    def truth(self, server_id: str) -> ServerTruth:
        """The server's true state now (read lag ignored)."""
        return truth_of(self._service.servers[server_id], self.now())

    # -- serving -------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str = "", headers: Headers = (), body: bytes = b""
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer one request synchronously. ``path`` is the raw (percent-encoded) path."""
        reply = self.dispatch(method, path, query, headers, body)
        return reply.status, reply.headers, reply.body

    def dispatch(
        self, method: str, path: str, query: str = "", headers: Headers = (), body: bytes = b""
    ) -> Reply:
        """Like ``handle`` but returns the Reply, with the injected ``delay``/``lost``."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        host = next((v for k, v in pairs if k.lower() == "host"), None)
        base = f"http://{host}" if host else self._base
        request = Request(method.upper(), unquote(path), path, query, pairs, body, base)
        return self._dispatch(request)

    def _dispatch(self, request: Request) -> Reply:
        return dispatch(self._service, request, self.record)

    def transport(self) -> FakeTransport:
        """An in-process ``httpx.AsyncBaseTransport``; use with base URL ``base_url``."""
        return FakeTransport(self._dispatch, lost_error=self._settings.lost_error)

    @asynccontextmanager
    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve over loopback TCP; yields the base URL. Stops when the block exits."""
        async with serve(self._dispatch, host, port, self._connections) as base:
            previous, self._base = self._base, base
            try:
                yield base
            finally:
                self._base = previous
