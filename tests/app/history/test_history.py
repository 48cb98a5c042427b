"""Chat history store: CRUD, search, soft delete, streaming, crash safety, migrations, export/import."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from app.history.schema import CURRENT_VERSION
from app.history.store import (
    ChatImportError,
    ChatNotFoundError,
    HistorySchemaError,
    HistoryStore,
    default_history_path,
    suggest_title,
)
from engine.stats import GenerationStats, SpecRecorder
from tests import REPO_ROOT


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "history.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Any:
    s = HistoryStore(db_path)
    yield s
    s.close()


def generation_stats() -> GenerationStats:
    rec = SpecRecorder(drafter="mtp")
    for drafted, accepted in [(3, 3), (3, 1), (3, 0), (2, 2)]:
        rec.record_step(drafted, accepted)
    rec.record_reason("context_full")
    rec.k_history = [3, 3, 3, 2]
    rec.provenance = [0, 1, 2, 3, 0, 1, 0, 0, 1, 2]
    return GenerationStats(
        n_prompt=40, n_prompt_cached=8, prompt_s=0.25, ttft_s=0.3, n_generated=10, decode_s=0.45,
        total_s=0.8, spec=rec.snapshot(),
    )  # fmt: skip


# ---------------------------------------------------------------- basics


def test_default_path_honours_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "elsewhere"))
    assert default_history_path() == tmp_path / "elsewhere" / "history.sqlite3"
    monkeypatch.delenv("TANDEM_DATA_DIR")
    assert default_history_path().name == "history.sqlite3"
    assert default_history_path().parent.name == "tandem"


def test_opens_in_wal_mode_with_foreign_keys_at_current_version(store: HistoryStore, db_path: Path) -> None:
    conn = store._conn
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
    assert store._conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0  # cascaded


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
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
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
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == CURRENT_VERSION
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


# ---------------------------------------------------------------- export / import


def filled_chat(store: HistoryStore) -> int:
    chat = store.create_chat("Export me", {"system_prompt": "Use ``` fences", "speculative": True})
    store.add_message(chat, "system", "An extra system note with ```` four ticks")
    store.add_message(chat, "user", "Write code")
    reply = store.begin_reply(chat, {"temperature": 0.0, "drafter": "mtp"})
    store.finish_reply(reply, "```python\nprint('hi')\n```\nDone.", asdict(generation_stats()))
    store.set_ab_result(reply, {"plain_tps": 10.0, "spec_tps": 18.5, "identical": True})
    store.add_message(chat, "user", "And now stop midway")
    cut = store.begin_reply(chat)
    store.finish_reply(cut, "Here:\n~~~~js\nconsole.log(1)\n```\nstill code", None, status="stopped")
    store.add_message(chat, "user", "## Assistant\nnot a real heading? It is Markdown, kept as written.")
    return chat


def test_json_round_trip_is_lossless(store: HistoryStore) -> None:
    chat = filled_chat(store)
    exported = store.export_json(chat)
    assert (exported["format"], exported["version"]) == ("tandem-chat", 2)
    summary = exported["messages"][2]["summary"]
    gen = generation_stats()
    assert gen.spec is not None
    assert summary["decode_tps"] == pytest.approx(gen.decode_tps)
    assert summary["acceptance_rate"] == pytest.approx(gen.spec.acceptance_rate)
    assert summary["mean_accepted_length"] == pytest.approx(gen.spec.mean_accepted_length)

    text = json.dumps(exported)
    new_id = store.import_json(text)
    assert new_id != chat
    again = store.export_json(new_id)
    del again["exported_at"]
    original = json.loads(text)
    del original["exported_at"]
    assert again == original
    assert store.import_json(again) != new_id  # the dict form is accepted too


def test_markdown_keeps_structure_around_code_fences(store: HistoryStore) -> None:
    chat = filled_chat(store)
    md = store.export_markdown(chat)
    headings, still_open = markdown_headings_outside_code(md)
    assert not still_open
    assert headings == [
        "# Export me",
        "## System",
        "## User",
        "## Assistant",
        "## User",
        "## Assistant",
        "## User",
        "## Assistant",
    ]  # the last one is the user's own "## Assistant" line: kept as Markdown
    assert "````text\nUse ``` fences\n````" in md
    assert "`````text\nAn extra system note with ```` four ticks\n`````" in md
    assert "```python\nprint('hi')\n```\nDone." in md
    assert "Here:\n~~~~js\nconsole.log(1)\n```\nstill code\n~~~~" in md  # closed with its own fence
    gen = generation_stats()
    assert gen.spec is not None
    assert f"{gen.decode_tps:.1f} tok/s" in md
    assert f"{gen.spec.acceptance_rate:.0%} of drafts accepted" in md
    assert "stopped by the user" in md


def markdown_headings_outside_code(md: str) -> tuple[list[str], bool]:
    """ATX headings a CommonMark reader sees at top level, and whether a fenced block runs to the end."""
    headings: list[str] = []
    fence: str | None = None
    for line in md.split("\n"):
        m = re.match(r" {0,3}(`{3,}|~{3,})(.*)$", line)
        if fence is None:
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
            elif re.match(r"#{1,6} ", line):
                headings.append(line)
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2).strip():
            fence = None
    return headings, fence is not None


def doc(messages: Any = (), **chat: Any) -> dict[str, Any]:
    """A minimal export document; the bad-input cases below each break one thing in it."""
    return {"format": "tandem-chat", "version": 1, "chat": {"title": "t", **chat}, "messages": list(messages)}


BAD_IMPORTS: list[tuple[Any, str]] = [
    ('{"format": "tandem-chat", "version": 1, ', "not valid JSON"),
    (b"\xff\xfe garbage", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got an array"),
    (doc() | {"format": "other-app"}, "field 'format' should be 'tandem-chat'"),
    (doc() | {"version": "1"}, "field 'version' should be a positive integer"),
    (doc() | {"version": 99}, "newer Tandem"),
    ({"format": "tandem-chat", "version": 1, "messages": []}, "chat: missing"),
    (doc(title=5), "chat.title: expected a string"),
    (doc() | {"messages": {}}, "messages: expected an array"),
    (
        doc([{"role": "user", "content": "ok"}, {"role": "bot", "content": "x"}]),
        "messages[1].role: expected one of system, user, assistant, got 'bot'",
    ),
    (doc([{"role": "user"}]), "messages[0].content: missing"),
    (doc([{"role": "user", "content": "x", "stats": [1]}]), "messages[0].stats: expected an object or null"),
    (
        doc([{"role": "user", "content": "x", "created_at": "yesterday"}]),
        "messages[0].created_at: expected a Unix",
    ),
    (doc([7]), "messages[0]: expected an object"),
]


@pytest.mark.parametrize(("data", "message"), BAD_IMPORTS)
def test_import_rejects_bad_input_clearly_and_writes_nothing(
    store: HistoryStore, data: Any, message: str
) -> None:
    existing = store.create_chat("existing")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        store.import_json(data)
    assert isinstance(info.value, ChatImportError)
    assert [c.id for c in store.list_chats()] == [existing]
    assert store._conn.execute("SELECT count(*) FROM chats").fetchone()[0] == 1


def test_import_of_minimal_document_and_streaming_reply(store: HistoryStore) -> None:
    chat = store.import_json(
        doc(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "status": "streaming"}],
            title="",
        )
    )
    assert store.chat(chat).title == "New chat"
    assert [(m.content, m.status) for m in store.messages(chat)] == [("q", "complete"), ("a", "interrupted")]
    assert store.list_chats()[0].id == chat


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


def _ab_report(**changes: Any) -> dict[str, Any]:
    from engine.measure.ab import ABReport

    figures: dict[str, Any] = dict(
        seed=5, temperature=0.0, max_tokens=64, k_max=3, n_prompt=12, plain_runs_tps=(40.0,),
        spec_runs_tps=(62.0,), load_average=None, plain_ttft_s=0.31, spec_ttft_s=0.3, n_plain=64, n_spec=64,
        plain_stop="max_tokens",
        spec_stop="max_tokens", drafter="n-gram", acceptance=0.6, mean_accepted_length=2.1, mean_k=2.8,
        k_off_share=0.0, off_reason=None, identical=True, divergence_position=None, divergence_margin=None,
        context_before="", plain_piece="", spec_piece="", created_at=1.0,
    )  # fmt: skip
    figures.update(changes)
    return ABReport(**figures).to_dict()


def test_markdown_mentions_the_ab_result(store: HistoryStore) -> None:
    chat = store.create_chat("A/B")
    store.add_message(chat, "user", "q")
    same = store.add_message(chat, "assistant", "a")
    store.add_message(chat, "user", "q2")
    differ = store.add_message(chat, "assistant", "b")
    store.add_message(chat, "user", "q3")
    foreign = store.add_message(chat, "assistant", "c")
    store.set_ab_result(same, _ab_report())
    store.set_ab_result(
        differ,
        _ab_report(identical=False, divergence_position=9, divergence_margin=0.01, context_before="a *b*",
                   plain_piece=" x", spec_piece=" y"),
    )  # fmt: skip
    store.set_ab_result(foreign, {"winner": "speculative"})  # not a report this version reads: left out
    md = store.export_markdown(chat)
    lines = [line for line in md.splitlines() if line.startswith("*A/B")]
    assert len(lines) == 2
    assert "plain 40.0 tok/s, speculative 62.0 tok/s (1.55×)" in lines[0] and "outputs identical" in lines[0]
    assert "first token 0.31 s vs 0.30 s" in lines[0]
    assert "differ from token 9" in lines[1] and "almost tied" in lines[1]
    assert "a \\*b\\*" in lines[1]  # model text cannot break out of the italics


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


def test_versions_survive_export_and_import(store: HistoryStore) -> None:
    chat = store.create_chat("Versions")
    question = store.add_message(chat, "user", "Name a colour")
    old = store.begin_reply(chat, model="SmolLM2 135M Instruct")
    store.finish_reply(old, "Red", None)
    new = store.begin_reply(chat, after=question, model="Gemma 3 270M", drafter="MTP")
    store.finish_reply(new, "Blue", None)
    store.show_version(old)
    exported = store.export_json(chat)
    assert [m["parent"] for m in exported["messages"]] == [None, 0, 0]
    assert exported["chat"]["current"] == 1
    assert [m["model"] for m in exported["messages"]] == [None, "SmolLM2 135M Instruct", "Gemma 3 270M"]
    copy = store.import_json(json.dumps(exported))
    assert [(m.content, m.version, m.n_versions) for m in store.messages(copy)] == [
        ("Name a colour", 1, 1), ("Red", 1, 2),
    ]  # fmt: skip

    md = store.export_markdown(chat)
    assert "Exported from Tandem on " in md and "replies by SmolLM2 135M Instruct" in md
    assert "*Version 1 of 2 of this turn; the others:*" in md
    assert "> **Version 2** · *Gemma 3 270M + MTP*" in md and "> Blue" in md
    headings, still_open = markdown_headings_outside_code(md)
    assert headings == ["# Versions", "## User", "## Assistant"] and not still_open

    bad = exported | {"messages": [dict(m) for m in exported["messages"]]}
    bad["messages"][1]["parent"] = 2  # a reply before the message it follows
    with pytest.raises(ChatImportError, match=r"messages\[1\].parent: expected the index of an earlier"):
        store.import_json(bad)


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
