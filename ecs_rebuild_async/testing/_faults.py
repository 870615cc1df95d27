"""Fault injection: scripted per route, drawn by probability (seeded), or decided by a hook."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable

import attrs

from ._aftermath import AFTERMATH_KINDS

__all__ = ["FAULT_KINDS", "FaultPlan", "InjectedFault"]

#: "500"/"503": a 5xx fault instead of the answer (the action is not carried out).
#: "429"/"413": ``overLimit`` with Retry-After (not carried out). "latency": the answer comes
#: late. "lost": the action IS carried out, but the answer never arrives. "other_server": a
#: ``GET /servers/{id}`` is answered with another server's body (a proxy or cache mix-up; on
#: other routes, and in a fake with one server, it changes nothing).
FAULT_KINDS = frozenset({"500", "503", "429", "413", "latency", "lost", "other_server"})
# The faults that spoil an answer after the service acted (see _aftermath).
FAULT_KINDS = FAULT_KINDS | AFTERMATH_KINDS


@attrs.frozen
class InjectedFault:
    """One fault. ``seconds`` is the latency (fake seconds unless ``real``)."""

    kind: str = attrs.field(validator=attrs.validators.in_(FAULT_KINDS))
    seconds: float = 0.0
    real: bool = False
    retry_after: str | None = None


Hook = Callable[[str, str], InjectedFault | str | None]


def _coerce(fault: InjectedFault | str | None) -> InjectedFault | None:
    if fault is None or isinstance(fault, InjectedFault):
        return fault
    return InjectedFault(fault)


@attrs.define
class _Rate:
    fault: InjectedFault
    probability: float
    method: str | None
    route: str | None


class FaultPlan:
    """Which requests get which faults. Scripts win over the hook, the hook over rates."""

    def __init__(self, rng: random.Random, *, retry_after: str = "1") -> None:
        self._rng = rng
        self._scripts: dict[tuple[str, str], deque[InjectedFault | None]] = {}
        self._rates: list[_Rate] = []
        self.hook: Hook | None = None
        #: Retry-After (header and ``retryAfter``) for 429/413 faults without their own.
        self.retry_after = retry_after

    def script(self, method: str, route: str, faults: Iterable[InjectedFault | str | None]) -> None:
        """The next requests to ``(method, route)`` get these faults in order (None: no fault)."""
        queue = self._scripts.setdefault((method.upper(), route), deque())
        queue.extend(_coerce(f) for f in faults)

    def rate(
        self,
        kind: str,
        probability: float,
        *,
        method: str | None = None,
        route: str | None = None,
        seconds: float = 0.0,
        real: bool = False,
        retry_after: str | None = None,
    ) -> None:
        """Each matching request gets fault ``kind`` with this probability (seeded draws)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        fault = InjectedFault(kind, seconds=seconds, real=real, retry_after=retry_after)
        self._rates.append(_Rate(fault, probability, method and method.upper(), route))

    def clear(self) -> None:
        self._scripts.clear()
        self._rates.clear()
        self.hook = None

    def pending(self, method: str, route: str) -> int:
        """Scripted faults not used yet for ``(method, route)``."""
        return len(self._scripts.get((method.upper(), route), ()))

    def pick(self, method: str, route: str) -> InjectedFault | None:
        queue = self._scripts.get((method, route))
        if queue:
            return queue.popleft()
        if self.hook is not None:
            chosen = _coerce(self.hook(method, route))
            if chosen is not None:
                return chosen
        for rate in self._rates:
            if rate.method not in (None, method) or rate.route not in (None, route):
                continue
            if self._rng.random() < rate.probability:
                return rate.fault
        return None
