"""The journal in one SQLite file: WAL mode, every commit synced, created mode 0600.

Why a worker thread (``anyio.to_thread``) and not ``aiosqlite``: aiosqlite is built on
asyncio futures, and the library runs under trio as well; the standard library's ``sqlite3``
in a worker thread works under both, with no dependency. One connection serves the run; an
anyio lock lets one thread use it at a time. Appends that arrive while a commit is running
are committed together in the next one (group commit), so fifty rebuilds in flight cost a
few syncs, not fifty.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import attrs

from .._errors import JournalError, JournalInUse
from .._serde import converter
from .ownership import owner_gone
from .records import (
    SCHEMA_VERSION,
    Event,
    JournalState,
    Owner,
    RequestRecord,
    RunRecord,
    ServerRecord,
)

__all__ = ["SqliteJournal", "read_journal"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    fingerprint TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS servers (
    position INTEGER PRIMARY KEY, server_id TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, server_id TEXT, kind TEXT NOT NULL,
    record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_server ON events (server_id, seq);
CREATE TABLE IF NOT EXISTS owner (
    id INTEGER PRIMARY KEY CHECK (id = 1), token TEXT NOT NULL, record TEXT NOT NULL);
"""


def _dump(record: Any) -> str:
    return json.dumps(converter.unstructure(record), sort_keys=True, separators=(",", ":"))


def _load(text: str, cls: type[T]) -> T:
    return converter.structure(json.loads(text), cls)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _create_private(path: Path) -> None:
    """Create the file readable by its owner only, before SQLite opens it (its WAL and shared
    memory files take the database file's mode)."""
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is synced to disk before it returns, so an intent survives a power
        # loss too, not only the death of the process.
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"cannot open the journal {path.name}: {exc}") from None
    return conn


def _read_state(conn: sqlite3.Connection) -> JournalState | None:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if "run" not in meta:
        return None
    version = int(meta.get("schema_version", "0"))
    if version != SCHEMA_VERSION:
        raise JournalError(
            f"the journal has layout version {version}; this library reads {SCHEMA_VERSION}"
        )
    run = _load(meta["run"], RunRecord)
    servers = tuple(
        ServerRecord(position, server_id, fingerprint)
        for position, server_id, fingerprint in conn.execute(
            "SELECT position, server_id, fingerprint FROM servers ORDER BY position"
        )
    )
    requests = {
        fingerprint: _load(record, RequestRecord)
        for fingerprint, record in conn.execute("SELECT fingerprint, record FROM requests")
    }
    events = tuple(
        attrs.evolve(_load(record, Event), seq=seq)
        for seq, record in conn.execute("SELECT seq, record FROM events ORDER BY seq")
    )
    return JournalState(run=run, servers=servers, requests=requests, events=events)


def read_journal(path: str | os.PathLike[str]) -> JournalState:
    """What a journal records, read without taking it over (for ``journal show``)."""
    file = Path(path)
    if not file.is_file():
        raise JournalError(f"no journal at {file.name}")
    conn = _connect(file)
    try:
        state = _read_state(conn)
    except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
        raise JournalError(f"the journal {file.name} cannot be read: {exc}") from None
    finally:
        conn.close()
    if state is None:
        raise JournalError(f"the journal {file.name} records no run")
    return state


@attrs.define
class _Batch:
    events: list[Event] = attrs.Factory(list)
    done: bool = False
    error: BaseException | None = None


