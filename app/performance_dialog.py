"""Performance settings (File ▸ Performance settings…): the CPU threads and prompt batch size every model load
uses. Saving reloads the model now loaded, so the settings take effect at once."""

from __future__ import annotations

import os

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.context import AppContext
from app.model_settings import BATCH_CHOICES, Performance, load_performance, save_performance
from engine.threads import recommended_threads


class PerformanceDialog(QDialog):
    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.setWindowTitle("Performance settings")
        self.setMinimumWidth(440)
        current = load_performance()
        layout = QVBoxLayout(self)
        form = QFormLayout()

        auto = recommended_threads()
        self.threads = QSpinBox()
        self.threads.setRange(0, max(os.cpu_count() or 1, auto))
        self.threads.setSpecialValueText(f"Automatic ({auto} now)")
        self.threads.setValue(current.threads or 0)
        self.threads.setToolTip(
            "Automatic: llama.cpp's own choice, one thread per physical core, with one core left to other "
            "programs while they keep the CPU busy. More threads than cores makes decoding slower."
        )
        form.addRow("CPU threads", self.threads)

        self.batch = QComboBox()
        for size in BATCH_CHOICES:
            self.batch.addItem(f"{size} tokens", size)
        self.batch.setCurrentIndex(max(0, self.batch.findData(current.batch)))
        self.batch.setToolTip(
            "How many prompt tokens llama.cpp reads in one step. Larger batches read long prompts faster and "
            "take more memory; replies are written token by token either way."
        )
        form.addRow("Prompt batch size", self.batch)
        layout.addLayout(form)
        loaded = context.client.info is not None
        note = QLabel(
            "Saving reloads the model now loaded with these settings."
            if loaded
            else "They take effect when a model is loaded."
        )
        note.setWordWrap(True)
        layout.addWidget(note)
        save_cancel = QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        buttons = QDialogButtonBox(save_cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def chosen(self) -> Performance:
        return Performance(self.threads.value() or None, int(self.batch.currentData()))

    def accept(self) -> None:
        before = load_performance()
        chosen = self.chosen()
        save_performance(chosen)
        super().accept()
        if chosen != before and self.context.reload():
            self.context.statusMessage.emit("Reloading the model with the new performance settings…")
