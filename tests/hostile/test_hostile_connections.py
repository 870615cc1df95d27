"""Connections a service drops: each request reaches it as many times as the settings say.

A server that reads a request and closes the connection (or resets it) without answering must
see that request once when ``retry_attempts=1``: the HTTP stack under the client must not
repeat it on its own (aiohttp repeats an idempotent request once after a lost connection).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable

import anyio
import pytest
from anyio.abc import SocketStream

from ecs_rebuild_async import AsyncEcsClient, ClientSettings, TokenAuth, TransportError

PROJECT = "0123456789abcdef0123456789abcdef"
SERVER_ID = "5d1c7f9e-2b3a-4c6d-8e0f-1a2b3c4d5e6f"


async def read_a_server_from(
    handler: Callable[[SocketStream], Awaitable[None]], scheme: str, **settings: float
) -> TransportError:
    """``get_server`` against a loopback listener that hands each connection to ``handler``;
    the TransportError it must end in."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handler)
        async with AsyncEcsClient(
            f"{scheme}://127.0.0.1:{port}/v2.1/{PROJECT}",
            auth=TokenAuth("a-token"),
            settings=ClientSettings(retry_attempts=1, request_timeout=5, **settings),
        ) as ecs:
            with anyio.fail_after(30), pytest.raises(TransportError) as caught:
                await ecs.get_server(SERVER_ID)
        group.cancel_scope.cancel()
    return caught.value


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_request_whose_connection_is_dropped_reaches_the_service_once(how: str) -> None:
    received: list[bytes] = []

    async def drop(stream: SocketStream) -> None:
        data = b""
        with anyio.move_on_after(5):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive()
                data += chunk
        received.append(data.split(b"\r\n", 1)[0])
        if how == "reset":
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    failure = await read_a_server_from(drop, "http")
    assert len(received) == 1, received
    assert failure.maybe_sent
    assert failure.reason in ("reset", "other")


@pytest.mark.anyio
async def test_a_tls_handshake_that_never_ends_is_a_request_not_sent() -> None:
    """An https endpoint whose listener never speaks: the connection is never set up in
    connect_timeout, so the request cannot have left (a rebuild needs no reconciling)."""
    silent: list[SocketStream] = []

    async def hold(stream: SocketStream) -> None:
        silent.append(stream)
        await anyio.sleep_forever()

    failure = await read_a_server_from(hold, "https", connect_timeout=0.5)
    assert silent  # the connection was accepted: only the handshake never ended
    assert not failure.maybe_sent
    assert "(not sent)" in str(failure)
