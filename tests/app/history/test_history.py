"""Chat history store: CRUD, search, soft delete, streaming, crash safety, migrations, versions, titles.

Export and import are in test_exchange.py."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import pytest

from app.history.schema import CURRENT_VERSION
from app.history.store import (
    ChatNotFoundError,
    HistorySchemaError,
    HistoryStore,
    default_history_path,
    suggest_title,
)
from tests import REPO_ROOT
from tests.app.history.conftest import generation_stats

# ---------------------------------------------------------------- basics


def test_default_path_honours_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "elsewhere"))
    assert default_history_path() == tmp_path / "elsewhere" / "history.sqlite3"
    monkeypatch.delenv("TANDEM_DATA_DIR")
    assert default_history_path().name == "history.sqlite3"
    assert default_history_path().parent.name == "tandem"


def test_opens_in_wal_mode_with_foreign_keys_at_current_version(store: HistoryStore, db_path: Path) -> None:
    conn = store._db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL between durable commits
    assert conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
    assert store.migrated_from == 0 and db_path.exists()


def test_chat_crud(store: HistoryStore) -> None:
    chat = store.create_chat("  First\nchat ", {"system_prompt": "Be brief.", "speculative": True})
    assert store.chat(chat).title == "First chat"
    assert store.chat_settings(chat) == {"system_prompt": "Be brief.", "speculative": True}
    store.set_chat_settings(chat, {"system_prompt": "Be thorough.", "temperature": 0.2})
    assert store.chat_settings(chat) == {"system_prompt": "Be thorough.", "temperature": 0.2}
    store.rename_chat(chat, "Renamed")
    assert [c.title for c in store.list_chats()] == ["Renamed"]

    u = store.add_message(chat, "user", "Hello")
    a = store.add_message(chat, "assistant", "Hi!", settings={"temperature": 0.2}, stats={"n_generated": 2})
    store.update_message_content(u, "Hello there")
    msgs = store.messages(chat)
    assert [(m.id, m.role, m.content, m.status) for m in msgs] == [
        (u, "user", "Hello there", "complete"),
        (a, "assistant", "Hi!", "complete"),
    ]
    assert msgs[1].settings == {"temperature": 0.2} and msgs[1].stats == {"n_generated": 2}
    assert msgs[0].settings is None and msgs[0].ab is None
    summary = store.list_chats()[0]
    assert summary.n_messages == 2 and summary.preview == "Hi!"

    store.set_ab_result(a, {"winner": "speculative", "speedup": 1.8})
    assert store.messages(chat)[1].ab == {"winner": "speculative", "speedup": 1.8}


def test_bad_arguments_raise_typed_errors(store: HistoryStore) -> None:
    chat = store.create_chat()
    with pytest.raises(ChatNotFoundError, match="no chat with id 999"):
        store.add_message(999, "user", "x")
    with pytest.raises(ChatNotFoundError):
        store.messages(999)
    with pytest.raises(ChatNotFoundError, match="no message with id 999"):
        store.finish_reply(999, "x", None)
    with pytest.raises(ValueError, match="role must be one of"):
        store.add_message(chat, "bot", "x")
    with pytest.raises(TypeError, match="JSON-serialisable"):
        store.set_chat_settings(chat, {"path": Path("/x")})
    assert store.messages(chat) == []


def test_list_is_newest_activity_first(store: HistoryStore) -> None:
    old = store.create_chat("old")
    new = store.create_chat("new")
    assert [c.id for c in store.list_chats()] == [new, old]
    store.add_message(old, "user", "bump")
    assert [c.id for c in store.list_chats()] == [old, new]


def test_search_matches_title_and_text_case_insensitively(store: HistoryStore) -> None:
    cooking = store.create_chat("Cooking ideas")
    travel = store.create_chat("Trip")
    store.add_message(travel, "user", "Which École in Lyon? " + "filler " * 40 + "The KEYWORD is here.")
    store.create_chat("Empty")
    assert [c.id for c in store.list_chats("cooking")] == [cooking]
    assert [c.id for c in store.list_chats("école")] == [travel]  # non-ASCII case folding
    found = store.list_chats("keyword")
    assert [c.id for c in found] == [travel]
    assert "KEYWORD" in found[0].preview and len(found[0].preview) <= 120
    assert store.list_chats("nothing like this") == []
    assert len(store.list_chats("   ")) == 3  # blank search lists everything
    assert store.list_chats("100%") == []  # LIKE wildcards mean nothing here


def test_soft_delete_restore_and_purge(store: HistoryStore) -> None:
    keep = store.create_chat("keep")
    gone = store.create_chat("gone")
    store.add_message(gone, "user", "secret words")
    store.delete_chat(gone)
    assert [c.id for c in store.list_chats()] == [keep]
    assert store.list_chats("secret") == []
    assert store.deleted_chats() == [gone]
    assert [m.content for m in store.messages(gone)] == ["secret words"]  # still there for Undo

    store.restore_chat(gone)
    assert {c.id for c in store.list_chats()} == {keep, gone}

    store.delete_chat(gone)
    assert store.purge_deleted(older_than_s=3600) == 0  # deleted just now: kept
    assert store.purge_deleted() == 1
    with pytest.raises(ChatNotFoundError):
        store.messages(gone)
    assert store._db.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0  # cascaded


# ---------------------------------------------------------------- streaming


def test_begin_checkpoint_finish(store: HistoryStore) -> None:
    chat = store.create_chat()
    store.add_message(chat, "user", "Count to three")
    reply = store.begin_reply(chat, settings={"temperature": 0.0, "speculative": True})
    first = store.messages(chat)[-1]
    assert (first.role, first.status, first.content) == ("assistant", "streaming", "")
    assert first.settings == {"temperature": 0.0, "speculative": True}

    store.checkpoint_reply(reply, "One,")
    assert store.messages(chat)[-1].content == "One,"
    stats = asdict(generation_stats())
    store.finish_reply(reply, "One, two, three.", stats, status="stopped")
    done = store.messages(chat)[-1]
    assert (done.content, done.status) == ("One, two, three.", "stopped")
    assert done.stats == json.loads(json.dumps(stats))

    store.checkpoint_reply(reply, "late checkpoint")  # a straggler after finish must not clobber the reply
    assert store.messages(chat)[-1].content == "One, two, three."
    with pytest.raises(ValueError, match="final status"):
        store.finish_reply(reply, "x", None, status="streaming")


def test_reopening_marks_streaming_reply_interrupted(db_path: Path) -> None:
    with HistoryStore(db_path) as s:
        chat = s.create_chat()
        done = s.add_message(chat, "user", "hi")
        reply = s.begin_reply(chat)
        s.checkpoint_reply(reply, "partial")
        assert s.interrupted_on_open == []
    with HistoryStore(db_path) as s:
        assert s.interrupted_on_open == [reply]
        by_id = {m.id: m for m in s.messages(chat)}
        assert by_id[reply].status == "interrupted" and by_id[reply].content == "partial"
        assert by_id[done].status == "complete"


def test_truncate_after_for_regenerate_and_edit(store: HistoryStore) -> None:
    chat = store.create_chat()
    ids = [store.add_message(chat, role, f"m{i}") for i, role in enumerate(["user", "assistant"] * 3)]
    store.truncate_after(chat, ids[3])
    assert [m.id for m in store.messages(chat)] == ids[:4]
    store.truncate_after(chat, ids[3], inclusive=True)  # regenerate the last reply
    assert [m.id for m in store.messages(chat)] == ids[:3]
    new = store.begin_reply(chat)
    assert new > max(ids)  # ids are never reused, so stale ids cannot hit new messages
    store.checkpoint_reply(ids[5], "stale")  # removed message: nothing happens
    assert store.messages(chat)[-1].content == ""
    other = store.create_chat()
    with pytest.raises(ChatNotFoundError, match="not in chat"):
        store.truncate_after(other, ids[0])


def test_same_thread_check_is_on_by_default(store: HistoryStore) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            store.list_chats()
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)


# ---------------------------------------------------------------- crash safety

CHILD = r"""
import sys
from pathlib import Path
from app.history.store import HistoryStore

