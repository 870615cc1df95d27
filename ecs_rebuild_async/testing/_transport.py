"""The in-process httpx transport: no sockets, works under asyncio and trio."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

import anyio
import httpx

from ._replies import Reply, Request

__all__ = ["FakeTransport"]


class FakeTransport(httpx.AsyncBaseTransport):
    """Hands each request to the fake's handler. A lost answer raises after the action ran."""

    def __init__(self, handle: Callable[[Request], Reply], *, lost_error: str = "timeout") -> None:
        self._handle = handle
        self._lost_error = lost_error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        raw = request.url.raw_path.decode("ascii")
        raw_path, _, query = raw.partition("?")
        url = request.url
        default_port = {"http": 80, "https": 443}.get(url.scheme)
        host = url.host if url.port in (None, default_port) else f"{url.host}:{url.port}"
        fake_request = Request(
            method=request.method,
            path=unquote(raw_path),
            raw_path=raw_path,
            query=query,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            body=body,
            base=f"{url.scheme}://{host}",
        )
        reply = self._handle(fake_request)
        if reply.delay > 0:
            await anyio.sleep(reply.delay)
        if reply.lost:
            if self._lost_error == "disconnect":
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )
            raise httpx.ReadTimeout("the answer was lost (injected fault)", request=request)
        return httpx.Response(
            reply.status, headers=reply.headers, content=reply.body, request=request
        )
