"""Chat logic: send -> stream -> finish, stop, regenerate, edit-and-rerun, queueing, persistence."""

from __future__ import annotations

import threading

from app.records import ChatSettings
from tests.app.fake_engine import SCRIPT


def new_session(context):
    return context.session(context.new_chat())


def wait_idle(qtbot, session, timeout=10_000):
    qtbot.waitUntil(lambda: session.state == "idle", timeout=timeout)


def test_send_stream_finish(qtbot, context, store):
    session = new_session(context)
    log: list[str] = []
    session.stateChanged.connect(lambda s: log.append(f"state:{s}"))
    session.messageAppended.connect(lambda m: log.append(f"appended:{m.role}"))
    session.replyChanged.connect(lambda m: log.append("changed") if log[-1] != "changed" else None)
    session.replyFinished.connect(lambda m: log.append(f"finished:{m.status}"))
    assert session.send("Hello there")
    wait_idle(qtbot, session)
    assert log == [
        "appended:user",
        "state:waiting",
        "appended:assistant",
        "state:generating",
        "changed",
        "finished:complete",
        "state:idle",
    ]
    reply = session.messages[-1]
    assert reply.content == "You said: Hello there\n\n" + SCRIPT
    assert reply.stats is not None and reply.stats.n_generated == len(reply.pieces)
    assert "".join(text for text, _ in reply.pieces) == reply.content
    stored = store.messages(session.chat_id)
    assert [(m.role, m.status) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    assert stored[1].content == reply.content
    # The title came from the first message.
    assert store.list_chats()[0].title != "New chat"


def test_text_is_coalesced(qtbot, context, fake_options):
    fake_options.token_delay = 0.002
    session = new_session(context)
    updates: list[int] = []
    session.replyChanged.connect(lambda m: updates.append(len(m.content)))
    session.send("hi")
    wait_idle(qtbot, session)
    n_tokens = session.messages[-1].stats.n_generated
    assert n_tokens > 60
    assert len(updates) < n_tokens / 3  # painted in batches, not once per token
    assert updates == sorted(updates)


def test_stop_mid_stream_keeps_partial_text(qtbot, context, store, fake_options):
    fake_options.token_delay = 0.01
    session = new_session(context)
    session.send("Tell me everything")
    qtbot.waitUntil(lambda: len(session.messages[-1].content) > 20, timeout=5000)
    session.stop()
    wait_idle(qtbot, session)
    reply = session.messages[-1]
    assert reply.status == "stopped" and reply.stop_reason == "cancelled"
    full = "You said: Tell me everything\n\n" + SCRIPT
    assert 20 < len(reply.content) < len(full) and full.startswith(reply.content)
    stored = store.messages(session.chat_id)[-1]
    assert (stored.status, stored.content) == ("stopped", reply.content)


def test_regenerate_adds_a_version_of_the_last_reply(qtbot, context, store, fake_options):
    session = new_session(context)
    session.send("first question")
    wait_idle(qtbot, session)
    old = session.messages[-1]
    assert old.model == "fake-target" and old.drafter == "MTP (fake assistant)"
    assert session.regenerate()
    wait_idle(qtbot, session)
    stored = store.messages(session.chat_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[-1].id != old.id and stored[-1].status == "complete"
    assert (stored[-1].version, stored[-1].n_versions, stored[-1].model) == (2, 2, "fake-target")
    assert (session.messages[-1].version, session.messages[-1].n_versions) == (2, 2)
    assert [c[-1].content for c in fake_options.calls] == ["first question", "first question"]
    assert session.show_version(session.messages[-1], -1)  # the first reply is still there
    assert session.messages[-1].id == old.id and session.messages[-1].version == 1


def test_regenerate_cancelled_while_waiting_keeps_the_old_reply(qtbot, context, store, fake_options):
    session, other = new_session(context), new_session(context)
    session.send("question")
    wait_idle(qtbot, session)
    old_id = session.messages[-1].id
    fake_options.gate = threading.Event()
    other.send("busy")
    qtbot.waitUntil(lambda: other.state == "generating", timeout=2000)
    assert session.regenerate()
    session.stop()
    wait_idle(qtbot, session)
    assert [m.id for m in session.messages][-1] == old_id and session.messages[-1].n_versions == 1
    fake_options.gate.set()
    wait_idle(qtbot, other)


def test_edit_and_rerun_keeps_the_original_turn(qtbot, context, store, fake_options):
    session = new_session(context)
    for text in ("one", "two", "three"):
        session.send(text)
        wait_idle(qtbot, session)
    second_user = [m for m in session.messages if m.role == "user"][1]
    assert session.edit_and_rerun(second_user.id, "TWO, edited")
    wait_idle(qtbot, session)
    stored = store.messages(session.chat_id)
    assert [(m.role, m.content.split("\n")[0]) for m in stored] == [
        ("user", "one"),
        ("assistant", "You said: one"),
        ("user", "TWO, edited"),
        ("assistant", "You said: TWO, edited"),
    ]
    # The model saw the edited conversation, without the old third turn.
    assert [m.content for m in fake_options.calls[-1] if m.role == "user"] == ["one", "TWO, edited"]
    edited = session.messages[2]
    assert (edited.version, edited.n_versions) == (2, 2)
    assert session.show_version(edited, -1)  # the original, with the replies that followed it
    assert [m.content.split("\n")[0] for m in session.messages] == [
        "one", "You said: one", "two", "You said: two", "three", "You said: three",
    ]  # fmt: skip


def test_a_reply_by_another_model_shows_the_switch(qtbot, context, store):
    from pathlib import Path

    from engine.config import LoadConfig

    session = new_session(context)
    session.send("hello")
    wait_idle(qtbot, session)
    with qtbot.waitSignal(context.client.modelLoaded, timeout=5000):
        context.client.load(LoadConfig(model_path=Path("/models/other-model.gguf"), drafter="none"))
    session.send("and now?")
    wait_idle(qtbot, session)
    first, second = (m for m in session.messages if m.role == "assistant")
    assert (first.model, second.model, second.drafter) == ("fake-target", "other-model", None)
    assert first.switched_from is None and second.switched_from == "fake-target"
    session.reload()
    assert session.messages[-1].switched_from == "fake-target"


def test_two_chats_queue_on_one_model(qtbot, context, store, fake_options):
    gate = threading.Event()
    fake_options.gate = gate
    a, b = new_session(context), new_session(context)
    positions: list[int] = []
    b.queuePosition.connect(positions.append)
    a.send("from A")
    b.send("from B")
    qtbot.waitUntil(lambda: a.state == "generating", timeout=2000)
    assert b.state == "waiting" and positions == [1]
    assert b.messages[-1].status == "waiting" and b.messages[-1].id is None  # nothing stored while waiting
    gate.set()
    wait_idle(qtbot, a)
    wait_idle(qtbot, b)
    assert [c[-1].content for c in fake_options.calls] == ["from A", "from B"]
    assert store.messages(b.chat_id)[-1].content.startswith("You said: from B")


def test_cancel_while_waiting_removes_the_placeholder(qtbot, context, store, fake_options):
    fake_options.gate = threading.Event()
    a, b = new_session(context), new_session(context)
    a.send("A")
    b.send("B")
    qtbot.waitUntil(lambda: b.state == "waiting" and a.state == "generating", timeout=2000)
    b.stop()
    wait_idle(qtbot, b)
    assert [m.role for m in b.messages] == ["user"]
    assert [m.role for m in store.messages(b.chat_id)] == ["user"]
    fake_options.gate.set()
    wait_idle(qtbot, a)


def test_engine_error_is_shown_and_stored(qtbot, context, store, fake_options):
    fake_options.fail_after = 4
    session = new_session(context)
    errors: list[str] = []
    session.error.connect(errors.append)
    session.send("boom")
    wait_idle(qtbot, session)
    reply = session.messages[-1]
    assert reply.status == "error" and errors == [reply.error]
    assert "fake failure" in reply.error and "Traceback" not in reply.error
    stored = store.messages(session.chat_id)[-1]
    assert stored.status == "error"
    reopened = context.session(session.chat_id)  # same session object: shared
    assert reopened is session


def test_settings_reach_the_engine_and_persist(qtbot, context, store, fake_options):
    session = new_session(context)
    settings = ChatSettings(
        system_prompt="Be brief.", temperature=0.0, max_tokens=7, seed=42, speculative=False
    )
    session.set_settings(settings)
    assert ChatSettings.from_dict(store.chat_settings(session.chat_id)) == settings
    session.send("hi")
    wait_idle(qtbot, session)
    assert fake_options.calls[-1][0].role == "system" and fake_options.calls[-1][0].content == "Be brief."
    reply = session.messages[-1]
    assert reply.stats.n_generated == 7 and reply.stop_reason == "max_tokens"
    assert reply.stats.spec is None and all(depth == 0 for _, depth in reply.pieces)


def test_reopened_chat_shows_stats_and_provenance(qtbot, context, store):
    session = new_session(context)
    session.send("persist me")
    wait_idle(qtbot, session)
    before = session.messages[-1]
    session.reload()
    after = session.messages[-1]
    assert after.stats == before.stats
    assert after.pieces == before.pieces and after.drafter == before.drafter
    assert after.stop_reason == "eog"
    # The history's own export still summarises the stats it stored.
    exported = store.export_json(session.chat_id)
    summary = exported["messages"][-1]["summary"]
    assert summary["n_generated"] == before.stats.n_generated
