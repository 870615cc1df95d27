"""Counters a test can assert on."""

from __future__ import annotations

from collections import Counter

import attrs

__all__ = ["Stats"]


@attrs.define
class Stats:
    """``requests[(method, route)]``, ``responses[status]``, ``faults[kind]``."""

    requests: Counter[tuple[str, str]] = attrs.Factory(Counter)
    responses: Counter[int] = attrs.Factory(Counter)
    faults: Counter[str] = attrs.Factory(Counter)

    def reset(self) -> None:
        self.requests.clear()
        self.responses.clear()
        self.faults.clear()
