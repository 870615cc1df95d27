"""The rules a rebuild request must meet before it is sent, as pure functions.

Each rule raises :class:`InvalidRequest` naming the wire field and what was wrong. The rules
copy Nova's request schema (``parameter_types.py``) and the ECS documentation's limits.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import InvalidRequest
from ._microversion import APIVersion

__all__ = [
    "ECS_NAME_MAX",
    "ECS_USER_DATA_RAW_MAX",
    "NOVA_NAME_MAX",
    "NOVA_USER_DATA_ENCODED_MAX",
    "check_access_ipv4",
    "check_no_userinfo",
    "check_access_ipv6",
    "check_base64",
    "check_description",
    "check_disk_config",
    "check_hostname",
    "check_image_ref",
    "check_key_name",
    "check_metadata",
    "check_name",
    "check_trusted_certificates",
    "encode_user_data",
]

NOVA_NAME_MAX = 255
ECS_NAME_MAX = 254
NOVA_USER_DATA_ENCODED_MAX = 65535
ECS_USER_DATA_RAW_MAX = 32 * 1024
METADATA_MAX = 255

# Nova's patterns, applied with fullmatch so that a trailing newline does not slip through.
_METADATA_KEY = re.compile(r"[a-zA-Z0-9-_:. ]{1,255}")
_HOSTNAME_V290 = re.compile(r"[a-zA-Z0-9]+[a-zA-Z0-9-]*[a-zA-Z0-9]+")
_HOSTNAME_V294 = re.compile(r"[a-zA-Z0-9-._]*")
_UUID_HEX = re.compile(r"[0-9a-f]{32}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# Nova builds its "printable" set from these Unicode categories (parameter_types.py).
_PRINTABLE_CATEGORIES = frozenset(
    {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
     "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs"}
)  # fmt: skip


def _is_printable(text: str) -> bool:
    return all(
        ord(ch) < 0xFFFF and unicodedata.category(ch) in _PRINTABLE_CATEGORIES for ch in text
    )


def _require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string, not {type(value).__name__}", field=field)
    return value


def _uuid_hex(text: str) -> str | None:
    """The 32 hex digits of a UUID in any form oslo's ``is_uuid_like`` accepts, or None."""
    lowered = text.lower()
    if lowered.startswith("urn:uuid:"):
        lowered = lowered[len("urn:uuid:") :]
    if lowered.startswith("{") and lowered.endswith("}"):
        lowered = lowered[1:-1]
    digits = lowered.replace("-", "")
    return digits if _UUID_HEX.fullmatch(digits) else None


def check_image_ref(value: object) -> str:
    """An image id: a UUID or an image URL ending in one. Returns the UUID in canonical form,
    which is what Nova's rebuild schema accepts (it takes no URL)."""
    text = _require_str(value, "imageRef").strip()
    candidate = text.rstrip("/").rsplit("/", 1)[-1] if "://" in text else text
    if "://" in text and not text.lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"imageRef URL must be http or https: {text[:80]!r}", field="imageRef")
    digits = _uuid_hex(candidate)
    if digits is None:
        raise InvalidRequest(
            f"imageRef must be an image UUID (or an image URL ending in one), got {text[:80]!r}",
            field="imageRef",
        )
    return str(uuid.UUID(hex=digits))


def check_name(value: object, *, maximum: int = NOVA_NAME_MAX) -> str:
    text = _require_str(value, "name")
    if not 1 <= len(text) <= maximum:
        raise InvalidRequest(
            f"name must be 1 to {maximum} characters, got {len(text)}", field="name"
        )
    if text != text.strip():
        raise InvalidRequest("name must not start or end with whitespace", field="name")
    if not _is_printable(text):
        raise InvalidRequest("name must contain printable characters only", field="name")
    return text