class SqliteJournal:
    """A :class:`~ecs_rebuild_async._journal.store.JournalStore` in one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._host = host or socket.gethostname()
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = anyio.Lock()
        self._pending = _Batch()
        self._owner: Owner | None = None
        #: Commits made so far (a group commit counts once), and events written.
        self.commits = 0
        self.events_written = 0

    async def _call(self, func: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise JournalError("the journal is not open")
        async with self._lock:
            return await anyio.to_thread.run_sync(func, conn)

    # -- the store interface --

    async def claim(self) -> JournalState | None:
        def open_and_claim() -> tuple[sqlite3.Connection, JournalState | None, Owner]:
            _create_private(self.path)
            conn = _connect(self.path)
            try:
                owner = self._take_ownership(conn)
                return conn, _read_state(conn), owner
            except BaseException:
                conn.close()
                raise

        try:
            conn, state, owner = await anyio.to_thread.run_sync(open_and_claim)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise JournalError(f"the journal {self.path.name} cannot be used: {exc}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise JournalError(f"the journal {self.path.name} cannot be read: {exc}") from None
        self._conn, self._owner = conn, owner
        return state

    def _take_ownership(self, conn: sqlite3.Connection) -> Owner:
        now = self._clock()
        mine = Owner(
            token=secrets.token_hex(16),
            pid=os.getpid(),
            host=self._host,
            started_at=now,
            heartbeat_at=now,
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT record FROM owner WHERE id = 1").fetchone()
            if row is not None:
                current = _load(row[0], Owner)
                if not owner_gone(current, host=self._host, now=now, pid_alive=_pid_alive):
                    raise JournalInUse(
                        f"the journal {self.path.name} is in use by process {current.pid} on "
                        f"{current.host} (last heartbeat {now - current.heartbeat_at:.0f} s "
                        "ago); one process drives a run at a time"
                    )
            conn.execute(
                "INSERT OR REPLACE INTO owner (id, token, record) VALUES (1, ?, ?)",
                (mine.token, _dump(mine)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return mine

    async def create(
        self,
        run: RunRecord,
        servers: Sequence[ServerRecord],
        requests: Sequence[RequestRecord],
    ) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM meta WHERE key = 'run'").fetchone():
                    raise JournalError(f"the journal {self.path.name} already records a run")
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)), ("run", _dump(run))],
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO requests (fingerprint, record) VALUES (?, ?)",
                    [(r.fingerprint, _dump(r)) for r in requests],
                )
                conn.executemany(
                    "INSERT INTO servers (position, server_id, fingerprint) VALUES (?, ?, ?)",
                    [(s.position, s.server_id, s.fingerprint) for s in servers],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        try:
            await self._call(write)
        except sqlite3.Error as exc:
            raise JournalError(
                f"the journal {self.path.name} could not be written: {exc}"
            ) from None
        self.commits += 1

    async def append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        batch = self._pending
        batch.events.extend(events)
        conn = self._conn
        if conn is None:
            raise JournalError("the journal is not open")
        async with self._lock:
            if batch.done:
                return  # committed by the append that held the lock before this one
            if batch.error is not None:
                raise JournalError(f"the journal could not be written: {batch.error}")
            self._pending = _Batch()

            def write(connection: sqlite3.Connection) -> None:
                try:
                    rows = [(e.server_id, e.kind.value, _dump(e)) for e in batch.events]
                    connection.execute("BEGIN IMMEDIATE")
                    connection.executemany(
                        "INSERT INTO events (server_id, kind, record) VALUES (?, ?, ?)", rows
                    )
                    connection.execute("COMMIT")
                except BaseException as exc:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                    batch.error = exc
                    raise
                batch.done = True

            try:
                await anyio.to_thread.run_sync(write, conn)
            except sqlite3.Error as exc:
                raise JournalError(f"the journal could not be written: {exc}") from None
            self.commits += 1
            self.events_written += len(batch.events)

    async def heartbeat(self) -> None:
        owner = self._owner
        if owner is None:
            return
        self._owner = owner = attrs.evolve(owner, heartbeat_at=self._clock())

        def beat(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE owner SET record = ? WHERE id = 1 AND token = ?",
                (_dump(owner), owner.token),
            )
            return cursor.rowcount

        try:
            beaten = await self._call(beat)
        except sqlite3.Error as exc:
            raise JournalError(
                f"the journal {self.path.name} could not be written: {exc}"
            ) from None
        if beaten == 0:
            # Another process took the run over (this one was stopped for too long): stop.
            raise JournalInUse(f"the journal {self.path.name} was taken over by another process")

    async def release(self) -> None:
        conn, owner = self._conn, self._owner
        if conn is None:
            return
        token = None if owner is None else owner.token

        def give_up(connection: sqlite3.Connection) -> None:
            try:
                connection.execute("DELETE FROM owner WHERE id = 1 AND token = ?", (token,))
            finally:
                connection.close()

        with anyio.CancelScope(shield=True):
            await self._call(give_up)
        self._conn = self._owner = None
