"""Server ▸ Start in the app: server requests run on the app's one worker, in its queue with the chat
windows' requests; a client that hangs up cancels its request; the setting persists; a network address
without a key is refused; the Server menu and status bar follow it."""

from __future__ import annotations

import threading

import openai
from PySide6.QtCore import QSettings

from app.main_window import MainWindow
from app.server_bridge import ServerSettings
from tests.app.fake_engine import SCRIPT


def ask(
    url: str, out: dict[str, object], content: str = "from a script", **extra: object
) -> threading.Thread:
    def run() -> None:
        try:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=30)
            out["reply"] = client.chat.completions.create(
                model="x", messages=[{"role": "user", "content": content}], **extra
            )
        except Exception as exc:  # noqa: BLE001 - the test reads it
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_server_requests_wait_in_the_workers_queue(qtbot, context, fake_options) -> None:
    fake_options.gate = threading.Event()  # every generation waits here: the queue can be looked at
    server = context.server
    assert server.start(ServerSettings(port=0)) and server.running
    out: dict[str, object] = {}
    thread = ask(server.url, out)
    # Queued first, then dispatched on the next event-loop turn: wait for it to run.
    qtbot.waitUntil(lambda: [s for _, s in context.client.queue_entries()] == ["running"], timeout=5000)
    ((origin, _state),) = context.client.queue_entries()
    assert origin == "server: /v1/chat/completions from 127.0.0.1"
    session = context.session(context.new_chat())
    assert session.send("and a chat window")
    qtbot.waitUntil(lambda: len(context.client.queue_entries()) == 2, timeout=5000)
    assert context.client.queue_entries()[1] == ("chat", "waiting")
    assert session.state == "waiting" and server.active == 1
    fake_options.gate.set()
    qtbot.waitUntil(lambda: "reply" in out and session.state == "idle", timeout=10_000)
    thread.join(10)
    reply = out["reply"]
    assert reply.choices[0].message.content == "You said: from a script\n\n" + SCRIPT  # type: ignore[attr-defined]
    assert reply.model_extra["timings"]["draft_n"] > 0  # type: ignore[attr-defined]
    assert session.messages[-1].status == "complete"
    qtbot.waitUntil(lambda: server.active == 0 and not context.client.queue_entries(), timeout=5000)
    server.stop()
    assert not server.running


def test_a_client_that_hangs_up_cancels_its_request_in_the_app(qtbot, context, fake_options) -> None:
    fake_options.token_delay = 0.05  # the whole reply would take ~10 s
    server = context.server
    assert server.start(ServerSettings(port=0))
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    received = []

    def read() -> None:  # in a thread: the GUI thread must keep running the app's side of the server
        messages = [{"role": "user", "content": "hi"}]
        stream = client.chat.completions.create(model="x", messages=messages, stream=True)  # type: ignore[arg-type]
        for chunk in stream:
            received.append(chunk)
            if len(received) == 4:
                stream.close()
                return

    reader = threading.Thread(target=read)
    reader.start()
    qtbot.waitUntil(lambda: not reader.is_alive(), timeout=10_000)
    qtbot.waitUntil(lambda: not context.client.queue_entries(), timeout=3000)  # cancelled, not finished
    assert server.active == 0
    server.stop()


def test_the_server_setting_persists(qtbot, context) -> None:
    server = context.server
    assert server.start(ServerSettings(port=0, api_key="sesame"))
    assert ServerSettings.load().enabled and ServerSettings.load().api_key == "sesame"
    server.shutdown()  # the app closes while serving: it serves again at the next launch
    assert not server.running and ServerSettings.load().enabled
    assert server.start(ServerSettings(port=0))
    server.stop()  # the user stopped it: it stays off
    assert not ServerSettings.load().enabled
    QSettings().sync()


def test_a_network_address_needs_a_key(qtbot, context) -> None:
    server = context.server
    with qtbot.waitSignal(server.error) as blocker:
        assert not server.start(ServerSettings(host="0.0.0.0", port=0))
    assert "API key" in blocker.args[0] and not server.running


def test_server_menu_and_status_bar(qtbot, context) -> None:
    window = MainWindow(context)
    qtbot.addWidget(window)
    controls = window.server_controls
    context.server.settings = ServerSettings(port=0)
    assert controls.toggle.text() == "Start server" and not controls.label.isVisibleTo(window)
    controls.toggle.trigger()
    assert context.server.running and controls.toggle.text() == "Stop server"
    assert (
        controls.label.text().startswith("Server http://127.0.0.1:") and "0 requests" in controls.label.text()
    )
    assert "no API key" in controls.label.toolTip()
    controls.toggle.trigger()
    assert not context.server.running and controls.toggle.text() == "Start server"
