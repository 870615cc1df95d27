"""The session layer through the public client, at the HTTP boundary (respx and a loopback server).

Endpoint forms, microversion discovery and negotiation, retries, shared rate-limit pauses, the
errors a bad answer turns into, and the default transport.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
import httpx
import pytest
import respx

from ecs_rebuild_async import (
    NOVA,
    AsyncEcsClient,
    ClientSettings,
    MicroversionError,
    PersonalityFile,
    RateLimited,
    RebuildOutcomeUnknown,
    RebuildRequest,
    ResponseError,
    ServerError,
    TokenAuth,
    TransportError,
    __version__,
)

BASE = "http://127.0.0.1:8774"
PROJECT = "6f70656e737461636b20726f636b7321"
ENDPOINT = f"{BASE}/v2.1/{PROJECT}"
VERSION_ROOT = f"{BASE}/v2.1/"
SERVER_ID = "a0a80a94-3d81-4a10-822a-daa0cf9e870b"
SERVER_URL = f"{ENDPOINT}/servers/{SERVER_ID}"
ACTION_URL = f"{SERVER_URL}/action"
IMAGE = "70a599e0-31e7-49b7-b260-868f441e862b"

FAST = ClientSettings(
    poll_first_delay=0.01,
    poll_interval=0.01,
    backoff_initial=0.001,
    backoff_max=0.005,
    retry_after_cap=0.05,
    reconcile_settle=0.01,
)
# asyncio may wake a sleeper up to its clock resolution early; lower bounds allow for that.
SLACK = 0.005


def version_document(maximum: str, minimum: str = "2.1") -> dict[str, Any]:
    return {
        "version": {
            "id": "v2.1",
            "status": "CURRENT",
            "version": maximum,
            "min_version": minimum,
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"href": VERSION_ROOT, "rel": "self"}],
        }
    }


def server_body(status: str = "REBUILD", task_state: str | None = "rebuilding") -> dict[str, Any]:
    return {
        "server": {
            "id": SERVER_ID,
            "name": "web-1",
            "status": status,
            "OS-EXT-STS:task_state": task_state,
            "updated": "2026-01-01T00:00:00Z",
        }
    }


def client(endpoint: str = ENDPOINT, **kwargs: Any) -> AsyncEcsClient:
    kwargs.setdefault("settings", FAST)
    return AsyncEcsClient(
        endpoint,
        auth=TokenAuth("token-for-tests"),
        transport=httpx.AsyncHTTPTransport(),
        **kwargs,
    )


def version_headers(request: httpx.Request) -> tuple[str | None, str | None]:
    return (
        request.headers.get("OpenStack-API-Version"),
        request.headers.get("X-OpenStack-Nova-API-Version"),
    )


def sent_version(request: httpx.Request) -> str | None:
    """The microversion a request carried; both headers must agree."""
    standard, legacy = version_headers(request)
    if standard is None and legacy is None:
        return None
    assert standard == f"compute {legacy}", (standard, legacy)
    return legacy


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mocked:
        yield mocked


def readable(router: respx.MockRouter) -> None:
    """Any server can be read (``rebuild()`` reads the server before it sends the rebuild)."""
    router.get(url__regex=r".*/servers/[^/]+$").respond(200, json=server_body("ACTIVE", None))


def posts(router: respx.MockRouter) -> list[httpx.Request]:
    return [call.request for call in router.calls if call.request.method == "POST"]


# -- endpoint forms ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_v21_endpoint_with_project_discovers_and_sends_both_headers(
    router: respx.MockRouter,
) -> None:
    versions = router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    router.get(SERVER_URL).respond(200, json=server_body("ACTIVE", None))
    router.post(ACTION_URL).respond(202, json=server_body())
    async with client() as ecs:
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))  # reads, then sends
    assert versions.call_count == 1
    assert "x-auth-token" not in versions.calls[0].request.headers  # the document is public
    compute = [call.request for call in router.calls if call.request.url != VERSION_ROOT]
    assert [request.method for request in compute] == ["GET", "POST"]
    for request in compute:
        assert version_headers(request) == ("compute 2.60", "2.60")
        assert request.headers["X-Auth-Token"] == "token-for-tests"
    for call in router.calls:
        assert call.request.headers["User-Agent"] == f"ecs-rebuild-async/{__version__}"


@pytest.mark.anyio
async def test_projectless_v21_endpoint(router: respx.MockRouter) -> None:
    readable(router)
    endpoint = f"{BASE}/v2.1"
    versions = router.get(VERSION_ROOT).respond(200, json=version_document("2.79"))
    action = router.post(f"{endpoint}/servers/{SERVER_ID}/action").respond(202, json=server_body())
    async with client(endpoint) as ecs:
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, key_name="k"))
    assert versions.call_count == 1
    assert action.call_count == 1
    assert sent_version(action.calls[0].request) == "2.79"


@pytest.mark.anyio
async def test_legacy_v2_endpoint_sends_no_version_headers_and_discovers_nothing(
    router: respx.MockRouter,
) -> None:
    readable(router)
    endpoint = f"{BASE}/v2/{PROJECT}"
    router.get(url__regex=r".*/v2/?$").respond(500)
    router.get(url__regex=r".*/v2\.1/?$").respond(500)
    action = router.post(f"{endpoint}/servers/{SERVER_ID}/action").respond(202, json=server_body())
    async with client(endpoint) as ecs:
        assert await ecs.versions() is None
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, name="web-2"))
    assert [call.request.method for call in router.calls] == ["GET", "POST"]
    assert version_headers(action.calls[0].request) == (None, None)


@pytest.mark.anyio
async def test_legacy_v2_endpoint_rejects_a_pinned_microversion_before_sending(
    router: respx.MockRouter,
) -> None:
    endpoint = f"{BASE}/v2/{PROJECT}"
    router.post(f"{endpoint}/servers/{SERVER_ID}/action").respond(202, json=server_body())
    async with client(endpoint, microversion="2.54") as ecs:
        with pytest.raises(MicroversionError):
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert router.calls.call_count == 0


@pytest.mark.anyio
async def test_legacy_v2_endpoint_rejects_a_field_that_needs_a_microversion(
    router: respx.MockRouter,
) -> None:
    endpoint = f"{BASE}/v2/{PROJECT}"
    router.post(f"{endpoint}/servers/{SERVER_ID}/action").respond(202, json=server_body())
    async with client(endpoint) as ecs:
        with pytest.raises(MicroversionError) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, key_name="k"))
    assert caught.value.field == "key_name"
    assert router.calls.call_count == 0


# -- microversions -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_discovery_happens_once_for_concurrent_first_calls(router: respx.MockRouter) -> None:
    versions = router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    reads = router.get(SERVER_URL).respond(200, json=server_body("ACTIVE", None))
    async with client() as ecs:
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(ecs.get_server, SERVER_ID)
        await ecs.get_server(SERVER_ID)
    assert versions.call_count == 1
    assert reads.call_count == 11


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("service_max", "request_kwargs", "expected"),
    [
        ("2.60", {"key_name": "k"}, "2.60"),
        ("2.100", {"key_name": "k"}, "2.100"),
        ("2.100", {"hostname": "web-1"}, "2.100"),
        ("2.60", {}, "2.60"),
        ("2.60", {"personality": [PersonalityFile("/etc/motd", "hello")]}, "2.56"),
        ("2.100", {"personality": [PersonalityFile("/etc/motd", "hello")]}, "2.56"),
        ("2.120", {"key_name": "k"}, "2.100"),  # never above what the library understands
    ],
)
async def test_negotiated_microversion(
    service_max: str, request_kwargs: dict[str, Any], expected: str, router: respx.MockRouter
) -> None:
    readable(router)
    router.get(VERSION_ROOT).respond(200, json=version_document(service_max))
    action = router.post(ACTION_URL).respond(202, json=server_body())
    async with client(dialect=NOVA) as ecs:
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, **request_kwargs))
    assert action.call_count == 1
    assert sent_version(action.calls[0].request) == expected


@pytest.mark.anyio
async def test_without_a_version_document_only_2_1_is_used(router: respx.MockRouter) -> None:
    readable(router)
    router.get(VERSION_ROOT).respond(404, json={"itemNotFound": {"code": 404, "message": "x"}})
    action = router.post(ACTION_URL).respond(202, json=server_body())
    async with client() as ecs:
        with pytest.raises(MicroversionError) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, key_name="k"))
        assert action.call_count == 0
        assert caught.value.field == "key_name"
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, name="web-2"))
    assert action.call_count == 1
    assert sent_version(action.calls[0].request) == "2.1"


@pytest.mark.anyio
async def test_hostname_on_a_2_60_service_fails_before_any_post(router: respx.MockRouter) -> None:
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    router.post(ACTION_URL).respond(202, json=server_body())
    async with client(dialect=NOVA) as ecs:
        with pytest.raises(MicroversionError) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, hostname="web-1"))
    assert caught.value.field == "hostname"
    assert posts(router) == []


@pytest.mark.anyio
async def test_pinned_microversion_is_used_as_given(router: respx.MockRouter) -> None:
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    router.get(SERVER_URL).respond(200, json=server_body("ACTIVE", None))
    action = router.post(ACTION_URL).respond(202, json=server_body())
    async with client(microversion="2.54") as ecs:
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, key_name="k"))
    assert action.call_count == 1
    compute = [call.request for call in router.calls if call.request.url != VERSION_ROOT]
    assert [sent_version(request) for request in compute] == ["2.54", "2.54"]


@pytest.mark.anyio
async def test_pinned_microversion_above_the_service_fails_before_any_post(
    router: respx.MockRouter,
) -> None:
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    router.post(ACTION_URL).respond(202, json=server_body())
    async with client(microversion="2.70") as ecs:
        with pytest.raises(MicroversionError) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert caught.value.required == "2.70"
    assert posts(router) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "document",
    [
        {"versions": []},
        {"version": {"version": "two", "min_version": "2.1"}},
        {"version": "2.60"},
    ],
)
async def test_malformed_version_document_is_a_response_error(
    document: object, router: respx.MockRouter
) -> None:
    router.get(VERSION_ROOT).respond(200, json=document)
    router.post(ACTION_URL).respond(202, json=server_body())
    async with client() as ecs:
        with pytest.raises(ResponseError) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert "version document" in str(caught.value)
    assert posts(router) == []


@pytest.mark.anyio
async def test_unreadable_version_document_is_a_response_error_not_2_1(
    router: respx.MockRouter,
) -> None:
    router.get(VERSION_ROOT).respond(
        200, content=b'{"version": {"version": "2.6', headers={"Content-Type": "application/json"}
    )
    router.post(ACTION_URL).respond(202, json=server_body())
    async with client() as ecs:
        with pytest.raises(ResponseError) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert "version document" in str(caught.value)
    assert posts(router) == []


@pytest.mark.anyio
async def test_version_document_failing_with_5xx_is_not_taken_as_2_1(
    router: respx.MockRouter,
) -> None:
    readable(router)
    settings = ClientSettings(backoff_initial=0.001, backoff_max=0.002, retry_attempts=2)
    versions = router.get(VERSION_ROOT)
    versions.side_effect = [httpx.Response(503), httpx.Response(503),
                            httpx.Response(200, json=version_document("2.60"))]  # fmt: skip
    action = router.post(ACTION_URL).respond(202, json=server_body())
    async with client(settings=settings) as ecs:
        with pytest.raises(ServerError):
            await ecs.versions()
        # not remembered: the next call asks again and gets the real range
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE, key_name="k"))
    assert versions.call_count == 3
    assert sent_version(action.calls[0].request) == "2.60"


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503, json={"computeFault": {"code": 503, "message": "busy"}}),
        httpx.Response(502, text="bad gateway"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("reset"),
    ],
    ids=["503", "502", "connect", "read-timeout", "reset"],
)
async def test_get_retries_then_succeeds(
    failure: httpx.Response | Exception, router: respx.MockRouter
) -> None:
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    reads = router.get(SERVER_URL)
    reads.side_effect = [failure, failure, httpx.Response(200, json=server_body("ACTIVE", None))]
    async with client() as ecs:
        server = await ecs.get_server(SERVER_ID)
    assert server.id == SERVER_ID
    assert reads.call_count == 3


@pytest.mark.anyio
async def test_get_gives_up_after_the_attempts(router: respx.MockRouter) -> None:
    settings = ClientSettings(backoff_initial=0.001, backoff_max=0.002, retry_attempts=3)
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    reads = router.get(SERVER_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    async with client(settings=settings) as ecs:
        with pytest.raises(TransportError) as caught:
            await ecs.get_server(SERVER_ID)
    assert reads.call_count == 3
    assert caught.value.maybe_sent
    assert not isinstance(caught.value, httpx.HTTPError)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.anyio
async def test_rebuild_post_is_retried_when_it_was_never_sent(router: respx.MockRouter) -> None:
    readable(router)
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    action = router.post(ACTION_URL)
    action.side_effect = [httpx.ConnectError("refused"), httpx.Response(202, json=server_body())]
    async with client() as ecs:
        server = await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert server.task_state == "rebuilding"
    assert action.call_count == 2


@pytest.mark.anyio
async def test_rebuild_post_is_not_retried_on_5xx_while_it_may_have_been_carried_out(
    router: respx.MockRouter,
) -> None:
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    action = router.post(ACTION_URL).respond(
        500, json={"computeFault": {"code": 500, "message": "oops"}}
    )
    # The service shows the rebuild running: the 500 came after it was recorded.
    router.get(SERVER_URL).mock(
        side_effect=[
            httpx.Response(200, json=server_body("ACTIVE", None)),  # the read before
            httpx.Response(200, json=server_body("REBUILD", "rebuilding")),
        ]
    )
    async with client() as ecs:
        server = await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert server.task_state == "rebuilding"
    assert action.call_count == 1


@pytest.mark.anyio
async def test_rebuild_post_5xx_is_sent_once_more_only_when_proven_not_carried_out(
    router: respx.MockRouter,
) -> None:
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    action = router.post(ACTION_URL).respond(
        500, json={"computeFault": {"code": 500, "message": "oops"}}
    )
    router.get(SERVER_URL).respond(200, json=server_body("ACTIVE", None))
    router.get(f"{SERVER_URL}/os-instance-actions").respond(200, json={"instanceActions": []})
    async with client() as ecs:
        with pytest.raises(ServerError):
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    # The first 500, then one more request after two reads proved nothing was done; after the
    # second 500 the reads prove it again, and there is no third request.
    assert action.call_count == 2


@pytest.mark.anyio
async def test_rebuild_post_5xx_twice_with_no_way_to_tell_is_outcome_unknown(
    router: respx.MockRouter,
) -> None:
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    action = router.post(ACTION_URL).respond(
        500, json={"computeFault": {"code": 500, "message": "oops"}}
    )
    router.get(SERVER_URL).respond(200, json=server_body("ACTIVE", None))
    # The first two looks see nothing; then the actions cannot be read any more.
    router.get(f"{SERVER_URL}/os-instance-actions").mock(
        side_effect=[
            httpx.Response(200, json={"instanceActions": []}),
            httpx.Response(200, json={"instanceActions": []}),
            httpx.Response(403, json={"forbidden": {"code": 403, "message": "no"}}),
        ]
    )
    async with client() as ecs:
        with pytest.raises(RebuildOutcomeUnknown) as caught:
            await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert action.call_count == 2
    assert any("second request" in line for line in caught.value.evidence)


# -- rate limits ---------------------------------------------------------------------------------


def _limited(retry_after: str | None, status: int = 429) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    body = {"overLimit": {"code": status, "message": "slow down"}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.anyio
async def test_429_retry_after_seconds_is_obeyed(router: respx.MockRouter) -> None:
    times: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        if len(times) == 1:
            return _limited("0.02")
        return httpx.Response(200, json=server_body("ACTIVE", None))

    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    router.get(SERVER_URL).mock(side_effect=answer)
    async with client() as ecs:
        await ecs.get_server(SERVER_ID)
        assert ecs.stats["rate_limited"] == 1
    assert len(times) == 2
    assert times[1] - times[0] >= 0.02 - SLACK


@pytest.mark.anyio
async def test_429_retry_after_http_date_is_obeyed_and_capped(router: respx.MockRouter) -> None:
    # With no default pause, only a parsed date can make the retry wait.
    settings = attrs.evolve(FAST, retry_after_default=0.0)
    times: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        if len(times) == 1:
            return _limited(email.utils.formatdate(time.time() + 30, usegmt=True))
        return httpx.Response(200, json=server_body("ACTIVE", None))

    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    router.get(SERVER_URL).mock(side_effect=answer)
    async with client(settings=settings) as ecs:
        await ecs.get_server(SERVER_ID)
    assert len(times) == 2
    assert times[1] - times[0] >= settings.retry_after_cap - SLACK


@pytest.mark.anyio
async def test_429_pause_is_shared_by_concurrent_requests(router: respx.MockRouter) -> None:
    """While one request waits out a 429, another request to the endpoint waits too."""
    log: list[tuple[str, float]] = []
    other_url = f"{ENDPOINT}/servers/other"

    def first(request: httpx.Request) -> httpx.Response:
        log.append(("first", anyio.current_time()))
        if len(log) == 1:
            return _limited("1")  # capped to retry_after_cap
        return httpx.Response(200, json=server_body("ACTIVE", None))

    def second(request: httpx.Request) -> httpx.Response:
        log.append(("second", anyio.current_time()))
        body = server_body("ACTIVE", None)
        body["server"]["id"] = "other"
        return httpx.Response(200, json=body)

    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    router.get(SERVER_URL).mock(side_effect=first)
    router.get(other_url).mock(side_effect=second)
    async with client() as ecs, anyio.create_task_group() as group:
        group.start_soon(ecs.get_server, SERVER_ID)
        with anyio.fail_after(5):
            while ecs.stats["rate_limited"] == 0:
                await anyio.lowlevel.checkpoint()
        await ecs.get_server("other")
    names = [name for name, _ in log]
    assert sorted(names) == ["first", "first", "second"]
    assert names[0] == "first"
    limited_at = log[0][1]
    second_at = next(at for name, at in log if name == "second")
    # Sent after the 429, yet held until the shared pause (>= the cap) was over.
    assert second_at - limited_at >= FAST.retry_after_cap - SLACK


@pytest.mark.anyio
async def test_rebuild_post_is_retried_after_429(router: respx.MockRouter) -> None:
    readable(router)
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    action = router.post(ACTION_URL)
    action.side_effect = [_limited("0.01"), httpx.Response(202, json=server_body())]
    async with client() as ecs:
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
    assert action.call_count == 2


@pytest.mark.anyio
async def test_413_over_limit_with_retry_after_is_a_rate_limit_and_retried(
    router: respx.MockRouter,
) -> None:
    readable(router)
    body = {"overLimit": {"message": "sorry", "code": 413, "retryAfter": "0.01"}}
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    action = router.post(ACTION_URL)
    action.side_effect = [httpx.Response(413, json=body), httpx.Response(202, json=server_body())]
    async with client() as ecs:
        await ecs.rebuild(SERVER_ID, RebuildRequest(image_ref=IMAGE))
        assert ecs.stats["rate_limited"] == 1
    assert action.call_count == 2


@pytest.mark.anyio
async def test_rate_limited_after_every_attempt_raises_rate_limited(
    router: respx.MockRouter,
) -> None:
    settings = attrs.evolve(FAST, retry_attempts=2, retry_after_cap=0.01)
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    reads = router.get(SERVER_URL).mock(return_value=_limited("7"))
    async with client(settings=settings) as ecs:
        with pytest.raises(RateLimited) as caught:
            await ecs.get_server(SERVER_ID)
    assert reads.call_count == 2
    assert caught.value.retry_after == 7.0


# -- bad answers ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_html_error_page_becomes_a_short_server_error(router: respx.MockRouter) -> None:
    page = "<html><head><title>500 Internal Server Error</title></head><body>" + "x" * 5000
    settings = attrs.evolve(FAST, retry_attempts=3)
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    reads = router.get(SERVER_URL).respond(
        500, text=page + "</body></html>", headers={"Content-Type": "text/html"}
    )
    async with client(settings=settings) as ecs:
        with pytest.raises(ServerError) as caught:
            await ecs.get_server(SERVER_ID)
    assert reads.call_count == 3
    assert caught.value.status == 500
    assert len(str(caught.value)) <= 600


@pytest.mark.anyio
async def test_truncated_json_in_a_200_is_a_response_error(router: respx.MockRouter) -> None:
    router.get(VERSION_ROOT).respond(200, json=version_document("2.60"))
    router.get(SERVER_URL).respond(
        200, content=b'{"server": {"id": "a0a80a94', headers={"x-openstack-request-id": "req-9"}
    )
    async with client() as ecs:
        with pytest.raises(ResponseError) as caught:
            await ecs.get_server(SERVER_ID)
    assert caught.value.status == 200
    assert caught.value.request_id == "req-9"


# -- the default transport -----------------------------------------------------------------------

Handler = Callable[[str, str, dict[str, str]], tuple[int, dict[str, str], bytes]]


@asynccontextmanager
async def loopback(handler: Handler) -> AsyncIterator[str]:
    """A minimal HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length bodies)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        buffer += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    buffer += await stream.receive()
                buffer = buffer[length:]
                status, extra, payload = handler(method, target, headers)
                head_out = f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n"
                head_out += "Content-Type: application/json\r\n"
                head_out += "".join(f"{name}: {value}\r\n" for name, value in extra.items())
                await stream.send(head_out.encode() + b"\r\n" + payload)

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            group.cancel_scope.cancel()


