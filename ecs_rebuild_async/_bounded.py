"""What the library accepts from the wire: answers of bounded size, and no redirects.

Every answer is read through :func:`read_body`, which stops as soon as it is larger than the
client's ``max_answer_bytes`` (before reading at all when ``Content-Length`` says so), so an
endless or huge body costs at most that much memory. A redirect is never followed: it would
carry the request's credentials (``X-Auth-Token``, a Keystone password, ``adminPass``) to
whatever host the answer names; :func:`redirect_error` says what the answer was instead.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from ._errors import ResponseError, request_id_from_headers
from ._settings import ClientSettings

__all__ = [
    "ACCEPTED_ENCODINGS",
    "DEFAULT_MAX_ANSWER_BYTES",
    "AnswerTooLarge",
    "BoundedDecoder",
    "MAX_ANSWER_BYTES",
    "answer_limit",
    "read_body",
    "redirect_error",
    "too_large",
]

#: ``ClientSettings.max_answer_bytes``'s default, for an auth flow used without a session.
DEFAULT_MAX_ANSWER_BYTES: int = int(attrs.fields(ClientSettings).max_answer_bytes.default or 0)
#: The encodings an answer may come in: those :class:`BoundedDecoder` reads.
ACCEPTED_ENCODINGS = "gzip, deflate"
#: The request extension through which the session tells auth flows its limit.
MAX_ANSWER_BYTES = "ecs_rebuild_async.max_answer_bytes"


def answer_limit(request: httpx.Request) -> int:
    """The answer size limit the session set on ``request`` (the default when it set none)."""
    value = request.extensions.get(MAX_ANSWER_BYTES)
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_ANSWER_BYTES


class AnswerTooLarge(ResponseError):
    """An answer larger than ``max_answer_bytes`` (a ResponseError to the caller)."""


def too_large(
    request: httpx.Request, status: int, headers: Mapping[str, str], limit: int, size: str
) -> AnswerTooLarge:
    """The error for an answer to ``request`` larger than ``limit`` bytes (``size``: how much)."""
    return AnswerTooLarge(
        f"the answer to {request.method} {request.url.copy_with(query=None)} is larger than "
        f"{limit} bytes ({size}); refused (see ClientSettings.max_answer_bytes)",
        status=status,
        request_id=request_id_from_headers(headers),
    )


def _too_large(response: httpx.Response, limit: int, size: str) -> ResponseError:
    return too_large(response.request, response.status_code, response.headers, limit, size)


class BoundedDecoder:
    """Decodes a body as its ``Content-Encoding`` says (gzip, deflate or none), refusing it as
    soon as the decoded bytes pass the limit: a small compressed answer may decode to far more,
    so the limit applies to what comes out, and no more than that is ever decoded at once."""

    def __init__(self, request: httpx.Request, status: int, headers: Mapping[str, str], limit: int):
        self._request, self._status, self._headers, self._limit = request, status, headers, limit
        encoding = headers.get("content-encoding", "").strip().lower()
        self._size = 0
        self._started = False
        # "deflate" is sent raw by some servers, zlib-wrapped by others (as httpx reads it):
        # until its first bytes decode, a zlib-wrapped reading may give way to a raw one.
        self._may_read_raw = encoding == "deflate"
        if encoding in ("", "identity"):
            self._inflater: Any = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflater = zlib.decompressobj()
        else:
            raise ResponseError(
                f"the answer to {request.method} {request.url.copy_with(query=None)} is encoded "
                f"as {encoding[:40]!r}, which was not asked for (gzip and deflate are read)",
                status=status,
                request_id=request_id_from_headers(headers),
            )

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes of the next piece of the body (ResponseError past the limit)."""
        if self._inflater is None:
            return self._counted(data)
        out: list[bytes] = []
        while data:
            room = self._limit - self._size + 1  # one byte more than fits tells it is too large
            try:
                piece = self._inflater.decompress(data, room)
            except zlib.error:
                if self._started or not self._may_read_raw:
                    raise self._unreadable() from None
                self._may_read_raw = False
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._started = True
            out.append(self._counted(piece))
            data = self._inflater.unconsumed_tail
        return b"".join(out)

    def _counted(self, piece: bytes) -> bytes:
        self._size += len(piece)
        if self._size > self._limit:
            raise too_large(
                self._request, self._status, self._headers, self._limit, "decoded: more"
            )
        return piece

    def _unreadable(self) -> ResponseError:
        return ResponseError(
            f"the answer to {self._request.method} {self._request.url.copy_with(query=None)} "
            "cannot be decoded as its Content-Encoding says",
            status=self._status,
            request_id=request_id_from_headers(self._headers),
        )


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """The whole (decoded) body of ``response``, or ResponseError once it passes ``limit``."""
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(response, limit, f"Content-Length {declared}")
    if response.is_stream_consumed and hasattr(response, "_content"):
        # Read already (a transport that answers from memory): httpx decoded it.
        if len(response.content) > limit:
            raise _too_large(response, limit, f"{len(response.content)} bytes")
        return response.content
    # Decoded here rather than by httpx, which inflates a whole chunk at once, unbounded.
    decoder = BoundedDecoder(response.request, response.status_code, response.headers, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise _too_large(response, limit, "read so far: more")
        chunks.append(decoder.feed(chunk))
    content = b"".join(chunks)
    # httpx reads every answer an auth flow was given once more (``aread``), unbounded: the
    # content is left where that read finds it, as ``aread`` itself would leave it.
    response._content = content
    return content


_REASONS = {301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect"}
_REASONS[308] = "Permanent Redirect"


def redirect_error(
    method: str, url: str | httpx.URL, status: int, headers: Mapping[str, str]
) -> ResponseError:
    """The error for a 3xx answer, which is never followed with the request's credentials."""
    lowered = {key.lower(): value for key, value in headers.items()}
    location = lowered.get("location", "").strip()
    where = f" to {location[:200]}" if location else " without a Location"
    reason = _REASONS.get(status, "redirect")
    shown = httpx.URL(url).copy_with(query=None) if isinstance(url, str) else url
    return ResponseError(
        f"{method} {shown} answered {status} {reason}, a redirect{where}: redirects are not "
        "followed, so that credentials go only to the endpoint they were given for (if the "
        "new place is to be trusted, use it as the endpoint)",
        status=status,
        request_id=request_id_from_headers(lowered),
    )
