"""Tunables of a client, frozen, with the defaults documented in the README."""

from __future__ import annotations

import attrs

__all__ = ["ClientSettings"]


@attrs.frozen(kw_only=True)
class ClientSettings:
    """Timeouts, retry budgets, polling and pacing. Every value is in seconds unless named.

    Pass ``AsyncEcsClient(..., settings=ClientSettings(poll_interval=5))`` to change one.
    """

    # One HTTP request: connecting, and everything until the last byte of the answer.
    connect_timeout: float = 10.0
    request_timeout: float = 30.0
    # Connections kept to the service, and requests allowed in flight at once.
    max_connections: int = 100
    max_in_flight: int = 200

    # Safe requests (GET) retry on transport errors, 5xx and 429 within this budget.
    retry_attempts: int = 6
    retry_budget: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 20.0
    # Retry-After is obeyed up to this cap (a bad gateway can say "come back in a day").
    retry_after_cap: float = 60.0
    # Used when a 429 carries no Retry-After.
    retry_after_default: float = 2.0

    # Optional ceiling on requests per second to one endpoint (None: no ceiling).
    max_requests_per_second: float | None = None
    # After a 429 the request rate is cut by this factor (once per burst of refusals), then
    # grows back by ``pacing_recovery`` requests per second for each success (additive
    # increase), never below ``pacing_floor`` requests per second.
    pacing_decrease: float = 0.5
    pacing_recovery: float = 1.0
    pacing_floor: float = 1.0

    # After a rebuild request's answer was lost, the server is read, then read again after
    # this pause, before the request may be sent once more (only if proven not carried out).
    reconcile_settle: float = 1.0

    # Waiting for a rebuild: the whole wait is bounded by ``wait_timeout``.
    wait_timeout: float = 1800.0
    poll_first_delay: float = 1.0
    poll_interval: float = 2.0
    poll_interval_max: float = 15.0
    poll_growth: float = 1.2
    poll_jitter: float = 0.1
    # Many waits share one ``GET /servers/detail?changes-since=...`` per tick once at least
    # this many are in flight; a single wait uses ``GET /servers/{id}``.
    fleet_threshold: int = 2
    # The shared listing's tick. One listing costs the same however many waits it serves, so
    # it comes sooner than one server's poll interval and does not grow: completions are seen
    # about half of this after they happen, for one listing request (or a few pages) per tick
    # while waits are in flight, and never later than ``poll_interval_max``. None: the waits'
    # own growing intervals pace the listing too.
    fleet_poll_interval: float | None = 1.0
    # ``updated`` is rounded to seconds, so each listing looks back this much further.
    changes_since_margin: float = 2.0
    list_page_size: int = 1000
    # A listing that has not ended after this many pages is abandoned (ResponseError): paging
    # that never ends is a service fault, and the poller reads servers on their own instead.
    list_max_pages: int = 1000
    # A watched server that no listing has shown (and no read of its own has seen) for this
    # long is read on its own: a listing can miss a change (a lagging replica, skewed clocks).
    listing_recheck_after: float = 60.0

    # The largest answer read, in bytes (compressed or not), checked while it is read: a
    # bigger (or endless) one is a ResponseError. A page of 1,000 servers is a few megabytes.
    max_answer_bytes: int = 64 * 1024 * 1024
    # A compute endpoint from the service catalog on plain http while Keystone is on https is
    # refused (the token would travel in clear) unless this says otherwise.
    allow_http_from_catalog: bool = False

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"ClientSettings.{field.name} must not be negative")
        if (
            min(
                self.max_in_flight,
                self.max_connections,
                self.list_page_size,
                self.list_max_pages,
                self.max_answer_bytes,
            )
            < 1
        ):
            raise ValueError("ClientSettings limits must be at least 1")
