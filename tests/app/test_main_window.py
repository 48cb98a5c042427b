"""Main window: conversation list (new, search, rename, delete with undo), chats in their own windows,
remembered geometry, export/import, status bar, and the app entry point's model handling."""

from __future__ import annotations

import gc
import json
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QSize
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from app import main as app_main
from app.chat_list_delegate import PreviewRole, highlight
from app.main_window import MainWindow
from engine.errors import ModelFileError
from tests.app.fake_engine import FakeOptions, fake_factory


@pytest.fixture
def window(qtbot, context):
    w = MainWindow(context)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def titles(window):
    return [c.title for c in window.sidebar.model.rows]


def finish(qtbot, window):
    qtbot.waitUntil(lambda: window.panel.session.state == "idle", timeout=10_000)


def test_starts_with_a_chat_and_shows_the_model(window, context):
    assert titles(window) == ["New chat"] and window.panel.chat_id == window.sidebar.model.rows[0].id
    text = window.model_label.text()
    assert "fake-target" in text and "MTP (fake assistant)" in text and "CPU" in text
    assert "app memory" in window.memory_label.text()


def test_new_chat_search_rename(qtbot, window, context):
    window.panel.composer.setPlainText("How do kites fly?")
    window.panel.send()
    finish(qtbot, window)
    window.new_chat()
    window.panel.composer.setPlainText("Recipe for bread")
    window.panel.send()
    finish(qtbot, window)
    assert len(titles(window)) == 2 and all(t != "New chat" for t in titles(window))
    window.sidebar.search.setText("KITES")
    qtbot.waitUntil(lambda: len(titles(window)) == 1, timeout=2000)
    kites = window.sidebar.model.rows[0].id
    index = window.sidebar.model.index(0)
    assert "kites" in index.data(PreviewRole).lower() and window.sidebar.delegate.needle == "KITES"
    from PySide6.QtWidgets import QStyleOptionViewItem

    option = QStyleOptionViewItem()
    window.sidebar.list.initViewItemOption(option)
    option.rect = window.sidebar.list.visualRect(index)
    doc = window.sidebar.delegate._document(option, index)
    assert "background-color:#f2cc60" in doc.toHtml().replace(" ", "")  # the match is highlighted
    assert not window.sidebar.no_match.isVisible()
    window.sidebar.search.setText("<b>zebras")
    qtbot.waitUntil(lambda: window.sidebar.no_match.isVisible(), timeout=2000)
    assert window.sidebar.no_match.text() == "No chats match “<b>zebras”." and titles(window) == []
    window.sidebar.search.clear()
    qtbot.waitUntil(lambda: len(titles(window)) == 2, timeout=2000)
    window.sidebar.select(kites)
    assert window.panel.chat_id == kites
    window.sidebar.rename(kites, "Kites")
    assert "Kites" in titles(window) and window.panel.title.text() == "Kites"


def test_highlight_marks_every_match_and_escapes():
    marked = highlight("Kites <fly>, kites!", "kites", ("y", "k"))
    span = '<span style="background-color:y; color:k">'
    assert marked == f"{span}Kites</span> &lt;fly&gt;, {span}kites</span>!"


def test_delete_with_undo(qtbot, window, context, store):
    first = window.panel.chat_id
    window.new_chat()
    second = window.panel.chat_id
    window.sidebar.delete(second)
    assert [c.id for c in store.list_chats()] == [first]
    assert window.sidebar.undo_bar.isVisible() and window.panel.chat_id == first
    window.sidebar.undo_delete()
    assert sorted(c.id for c in store.list_chats()) == sorted([first, second])
    assert window.panel.chat_id == second and not window.sidebar.undo_bar.isVisible()


