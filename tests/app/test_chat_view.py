"""The chat window as a user drives it: composer, stop, links, copy, provenance, find, follow-bottom, and the
event-loop stall while a fast reply streams."""

from __future__ import annotations

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QGuiApplication

from app.chat_window import open_chat_window
from app.message_widget import MessageBrowser
from app.records import ChatSettings
from tests.app.fake_engine import SCRIPT, split_tokens
from tests.app.lateness import Lateness


def open_window(qtbot, context, settings=None):
    chat_id = context.new_chat()
    if settings is not None:
        context.session(chat_id).set_settings(settings)
    window = open_chat_window(context, chat_id)
    qtbot.addWidget(window)
    qtbot.waitExposed(window)
    return window


def send(qtbot, window, text, wait=True):
    panel = window.panel
    panel.composer.setPlainText(text)
    qtbot.keyClick(panel.composer, Qt.Key.Key_Return)
    if wait:
        qtbot.waitUntil(lambda: panel.session.state == "idle", timeout=10_000)


def assistant_widget(window):
    return [w for w in window.panel.view.widgets.values() if w.item.role == "assistant"][-1]


def body_text(widget):
    return "\n".join(b.toPlainText() for b in widget.browsers())


def test_enter_sends_and_shift_enter_adds_a_line(qtbot, context):
    window = open_window(qtbot, context)
    composer = window.panel.composer
    composer.setPlainText("line one")
    composer.moveCursor(composer.textCursor().MoveOperation.End)
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert composer.toPlainText() == "line one\n" and window.panel.session.messages == []
    qtbot.keyClicks(composer, "line two")
    qtbot.keyClick(composer, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.panel.session.state == "idle", timeout=10_000)
    assert composer.toPlainText() == ""
    assert window.panel.session.messages[0].content == "line one\nline two"


def test_reply_renders_markdown_and_escapes_html(qtbot, context):
    window = open_window(qtbot, context)
    send(qtbot, window, "<i>user html</i>")
    widget = assistant_widget(window)
    html = "".join(b.toHtml() for b in widget.browsers())
    text = body_text(widget)
    assert "<b>bold?</b>" in text and "<script>alert(1)</script>" in text  # shown as text
    assert "<script" not in html.replace("&lt;script", "")  # never as markup
    assert 'href="https://example.com/docs"' in html
    assert "速度" in text and "🚀" in text
    user = [w for w in window.panel.view.widgets.values() if w.item.role == "user"][0]
    assert body_text(user) == "<i>user html</i>"
    # The footer shows the speculative figures.
    footer = widget.footer.text()
    assert "tok/s" in footer and "accepted" in footer and "mean accepted length" in footer


def test_links_open_only_after_confirmation(qtbot, context):
    window = open_window(qtbot, context)
    send(qtbot, window, "links please")
    view, widget = window.panel.view, assistant_widget(window)
    asked: list[str] = []
    opened: list[str] = []
    answer = [False]
    view.confirm_link = lambda url: asked.append(url.toString()) or answer[0]
    view.open_url = lambda url: opened.append(url.toString())
    link = QUrl("https://example.com/docs")
    widget.browsers()[0].anchorClicked.emit(link)
    assert asked == ["https://example.com/docs"] and opened == []
    answer[0] = True
    widget.browsers()[0].anchorClicked.emit(link)
    assert opened == ["https://example.com/docs"]
    # Schemes other than web and mail are never offered.
    dialogs: list[str] = []
    from app import chat_view

    qtbot_patch = chat_view.QMessageBox.information
    chat_view.QMessageBox.information = lambda *a: dialogs.append(a[2])  # type: ignore[method-assign]
    try:
        widget.browsers()[0].anchorClicked.emit(QUrl("file:///etc/passwd"))
    finally:
        chat_view.QMessageBox.information = qtbot_patch  # type: ignore[method-assign]
    assert len(asked) == 2 and len(opened) == 1 and "file:///etc/passwd" in dialogs[0]


def test_resources_are_never_loaded(qapp):
    browser = MessageBrowser()
    browser.setHtml('<img src="https://evil.example/pixel.png"><img src="file:///etc/hosts">')
    assert browser.loadResource(2, QUrl("https://evil.example/pixel.png")) is None
    assert browser.loadResource(2, QUrl("file:///etc/hosts")) is None


def test_code_block_copy_button(qtbot, context):
    window = open_window(qtbot, context)
    send(qtbot, window, "code")
    widget = assistant_widget(window)
    widget.browsers()[0].anchorClicked.emit(QUrl("tandem-copy:0"))
    assert (
        QGuiApplication.clipboard().text()
        == "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)"
    )
    widget.copy_button.click()
    assert QGuiApplication.clipboard().text() == widget.item.content


