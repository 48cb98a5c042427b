"""Model manager (app/models): fit badges for fake machines, the context slider, drafter pairing with greyed
incompatible drafters, downloads from the local fake hub (progress, pause/resume, cancel), search online and
offline, local models, loading through the worker, and the main window's Models… action."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

import engine.store.download as dl
from app.main_window import MainWindow
from app.models.catalog_tab import COL_FIT, PAIR_ROLE, QUANT_ROLE
from app.models.download_jobs import JobState
from app.models.fit_badge import BADGE_ROLE
from app.models.manager_window import ModelManager
from app.models.pairing import OPTION_ROLE
from engine.config import LoadConfig
from engine.errors import ModelFileError
from engine.fit.hardware import fake_hardware
from engine.store.catalog import load_catalog
from engine.store.model_store import ModelStore
from tests.fakehub import FakeHub, FakeRepo, isolate_hf_env, unused_port, write_tiny_gguf

TINY_GPU = fake_hardware((2,), ram_gb=16)
HUGE_GPU = fake_hardware((96,), ram_gb=128)
CPU_ONLY = fake_hardware((), ram_gb=16)
E2B_REPO = "unsloth/gemma-4-E2B-it-qat-GGUF"
E2B_FILE = "gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf"
E2B_MTP = "mtp-gemma-4-E2B-it.gguf"


@pytest.fixture
def model_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    isolate_hf_env(monkeypatch, tmp_path)  # TANDEM_DATA_DIR, HF cache and token under tmp_path
    return ModelStore(tmp_path / "tandem")


@pytest.fixture
def open_manager(qtbot, context, model_store) -> Iterator:
    managers: list[ModelManager] = []

    def make(hardware=HUGE_GPU) -> ModelManager:
        manager = ModelManager(context, hardware=hardware, store=model_store)
        qtbot.addWidget(manager)
        manager.show()
        managers.append(manager)
        tab = manager.catalog_tab
        qtbot.waitUntil(lambda: len(tab.fits) == len(tab.state.catalog.pairs) and tab.detail is not None)
        return manager

    yield make
    for manager in managers:
        manager.shutdown()


def pair_item(manager: ModelManager, pair_id: str):
    tree = manager.catalog_tab.tree
    return next(
        tree.topLevelItem(i)
        for i in range(tree.topLevelItemCount())
        if tree.topLevelItem(i).data(0, PAIR_ROLE) == pair_id
    )


def badge(manager: ModelManager, pair_id: str) -> tuple[str, str, str]:
    item = pair_item(manager, pair_id)
    return item.data(COL_FIT, BADGE_ROLE), item.text(COL_FIT), item.toolTip(COL_FIT)


@pytest.mark.parametrize(
    ("hardware", "level", "text"),
    [
        (HUGE_GPU, "gpu", "Fits on GPU"),
        (TINY_GPU, "partial", "Partial offload ("),
        (CPU_ONLY, "cpu", "CPU only"),
    ],
    ids=["huge-vram", "tiny-vram", "cpu-only"],
)
def test_fit_badges_for_fake_devices(open_manager, hardware, level, text):
    manager = open_manager(hardware)
    got_level, got_text, tooltip = badge(manager, "gemma4-e2b-mtp")
    assert got_level == level and got_text.startswith(text)
    assert "weights" in tooltip and "drafter" in tooltip and "KV" in tooltip
    if level == "partial":  # "N of M layers" as the estimator planned
        fit = manager.catalog_tab.fits["gemma4-e2b-mtp"]
        result = fit.quant(fit.best).result
        assert f"({result.shown_gpu_layers} of {result.shown_layers} layers)" in got_text
    big_level, big_text, _ = badge(manager, "gemma4-31b-mtp")
    # 16 GB of RAM holds the 31B at UD-Q2_K_XL (about 12 GB) on the CPU, at a smaller context, no drafter:
    # the badge says so with its expected speed, the compromise marked ⚠ (spelled out in the tooltip)
    expected = {"huge": ("gpu", "Fits on GPU"), "cpu": ("cpu", "CPU only · ≈")}
    kind = "huge" if hardware is HUGE_GPU else "cpu" if hardware is CPU_ONLY else None
    if kind is not None:
        assert big_level == expected[kind][0] and big_text.startswith(expected[kind][1])
    if kind == "cpu":
        assert big_text.endswith("⚠")
    # every quantization row has its own badge
    item = pair_item(manager, "llama3.1-8b+3.2-1b")
    assert item.childCount() == 4 and all(item.child(i).data(COL_FIT, BADGE_ROLE) for i in range(4))
    assert "simulated" in manager.hardware_label.text()


def test_context_slider_changes_the_badges(qtbot, open_manager):
    manager = open_manager(fake_hardware((8,), ram_gb=32))
    assert manager.context_label.text() == "4,096 tokens"  # what the app loads with, as the CLI's --ctx
    assert manager.state.n_ctx == LoadConfig(model_path=Path("m.gguf")).n_ctx
    manager.slider.setValue(0)
    assert manager.context_label.text() == "2,048 tokens"
    qtbot.waitUntil(lambda: manager.catalog_tab.fits["llama3.1-8b+3.2-1b"].n_ctx == 2048)
    assert badge(manager, "llama3.1-8b+3.2-1b")[0] == "gpu"
    manager.slider.setValue(manager.slider.maximum())
    qtbot.waitUntil(lambda: manager.catalog_tab.fits["llama3.1-8b+3.2-1b"].n_ctx == 131072)
    level, text, tooltip = badge(manager, "llama3.1-8b+3.2-1b")
    assert level == "partial" and "131072 tokens" in tooltip


def test_best_quant_is_preselected_and_follows_the_machine(qtbot, open_manager):
    manager = open_manager(HUGE_GPU)
    tab = manager.catalog_tab
    tab.select_pair("llama3.1-8b+3.2-1b")
    qtbot.waitUntil(lambda: tab.detail is not None and tab.detail.pair_id == "llama3.1-8b+3.2-1b")
    assert tab.quant_box.currentData() == "Q8_0" and "★" in tab.quant_box.currentText()
    best_row = next(
        pair_item(manager, "llama3.1-8b+3.2-1b").child(i)
        for i in range(4)
        if pair_item(manager, "llama3.1-8b+3.2-1b").child(i).data(0, QUANT_ROLE) == "Q8_0"
    )
    assert "best fit" in best_row.text(0)
    tab.quant_box.setCurrentIndex(tab.quant_box.findData("Q4_K_M"))
    tab.quant_box.activated.emit(tab.quant_box.currentIndex())
    assert tab.quant.quant == "Q4_K_M" and "Q4_K_M" in tab.files.text()


def drafter_items(drafters):
    return [drafters.item(i) for i in range(drafters.count())]


def test_incompatible_drafters_are_greyed_with_the_reason(qtbot, open_manager):
    manager = open_manager(HUGE_GPU)
    tab = manager.catalog_tab
    tab.select_pair("gemma4-e2b-mtp")
    items = drafter_items(tab.drafters)
    by_id = {it.data(OPTION_ROLE).model_id or it.data(OPTION_ROLE).kind: it for it in items}
    own = by_id["gemma-4-e2b-it-assistant"]
    assert own.isSelected() and own.flags() & Qt.ItemFlag.ItemIsEnabled
    wider = by_id["gemma-4-e4b-it-assistant"]
    assert not wider.flags() & Qt.ItemFlag.ItemIsEnabled and not wider.flags() & Qt.ItemFlag.ItemIsSelectable
    assert "Made for another model size" in wider.text()
    assert "Vocabulary mismatch" in by_id["llama-3.2-1b-instruct"].text()
    assert "no embedded NextN" in by_id["gemma-4-e2b-it"].text()  # the NextN option, keyed by the target
    for item in items:  # rule ids are for tests and logs
        assert not any(rule in item.text() for rule in ("hidden-size", "vocab-size", "no-mtp-layers"))
    # choosing n-gram re-estimates without the drafter and drops its file from the download
    assert "Drafter" in tab.files.text()
    tab.drafters.setCurrentItem(by_id["ngram"])
    qtbot.waitUntil(lambda: tab.detail is not None and tab.option.kind == "ngram")
    assert "Drafter" not in tab.files.text() and "drafter" not in tab.memory.text()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, model_store, tmp_path: Path) -> Iterator[FakeHub]:
    target = write_tiny_gguf(tmp_path / "t.gguf", tensor_bytes=384 * 1024)
    assistant = write_tiny_gguf(tmp_path / "a.gguf", arch="gemma4-assistant", tensor_bytes=16 * 1024)
    repos = [FakeRepo(E2B_REPO, {E2B_FILE: target, E2B_MTP: assistant}, downloads=10)]
    with FakeHub(repos) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        monkeypatch.setattr(dl, "CHUNK_BYTES", 16 * 1024)
        monkeypatch.setattr(dl, "PROGRESS_INTERVAL_S", 0.0)
        h.slow = (16 * 1024, 0.03)  # ~0.8 s for the target: time to watch, pause and cancel
        yield h


def start_e2b_download(qtbot, manager):
    tab = manager.catalog_tab
    tab.select_pair("gemma4-e2b-mtp", "UD-Q4_K_XL")
    qtbot.waitUntil(lambda: tab.quant is not None and tab.quant.quant == "UD-Q4_K_XL")
    assert tab.download_button.isEnabled() and "Download pair" in tab.download_button.text()
    qtbot.mouseClick(tab.download_button, Qt.MouseButton.LeftButton)
    # the files are looked up in the hub's listing first, then queued with the listing's sizes
    qtbot.waitUntil(lambda: len(manager.state.downloads.jobs) == 1, timeout=10_000)
    (job,) = manager.state.downloads.jobs
    assert [f.filename for f in job.files] == [E2B_FILE, E2B_MTP] and all(f.verified for f in job.files)
    return job, manager.downloads_tab.rows[job.id]


def test_download_shows_progress_and_can_be_cancelled(qtbot, open_manager, hub, model_store):
    manager = open_manager(HUGE_GPU)
    job, row = start_e2b_download(qtbot, manager)
    assert not manager.catalog_tab.download_button.isEnabled()  # one click, one job
    qtbot.waitUntil(lambda: 0 < row.bar.value() < 1000, timeout=10_000)
    assert "%" in row.status.text() and "/s" in row.status.text()
    assert manager.tabs.tabText(3) == "Downloads (1)" and "%" in manager.catalog_tab.download_button.text()
    qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: job.state is JobState.CANCELLED, timeout=10_000)
    assert "Cancelled" in row.status.text() and row.cancel_button.isHidden() and row.pause_button.isHidden()
    assert model_store.list() == [] and model_store.partials() == []
    assert manager.catalog_tab.download_button.isEnabled()


def test_download_pause_resume_then_load_the_pair(qtbot, open_manager, hub, model_store, context):
    manager = open_manager(HUGE_GPU)
    job, row = start_e2b_download(qtbot, manager)
    qtbot.waitUntil(lambda: row.bar.value() > 0, timeout=10_000)
    qtbot.mouseClick(row.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: job.state is JobState.PAUSED, timeout=10_000)
    assert not row.resume_button.isHidden() and row.pause_button.isHidden() and "Paused" in row.status.text()
    ((partial, size),) = model_store.partials()
    assert size > 0
    button = manager.catalog_tab.download_button
    assert button.isEnabled() and button.text() == "Resume download"
    hub.slow = None
    qtbot.mouseClick(row.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: job.state is JobState.DONE, timeout=10_000)
    assert hub.range_starts() and hub.range_starts()[0] > 0  # resumed where it stopped
    assert {e.filename for e in model_store.list()} == {E2B_FILE, E2B_MTP}
    tab = manager.catalog_tab
    qtbot.waitUntil(lambda: tab.load_button.isEnabled())
    assert tab.download_button.text() == "Downloaded ✓"
    qtbot.mouseClick(tab.load_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: manager.load_status.text().startswith("Loaded"), timeout=5000)
    config = context.client.info  # the fake engine reports what it was asked to load
    assert config.model_path == model_store.path_for(E2B_REPO, E2B_FILE)
    assert manager.chat_button.isVisible()


def test_too_large_pair_asks_before_loading_anyway(
    qtbot, open_manager, model_store, context, monkeypatch, tmp_path
):
    manager = open_manager(fake_hardware((), ram_gb=8))
    pair = load_catalog().pair("gemma4-31b-mtp")
    tiny = write_tiny_gguf(tmp_path / "x.gguf")
    for model in (pair.target, pair.drafter):
        src = tmp_path / f"{model.id}.gguf"
        src.write_bytes(tiny)
        model_store.adopt(src, repo=model.repo, filename=model.quants[0].file, sha256="0" * 64,
                          source="hub", revision=None, move=True)  # fmt: skip
    tab = manager.catalog_tab
    tab.refresh_files()
    tab.select_pair("gemma4-31b-mtp")
    qtbot.waitUntil(lambda: tab.detail is not None and tab.load_button.isEnabled())
    assert tab.badge.badge.level == "too_large"
    answers: list[str] = []

    def answer(choice: str):
        def exec_(box: QMessageBox) -> int:
            answers.append(box.text())
            if choice == "anyway":
                next(b for b in box.buttons() if b.text() == "Load anyway").click()
            return 0

        return exec_

    loads: list = []
    context.client.loadStarted.connect(loads.append)
    monkeypatch.setattr(QMessageBox, "exec", answer("cancel"))
    tab.load()
    qtbot.wait(50)
    assert answers and "does not fit" in answers[0] and loads == []
    monkeypatch.setattr(QMessageBox, "exec", answer("anyway"))
    tab.load()
    qtbot.waitUntil(lambda: len(loads) == 1)
    assert (loads[0].n_gpu_layers, loads[0].n_ctx, loads[0].drafter) == (0, 4096, "mtp")
    assert loads[0].assistant_path == model_store.path_for(pair.drafter.repo, pair.drafter.quants[0].file)


def test_load_failure_shows_the_engine_reason(qtbot, open_manager, fake_options):

    manager = open_manager(HUGE_GPU)
    fake_options.load_error = ModelFileError("/m/x.gguf", "the file is truncated")
    manager.state.request_load(manager, LoadConfig(model_path=Path("/m/x.gguf")), "x", None)
    qtbot.waitUntil(lambda: "truncated" in manager.load_status.text(), timeout=5000)
    assert "Could not load" in manager.load_status.text()
    manager.tabs.setCurrentWidget(manager.local_tab)  # the user looks elsewhere: the error no longer applies
    assert "truncated" not in manager.load_status.text() and "Loaded:" in manager.load_status.text()


def test_a_download_that_never_started_is_tried_again_not_resumed(qtbot):
    from app.models.download_jobs import DownloadJob, JobState
    from app.models.downloads_tab import JobRow
    from engine.fit.pair_plan import FileRef
    from engine.store.download import DownloadProgress

    class Queue:
        def pause(self, job): ...

        resume = cancel = pause

    job = DownloadJob(1, "a pair", (FileRef("target", "o/r", "m.gguf", None),), state=JobState.FAILED)
    job.error = "hub offline"
    row = JobRow(job, Queue())
    qtbot.addWidget(row)
    assert row.resume_button.text() == "Try again" and "hub offline" in row.status.text()
    job.progress = DownloadProgress("m.gguf", 100, 1000, 10.0, None)
    row.update_from_job()
    assert row.resume_button.text() == "Resume"


def test_search_offline_says_so(qtbot, open_manager, monkeypatch):
    manager = open_manager(HUGE_GPU)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{unused_port()}")
    tab = manager.search_tab
    assert "only when you press Search" in tab.message.text()
    tab.query.setText("gemma")
    qtbot.mouseClick(tab.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.search_button.isEnabled(), timeout=20_000)
    assert "Search failed" in tab.message.text() and "cannot reach the hub" in tab.message.text()
    assert "Traceback" not in tab.message.text()


def test_search_lists_repos_and_downloads_a_file_with_its_drafter(qtbot, open_manager, hub, model_store):
    manager = open_manager(HUGE_GPU)
    hub.slow = None
    tab = manager.search_tab
    tab.query.setText("gemma-4")
    tab.search()
    qtbot.waitUntil(lambda: tab.results.topLevelItemCount() == 1, timeout=10_000)
    hit = tab.results.topLevelItem(0)
    assert hit.text(0) == E2B_REPO and hit.text(3) == "1" and hit.text(4) == "MTP drafter"
    tab.results.setCurrentItem(hit)
    tab.show_files(tab._current_hit())
    qtbot.waitUntil(lambda: tab.file_list.topLevelItemCount() == 2, timeout=10_000)
    assert tab.with_drafter.isChecked()
    tab.file_list.setCurrentItem(tab.file_list.topLevelItem(0))
    tab.download()
    (job,) = manager.state.downloads.jobs
    qtbot.waitUntil(lambda: job.state is JobState.DONE, timeout=10_000)
    assert {e.filename for e in model_store.list()} == {E2B_FILE, E2B_MTP}


def test_local_models_with_disk_usage_and_drafter_pairing(
    qtbot, open_manager, model_store, context, tiny_gemma4_path, tiny_gemma4_assistant_path,
    mismatched_assistant_paths,
):  # fmt: skip
    for path in (tiny_gemma4_path, tiny_gemma4_assistant_path, mismatched_assistant_paths["kv-heads"]):
        model_store.import_file(path)
    manager = open_manager(HUGE_GPU)
    tab = manager.local_tab
    qtbot.waitUntil(lambda: tab.scan is not None and len(tab.scan.models) == 3)
    assert "3 model(s)" in tab.usage.text() and "free on that disk" in tab.usage.text()
    target = tab._items[model_store.path_for(None, tiny_gemma4_path.name)]
    qtbot.waitUntil(lambda: target.data(4, BADGE_ROLE) is not None)
    assert target.data(4, BADGE_ROLE) == "gpu" and target.text(1) == "plain"
    tab.tree.setCurrentItem(target)
    items = {it.data(OPTION_ROLE).path.name if it.data(OPTION_ROLE).path else "ngram": it
             for it in drafter_items(tab.drafters)}  # fmt: skip
    good = items[tiny_gemma4_assistant_path.name]
    bad = items[mismatched_assistant_paths["kv-heads"].name]
    assert good.isSelected() and "kv-heads" in bad.text() and not bad.flags() & Qt.ItemFlag.ItemIsEnabled
    qtbot.waitUntil(lambda: tab.load_button.isEnabled())
    loads: list = []
    context.client.loadStarted.connect(loads.append)
    tab.load()
    qtbot.waitUntil(lambda: len(loads) == 1)
    assert loads[0].drafter == "mtp" and loads[0].assistant_path.name == tiny_gemma4_assistant_path.name


def test_models_action_opens_one_manager(qtbot, context, model_store, monkeypatch):
    monkeypatch.setattr("app.models.manager_window.detect", lambda: CPU_ONLY)
    window = MainWindow(context)
    qtbot.addWidget(window)
    actions = window.findChildren(type(window.menuBar().actions()[0]))
    action = next(a for a in actions if a.text() == "Models…")
    assert action.shortcut().toString() == "Ctrl+M"
    action.trigger()
    first = window.models
    assert first is not None and first.isVisible()
    qtbot.waitUntil(lambda: first.state.hardware is CPU_ONLY)
    first.close()
    action.trigger()
    assert window.models is first and first.isVisible()
    window.close()
    assert first._closed


def test_a_failed_load_with_the_manager_open_is_reported_once(qtbot, context, fake_options, monkeypatch):
    monkeypatch.setattr("app.models.manager_window.detect", lambda: CPU_ONLY)
    dialogs: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, title, text: dialogs.append(text))
    window = MainWindow(context)
    qtbot.addWidget(window)
    fake_options.load_error = ModelFileError("/m/x.gguf", "the file is truncated")
    manager = window.open_models()
    manager.state.request_load(manager, LoadConfig(model_path=Path("/m/x.gguf")), "x", None)
    qtbot.waitUntil(lambda: "truncated" in manager.load_status.text(), timeout=5000)
    assert dialogs == []  # the manager's status line says it: no modal dialog on top
    assert "truncated" in window.statusBar().currentMessage()
    manager.close()
    context.client.load(LoadConfig(model_path=Path("/m/x.gguf")))  # from File ▸ Load model…: the dialog
    qtbot.waitUntil(lambda: window.load_error_box is not None, timeout=5000)
    assert "truncated" in window.load_error_box.text()
    window.close()
