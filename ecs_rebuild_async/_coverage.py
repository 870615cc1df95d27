"""What one shared listing proves about each watched server, and where the next one starts.

Pure, like the lifecycle: no I/O, no clock, no event loop; the poller asks and acts.

A ``GET /servers/detail?changes-since=T`` listing shows every server whose ``updated`` is at or
after ``T``. Absence from such a listing is a proof too ("nothing changed since T"), but only a
weak one, so it is trusted only when all of these hold:

- the listing is complete (every page read, to the last one without a ``next`` link: the
  pager raises otherwise) and none of its entries is an unreadable record without an id (that
  entry could be any server);
- the server has been seen since it was registered, by a listing or a read of its own
  (``covered``): ``T`` may be later than its latest change (a ``Date`` that runs ahead, a lagging
  replica);
- it was shown (or read) recently enough: a change a listing missed is found by a read of its
  own within ``listing_recheck_after`` seconds (``recheck_due``);
- the listing had a changes-since filter: a listing of every server that does not show one is
  a sign that it is gone, which only its own read can tell.

``updated`` is written by the compute hosts' clocks, and ``changes-since`` compared with it;
the ``Date`` header comes from the API host. So the next listing starts from the newest
``updated`` the last one showed (the watched servers' first), a margin further back, capped by
that answer's ``Date`` (or, without one, by the time passed here); a wait's own acceptance time
(a ``Date``) only starts the listing that must show its server, and a server it does not show
is read on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

import attrs

from ._models import Server

__all__ = ["Action", "Listing", "decide", "next_bound", "plan_since"]


@attrs.frozen
class Listing:
    """A complete listing (every page), read entry by entry, for the watched servers."""

    #: The readable entries of watched servers, by id.
    servers: Mapping[str, Server]
    #: Ids of watched servers whose entries could not be read as servers.
    unreadable: frozenset[str] = frozenset()
    #: Entries that could not be read and whose id could not be read either.
    anonymous: int = 0
    #: The changes-since sent (None: every server was listed).
    since: datetime | None = None
    #: The service's ``Date`` of the first page's answer (None: no usable ``Date``).
    answered_at: datetime | None = None
    #: The newest ``updated`` of any entry, watched or not (None: none could be read).
    newest: datetime | None = None


class Action(enum.Enum):
    """What the poller does for one watched server after a listing."""

    OFFER = "offer"  # the listing shows it: that entry is an observation
    READ_ALONE = "read alone"  # read it on its own (GET /servers/{id})
    TRUST_ABSENCE = "trust absence"  # not shown, and that proves it has not changed


def decide(listing: Listing, server_id: str, *, covered: bool, recheck_due: bool) -> Action:
    """The action for ``server_id`` after ``listing`` (see the module's rules)."""
    if server_id in listing.servers:
        return Action.OFFER
    if server_id in listing.unreadable:
        # Its own read says what it is: a server, or a typed error for this wait alone.
        return Action.READ_ALONE
    trusted = covered and not recheck_due and listing.anonymous == 0 and listing.since is not None
    return Action.TRUST_ABSENCE if trusted else Action.READ_ALONE


def plan_since(
    bound: datetime | None, uncovered: Sequence[datetime | None], margin: timedelta
) -> datetime | None:
    """The changes-since to send (None: list every server).

    ``bound`` is the service time from which listings must look (None: not known yet);
    ``uncovered`` the acceptance times of the servers no listing has covered yet (None: a wait
    that does not know when its rebuild was accepted). Such a server that the listing does not
    show is read on its own, so an unknown time needs a listing of every server only while
    there is no bound at all."""
    known = [since for since in uncovered if since is not None]
    if bound is not None:
        known.append(bound)
    elif len(known) < len(uncovered):
        return None
    if not known:
        return None
    try:
        return min(known) - margin
    except OverflowError:  # a time at the start of the calendar: no filter can start earlier
        return None


def _utc(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC; None when it is unknown, or when UTC cannot hold it."""
    if moment is None:
        return None
    try:
        return moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None


def next_bound(listing: Listing, *, previous: datetime | None, elapsed: float) -> datetime | None:
    """Where the listing after ``listing`` must look from (before the margin).

    ``previous`` is the bound ``listing`` was planned with (None: none yet) and ``elapsed`` the
    local seconds since that bound was set. The bound is the newest ``updated`` the listing
    showed: a time of the clock that changes-since is compared with, which the ``Date`` header
    is not (the API host's clock may run ahead of the compute hosts'). The watched servers'
    own times come first (a server nobody waits for may carry any time); a ``Date`` caps the
    bound, and without one it never moves faster than time passes here: one record written by
    a clock far ahead must not carry every later listing past the changes it should show."""
    times = [_utc(server.updated) for server in listing.servers.values()]
    watched = max((moment for moment in times if moment is not None), default=None)
    if listing.answered_at is not None:
        newest = watched if watched is not None else _utc(listing.newest)
        if newest is None:
            # Nothing shown, so nothing to go by: the changes after ``previous`` are ahead.
            return previous
        return min(newest, listing.answered_at)
    if watched is None:
        return previous
    if previous is not None:
        try:
            return min(watched, previous + timedelta(seconds=max(elapsed, 0.0)))
        except OverflowError:  # ``previous`` at the end of the calendar caps nothing
            return watched
    return watched
