"""The one cattrs converter: RebuildRequest to wire JSON, wire JSON to Server.

The wire names (``imageRef``, ``OS-EXT-STS:task_state``...) live here and nowhere else, so the
models keep Python names. Reading is strict about types (a string where a number belongs is a
:class:`ResponseError`, not a silent conversion) and lenient about presence (a down cell's
partial server reads fine), and fields the library does not know are kept in ``Server.extra``.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._errors import ResponseError
from ._microversion import APIVersion
from ._models import (
    UNSET,
    Address,
    Fault,
    Flavor,
    ImageRef,
    PersonalityFile,
    RebuildRequest,
    Server,
    ServerStatus,
)

__all__ = [
    "converter",
    "parse_timestamp",
    "request_to_wire",
    "server_from_wire",
    "servers_from_wire",
]

converter = cattrs.Converter(forbid_extra_keys=False)

# --- primitives: strict, so that a wrong type is reported instead of coerced -------------------


# Short values repeat across the servers of a listing (project and user ids, states, image and
# flavor names): one shared copy each keeps thousands of watched servers small.
_INTERN_UP_TO = 64


def _strict_str(value: object, _: object) -> str:
    if type(value) is not str:
        if isinstance(value, str):
            return str(value)
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return sys.intern(value) if len(value) <= _INTERN_UP_TO else value


def _strict_int(value: object, _: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _strict_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def parse_timestamp(value: object) -> datetime:
    """An ISO 8601 time as Nova writes it (``2026-11-29T12:00:00Z``, ``...+00:00``, or a
    ``...T12:00:00.000000`` without a zone for ``launched_at``), always timezone-aware (UTC)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a timestamp string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _structure_status(value: object, _: object) -> ServerStatus:
    return ServerStatus(_strict_str(value, None))


converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(bool, _strict_bool)
converter.register_structure_hook(datetime, lambda value, _: parse_timestamp(value))
# Records written by the library itself (the journal) keep their times as ISO 8601 text.
converter.register_unstructure_hook(datetime, lambda value: value.isoformat())
converter.register_structure_hook(ServerStatus, _structure_status)


def _mapping_of_str(value: object, _: object) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return {_strict_str(k, None): _strict_str(v, None) for k, v in value.items()}


def _links(value: object, _: object) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise TypeError("expected a list of link objects")
    return tuple(value)


