"""Schema of the chat history database and its migrations.

The version lives in `PRAGMA user_version` (0 = empty file). `MIGRATIONS[i]` takes a database from version
i to i + 1; a migration is never edited once released, only appended to. All pending migrations run in one
transaction together with the version bump, so a crash mid-migration leaves the old version intact. Before
an existing database is migrated it is copied next to itself (`history.sqlite3.v1.bak`), because a migration
is the one moment the store rewrites data it did not just receive.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from app.history.errors import HistorySchemaError

ROLES = ("system", "user", "assistant")
STATUSES = ("complete", "streaming", "stopped", "interrupted", "error")


def _v1_initial(conn: sqlite3.Connection) -> None:
    # AUTOINCREMENT: ids are never reused, so a stale id held by the GUI (say, of a reply that
    # truncate_after removed) can never hit a newer message that happened to get the same number.
    conn.execute(
        """CREATE TABLE chats (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            settings_json TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    conn.execute(
        f"""CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN {ROLES!r}),
            content TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN {STATUSES!r}),
            created_at REAL NOT NULL,
            settings_json TEXT,
            stats_json TEXT
        )"""
    )
    conn.execute("CREATE INDEX messages_by_chat ON messages(chat_id, id)")


def _v2_soft_delete_and_ab(conn: sqlite3.Connection) -> None:
    # Soft delete backs the GUI's Undo; ab_json holds an A/B comparison attached to a reply.
    conn.execute("ALTER TABLE chats ADD COLUMN deleted_at REAL")
    conn.execute("ALTER TABLE messages ADD COLUMN ab_json TEXT")
    conn.execute("CREATE INDEX chats_by_update ON chats(deleted_at, updated_at)")


def _v3_versions_and_models(conn: sqlite3.Connection) -> None:
    # Regenerate and Edit keep the earlier versions: the messages of a chat form a tree (parent_id), whose
    # path from the root to chats.current_id is the conversation shown; siblings are versions of one turn.
    # Every reply names the model (and drafter) that wrote it. Older rows form a chain and name no model.
    conn.execute(
        "ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE"
    )
    conn.execute("ALTER TABLE messages ADD COLUMN model TEXT")
    conn.execute("ALTER TABLE messages ADD COLUMN drafter TEXT")
    conn.execute("ALTER TABLE chats ADD COLUMN current_id INTEGER")
    conn.execute(
        """UPDATE messages SET parent_id = (SELECT max(p.id) FROM messages p
                                            WHERE p.chat_id = messages.chat_id AND p.id < messages.id)"""
    )
    conn.execute(
        "UPDATE chats SET current_id = (SELECT max(m.id) FROM messages m WHERE m.chat_id = chats.id)"
    )
    conn.execute("CREATE INDEX messages_by_parent ON messages(parent_id)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_initial,
    _v2_soft_delete_and_ab,
    _v3_versions_and_models,
]
CURRENT_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path | None) -> int:
    """Bring the database up to CURRENT_VERSION; return the version it had. `conn` must be in autocommit."""
    found = user_version(conn)
    if found > CURRENT_VERSION:
        raise HistorySchemaError(
            f"{path}: chat history was written by a newer Tandem (schema version {found}; this version reads "
            f"up to {CURRENT_VERSION}). Update Tandem, or move the file aside to start a new history."
        )
    if found == CURRENT_VERSION:
        return found
    if found > 0 and path is not None:
        backup = path.with_name(f"{path.name}.v{found}.bak")
        copy = sqlite3.connect(backup)
        try:
            conn.backup(copy)
        finally:
            copy.close()
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = user_version(conn)  # another process may have migrated while we waited for the lock
        if found < CURRENT_VERSION:
            for migration in MIGRATIONS[found:]:
                migration(conn)
            conn.execute(f"PRAGMA user_version = {CURRENT_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
