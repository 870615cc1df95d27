"""The engine under the session on asyncio: aiohttp, driven directly.

Requests are still built as ``httpx.Request`` objects and authenticated by the library's httpx
auth flows (a token header, an AK/SK signature, Keystone's token request and its retry after a
401), so every request is made and signed exactly as through ``httpx.AsyncClient``. Only the
exchange itself skips httpx's client and transport layers (its own redirect, cookie and
event-hook machinery, and a second answer object per request), which cost more CPU per request
than the rest of the library's work on it.

What the session relies on holds here as on the httpx path: no redirect is followed, an answer
is read only up to the size limit (before reading at all when ``Content-Length`` says more),
a connection whose answer was not read whole is closed rather than reused, and every failure
is the httpx exception the aiohttp transport would raise, caused by aiohttp's own and carrying
the request it was about (a failed Keystone token request is not the request it was for).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable

import aiohttp
import httpx

from ._bounded import BoundedDecoder, answer_limit, too_large

__all__ = ["AiohttpEngine", "RawAnswer", "header_dict"]

#: aiohttp's failures as httpx's, the most specific match winning: the same table as
#: httpx-aiohttp's transport, so the session reads a failure alike on either path.
_FAILURES: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ServerTimeoutError, httpx.TimeoutException),
    (aiohttp.ClientConnectionError, httpx.ConnectTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
)


def _as_httpx(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    mapped: type[httpx.TransportError] | None = None
    for aiohttp_kind, httpx_kind in _FAILURES:
        if isinstance(exc, aiohttp_kind) and (mapped is None or issubclass(httpx_kind, mapped)):
            mapped = httpx_kind
    if mapped is None:
        timed_out = isinstance(exc, (asyncio.TimeoutError, TimeoutError))
        mapped = httpx.ReadTimeout if timed_out else httpx.TransportError
    return mapped(str(exc), request=request)


def header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """An answer's headers by lower-case name (repeated ones joined by ", ", as httpx's
    ``items()`` joins them), decoded as httpx decodes them (UTF-8, else Latin-1), in one pass."""
    decoded: dict[str, str] = {}
    for key, value in raw:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        name = key.decode("latin-1").lower()
        decoded[name] = f"{decoded[name]}, {text}" if name in decoded else text
    return decoded


class RawAnswer:
    """One answer, read whole: its status, headers (lower-case names) and (decoded) body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class AiohttpEngine:
    """Sends ``httpx.Request`` objects through one ``aiohttp.ClientSession``."""

    def __init__(
        self, session: aiohttp.ClientSession, *, connect_timeout: float, read_timeout: float
    ) -> None:
        self._session = session
        # Every request bounds its whole answer itself (Session._send_once): these bound the
        # steps of the exchange, as httpx's timeouts do on the httpx path.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=read_timeout,  # a connection from the pool, connecting included
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )

    async def send(
        self, request: httpx.Request, auth: httpx.Auth | None, url: str | None = None
    ) -> tuple[httpx.Request, RawAnswer]:
        """Authenticate and send ``request``; the request last sent and its answer.

        The auth flow runs as ``httpx.AsyncClient`` runs it: each request it yields is sent,
        and its answer given back, until it ends. A flow that only sets headers (a token, a
        signature) says so with ``single_pass`` and is not given the answer. ``url`` is
        ``request.url`` as text, when the caller has it already.
        """
        if auth is None:
            return request, await self.exchange(request, url)
        flow: AsyncGenerator[httpx.Request, httpx.Response] = auth.async_auth_flow(request)
        try:
            sending = await flow.__anext__()
            while True:
                answer = await self.exchange(sending, url if sending is request else None)
                if getattr(auth, "single_pass", False):
                    return sending, answer
                try:
                    following = await flow.asend(_as_response(sending, answer))
                except StopAsyncIteration:
                    return sending, answer
                sending = following
        finally:
            await flow.aclose()

    async def exchange(self, request: httpx.Request, url: str | None = None) -> RawAnswer:
        """One request on the wire and its whole answer, within the request's size limit."""
        limit = answer_limit(request)
        content = request.content or None
        headers = [
            (key.decode("latin-1"), value.decode("utf-8")) for key, value in request.headers.raw
        ]
        try:
            response = await self._session.request(
                request.method,
                str(request.url) if url is None else url,
                headers=headers,
                data=content,
                allow_redirects=False,
                auto_decompress=False,  # decoded below, as httpx decodes, within the limit
                timeout=self._timeout,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _as_httpx(exc, request) from exc
        try:
            answer = await self._read(request, response, limit)
        except BaseException:
            response.close()  # an answer not read whole: its connection is not reused
            raise
        response.release()
        return answer

    async def _read(
        self, request: httpx.Request, response: aiohttp.ClientResponse, limit: int
    ) -> RawAnswer:
        headers = header_dict(response.raw_headers)
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise too_large(request, response.status, headers, limit, f"Content-Length {declared}")
        decoder = BoundedDecoder(request, response.status, headers, limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise too_large(request, response.status, headers, limit, "read so far: more")
                chunks.append(decoder.feed(chunk))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _as_httpx(exc, request) from exc
        # Decoded: what the session reads is the body itself.
        if headers.pop("content-encoding", None) is not None:
            headers.pop("content-length", None)
        return RawAnswer(response.status, headers, b"".join(chunks))


class _Body(httpx.AsyncByteStream):
    """A body already read, as the stream of an ``httpx.Response`` (which reads a ``content=``
    body whole at once, and decoded: no size limit could apply)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body


def _as_response(request: httpx.Request, answer: RawAnswer) -> httpx.Response:
    """The answer as the ``httpx.Response`` an auth flow reads (its body already decoded)."""
    return httpx.Response(
        answer.status,
        headers=list(answer.headers.items()),
        stream=_Body(answer.body),
        request=request,
    )
