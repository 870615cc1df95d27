"""Verification of Huawei ``SDK-HMAC-SHA256`` signatures, as the API gateway checks them.

The canonical request is rebuilt from what arrived (method, raw path, query, the signed
headers, the body) and the HMAC compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["ALGORITHM", "canonical_request", "parse_authorization", "verify"]

ALGORITHM = "SDK-HMAC-SHA256"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_AUTH = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-fA-F]+)\s*$"
)


def parse_authorization(value: str) -> tuple[str, list[str], str] | None:
    """``(access_key, signed_header_names, signature)`` or None if not this scheme."""
    match = _AUTH.match(value.strip())
    if match is None:
        return None
    return match.group(1), match.group(2).split(";"), match.group(3).lower()


def _encode(text: str) -> str:
    return quote(text, safe="~")


def _canonical_uri(raw_path: str) -> str:
    segments = unquote(raw_path).split("/")
    uri = "/".join(_encode(seg) for seg in segments)
    return uri if uri.endswith("/") else uri + "/"


def _canonical_query(raw_query: str) -> str:
    pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    signed: Sequence[str],
    body: bytes,
) -> str | None:
    """The canonical request, or None when a signed header is missing."""
    values: dict[str, str] = {}
    for name, value in headers:
        values.setdefault(name.lower(), value)
    lines = []
    for name in signed:
        if name not in values:
            return None
        lines.append(f"{name}:{values[name].strip()}\n")
    if not body:
        payload = _EMPTY_SHA256
    elif "x-sdk-content-sha256" in values:
        payload = values["x-sdk-content-sha256"]
    else:
        payload = hashlib.sha256(body).hexdigest()
    return "\n".join(
        [
            method.upper(),
            _canonical_uri(raw_path),
            _canonical_query(raw_query),
            "".join(lines),
            ";".join(signed),
            payload,
        ]
    )


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
) -> bool:
    """Whether the request carries a valid signature by ``access_key``/``secret_key``."""
    auth = next((v for k, v in headers if k.lower() == "authorization"), None)
    parsed = parse_authorization(auth) if auth else None
    if parsed is None or not hmac.compare_digest(parsed[0], access_key):
        return False
    _, signed, signature = parsed
    date = next((v for k, v in headers if k.lower() == "x-sdk-date"), None)
    if date is None or "x-sdk-date" not in signed:
        return False
    canonical = canonical_request(method, raw_path, raw_query, headers, signed, body)
    if canonical is None:
        return False
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"{ALGORITHM}\n{date.strip()}\n{digest}"
    expected = hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
