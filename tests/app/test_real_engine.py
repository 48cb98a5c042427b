"""End to end through the app's worker and chat logic with the real engine: the tiny fixture model (fast,
always available) and one run with SmolLM2-135M (skipped when it is not installed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.context import AppContext
from app.records import ChatSettings
from app.theme import LIGHT
from app.worker import WorkerClient
from engine.config import LoadConfig


@pytest.fixture
def real_context(qtbot, store):
    contexts = []

    def make(model: Path, drafter: str = "auto") -> AppContext:
        client = WorkerClient()  # the default factory: engine.inference.session.ChatEngine.load
        with qtbot.waitSignal(client.modelLoaded, timeout=120_000):
            client.load(LoadConfig(model_path=model, drafter=drafter, n_ctx=1024))
        context = AppContext(store, client, LIGHT)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.shutdown()


def converse(qtbot, context, text, settings):
    session = context.session(context.new_chat())
    session.set_settings(settings)
    assert session.send(text)
    qtbot.waitUntil(lambda: session.state == "idle", timeout=120_000)
    return session


def test_tiny_model_end_to_end(qtbot, real_context, tiny_llama_path, store):
    context = real_context(tiny_llama_path)
    info = context.client.info
    assert info.model_path == tiny_llama_path and info.n_ctx == 1024
    settings = ChatSettings(temperature=0.0, max_tokens=24, seed=1, speculative=True)
    session = converse(qtbot, context, "Hello world", settings)
    reply = session.messages[-1]
    assert reply.status == "complete" and reply.error is None
    assert reply.stats is not None and reply.stats.n_generated == len(reply.pieces) > 0
    assert "".join(t for t, _ in reply.pieces) == reply.content
    stored = store.messages(session.chat_id)[-1]
    assert stored.status == "complete" and stored.content == reply.content
    # Greedy and seeded: speculation on or off gives the same text.
    plain = converse(qtbot, context, "Hello world", dataclasses.replace(settings, speculative=False))
    assert plain.messages[-1].content == reply.content


def test_tiny_model_stop_mid_stream(qtbot, real_context, tiny_llama_path):
    context = real_context(tiny_llama_path)
    session = context.session(context.new_chat())
    session.set_settings(ChatSettings(temperature=0.8, max_tokens=900, seed=3))
    session.send("the model")
    qtbot.waitUntil(lambda: len(session.messages[-1].pieces) >= 5, timeout=60_000)
    session.stop()
    qtbot.waitUntil(lambda: session.state == "idle", timeout=60_000)
    reply = session.messages[-1]
    assert reply.status in ("stopped", "complete")  # a tiny random model may end on its own first
    if reply.status == "stopped":
        assert reply.stop_reason == "cancelled" and reply.stats.n_generated < 900


@pytest.mark.real_model
def test_smollm2_end_to_end(qtbot, real_context, smollm2_path):
    context = real_context(smollm2_path)
    settings = ChatSettings(temperature=0.0, max_tokens=40, seed=1)
    session = converse(qtbot, context, "What is the capital of France? Answer in one sentence.", settings)
    reply = session.messages[-1]
    assert reply.status == "complete", reply.error
    from app.render import footer_text

    print(f"\nSmolLM2 via the app: {reply.content!r}\n  {footer_text(reply)}")
    assert "Paris" in reply.content
    assert reply.stats.decode_tps > 0 and reply.stats.ttft_s > 0


def test_mtp_pair_end_to_end(qtbot, real_context, tiny_gemma4_path, tiny_gemma4_assistant_path, store):
    """The tiny Gemma 4 target with its MTP assistant, through the app: the footer names the drafter, the
    provenance matches the statistics, and the reply is the same with speculation off."""
    client = WorkerClient()
    with qtbot.waitSignal(client.modelLoaded, timeout=120_000):
        client.load(
            LoadConfig(model_path=tiny_gemma4_path, assistant_path=tiny_gemma4_assistant_path, n_ctx=512)
        )
    context = AppContext(store, client, LIGHT)
    try:
        assert "MTP" in (client.info.drafter or "")
        settings = ChatSettings(temperature=0.0, max_tokens=20, seed=1, speculative=True)
        spec = converse(qtbot, context, "Hello world", settings).messages[-1]
        assert spec.status == "complete", spec.error
        assert spec.stats.spec is not None and "MTP" in spec.stats.spec.drafter
        assert [d for _, d in spec.pieces] == list(spec.stats.spec.provenance)
        plain = converse(qtbot, context, "Hello world", dataclasses.replace(settings, speculative=False))
        assert plain.messages[-1].content == spec.content
        from app.render import footer_text

        print(f"\ntiny Gemma 4 + MTP via the app: {footer_text(spec)}")
    finally:
        context.shutdown()
