"""Huawei's SDK-HMAC-SHA256, as huaweicloudsdkcore's Signer computes it, written apart from the
library's signer: the hostile server checks what it receives with it."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, quote, unquote

from hostile_service import Seen


def _encode(text: str) -> str:
    return quote(text, safe="~")


def sdk_authorization(request: Seen, ak: str, sk: str) -> str | None:
    """The Authorization the SDK would send for this request (signed headers as announced)."""
    announced = request.headers.get("authorization", "")
    if "SignedHeaders=" not in announced:
        return None
    names = announced.split("SignedHeaders=")[1].split(",")[0].split(";")
    path, _, query = request.target.partition("?")
    uri = "/".join(_encode(part) for part in unquote(path).split("/"))
    uri = uri if uri.endswith("/") else uri + "/"
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    canonical_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)
    headers = "".join(f"{name}:{request.headers.get(name, '').strip()}\n" for name in names)
    payload = (
        hashlib.sha256(request.body).hexdigest()
        if request.body
        else hashlib.sha256(b"").hexdigest()
    )
    canonical = "\n".join([request.method, uri, canonical_query, headers, ";".join(names), payload])
    date = request.headers.get("x-sdk-date", "")
    to_sign = f"SDK-HMAC-SHA256\n{date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={';'.join(names)}, Signature={signature}"
