"""Untrusted input through the app with the real worker and engine (issue 13).

- The seven files that used to abort llama.cpp, and the app with it: each load fails with a short dialog,
  and the model loaded before is still in the status bar and still answers. Twice: as shipped (the
  metadata checks refuse the files), and with those checks switched off, so each file reaches llama.cpp in
  the probe's child process, really aborts there, and the crash becomes the error instead.
- A chat template that loops for ever: Stop ends the reply and Quit stops the worker at once.
- Replies that break Markdown (loops of small models, unclosed brackets): they stream and reopen without
  stalling the event loop, and are always shown (as Markdown or as plain text), with the fake engine.
"""

from __future__ import annotations

import gc
import re
import time
from pathlib import Path

import pytest

from app import main as app_main
from app import render
from app.chat_window import open_chat_window
from app.context import AppContext
from app.main_window import MainWindow
from app.records import ChatSettings
from app.theme import LIGHT
from app.worker import RequestState, WorkerClient
from engine.config import ChatMessage, GenerationParams, LoadConfig
from engine.gguf import metadata, reader
from engine.inference import probe
from engine.inference.chat_template import ChatTemplate
from tests.app.hostile_markdown import HOSTILE_REPLIES
from tests.app.lateness import Lateness
from tests.engine.inference import raw_probe_child
from tests.fixtures.corrupt_gguf import CRASH_MUTATIONS, write_corpus

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@pytest.fixture
def crash_files(tmp_path: Path, tiny_llama_path: Path) -> dict[str, Path]:
    corpus = write_corpus({"llama": tiny_llama_path}, tmp_path / "corpus")
    files = {case.name: path for _base, case, path in corpus if case.name in CRASH_MUTATIONS}
    assert len(files) == 7
    return files


def ask(qtbot, client: WorkerClient) -> str:
    request = client.submit([ChatMessage("user", "Hello world")], GenerationParams(max_tokens=4))
    with qtbot.waitSignal(request.finished, timeout=60_000):
        pass
    assert request.error is None and request.done_event is not None, request.error
    return request.done_event.text


@pytest.mark.subprocess
@pytest.mark.parametrize("net", ["metadata checks", "probe process"])
def test_each_crash_mutation_leaves_the_previous_model_answering(
    qtbot, store, tiny_llama_path, crash_files, tmp_path, monkeypatch, net
):
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "data"))
    if net == "probe process":
        # Only the child-process probe stands between these files and llama.cpp: no metadata limits here,
        # none in the child (it opens the file with llama.cpp directly).
        monkeypatch.setattr(metadata, "_check_limits", lambda info: None)
        monkeypatch.setattr(reader, "MIN_ALIGNMENT", 1)
        monkeypatch.setattr(probe, "probe_command", raw_probe_child.command)
    client = WorkerClient()  # the real engine: engine.inference.session.ChatEngine.load
    context = AppContext(store, client, LIGHT)
    window = MainWindow(context)
    qtbot.addWidget(window)
    try:
        with qtbot.waitSignal(client.modelLoaded, timeout=120_000):
            client.load(LoadConfig(model_path=tiny_llama_path, n_ctx=512))
        qtbot.waitUntil(lambda: not client.busy, timeout=10_000)
        label = window.model_label.text()
        first = ask(qtbot, client)
        for name, path in crash_files.items():
            with qtbot.waitSignal(client.loadFailed, timeout=120_000) as failed:
                client.load(LoadConfig(model_path=path, n_ctx=512))
            message = failed.args[0]
            assert path.name in message, (name, message)
            assert len(message) <= 500 and not CONTROL.search(message), (name, message)
            if net == "probe process":
                assert "crashed" in message, (name, message)
            box = window.load_error_box
            assert box is not None and box.text() == message and "still loaded" in box.informativeText()
            box.close()
            qtbot.waitUntil(lambda: not client.busy, timeout=10_000)
            assert client.info is not None and client.info.model_path == tiny_llama_path, name
            assert window.model_label.text() == label, name
            assert ask(qtbot, client) == first, name  # greedy: the same model gives the same answer
    finally:
        context.shutdown()


HANGING_TEMPLATE = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"


