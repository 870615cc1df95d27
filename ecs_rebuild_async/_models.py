"""The attrs models: what a rebuild asks for, what a server looks like, how a rebuild ended.

Serialization rules live in ``_serde``; these classes only hold data and check their own values.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

import attrs

from . import _validation as rules
from ._errors import EcsError, InvalidRequest
from ._microversion import APIVersion, check_fields, required_range
from ._redact import clean_text

_T = TypeVar("_T")

__all__ = [
    "ECS",
    "NOVA",
    "UNSET",
    "Address",
    "Dialect",
    "Fault",
    "Flavor",
    "ImageRef",
    "OutcomeKind",
    "PersonalityFile",
    "RebuildEvent",
    "RebuildOutcome",
    "RebuildRequest",
    "Server",
    "ServerStatus",
    "Unset",
]

logger = logging.getLogger("ecs_rebuild_async")


class Unset(enum.Enum):
    """The type of :data:`UNSET`: a field left out of the request (not the same as ``None``)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


#: A field left out of the request. ``None`` instead sends JSON null (``key_name=None`` removes
#: the key pair, ``user_data=None`` clears the user data).
UNSET: Final = Unset.UNSET


class Dialect(enum.Enum):
    """Whose rules apply: Huawei Cloud / Open Telekom Cloud ECS, or upstream OpenStack Nova."""

    ECS = "ecs"
    NOVA = "nova"


ECS: Final = Dialect.ECS
NOVA: Final = Dialect.NOVA


def as_dialect(value: object) -> Dialect:
    """``ECS`` or ``NOVA``, or its name as a string in any case (``"nova"``, ``"ECS"``), as the
    command line's ``--dialect`` and ``FakeCompute(dialect=...)`` take it."""
    if isinstance(value, Dialect):
        return value
    if isinstance(value, str):
        for dialect in Dialect:
            if value.strip().lower() == dialect.value:
                return dialect
    raise InvalidRequest(
        f"dialect must be ECS or NOVA (or 'ecs' or 'nova'), got {value!r:.40}", field="dialect"
    )


class ServerStatus(str, enum.Enum):
    """A server's status. A status this library does not know is kept, not rejected:
    ``ServerStatus("HARD_REBOOT")`` works, and its ``known`` is False."""

    ACTIVE = "ACTIVE"
    BUILD = "BUILD"
    DELETED = "DELETED"
    ERROR = "ERROR"
    HARD_REBOOT = "HARD_REBOOT"
    MIGRATING = "MIGRATING"
    PASSWORD = "PASSWORD"
    PAUSED = "PAUSED"
    REBOOT = "REBOOT"
    REBUILD = "REBUILD"
    RESCUE = "RESCUE"
    RESIZE = "RESIZE"
    REVERT_RESIZE = "REVERT_RESIZE"
    SHELVED = "SHELVED"
    SHELVED_OFFLOADED = "SHELVED_OFFLOADED"
    SHUTOFF = "SHUTOFF"
    SOFT_DELETED = "SOFT_DELETED"
    SUSPENDED = "SUSPENDED"
    UNKNOWN = "UNKNOWN"
    VERIFY_RESIZE = "VERIFY_RESIZE"

    @classmethod
    def _missing_(cls, value: object) -> ServerStatus | None:
        if not isinstance(value, str):
            return None
        # A status from a newer service: make a member for it rather than fail.
        member = str.__new__(cls, value)
        member._name_ = value
        member._value_ = value
        return member

    @property
    def known(self) -> bool:
        return self._name_ in type(self).__members__

    def __str__(self) -> str:
        return str(self.value)


def _scrubbed_repr(cls: type[_T]) -> type[_T]:
    """The class's repr, scrubbed of known secrets and escaped: it shows the service's text
    (a name, a fault message), which a hostile service may fill with anything."""
    original = cls.__repr__

    def __repr__(self: object) -> str:
        return clean_text(original(self))

    cls.__repr__ = __repr__  # type: ignore[method-assign]  # attrs made the repr; ours scrubs it
    return cls


@_scrubbed_repr
@attrs.frozen
class Fault:
    """Why a server is in ERROR, as the service reports it."""

    message: str
    code: int | None = None
    details: str | None = None
    created: datetime | None = None


@attrs.frozen
class ImageRef:
    """The image a server runs. ``Server.image`` is None for a server booted from a volume."""

    id: str
    links: tuple[Mapping[str, Any], ...] = ()
    properties: Mapping[str, str] | None = None


