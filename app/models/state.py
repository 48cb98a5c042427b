"""What the model manager's tabs share: the catalog, the model store, the detected (or injected) hardware,
the context size of the slider, the background runner, the download queue and the theme colours. Tabs
listen to its signals and recompute their badges; none of them talks to another directly."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QSplitter, QWidget

from app.models.download_jobs import DownloadQueue
from app.models.tasks import TaskRunner
from app.theme import Colors
from engine.config import DEFAULT_N_CTX, KVType, LoadConfig
from engine.fit.badges import FitBadge
from engine.fit.hardware import HardwareInfo
from engine.store.catalog import Catalog
from engine.store.model_store import ModelStore

HardwareSource = HardwareInfo | Callable[[], HardwareInfo]


class ManagerState(QObject):
    hardwareChanged = Signal(object)  # HardwareInfo
    contextChanged = Signal(int)
    colorsChanged = Signal(object)  # Colors
    loadRequested = Signal(object, str)  # LoadConfig, what is being loaded (for the status line)

    def __init__(
        self,
        catalog: Catalog,
        store: ModelStore,
        colors: Colors,
        parent: QObject | None = None,
        *,
        kv_type: KVType = "f16",
    ) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.store = store
        self.colors = colors
        self.kv_type: KVType = kv_type
        self.hardware: HardwareInfo | None = None
        self.n_ctx = DEFAULT_N_CTX  # what the app loads with unless the slider says otherwise
        self.runner = TaskRunner("model-manager", self)
        self.downloads = DownloadQueue(store, self)

    def set_hardware(self, hardware: HardwareInfo) -> None:
        self.hardware = hardware
        self.hardwareChanged.emit(hardware)

    def set_context(self, n_ctx: int) -> None:
        if n_ctx != self.n_ctx:
            self.n_ctx = n_ctx
            self.contextChanged.emit(n_ctx)

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
        self.colorsChanged.emit(colors)

    def request_load(self, parent: QWidget, config: LoadConfig, title: str, badge: FitBadge | None) -> bool:
        """Ask the worker to load `config`; when no plan fits this machine, only after a "Load anyway"."""
        if badge is not None and badge.needs_confirmation:
            box = QMessageBox(QMessageBox.Icon.Warning, "This may not fit", "", parent=parent)
            box.setText(f"{title} does not fit this computer as estimated: {badge.full_label}.")
            box.setInformativeText(
                badge.tooltip.splitlines()[0]
                + "\n\nLoading anyway may fail or make the computer swap heavily. It will run on the CPU "
                f"with a {config.n_ctx}-token context."
            )
            anyway = box.addButton("Load anyway", QMessageBox.ButtonRole.AcceptRole)
            box.addButton(QMessageBox.StandardButton.Cancel)
            box.exec()
            if box.clickedButton() is not anyway:
                return False
        self.loadRequested.emit(config, title)
        return True

    def shutdown(self) -> None:
        self.downloads.shutdown()
        self.runner.shutdown()


def split_view(left: QWidget, right: QWidget) -> QSplitter:
    """The layout every manager tab shares: a list on the left (3 parts), its details on the right (2)."""
    splitter = QSplitter(Qt.Orientation.Horizontal)
    splitter.addWidget(left)
    splitter.addWidget(right)
    splitter.setStretchFactor(0, 3)
    splitter.setStretchFactor(1, 2)
    splitter.setSizes([640, 500])
    return splitter