def test_stop_and_quit_work_while_a_template_hangs(qtbot, store, tiny_llama_path, tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "data"))
    client = WorkerClient()
    with qtbot.waitSignal(client.modelLoaded, timeout=120_000):
        client.load(LoadConfig(model_path=tiny_llama_path, n_ctx=512))
    qtbot.waitUntil(lambda: not client.busy, timeout=10_000)
    client._worker._engine.template = ChatTemplate(HANGING_TEMPLATE)  # the worker is idle: safe to swap
    request = client.submit([ChatMessage("user", "Hello")], GenerationParams(max_tokens=4))
    qtbot.waitUntil(lambda: request.state is RequestState.RUNNING, timeout=5000)
    qtbot.wait(200)  # the worker is inside the template now
    with qtbot.waitSignal(request.finished, timeout=1000):
        request.cancel()  # Stop
    assert request.done_event is not None and request.done_event.stop_reason.value == "cancelled"
    client.submit([ChatMessage("user", "Hello")], GenerationParams(max_tokens=4))
    qtbot.wait(200)
    started = time.perf_counter()
    client.shutdown(timeout_ms=5000)  # Quit
    assert time.perf_counter() - started < 1.0 and client._thread.isFinished()


# --- hostile Markdown in replies ----------------------------------------------------------------------------
def _stall_while(qtbot, until) -> float:
    """The worst lateness (ms) of a 5 ms timer while the event loop runs until `until()`."""
    with Lateness() as lateness:
        qtbot.waitUntil(until, timeout=60_000)
        qtbot.wait(50)
    return lateness.worst


@pytest.mark.parametrize("name", list(HOSTILE_REPLIES))
def test_a_hostile_reply_streams_and_reopens_without_stalling_or_vanishing(
    qtbot, context, fake_options, name
):
    # As app.main does at start: lexers are loaded off the GUI thread, then what is alive is frozen out of
    # the collector's reach (here: every earlier test's leftovers; a full collection of them took 160-450 ms).
    warm_up = render.warm_up()
    warm_up.join()
    app_main.settle_startup(warm_up)
    assert gc.get_freeze_count() > 0
    text = HOSTILE_REPLIES[name]
    fake_options.script = text
    fake_options.echo_user = False
    chat_id = context.new_chat()
    session = context.session(chat_id)
    session.set_settings(ChatSettings(max_tokens=50_000))
    window = open_chat_window(context, chat_id)
    qtbot.addWidget(window)
    qtbot.waitExposed(window)
    window.panel.composer.setPlainText("go")
    window.panel.send()
    streaming = _stall_while(qtbot, lambda: session.state == "idle")
    assert session.messages[-1].content == text
    window.panel.set_chat(None)
    window.panel.set_chat(chat_id)  # reopen: the reply is rendered again from the history
    reopening = _stall_while(
        qtbot, lambda: all(not w._continue.isActive() for w in window.panel.view.widgets.values())
    )
    widget = [w for w in window.panel.view.widgets.values() if w.item.role == "assistant"][-1]
    shown = "\n".join(b.toPlainText() for b in widget.browsers())
    print(f"\n{name}: worst stall streaming {streaming:.0f} ms, reopening {reopening:.0f} ms")
    assert widget.body.isVisible() and shown.strip()
    for word in re.findall(r"[a-z]{2,}", text)[:3]:
        assert word in shown
    # Each conversion is bounded (25 ms a block, 30 ms a turn when reopening) and the worker's events come in
    # batches (app.event_outbox); what is left is Qt laying out the message and storing a finished reply.
    # Generous bounds for shared CI machines (the issue measured 2.2 s and 8.8 s stalls); the figures are
    # printed.
    assert streaming < 500 and reopening < 500


def test_a_corrupt_drafter_at_start_up_loads_the_target_alone(
    qtbot, store, tiny_llama_path, crash_files, tmp_path, monkeypatch
):
    """Issue 16, item 1: a refused drafter costs speculation, not the model."""
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "data"))
    client = WorkerClient()
    try:
        bad = crash_files["hparam_block_count=0"]
        with qtbot.waitSignal(client.modelLoaded, timeout=120_000) as loaded:
            client.load(LoadConfig(model_path=tiny_llama_path, draft_model_path=bad, n_ctx=512))
        info = loaded.args[0]
        assert info.model_path == tiny_llama_path and info.drafter is None
        assert "the drafter was refused" in info.drafter_note and bad.name in info.drafter_note
        qtbot.waitUntil(lambda: not client.busy, timeout=10_000)
        request = client.submit([ChatMessage("user", "Hello")], GenerationParams(max_tokens=4))
        with qtbot.waitSignal(request.finished, timeout=60_000):
            pass
        assert request.error is None and request.done_event is not None
    finally:
        client.shutdown()