def test_stop_button_mid_stream(qtbot, context, fake_options):
    fake_options.token_delay = 0.01
    window = open_window(qtbot, context)
    send(qtbot, window, "long one", wait=False)
    panel = window.panel
    qtbot.waitUntil(
        lambda: panel.session.state == "generating" and len(panel.session.messages[-1].content) > 30
    )
    assert panel.send_button.text() == "Stop"
    qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.session.state == "idle", timeout=5000)
    widget = assistant_widget(window)
    assert widget.item.status == "stopped" and widget.status_label.text() == "(stopped)"
    assert "stopped by you" in widget.footer.text()
    assert panel.send_button.text() == "Send"


def test_regenerate_and_edit_buttons(qtbot, context, fake_options):
    window = open_window(qtbot, context)
    send(qtbot, window, "original")
    widget = assistant_widget(window)
    assert widget.regen_button.isVisible()
    widget.regen_button.click()
    qtbot.waitUntil(lambda: window.panel.session.state == "idle", timeout=10_000)
    assert len(fake_options.calls) == 2
    user = [w for w in window.panel.view.widgets.values() if w.item.role == "user"][0]
    user.edit_button.click()
    assert user.editor.isVisible() and user.editor.toPlainText() == "original"
    user.editor.setPlainText("edited")
    user.editRequested.emit(user.item, user.editor.toPlainText())
    qtbot.waitUntil(lambda: window.panel.session.state == "idle", timeout=10_000)
    assert [m.content.split("\n")[0] for m in window.panel.session.messages] == ["edited", "You said: edited"]
    user = [w for w in window.panel.view.widgets.values() if w.item.role == "user"][0]
    assert user.versions.isVisible() and user.versions.label.text() == "2/2"
    user.versions.previous.click()  # back to the original question and the newest of its replies
    messages = window.panel.session.messages
    assert [m.content.split("\n")[0] for m in messages] == ["original", "You said: original"]
    reply = assistant_widget(window)
    assert reply.versions.label.text() == "2/2" and not reply.versions.next.isEnabled()
    assert "fake-target" in reply.model_label.text()


def test_provenance_view_shades_draft_tokens(qtbot, context):
    window = open_window(qtbot, context)
    send(qtbot, window, "colours")
    window.panel.provenance_toggle.setChecked(True)
    widget = assistant_widget(window)
    html = widget.body.toHtml()
    colors = context.colors
    assert "background-color:" + colors.prov_depth[0] in html.replace(" ", "")
    assert body_text(widget).startswith("You said: colours")
    assert "draft 1" in widget.footer.text()
    # The reply keeps its rendering: Markdown and highlighted code, with the shading on top.
    assert "**quick answer**" not in body_text(widget) and "quick answer" in body_text(widget)
    assert widget.code_blocks and 'font-weight:700' in html.replace(" ", "")
    window.panel.provenance_toggle.setChecked(False)
    assert "background-color:" + colors.prov_depth[0] not in assistant_widget(window).body.toHtml()


def test_find_in_chat(qtbot, context):
    window = open_window(qtbot, context)
    send(qtbot, window, "needle one")
    send(qtbot, window, "needle two")
    view = window.panel.view
    selections = []
    for _ in range(5):
        assert view.find_text("needle")
        selected = [b for w in view.widgets.values() for b in w.browsers() if b.textCursor().hasSelection()]
        assert len(selected) == 1
        selections.append(selected[0])
    assert len(set(map(id, selections[:4]))) == 4  # 2 user messages + 2 echoes, then it wraps around
    assert selections[4] is selections[0]
    assert not view.find_text("no such text anywhere")


def test_view_follows_the_bottom_only_while_there(qtbot, context, fake_options):
    fake_options.script = SCRIPT * 3
    window = open_window(qtbot, context, ChatSettings(max_tokens=4000))
    window.resize(600, 400)
    send(qtbot, window, "first")
    fake_options.token_delay = 0.003
    send(qtbot, window, "second", wait=False)
    bar = window.panel.view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 400, timeout=5000)
    assert bar.value() == bar.maximum()  # following
    bar.setValue(10)  # the user scrolls up to read
    qtbot.waitUntil(lambda: window.panel.session.state == "idle", timeout=10_000)
    assert bar.value() == 10


def test_two_windows_queue_on_one_model(qtbot, context, fake_options):
    import threading

    fake_options.gate = threading.Event()
    first, second = open_window(qtbot, context), open_window(qtbot, context)
    send(qtbot, first, "from the first window", wait=False)
    send(qtbot, second, "from the second window", wait=False)
    qtbot.waitUntil(lambda: second.panel.session.state == "waiting", timeout=2000)
    waiting = assistant_widget(second)
    qtbot.waitUntil(lambda: "1 request ahead" in waiting.status_label.text(), timeout=2000)
    assert waiting.cancel_button.isVisible() and second.panel.send_button.text() == "Cancel"
    fake_options.gate.set()
    qtbot.waitUntil(lambda: second.panel.session.state == "idle", timeout=10_000)
    assert first.panel.session.state == "idle"
    assert [c[-1].content for c in fake_options.calls] == ["from the first window", "from the second window"]


