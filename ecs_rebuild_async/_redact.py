"""One scrubber for every secret the library holds, applied wherever text leaves it.

Secrets are known two ways:

* **by value**: each holder of secrets (an auth object: its password, application-credential
  secret, token, AK, SK and security token, and every token Keystone gave it; a session: the
  ``adminPass`` and ``user_data`` of its requests, raw and encoded) keeps a :class:`SecretStore`.
  Every live store is known to :func:`scrub`, so a value is masked whoever echoes it back, in
  whatever error or log record.
* **by shape**: the value of a credential header (``X-Auth-Token: ...``, ``X-Subject-Token``,
  ``Authorization``...) or of a secret JSON field (``"password": "..."``), for secrets the
  library has not seen yet, such as a token in the very answer that brings it.

:func:`install_log_scrubbing` masks (and escapes, see ``_escape``) every log record of the
library and of its HTTP stack (httpx, httpcore, hpack, h2, h11, aiohttp and their children) as
the record is made, whatever handler or filter the application configured.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import traceback
import weakref
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from ._escape import escape_control

__all__ = [
    "MASK",
    "SecretStore",
    "clean_text",
    "install_log_scrubbing",
    "request_secrets",
    "scrub",
]

MASK = "***"

# Shorter values are not masked: masking every "ab" in a message would hide the message.
_MIN_SECRET = 3
# Lines of a user_data known one by one (the whole text is known anyway).
_MAX_LINES = 32

SECRET_HEADERS = (
    "x-auth-token",
    "x-subject-token",
    "authorization",
    "x-security-token",
    "proxy-authorization",
    "cookie",
    "set-cookie",
)
# Header text as the HTTP stack logs it: (b'x-subject-token', b'gAAAA...'), name=value, name: value.
# A quoted value runs to its closing quote; a bare one to the next space, ";" or ",".
_HEADER_PAIR = re.compile(
    r"""(?P<name>['"]?(?:%s)['"]?\s*[,:=]\s*(?:b(?=['"]))?)"""
    r"""(?:(?P<quote>['"])[^'"]*|(?P<bare>[^'"\s;,)\]]+))"""
    % "|".join(re.escape(name) for name in SECRET_HEADERS),
    re.IGNORECASE,
)
_JSON_SECRETS = re.compile(
    r"""(?P<name>['"](?:[\w.:-]*password|[\w.:-]*secret|adminpass|[\w.:-]*user_data|"""
    r"""[\w.:-]*token|sk|ak|access|contents)['"]\s*:\s*)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|["'][^"']*$)""",  # or cut off at the end
    re.IGNORECASE,
)
_JSON_WORDS: tuple[str, ...] = ("password", "secret", "adminpass", "user_data", "token")
_JSON_WORDS += ("sk", "ak", "access", "contents")
# Huawei's Authorization value, and bearer tokens, wherever they are quoted.
_CREDENTIAL_PARTS = re.compile(
    r"(?P<name>\b(?:Access|Credential|Signature)=|\b(?:Bearer|Basic|Negotiate|Digest)\s+)"
    r"(?P<value>[^,;\s\"']+)",
    re.IGNORECASE,
)


class SecretStore:
    """The secrets one holder keeps; known to every :func:`scrub` while the holder lives.

    At most ``limit`` values are kept, the most recent: tokens are renewed for as long as a
    client runs, and each distinct request brings its own ``adminPass`` and ``user_data``.
    """

    __slots__ = ("__weakref__", "_limit", "_values")

    def __init__(self, *values: str | None, limit: int = 1024) -> None:
        self._values: dict[str, None] = {}
        self._limit = limit
        _register(self)
        for value in values:
            self.add(value)

    def add(self, value: str | bytes | None) -> None:
        """Know ``value`` (and the forms in which a service may echo it) as a secret."""
        if value is None:
            return
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if value in self._values:
            return  # known, with its forms (a fleet sends one request thousands of times)
        forms = _forms(value)
        if all(form in self._values for form in forms):
            return
        for form in forms:
            self._values.pop(form, None)
            self._values[form] = None
        while len(self._values) > self._limit:
            self._values.pop(next(iter(self._values)))
        _changed()

    def add_encoded(self, encoded: str) -> None:
        """Know a base64 value as a secret, and its decoded text too, whole and by its first
        lines (a service may echo ``user_data`` decoded, or quote a line of it)."""
        if encoded in self._values:
            return
        try:
            text = base64.b64decode(encoded, validate=False).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = ""
        lines = dict.fromkeys(line.strip() for line in text.splitlines() if len(line.strip()) >= 8)
        for line in list(lines)[:_MAX_LINES]:
            self.add(line)
        self.add(text)
        self.add(encoded)  # last: the most recent, so the last to be forgotten

    def values(self) -> Iterable[str]:
        return tuple(self._values)

    def __repr__(self) -> str:
        return f"SecretStore(<{len(self._values)} secrets>)"


def _forms(value: str) -> list[str]:
    """The value and the escaped forms it takes in JSON, a Python repr or a URL."""
    if len(value) < _MIN_SECRET:
        return []
    forms = {value}
    # JSON-escaped once, and again for a request body quoted as a string inside JSON (and
    # once more inside that): services quote what they were sent at any depth.
    for ascii_only in (True, False):
        nested = value
        for _ in range(3):
            nested = json.dumps(nested, ensure_ascii=ascii_only)[1:-1]
            forms.add(nested)
    forms.add(repr(value)[1:-1])
    forms.add(quote(value, safe=""))
    forms |= {form.replace("/", "\\/") for form in forms}  # JSON encoders that escape "/"
    return [form for form in forms if len(form) >= _MIN_SECRET]


_lock = threading.Lock()
_stores: weakref.WeakSet[SecretStore] = weakref.WeakSet()
_generation = 0
_cache: tuple[int, tuple[str, ...]] = (-1, ())


def _register(store: SecretStore) -> None:
    with _lock:
        _stores.add(store)
    weakref.finalize(store, _changed)


def _changed() -> None:
    global _generation
    _generation += 1


def _known() -> tuple[str, ...]:
    """Every secret of every live store, longest first (so a longer one is masked whole)."""
    global _cache
    generation, values = _cache
    if generation == _generation:
        return values
    with _lock:
        seen = _generation
        found: set[str] = set()
        for store in list(_stores):
            found.update(store.values())
    values = tuple(sorted(found, key=len, reverse=True))
    _cache = (seen, values)
    return values


_SCHEMES = ("bearer", "basic", "negotiate", "digest")


def _masked_header(match: re.Match[str]) -> str:
    if match.group("bare") is not None and match.group("bare") == MASK:
        return match.group(0)
    return f"{match.group('name')}{match.group('quote') or ''}{MASK}"


def scrub(text: str) -> str:
    """``text`` with every known secret, and every credential header or secret JSON field
    value, replaced by ``***``."""
    if not text:
        return text
    lower = text.lower()
    # Each pattern runs only when the text has a word it looks for: most text has none.
    if "=" in text or any(word in lower for word in _SCHEMES):
        text = _CREDENTIAL_PARTS.sub(lambda m: f"{m.group('name')}{MASK}", text)
    if any(name in lower for name in SECRET_HEADERS):
        text = _HEADER_PAIR.sub(_masked_header, text)
    if ("'" in text or '"' in text) and any(word in lower for word in _JSON_WORDS):
        text = _JSON_SECRETS.sub(lambda m: f'{m.group("name")}"{MASK}"', text)
    for secret in _known():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def clean_text(text: str) -> str:
    """Scrubbed and escaped: ready for an error message, a log line or a terminal."""
    return escape_control(scrub(text))


# -- request bodies ----------------------------------------------------------------------------

# Fields whose values are secrets, anywhere in a request body (lower case).
_SECRET_FIELDS = frozenset({"adminpass", "password", "secret", "token", "id_token", "sk"})
# Fields holding base64 whose decoded text is secret too.
_ENCODED_FIELDS = frozenset({"user_data", "contents"})


def request_secrets(body: Any, store: SecretStore) -> None:
    """Know the secret values of a JSON request body (``adminPass``, ``user_data`` raw and
    encoded, personality contents, passwords) in ``store``."""
    stack: list[Any] = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, value in item.items():
                name = key.lower() if isinstance(key, str) else ""
                if isinstance(value, str) and name in _SECRET_FIELDS:
                    store.add(value)
                elif isinstance(value, str) and name in _ENCODED_FIELDS:
                    store.add_encoded(value)
                elif isinstance(value, (Mapping, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


# -- log records -------------------------------------------------------------------------------

#: Logger trees whose records are scrubbed: the library's and its HTTP stack's (every child
#: logger included, present or future: the scrubbing is done as the record is made).
SCRUBBED_LOGGERS = (
    "ecs_rebuild_async",
    "httpx",
    "httpcore",
    "httpx_aiohttp",
    "aiohttp",
    "hpack",
    "h2",
    "h11",
    "hyperframe",
)
_PREFIXES = tuple(f"{name}." for name in SCRUBBED_LOGGERS)
_NAMES = frozenset(SCRUBBED_LOGGERS)
# hpack logs whole encoded header blocks; a literal in them is a header value, unreadable to
# the name-based masking, so the block is shown by its size only.
_HPACK_BLOCKS = frozenset({"Encoded header block to %s", "Decoding %s"})


def _scrub_record(record: logging.LogRecord) -> None:
    name = record.name
    if not isinstance(name, str) or (name not in _NAMES and not name.startswith(_PREFIXES)):
        return
    if name.startswith("hpack") and record.msg in _HPACK_BLOCKS and record.args:
        block = record.args[0] if isinstance(record.args, tuple) else None
        size = len(block) if isinstance(block, (bytes, bytearray, memoryview)) else "?"
        record.args = (f"<header block of {size} bytes>",)
    try:
        message = record.getMessage()
    except Exception:  # a broken record is not ours to fix: logging reports it as usual
        return
    cleaned = clean_text(message)
    if cleaned != message:
        record.msg = cleaned
        record.args = None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        # The traceback text is made now, scrubbed, and kept: handlers use it as it is.
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = scrub(text)


class _ScrubbingFilter(logging.Filter):
    """A backstop on the top loggers, should the application replace the record factory
    without calling the one it replaced: records made there are still scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub_record(record)
        return True


_installed = False


def install_log_scrubbing() -> None:
    """Scrub the records of :data:`SCRUBBED_LOGGERS` as they are made (once per process).

    A filter on a logger does not see the records of its children, and a filter on a handler
    only sees the handlers it was added to; the record factory sees every record.
    """
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub_record(record)
            return record

        logging.setLogRecordFactory(factory)
        backstop = _ScrubbingFilter()
        for name in SCRUBBED_LOGGERS:
            logging.getLogger(name).addFilter(backstop)
        _installed = True
