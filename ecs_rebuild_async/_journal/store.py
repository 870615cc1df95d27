"""The journal's store interface: what the bulk runner needs from durable storage.

Small on purpose, so that another store can follow the SQLite one. A shared database for runs
that span machines (PostgreSQL) maps onto it as: ``claim`` takes the run's owner row
(``SELECT ... FOR UPDATE SKIP LOCKED`` or an advisory lock, with a heartbeat column), and a
later version can claim per server row in ``append`` of an INTENT, so that several workers
share one run; ``append`` is one transaction committed before it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .records import Event, JournalState, RequestRecord, RunRecord, ServerRecord

__all__ = ["JournalStore"]


class JournalStore(Protocol):
    """Durable storage of one run. Every method is safe to call from any task of one loop.

    Contract:

    * ``claim()`` makes this process the run's only driver (``JournalInUse`` if another live
      one is), and returns what is recorded (None for a new, empty journal).
    * ``create()`` records the run, its servers and requests, once, before any event.
    * ``append()`` returns only once the events are durable, in order: an INTENT appended
      before a POST is on disk before the POST leaves. Events of appends made one after the
      other by different tasks are stored in the order of the calls (the store takes them
      before it first awaits), so that a rollout's decisions can be made again in their order.
    * ``heartbeat()`` says the driver is alive; ``release()`` gives the run up (and closes).
    """

    async def claim(self) -> JournalState | None: ...

    async def create(
        self,
        run: RunRecord,
        servers: Sequence[ServerRecord],
        requests: Sequence[RequestRecord],
    ) -> None: ...

    async def append(self, events: Sequence[Event]) -> None: ...

    async def heartbeat(self) -> None: ...

    async def release(self) -> None: ...
