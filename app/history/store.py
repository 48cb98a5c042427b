"""Chat history: chats and their messages in a SQLite database in the user's data directory; every version
of every turn is kept (`app.history.versions`). How durable each write is, and which thread may call, is in
`app.history.database`.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from app.history.database import Database
from app.history.errors import ChatImportError, ChatNotFoundError, HistoryError, HistorySchemaError
from app.history.exchange import export_document, parse_chat_document
from app.history.fields import (
    check_choice,
    clean_title,
    fold,
    from_json,
    snippet,
    to_json,
    to_json_or_null,
)
from app.history.formats import DEFAULT_TITLE, render_markdown, suggest_title
from app.history.rows import ChatSummary, StoredMessage
from app.history.schema import ROLES, STATUSES
from app.history.versions import MessageTree
from engine.paths import history_path

__all__ = [
    "ChatImportError",
    "ChatNotFoundError",
    "ChatSummary",
    "HistoryError",
    "HistorySchemaError",
    "HistoryStore",
    "StoredMessage",
    "default_history_path",
    "suggest_title",
]

FINISHED_STATUSES = tuple(s for s in STATUSES if s != "streaming")


def default_history_path() -> Path:
    """`<data dir>/history.sqlite3`; the data dir is $TANDEM_DATA_DIR if set, else the user data dir."""
    return history_path()


class HistoryStore:

    def __init__(self, path: Path | None = None, *, check_same_thread: bool = True) -> None:
        self.path = Path(path) if path is not None else default_history_path()
        self._db = Database(self.path, check_same_thread=check_same_thread)
        self.migrated_from = self._db.migrated_from
        self.interrupted_on_open = self._db.interrupted_on_open

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_chat(self, conn: sqlite3.Connection, chat_id: int) -> None:
        if conn.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,)).fetchone() is None:
            raise ChatNotFoundError(f"no chat with id {chat_id}")

    def _message_chat(self, conn: sqlite3.Connection, message_id: int) -> int:
        row = conn.execute("SELECT chat_id FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise ChatNotFoundError(f"no message with id {message_id}")
        return int(row[0])

    def _touch(self, conn: sqlite3.Connection, chat_id: int) -> None:
        conn.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (self._db.now(), chat_id))

    # ------------------------------------------------------------ chats

    # A chat's summary: its id, title, times, message count and the start of the message shown last (the
    # newest one when the chat has no current message); search adds the first message that matches.
    _SUMMARY = """
        SELECT c.id, c.title, c.created_at, c.updated_at,
               (SELECT count(*) FROM messages m WHERE m.chat_id = c.id),
               coalesce((SELECT substr(m.content, 1, 1000) FROM messages m
                          WHERE m.id = c.current_id AND m.role != 'system'),
                        (SELECT substr(m.content, 1, 1000) FROM messages m
                          WHERE m.chat_id = c.id AND m.role != 'system' ORDER BY m.id DESC LIMIT 1)),
               (SELECT m.content FROM messages m
                 WHERE ?1 IS NOT NULL AND m.chat_id = c.id AND instr(tandem_fold(m.content), ?1) > 0
                 ORDER BY m.id LIMIT 1)
        FROM chats c
    """

    def list_chats(self, search: str | None = None) -> list[ChatSummary]:
        """Chats not deleted, most recently active first; `search` matches title or message text, any case."""
        needle = fold(search.strip()) if search and search.strip() else None
        sql = f"""{self._SUMMARY}
            WHERE c.deleted_at IS NULL
              AND (?1 IS NULL OR instr(tandem_fold(c.title), ?1) > 0
                   OR EXISTS (SELECT 1 FROM messages m
                              WHERE m.chat_id = c.id AND instr(tandem_fold(m.content), ?1) > 0))
            ORDER BY c.updated_at DESC, c.id DESC
        """
        with self._db.read() as conn:
            rows = conn.execute(sql, (needle,)).fetchall()
        return [_summary(r, needle) for r in rows]

    def chat(self, chat_id: int) -> ChatSummary:
        """The summary of one chat, deleted or not."""
        with self._db.read() as conn:
            row = conn.execute(f"{self._SUMMARY} WHERE c.id = ?2", (None, chat_id)).fetchone()
        if row is None:
            raise ChatNotFoundError(f"no chat with id {chat_id}")
        return _summary(row, None)

    def create_chat(self, title: str = DEFAULT_TITLE, settings: dict[str, Any] | None = None) -> int:
        now = self._db.now()
        with self._db.write() as conn:
            cur = conn.execute(
                "INSERT INTO chats (title, created_at, updated_at, settings_json) VALUES (?, ?, ?, ?)",
                (clean_title(title), now, now, to_json(settings or {}, "chat settings")),
            )
        return int(cur.lastrowid or 0)

    def chat_settings(self, chat_id: int) -> dict[str, Any]:
        with self._db.read() as conn:
            row = conn.execute("SELECT settings_json FROM chats WHERE id = ?", (chat_id,)).fetchone()
        if row is None:
            raise ChatNotFoundError(f"no chat with id {chat_id}")
        return from_json(row[0]) or {}

    def set_chat_settings(self, chat_id: int, settings: dict[str, Any]) -> None:
        """Replace the chat's settings (system prompt, sampling, speculative on/off...) as a whole."""
        data = to_json(settings, "chat settings")
        with self._db.write() as conn:
            self._require_chat(conn, chat_id)
            conn.execute("UPDATE chats SET settings_json = ? WHERE id = ?", (data, chat_id))

    def rename_chat(self, chat_id: int, title: str) -> None:
        with self._db.write() as conn:
            self._require_chat(conn, chat_id)
            conn.execute("UPDATE chats SET title = ? WHERE id = ?", (clean_title(title), chat_id))

    def delete_chat(self, chat_id: int) -> None:
        """Hide the chat (soft delete); `restore_chat` undoes it, `purge_deleted` removes it for good."""
        with self._db.write() as conn:
            self._require_chat(conn, chat_id)
            conn.execute("UPDATE chats SET deleted_at = ? WHERE id = ?", (self._db.now(), chat_id))

    def restore_chat(self, chat_id: int) -> None:
        with self._db.write() as conn:
            self._require_chat(conn, chat_id)
            conn.execute("UPDATE chats SET deleted_at = NULL WHERE id = ?", (chat_id,))

    def deleted_chats(self) -> list[int]:
        """Ids of soft-deleted chats, most recently deleted first."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT id FROM chats WHERE deleted_at IS NOT NULL ORDER BY deleted_at DESC, id DESC"
            ).fetchall()
        return [r[0] for r in rows]

    def purge_deleted(self, older_than_s: float = 0.0) -> int:
        """Remove chats deleted at least `older_than_s` seconds ago, with their messages; return how many."""
        cutoff = time.time() - older_than_s
        with self._db.write() as conn:
            cur = conn.execute("DELETE FROM chats WHERE deleted_at <= ?", (cutoff,))
        return cur.rowcount

    # ------------------------------------------------------------ messages

    _COLUMNS = (
        "id, chat_id, role, content, status, created_at, settings_json, stats_json, ab_json, parent_id, "
        "model, drafter"
    )

    def messages(self, chat_id: int) -> list[StoredMessage]:
        """The conversation shown: the current version of every turn, first to last."""
        tree, rows, current = self._tree(chat_id)
        return [self._stored(rows[i], tree) for i in tree.path(current)]

    def all_messages(self, chat_id: int) -> list[StoredMessage]:
        """Every message of the chat, every version of every turn, oldest first."""
        tree, rows, _ = self._tree(chat_id)
        return [self._stored(row, tree) for row in rows.values()]

    def current_message(self, chat_id: int) -> int | None:
        """The last message of the conversation shown (None: the chat is empty)."""
        tree, _, current = self._tree(chat_id)
        path = tree.path(current)
        return path[-1] if path else None

    def _tree(self, chat_id: int) -> tuple[MessageTree, dict[int, tuple[Any, ...]], int | None]:
        with self._db.read() as conn:
            self._require_chat(conn, chat_id)
            rows = conn.execute(
                f"SELECT {self._COLUMNS} FROM messages WHERE chat_id = ? ORDER BY id", (chat_id,)
            ).fetchall()
            current = self._current(conn, chat_id)
        by_id = {r[0]: r for r in rows}
        return MessageTree((r[0], r[9]) for r in rows), by_id, current

    @staticmethod
    def _stored(r: tuple[Any, ...], tree: MessageTree) -> StoredMessage:
        version = tree.version(r[0])
        return StoredMessage(
            id=r[0],
            chat_id=r[1],
            role=r[2],
            content=r[3],
            status=r[4],
            created_at=r[5],
            settings=from_json(r[6]),
            stats=from_json(r[7]),
            ab=from_json(r[8]),
            parent_id=r[9],
            model=r[10],
            drafter=r[11],
            version=version.index,
            n_versions=version.count,
        )

    def versions(self, message_id: int) -> list[int]:
        """The ids of every version of this message's turn (itself included), oldest first."""
        with self._db.read() as conn:
            chat_id = self._message_chat(conn, message_id)
        tree, _, _ = self._tree(chat_id)
        return list(tree.version(message_id).siblings)

    def show_version(self, message_id: int) -> None:
        """Show this version of its turn, and below it the newest of the replies that followed it."""
        with self._db.write(durable=False) as conn:
            chat_id = self._message_chat(conn, message_id)
            leaf = _tree(conn, chat_id).latest_leaf(message_id)
            conn.execute("UPDATE chats SET current_id = ? WHERE id = ?", (leaf, chat_id))

    def add_message(
        self,
        chat_id: int,
        role: str,
        content: str,
        settings: dict[str, Any] | None = None,
        stats: dict[str, Any] | None = None,
        status: str = "complete",
    ) -> int:
        check_choice(role, ROLES, "role")
        check_choice(status, STATUSES, "status")
        with self._db.write() as conn:
            self._require_chat(conn, chat_id)
            parent = self._current(conn, chat_id)
            message_id = self._insert_message(
                conn, chat_id, role, content, status, settings, stats, parent=parent
            )
            self._advance(conn, chat_id, message_id)
        return message_id

    def add_version(self, message_id: int, content: str) -> int:
        """A new version of a message (an edit): same turn, same role and settings, shown from now on. The
        old version and the replies that followed it are kept."""
        with self._db.write() as conn:
            chat_id = self._message_chat(conn, message_id)
            role, status, settings, parent = conn.execute(
                "SELECT role, status, settings_json, parent_id FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            new_id = self._insert_message(
                conn, chat_id, role, content, "complete" if status == "streaming" else status,
                from_json(settings), None, parent=parent,
            )  # fmt: skip
            self._advance(conn, chat_id, new_id)
        return new_id

    def _current(self, conn: sqlite3.Connection, chat_id: int) -> int | None:
        row = conn.execute(
            """SELECT coalesce(c.current_id, (SELECT max(m.id) FROM messages m WHERE m.chat_id = c.id))
               FROM chats c WHERE c.id = ?""",
            (chat_id,),
        ).fetchone()
        return None if row is None else row[0]

    def _advance(self, conn: sqlite3.Connection, chat_id: int, message_id: int) -> None:
        """`message_id` is the chat's newest turn: show it, and mark the chat active."""
        conn.execute(
            "UPDATE chats SET current_id = ?, updated_at = ? WHERE id = ?",
            (message_id, self._db.now(), chat_id),
        )

    def _insert_message(
        self,
        conn: sqlite3.Connection,
        chat_id: int,
        role: str,
        content: str,
        status: str,
        settings: dict[str, Any] | None,
        stats: dict[str, Any] | None,
        ab: dict[str, Any] | None = None,
        created_at: float | None = None,
        *,
        parent: int | None,
        model: str | None = None,
        drafter: str | None = None,
    ) -> int:
        if not isinstance(content, str):
            raise TypeError(f"message content must be str, got {type(content).__name__}")
        cur = conn.execute(
            """INSERT INTO messages (chat_id, role, content, status, created_at, settings_json, stats_json,
                                     ab_json, parent_id, model, drafter)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                chat_id,
                role,
                content,
                status,
                self._db.now() if created_at is None else created_at,
                to_json_or_null(settings, "message settings"),
                to_json_or_null(stats, "message stats"),
                to_json_or_null(ab, "A/B result"),
                parent,
                model,
                drafter,
            ),
        )
        return int(cur.lastrowid or 0)

    def update_message_content(self, message_id: int, content: str) -> None:
        """Replace a message's text (editing a user message); its status and stats are kept."""
        with self._db.write() as conn:
            chat_id = self._message_chat(conn, message_id)
            conn.execute("UPDATE messages SET content = ? WHERE id = ?", (content, message_id))
            self._touch(conn, chat_id)

    def begin_reply(
        self,
        chat_id: int,
        settings: dict[str, Any] | None = None,
        *,
        after: int | None = None,
        model: str | None = None,
        drafter: str | None = None,
    ) -> int:
        """Start an assistant message with status "streaming" and no text yet; return its id. It follows the
        current message, or `after` (Regenerate: a new version of the reply to that message)."""
        with self._db.write() as conn:
            self._require_chat(conn, chat_id)
            parent = self._current(conn, chat_id) if after is None else after
            if after is not None and self._message_chat(conn, after) != chat_id:
                raise ChatNotFoundError(f"message {after} is not in chat {chat_id}")
            message_id = self._insert_message(
                conn, chat_id, "assistant", "", "streaming", settings, None, parent=parent, model=model,
                drafter=drafter,
            )  # fmt: skip
            self._advance(conn, chat_id, message_id)
        return message_id

    def checkpoint_reply(self, message_id: int, content: str) -> None:
        """Save the text streamed so far (call about once a second). Committed, so a crash keeps it.

        A checkpoint that arrives after the reply was finished, or removed by truncate_after, does nothing."""
        with self._db.write(durable=False) as conn:
            conn.execute(
                "UPDATE messages SET content = ? WHERE id = ? AND status = 'streaming'", (content, message_id)
            )

    def finish_reply(
        self,
        message_id: int,
        content: str,
        stats: dict[str, Any] | None,
        status: str = "complete",
        *,
        drafter: str | None = None,
    ) -> None:
        """`drafter`: the drafter the engine reported at the end (None: the one given to begin_reply)."""
        check_choice(status, FINISHED_STATUSES, "final status")
        stats_json = to_json_or_null(stats, "message stats")
        with self._db.write() as conn:
            chat_id = self._message_chat(conn, message_id)
            conn.execute(
                """UPDATE messages SET content = ?, stats_json = ?, status = ?, drafter = coalesce(?, drafter)
                   WHERE id = ?""",
                (content, stats_json, status, drafter, message_id),
            )
            self._touch(conn, chat_id)

    def set_ab_result(self, message_id: int, ab: dict[str, Any]) -> None:
        data = to_json(ab, "A/B result")
        with self._db.write() as conn:
            self._message_chat(conn, message_id)
            conn.execute("UPDATE messages SET ab_json = ? WHERE id = ?", (data, message_id))

    def truncate_after(self, chat_id: int, message_id: int, inclusive: bool = False) -> None:
        """Delete every message that follows `message_id`, in every version (and that message too if
        `inclusive`); the conversation shown then ends at it (or at the message it followed)."""
        with self._db.write() as conn:
            if self._message_chat(conn, message_id) != chat_id:
                raise ChatNotFoundError(f"message {message_id} is not in chat {chat_id}")
            tree = _tree(conn, chat_id)
            gone = tree.descendants(message_id) + ([message_id] if inclusive else [])
            conn.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in sorted(gone, reverse=True)])
            current = tree.parent.get(message_id) if inclusive else message_id
            conn.execute("UPDATE chats SET current_id = ? WHERE id = ?", (current, chat_id))
            self._touch(conn, chat_id)

    # ------------------------------------------------------------ export / import

    def export_json(self, chat_id: int) -> dict[str, Any]:
        """The chat as the exchange document (`exchange.export_document` says what it holds)."""
        summary, messages = self.chat(chat_id), self.all_messages(chat_id)
        return export_document(summary, messages, self.current_message(chat_id), self.chat_settings(chat_id))

    def export_markdown(self, chat_id: int) -> str:
        return render_markdown(self.export_json(chat_id))

    def import_json(self, data: dict[str, Any] | str | bytes) -> int:
        """Add an exported chat (the document, or its JSON text) as a new chat; return its id.

        Raises ChatImportError (a ValueError) naming the bad field; nothing is written unless all is valid."""
        chat = parse_chat_document(data)
        now = self._db.now()
        with self._db.write() as conn:
            cur = conn.execute(
                """INSERT INTO chats (title, created_at, updated_at, settings_json) VALUES (?, ?, ?, ?)""",
                (
                    chat.title,
                    chat.created_at if chat.created_at is not None else now,
                    chat.updated_at if chat.updated_at is not None else now,
                    to_json(chat.settings, "chat settings"),
                ),
            )
            chat_id = int(cur.lastrowid or 0)
            ids: list[int] = []
            for m in chat.messages:
                parent = ids[m.parent] if m.parent is not None else None
                ids.append(
                    self._insert_message(
                        conn, chat_id, m.role, m.content, m.status, m.settings, m.stats, m.ab, m.created_at,
                        parent=parent, model=m.model, drafter=m.drafter,
                    )  # fmt: skip
                )
            current = ids[chat.current] if chat.current is not None else None
            conn.execute("UPDATE chats SET current_id = ? WHERE id = ?", (current, chat_id))
        return chat_id


# ---------------------------------------------------------------- helpers


def _tree(conn: sqlite3.Connection, chat_id: int) -> MessageTree:
    return MessageTree(conn.execute("SELECT id, parent_id FROM messages WHERE chat_id = ?", (chat_id,)))


def _summary(r: tuple[Any, ...], needle: str | None) -> ChatSummary:
    """A row of `HistoryStore._SUMMARY`; the preview shows the search's match when there is one."""
    preview = snippet(r[6], needle) if r[6] is not None else snippet(r[5] or "", None)
    return ChatSummary(r[0], r[1], r[2], r[3], r[4], preview)