def test_event_loop_stall_while_streaming(qtbot, context, fake_options):
    """A fast stream (about 1 ms per token, 1500+ tokens of Markdown) must not stall the event loop: a 5 ms
    timer measures how late it fires. The bound is generous (shared CI machines); the figure is printed."""
    fake_options.script = SCRIPT * 12
    fake_options.token_delay = 0.001
    window = open_window(qtbot, context, ChatSettings(max_tokens=5000))
    window.resize(900, 800)
    send(qtbot, window, "go", wait=False)
    with Lateness() as lateness:
        qtbot.waitUntil(lambda: window.panel.session.state == "idle", timeout=30_000)
    n_tokens = window.panel.session.messages[-1].stats.n_generated
    assert n_tokens >= len(split_tokens(SCRIPT * 12))
    worst, p99, ticks = lateness.worst, lateness.percentile(0.99), len(lateness.late)
    print(f"\nstall while streaming {n_tokens} tokens: max {worst:.1f} ms, p99 {p99:.1f} ms, ticks {ticks}")
    assert worst < 250 and p99 < 60


def test_settings_dialog_round_trip(qtbot, context, monkeypatch):
    from app import chat_window
    from app.settings_dialog import ChatSettingsDialog

    start = ChatSettings(system_prompt="Be terse.", temperature=0.3, top_p=0.9, max_tokens=77, seed=None)
    dialog = ChatSettingsDialog(start)
    qtbot.addWidget(dialog)
    assert dialog.result_settings() == start
    dialog.seed.setValue(1234)
    dialog.speculative.setChecked(False)
    dialog.temperature.setValue(0.0)
    assert dialog.result_settings() == ChatSettings("Be terse.", 0.0, 0.9, 77, 1234, False)

    # Through the panel: accepted settings are stored for the chat and flip the toggle.
    window = open_window(qtbot, context)
    monkeypatch.setattr(chat_window.ChatSettingsDialog, "exec", lambda self: 1)
    monkeypatch.setattr(
        chat_window.ChatSettingsDialog, "result_settings", lambda self: ChatSettings(speculative=False)
    )
    window.panel.open_settings()
    assert window.panel.session.settings == ChatSettings(speculative=False)
    assert not window.panel.spec_toggle.isChecked()
    assert context.store.chat_settings(window.panel.chat_id)["speculative"] is False


def test_the_speculation_toggles_name_the_drafter_loaded(qtbot, context, monkeypatch):
    from pathlib import Path

    from app import chat_window
    from app.chat_window import spec_label
    from engine.config import LoadConfig
    from engine.inference.api import EngineInfo

    def info(drafter: str | None) -> EngineInfo:
        return EngineInfo("m", Path("m.gguf"), "llama", 512, drafter, None, "CPU", 0, 1)

    assert spec_label(info("n-gram")) == "Speculative decoding (n-gram)"
    assert spec_label(info("draft model: Qwen3 0.6B")) == "Speculative decoding (draft model)"
    assert spec_label(info("MTP (Gemma 4 assistant)")) == "Speculative decoding (MTP)"
    assert spec_label(info(None)) == "Speculative decoding (no drafter)"
    window = open_window(qtbot, context)
    with qtbot.waitSignal(context.client.modelLoaded, timeout=5000):
        context.client.load(LoadConfig(model_path=Path("/m/plain.gguf"), drafter="none"))
    assert window.panel.spec_toggle.text() == "Speculative decoding (no drafter)"
    shown: list[str] = []
    monkeypatch.setattr(chat_window.ChatSettingsDialog, "exec", lambda d: shown.append(d.speculative.text()))
    window.panel.open_settings()
    assert shown == ["Speculative decoding (no drafter)"]


def test_switching_to_provenance_leaves_no_stale_stream_text(qtbot, context, fake_options):
    """The browsers a streamed reply was shown in must vanish at once when the reply is re-rendered whole
    (the provenance view): left visible until their deferred delete, they painted over the new body."""
    fake_options.script = SCRIPT * 3  # long enough for sealed chunks as well as the tail
    window = open_window(qtbot, context, ChatSettings(max_tokens=4000))
    send(qtbot, window, "stream me")
    widget = assistant_widget(window)
    assert len(widget.browsers()) > 1  # the streamed chunks are kept after the reply finishes
    window.panel.provenance_toggle.setChecked(True)
    # No event loop has run since: deferred deletes are still pending.
    visible = [b for b in widget.findChildren(MessageBrowser) if b.isVisibleTo(widget)]
    assert visible == [widget.body]


def test_the_composer_grows_with_its_text(qtbot, context):
    window = open_window(qtbot, context)
    composer = window.panel.composer
    empty = composer.height()
    assert empty == composer.lines_for(composer.MIN_LINES)
    composer.setPlainText("\n".join(f"line {i}" for i in range(5)))
    qtbot.waitUntil(lambda: composer.height() == composer.lines_for(5), timeout=2000)
    composer.setPlainText("\n".join(f"line {i}" for i in range(40)))
    qtbot.waitUntil(lambda: composer.height() == composer.lines_for(composer.MAX_LINES), timeout=2000)
    composer.clear()
    qtbot.waitUntil(lambda: composer.height() == empty, timeout=2000)
