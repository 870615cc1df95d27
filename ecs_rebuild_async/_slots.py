"""A first-come, first-served bound on requests in flight, light for those queued behind it.

A fleet of 10,000 rebuilds queues thousands of requests behind the bound at once. anyio's
``CapacityLimiter`` holds, for each one queued, an ``Event`` (an asyncio ``Event`` and its
deque), three coroutines and the ``WouldBlock`` exception with its traceback, all of which the
garbage collector walks again and again while they wait. On asyncio a queued request here is
one bare future; on trio anyio's limiter does the work.
"""

from __future__ import annotations

import asyncio
import collections
from types import TracebackType

import anyio

__all__ = ["Slots"]


class Slots:
    """At most ``total`` holders at once (``async with slots:``), served in the order they
    came. A slot freed while someone waits goes straight to the first waiter, so that a
    newcomer cannot take it in between. Whenever a slot is free, no waiter in the queue is
    still waiting (every one left is done: cancelled)."""

    __slots__ = ("_free", "_trio", "_waiters", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._trio: anyio.CapacityLimiter | None = None  # made when first used off asyncio

    async def __aenter__(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio
            if self._trio is None:
                self._trio = anyio.CapacityLimiter(self.total)
            await self._trio.acquire()
            return
        waiters = self._waiters
        # A waiter cancelled while queued stays in the queue, done, until it reaches the front
        # (taking it out of the middle would cost a scan of the queue per cancellation).
        while waiters and waiters[0].done():
            waiters.popleft()
        if self._free > 0 and not waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = loop.create_future()
        waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Given the slot just as it was cancelled: the slot goes on to the next one.
                self._release()
            else:
                # Still queued: done from now on, so that a release passes it over.
                waiter.cancel()
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if _under_asyncio():
            self._release()
            return
        assert self._trio is not None  # taken off asyncio: through anyio's limiter
        self._trio.release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


def _under_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
