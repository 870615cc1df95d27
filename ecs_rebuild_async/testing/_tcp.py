"""A loopback HTTP/1.1 server (anyio TCP listener + h11, keep-alive) over the handler."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import unquote

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream

from ._replies import Reply, Request

__all__ = ["check_loopback", "serve"]

_MAX_BODY = 1 << 20


def check_loopback(host: str) -> None:
    """Refuse anything but a loopback address: the fake is never reachable from outside."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the fake serves on loopback addresses only, not {host!r}")


class _Closed(Exception):
    """The peer went away or sent something that is not HTTP."""


async def _next_event(conn: h11.Connection, stream: SocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            data = b""
        conn.receive_data(data)


async def _read_request(conn: h11.Connection, stream: SocketStream, base: str) -> Request | None:
    event = await _next_event(conn, stream)
    if not isinstance(event, h11.Request):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        part = await _next_event(conn, stream)
        if isinstance(part, h11.Data):
            size += len(part.data)
            if size > _MAX_BODY:
                raise _Closed
            chunks.append(bytes(part.data))
        elif isinstance(part, h11.EndOfMessage):
            break
        else:
            raise _Closed
    target = event.target.decode("ascii", "replace")
    raw_path, _, query = target.partition("?")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
    return Request(
        method=event.method.decode("ascii"),
        path=unquote(raw_path),
        raw_path=raw_path,
        query=query,
        headers=headers,
        body=b"".join(chunks),
        base=base,
    )


async def _send(conn: h11.Connection, stream: SocketStream, reply: Reply) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    headers.append((b"Content-Length", str(len(reply.body)).encode()))
    headers.append((b"Server", b"fake-compute"))
    data = conn.send(h11.Response(status_code=reply.status, headers=headers))
    data += conn.send(h11.Data(data=reply.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send(data)


async def _serve_connection(
    stream: SocketStream, handle: Callable[[Request], Reply], base: str
) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        try:
            while True:
                request = await _read_request(conn, stream, base)
                if request is None:
                    return
                reply = handle(request)
                if reply.delay > 0:
                    await anyio.sleep(reply.delay)
                if reply.lost:
                    return  # close without answering: the client never learns the outcome
                await _send(conn, stream, reply)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, h11.LocalProtocolError, _Closed):
            return
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return


class ConnectionCount:
    """How many client connections a server has open right now."""

    def __init__(self) -> None:
        self.open = 0


@asynccontextmanager
async def serve(
    handle: Callable[[Request], Reply],
    host: str = "127.0.0.1",
    port: int = 0,
    connections: ConnectionCount | None = None,
) -> AsyncIterator[str]:
    """Serve until the block exits; yields the base URL. Nothing is left running after."""
    count = connections if connections is not None else ConnectionCount()
    check_loopback(host)
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    bound = listener.extra(SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{bound}"

    async def on_connection(stream: SocketStream) -> None:
        count.open += 1
        try:
            await _serve_connection(stream, handle, base)
        finally:
            count.open -= 1

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, on_connection)
        try:
            yield base
        finally:
            group.cancel_scope.cancel()
