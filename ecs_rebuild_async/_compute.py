"""The compute API's wire calls: read a server, list server pages, post a rebuild, read
instance actions, and the microversion each request is sent with.

This sits between the session (HTTP, auth, retries, pacing) and the flows of layer 3 (the
rebuild, the poller, bulk runs), which take these calls as callables. It remembers the
service's clock, taken from the ``Date`` of its answers, so that a wait can compare the
service's own times with each other and never with the local clock.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import AsyncGenerator, Collection, Container, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import anyio

from ._coverage import Listing
from ._errors import InvalidRequest, NotFound, ResponseError
from ._lifecycle import ActionFinding, judge_actions
from ._microversion import LIBRARY_MAX, APIVersion, VersionRange, negotiate
from ._models import Dialect, RebuildRequest, Server
from ._serde import (
    ServerPage,
    parse_timestamp,
    request_to_wire,
    server_from_wire,
    server_page_from_wire,
)
from ._session import Session
from ._settings import ClientSettings

__all__ = ["ComputeApi", "check_server_id"]

_REGEX_SPECIAL = re.compile(r"[.^$*+?{}\[\]\\|()]")

# How many checked requests are remembered (a fleet usually shares one).
_CHECKED_KEPT = 1024
# Request ids of accepted rebuilds kept per client (one per server, the oldest forgotten first).
_REQUEST_IDS_KEPT = 16384
# A read answered with another server's body is asked again this many times.
_MIXED_UP_RETRIES = 2


def check_server_id(server_id: object) -> str:
    """The id, if it can be put into a URL path as one segment; else InvalidRequest."""
    if not isinstance(server_id, str) or not server_id.strip() or "/" in server_id:
        raise InvalidRequest(
            f"a server id is a non-empty string without '/', got {server_id!r:.60}"
        )
    return server_id


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _server_path(server_id: str) -> str:
    return f"servers/{quote(server_id, safe='')}"


class ComputeApi:
    """The compute calls of one client, over its session."""

    def __init__(
        self,
        session: Session,
        settings: ClientSettings,
        *,
        pinned: APIVersion | None,
        dialect: Dialect,
    ) -> None:
        self.session = session
        self.settings = settings
        self.pinned = pinned
        self.dialect = dialect
        self._checked: dict[int, tuple[weakref.ref[RebuildRequest], APIVersion | None]] = {}
        self._read_version: tuple[VersionRange | None, APIVersion | None] | None = None
        self._clock: tuple[datetime, float] | None = None
        # The request id of the last rebuild accepted for each server: Nova records it on the
        # rebuild's instance action, which it names exactly (see rebuild_finished).
        self._rebuild_request_ids: dict[str, str] = {}

    # -- versions --

    async def versions(self) -> VersionRange | None:
        """The microversions the service offers (None for a ``/v2`` endpoint)."""
        return await self.session.service_versions()

    async def negotiate(self, request: RebuildRequest | None = None) -> APIVersion | None:
        """The microversion a request would be sent with (None: no microversion header)."""
        fields = request.version_needs() if request is not None else frozenset()
        return negotiate(
            fields,
            await self.session.service_versions(),
            pinned=self.pinned,
            library_max=LIBRARY_MAX,
        )

    async def checked_version(self, request: RebuildRequest) -> APIVersion | None:
        """The request's microversion, once its checks passed; remembered per request object,
        so that a fleet sharing one request checks it (and warns about it) once."""
        if not isinstance(request, RebuildRequest):
            raise InvalidRequest("request must be a RebuildRequest", field="request")
        remembered = self._checked.get(id(request))
        if remembered is not None and remembered[0]() is request:
            return remembered[1]
        version = await self.negotiate(request)
        request.check(dialect=self.dialect, microversion=version)
        if len(self._checked) >= _CHECKED_KEPT:
            self._checked.clear()
        self._checked[id(request)] = (weakref.ref(request), version)
        return version

    async def read_version(self) -> APIVersion | None:
        """The microversion of a read: worked out again only when the service's versions (or
        their discovery) change, since every read of every wait asks for it."""
        service = await self.session.service_versions()
        known = self._read_version
        if known is not None and known[0] is service:
            return known[1]
        version = negotiate((), service, pinned=self.pinned, library_max=LIBRARY_MAX)
        self._read_version = (service, version)
        return version

    async def rebuild_url(self, server_id: str) -> str:
        base = await self.session.compute_url()
        return f"{base}/{_server_path(server_id)}/action"

    # -- the service's clock --

    def remember_clock(self, date: datetime | None) -> None:
        if date is not None:
            self._clock = (date, anyio.current_time())

    def service_now(self) -> datetime | None:
        """The service's time now, from its last ``Date`` and the time passed since."""
        if self._clock is None:
            return None
        date, at = self._clock
        return date + timedelta(seconds=anyio.current_time() - at)

    # -- reads --

    async def server_answer(self, server_id: str) -> tuple[Server, datetime | None]:
        """``GET /servers/{id}``: the server and the service's time. Raises NotFound.

        An answer that shows another server (a proxy or cache mixed answers up) is never taken
        for this one: the GET is asked again, and a ResponseError ends it when the mix-up
        persists."""
        retries = _MIXED_UP_RETRIES
        while True:
            answer = await self.session.request(
                "GET", _server_path(server_id), version=await self.read_version()
            )
            server = server_from_wire(
                answer.body, status=answer.status, request_id=answer.request_id
            )
            if server.id == server_id:
                # (A mixed-up answer's Date may be a cache's too: only this one is kept.)
                self.remember_clock(answer.date)
                return server, answer.date
            if retries == 0:
                raise ResponseError(
                    f"the answer for server {server_id} shows another server, {server.id!r:.80}",
                    status=answer.status,
                    request_id=answer.request_id,
                )
            retries -= 1

    async def read_server(self, server_id: str) -> tuple[Server | None, datetime | None]:
        """As :meth:`server_answer`, with None for a server that is gone."""
        try:
            return await self.server_answer(server_id)
        except NotFound:
            return None, None

    async def fetch_for_poller(self, server_id: str) -> Server | None:
        server, _ = await self.read_server(server_id)
        return server

    async def list_actions(self, server_id: str) -> Sequence[Mapping[str, Any]]:
        """``GET /servers/{id}/os-instance-actions``: the raw action records."""
        answer = await self.session.request(
            "GET",
            f"{_server_path(server_id)}/os-instance-actions",
            version=await self.read_version(),
        )
        actions = answer.body.get("instanceActions") if isinstance(answer.body, dict) else None
        if not isinstance(actions, list):
            raise ResponseError("the instance actions answer has no 'instanceActions' list")
        return actions

    async def rebuild_finished(self, server_id: str, before_updated: datetime | None) -> bool:
        """Whether the server's instance actions show this client's last rebuild of it
        finished: its ``compute_rebuild_instance`` event (shown to non-admins from 2.51) ended
        with Success.

        The action is the one recorded under the request id of the rebuild's 202 (Nova's own);
        where the service names it otherwise, the newest rebuild action, if it began after the
        whole second of the read before (``before_updated``). False whenever that cannot be
        read: this is a proof looked for, never a failure."""
        request_id = self._rebuild_request_ids.get(server_id)
        if request_id is not None:
            try:
                return await self._action_finished(server_id, request_id)
            except NotFound:
                pass  # the service's request ids are not its actions' (a gateway's)
        actions = await self.list_actions(server_id)
        for action in actions:  # newest first, as Nova lists them
            if not isinstance(action, Mapping) or action.get("action") != "rebuild":
                continue
            try:
                started: datetime | None = parse_timestamp(action.get("start_time"))
            except (TypeError, ValueError):
                started = None
            finding, _ = judge_actions([("rebuild", started)], before_updated)
            listed = action.get("request_id")
            if finding is ActionFinding.OURS and isinstance(listed, str) and listed:
                return await self._action_finished(server_id, listed)
            return False  # only the newest rebuild can be this one
        return False

    def _remember_rebuild(self, server_id: str, request_id: str | None) -> None:
        if request_id:
            self._rebuild_request_ids[server_id] = request_id
            while len(self._rebuild_request_ids) > _REQUEST_IDS_KEPT:
                self._rebuild_request_ids.pop(next(iter(self._rebuild_request_ids)))

    async def _action_finished(self, server_id: str, request_id: str) -> bool:
        answer = await self.session.request(
            "GET",
            f"{_server_path(server_id)}/os-instance-actions/{quote(request_id, safe='')}",
            version=await self.read_version(),
        )
        detail = answer.body.get("instanceAction") if isinstance(answer.body, dict) else None
        if not isinstance(detail, dict) or detail.get("action") != "rebuild":
            return False
        events = detail.get("events")
        if not isinstance(events, list):
            return False
        return any(
            isinstance(event, dict)
            and event.get("event") == "compute_rebuild_instance"
            and event.get("finish_time") not in (None, "")
            and event.get("result") == "Success"
            for event in events
        )

    async def server_pages(
        self, params: dict[str, str], *, wanted: Container[str] | None = None
    ) -> AsyncGenerator[tuple[ServerPage, datetime | None], None]:
        """``GET /servers/detail`` page by page, to the page without a ``next`` link: each page
        (with the servers of the ``wanted`` ids only, when given) and the service's time of its
        answer.

        A service may cap ``limit`` below ``list_page_size`` (Nova's ``[api]max_limit``), so a
        short page ends nothing: only the absence of a ``next`` link does. Paging that does not
        move (a marker seen before, a page with servers already listed) or that goes past
        ``list_max_pages`` raises ResponseError."""
        settings = self.settings
        params = {**params, "limit": str(settings.list_page_size)}
        version = await self.read_version()
        markers: set[str] = set()
        listed: set[str] = set()
        for _ in range(settings.list_max_pages):
            answer = await self.session.request(
                "GET", "servers/detail", params=params, version=version
            )
            self.remember_clock(answer.date)
            page = server_page_from_wire(
                answer.body, wanted=wanted, status=answer.status, request_id=answer.request_id
            )
            if not listed.isdisjoint(page.ids):
                raise ResponseError(
                    "the server list repeats servers of an earlier page (is 'marker' ignored?)",
                    status=answer.status,
                    request_id=answer.request_id,
                )
            listed.update(page.ids)
            yield page, answer.date
            if not page.has_next:
                return
            marker = page.marker
            if marker is None or marker in markers:
                raise ResponseError(
                    "the server list's next link does not move on"
                    + (f" from marker {marker!r:.80}" if marker else " (no marker)"),
                    status=answer.status,
                    request_id=answer.request_id,
                )
            markers.add(marker)
            params = {**params, "marker": marker}
        raise ResponseError(
            f"the server list did not end within {settings.list_max_pages} pages"
            " (ClientSettings.list_max_pages)"
        )

    async def list_changed(self, since: datetime | None, wanted: Collection[str]) -> Listing:
        """The ``wanted`` servers among those changed since ``since`` (service time; None:
        every server), every page read entry by entry. Raises ResponseError when the listing
        cannot be read whole."""
        params = {} if since is None else {"changes-since": _iso(since)}
        wanted = frozenset(wanted)  # the watches may change while the pages are read
        servers: dict[str, Server] = {}
        unreadable: set[str] = set()
        anonymous = 0
        answered_at: datetime | None = None
        newest: datetime | None = None
        first = True
        async for page, date in self.server_pages(params, wanted=wanted):
            if first:
                answered_at, first = date, False
            servers.update((server.id, server) for server in page.servers)
            unreadable.update(page.unreadable)
            anonymous += page.anonymous
            if page.newest is not None and (newest is None or page.newest > newest):
                newest = page.newest
        return Listing(
            servers,
            frozenset(unreadable),
            anonymous,
            since=since,
            answered_at=answered_at,
            newest=newest,
        )

    async def servers_named(self, name: str) -> list[Server]:
        """The servers whose name is exactly ``name``, through the listing's ``name`` filter
        (a regular expression to Nova: a name with its special characters lists every server,
        and the exact match is made here)."""
        params = {} if _REGEX_SPECIAL.search(name) else {"name": name}
        found: list[Server] = []
        async for page, _ in self.server_pages(params):
            # The server sought may be an entry that cannot be read: say so, rather than
            # answer that there is no such server.
            if page.unreadable:
                raise next(iter(page.unreadable.values()))
            if page.anonymous:
                raise ResponseError("the server list holds an entry without a readable id")
            found.extend(server for server in page.servers if server.name == name)
        return found

    async def image_ids_named(self, name: str) -> list[str]:
        """The ids of the images called ``name``, from the image service (Glance's
        ``GET /v2/images?name=``) that the service catalog lists."""
        base = await self.session.service_url("image")
        if base is None:
            raise InvalidRequest(
                f"cannot look up the image {name!r} by name: that needs the image service of a "
                "service catalog (Keystone credentials); give the image id instead",
                field="image_ref",
            )
        root = base.rstrip("/")
        url = root if root.endswith("/v2") else root + "/v2"
        answer = await self.session.request(
            "GET", f"{url}/images", params={"name": name}, version=None
        )
        images = answer.body.get("images") if isinstance(answer.body, dict) else None
        if not isinstance(images, list):
            raise ResponseError(
                "the image service's answer has no 'images' list",
                status=answer.status,
                request_id=answer.request_id,
            )
        return [
            str(image["id"])
            for image in images
            if isinstance(image, dict) and image.get("name") == name and image.get("id")
        ]

    # -- the rebuild --

    async def post_rebuild(
        self, server_id: str, request: RebuildRequest
    ) -> tuple[Server | None, datetime | None]:
        """``POST /servers/{id}/action`` with the rebuild, never retried by the session.

        Any 2xx is the service's acceptance, whatever its body: an empty, truncated or HTML
        body, or one about another server, gives None for the server (the wait reads it).
        """
        server, date, _ = await self.post_rebuild_answer(server_id, request)
        return server, date

    async def post_rebuild_answer(
        self, server_id: str, request: RebuildRequest
    ) -> tuple[Server | None, datetime | None, str | None]:
        """As :meth:`post_rebuild`, with the request id of the answer (for the journal)."""
        version = await self.checked_version(request)
        # Forgotten before it is sent: should this answer be lost, an earlier rebuild's request
        # id must not stand for this one.
        self._rebuild_request_ids.pop(server_id, None)
        try:
            answer = await self.session.request(
                "POST",
                f"{_server_path(server_id)}/action",
                json_body=request_to_wire(request),
                version=version,
                idempotent=False,
            )
        except ResponseError as exc:
            if exc.status is not None and 200 <= exc.status < 300:
                # Accepted; the unreadable body proves nothing more.
                self._remember_rebuild(server_id, exc.request_id)
                return None, None, exc.request_id
            raise
        self.remember_clock(answer.date)
        self._remember_rebuild(server_id, answer.request_id)
        if answer.body is None:
            return None, answer.date, answer.request_id
        try:
            server = server_from_wire(
                answer.body, status=answer.status, request_id=answer.request_id
            )
        except ResponseError:
            return None, answer.date, answer.request_id
        return (server if server.id == server_id else None), answer.date, answer.request_id
