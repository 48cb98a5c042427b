"""The model manager window (File ▸ Models…): this computer's memory and a context slider on top, the
Catalog / Search / On this computer / Downloads tabs, and the load status at the bottom.

Loading goes through the app's one inference worker (`context.load`); the main window's status bar
follows it as for any load, and this window shows the progress and the engine's reason when it fails.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QTabWidget,
    QTreeWidget,
    QVBoxLayout,
    QWidget,
)

from app.context import AppContext
from app.geometry import resize_to_fit
from app.labels import describe_model
from app.models.catalog_tab import CatalogTab
from app.models.download_jobs import DownloadJob, JobState
from app.models.downloads_tab import DownloadsTab
from app.models.local_tab import LocalTab
from app.models.search_tab import SearchTab
from app.models.state import HardwareSource, ManagerState
from app.theme import Colors
from engine.config import LoadConfig
from engine.fit.badges import CONTEXT_STEPS, hardware_summary
from engine.fit.hardware import HardwareInfo, detect
from engine.inference.api import EngineInfo
from engine.store.catalog import Catalog, load_catalog
from engine.store.model_store import ModelStore

SLIDER_SETTLE_MS = 120  # recompute badges once the slider rests this long: dragging queues no estimates


class ModelManager(QWidget):
    def __init__(
        self,
        context: AppContext,
        parent: QWidget | None = None,
        *,
        hardware: HardwareSource | None = None,
        catalog: Catalog | None = None,
        store: ModelStore | None = None,
    ) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.context = context
        self.setWindowTitle("Models — Tandem")
        self.state = ManagerState(catalog or load_catalog(), store or ModelStore(), context.colors, self)
        self._closed = False
        self._loading_title: str | None = None
        self._failed = False  # the status line shows a load error

        self.hardware_label = QLabel("Detecting this computer…")
        self.hardware_label.setWordWrap(True)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, len(CONTEXT_STEPS) - 1)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setValue(CONTEXT_STEPS.index(self.state.n_ctx))
        self.slider.setMinimumWidth(220)
        self.slider.setToolTip("Context window the badges are estimated for (the KV cache grows with it)")
        self.context_label = QLabel()
        self.context_label.setMinimumWidth(130)
        self._settle = QTimer(self, singleShot=True, interval=SLIDER_SETTLE_MS)
        self._settle.timeout.connect(self._apply_context)
        self.slider.valueChanged.connect(self._on_slider)
        self._on_slider(self.slider.value())

        self.catalog_tab = CatalogTab(self.state)
        self.search_tab = SearchTab(self.state)
        self.local_tab = LocalTab(self.state)
        self.downloads_tab = DownloadsTab(self.state.downloads)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.catalog_tab, "Catalog")
        self.tabs.addTab(self.search_tab, "Search")
        self.tabs.addTab(self.local_tab, "On this computer")
        self.tabs.addTab(self.downloads_tab, "Downloads")

        self.load_status = QLabel()
        self.load_status.setWordWrap(True)
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 100)
        self.load_progress.setMaximumWidth(200)
        self.load_progress.hide()
        self.chat_button = QPushButton("Chat now")
        self.chat_button.clicked.connect(self.go_chat)
        self.chat_button.hide()

        top = QHBoxLayout()
        top.addWidget(self.hardware_label, 1)
        top.addWidget(QLabel("Context"))
        top.addWidget(self.slider)
        top.addWidget(self.context_label)
        bottom = QHBoxLayout()
        bottom.addWidget(self.load_progress)
        bottom.addWidget(self.load_status, 1)
        bottom.addWidget(self.chat_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(bottom)
        resize_to_fit(self, 1180, 720)

        client = context.client
        client.loadStarted.connect(self._on_load_started)
        client.loadProgress.connect(lambda f: self.load_progress.setValue(round(f * 100)))
        client.modelLoaded.connect(self._on_loaded)
        client.loadFailed.connect(self._on_load_failed)
        context.colorsChanged.connect(self._on_colors)
        self.state.loadRequested.connect(self._load)
        # A load error is about the model picked then: once the user looks at another, it no longer applies.
        self.tabs.currentChanged.connect(self._clear_error)
        for tree in self.tabs.findChildren(QTreeWidget):
            tree.currentItemChanged.connect(self._clear_error)
        self.state.downloads.jobAdded.connect(self._count_downloads)
        self.state.downloads.jobChanged.connect(self._count_downloads)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._detect(hardware)

    # --- hardware and context -------------------------------------------------------------------------------
    def _detect(self, hardware: HardwareSource | None) -> None:
        if isinstance(hardware, HardwareInfo):
            self._on_hardware(hardware)
            return
        probe: Callable[[], HardwareInfo] = hardware if hardware is not None else detect
        self.state.runner.run(probe, self._on_hardware, self._on_hardware_error)

    def _on_hardware(self, hw: HardwareInfo) -> None:
        hint = " — hover here to see how to use a GPU" if hw.rebuild_hint else ""
        self.hardware_label.setText(f"<b>This computer</b>: {hardware_summary(hw)}{hint}")
        tip = "\n".join(filter(None, [hw.rebuild_hint, *hw.notes]))
        self.hardware_label.setToolTip(tip)
        self.state.set_hardware(hw)

    def _on_hardware_error(self, message: str) -> None:
        self.hardware_label.setText(f"Could not detect this computer's memory: {message}")

    def _on_slider(self, index: int) -> None:
        self.context_label.setText(f"{CONTEXT_STEPS[index]:,} tokens")
        self._settle.start()

    def _apply_context(self) -> None:
        self.state.set_context(CONTEXT_STEPS[self.slider.value()])

    def set_context(self, n_ctx: int) -> None:
        """Move the slider to `n_ctx` (one of CONTEXT_STEPS) and recompute at once."""
        self.slider.setValue(CONTEXT_STEPS.index(n_ctx))
        self._settle.stop()
        self._apply_context()

    def _on_colors(self, colors: Colors) -> None:
        self.state.set_colors(colors)

    def _count_downloads(self, _job: DownloadJob) -> None:
        active = sum(
            not j.state.finished and j.state is not JobState.PAUSED for j in self.state.downloads.jobs
        )
        self.tabs.setTabText(3, f"Downloads ({active})" if active else "Downloads")

    # --- loading --------------------------------------------------------------------------------------------
    def _load(self, config: LoadConfig, title: str) -> None:
        self._loading_title = title
        self.context.load(config)

    def _on_load_started(self, config: LoadConfig) -> None:
        self._failed = False
        title = self._loading_title or config.model_path.name
        self.load_status.setText(f"Loading {title}…")
        self.load_progress.setValue(0)
        self.load_progress.show()
        self.chat_button.hide()

    def _on_loaded(self, info: EngineInfo) -> None:
        self._loading_title = None
        self._failed = False
        self.load_progress.hide()
        self.load_status.setText(f"Loaded: {describe_model(info)}")
        self.chat_button.show()

    def _on_load_failed(self, message: str) -> None:
        self._loading_title = None
        self.load_progress.hide()
        self.load_status.setText(
            f"<span style='color:{self.context.colors.error}'>Could not load the model: "
            f"{html.escape(message)}</span>"
        )
        self._failed = True

    def _clear_error(self, *_: object) -> None:
        if self._failed:
            self._failed = False
            info = self.context.client.info
            self.load_status.setText(f"Loaded: {describe_model(info)}" if info is not None else "")

    def go_chat(self) -> None:
        parent = self.parentWidget()
        if parent is not None:
            parent.raise_()
            parent.activateWindow()
        self.close()

    # --- lifetime -------------------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        # Hidden, not destroyed: downloads go on and the window comes back as it was.
        event.accept()

    def shutdown(self) -> None:
        """Stop the manager's threads (downloads keep their partial files)."""
        if not self._closed:
            self._closed = True
            self.state.shutdown()
