"""A chat on a remote engine: the Remote engines list persists, a chat picks one like a model, and
streaming, stop, regenerate and A/B work as on the loaded model; the history records which engine answered
and what the server reported; a second Tandem chats through the first one's server."""

from __future__ import annotations

from dataclasses import replace

from app.engine_picker import EnginePicker
from app.records import ChatSettings, MessageItem, apply_stats_dict
from app.remote_engines import RemoteEngines, load_endpoints
from app.server_bridge import ServerSettings
from app.settings_dialog import ChatSettingsDialog
from app.speed_panel import SpeedPanel
from engine.remote.client import RemoteEndpoint
from tests.app.fake_engine import SCRIPT

BOX = "big box"


def on_remote(qtbot, context, url: str):
    context.remotes.set_endpoints([RemoteEndpoint(url, name=BOX)])
    chat_id = context.new_chat()
    session = context.session(chat_id)
    session.set_settings(replace(session.settings, engine=BOX))
    assert session.remote and session.client is not context.client
    qtbot.waitUntil(lambda: session.client.info is not None, timeout=10_000)
    return chat_id, session


def test_the_list_persists(qtbot) -> None:
    engines = RemoteEngines()
    engines.set_endpoints([RemoteEndpoint("http://gpu-box:8080", "k", "gemma", name="GPU box")])
    assert load_endpoints() == [RemoteEndpoint("http://gpu-box:8080", "k", "gemma", name="GPU box")]
    assert RemoteEngines().names() == ["GPU box"]


def test_a_chat_on_a_remote_tandem(qtbot, context, fake_server) -> None:
    remote = fake_server()
    chat_id, session = on_remote(qtbot, context, remote.url)
    assert session.client.info.server == "Tandem" and session.client.info.spec_per_request
    assert session.send("hello")
    qtbot.waitUntil(lambda: session.state == "idle", timeout=10_000)
    reply = session.messages[-1]
    assert reply.content == "You said: hello\n\n" + SCRIPT and reply.status == "complete"
    assert reply.stats is not None and reply.stats.server is not None
    assert reply.stats.server.source == "Tandem timings" and reply.stats.server.drafted
    assert reply.engine == f"Tandem at {remote.url} · fake-target"
    assert context.client.queue_entries() == []  # the local engine never saw it
    stored = context.store.messages(chat_id)[-1]
    again = MessageItem(stored.id, stored.role, stored.content, stored.status)
    apply_stats_dict(again, stored.stats)
    assert again.engine == reply.engine and again.stats == reply.stats  # the history keeps both

    assert session.regenerate()
    qtbot.waitUntil(lambda: session.state == "idle", timeout=10_000)
    assert session.messages[-1].content == reply.content and len(session.messages) == 2

    remote.fake.token_delay = 0.05  # slow enough to stop half-way
    assert session.send("and stop")
    qtbot.waitUntil(lambda: len(session.messages[-1].content) > 10, timeout=10_000)
    session.stop()
    qtbot.waitUntil(lambda: session.state == "idle", timeout=10_000)
    assert session.messages[-1].status == "stopped"
    remote.recorder.wait_for(3)  # the server saw the hang-up and stopped too

    remote.fake.token_delay = 0.0
    assert session.ab.start()
    qtbot.waitUntil(lambda: session.ab.state == "idle", timeout=20_000)
    report = session.ab.last_report()
    assert report is not None and report.remote == "Tandem" and report.identical


def test_speed_panel_and_picker_show_the_server(qtbot, context, fake_server) -> None:
    remote = fake_server()
    _, session = on_remote(qtbot, context, remote.url)
    assert session.send("hello")
    qtbot.waitUntil(lambda: session.state == "idle", timeout=10_000)
    panel = SpeedPanel(context)
    qtbot.addWidget(panel)
    panel.show()
    panel.bind(session)
    assert "on Tandem at" in panel.pair_label.text()
    assert "as the server reported it (Tandem timings)" in panel.figures_label.text()
    assert panel.ab_button.isEnabled()  # a Tandem server lets a request switch speculation off
    picker = EnginePicker(context)
    qtbot.addWidget(picker)
    picker.bind(session)
    assert picker.currentText() == BOX and "Tandem at" in picker.toolTip()
    picker.detach()
    panel.detach()


def test_a_second_tandem_chats_through_the_first(qtbot, context) -> None:
    """The app serves its loaded model, and a chat set to a remote engine at that address answers through
    HTTP and the same worker: Tandem's own server is a remote engine like any other."""
    assert context.server.start(ServerSettings(port=0))
    _, session = on_remote(qtbot, context, context.server.url)
    assert session.client.info.server == "Tandem"
    assert session.send("through the server")
    qtbot.waitUntil(lambda: session.state == "idle", timeout=10_000)
    reply = session.messages[-1]
    assert reply.content == "You said: through the server\n\n" + SCRIPT
    assert reply.stats.server.source == "Tandem timings"
    context.server.stop()


def test_an_unreachable_engine_says_why(qtbot, context) -> None:
    context.remotes.set_endpoints([RemoteEndpoint("http://127.0.0.1:9", name=BOX)])
    session = context.session(context.new_chat())
    session.set_settings(replace(session.settings, engine=BOX))
    assert session.client is not context.client  # looking it up connects
    qtbot.waitUntil(lambda: BOX in context.remotes.errors, timeout=10_000)
    assert session.send("anyone there?")
    qtbot.waitUntil(lambda: session.state == "idle", timeout=10_000)
    error = session.messages[-1].error or ""
    assert error.startswith(f"Could not reach the remote engine “{BOX}”") and "cannot reach" in error


def test_chat_settings_dialog_keeps_the_engine(qtbot) -> None:
    dialog = ChatSettingsDialog(ChatSettings(engine=BOX, temperature=0.2))
    qtbot.addWidget(dialog)
    assert dialog.result_settings() == ChatSettings(engine=BOX, temperature=0.2)