def test_chat_in_its_own_window(qtbot, window, context):
    chat_id = window.panel.chat_id
    window.sidebar.openInWindow.emit(chat_id)
    assert len(context.windows) == 1
    other = context.windows[0]
    qtbot.addWidget(other)
    assert other.chat_id == chat_id
    # Both views share the session: a message sent in one shows in the other.
    other.panel.composer.setPlainText("shared")
    other.panel.send()
    qtbot.waitUntil(lambda: other.panel.session.state == "idle", timeout=10_000)
    assert len(window.panel.view.widgets) == 2 and len(other.panel.view.widgets) == 2
    window.sidebar.openInWindow.emit(chat_id)  # already open: raised, not duplicated
    assert len(context.windows) == 1
    window.new_window()
    assert len(context.windows) == 2
    for w in context.windows:
        qtbot.addWidget(w)


def test_geometry_is_remembered(qtbot, context):
    first = MainWindow(context)
    qtbot.addWidget(first)
    first.show()
    first.resize(QSize(731, 511))
    first.move(QPoint(23, 17))
    qtbot.waitUntil(lambda: first.size() == QSize(731, 511), timeout=2000)
    first.splitter.setSizes([170, 561])
    sizes = first.splitter.sizes()
    assert sizes != [240, 491]  # moved away from the default split
    first.close()
    second = MainWindow(context)
    qtbot.addWidget(second)
    second.show()
    assert second.size() == QSize(731, 511)
    assert (second.pos() - first.pos()).manhattanLength() <= 10  # offscreen adds a few pixels of "frame"
    assert second.splitter.sizes() == sizes


def test_export_import_round_trip(qtbot, window, context, store, tmp_path, monkeypatch):
    window.panel.composer.setPlainText("Export me, with **markdown** and 漢字")
    window.panel.send()
    finish(qtbot, window)
    chat_id = window.panel.chat_id
    target = tmp_path / "chat.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.export_chat("json")
    md_target = tmp_path / "chat.md"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(md_target), ""))
    window.export_chat("md")
    assert "漢字" in md_target.read_text(encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(target), ""))
    window.import_chat()
    imported = window.panel.chat_id
    assert imported != chat_id
    original, copy = store.messages(chat_id), store.messages(imported)
    assert [(m.role, m.content, m.status, m.stats) for m in copy] == [
        (m.role, m.content, m.status, m.stats) for m in original
    ]
    # The imported reply still shows its statistics and provenance.
    reply = window.panel.session.messages[-1]
    assert reply.stats is not None and reply.pieces and reply.drafter == "MTP (fake assistant)"
    assert json.loads(target.read_text(encoding="utf-8"))["messages"][1]["summary"]["n_generated"] > 0


def test_import_of_a_bad_file_says_why(window, tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}', encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    window.import_chat()
    assert len(shown) == 1 and "bad.json" in shown[0] and "Traceback" not in shown[0]


def test_load_failure_is_a_dialog_not_a_traceback_and_keeps_the_model(qtbot, window, context):
    before = window.model_label.text()
    assert before.startswith("fake-target")
    context.client._worker._factory = fake_factory(
        FakeOptions(load_error=ModelFileError("/m/x.gguf", "truncated\x1b]0;pwned\x07"))
    )
    from engine.config import LoadConfig

    with qtbot.waitSignal(context.client.loadFailed, timeout=5000):
        context.client.load(LoadConfig(model_path=Path("/m/x.gguf")))
    box = window.load_error_box
    assert box is not None and box.windowTitle() == "Could not load the model"
    assert box.text() == "/m/x.gguf: truncated\\e]0;pwned\\x07"  # escapes shown, never interpreted
    assert "still loaded and answering" in box.informativeText()
    # the model loaded before is still the one in the status bar, and it still answers
    assert window.model_label.text() == before and context.client.info is not None
    box.close()


def run_main(monkeypatch, argv, factory, tmp_path, until=lambda: True, qtbot=None):
    """Run app.main.main with an exec() that returns once `until()` holds; returns what the information
    dialog said."""
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text, *a: shown.append(text))

    def fake_exec(self):
        if qtbot is not None:
            qtbot.waitUntil(until, timeout=5000)
        return 0

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    from app.history.store import HistoryStore

    store = HistoryStore(tmp_path / "main.sqlite3")
    try:
        assert app_main.main(argv, engine_factory=factory, store=store) == 0
    finally:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow):
                widget.close()
                widget.deleteLater()
    return shown


