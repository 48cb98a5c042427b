"""Per-chat settings: system prompt, sampling, and speculative decoding on/off."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.records import ChatSettings

RANDOM_SEED = -1  # the spin box's special value: a fresh random seed per request


class ChatSettingsDialog(QDialog):
    def __init__(
        self, settings: ChatSettings, parent: QWidget | None = None, spec_text: str = "Speculative decoding"
    ) -> None:
        """`spec_text`: the speculation check box's text, naming the drafter loaded (see spec_label)."""
        super().__init__(parent)
        self._settings = settings  # what the dialog does not edit (the chat's engine) is kept
        self.setWindowTitle("Chat settings")
        self.setMinimumWidth(460)
        layout = QVBoxLayout(self)
        form = QFormLayout()

        self.system_prompt = QPlainTextEdit(settings.system_prompt)
        self.system_prompt.setPlaceholderText("Optional instructions the model sees before the conversation")
        self.system_prompt.setFixedHeight(100)
        form.addRow("System prompt", self.system_prompt)

        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setDecimals(2)
        self.temperature.setValue(settings.temperature)
        self.temperature.setToolTip("0 = greedy (always the most likely token)")
        form.addRow("Temperature", self.temperature)

        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setDecimals(2)
        self.top_p.setValue(settings.top_p)
        form.addRow("Top-p", self.top_p)

        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 131_072)
        self.max_tokens.setValue(settings.max_tokens)
        form.addRow("Max tokens", self.max_tokens)

        self.seed = QSpinBox()
        self.seed.setRange(RANDOM_SEED, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        self.seed.setValue(RANDOM_SEED if settings.seed is None else settings.seed)
        form.addRow("Seed", self.seed)

        self.speculative = QCheckBox(spec_text)
        self.speculative.setChecked(settings.speculative)
        form.addRow("", self.speculative)
        note = QLabel("Speculation only changes speed: the reply is what the model alone would write.")
        note.setWordWrap(True)
        form.addRow("", note)
        layout.addLayout(form)

        ok_cancel = QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        buttons = QDialogButtonBox(ok_cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def result_settings(self) -> ChatSettings:
        seed = self.seed.value()
        return replace(
            self._settings,
            system_prompt=self.system_prompt.toPlainText(),
            temperature=round(self.temperature.value(), 2),
            top_p=round(self.top_p.value(), 2),
            max_tokens=self.max_tokens.value(),
            seed=None if seed == RANDOM_SEED else seed,
            speculative=self.speculative.isChecked(),
        )