def check_description(value: object) -> str | None:
    if value is None:
        return None
    text = _require_str(value, "description")
    if len(text) > 255:
        raise InvalidRequest(
            f"description must be at most 255 characters, got {len(text)}", field="description"
        )
    # Nova's description pattern is the printable set: spaces, but no tabs or newlines.
    if not _is_printable(text):
        raise InvalidRequest(
            "description must contain printable characters only", field="description"
        )
    return text


def check_metadata(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidRequest(
            f"metadata must be a mapping of strings, not {type(value).__name__}", field="metadata"
        )
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _METADATA_KEY.fullmatch(key):
            raise InvalidRequest(
                f"metadata key {str(key)[:60]!r} must be 1 to 255 characters of letters, digits, "
                "and '-_:. '",
                field="metadata",
            )
        if not isinstance(item, str):
            raise InvalidRequest(
                f"metadata value for {key!r} must be a string, not {type(item).__name__}",
                field="metadata",
            )
        if len(item) > METADATA_MAX:
            raise InvalidRequest(
                f"metadata value for {key!r} must be at most 255 characters, got {len(item)}",
                field="metadata",
            )
        result[key] = item
    return result


def check_key_name(value: object) -> str | None:
    if value is None:
        return None
    text = _require_str(value, "key_name")
    if not 1 <= len(text) <= 255:
        raise InvalidRequest(
            f"key_name must be 1 to 255 characters, got {len(text)}", field="key_name"
        )
    return text


def check_disk_config(value: object) -> str:
    if value not in ("AUTO", "MANUAL"):
        raise InvalidRequest(
            f"OS-DCF:diskConfig must be 'AUTO' or 'MANUAL', got {str(value)[:20]!r}",
            field="OS-DCF:diskConfig",
        )
    return str(value)


def check_access_ipv4(value: object) -> str:
    text = _require_str(value, "accessIPv4")
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidRequest(
            f"accessIPv4 is not an IPv4 address: {text[:50]!r}", field="accessIPv4"
        ) from None
    return text


def check_access_ipv6(value: object) -> str:
    text = _require_str(value, "accessIPv6")
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise InvalidRequest(
            f"accessIPv6 is not an IPv6 address: {text[:50]!r}", field="accessIPv6"
        ) from None
    return text


def check_hostname(value: object, version: APIVersion | None = None) -> str:
    """2.90-2.93: an RFC 1123 label of 2 to 63 characters; 2.94 and later: an FQDN up to 255."""
    text = _require_str(value, "hostname")
    if version is not None and version >= APIVersion(2, 94):
        if not (1 <= len(text) <= 255 and _HOSTNAME_V294.fullmatch(text)):
            raise InvalidRequest(
                "hostname must be 1 to 255 characters of letters, digits and '-._'",
                field="hostname",
            )
        return text
    if version is None:
        # The version is not known yet: apply the wider rule now and the exact one at send time.
        return check_hostname(text, APIVersion(2, 94))
    if not (2 <= len(text) <= 63 and _HOSTNAME_V290.fullmatch(text)):
        raise InvalidRequest(
            f"hostname at microversion {version} must be 2 to 63 letters, digits and '-', "
            "starting and ending with a letter or digit",
            field="hostname",
        )
    return text


def check_trusted_certificates(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidRequest(
            "trusted_image_certificates must be a list of certificate ids",
            field="trusted_image_certificates",
        )
    items = list(value)
    if not 1 <= len(items) <= 50:
        raise InvalidRequest(
            f"trusted_image_certificates must hold 1 to 50 ids, got {len(items)}",
            field="trusted_image_certificates",
        )
    if not all(isinstance(item, str) and item for item in items):
        raise InvalidRequest(
            "trusted_image_certificates must be non-empty strings",
            field="trusted_image_certificates",
        )
    if len(set(items)) != len(items):
        raise InvalidRequest(
            "trusted_image_certificates must not repeat an id", field="trusted_image_certificates"
        )
    return tuple(items)


def check_base64(value: object, field: str) -> str:
    """Pre-encoded base64 text, sent as given. Whitespace (line breaks, the spaces in Nova's own
    samples) is allowed, as the service ignores it; any other stray character or wrong padding
    is refused. The message never shows the value."""
    text = _require_str(value, field)
    compact = "".join(text.split())
    if not compact.isascii() or not _BASE64.fullmatch(compact) or len(compact) % 4:
        raise InvalidRequest(
            f"{field} was marked as base64 but is not valid base64 (check padding)", field=field
        )
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"{field} was marked as base64 but is not valid base64 (check padding)", field=field
        ) from None
    return text


def encode_user_data(value: Any, *, already_encoded: bool) -> str:
    """Base64 text for ``user_data``: raw str or bytes are encoded, pre-encoded text is checked."""
    if already_encoded:
        return check_base64(value, "user_data")
    if isinstance(value, str):
        raw = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    else:
        raise InvalidRequest(
            f"user_data must be text or bytes, not {type(value).__name__}", field="user_data"
        )
    return base64.b64encode(raw).decode("ascii")


def check_user_data_size(encoded: str, *, ecs: bool) -> None:
    """ECS limits the content before encoding to 32 KB; Nova the encoded text to 65535."""
    if ecs:
        raw_size = len(base64.b64decode(encoded))
        if raw_size > ECS_USER_DATA_RAW_MAX:
            raise InvalidRequest(
                f"user_data is {raw_size} bytes before encoding; ECS allows at most "
                f"{ECS_USER_DATA_RAW_MAX}",
                field="user_data",
            )
    elif len(encoded) > NOVA_USER_DATA_ENCODED_MAX:
        raise InvalidRequest(
            f"user_data is {len(encoded)} characters encoded; Nova allows at most "
            f"{NOVA_USER_DATA_ENCODED_MAX}",
            field="user_data",
        )


def check_no_userinfo(text: str, field: str) -> None:
    """Refuse ``user:password@`` in a URL, without repeating it: a password in a URL would be
    in every repr and log line that shows the URL, and the credentials belong to the auth."""
    _, sep, rest = text.partition("://")
    authority = (rest if sep else text).split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        raise InvalidRequest(
            f"the {field} has credentials in it (user:password@host): leave them out of the "
            "URL and give them to the auth (TokenAuth, KeystoneAuth or AkSkAuth)",
            field=field,
        )


def check_endpoint(value: object) -> str:
    """A compute endpoint a user gave: ``http(s)://host[:port]/.../v2.1[/project_id]``.

    The common slips get a message with the fix: no scheme, another scheme, nothing at all,
    or a path without the API version (Huawei Cloud's SDKs take the bare host).
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(
            "the endpoint is empty: give the compute endpoint "
            "(https://host/v2.1/<project_id>), or leave it out to use the service catalog",
            field="endpoint",
        )
    text = value.strip()
    check_no_userinfo(text, "endpoint")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise InvalidRequest(
            f"the endpoint {text[:100]!r} has no scheme: write https://{text[:100]}",
            field="endpoint",
        )
    if scheme.lower() not in ("http", "https"):
        raise InvalidRequest(
            f"the endpoint's scheme {scheme[:20]!r} is not http or https", field="endpoint"
        )
    host, _, path = rest.partition("/")
    if not host:
        raise InvalidRequest(f"the endpoint {text[:100]!r} has no host", field="endpoint")
    segments = [segment for segment in path.split("?", 1)[0].split("/") if segment]
    if not any(segment in ("v2.1", "v2") for segment in segments):
        base = f"{scheme}://{host}/" + "/".join(segments)
        raise InvalidRequest(
            f"the endpoint {text[:100]!r} has no /v2.1 (or /v2) in its path: the compute "
            f"endpoint is {base.rstrip('/')}/v2.1/<project_id> (or .../v2.1 without a project)",
            field="endpoint",
        )
    return text