def test_start_up_objects_are_frozen_once_the_lexers_are_loaded(qtbot):
    """A full collection would otherwise walk every start-up object on the GUI thread mid-reply."""
    gc.unfreeze()
    release = threading.Event()
    warm_up = threading.Thread(target=release.wait, daemon=True)
    warm_up.start()
    app_main.settle_startup(warm_up)
    qtbot.wait(250)
    assert gc.get_freeze_count() == 0  # still loading: it waits
    release.set()
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=2000)


def test_main_without_a_model_explains_how_to_install_one(qtbot, monkeypatch, tmp_path):
    import engine.store.default_model

    monkeypatch.setattr(engine.store.default_model, "default_model_path", lambda: None)
    if app_main.qt_binding_problem():
        pytest.skip("this PySide6 cannot run the app")
    shown = run_main(monkeypatch, [], fake_factory(), tmp_path)
    assert len(shown) == 1 and "python -m engine.store.default_model" in shown[0] and "--model" in shown[0]


def test_main_loads_the_given_model(qtbot, monkeypatch, tmp_path):
    if app_main.qt_binding_problem():
        pytest.skip("this PySide6 cannot run the app")
    options = FakeOptions()
    seen: list[object] = []
    base = fake_factory(options)

    def factory(config, progress=None):
        seen.append(config)
        return base(config, progress)

    def loaded() -> bool:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        return any(w.model_label.text().startswith("m · no drafter") for w in windows)

    argv = ["--model", str(tmp_path / "m.gguf"), "--drafter", "none", "--ctx", "2048"]
    shown = run_main(monkeypatch, argv, factory, tmp_path, until=loaded, qtbot=qtbot)
    assert shown == []
    assert len(seen) == 1 and seen[0].model_path == tmp_path / "m.gguf" and seen[0].drafter == "none"
    assert seen[0].n_ctx == 2048


def test_theme_switch_rerenders_open_chats(qtbot, window, context):
    from app.theme import DARK, LIGHT

    window.panel.composer.setPlainText("colours?")
    window.panel.send()
    finish(qtbot, window)
    reply = [w for w in window.panel.view.widgets.values() if w.item.role == "assistant"][-1]
    assert LIGHT.code_bg in reply.body.toHtml()
    window.set_theme("dark")
    assert context.colors is DARK
    reply = [w for w in window.panel.view.widgets.values() if w.item.role == "assistant"][-1]
    assert DARK.code_bg in reply.body.toHtml() and LIGHT.code_bg not in reply.body.toHtml()
    window.set_theme("light")
    assert context.colors is LIGHT


