"""The chat history's SQLite connection: opening, durability, locking, transactions.

Durability. The database runs in WAL mode with `synchronous=NORMAL`: a commit has been written to the WAL
file (in the OS page cache) before `commit` returns, so a crash or `kill -9` of Tandem loses nothing
committed. Only an OS crash or power cut can drop the last commits that were not yet synced, and even then
the file stays consistent. Finished messages (`add_message`, `finish_reply`, edits, imports) are committed
with `synchronous=FULL`, which syncs the WAL, so they survive a power cut as well; the ~1/s streaming
checkpoints stay on NORMAL to spare the disk an fsync per second. A reply found with status "streaming" when
the database is opened was cut off by a crash: it is marked "interrupted" and keeps the text of its last
checkpoint.

Threads. The GUI uses the history from its own thread only. The connection keeps sqlite3's same-thread
check (`check_same_thread=True`), so a call from another thread fails loudly instead of racing; pass
`check_same_thread=False` only together with your own serialisation. Every read and write also holds an
internal lock, so even then two threads never interleave inside one call.

Several processes may open the same file (SQLite locks it); opening marks every "streaming" reply as
interrupted, so a second Tandem opened while the first is still generating would cut that reply short.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.history.errors import HistorySchemaError
from app.history.fields import fold
from app.history.schema import migrate


class Database:
    """One connection to the history file, with its lock, its transactions and its clock."""

    def __init__(self, path: Path, *, check_same_thread: bool = True) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._last_time = 0.0
        # isolation_level=None: autocommit; every write runs in an explicit BEGIN IMMEDIATE ... COMMIT.
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=check_same_thread)
        try:
            self.conn.execute("PRAGMA busy_timeout = 5000")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            # casefold() so search ignores case beyond ASCII (SQLite's LIKE and lower() only fold A-Z).
            self.conn.create_function("tandem_fold", 1, fold, deterministic=True)
            self.migrated_from = migrate(self.conn, self.path)
            self.interrupted_on_open = self._mark_interrupted()
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise HistorySchemaError(f"{self.path}: cannot open chat history ({e})") from e
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):  # closing must not fail over a statistics refresh
                self.conn.execute("PRAGMA optimize")
            self.conn.close()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection, for queries that must not interleave with another thread's call."""
        with self._lock:
            yield self.conn

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; `durable` syncs the WAL on commit so it survives a power cut, not only a crash."""
        with self._lock:
            conn = self.conn
            if durable:
                conn.execute("PRAGMA synchronous = FULL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous = NORMAL")

    def now(self) -> float:
        # Strictly increasing, so "newest first" is well defined even when two writes share a clock tick.
        with self._lock:
            self._last_time = max(time.time(), self._last_time + 1e-6)
            return self._last_time

    def _mark_interrupted(self) -> list[int]:
        with self.write() as conn:
            rows = conn.execute("SELECT id FROM messages WHERE status = 'streaming' ORDER BY id").fetchall()
            ids = [r[0] for r in rows]
            conn.execute("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'")
        return ids
