"""One loopback server that plays a hostile service: Keystone, compute, and another host.

It listens on 127.0.0.1 on two ports: ``url`` is the service, ``other_url`` plays another host
(where a redirect or a catalog points, and where no credential may ever arrive), and, with
``tls=True``, ``https_url`` serves the same routes over TLS (a trustme CA, ``ca_path``). Every
port speaks HTTP/1.1 (h11) and HTTP/2 with prior knowledge (h2), told apart by the preface.

Tests set what each route answers with :meth:`HostileServer.route`; every request received is
kept in ``seen``, with the port it arrived on.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import h2.config
import h2.connection
import h2.events
import h11
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSListener

HOST = "127.0.0.1"
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@attrs.frozen
class Seen:
    """A request as the server received it."""

    port: int
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    http2: bool

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@attrs.frozen
class Reply:
    """An answer: ``body`` as is, or ``chunks`` streamed one after the other (even endless)."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunks: Callable[[], AsyncIterator[bytes]] | None = None


Handler = Callable[[Seen], Reply | Awaitable[Reply]]


class HostileServer:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._routes: list[tuple[str, str, Handler]] = []
        self.url = ""
        self.other_url = ""
        self.https_url = ""
        self.ca_path: Path | None = None
        self.port = 0
        self.other_port = 0

    def route(self, method: str, path_prefix: str, handler: Handler) -> None:
        """Answer requests whose path starts with ``path_prefix`` (the latest route wins)."""
        self._routes.insert(0, (method, path_prefix, handler))

    def seen_on(self, port: int) -> list[Seen]:
        return [request for request in self.seen if request.port == port]

    async def answer(self, request: Seen) -> Reply:
        self.seen.append(request)
        for method, prefix, handler in self._routes:
            if method in (request.method, "*") and request.path.startswith(prefix):
                reply = handler(request)
                return reply if isinstance(reply, Reply) else await reply
        return Reply(404, (("Content-Type", "application/json"),), b'{"itemNotFound": {}}')


# -- HTTP/1.1 ------------------------------------------------------------------------------------


class _Gone(Exception):
    pass


async def _receive(stream: ByteStream) -> bytes:
    try:
        return await stream.receive(65536)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        return b""


async def _h11_next(conn: h11.Connection, stream: ByteStream) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await _receive(stream))


async def _serve_h11(server: HostileServer, stream: ByteStream, port: int, first: bytes) -> None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(first)
    while True:
        event = await _h11_next(conn, stream)
        if not isinstance(event, h11.Request):
            return
        body = b""
        while True:
            part = await _h11_next(conn, stream)
            if isinstance(part, h11.Data):
                body += part.data
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        seen = Seen(
            port, event.method.decode(), event.target.decode("latin-1"), headers, body, False
        )
        reply = await server.answer(seen)
        head = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        if reply.chunks is None:
            head.append((b"Content-Length", str(len(reply.body)).encode()))
        await stream.send(conn.send(h11.Response(status_code=reply.status, headers=head)))
        if reply.chunks is None:
            await stream.send(conn.send(h11.Data(data=reply.body)) or b"")
        else:
            async for chunk in reply.chunks():
                await stream.send(conn.send(h11.Data(data=chunk)) or b"")
        await stream.send(conn.send(h11.EndOfMessage()) or b"")
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()


# -- HTTP/2 (small answers only: one flow-control window) ------------------------------------------


async def _serve_h2(server: HostileServer, stream: ByteStream, port: int, first: bytes) -> None:
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    conn.initiate_connection()
    await stream.send(conn.data_to_send())
    pending: dict[int, tuple[dict[str, str], bytearray]] = {}
    data = first
    while True:
        if not data:
            data = await _receive(stream)
            if not data:
                return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
                pending[event.stream_id] = (headers, bytearray())
            elif isinstance(event, h2.events.DataReceived):
                pending[event.stream_id][1].extend(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                headers, body = pending.pop(event.stream_id)
                seen = Seen(port, headers[":method"], headers[":path"], headers, bytes(body), True)
                reply = await server.answer(seen)
                assert reply.chunks is None, "the HTTP/2 side answers small bodies only"
                conn.send_headers(
                    event.stream_id,
                    [(":status", str(reply.status)), *reply.headers,
                     ("content-length", str(len(reply.body)))],
                )  # fmt: skip
                conn.send_data(event.stream_id, reply.body, end_stream=True)
            elif isinstance(event, h2.events.ConnectionTerminated):
                await stream.send(conn.data_to_send())
                return
        await stream.send(conn.data_to_send())
        data = b""


async def _serve_one(server: HostileServer, stream: ByteStream, port: int) -> None:
    async with stream:
        try:
            first = await _receive(stream)
            if first.startswith(_H2_PREFACE[: len(first)]) and first:
                while len(first) < len(_H2_PREFACE):
                    more = await _receive(stream)
                    if not more:
                        return
                    first += more
                if first.startswith(_H2_PREFACE):
                    await _serve_h2(server, stream, port, first)
                    return
            await _serve_h11(server, stream, port, first)
        except (h11.ProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError, _Gone):
            return


@asynccontextmanager
async def hostile_server(
    *, tls: bool = False, tmp: Path | None = None
) -> AsyncIterator[HostileServer]:
    """Serve until the block exits; nothing is left running after it."""
    server = HostileServer()
    listeners = [
        await anyio.create_tcp_listener(local_host=HOST, local_port=0),
        await anyio.create_tcp_listener(local_host=HOST, local_port=0),
    ]
    ports = [listener.extra(SocketAttribute.local_port) for listener in listeners]
    server.port, server.other_port = ports
    server.url, server.other_url = (f"http://{HOST}:{port}" for port in ports)
    serving: list[tuple[Any, int]] = list(zip(listeners, ports, strict=True))
    if tls:
        import trustme

        assert tmp is not None
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST).configure_cert(context)
        server.ca_path = tmp / "hostile-ca.pem"
        ca.cert_pem.write_to_path(str(server.ca_path))
        tcp = await anyio.create_tcp_listener(local_host=HOST, local_port=0)
        tls_port = tcp.extra(SocketAttribute.local_port)
        server.https_url = f"https://{HOST}:{tls_port}"
        serving.append((TLSListener(tcp, context, standard_compatible=False), tls_port))

    async with anyio.create_task_group() as group:
        for listener, port in serving:

            async def handle(stream: ByteStream, port: int = port) -> None:
                await _serve_one(server, stream, port)

            group.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            group.cancel_scope.cancel()
    for listener, _ in serving:
        await listener.aclose()
