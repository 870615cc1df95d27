"""Fuzzing every parser of the service's answers: only typed errors come out, within the bounds.

Pure parsers (servers, listings, error bodies, headers) are called directly; the version
document, Keystone's token answer and its catalog are served through the public client by an
``httpx.MockTransport`` that answers with what hypothesis draws.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecs_rebuild_async import (
    AsyncEcsClient,
    ClientSettings,
    EcsError,
    KeystoneAuth,
    ResponseError,
    ServiceError,
    TokenAuth,
)
from ecs_rebuild_async._errors import error_from_response, parse_retry_after
from ecs_rebuild_async._serde import server_from_wire, server_page_from_wire
from ecs_rebuild_async._session import _echoed_version, _service_date

KEYS = [
    "id", "status", "name", "updated", "created", "OS-EXT-STS:task_state", "OS-EXT-STS:vm_state",
    "image", "flavor", "fault", "message", "code", "details", "addresses", "metadata", "links",
    "servers", "servers_links", "server", "rel", "href", "version", "min_version", "token",
    "expires_at", "issued_at", "catalog", "endpoints", "type", "url", "interface", "region_id",
    "project", "error", "error_code", "error_msg", "itemNotFound", "retryAfter", "progress",
]  # fmt: skip
TIMES = st.sampled_from(
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+01:00",
        "2026-11-29T12:00:00Z",
        "2026-02-30T00:00:00Z",
        "not a time",
        "",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | TIMES
    | st.sampled_from(["ACTIVE", "REBUILD", "ERROR", "compute", "public", "next", "http://[::1"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Each example of these runs a client on an event loop: fewer of them.
FUZZ_CLIENT = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(JSON_VALUES)
def test_server_parser_raises_only_response_errors(body: Any) -> None:
    for document in (body, {"server": body}):
        with contextlib.suppress(ResponseError):
            server_from_wire(document)


@FUZZ
@given(JSON_VALUES, st.lists(JSON_VALUES, max_size=3))
def test_listing_parser_raises_only_response_errors(links: Any, servers: list[Any]) -> None:
    try:
        page = server_page_from_wire({"servers": servers, "servers_links": links})
    except ResponseError:
        return
    # Entry by entry: every entry is read for its id, or counted as one without a readable id.
    assert len(page.ids) + page.anonymous == len(servers)
    assert {server.id for server in page.servers} <= set(page.ids)
    assert page.next_marker is None or isinstance(page.next_marker, str)


HEADER_TEXT = st.text(max_size=40) | st.sampled_from(
    ["Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT", "compute 2.999999999999"]
)


@FUZZ
@given(
    st.integers(min_value=100, max_value=999),
    st.dictionaries(
        st.sampled_from(["Retry-After", "Date", "X-Openstack-Request-Id", "Content-Type"]),
        HEADER_TEXT,
    ),
    st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode()),
)
def test_error_parser_never_raises(status: int, headers: dict[str, str], content: bytes) -> None:
    error = error_from_response(status, headers, content)
    assert isinstance(error, ServiceError)
    assert len(error.message) <= 600
    assert error.retry_after is None or error.retry_after >= 0


@FUZZ
@given(st.dictionaries(st.sampled_from(["date", "openstack-api-version",
                                        "x-openstack-nova-api-version", "retry-after"]),
                       HEADER_TEXT))  # fmt: skip
def test_header_parsers_never_raise(headers: dict[str, str]) -> None:
    date = _service_date(headers)
    assert date is None or 1971 <= date.year < 9000
    _echoed_version(headers)
    parse_retry_after(headers.get("retry-after"))


def test_nesting_too_deep_for_the_parser_is_typed() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert isinstance(error_from_response(500, {}, deep), ServiceError)


# -- through the client: versions, tokens, catalogs, and the size bound ------------------------

PROJECT = "0123456789abcdef0123456789abcdef"
SERVER = "b1d0c0a8-6d5e-4f7e-9c1b-2a3b4c5d6e7f"


def _run(scenario: Any, backend: str) -> None:
    anyio.run(scenario, backend=backend)


def _answer(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"Content-Type": "application/json",
                                                             **headers}
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@FUZZ_CLIENT
@given(document=JSON_VALUES)
def test_version_documents_give_only_typed_errors(backend: str, document: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.rstrip("/") == "/v2.1":
            return _answer(document)
        return _answer({"server": {"id": SERVER, "status": "ACTIVE"}})

    async def scenario() -> None:
        async with AsyncEcsClient(
            f"http://127.0.0.1/v2.1/{PROJECT}",
            auth=TokenAuth("t"),
            transport=httpx.MockTransport(handler),
            settings=ClientSettings(retry_attempts=1),
        ) as ecs:
            try:
                await ecs.versions()
                await ecs.get_server(SERVER)
            except EcsError:
                pass

    _run(scenario, backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@FUZZ_CLIENT
@given(token=JSON_VALUES, catalog=JSON_VALUES, status=st.sampled_from([201, 200, 302, 401, 500]))
def test_token_answers_and_catalogs_give_only_typed_errors(
    backend: str, token: Any, catalog: Any, status: int
) -> None:
    body = (
        {"token": token}
        if not isinstance(token, dict)
        else {"token": {**token, "catalog": catalog}}
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/tokens"):
            return _answer(body, status, **{"X-Subject-Token": "tok", "Location": "http://x/"})
        return _answer({"server": {"id": SERVER, "status": "ACTIVE"}})

    async def scenario() -> None:
        auth = KeystoneAuth("http://127.0.0.1/identity/v3", user_id="u", password="p")
        async with AsyncEcsClient(
            auth=auth, transport=httpx.MockTransport(handler),
            settings=ClientSettings(retry_attempts=1),
        ) as ecs:  # fmt: skip
            with contextlib.suppress(EcsError):
                await ecs.get_server(SERVER)

    _run(scenario, backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@FUZZ_CLIENT
@given(
    size=st.integers(min_value=0, max_value=3000), limit=st.integers(min_value=1, max_value=2000)
)
def test_no_answer_larger_than_the_limit_is_read(backend: str, size: int, limit: int) -> None:
    padding = "x" * size
    served: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.rstrip("/") == "/v2.1":
            return httpx.Response(404)  # no version document: 2.1, with an empty body
        body = json.dumps({"server": {"id": SERVER, "status": "ACTIVE", "name": padding}})
        served.append(len(body))
        return httpx.Response(
            200, content=body.encode(), headers={"Content-Type": "application/json"}
        )

    async def scenario() -> None:
        async with AsyncEcsClient(
            f"http://127.0.0.1/v2.1/{PROJECT}", auth=TokenAuth("t"), microversion="2.1",
            transport=httpx.MockTransport(handler),
            settings=ClientSettings(max_answer_bytes=limit, retry_attempts=1),
        ) as ecs:  # fmt: skip
            try:
                server = await ecs.get_server(SERVER)
            except ResponseError as error:
                assert served[-1] > limit
                assert "larger than" in str(error)  # noqa: PT017 (either outcome is checked)
            else:
                assert served[-1] <= limit
                assert server.name == padding

    _run(scenario, backend)