def _str_tuple(value: object, _: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return tuple(_strict_str(item, None) for item in value)


def _register_exact(type_: Any, hook: Any) -> None:
    """Register a hook for one generic type (cattrs' singledispatch only takes plain classes)."""
    converter.register_structure_hook_func(lambda candidate: candidate == type_, hook)


_register_exact(Mapping[str, str], _mapping_of_str)
_register_exact(tuple[Mapping[str, Any], ...], _links)
_register_exact(tuple[str, ...], _str_tuple)

# --- nested objects ----------------------------------------------------------------------------


def _structure_image(value: object, _: object) -> ImageRef | None:
    # A server booted from a volume shows "" (or, on some clouds, null) for its image.
    if value in ("", None):
        return None
    if not isinstance(value, dict):
        raise TypeError(f"image must be an object or '', got {type(value).__name__}")
    return ImageRef(
        id=_strict_str(value.get("id"), None),
        links=_links(value.get("links", []), None),
        properties=_mapping_of_str(value["properties"], None) if "properties" in value else None,
    )


_register_exact(ImageRef | None, _structure_image)
converter.register_structure_hook(
    Fault,
    make_dict_structure_fn(Fault, converter),
)
converter.register_structure_hook(
    Flavor,
    make_dict_structure_fn(Flavor, converter),
)
converter.register_structure_hook(
    Address,
    make_dict_structure_fn(
        Address,
        converter,
        mac_addr=override(rename="OS-EXT-IPS-MAC:mac_addr"),
        type=override(rename="OS-EXT-IPS:type"),
    ),
)


def _addresses(value: object, _: object) -> Mapping[str, tuple[Address, ...]]:
    if not isinstance(value, dict):
        raise TypeError(f"addresses must be an object, got {type(value).__name__}")
    result: dict[str, tuple[Address, ...]] = {}
    for network, entries in value.items():
        if not isinstance(entries, list):
            raise TypeError(f"addresses of {network!r} must be a list")
        result[str(network)] = tuple(converter.structure(entry, Address) for entry in entries)
    return result


_register_exact(Mapping[str, tuple[Address, ...]], _addresses)

#: Server attribute -> wire key, where they differ.
_SERVER_RENAMES: dict[str, str] = {
    "task_state": "OS-EXT-STS:task_state",
    "vm_state": "OS-EXT-STS:vm_state",
    "power_state": "OS-EXT-STS:power_state",
    "host_id": "hostId",
    "access_ipv4": "accessIPv4",
    "access_ipv6": "accessIPv6",
    "disk_config": "OS-DCF:diskConfig",
    "hostname": "OS-EXT-SRV-ATTR:hostname",
    "availability_zone": "OS-EXT-AZ:availability_zone",
    "launched_at": "OS-SRV-USG:launched_at",
    "terminated_at": "OS-SRV-USG:terminated_at",
    "admin_pass": "adminPass",
}
_SERVER_KNOWN_KEYS = frozenset(
    _SERVER_RENAMES.get(field.name, field.name)
    for field in attrs.fields(Server)
    if field.name != "extra"
)

_server_overrides: dict[str, Any] = {
    name: override(rename=wire) for name, wire in _SERVER_RENAMES.items()
}
_server_overrides["extra"] = override(omit=True)
_structure_server_fields = make_dict_structure_fn(
    Server, converter, _cattrs_detailed_validation=False, **_server_overrides
)


def _structure_server(value: object, _: object) -> Server:
    if not isinstance(value, dict):
        raise TypeError(f"a server must be an object, got {type(value).__name__}")
    # Empty strings mean "not set" for these fields at some microversions and clouds.
    cleaned = {
        key: (None if item == "" and key in _EMPTY_MEANS_NONE else item)
        for key, item in value.items()
    }
    # The rebuild answer names it user_data (2.57+); a GET, OS-EXT-SRV-ATTR:user_data (admin).
    if "user_data" not in cleaned and _ADMIN_USER_DATA in cleaned:
        cleaned["user_data"] = cleaned[_ADMIN_USER_DATA]
    server = _structure_server_fields(cleaned, Server)
    extra = {
        key: item
        for key, item in value.items()
        if key not in _SERVER_KNOWN_KEYS and key != _ADMIN_USER_DATA
    }
    if extra:
        server = attrs.evolve(server, extra=extra)
    return server


_ADMIN_USER_DATA = "OS-EXT-SRV-ATTR:user_data"
_EMPTY_MEANS_NONE = frozenset(
    {"accessIPv4", "accessIPv6", "OS-SRV-USG:launched_at", "OS-SRV-USG:terminated_at", "hostId"}
)

converter.register_structure_hook(Server, _structure_server)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        messages = cattrs.transform_error(exc)
        return "; ".join(messages[:3]) if messages else str(exc)
    return f"{type(exc).__name__}: {exc}"[:300]


def server_from_wire(
    body: object, *, status: int | None = None, request_id: str | None = None
) -> Server:
    """A Server from ``{"server": {...}}`` or the bare server object.

    Raises ResponseError, and nothing else, when the body cannot be read."""
    inner = body.get("server") if isinstance(body, dict) and "server" in body else body
    try:
        return converter.structure(inner, Server)
    except Exception as exc:  # any failure to read the body is the service's bad answer
        raise ResponseError(
            f"cannot read the server in the answer: {_describe(exc)}",
            status=status,
            request_id=request_id,
        ) from None


def servers_from_wire(
    body: object, *, status: int | None = None, request_id: str | None = None
) -> tuple[list[Server], str | None]:
    """The servers of a ``/servers/detail`` page and the href of its ``next`` link, if any."""
    if not isinstance(body, dict) or not isinstance(body.get("servers"), list):
        raise ResponseError(
            "the server list answer has no 'servers' list", status=status, request_id=request_id
        )
    servers = [
        server_from_wire(item, status=status, request_id=request_id) for item in body["servers"]
    ]
    next_href: str | None = None
    links = body.get("servers_links")
    if isinstance(links, list):
        for link in links:
            if (
                isinstance(link, dict)
                and link.get("rel") == "next"
                and isinstance(link.get("href"), str)
            ):
                next_href = link["href"]
    return servers, next_href


# --- requests ----------------------------------------------------------------------------------


def _personality_to_wire(files: tuple[PersonalityFile, ...]) -> list[dict[str, str]]:
    wire = []
    for item in files:
        if item.contents_base64 and isinstance(item.contents, str):
            wire.append({"path": item.path, "contents": item.contents})
            continue
        raw = item.contents.encode("utf-8") if isinstance(item.contents, str) else item.contents
        wire.append({"path": item.path, "contents": base64.b64encode(raw).decode("ascii")})
    return wire


def request_to_wire(request: RebuildRequest) -> dict[str, Any]:
    """The exact ``{"rebuild": {...}}`` body: wire names, UNSET left out, None sent as null."""
    body: dict[str, Any] = {"imageRef": request.image_ref}
    simple = (
        ("name", "name"),
        ("admin_pass", "adminPass"),
        ("disk_config", "OS-DCF:diskConfig"),
        ("preserve_ephemeral", "preserve_ephemeral"),
        ("key_name", "key_name"),
        ("description", "description"),
        ("hostname", "hostname"),
        ("access_ipv4", "accessIPv4"),
        ("access_ipv6", "accessIPv6"),
    )
    for attribute, wire in simple:
        value = getattr(request, attribute)
        if value is not UNSET:
            body[wire] = value
    if request.metadata is not UNSET:
        body["metadata"] = dict(request.metadata)
    user_data = request.encoded_user_data()
    if user_data is not UNSET:
        body["user_data"] = user_data
    if request.personality is not UNSET:
        body["personality"] = _personality_to_wire(tuple(request.personality))
    certs = request.trusted_image_certificates
    if certs is not UNSET:
        body["trusted_image_certificates"] = None if certs is None else list(certs)
    return {"rebuild": body}


def wire_version_header(version: APIVersion | None) -> dict[str, str]:
    """Both microversion headers; the legacy one is what services before 2.27 read."""
    if version is None:
        return {}
    text = str(version)
    return {"OpenStack-API-Version": f"compute {text}", "X-OpenStack-Nova-API-Version": text}
