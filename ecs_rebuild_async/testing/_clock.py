"""The fake clock: real wall time at creation, then monotonic time scaled, plus manual steps.

Every state in the fake is computed from this clock at read time, so a fast clock
(``time_scale=50``) or a frozen one (``time_scale=0`` with ``advance()``) needs no
background task.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone
from email.utils import formatdate

__all__ = ["FakeClock", "http_date", "iso_micro", "iso_naive_micro", "iso_seconds", "parse_iso"]


class FakeClock:
    """Fake UTC time in epoch seconds. ``time_scale`` 0 freezes it between ``advance`` calls."""

    def __init__(self, time_scale: float = 1.0, *, start: float | None = None) -> None:
        if time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        self.time_scale = float(time_scale)
        self._wall_base = time.time() if start is None else float(start)
        self._mono_base = time.monotonic()
        self._advanced = 0.0

    def now(self) -> float:
        elapsed = (time.monotonic() - self._mono_base) * self.time_scale
        return self._wall_base + elapsed + self._advanced

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the fake clock only moves forward")
        self._advanced += seconds

    def to_real(self, fake_seconds: float) -> float:
        """Real seconds that ``fake_seconds`` take; a frozen clock makes every wait instant."""
        return fake_seconds / self.time_scale if self.time_scale > 0 else 0.0


def iso_seconds(ts: float) -> str:
    """Nova's ``updated``/``created`` form: truncated to whole seconds, ``Z`` suffix."""
    return _iso_whole(int(ts))


# Listing thousands of servers formats the same few timestamps again and again: cache them.
@functools.lru_cache(maxsize=65536)
def _iso_whole(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def iso_micro(ts: float) -> str:
    """Keystone's ``expires_at`` form, with microseconds."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=65536)
def iso_naive_micro(ts: float) -> str:
    """``OS-SRV-USG:launched_at`` form: no zone, microseconds (as the samples show)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def parse_iso(text: str) -> float | None:
    """Parse ISO 8601 as oslo's ``parse_isotime`` accepts it; no zone means UTC. None if bad."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
