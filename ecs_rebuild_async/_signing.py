"""Huawei Cloud ``SDK-HMAC-SHA256`` request signing (AK/SK), as pure functions.

This follows the signer of Huawei's official Python SDK byte for byte: the canonical request,
the string to sign and the ``Authorization`` header it builds are checked against that SDK's
own test vectors. Nothing here does I/O or knows about any HTTP library.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ._errors import InvalidRequest

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "SDK_DATE_FORMAT",
    "UNSIGNED_PAYLOAD",
    "canonical_query",
    "canonical_query_from_string",
    "canonical_request",
    "canonical_uri",
    "format_sdk_date",
    "sign",
    "string_to_sign",
]

ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# Bodies of these types are hashed; any other Content-Type is signed as UNSIGNED-PAYLOAD.
_HASHED_CONTENT_TYPES = ("application/json", "application/bson")

QueryValue = str | int | float | bool | None | Iterable[str | int | float | bool | None]


def format_sdk_date(when: datetime | None = None) -> str:
    """``X-Sdk-Date`` for ``when`` (default: now), always in UTC: ``20200608T023900Z``."""
    moment = when or datetime.now(timezone.utc)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime(SDK_DATE_FORMAT)


def _encode(text: str) -> str:
    # Only unreserved characters stay literal, so "/" in a value is encoded too.
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """The path as signed: decoded, each segment re-encoded, always ending in ``/``.

    An encoded ``%2F`` becomes a separator, as in the SDK; ``/action`` is signed as ``/action/``.
    """
    segments = unquote(path).split("/")
    uri = "/".join(_encode(segment) for segment in segments)
    return uri if uri.endswith("/") else uri + "/"


def _query_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def canonical_query(pairs: Iterable[tuple[str, QueryValue]]) -> str:
    """The sorted, encoded query: list values give one pair per element, booleans are
    ``true``/``false``."""
    flat: list[tuple[str, str]] = []
    for key, value in pairs:
        if isinstance(value, (list, tuple, set, frozenset)):
            flat.extend((key, _query_text(item)) for item in value)
        else:
            flat.append((key, _query_text(value)))
    # The SDK sorts the decoded pairs, then encodes them; the order must match its order.
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in sorted(flat))


def canonical_query_from_string(query: str) -> str:
    """:func:`canonical_query` of a raw query string (``a=1&b=x%20y``); ``+`` means a space."""
    return canonical_query(parse_qsl(query, keep_blank_values=True))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _signed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lowercased names to trimmed values, without names containing ``_`` (never signed)."""
    signed: dict[str, str] = {}
    for key, value in headers.items():
        name = key.lower()
        if "_" in name:
            continue
        value = value.strip()
        signed[name] = f"{signed[name]},{value}" if name in signed else value
    return signed


def _payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    if not body:
        return EMPTY_SHA256
    declared = _header(headers, "X-Sdk-Content-Sha256")
    if declared is not None:
        return declared
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> tuple[str, str]:
    """``(canonical request, SignedHeaders)`` for headers that are already complete
    (``X-Sdk-Date``, ``Host`` and any ``X-Sdk-Content-Sha256`` present)."""
    signed = _signed_headers(headers)
    names = sorted(signed)
    header_block = "".join(f"{name}:{signed[name]}\n" for name in names)
    signed_names = ";".join(names)
    text = "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query_from_string(query),
            header_block,
            signed_names,
            _payload_hash(headers, body),
        ]
    )
    return text, signed_names


def string_to_sign(canonical: str, sdk_date: str) -> str:
    """The text the HMAC covers: algorithm, date and the SHA-256 of the canonical request."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def _split_target(url: str) -> tuple[str, str, str]:
    """``(authority, path, query)`` from a full URL or from a path with its query.

    A path is taken as it is: ``//v2.1/p`` is a path whose first segment is empty (as the SDK
    signs it, from the request's resource path), not a URL naming the host ``v2.1``.
    """
    if url.startswith("/"):
        path, _, query = url.partition("?")
        return "", path.partition("#")[0], query.partition("#")[0]
    parts = urlsplit(url)
    authority = parts.netloc.rpartition("@")[2]
    return authority, parts.path or "/", parts.query


def _headers_to_add(
    headers: Mapping[str, str], authority: str, sdk_date: str | datetime | None
) -> dict[str, str]:
    added: dict[str, str] = {}
    existing_date = _header(headers, "X-Sdk-Date")
    if existing_date is None:
        added["X-Sdk-Date"] = sdk_date if isinstance(sdk_date, str) else format_sdk_date(sdk_date)
    else:
        _check_sdk_date(existing_date)
    content_type = _header(headers, "Content-Type")
    if (
        content_type is not None
        and not content_type.lower().startswith(_HASHED_CONTENT_TYPES)
        and _header(headers, "X-Sdk-Content-Sha256") is None
    ):
        added["X-Sdk-Content-Sha256"] = UNSIGNED_PAYLOAD
    if _header(headers, "Host") is None:
        if not authority:
            raise InvalidRequest("cannot sign a request without a host: give a full URL or Host")
        added["Host"] = authority
    return added


def _check_sdk_date(value: str) -> None:
    # The SDK parses a given X-Sdk-Date with the exact format; a wrong one is a caller bug.
    try:
        datetime.strptime(value, SDK_DATE_FORMAT)
    except ValueError:
        raise InvalidRequest(
            f"X-Sdk-Date must look like 20200608T023900Z, got {value[:40]!r}", field="X-Sdk-Date"
        ) from None


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    ak: str,
    sk: str,
    *,
    sdk_date: str | datetime | None = None,
) -> dict[str, str]:
    """Sign one request and return the headers to add to it.

    ``url`` is a full URL or a path with its query (then ``headers`` must hold ``Host``).
    The result always has ``Authorization``, plus ``X-Sdk-Date`` (from ``sdk_date``, default
    now) unless the headers have one, ``Host`` unless present, and
    ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` for a Content-Type that is neither JSON nor BSON.
    Every header passed in whose name has no ``_`` is signed, so pass only the headers that
    will be sent as they are. Anything that cannot be signed raises InvalidRequest.
    """
    try:
        return _sign(method, url, headers, body, ak, sk, sdk_date)
    except InvalidRequest:
        raise
    except ValueError as exc:  # a malformed URL (urlsplit), text that is not UTF-8 (surrogates)
        raise InvalidRequest(f"cannot sign this request: {type(exc).__name__}") from None


def _sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    ak: str,
    sk: str,
    sdk_date: str | datetime | None,
) -> dict[str, str]:
    if isinstance(sdk_date, str):
        _check_sdk_date(sdk_date)
    authority, path, query = _split_target(url)
    added = _headers_to_add(headers, authority, sdk_date)
    complete = {**headers, **added}
    canonical, signed_names = canonical_request(method, path, query, complete, body)
    date = _header(complete, "X-Sdk-Date")
    assert date is not None  # set just above when it was missing
    signature = hmac.new(
        sk.encode("utf-8"), string_to_sign(canonical, date).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Access={ak}, SignedHeaders={signed_names}, Signature={signature}"
    )
    return added
