"""Choosing a fleet: which servers a search names, as service filters and a client check.

Pure. The service filters what it can (``name`` as a regular expression, ``image``,
``status``, and ``tags`` from microversion 2.26); every server listed is checked again on the
client, because a service may ignore a filter it does not know, and ``metadata`` has no
service filter at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from ._errors import InvalidRequest
from ._microversion import APIVersion
from ._models import Server, ServerStatus

__all__ = ["TAGS_VERSION", "ServerFilter", "make_filter"]

#: Servers show their tags, and listings filter by them, from this microversion on.
TAGS_VERSION = APIVersion(2, 26)


@attrs.frozen
class ServerFilter:
    """Every condition must hold; a condition left out (None) always holds."""

    name: re.Pattern[str] | None = None
    image: str | None = None
    status: ServerStatus | None = None
    metadata: Mapping[str, str] | None = None
    tags: tuple[str, ...] | None = None

    def params(self, version: APIVersion | None) -> dict[str, str]:
        """The query parameters of ``GET /servers/detail`` that ask the service to filter."""
        params: dict[str, str] = {}
        if self.name is not None:
            params["name"] = self.name.pattern
        if self.image is not None:
            params["image"] = self.image
        if self.status is not None:
            params["status"] = self.status.value
        if self.tags and version is not None and version >= TAGS_VERSION:
            params["tags"] = ",".join(self.tags)
        return params

    def __call__(self, server: Server) -> bool:
        if self.name is not None and (server.name is None or not self.name.search(server.name)):
            return False
        if self.image is not None and server.image_id != self.image:
            return False
        if self.status is not None and server.status is not self.status:
            return False
        if self.metadata is not None and any(
            server.metadata.get(key) != value for key, value in self.metadata.items()
        ):
            return False
        return not (self.tags and not set(self.tags) <= set(server.tags or ()))


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string, got {value!r:.40}", field=name)
    return value


def make_filter(
    *,
    name: str | None = None,
    image: str | None = None,
    status: str | ServerStatus | None = None,
    metadata: Mapping[str, str] | None = None,
    tags: Iterable[str] | None = None,
) -> ServerFilter:
    """A checked filter; InvalidRequest names the bad argument."""
    pattern = None
    if name is not None:
        try:
            pattern = re.compile(_text(name, "name"))
        except re.error as exc:
            raise InvalidRequest(f"name is not a regular expression: {exc}", field="name") from None
    if image is not None:
        _text(image, "image")
    wanted_status = None
    if status is not None:
        wanted_status = ServerStatus(_text(status, "status").upper())
        if not wanted_status.known:
            # A status no service shows matches nothing: a typo would choose an empty fleet.
            valid = ", ".join(ServerStatus.__members__)
            raise InvalidRequest(
                f"status {status!r:.40} is not a server status; one of: {valid}", field="status"
            )
    items = None
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise InvalidRequest("metadata must map strings to strings", field="metadata")
        items = dict(metadata)
    wanted_tags = None
    if tags is not None:
        if isinstance(tags, str):
            tags = [tags]
        wanted_tags = tuple(_text(tag, "tags") for tag in tags)
        if any("," in tag for tag in wanted_tags):
            raise InvalidRequest("a tag cannot contain ','", field="tags")
    return ServerFilter(pattern, image, wanted_status, items, wanted_tags)
