"""Server-side validation of a rebuild body, with Nova's (jsonschema-derived) messages.

The rules follow Nova's ``rebuild*`` schemas: one set of properties per microversion,
``additionalProperties: False`` everywhere, properties checked in schema order, then
``required``, then the unexpected keys. Returns the 400 message, or None when valid.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

from ._versioning import Version

__all__ = ["rebuild_fields", "validate_rebuild"]

_METADATA_KEY = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")
_HOSTNAME_V290 = re.compile(r"^[a-zA-Z0-9]+[a-zA-Z0-9-]*[a-zA-Z0-9]+$")
_HOSTNAME_V294 = re.compile(r"^[a-zA-Z0-9-._]*$")
_BOOL_STRINGS = {"true", "True", "TRUE", "1", "on", "On", "ON", "yes", "Yes", "YES"}
_BOOL_STRINGS |= {"false", "False", "FALSE", "0", "off", "Off", "OFF", "no", "No", "NO"}
_INVALID_NAME = (
    "An invalid 'name' value was provided. The name must be: printable characters. "
    "Can not start or end with whitespace."
)
_PRINTABLE = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No"})
_PRINTABLE |= {"Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs"}


def rebuild_fields(version: Version) -> tuple[str, ...]:
    """The properties of the rebuild schema at ``version``, in Nova's schema order."""
    fields = [
        "name",
        "imageRef",
        "adminPass",
        "metadata",
        "preserve_ephemeral",
        "OS-DCF:diskConfig",
        "accessIPv4",
        "accessIPv6",
    ]
    if version < (2, 57):
        fields.append("personality")
    if version >= (2, 19):
        fields.append("description")
    if version >= (2, 54):
        fields.append("key_name")
    if version >= (2, 57):
        fields.append("user_data")
    if version >= (2, 63):
        fields.append("trusted_image_certificates")
    if version >= (2, 90):
        fields.append("hostname")
    return tuple(fields)


def _fail(field: str, value: Any, message: str) -> str:
    # Nova renders the offending value with %s, so strings appear bare and dicts as repr.
    return f"Invalid input for field/attribute {field}. Value: {value}. {message}"


def _type_name(value: Any) -> str:
    return type(value).__name__


def _string(field: str, value: Any, *, low: int = 0, high: int | None = None) -> str | None:
    if not isinstance(value, str):
        return _fail(field, value, f"{value!r} is not of type 'string'")
    if len(value) < low:
        return _fail(field, value, f"{value!r} is too short")
    if high is not None and len(value) > high:
        return _fail(field, value, f"{value!r} is too long")
    return None


def _printable(text: str, *, allow_edges: bool) -> bool:
    if not allow_edges and text != text.strip():
        return False
    return all(unicodedata.category(ch) in _PRINTABLE and ord(ch) < 0xFFFF for ch in text)


def _name(value: Any, ctx: _Context) -> str | None:
    problem = _string("name", value, low=1, high=ctx.name_max)
    if problem is not None:
        return problem
    if not _printable(value, allow_edges=False):
        return _INVALID_NAME
    return None


def _image_ref(value: Any, ctx: _Context) -> str | None:
    if not isinstance(value, str):
        return _fail("imageRef", value, f"{value!r} is not of type 'string'")
    try:
        uuid.UUID(value)
    except ValueError:
        return _fail("imageRef", value, f"{value!r} is not a 'uuid'")
    return None


def _admin_pass(value: Any, ctx: _Context) -> str | None:
    if not isinstance(value, str):
        # The value is a secret: Nova would echo it; the fake does not.
        return _fail("adminPass", "***", f"'***' is not of type 'string' ({_type_name(value)})")
    return None


def _metadata(value: Any, ctx: _Context) -> str | None:
    if not isinstance(value, dict):
        return _fail("metadata", value, f"{value!r} is not of type 'object'")
    for key, item in value.items():
        if not _METADATA_KEY.match(key):
            return _fail(
                "metadata",
                value,
                f"{key!r} does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'",
            )
        problem = _string(key, item, high=255)
        if problem is not None:
            return problem
    return None


def _boolean(value: Any, ctx: _Context) -> str | None:
    if isinstance(value, bool) or value in _BOOL_STRINGS:
        return None
    return _fail("preserve_ephemeral", value, f"{value!r} is not one of [True, 'True', ...]")


def _disk_config(value: Any, ctx: _Context) -> str | None:
    if value in ("AUTO", "MANUAL"):
        return None
    return _fail("OS-DCF:diskConfig", value, f"{value!r} is not one of ['AUTO', 'MANUAL']")


def _ip(field: str, kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]) -> _Rule:
    label = "ipv4" if kind is ipaddress.IPv4Address else "ipv6"

    def rule(value: Any, ctx: _Context) -> str | None:
        if not isinstance(value, str):
            return _fail(field, value, f"{value!r} is not of type 'string'")
        try:
            kind(value)
        except ValueError:
            return _fail(field, value, f"{value!r} is not a '{label}'")
        return None

    return rule


