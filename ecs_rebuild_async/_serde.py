"""The one cattrs converter: RebuildRequest to wire JSON, wire JSON to Server.

The wire names (``imageRef``, ``OS-EXT-STS:task_state``...) live here and nowhere else, so the
models keep Python names. Reading is strict about types (a string where a number belongs is a
:class:`ResponseError`, not a silent conversion) and lenient about presence (a down cell's
partial server reads fine), and fields the library does not know are kept in ``Server.extra``.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable, Container, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

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
from ._redact import scrub

__all__ = [
    "converter",
    "parse_timestamp",
    "request_to_wire",
    "ServerPage",
    "server_from_wire",
    "server_page_from_wire",
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
    for item in value:
        # One shared copy of "self", "bookmark": a fleet keeps a few links per server.
        rel = item.get("rel")
        if type(rel) is str and len(rel) <= _INTERN_UP_TO:
            item["rel"] = sys.intern(rel)
    return tuple(value)


_T = TypeVar("_T")

#: Images and flavors already read, by what the service wrote: servers of one image or flavor
#: share one (frozen) ImageRef or Flavor rather than a copy each, since a fleet keeps a server
#: per wait in flight. Bounded: cleared when full.
_SHARED: dict[tuple[type, Any], Any] = {}
_SHARED_MAX = 1024


def _frozen(value: object, depth: int = 0) -> Any:
    """A hashable image of a small JSON value (objects as sorted items, arrays as tuples), or
    None when it is too deep or holds anything else: such a value is not shared."""
    if value is None or type(value) in (str, int):
        return value
    if type(value) is bool:
        return ("bool", value)  # not the same as 1 or 0, which compare equal to it
    if depth > 3:
        return None
    if type(value) is dict:
        items = []
        for key, item in value.items():
            frozen = _frozen(item, depth + 1)
            if frozen is None and item is not None:
                return None
            items.append((key, frozen))
        return ("{}", tuple(sorted(items)))
    if type(value) is list:
        frozen_items = tuple(_frozen(item, depth + 1) for item in value)
        if any(f is None and i is not None for f, i in zip(frozen_items, value, strict=True)):
            return None
        return ("[]", frozen_items)
    return None


def _shared(cls: type[_T], value: object, structure: Callable[[], _T]) -> _T:
    """The ``cls`` read from ``value``: one already read from the same JSON, else a new one."""
    key = _frozen(value)
    if key is None:
        return structure()
    found = _SHARED.get((cls, key))
    if found is None:
        found = structure()
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        _SHARED[cls, key] = found
    return cast(_T, found)


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
    return _shared(ImageRef, value, lambda: _new_image(value))


def _new_image(value: dict[str, Any]) -> ImageRef:
    return ImageRef(
        id=_strict_str(value.get("id"), None),
        links=_links(value.get("links", []), None),
        properties=_mapping_of_str(value["properties"], None) if "properties" in value else None,
    )


_register_exact(ImageRef | None, _structure_image)
_structure_fault_fields = make_dict_structure_fn(Fault, converter)


def _structure_fault(value: Any, type_: Any) -> Fault:
    # A fault's text is the service's error message, and services put what they were sent in
    # their messages: the secrets the client knows are masked in the values themselves, not
    # only in reprs, since errors carry the fault for anyone to print.
    fault: Fault = _structure_fault_fields(value, type_)
    return attrs.evolve(
        fault,
        message=scrub(fault.message),
        details=scrub(fault.details) if fault.details is not None else None,
    )


converter.register_structure_hook(Fault, _structure_fault)
_structure_flavor_fields = make_dict_structure_fn(Flavor, converter)
converter.register_structure_hook(
    Flavor,
    lambda value, type_: _shared(Flavor, value, lambda: _structure_flavor_fields(value, type_)),
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


# The optional fields' hooks, each registered for its exact type: cattrs' generic handling of
# ``X | None`` looks the inner hook up again for every field of every server (a third of the
# time a server took to read; a fleet reads each of its servers two or three times).
def _optional(hook: Any) -> Any:
    def structure(value: object, type_: object) -> Any:
        return None if value is None else hook(value, type_)

    return structure


for _inner, _hook in (
    (str, _strict_str),
    (int, _strict_int),
    (bool, _strict_bool),
    (datetime, lambda value, _: parse_timestamp(value)),
    (tuple[str, ...], _str_tuple),
    (Flavor, lambda value, _: converter.structure(value, Flavor)),
    (Fault, lambda value, _: _structure_fault(value, Fault)),
):
    _register_exact(_inner | None, _optional(_hook))

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
    cleaned = value
    # Empty strings mean "not set" for these fields at some microversions and clouds.
    if any(value.get(key) == "" for key in _EMPTY_MEANS_NONE):
        cleaned = {
            key: (None if item == "" and key in _EMPTY_MEANS_NONE else item)
            for key, item in value.items()
        }
    # The rebuild answer names it user_data (2.57+); a GET, OS-EXT-SRV-ATTR:user_data (admin).
    if "user_data" not in cleaned and _ADMIN_USER_DATA in cleaned:
        cleaned = {**cleaned, "user_data": cleaned[_ADMIN_USER_DATA]}
    server: Server = _structure_server_fields(cleaned, Server)
    extra = {
        key: item
        for key, item in value.items()
        if key not in _SERVER_KNOWN_KEYS and key != _ADMIN_USER_DATA
    }
    if extra:
        # Set as attrs' own __init__ sets a frozen field: attrs.evolve would build the whole
        # server a second time for it.
        object.__setattr__(server, "extra", extra)
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


@attrs.frozen
class ServerPage:
    """One page of ``/servers/detail``, read entry by entry.

    An entry that cannot be read as a server does not spoil the page: it is kept in
    ``unreadable`` under its id when the id itself can be read, else counted in ``anonymous``
    (an entry that could be any server). Read for a set of ``wanted`` ids, the page holds only
    their servers; the others are looked at for their id and ``updated`` alone."""

    servers: list[Server]
    unreadable: dict[str, ResponseError]
    anonymous: int
    #: The id of every entry whose id could be read, in order.
    ids: list[str]
    #: The newest ``updated`` of any entry (None: no entry has a readable one).
    newest: datetime | None
    #: The answer has a ``next`` link: the listing goes on.
    has_next: bool
    #: The ``marker`` the ``next`` link names (None: it names none).
    next_marker: str | None
    #: The id of the page's last entry, readable or not (None: the page is empty, or its last
    #: entry has no readable id).
    last_id: str | None

    @property
    def marker(self) -> str | None:
        """Where the next page starts: the ``next`` link's marker, else the last entry (as
        Nova builds its links)."""
        return self.next_marker if self.next_marker is not None else self.last_id


def _entry_id(item: object) -> str | None:
    if isinstance(item, dict):
        value = item.get("id")
        if type(value) is str and value:
            return value
    return None


def _entry_updated(item: object) -> datetime | None:
    """An entry's ``updated`` in UTC, or None when it has none that can be read (or that UTC
    cannot hold: ``9999-12-31T23:59:59-23:59``)."""
    value = item.get("updated") if isinstance(item, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _next_marker(
    links: object, status: int | None, request_id: str | None
) -> tuple[bool, str | None]:
    """Whether ``servers_links`` has a ``next`` link, and the marker it names.

    A ``next`` link that cannot be read is a ResponseError: the listing would be incomplete."""
    if links is None:
        return False, None
    if not isinstance(links, list):
        raise ResponseError(
            "the server list's 'servers_links' is not a list", status=status, request_id=request_id
        )
    has_next, marker = False, None
    for link in links:
        if not isinstance(link, dict) or link.get("rel") != "next":
            continue
        href = link.get("href")
        if not isinstance(href, str):
            raise ResponseError(
                "the server list's next link has no href", status=status, request_id=request_id
            )
        try:
            query = parse_qs(urlsplit(href).query)
        except ValueError:  # an unreadable URL (a bad IPv6 literal, for one)
            raise ResponseError(
                "the server list's next link is not a URL", status=status, request_id=request_id
            ) from None
        has_next = True
        markers = query.get("marker")
        marker = markers[-1] if markers else None
    return has_next, marker


def server_page_from_wire(
    body: object,
    *,
    wanted: Container[str] | None = None,
    status: int | None = None,
    request_id: str | None = None,
) -> ServerPage:
    """A ``/servers/detail`` page: the servers of every entry, or of the ``wanted`` ids only.

    ResponseError only when the page as a whole cannot be read (no ``servers`` list, an
    unreadable ``next`` link); one bad entry spoils only itself."""
    if not isinstance(body, dict) or not isinstance(body.get("servers"), list):
        raise ResponseError(
            "the server list answer has no 'servers' list", status=status, request_id=request_id
        )
    servers: list[Server] = []
    unreadable: dict[str, ResponseError] = {}
    anonymous = 0
    ids: list[str] = []
    newest: datetime | None = None
    entries: list[object] = body["servers"]
    for item in entries:
        entry_id = _entry_id(item)
        updated = _entry_updated(item)
        if updated is not None and (newest is None or updated > newest):
            newest = updated
        if entry_id is None:
            anonymous += 1  # a server needs an id: this entry is unreadable, and anyone's
            continue
        ids.append(entry_id)
        if wanted is not None and entry_id not in wanted:
            continue
        try:
            servers.append(server_from_wire(item, status=status, request_id=request_id))
        except ResponseError as exc:
            unreadable[entry_id] = exc
    has_next, next_marker = _next_marker(body.get("servers_links"), status, request_id)
    last_id = _entry_id(entries[-1]) if entries else None
    return ServerPage(servers, unreadable, anonymous, ids, newest, has_next, next_marker, last_id)


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
