"""Odd but legal service behaviour, switched on and off while the fake runs.

Unlike the faults (one request at a time, by script or probability), a quirk is a standing
property of the service in front of the client: a gateway that strips or mangles ``Date``, an
API host whose clock runs ahead of the compute hosts', a paging bug, a stored record that the
client cannot read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ._clock import http_date

__all__ = ["DATE_HEADERS", "PAGING", "DateHeader", "Paging", "Quirks"]

DateHeader = Literal["service", "missing", "garbage"]
#: "service": the fake's clock (plus ``date_skew``); "missing": no ``Date`` header at all (a
#: gateway that strips it); "garbage": a ``Date`` header that is not an HTTP date.
DATE_HEADERS: frozenset[str] = frozenset({"service", "missing", "garbage"})

Paging = Literal["nova", "ignore_marker", "next_to_self"]
#: "nova": ``limit`` and ``marker`` as Nova pages; "ignore_marker": every page is the first one
#: (the ``marker`` is ignored), with a ``next`` link; "next_to_self": a full page's ``next``
#: link is the very request that produced it.
PAGING: frozenset[str] = frozenset({"nova", "ignore_marker", "next_to_self"})

#: What ``corrupt_record`` puts into a server's record by default: metadata values must be
#: strings, so no client can read it as a server.
DEFAULT_CORRUPTION: Mapping[str, Any] = {"metadata": {"count": 3}}

GARBAGE_DATE = "sometime last week"


@attrs.frozen
class Corruption:
    """Fields merged into one server's view; ``in_get`` also spoils its own GET."""

    fields: Mapping[str, Any]
    in_get: bool


@attrs.define
class Quirks:
    """The standing quirks of one fake service (all off by default)."""

    date_header: DateHeader = "service"
    #: Seconds the ``Date`` header runs ahead of the clock the servers' times are written with
    #: (negative: behind).
    date_skew: float = 0.0
    paging: Paging = "nova"
    corrupted: dict[str, Corruption] = attrs.field(factory=dict)

    def date_value(self, now: float) -> str | None:
        """The ``Date`` header to send at fake time ``now`` (None: send none)."""
        if self.date_header == "missing":
            return None
        if self.date_header == "garbage":
            return GARBAGE_DATE
        return http_date(now + self.date_skew)

    def spoil(self, server_id: str, view: dict[str, Any], *, in_listing: bool) -> dict[str, Any]:
        """The view as the service sends it: corrupted if that server's record is."""
        corruption = self.corrupted.get(server_id)
        if corruption is None or not (in_listing or corruption.in_get):
            return view
        return {**view, **corruption.fields}
