"""The status bar of every Tandem window: the loaded model pair and device, a load's progress with Cancel,
and how much memory the model and the app take."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QMainWindow, QProgressBar, QPushButton

from app.context import AppContext
from app.elided import FitLabel
from app.labels import describe_model
from engine.config import LoadConfig
from engine.inference.api import EngineInfo
from engine.units import format_bytes

MEMORY_INTERVAL_MS = 3000


class ModelStatus(QObject):
    def __init__(self, window: QMainWindow, context: AppContext) -> None:
        super().__init__(window)
        self.context = context
        status = window.statusBar()
        # Elided, not clipped or widening the window, when a long model name meets a narrow window.
        self.model_label = FitLabel()
        self.model_label.setText("No model loaded")
        self.memory_label = FitLabel()
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 100)
        self.load_progress.setMaximumWidth(160)
        self.load_cancel = QPushButton("Cancel")
        self.load_cancel.clicked.connect(context.client.cancel_load)
        self.load_progress.hide()
        self.load_cancel.hide()
        status.addPermanentWidget(self.load_progress)
        status.addPermanentWidget(self.load_cancel)
        status.addPermanentWidget(self.model_label, 3)
        status.addPermanentWidget(self.memory_label, 1)
        client = context.client
        self._connections = [
            (client.loadStarted, self._on_load_started),
            (client.loadProgress, self._on_progress),
            (client.modelLoaded, self._on_loaded),
            (client.loadFailed, self._on_load_failed),
            (client.modelUnloaded, self._on_unloaded),
        ]
        for signal, slot in self._connections:
            signal.connect(slot)
        self._memory_timer = QTimer(self, interval=MEMORY_INTERVAL_MS)
        self._memory_timer.timeout.connect(self.update_memory)
        self._memory_timer.start()
        self.update_memory()
        if client.info is not None:
            self._on_loaded(client.info)

    def detach(self) -> None:
        """Stop following the shared worker (the window is closing)."""
        self._memory_timer.stop()
        for signal, slot in self._connections:
            signal.disconnect(slot)

    def _on_load_started(self, config: LoadConfig) -> None:
        self.model_label.setText(f"Loading {config.model_path.name}…")
        self.load_progress.setValue(0)
        self.load_progress.show()
        self.load_cancel.show()

    def _on_progress(self, fraction: float) -> None:
        self.load_progress.setValue(round(fraction * 100))

    def _on_loaded(self, info: EngineInfo) -> None:
        self.load_progress.hide()
        self.load_cancel.hide()
        self.model_label.setText(describe_model(info))
        self.model_label.setToolTip(f"{describe_model(info)}\n{info.model_path}")
        self.update_memory()

    def _on_load_failed(self, _message: str) -> None:
        self.load_progress.hide()
        self.load_cancel.hide()
        info = self.context.client.info  # a failed load changes nothing: the model before keeps serving
        if info is not None:
            self._on_loaded(info)
        else:
            self.model_label.setText("No model loaded")

    def _on_unloaded(self) -> None:
        self.model_label.setText("No model loaded")

    def update_memory(self) -> None:
        try:
            import psutil

            rss = psutil.Process().memory_info().rss
        except (ImportError, OSError):
            return
        info = self.context.client.info
        model = ""
        if info is not None:
            model = f"model {format_bytes(info.model_bytes)}" + (
                f" + drafter {format_bytes(info.drafter_bytes)}" if info.drafter_bytes else ""
            )
            model += " · "
        self.memory_label.setText(f"{model}app memory {format_bytes(rss)}")
