"""Export and import of whole chats: the JSON document round trip, the Markdown rendering of it, and the
clear refusal of a bad document."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

import pytest

from app.history.store import ChatImportError, HistoryStore
from tests.app.history.conftest import generation_stats


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
    assert store._db.conn.execute("SELECT count(*) FROM chats").fetchone()[0] == 1


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
