"""What a failed connection reports: the reason in words, the OS error kept as the cause, and
no repeated attempts at what cannot succeed at once (refused, unresolvable, TLS)."""

from __future__ import annotations

import itertools
import socket
import ssl

import anyio
import anyio.abc
import httpx
import pytest

from ecs_rebuild_async import AsyncEcsClient, ClientSettings, TokenAuth, TransportError
from ecs_rebuild_async._session import transport_failure
from ecs_rebuild_async.testing import FakeCompute


def _chained(outer: BaseException, *inner: BaseException) -> BaseException:
    """``outer`` raised from ``inner[0]``, raised from ``inner[1]``..., as the HTTP stacks do."""
    chain = [outer, *inner]
    for upper, lower in itertools.pairwise(chain):
        upper.__cause__ = lower
    return outer


class _Group(Exception):
    """Shaped like an ExceptionGroup (anyio raises one for each address it tried)."""

    def __init__(self, *exceptions: BaseException) -> None:
        super().__init__("all attempts failed")
        self.exceptions = exceptions


REFUSED = ConnectionRefusedError(111, "Connection refused")
CASES = [
    # httpx-aiohttp calls every one of these ConnectTimeout: the cause decides.
    (_chained(httpx.ConnectTimeout("x"), OSError("aiohttp"), REFUSED), "refused"),
    (_chained(httpx.ConnectError("x"), _Group(REFUSED)), "refused"),
    (_chained(httpx.ConnectTimeout("x"), socket.gaierror(-2, "Name or service not known")), "dns"),
    (_chained(httpx.ConnectError("x"), ssl.SSLCertVerificationError(1, "bad cert")), "tls"),
    (_chained(httpx.ReadError("x"), ConnectionResetError(104, "reset by peer")), "reset"),
    (httpx.ReadTimeout("x"), "timeout"),
    (httpx.ConnectTimeout("x"), "timeout"),
    (_chained(httpx.ConnectTimeout("x"), TimeoutError()), "timeout"),
    (httpx.RemoteProtocolError("x"), "other"),
]


@pytest.mark.parametrize(("exc", "reason"), CASES)
def test_the_reason_is_read_from_the_cause_under_the_http_stack(
    exc: BaseException, reason: str
) -> None:
    found, os_error = transport_failure(exc)

    assert found == reason
    if reason in ("refused", "dns", "tls", "reset"):
        assert isinstance(os_error, OSError)


def test_a_cycle_of_causes_ends() -> None:
    first, second = httpx.ConnectError("a"), OSError("b")
    first.__cause__, second.__context__ = second, first

    assert transport_failure(first) == ("other", second)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.anyio
async def test_a_refused_connection_is_reported_at_once_with_the_os_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v2.1/6f70656e"
    async with AsyncEcsClient(url, auth=TokenAuth("t")) as ecs:
        with anyio.fail_after(5), pytest.raises(TransportError) as caught:
            await ecs.get_server("a0a80a94-3d81-4a10-822a-daa0cf9e870b")

    error = caught.value
    assert error.reason == "refused"
    assert error.maybe_sent is False
    assert isinstance(error.__cause__, ConnectionRefusedError)
    assert "connection refused" in str(error)
    assert "reason='refused'" in repr(error)
    # One try: nothing listens, and repeating it would only delay the answer.
    assert ecs.stats.get("GET versions", 0) == 1


@pytest.mark.anyio
async def test_https_to_a_plain_http_server_is_a_tls_failure() -> None:
    fake = FakeCompute()
    async with fake.serve_tcp() as base:
        url = base.replace("http://", "https://") + f"/v2.1/{fake.project_id}"
        async with AsyncEcsClient(url, auth=TokenAuth(fake.token)) as ecs:
            with anyio.fail_after(10), pytest.raises(TransportError) as caught:
                await ecs.get_server("a0a80a94-3d81-4a10-822a-daa0cf9e870b")

    assert caught.value.reason == "tls"
    # trio's httpx reports the SSLError; asyncio's aiohttp a reset of the handshake.
    assert isinstance(caught.value.__cause__, (ssl.SSLError, ConnectionResetError))
    assert "TLS failed" in str(caught.value)


@pytest.mark.anyio
async def test_a_service_that_never_answers_is_a_timeout_retried_like_one() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    held: list[anyio.abc.SocketStream] = []

    async def hold(stream: anyio.abc.SocketStream) -> None:
        held.append(stream)  # accepted, never answered
        await anyio.sleep_forever()

    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    settings = ClientSettings(
        request_timeout=0.2, connect_timeout=0.2, retry_attempts=2, backoff_initial=0.01
    )
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, hold)
        url = f"http://127.0.0.1:{port}/v2.1/6f70656e"
        async with AsyncEcsClient(url, auth=TokenAuth("t"), settings=settings) as ecs:
            with anyio.fail_after(10), pytest.raises(TransportError) as caught:
                await ecs.get_server("a0a80a94-3d81-4a10-822a-daa0cf9e870b")
        group.cancel_scope.cancel()

    assert caught.value.reason == "timeout"
    assert "timed out" in str(caught.value)
    assert len(held) == 2  # a timeout may be passing: it is tried again
