"""Request fingerprints that keep no secret: what a journal stores instead of a request.

A request's wire body is stored with ``adminPass`` and ``user_data`` removed. Its fingerprint
is an HMAC-SHA256, keyed by the journal's random salt, over the canonical JSON of the whole
body, where each secret is first replaced by its scrypt digest (salted per journal and field).
The salt alone would stop precomputed tables; scrypt makes each guess of a leaked journal cost
~16 MiB and tens of milliseconds, so a password cannot be searched for cheaply offline. A run
computes each distinct secret once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

__all__ = ["SECRET_FIELDS", "fingerprint", "new_salt", "strip_secrets"]

#: Wire fields of a rebuild that are never written to a journal.
SECRET_FIELDS = ("adminPass", "user_data")

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def new_salt() -> str:
    return secrets.token_hex(32)


def _secret_digest(salt: bytes, field: str, value: object, cache: dict[Any, str]) -> str:
    text = json.dumps(value)  # None (sent as null) and text digest differently
    key = (field, text)
    if key not in cache:
        digest = hashlib.scrypt(text.encode(), salt=salt + field.encode(), **_SCRYPT)
        cache[key] = digest.hex()
    return cache[key]


def fingerprint(salt: str, wire: Mapping[str, Any], *, cache: dict[Any, str] | None = None) -> str:
    """The fingerprint of a ``{"rebuild": {...}}`` body under a journal's salt (hex)."""
    key = bytes.fromhex(salt)
    cache = {} if cache is None else cache
    body = dict(wire.get("rebuild", {}))
    for field in SECRET_FIELDS:
        if field in body:
            body[field] = {"scrypt": _secret_digest(key, field, body[field], cache)}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def strip_secrets(wire: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The body without its secrets, and the names of the fields removed."""
    original = wire.get("rebuild", {})
    removed = tuple(field for field in SECRET_FIELDS if field in original)
    body = {key: value for key, value in original.items() if key not in SECRET_FIELDS}
    return body, removed