store = HistoryStore(Path(sys.argv[1]))
chat = store.create_chat("crash test", {"system_prompt": "none"})
for i in range(4):
    store.add_message(chat, "user" if i % 2 == 0 else "assistant", f"committed {i}", stats={"i": i})
reply = store.begin_reply(chat, {"temperature": 0.7})
print("BEGIN", chat, reply, flush=True)
text = ""
i = 0
while True:
    text += f"<{i}>" + "x" * int(sys.argv[2])
    store.checkpoint_reply(reply, text)
    print("CKPT", i, flush=True)
    i += 1
"""


def checkpoint_text(k: int, pad: int) -> str:
    return "".join(f"<{i}>" + "x" * pad for i in range(k + 1))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("kill_after", "pad"), [(3, 10), (60, 10), (40, 5000)])
def test_kill_9_mid_stream_keeps_committed_messages_and_last_checkpoint(
    db_path: Path, kill_after: int, pad: int
) -> None:
    db_path.parent.mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path), str(pad)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        begin = proc.stdout.readline().split()
        assert begin[:1] == ["BEGIN"], proc.stderr.read() if proc.stderr else ""
        chat, reply = int(begin[1]), int(begin[2])
        last = -1
        while last < kill_after:
            line = proc.stdout.readline()
            assert line.startswith("CKPT"), f"child stopped early: {line!r}"
            last = int(line.split()[1])
        proc.kill()  # SIGKILL: no cleanup, no close(), possibly in the middle of a commit
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode != 0

    with HistoryStore(db_path) as store:
        assert store._db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        msgs = store.messages(chat)
        assert [(m.role, m.content, m.stats) for m in msgs[:4]] == [
            ("user", "committed 0", {"i": 0}),
            ("assistant", "committed 1", {"i": 1}),
            ("user", "committed 2", {"i": 2}),
            ("assistant", "committed 3", {"i": 3}),
        ]
        assert [m.status for m in msgs[:4]] == ["complete"] * 4
        interrupted = msgs[4]
        assert (interrupted.id, interrupted.status) == (reply, "interrupted")
        assert store.interrupted_on_open == [reply]
        assert interrupted.settings == {"temperature": 0.7}
        # The child may have committed more checkpoints after the one it reported; the text must be exactly
        # one of its checkpoints, and not older than the last one it reported.
        k = interrupted.content.count("<") - 1
        assert k >= last
        assert interrupted.content == checkpoint_text(k, pad)


# ---------------------------------------------------------------- migrations

V1_SCHEMA = """
CREATE TABLE chats (
    id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, settings_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('complete', 'streaming', 'stopped', 'interrupted', 'error')),
    created_at REAL NOT NULL, settings_json TEXT, stats_json TEXT
);
CREATE INDEX messages_by_chat ON messages(chat_id, id);
INSERT INTO chats VALUES (1, 'Old chat', 100.0, 200.0, '{"system_prompt": "v1"}');
INSERT INTO messages VALUES (1, 1, 'user', 'question', 'complete', 150.0, NULL, NULL);
INSERT INTO messages VALUES (2, 1, 'assistant', 'half an answ', 'streaming', 160.0, '{"top_k": 40}', NULL);
PRAGMA user_version = 1;
"""


def test_migrates_v1_database_to_current(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.executescript(V1_SCHEMA)
    conn.close()

    with HistoryStore(db_path) as store:
        assert store.migrated_from == 1
        assert store._db.conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
        [chat] = store.list_chats()
        assert (chat.id, chat.title, chat.created_at, chat.updated_at) == (1, "Old chat", 100.0, 200.0)
        assert store.chat_settings(1) == {"system_prompt": "v1"}
        q, a = store.messages(1)
        assert (q.content, q.ab, a.content, a.status, a.settings) == (
            "question", None, "half an answ", "interrupted", {"top_k": 40},
        )  # fmt: skip
        store.set_ab_result(a.id, {"winner": "plain"})  # v2 columns work
        store.delete_chat(1)
        assert store.list_chats() == []

    backup = db_path.with_name("history.sqlite3.v1.bak")
    old = sqlite3.connect(backup)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 1
    assert old.execute("SELECT content, status FROM messages WHERE id = 2").fetchone() == (
        "half an answ", "streaming",
    )  # fmt: skip
    old.close()
    with HistoryStore(db_path) as store:  # reopening at the current version migrates nothing
        assert store.migrated_from == CURRENT_VERSION


def test_newer_schema_or_foreign_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    conn = sqlite3.connect(newer)
    conn.executescript(
        f"PRAGMA journal_mode = WAL; CREATE TABLE t (x); PRAGMA user_version = {CURRENT_VERSION + 1};"
    )
    conn.close()
    before = newer.read_bytes()
    with pytest.raises(HistorySchemaError, match="newer Tandem"):
        HistoryStore(newer)
    assert newer.read_bytes() == before

    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(HistorySchemaError, match="cannot open chat history"):
        HistoryStore(garbage)
    assert garbage.read_bytes() == b"this is not a database at all" * 100


# ---------------------------------------------------------------- titles


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("How do I reverse a list in Python?", "How do I reverse a list in Python?"),
        ("Explain TCP vs UDP. Give examples please.", "Explain TCP vs UDP"),
        ("```python\nx = [1, 2]\n```\nWhy does **this** fail?", "Why does this fail?"),
        ("```\nprint('only code')\n```", "print('only code')"),
        ("## Summarise [this page](https://example.com):", "Summarise this page"),
        ("   \n\n  ", "New chat"),
        ("word " * 40, "word word word word word word word word word…"),
    ],
)
def test_suggest_title(text: str, title: str) -> None:
    assert suggest_title(text) == title
    assert len(suggest_title(text)) <= 48


# ---------------------------------------------------------------- versions and models


def test_regenerate_and_edit_keep_every_version(store: HistoryStore) -> None:
    chat = store.create_chat()
    question = store.add_message(chat, "user", "Name a colour")
    first = store.begin_reply(chat, model="SmolLM2 135M Instruct", drafter="n-gram")
    store.finish_reply(first, "Red", None)
    second = store.begin_reply(chat, after=question, model="Gemma 3 270M")  # Regenerate
    store.finish_reply(second, "Blue", None, drafter="MTP")
    shown = store.messages(chat)
    assert [m.content for m in shown] == ["Name a colour", "Blue"]
    assert (shown[1].version, shown[1].n_versions, shown[1].model, shown[1].drafter) == (
        2, 2, "Gemma 3 270M", "MTP",
    )  # fmt: skip
    store.show_version(first)
    assert [(m.content, m.model, m.drafter) for m in store.messages(chat)] == [
        ("Name a colour", None, None), ("Red", "SmolLM2 135M Instruct", "n-gram"),
    ]  # fmt: skip

    edited = store.add_version(question, "Name a fruit")  # Edit: the old turn stays, with its replies
    assert [m.content for m in store.messages(chat)] == ["Name a fruit"]
    assert store.versions(question) == [question, edited]
    store.add_message(chat, "assistant", "Apple")
    store.show_version(question)  # back to the old question: its newest reply comes with it
    assert [m.content for m in store.messages(chat)] == ["Name a colour", "Blue"]
    assert len(store.all_messages(chat)) == 5
    assert store.list_chats()[0].preview == "Blue"


def test_migrates_v2_messages_into_one_version_each(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.executescript(V1_SCHEMA)
    conn.executescript(
        """ALTER TABLE chats ADD COLUMN deleted_at REAL; ALTER TABLE messages ADD COLUMN ab_json TEXT;
        INSERT INTO messages VALUES (3, 1, 'user', 'again', 'complete', 170.0, NULL, NULL, NULL);
        PRAGMA user_version = 2;"""
    )
    conn.close()
    with HistoryStore(db_path) as store:
        assert store.migrated_from == 2
        shown = store.messages(1)
        assert [m.id for m in shown] == [1, 2, 3] and [m.parent_id for m in shown] == [None, 1, 2]
        assert all(m.n_versions == 1 and m.model is None for m in shown)
        reply = store.begin_reply(1, model="SmolLM2 135M Instruct")
        assert store.messages(1)[-1].id == reply