@attrs.frozen
class Flavor:
    """A flavor in either shape: id and links before 2.47, embedded values from 2.47."""

    id: str | None = None
    links: tuple[Mapping[str, Any], ...] = ()
    original_name: str | None = None
    vcpus: int | None = None
    ram: int | None = None
    disk: int | None = None
    ephemeral: int | None = None
    swap: int | None = None
    extra_specs: Mapping[str, str] | None = None


@attrs.frozen
class Address:
    addr: str
    version: int | None = None
    mac_addr: str | None = None
    type: str | None = None


@_scrubbed_repr
@attrs.frozen
class Server:
    """A server as the service shows it. Fields the library does not know are kept in ``extra``.

    ``admin_pass`` and ``user_data`` are secrets: they never appear in the repr.
    """

    id: str
    status: ServerStatus
    name: str | None = None
    task_state: str | None = None
    vm_state: str | None = None
    power_state: int | None = None
    updated: datetime | None = None
    created: datetime | None = None
    image: ImageRef | None = None
    flavor: Flavor | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    addresses: Mapping[str, tuple[Address, ...]] = attrs.field(factory=dict)
    progress: int | None = None
    fault: Fault | None = None
    tenant_id: str | None = None
    user_id: str | None = None
    host_id: str | None = None
    access_ipv4: str | None = None
    access_ipv6: str | None = None
    disk_config: str | None = None
    key_name: str | None = None
    description: str | None = None
    locked: bool | None = None
    locked_reason: str | None = None
    tags: tuple[str, ...] | None = None
    trusted_image_certificates: tuple[str, ...] | None = None
    hostname: str | None = None
    availability_zone: str | None = None
    launched_at: datetime | None = None
    terminated_at: datetime | None = None
    config_drive: str | None = None
    links: tuple[Mapping[str, Any], ...] = ()
    admin_pass: str | None = attrs.field(default=None, repr=False)
    user_data: str | None = attrs.field(default=None, repr=False)
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def image_id(self) -> str | None:
        return self.image.id if self.image is not None else None


@attrs.frozen
class PersonalityFile:
    """A file injected at rebuild (microversions before 2.57). ``contents`` is raw text or bytes,
    base64-encoded for you; pass ``contents_base64=True`` when the text is already encoded."""

    path: str
    contents: str | bytes = attrs.field(repr=False)
    contents_base64: bool = False


def _no_secret(value: object) -> str:
    return "UNSET" if value is UNSET else ("None" if value is None else "'***'")


