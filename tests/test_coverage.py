"""What a shared listing proves about each watched server: the pure rules, by table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ecs_rebuild_async._coverage import Action, Listing, decide, next_bound, plan_since
from ecs_rebuild_async._models import Server, ServerStatus

T = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)
MARGIN = timedelta(seconds=2)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def srv(server_id: str, updated: datetime | None) -> Server:
    return Server(id=server_id, status=ServerStatus.ACTIVE, updated=updated)


SHOWN = {"shown": srv("shown", at(0))}

# (listing, server, covered, recheck due) -> action
DECISIONS = [
    # Shown: the entry is the observation, whatever else holds.
    (Listing(SHOWN, since=at(-10)), "shown", False, True, Action.OFFER),
    (Listing(SHOWN, since=None, anonymous=3), "shown", True, False, Action.OFFER),
    # Unreadable under its own id: its own read decides (a server, or its typed error).
    (Listing(SHOWN, frozenset({"bad"}), since=at(-10)), "bad", True, False, Action.READ_ALONE),
    # Absent from a complete changes-since listing, covered, seen recently: trusted.
    (Listing(SHOWN, since=at(-10)), "quiet", True, False, Action.TRUST_ABSENCE),
    # ... not if no listing or read has covered it since it was registered,
    (Listing(SHOWN, since=at(-10)), "quiet", False, False, Action.READ_ALONE),
    # ... nor when it has not been shown or read for listing_recheck_after,
    (Listing(SHOWN, since=at(-10)), "quiet", True, True, Action.READ_ALONE),
    # ... nor when an entry without a readable id could be this server,
    (Listing(SHOWN, since=at(-10), anonymous=1), "quiet", True, False, Action.READ_ALONE),
    # ... nor from a listing of every server (absent there means gone: its read tells).
    (Listing(SHOWN, since=None), "quiet", True, False, Action.READ_ALONE),
]


@pytest.mark.parametrize(("listing", "server_id", "covered", "recheck", "expected"), DECISIONS)
def test_decide(
    listing: Listing, server_id: str, covered: bool, recheck: bool, expected: Action
) -> None:
    assert decide(listing, server_id, covered=covered, recheck_due=recheck) is expected


# (bound, acceptance times of uncovered servers) -> changes-since (None: every server)
PLANS = [
    (None, [], None),  # nothing known at all: list every server
    (None, [at(5)], at(3)),  # the acceptance, a margin back
    (None, [at(5), at(1)], at(-1)),  # the earliest of them
    (None, [at(5), None], None),  # one wait knows no time and there is no bound yet
    (at(9), [], at(7)),  # the bound, a margin back
    (at(9), [at(5)], at(3)),  # an earlier acceptance wins
    (at(9), [at(20)], at(7)),  # a Date ahead of the bound does not move it forward
    (at(9), [None], at(7)),  # unknown time, but a bound: its server is read if not shown
    # The start of the calendar: no changes-since can look further back, so none is sent.
    (datetime(1, 1, 1, tzinfo=timezone.utc), [], None),
]


@pytest.mark.parametrize(("bound", "uncovered", "expected"), PLANS)
def test_plan_since(
    bound: datetime | None, uncovered: list[datetime | None], expected: datetime | None
) -> None:
    assert plan_since(bound, uncovered, MARGIN) == expected


def _shown(*updated: datetime | None, date: datetime | None = None) -> Listing:
    """A listing whose entries were last updated at ``updated`` (None: no readable time)."""
    servers = {f"s{i}": srv(f"s{i}", value) for i, value in enumerate(updated)}
    times = [value for value in updated if value is not None]
    return Listing(servers, answered_at=date, newest=max(times, default=None))


# (listing, previous bound, local seconds since it was set) -> next bound
BOUNDS = [
    # The newest `updated` shown, capped by the answer's Date.
    (_shown(at(1), at(4), date=at(6)), None, 0.0, at(4)),
    # A Date that runs ahead of the compute hosts' clocks does not carry the bound past them.
    (_shown(at(1), at(4), date=at(600)), at(0), 5.0, at(4)),
    # A record written by a clock ahead is capped by the Date.
    (_shown(at(1), at(900), date=at(6)), None, 0.0, at(6)),
    # Without a Date: the newest `updated`, never faster than the time passed here.
    (_shown(at(3)), at(0), 10.0, at(3)),
    (_shown(at(900)), at(0), 10.0, at(10)),
    (_shown(at(900)), None, 0.0, at(900)),
    # Nothing shown: nothing to go by, the bound stays (with or without a Date).
    (_shown(date=at(600)), at(2), 30.0, at(2)),
    (_shown(), None, 30.0, None),
    # Entries without an `updated` prove no time.
    (_shown(None, date=at(6)), at(2), 1.0, at(2)),
    # A bound at the end of the calendar caps nothing (and does not overflow).
    (_shown(at(3)), datetime.max.replace(tzinfo=timezone.utc), 10.0, at(3)),
    # Entries of servers nobody watches count too: the listing's newest time is any entry's,
    (Listing({}, answered_at=at(6), newest=at(5)), at(2), 1.0, at(5)),
    # ... when no watched server is shown; else the watched servers' own times come first,
    (Listing(_shown(at(4)).servers, answered_at=at(600), newest=at(900)), None, 0.0, at(4)),
    # ... and without a Date nothing vouches for the others: only the watched servers' count.
    (Listing(_shown(at(3)).servers, newest=at(900)), None, 0.0, at(3)),
    (Listing({}, newest=at(900)), at(2), 1.0, at(2)),
    # A time UTC cannot hold proves nothing.
    (_shown(datetime.max.replace(tzinfo=timezone(-timedelta(hours=23)))), at(2), 1.0, at(2)),
]


@pytest.mark.parametrize(("listing", "previous", "elapsed", "expected"), BOUNDS)
def test_next_bound(
    listing: Listing, previous: datetime | None, elapsed: float, expected: datetime | None
) -> None:
    assert next_bound(listing, previous=previous, elapsed=elapsed) == expected


def test_a_skewed_date_never_makes_the_next_listing_skip_a_change() -> None:
    # The API host's Date runs 10 minutes ahead of the clock `updated` is written with. A
    # server changes one second after each listing; the next listing must still show it.
    bound = None
    skew = timedelta(minutes=10)
    for tick in range(5):
        listing_time = at(tick * 3)
        changed = listing_time - timedelta(seconds=1)
        listing = Listing(
            {"s": srv("s", changed)},
            since=plan_since(bound, [], MARGIN),
            answered_at=listing_time + skew,
            newest=changed,
        )
        bound = next_bound(listing, previous=bound, elapsed=3.0)
        changed_next = listing_time + timedelta(seconds=1)
        since = plan_since(bound, [], MARGIN)
        assert since is not None
        assert since <= changed_next