def test_keyboard_shortcuts(qtbot, window, context, monkeypatch):
    from PySide6.QtCore import Qt

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    n = len(titles(window))
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert len(titles(window)) == n + 1
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.panel.find_bar.isVisible()
    from app import chat_window

    opened: list[bool] = []
    monkeypatch.setattr(chat_window.ChatSettingsDialog, "exec", lambda self: opened.append(True) or 0)
    qtbot.keyClick(window, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    assert opened == [True]
    ctrl_shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(window, Qt.Key.Key_N, ctrl_shift)
    assert len(context.windows) == 1
    for w in context.windows:
        qtbot.addWidget(w)


def test_stop_shortcut(qtbot, window, fake_options):
    from PySide6.QtCore import Qt

    fake_options.token_delay = 0.01
    window.activateWindow()
    window.panel.composer.setPlainText("go on and on")
    window.panel.send()
    session = window.panel.session
    qtbot.waitUntil(lambda: len(session.messages[-1].content) > 20, timeout=5000)
    qtbot.keyClick(window.panel.composer, Qt.Key.Key_Escape)
    finish(qtbot, window)
    assert session.messages[-1].status == "stopped"


def test_spec_toggle_disabled_without_a_drafter(qtbot, context, store):
    from app.main_window import MainWindow
    from app.worker import WorkerClient
    from engine.config import LoadConfig

    client = WorkerClient(fake_factory(FakeOptions()))
    try:
        with qtbot.waitSignal(client.modelLoaded, timeout=5000):
            client.load(LoadConfig(model_path=Path("/m/plain.gguf"), drafter="none"))
        from app.context import AppContext

        w = MainWindow(AppContext(store, client, context.colors))
        qtbot.addWidget(w)
        assert not w.panel.spec_toggle.isEnabled()
        assert "no drafter" in w.panel.spec_toggle.toolTip()
    finally:
        client.shutdown()


def test_quitting_mid_stream_keeps_the_partial_reply(qtbot, monkeypatch, tmp_path):
    """Closing the app while a reply streams: the worker is cancelled and the reply is saved as stopped."""
    if app_main.qt_binding_problem():
        pytest.skip("this PySide6 cannot run the app")
    options = FakeOptions(script="word " * 3000, token_delay=0.005)

    def fake_exec(self):
        window = next(
            w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()
        )
        qtbot.waitUntil(lambda: window.context.client.info is not None, timeout=5000)
        window.panel.composer.setPlainText("keep going")
        window.panel.send()
        session = window.panel.session
        qtbot.waitUntil(lambda: len(session.messages[-1].content) > 30, timeout=5000)
        monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
        window.close()  # asks (answered Yes), then the app shuts down
        return 0

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    from app.history.store import HistoryStore

    path = tmp_path / "quit.sqlite3"
    assert (
        app_main.main(["--model", "m.gguf"], engine_factory=fake_factory(options), store=HistoryStore(path))
        == 0
    )
    store = HistoryStore(path)
    try:
        (chat,) = store.list_chats()
        user, reply = store.messages(chat.id)
        assert reply.status == "stopped" and 30 < len(reply.content) < len("word " * 3000)
        assert reply.stats["app"]["stop_reason"] == "cancelled"
    finally:
        store.close()


def test_delete_and_f2_work_on_a_clicked_chat(qtbot, window, context, store, monkeypatch):
    """Issue 16: clicking a chat moved the focus to the composer, so Delete and F2 never reached the list."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QInputDialog

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    first = window.panel.chat_id
    window.new_chat()
    second = window.panel.chat_id
    listing = window.sidebar.list
    row = window.sidebar.model.row_of(first)
    center = listing.visualRect(window.sidebar.model.index(row)).center()
    qtbot.mouseClick(listing.viewport(), Qt.MouseButton.LeftButton, pos=center)
    assert window.panel.chat_id == first

    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Renamed by F2", True))
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_F2)
    assert "Renamed by F2" in titles(window)

    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Delete)
    assert [c.id for c in store.list_chats()] == [second]
    assert window.sidebar.undo_bar.isVisible()


def test_app_reopens_with_the_last_model_and_its_performance_settings(qtbot, monkeypatch, tmp_path):
    if app_main.qt_binding_problem():
        pytest.skip("this PySide6 cannot run the app")
    from app.model_settings import Performance, save_performance

    model = tmp_path / "last-one.gguf"
    model.write_bytes(b"GGUF")  # the fake engine never reads it; the app only checks that it is still there
    seen: list[object] = []
    base = fake_factory(FakeOptions())

    def factory(config, progress=None):
        seen.append(config)
        return base(config, progress)

    def loaded() -> bool:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        return any(w.model_label.text().startswith("last-one") for w in windows)

    run_main(monkeypatch, ["--model", str(model), "--drafter", "none", "--ctx", "2048"], factory, tmp_path,
             until=loaded, qtbot=qtbot)  # fmt: skip
    save_performance(Performance(threads=3, batch=256))
    run_main(monkeypatch, [], factory, tmp_path, until=loaded, qtbot=qtbot)
    run_main(monkeypatch, ["--ctx", "1024"], factory, tmp_path, until=loaded, qtbot=qtbot)
    first, again, smaller = seen
    assert (first.model_path, first.n_threads, first.n_batch) == (model, None, 512)
    assert (again.model_path, again.drafter, again.n_ctx) == (model, "none", 2048)
    assert (again.n_threads, again.n_batch) == (3, 256)
    assert (smaller.model_path, smaller.n_ctx) == (model, 1024)
    model.unlink()  # gone: the app falls back to the embedded model
    from app.model_settings import last_model

    assert last_model() is None


def test_a_second_window_has_the_menus_and_the_status_bar(qtbot, window, context):
    window.sidebar.openInWindow.emit(window.panel.chat_id)
    other = context.windows[0]
    qtbot.addWidget(other)
    menus = {a.text().replace("&", ""): a.menu() for a in other.menuBar().actions()}
    assert list(menus) == ["File", "Chat", "View", "Help"]
    texts = {a.text(): a for menu in menus.values() for a in menu.actions()}
    assert {"Models…", "Export chat as Markdown…", "Performance settings…", "Open log"} <= set(texts)
    assert "fake-target" in other.model_status.model_label.text()
    requested: list[bool] = []
    context.modelsRequested.connect(lambda: requested.append(True))
    texts["Models…"].trigger()
    assert requested == [True] and window.models is not None
    window.models.shutdown()
    window.models.close()


def test_export_offers_documents_remembers_the_folder_and_confirms(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtCore import QStandardPaths

    documents = tmp_path / "Documents"
    documents.mkdir()
    monkeypatch.setattr(QStandardPaths, "writableLocation", lambda _where: str(documents))
    window.panel.composer.setPlainText("Kites?")
    window.panel.send()
    finish(qtbot, window)
    asked: list[tuple[str, str]] = []
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def save_as(_parent, _title, suggested, filters):
        asked.append((suggested, filters))
        return str(elsewhere / "kites"), filters  # no suffix typed: the format's is added

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_as)
    window.export_chat("md")
    suggested, filters = asked[0]
    assert Path(suggested).parent == documents and suggested.endswith(".md") and filters == "Markdown (*.md)"
    written = (elsewhere / "kites.md").read_text(encoding="utf-8")
    assert "Exported from Tandem on " in written and "fake-target" in written
    assert str(elsewhere / "kites.md") in window.statusBar().currentMessage()
    window.export_chat("json")
    assert Path(asked[1][0]).parent == elsewhere and asked[1][1] == "Tandem chat (*.json)"


def test_a_failed_reply_offers_the_model_manager(qtbot, window, context):
    context.client.unload()
    qtbot.waitUntil(lambda: context.client.info is None, timeout=5000)
    window.panel.composer.setPlainText("anyone there?")
    window.panel.send()
    finish(qtbot, window)
    reply = [w for w in window.panel.view.widgets.values() if w.item.role == "assistant"][-1]
    assert reply.item.status == "error" and reply.models_button.isVisible()
    reply.models_button.click()
    assert window.models is not None and window.models.isVisible()
    window.models.shutdown()
    window.models.close()


def test_performance_settings_reload_the_model(qtbot, window, context, monkeypatch):
    from app.model_settings import load_performance
    from app.performance_dialog import PerformanceDialog
    from engine.config import LoadConfig

    configs: list[object] = []
    context.client.loadStarted.connect(configs.append)
    with qtbot.waitSignal(context.client.modelLoaded, timeout=5000):
        context.load(LoadConfig(model_path=Path("/m/fast.gguf")))
    dialog = PerformanceDialog(context, window)
    assert dialog.threads.value() == 0 and dialog.threads.specialValueText().startswith("Automatic (")
    dialog.threads.setValue(2)
    dialog.batch.setCurrentIndex(dialog.batch.findData(1024))
    with qtbot.waitSignal(context.client.modelLoaded, timeout=5000):
        dialog.accept()
    assert (load_performance().threads, load_performance().batch) == (2, 1024)
    assert [(c.model_path.name, c.n_threads, c.n_batch) for c in configs] == [
        ("fast.gguf", None, 512), ("fast.gguf", 2, 1024),
    ]  # fmt: skip