@attrs.frozen(kw_only=True)
class RebuildRequest:
    """What to rebuild a server with. Every field but ``image_ref`` may be left out (UNSET).

    Values are checked when the request is made (``InvalidRequest`` names the field); the rules
    that depend on the dialect and the microversion are checked by :meth:`check` before sending.
    ``user_data`` is raw text or bytes and is base64-encoded for you; pass
    ``user_data_base64=True`` when the text is already encoded.
    """

    image_ref: str = attrs.field()
    name: str | Unset = UNSET
    metadata: Mapping[str, str] | Unset = UNSET
    admin_pass: str | Unset = attrs.field(default=UNSET, repr=_no_secret)
    disk_config: Literal["AUTO", "MANUAL"] | Unset = UNSET
    preserve_ephemeral: bool | Unset = UNSET
    key_name: str | Unset | None = UNSET
    user_data: str | bytes | Unset | None = attrs.field(default=UNSET, repr=_no_secret)
    user_data_base64: bool = False
    description: str | Unset | None = UNSET
    personality: Sequence[PersonalityFile] | Unset = UNSET
    trusted_image_certificates: Sequence[str] | Unset | None = UNSET
    hostname: str | Unset = UNSET
    access_ipv4: str | Unset = UNSET
    access_ipv6: str | Unset = UNSET
    #: True: reimage the root volume of a volume-backed server (Nova 2.93+; nothing is sent,
    #: the microversion says it). False: keep the request below 2.93, where Nova does not.
    reimage_boot_volume: bool | Unset = UNSET

    def __attrs_post_init__(self) -> None:
        try:
            self._check_values()
        except InvalidRequest:
            raise
        except EcsError:
            raise
        except Exception as exc:  # a value of a type no rule expected
            raise InvalidRequest(f"invalid rebuild request: {type(exc).__name__}") from None

    def _check_values(self) -> None:
        object.__setattr__(self, "image_ref", rules.check_image_ref(self.image_ref))
        if self.name is not UNSET:
            rules.check_name(self.name, maximum=rules.NOVA_NAME_MAX)
        if self.metadata is not UNSET:
            object.__setattr__(self, "metadata", rules.check_metadata(self.metadata))
        if self.admin_pass is not UNSET and not isinstance(self.admin_pass, str):
            raise InvalidRequest("adminPass must be a string", field="adminPass")
        if self.disk_config is not UNSET:
            rules.check_disk_config(self.disk_config)
        if self.preserve_ephemeral is not UNSET and not isinstance(self.preserve_ephemeral, bool):
            raise InvalidRequest(
                "preserve_ephemeral must be True or False", field="preserve_ephemeral"
            )
        if self.key_name is not UNSET:
            rules.check_key_name(self.key_name)
        if self.reimage_boot_volume is not UNSET and not isinstance(self.reimage_boot_volume, bool):
            raise InvalidRequest(
                "reimage_boot_volume must be True or False", field="reimage_boot_volume"
            )
        if not isinstance(self.user_data_base64, bool):
            raise InvalidRequest("user_data_base64 must be True or False", field="user_data")
        if self.user_data is not UNSET and self.user_data is not None:
            encoded = rules.encode_user_data(self.user_data, already_encoded=self.user_data_base64)
            rules.check_user_data_size(encoded, ecs=False)
        if self.description is not UNSET:
            rules.check_description(self.description)
        if self.personality is not UNSET:
            self._check_personality()
        if self.trusted_image_certificates is not UNSET:
            certs = rules.check_trusted_certificates(self.trusted_image_certificates)
            object.__setattr__(self, "trusted_image_certificates", certs)
        if self.hostname is not UNSET:
            rules.check_hostname(self.hostname)
        if self.access_ipv4 is not UNSET:
            rules.check_access_ipv4(self.access_ipv4)
        if self.access_ipv6 is not UNSET:
            rules.check_access_ipv6(self.access_ipv6)

    def _check_personality(self) -> None:
        files = self.personality
        if isinstance(files, (str, bytes)) or not isinstance(files, Sequence):
            raise InvalidRequest(
                "personality must be a list of PersonalityFile", field="personality"
            )
        for item in files:
            if not isinstance(item, PersonalityFile) or not isinstance(item.path, str):
                raise InvalidRequest(
                    "personality must be a list of PersonalityFile", field="personality"
                )
            if not isinstance(item.contents_base64, bool):
                raise InvalidRequest(
                    "personality contents_base64 must be True or False", field="personality"
                )
            if item.contents_base64:
                rules.check_base64(item.contents, "personality")
            elif not isinstance(item.contents, (str, bytes)):
                raise InvalidRequest(
                    "personality contents must be text or bytes", field="personality"
                )
            if not 1 <= len(item.path) <= 255:
                raise InvalidRequest(
                    "personality path must be 1 to 255 characters", field="personality"
                )
        object.__setattr__(self, "personality", tuple(files))

    # -- what the request needs ----------------------------------------------------------

    def wire_fields(self) -> frozenset[str]:
        """The names of the fields this request sends, as they appear on the wire."""
        present = {"imageRef"}
        for attribute, wire in _WIRE_NAMES.items():
            if getattr(self, attribute) is not UNSET:
                present.add(wire)
        return frozenset(present)

    def version_needs(self) -> frozenset[str]:
        """What the microversion must allow: the wire fields, and ``reimage_boot_volume`` (or
        ``no_reimage_boot_volume``) when the request asks for (or against) it."""
        if self.reimage_boot_volume is UNSET:
            return self.wire_fields()
        extra = "reimage_boot_volume" if self.reimage_boot_volume else "no_reimage_boot_volume"
        return self.wire_fields() | {extra}

    def min_microversion(self) -> APIVersion:
        """The lowest microversion that accepts every field this request sends."""
        return required_range(self.version_needs())[0]

    def check(self, *, dialect: Dialect = ECS, microversion: APIVersion | None = None) -> None:
        """Check the rules of ``dialect`` and of ``microversion`` (None: a ``/v2`` endpoint).

        Raises InvalidRequest or MicroversionError naming the field.
        """
        fields = self.version_needs()
        check_fields(fields, microversion or APIVersion(2, 1))
        if dialect is ECS:
            for attribute, wire in (("preserve_ephemeral", "preserve_ephemeral"),
                                    ("disk_config", "OS-DCF:diskConfig")):  # fmt: skip
                if getattr(self, attribute) is not UNSET:
                    raise InvalidRequest(
                        f"{wire} is not supported by ECS; use dialect=NOVA for upstream Nova",
                        field=wire,
                    )
            if self.name is not UNSET:
                rules.check_name(self.name, maximum=rules.ECS_NAME_MAX)
            if self.admin_pass is not UNSET:
                logger.warning("adminPass is sent, but ECS ignores it (it does not take effect)")
        if self.user_data is not UNSET and self.user_data is not None:
            encoded = rules.encode_user_data(self.user_data, already_encoded=self.user_data_base64)
            rules.check_user_data_size(encoded, ecs=dialect is ECS)
        if self.hostname is not UNSET and microversion is not None:
            rules.check_hostname(self.hostname, microversion)

    def encoded_user_data(self) -> str | Unset | None:
        """``user_data`` as the base64 text sent on the wire (UNSET and None pass through)."""
        if self.user_data is UNSET or self.user_data is None:
            return self.user_data
        return rules.encode_user_data(self.user_data, already_encoded=self.user_data_base64)


