"""The journal's SQLite store through its interface: ownership, durable appends in order,
group commits, and files it cannot use."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import anyio
import pytest

from ecs_rebuild_async import JournalError, JournalInUse
from ecs_rebuild_async._journal import (
    Event,
    EventKind,
    RequestRecord,
    RunRecord,
    ServerRecord,
    SqliteJournal,
    read_journal,
)

pytestmark = pytest.mark.anyio

RUN = RunRecord(run_id="r1", created_at=datetime(2026, 12, 1, tzinfo=timezone.utc), salt="00" * 32)


async def test_claim_create_append_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    store = SqliteJournal(path)
    assert await store.claim() is None
    await store.create(
        RUN, [ServerRecord(0, "s-1", "fp"), ServerRecord(1, "s-2", "fp")], [RequestRecord("fp", {})]
    )
    await store.append([Event(EventKind.INTENT, "s-1", attempt=1)])
    await store.release()
    again = SqliteJournal(path)
    state = await again.claim()
    assert state is not None
    assert state.run == RUN
    assert [s.server_id for s in state.servers] == ["s-1", "s-2"]
    assert [(e.kind, e.server_id, e.attempt) for e in state.events] == [
        (EventKind.INTENT, "s-1", 1)
    ]
    with pytest.raises(JournalError, match="already records a run"):
        await again.create(RUN, [], [])
    await again.release()
    assert os.stat(path).st_mode & 0o777 == 0o600


async def test_concurrent_appends_are_all_written_in_order_with_few_commits(
    tmp_path: Path,
) -> None:
    store = SqliteJournal(tmp_path / "j.sqlite")
    await store.claim()
    await store.create(RUN, [], [])

    async def writer(n: int) -> None:
        for i in range(10):
            await store.append([Event(EventKind.INTENT, f"s-{n}", attempt=i + 1)])

    async with anyio.create_task_group() as group:
        for n in range(20):
            group.start_soon(writer, n)
    commits = store.commits
    await store.release()
    events = read_journal(tmp_path / "j.sqlite").events
    assert len(events) == 200
    for n in range(20):
        # Each writer's records in the order it wrote them.
        assert [e.attempt for e in events if e.server_id == f"s-{n}"] == list(range(1, 11))
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert commits < 200  # appends that waited were committed together


async def test_a_live_owner_keeps_the_run_and_a_gone_one_loses_it(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    first = SqliteJournal(path, host="host-a")
    await first.claim()
    await first.create(RUN, [], [])
    # Another host, while the first beats: refused, and told who has it.
    with pytest.raises(JournalInUse, match="host-a"):
        await SqliteJournal(path, host="host-b").claim()
    # Minutes later with no heartbeat, the first is taken as gone.
    later = SqliteJournal(path, host="host-b", clock=lambda: 10**10)
    assert await later.claim() is not None
    # The first learns it at its next heartbeat, and its release leaves the new owner alone.
    with pytest.raises(JournalInUse, match="taken over"):
        await first.heartbeat()
    await first.release()
    with pytest.raises(JournalInUse, match="host-b"):
        await SqliteJournal(path, host="host-c").claim()
    await later.release()
    await SqliteJournal(path, host="host-c").claim()


async def test_a_dead_owner_on_this_host_is_gone_at_once(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    first = SqliteJournal(path)
    await first.claim()
    # The file as a killed process leaves it: its owner row names a pid that is gone.
    conn = sqlite3.connect(path)
    record = conn.execute("SELECT record FROM owner").fetchone()[0]
    dead = record.replace(f'"pid":{os.getpid()}', '"pid":999999999')
    conn.execute("UPDATE owner SET record = ?", (dead,))
    conn.commit()
    conn.close()
    assert await SqliteJournal(path).claim() is None


async def test_files_that_are_not_journals_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError):
        await SqliteJournal(garbage).claim()
    with pytest.raises(JournalError, match="no journal"):
        read_journal(tmp_path / "missing.sqlite")
    empty = tmp_path / "empty.sqlite"
    store = SqliteJournal(empty)
    await store.claim()
    await store.release()
    with pytest.raises(JournalError, match="records no run"):
        read_journal(empty)
    newer = tmp_path / "newer.sqlite"
    store = SqliteJournal(newer)
    await store.claim()
    await store.create(RUN, [], [])
    await store.release()
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="layout version 99"):
        await SqliteJournal(newer).claim()