@pytest.mark.anyio
async def test_default_transport_and_redaction_of_what_the_http_stack_logs(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Under asyncio the default engine is aiohttp (httpcore stays silent); under trio it is
    httpx's own, whose httpcore logs whole response headers, which must come out masked."""
    seen: list[dict[str, str]] = []

    def handler(
        method: str, target: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        seen.append(headers)
        extra = {"X-Subject-Token": "canary-subject-token", "x-openstack-request-id": "req-1"}
        if target == "/v2.1/":
            return 200, extra, json.dumps(version_document("2.60")).encode()
        return 200, extra, json.dumps(server_body("ACTIVE", None)).encode()

    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "httpx_aiohttp", "aiohttp", "ecs_rebuild_async"):
        caplog.set_level(logging.DEBUG, logger=name)
    async with (
        loopback(handler) as base,
        AsyncEcsClient(
            f"{base}/v2.1/{PROJECT}", auth=TokenAuth("canary-token-XYZ"), settings=FAST
        ) as ecs,
    ):
        server = await ecs.get_server(SERVER_ID)
    assert server.id == SERVER_ID
    assert seen[-1]["x-auth-token"] == "canary-token-XYZ"
    assert seen[-1]["user-agent"] == f"ecs-rebuild-async/{__version__}"
    httpcore_records = [r for r in caplog.records if r.name.startswith("httpcore")]
    if anyio_backend == "asyncio":
        assert httpcore_records == []
    else:
        assert any("receive_response_headers" in r.getMessage() for r in httpcore_records)
    assert "canary-subject-token" not in caplog.text
    assert "canary-token-XYZ" not in caplog.text
