"""Microversion headers as Nova reads them (microversion-parse rules) and the version documents."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "Version",
    "VersionError",
    "parse_version_text",
    "requested_version",
    "version_document",
    "versions_document",
]

#: (major, minor); plain tuples keep the per-request comparisons cheap.
Version = tuple[int, int]

_VERSION = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")
_STANDARD = "openstack-api-version"
_LEGACY = "x-openstack-nova-api-version"


class VersionError(Exception):
    """A microversion header Nova would refuse: ``status`` 400 (malformed) or 406 (range)."""

    def __init__(self, status: int, message: str, echoed: Version | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.echoed = echoed


def parse_version_text(text: str) -> Version | None:
    match = _VERSION.match(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def _header_text(headers: Sequence[tuple[str, str]]) -> str | None:
    """The compute version string, standard header first (last ``compute`` entry wins)."""
    standard: list[str] = []
    legacy: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == _STANDARD:
            standard.extend(part.strip() for part in value.split(","))
        elif lowered == _LEGACY:
            legacy.extend(part.strip() for part in value.split(","))
    for entry in reversed(standard):
        service, _, version = entry.partition(" ")
        if service.lower() == "compute":
            return version.strip()
    return legacy[-1] if legacy else None


def requested_version(
    headers: Sequence[tuple[str, str]], minimum: Version, maximum: Version
) -> Version:
    """The version a request asks for; raises VersionError as Nova answers it."""
    text = _header_text(headers)
    if text is None:
        return (2, 1)
    if text == "latest":
        return maximum
    version = parse_version_text(text)
    if version is None:
        raise VersionError(
            400,
            f"API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum.",
            None,
        )
    if not minimum <= version <= maximum:
        raise VersionError(
            406,
            f"Version {version[0]}.{version[1]} is not supported by the API. Minimum is "
            f"{minimum[0]}.{minimum[1]} and maximum is {maximum[0]}.{maximum[1]}.",
            version,
        )
    return version


def _entry(base: str, major: str, minimum: Version, maximum: Version) -> dict[str, Any]:
    if major == "v2.0":
        return {
            "id": "v2.0",
            "links": [{"href": f"{base}/v2/", "rel": "self"}],
            "status": "DEPRECATED",
            "version": "",
            "min_version": "",
            "updated": "2025-07-04T12:00:00Z",
        }
    return {
        "id": "v2.1",
        "links": [{"href": f"{base}/v2.1/", "rel": "self"}],
        "status": "CURRENT",
        "version": f"{maximum[0]}.{maximum[1]}",
        "min_version": f"{minimum[0]}.{minimum[1]}",
        "updated": "2013-07-23T11:33:21Z",
    }


def versions_document(base: str, minimum: Version, maximum: Version) -> dict[str, Any]:
    """``GET /``: both API versions, v2.1 carrying the microversion range."""
    return {"versions": [_entry(base, m, minimum, maximum) for m in ("v2.0", "v2.1")]}


def version_document(base: str, major: str, minimum: Version, maximum: Version) -> dict[str, Any]:
    """``GET /v2.1/`` or ``GET /v2/``: one version with its describedby link and media type."""
    entry = _entry(base, major, minimum, maximum)
    entry["links"].append(
        {"href": "http://docs.openstack.org/", "rel": "describedby", "type": "text/html"}
    )
    suffix = "2" if major == "v2.0" else "2.1"
    entry["media-types"] = [
        {
            "base": "application/json",
            "type": f"application/vnd.openstack.compute+json;version={suffix}",
        }
    ]
    return {"version": entry}
