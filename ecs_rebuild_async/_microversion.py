"""Compute API microversions: parsing, the fields each version allows, and negotiation.

Pure data and functions; no I/O. The ranges come from Nova's rebuild schemas
(``rebuild``, ``rebuild_v219`` ... ``rebuild_v294``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import attrs

from ._errors import MicroversionError

__all__ = [
    "FIELD_VERSIONS",
    "LIBRARY_MAX",
    "LIBRARY_MIN",
    "APIVersion",
    "VersionRange",
    "negotiate",
    "parse_version",
]

# ASCII digits only, and a bounded count of them: int() refuses very long digit strings.
_VERSION = re.compile(r"([1-9][0-9]{0,8})\.([1-9][0-9]{0,8}|0)")


@functools.total_ordering
@attrs.frozen
class APIVersion:
    """A compute API microversion such as 2.54. Ordered; ``str()`` gives ``"2.54"``."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    # Ordered by hand (functools fills in the other comparisons): attrs' order methods build
    # two tuples through generic helpers on every comparison, and every request compares
    # versions a few times.
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, APIVersion):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)


def parse_version(text: object) -> APIVersion:
    """Parse ``"2.54"`` the way Nova does (``2.01`` is malformed). Raises MicroversionError."""
    if isinstance(text, APIVersion):
        return text
    if not isinstance(text, str):
        raise MicroversionError(
            f"a microversion is a string like '2.54', not {type(text).__name__}"
        )
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        raise MicroversionError(f"malformed microversion {text[:40]!r}: expected 'X.Y' like '2.54'")
    return APIVersion(int(match.group(1)), int(match.group(2)))


@attrs.frozen
class VersionRange:
    """The versions a service offers, from its version document. ``None`` means no
    microversions at all (a legacy ``/v2`` endpoint)."""

    minimum: APIVersion
    maximum: APIVersion

    def __contains__(self, version: object) -> bool:
        return isinstance(version, APIVersion) and self.minimum <= version <= self.maximum

    def __str__(self) -> str:
        return f"{self.minimum}-{self.maximum}"


#: The lowest and highest microversions whose rebuild contract this library knows.
LIBRARY_MIN = APIVersion(2, 1)
LIBRARY_MAX = APIVersion(2, 100)

#: Wire field -> (first version that accepts it, first version that rejects it or None).
#: Two entries are behaviours rather than fields: from 2.93 Nova always reimages the root
#: volume of a volume-backed server (nothing is sent for it), so asking for that needs 2.93
#: and refusing it needs a version below.
FIELD_VERSIONS: dict[str, tuple[APIVersion, APIVersion | None]] = {
    "description": (APIVersion(2, 19), None),
    "key_name": (APIVersion(2, 54), None),
    "user_data": (APIVersion(2, 57), None),
    "personality": (APIVersion(2, 1), APIVersion(2, 57)),
    "trusted_image_certificates": (APIVersion(2, 63), None),
    "hostname": (APIVersion(2, 90), None),
    "reimage_boot_volume": (APIVersion(2, 93), None),
    "no_reimage_boot_volume": (APIVersion(2, 1), APIVersion(2, 93)),
}


def field_allowed(field: str, version: APIVersion) -> bool:
    """Whether the rebuild schema at ``version`` accepts the wire field ``field``."""
    bounds = FIELD_VERSIONS.get(field)
    if bounds is None:
        return True
    first, gone = bounds
    return version >= first and (gone is None or version < gone)


def required_range(fields: Iterable[str]) -> tuple[APIVersion, APIVersion | None]:
    """The [lowest, first-too-high) versions that accept every field in ``fields``."""
    low = LIBRARY_MIN
    high: APIVersion | None = None
    for name in fields:
        bounds = FIELD_VERSIONS.get(name)
        if bounds is None:
            continue
        first, gone = bounds
        low = max(low, first)
        if gone is not None:
            high = gone if high is None else min(high, gone)
    return low, high


def check_fields(fields: Iterable[str], version: APIVersion) -> None:
    """Raise MicroversionError naming the first field that ``version`` does not accept."""
    for name in sorted(fields):
        if field_allowed(name, version):
            continue
        first, gone = FIELD_VERSIONS[name]
        if version < first:
            raise MicroversionError(
                f"field {name!r} needs microversion {first} or later; the request uses {version}",
                field=name,
                required=str(first),
                available=str(version),
            )
        raise MicroversionError(
            f"field {name!r} was removed in microversion {gone}; the request uses {version}",
            field=name,
            required=f"<{gone}",
            available=str(version),
        )


def negotiate(
    fields: Iterable[str],
    service: VersionRange | None,
    *,
    pinned: APIVersion | None = None,
    library_max: APIVersion = LIBRARY_MAX,
) -> APIVersion | None:
    """Pick the microversion for a rebuild whose wire fields are ``fields``.

    Without a pin: the highest version that the library understands, the service offers and
    every field accepts; at least the lowest that the fields need. With a pin: the pin, checked.
    ``service=None`` is a service without microversions (``/v2``): only 2.1 rules apply and the
    result is None (no header is sent). Raises MicroversionError when no version fits.
    """
    names = list(fields)
    low, high = required_range(names)
    if service is None:
        if pinned is not None:
            raise MicroversionError(
                f"microversion {pinned} was pinned but the endpoint has no microversions (a /v2 "
                "endpoint); use the /v2.1 endpoint",
                required=str(pinned),
            )
        check_fields(names, LIBRARY_MIN)
        return None
    if pinned is not None:
        if pinned not in service:
            raise MicroversionError(
                f"microversion {pinned} was pinned but the service offers {service}",
                required=str(pinned),
                available=str(service),
            )
        check_fields(names, pinned)
        return pinned
    top = min(library_max, service.maximum)
    if high is not None:
        top = min(top, APIVersion(high.major, high.minor - 1))
    if top < low or top < service.minimum:
        needing = [n for n in names if not field_allowed(n, service.maximum)]
        named = needing[0] if needing else None
        raise MicroversionError(
            f"the request needs microversion {low}"
            + (f" (for field {named!r})" if named else "")
            + f" but the service offers {service}",
            field=named,
            required=str(low),
            available=str(service),
        )
    return top