#: RebuildRequest attribute -> wire name, for every optional field.
_WIRE_NAMES: Final[dict[str, str]] = {
    "name": "name",
    "metadata": "metadata",
    "admin_pass": "adminPass",
    "disk_config": "OS-DCF:diskConfig",
    "preserve_ephemeral": "preserve_ephemeral",
    "key_name": "key_name",
    "user_data": "user_data",
    "description": "description",
    "personality": "personality",
    "trusted_image_certificates": "trusted_image_certificates",
    "hostname": "hostname",
    "access_ipv4": "accessIPv4",
    "access_ipv6": "accessIPv6",
}


class OutcomeKind(str, enum.Enum):
    """How one server's rebuild in a bulk run ended."""

    OK = "ok"
    FAILED = "failed"  # the server went to ERROR (the fault says why), or was deleted
    TIMED_OUT = "timed_out"
    CONFLICT = "conflict"  # 409: locked, or in a state that cannot be rebuilt
    NOT_FOUND = "not_found"
    INVALID = "invalid"  # refused before sending, or 400 from the service
    UNKNOWN = "unknown"  # the answer was lost and what happened cannot be proven
    ERROR = "error"  # any other service or transport error
    CANCELLED = "cancelled"  # the run was cancelled before this server finished
    SKIPPED = "skipped"  # not rebuilt: it already matched, or a rollout stopped first (reason)
    UNHEALTHY = "unhealthy"  # rebuilt, but its health check never passed within the warmup
    ROLLED_BACK = "rolled_back"  # rebuilt, then rebuilt back to its former image (rollout stop)
    ROLLBACK_FAILED = "rollback_failed"  # rebuilt, and rebuilding it back failed (error says why)


@_scrubbed_repr
@attrs.frozen
class RebuildOutcome:
    """How one server's rebuild ended. ``error`` is the library's typed error when not ``ok``.

    ``submitted`` says whether the rebuild request was (or may have been) sent; ``reason``
    says in words why a server was skipped, found unhealthy or rolled back.
    """

    server_id: str
    ok: bool
    kind: OutcomeKind
    server: Server | None = None
    error: EcsError | None = None
    submitted: bool = False
    reason: str | None = None

    def __str__(self) -> str:
        """One line: ``ok 3f2a... (web-1) ACTIVE image 70a5...`` or the kind and the error."""
        server = self.server
        parts = [self.kind.value, self.server_id]
        if server is not None and server.name:
            parts.append(f"({server.name})")
        if server is not None:
            parts.append(str(server.status))
        if self.error is not None:
            text = " ".join(str(self.error).split())
            parts.append(f"{type(self.error).__name__}: {text}")
        elif server is not None and server.image_id:
            parts.append(f"image {server.image_id}")
        return " ".join(parts)


@_scrubbed_repr
@attrs.frozen
class RebuildEvent:
    """One observed change of a server during a rebuild, for progress displays and logs."""

    server_id: str
    phase: str  # "submitted", "running", "done", "failed", "waiting", ...
    status: ServerStatus | None = None
    task_state: str | None = None
    vm_state: str | None = None
    progress: int | None = None
    updated: datetime | None = None
    elapsed: float = 0.0
