"""Tunables of a client, frozen, with the defaults documented in the README.

Every value is checked when the settings are made, so that a bad one fails at once with an
:class:`InvalidRequest` naming the setting, not later (after a rebuild was sent) as a
``TypeError`` inside a poll or as a wait that never ends.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from ._errors import InvalidRequest

__all__ = ["ClientSettings"]


@attrs.frozen
class _Range:
    """An attrs validator: what one setting takes. A number (an int when ``integer``; a bool is
    never one) of at least ``minimum`` (above it when ``above``), at most ``maximum`` (below it
    when ``below``), finite unless ``infinite``; None only when ``optional``."""

    minimum: float
    above: bool = False
    maximum: float = math.inf
    below: bool = False
    integer: bool = False
    infinite: bool = False
    optional: bool = False
    #: What math.inf means, for a setting that takes it.
    infinite_means: str = ""

    def describe(self) -> str:
        kind = "an int" if self.integer else "a number" if self.infinite else "a finite number"
        text = f"{kind} {'above' if self.above else 'of'} {self.minimum:g}"
        if not self.above:
            text += " or more"
        if self.maximum != math.inf:
            text += f" and {'below' if self.below else 'at most'} {self.maximum:g}"
        if self.infinite:
            text += f" (math.inf: {self.infinite_means})"
        return f"None or {text}" if self.optional else text

    def __call__(self, instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and self.optional:
            return
        if not self._holds(value):
            shown = f"{value!r:.40}" if not isinstance(value, int) else _short_int(value)
            raise InvalidRequest(
                f"ClientSettings.{attribute.name} must be {self.describe()}, got {shown}",
                field=attribute.name,
            )

    def _holds(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float: no setting needs one
            return False
        if math.isnan(number) or (math.isinf(number) and not self.infinite):
            return False
        if number < self.minimum or (self.above and number == self.minimum):
            return False
        return number < self.maximum or (number == self.maximum and not self.below)


def _short_int(value: int) -> str:
    text = str(value)
    return text if len(text) <= 20 else f"an int of {len(text)} digits"


def _flag(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(
            f"ClientSettings.{attribute.name} must be True or False, got {value!r:.40}",
            field=attribute.name,
        )


# The kinds of value the settings take.
_SECONDS = _Range(0.0)  # a finite pause or budget; 0 allowed
_POSITIVE_SECONDS = _Range(0.0, above=True)  # a timeout or an interval: 0 would spin or fail
_COUNT = _Range(0, integer=True)
_LIMIT = _Range(1, integer=True)
_WAIT = _Range(0.0, infinite=True, infinite_means="no deadline")


@attrs.frozen(kw_only=True)
class ClientSettings:
    """Timeouts, retry budgets, polling and pacing. Every value is in seconds unless named.

    Pass ``AsyncEcsClient(..., settings=ClientSettings(poll_interval=5))`` to change one. A value
    of the wrong type (a string, a bool for a number), NaN, an infinity (except for
    ``wait_timeout``) or one out of its range is an ``InvalidRequest`` naming the setting.
    """

    # One HTTP request: connecting, and everything until the last byte of the answer.
    connect_timeout: float = attrs.field(default=10.0, validator=_POSITIVE_SECONDS)
    request_timeout: float = attrs.field(default=30.0, validator=_POSITIVE_SECONDS)
    # Connections kept to the service, and requests allowed in flight at once (on the
    # client's own connections, no more than it has: none waits in the connection pool).
    max_connections: int = attrs.field(default=100, validator=_LIMIT)
    max_in_flight: int = attrs.field(default=200, validator=_LIMIT)

    # Safe requests (GET) retry on transport errors, 5xx and 429 within this budget.
    retry_attempts: int = attrs.field(default=6, validator=_COUNT)
    retry_budget: float = attrs.field(default=60.0, validator=_SECONDS)
    backoff_initial: float = attrs.field(default=0.5, validator=_SECONDS)
    backoff_max: float = attrs.field(default=20.0, validator=_SECONDS)
    # Retry-After is obeyed up to this cap (a bad gateway can say "come back in a day").
    retry_after_cap: float = attrs.field(default=60.0, validator=_SECONDS)
    # Used when a 429 carries no Retry-After.
    retry_after_default: float = attrs.field(default=2.0, validator=_SECONDS)

    # Optional ceiling on requests per second to one endpoint (None: no ceiling).
    max_requests_per_second: float | None = attrs.field(
        default=None, validator=_Range(0.0, above=True, optional=True)
    )
    # After a 429 the request rate is cut by this factor (once per burst of refusals), then
    # grows back by ``pacing_recovery`` requests per second for each success (additive
    # increase), never below ``pacing_floor`` requests per second.
    pacing_decrease: float = attrs.field(default=0.5, validator=_Range(0.0, above=True, maximum=1))
    pacing_recovery: float = attrs.field(default=1.0, validator=_SECONDS)
    # A floor of 0 would let the rate fall to nothing: requests would wait for ever.
    pacing_floor: float = attrs.field(default=1.0, validator=_Range(0.0, above=True))

    # After a rebuild request's answer was lost, the server is read, then read again after
    # this pause, before the request may be sent once more (only if proven not carried out).
    reconcile_settle: float = attrs.field(default=1.0, validator=_SECONDS)

    # Waiting for a rebuild: the whole wait is bounded by ``wait_timeout`` (math.inf: waits
    # without a deadline, as a ``timeout=math.inf`` does).
    wait_timeout: float = attrs.field(default=1800.0, validator=_WAIT)
    poll_first_delay: float = attrs.field(default=1.0, validator=_SECONDS)
    poll_interval: float = attrs.field(default=2.0, validator=_POSITIVE_SECONDS)
    poll_interval_max: float = attrs.field(default=15.0, validator=_POSITIVE_SECONDS)
    # Below 1 the interval would shrink towards 0 and the poll would spin.
    poll_growth: float = attrs.field(default=1.2, validator=_Range(1.0))
    # A share of the interval, either way: 1 or more would allow a pause of 0 (or less).
    poll_jitter: float = attrs.field(default=0.1, validator=_Range(0.0, maximum=1, below=True))
    # Many waits share one ``GET /servers/detail?changes-since=...`` per tick once at least
    # this many are in flight; a single wait uses ``GET /servers/{id}``.
    fleet_threshold: int = attrs.field(default=2, validator=_LIMIT)
    # The shared listing's tick. One listing costs the same however many waits it serves, so
    # it comes sooner than one server's poll interval and does not grow: completions are seen
    # about half of this after they happen, for one listing request (or a few pages) per tick
    # while waits are in flight, and never later than ``poll_interval_max``. None: the waits'
    # own growing intervals pace the listing too.
    fleet_poll_interval: float | None = attrs.field(
        default=1.0, validator=_Range(0.0, above=True, optional=True)
    )
    # ``updated`` is rounded to seconds, so each listing looks back this much further.
    changes_since_margin: float = attrs.field(default=2.0, validator=_SECONDS)
    list_page_size: int = attrs.field(default=1000, validator=_LIMIT)
    # A listing that has not ended after this many pages is abandoned (ResponseError): paging
    # that never ends is a service fault, and the poller reads servers on their own instead.
    list_max_pages: int = attrs.field(default=1000, validator=_LIMIT)
    # A watched server that no listing has shown (and no read of its own has seen) for this
    # long is read on its own: a listing can miss a change (a lagging replica, skewed clocks).
    listing_recheck_after: float = attrs.field(default=60.0, validator=_SECONDS)

    # The largest answer read, in bytes (compressed or not), checked while it is read: a
    # bigger (or endless) one is a ResponseError. A page of 1,000 servers is a few megabytes.
    max_answer_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_LIMIT)
    # A compute endpoint from the service catalog on plain http while Keystone is on https is
    # refused (the token would travel in clear) unless this says otherwise.
    allow_http_from_catalog: bool = attrs.field(default=False, validator=_flag)
