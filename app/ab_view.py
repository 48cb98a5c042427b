"""The A/B result card: median tok/s over the alternating runs and time to first token of the plain and the
speculative side, the speedup (or, when the runs disagree, that other programs disturbed the timings), and
whether the replies are identical, explained in plain words (engine.measure.ab.ABReport.explanation)."""

from __future__ import annotations

import html
import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from app.theme import Colors
from engine.measure.ab import DISTURBED, ABReport

OK_COLOR = ("#1a7f37", "#3fb950")
WARN_COLOR = ("#9a6700", "#d29922")


def speedup_words(report: ABReport) -> str:
    if report.disturbed:  # a headline speedup from disturbed timings would be a fiction
        return DISTURBED[0].upper() + DISTURBED[1:]
    s = report.speedup
    if s >= 1.05:
        return f"{s:.2f}× faster with speculation"
    if s <= 0.95:
        return f"{s:.2f}×: slower with speculation"
    return f"{s:.2f}×: about the same speed"


class ABView(QFrame):
    """Shows the last A/B report of the chat, or the progress of the one running."""

    def __init__(self, colors: Colors, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("abCard")
        self.colors = colors
        self.report: ABReport | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        self.headline = QLabel()
        self.headline.setWordWrap(True)
        layout.addWidget(self.headline)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.table = QWidget()
        grid = QGridLayout(self.table)
        grid.setContentsMargins(0, 2, 0, 2)
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(2)
        self.cells: dict[tuple[str, str], QLabel] = {}
        rows = ("decode speed", "first token", "tokens written")
        for c, title in enumerate(("", "plain", "speculative"), 0):
            label = QLabel(title)
            label.setStyleSheet("font-weight: bold")
            grid.addWidget(label, 0, c)
        tips = {
            "first token": "Both runs evaluate the whole prompt from an empty cache, so this is longer than "
            "in the chat, where the earlier turns are already cached.",
            "decode speed": "Tokens per second after the first token: the median of the runs of each side.",
        }
        for r, row in enumerate(rows, 1):
            head = QLabel(row)
            head.setToolTip(tips.get(row, ""))
            grid.addWidget(head, r, 0)
            for c, side in enumerate(("plain", "speculative"), 1):
                cell = QLabel()
                cell.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                grid.addWidget(cell, r, c)
                self.cells[(row, side)] = cell
        grid.setColumnStretch(0, 1)
        layout.addWidget(self.table)
        self.verdict = QLabel()
        self.verdict.setStyleSheet("font-weight: bold")
        layout.addWidget(self.verdict)
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        self.explanation.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.explanation)
        self.apply_colors(colors)
        self.show_report(None)

    def apply_colors(self, colors: Colors) -> None:
        self.colors = colors
        self.setStyleSheet(
            f"QFrame#abCard {{ background: {colors.assistant_bg}; border: 1px solid {colors.code_border}; "
            "border-radius: 6px; }"
        )
        self.explanation.setStyleSheet(f"color: {colors.muted}")
        self.show_report(self.report)

    def _pick(self, pair: tuple[str, str]) -> str:
        return pair[1] if self.colors.dark else pair[0]

    # --- states ---------------------------------------------------------------------------------------
    def show_report(self, report: ABReport | None) -> None:
        self.report = report
        self.progress.hide()
        self.table.setVisible(report is not None)
        self.verdict.setVisible(report is not None)
        if report is None:
            self.headline.setText(
                "Press <b>A/B</b> to re-run your last prompt on the loaded pair — plain and speculative, "
                "alternating a few times, with the same seed and settings — and compare."
            )
            self.explanation.setText("")
            return
        when = time.strftime("%H:%M", time.localtime(report.created_at)) if report.created_at else ""
        colour = self._pick(OK_COLOR if report.speedup >= 1.05 and not report.disturbed else WARN_COLOR)
        self.headline.setText(
            f'<span style="font-size: 13pt; font-weight: bold; color: {colour}">'
            f"{html.escape(speedup_words(report))}</span>"
            f'<br><span style="color: {self.colors.muted}">A/B of your last prompt · seed {report.seed}'
            f"{' · ' + when if when else ''}</span>"
        )
        figures = {
            "decode speed": (f"{report.plain_tps:.1f} tok/s", f"{report.spec_tps:.1f} tok/s"),
            "first token": (f"{report.plain_ttft_s:.2f} s", f"{report.spec_ttft_s:.2f} s"),
            "tokens written": (str(report.n_plain), str(report.n_spec)),
        }
        for row, (plain, spec) in figures.items():
            self.cells[(row, "plain")].setText(plain)
            self.cells[(row, "speculative")].setText(spec)
        if report.identical:
            self.verdict.setText("✓ Identical output")
            self.verdict.setStyleSheet(f"font-weight: bold; color: {self._pick(OK_COLOR)}")
        else:
            self.verdict.setText(f"≠ Outputs differ from token {report.divergence_position}")
            self.verdict.setStyleSheet(f"font-weight: bold; color: {self._pick(WARN_COLOR)}")
        extra = ""
        if report.drafter:
            extra = (
                f" Drafter: {report.drafter}; {report.acceptance:.0%} of drafted tokens accepted, "
                f"{report.mean_accepted_length:.2f} tokens per verify step."
            )
        elif report.off_reason:
            extra = f" Speculation did not run: {report.off_reason}."
        self.explanation.setText(f"{report.timing_note()} {report.explanation()}{extra}")

    def show_running(self, side: str, tokens: int, max_tokens: int, round_: int = 0, rounds: int = 1) -> None:
        self.table.hide()
        self.verdict.hide()
        self.explanation.setText("")
        first = "plain" if round_ % 2 == 0 else "speculative"  # rounds alternate which side goes first
        run = 2 * round_ + (1 if side == first else 2)
        self.headline.setText(f"A/B running — run {run} of {2 * rounds}: {side}")
        self.progress.setRange(0, max(max_tokens, 1))
        self.progress.setValue(min(tokens, max_tokens))
        self.progress.setFormat(f"{tokens} tokens")
        self.progress.show()

    def show_waiting(self) -> None:
        self.show_running("plain", 0, 1)
        self.headline.setText("A/B waiting for the model (a reply is being written)…")
