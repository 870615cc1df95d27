"""Who may drive a run: the pure rule behind the journal's owner lock (no I/O, no clock)."""

from __future__ import annotations

from collections.abc import Callable

from .records import Owner

__all__ = ["STALE_AFTER", "owner_gone"]

#: A driver on another host whose heartbeat is older than this (seconds) is taken as gone.
#: Drivers beat every few seconds (see the bulk runner), far more often than this.
STALE_AFTER = 60.0


def owner_gone(
    owner: Owner,
    *,
    host: str,
    now: float,
    pid_alive: Callable[[int], bool],
    stale_after: float = STALE_AFTER,
) -> bool:
    """Whether the recorded owner no longer drives the run, so that another may take over.

    On this host the process table decides: a dead pid is gone at once; a live pid with a
    stale heartbeat is a reused pid (a process stopped for longer than ``stale_after`` is
    taken as gone too). On another host only the heartbeat can tell.
    """
    stale = now - owner.heartbeat_at > stale_after
    if owner.host == host:
        return stale or not pid_alive(owner.pid)
    return stale