def _personality(value: Any, ctx: _Context) -> str | None:
    if not isinstance(value, list):
        return _fail("personality", value, f"{value!r} is not of type 'array'")
    for item in value:
        if not isinstance(item, dict):
            return _fail("personality", item, f"{item!r} is not of type 'object'")
        extra = [k for k in item if k not in ("path", "contents")]
        if extra:
            return _fail("personality", item, _unexpected(extra))
        if not isinstance(item.get("path"), str):
            return _fail("path", item.get("path"), f"{item.get('path')!r} is not of type 'string'")
        if _b64_problem(item.get("contents")):
            return _fail("contents", "***", "'***' is not a 'base64'")
    return None


def _description(value: Any, ctx: _Context) -> str | None:
    if value is None:
        return None
    problem = _string("description", value, high=255)
    if problem is not None:
        return problem
    if not _printable(value, allow_edges=True):
        return _fail("description", value, f"{value!r} does not match the description rules")
    return None


def _key_name(value: Any, ctx: _Context) -> str | None:
    if value is None:
        return None
    return _string("key_name", value, low=1, high=255)


def _b64_problem(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        # Lenient like Nova: stray characters are dropped, but the padding must be right.
        base64.b64decode(value)
    except (binascii.Error, ValueError):
        return True
    return False


def _user_data(value: Any, ctx: _Context) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return _fail("user_data", "***", f"'***' is not of type 'string' ({_type_name(value)})")
    if _b64_problem(value):
        # user_data is secret: the message names the rule, never the content.
        return _fail("user_data", "***", "'***' is not a 'base64'")
    if ctx.ecs:
        if len(base64.b64decode(value)) > 32 * 1024:
            return _fail("user_data", "***", "'***' is too long")
    elif len(value) > 65535:
        return _fail("user_data", "***", "'***' is too long")
    return None


def _trusted(value: Any, ctx: _Context) -> str | None:
    field = "trusted_image_certificates"
    if value is None:
        return None
    if not isinstance(value, list):
        return _fail(field, value, f"{value!r} is not of type 'array', 'null'")
    if not 1 <= len(value) <= 50:
        return _fail(field, value, f"{value!r} is {'too short' if not value else 'too long'}")
    if len(set(map(repr, value))) != len(value):
        return _fail(field, value, f"{value!r} has non-unique elements")
    for item in value:
        problem = _string(field, item, low=1)
        if problem is not None:
            return problem
    return None


def _hostname(value: Any, ctx: _Context) -> str | None:
    if ctx.version >= (2, 94):
        problem = _string("hostname", value, low=1, high=255)
        pattern = _HOSTNAME_V294
    else:
        problem = _string("hostname", value, low=2, high=63)
        pattern = _HOSTNAME_V290
    if problem is not None:
        return problem
    if not pattern.match(value):
        return _fail("hostname", value, f"{value!r} does not match {pattern.pattern!r}")
    return None


class _Context:
    __slots__ = ("ecs", "name_max", "version")

    def __init__(self, version: Version, ecs: bool) -> None:
        self.version = version
        self.ecs = ecs
        self.name_max = 254 if ecs else 255


_Rule = Callable[[Any, _Context], "str | None"]

_RULES: dict[str, _Rule] = {
    "name": _name,
    "imageRef": _image_ref,
    "adminPass": _admin_pass,
    "metadata": _metadata,
    "preserve_ephemeral": _boolean,
    "OS-DCF:diskConfig": _disk_config,
    "accessIPv4": _ip("accessIPv4", ipaddress.IPv4Address),
    "accessIPv6": _ip("accessIPv6", ipaddress.IPv6Address),
    "personality": _personality,
    "description": _description,
    "key_name": _key_name,
    "user_data": _user_data,
    "trusted_image_certificates": _trusted,
    "hostname": _hostname,
}


def _unexpected(extra: list[str]) -> str:
    verb = "was" if len(extra) == 1 else "were"
    return (
        f"Additional properties are not allowed ({', '.join(map(repr, extra))} {verb} unexpected)"
    )


def _redacted(body: dict[str, Any]) -> dict[str, Any]:
    # Nova echoes the whole rebuild dict; the fake keeps secrets out of its messages.
    return {k: ("***" if k in ("adminPass", "user_data") else v) for k, v in body.items()}


def validate_rebuild(body: Any, version: Version, *, ecs: bool) -> str | None:
    """The 400 message for the ``rebuild`` value ``body`` at ``version``, or None if valid."""
    if not isinstance(body, dict):
        return _fail("rebuild", body, f"{body!r} is not of type 'object'")
    ctx = _Context(version, ecs)
    fields = rebuild_fields(version)
    for field in fields:
        if field in body:
            problem = _RULES[field](body[field], ctx)
            if problem is not None:
                return problem
    if "imageRef" not in body:
        return _fail("rebuild", _redacted(body), "'imageRef' is a required property")
    extra = [k for k in body if k not in fields]
    if extra:
        return _fail("rebuild", _redacted(body), _unexpected(extra))
    return None
