"""The speed panel: a dock beside a chat with its decode speed per reply (speculative and plain), the draft
length the controller chose and the acceptance over the last reply, a histogram of accepted drafts per step,
why speculation is off when it is, the pair's expected speedup, and the A/B button with its result card.

It follows the chat panel's session. Updates are coalesced: the session already limits live figures to one a
second, A/B progress to five a second, and bursts of signals land in one refresh on a short timer.
"""

from __future__ import annotations

import html
from dataclasses import replace
from typing import Any

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.ab_view import WARN_COLOR, ABView
from app.chat_session import ChatSession
from app.context import AppContext
from app.records import ChatSettings, MessageItem
from app.speed_charts import HistogramChart, SpeedChart, StepChart, speed_points
from app.theme import Colors
from engine.inference.api import EngineInfo
from engine.measure.ab import ABReport
from engine.remote.figures import NONE_REPORTED
from engine.stats import GenerationStats, SpecStats

REFRESH_DELAY_MS = 100


def why_not_speculating(
    settings: ChatSettings | None, info: EngineInfo | None, spec: SpecStats | None
) -> str | None:
    """Why the chat is not speculating right now, in words; None when it is (or may be)."""
    if info is None:
        return "Not speculating: no model is loaded."
    if not info.drafter:
        note = f" ({info.drafter_note})" if info.drafter_note else ""
        return f"Not speculating: the loaded model has no drafter{note}."
    if settings is not None and not settings.speculative:
        return "Not speculating: switched off for this chat (the toggle above the chat)."
    if spec is not None and spec.k_history and spec.current_k == 0:
        reason = spec.main_reason or "the controller chose not to draft"
        return f"Drafting paused at the end of the last reply — {reason}."
    return None


def remote_figures_text(stats: GenerationStats) -> str:
    """The last reply's figures as a server reported them (engine.remote.figures)."""
    f = stats.server
    speed = f"{stats.decode_tps:.1f} tok/s here" if stats.n_generated > 1 else "one token"
    if f is None or not f.reported:
        why = f.caveat if f is not None and f.caveat else NONE_REPORTED
        return f"Last reply: {speed} · {html.escape(why)}."  # a server's words: escaped before rich text
    parts = [
        f"Last reply, as the server reported it ({f.source}): drafted <b>{f.drafted}</b>, accepted "
        f"<b>{f.accepted}</b>"
    ]
    if f.drafted:
        parts.append(f"<b>{f.acceptance_rate or 0.0:.0%}</b> of drafted tokens accepted")
    if f.mean_accepted_length is not None:
        parts.append(f"mean accepted length <b>{f.mean_accepted_length:.2f}</b> over {f.steps} steps")
    if f.server_tps:
        parts.append(f"{f.server_tps:.1f} tok/s on the server")
    parts.append(speed)
    text = " · ".join(parts)
    return text + (f"<br>Note: {html.escape(f.caveat)}." if f.caveat else "")


def last_reply_stats(messages: list[MessageItem]) -> GenerationStats | None:
    return next((m.stats for m in reversed(messages) if m.role == "assistant" and m.stats), None)


def shown_model(messages: list[MessageItem], info: EngineInfo | None) -> str | None:
    """Whose figures the panel shows: the loaded model's, or with none loaded, the last reply's."""
    if info is not None:
        return info.model_name
    return next((m.model for m in reversed(messages) if m.role == "assistant" and m.model), None)


def model_figures(messages: list[MessageItem], model: str | None) -> list[MessageItem]:
    """The chat as far as `model`'s figures go: its replies and A/B runs, never another model's (a chart
    joining two models' speeds would compare nothing). Replies from before Tandem recorded the model count as
    the shown model's only in a chat where no reply names one."""
    named = any(m.model for m in messages if m.role == "assistant")

    def mine(writer: object) -> bool:
        return model is None or writer == model or (writer is None and not named)

    out: list[MessageItem] = []
    for item in messages:
        if item.role != "assistant":
            out.append(item)
        elif mine(item.model) or (item.ab is not None and mine(item.ab.get("model"))):
            keep_ab = item.ab is not None and mine(item.ab.get("model", item.model))
            stats = item.stats if mine(item.model) else None
            out.append(replace(item, stats=stats, ab=item.ab if keep_ab else None))
    return out


def other_models(messages: list[MessageItem], model: str | None) -> list[str]:
    """The other models that wrote replies in this chat, in order."""
    names = (m.model for m in messages if m.role == "assistant" and m.model and m.model != model)
    return list(dict.fromkeys(names))


class SpeedPanel(QDockWidget):
    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__("Speed", parent)
        self.setObjectName("speed_panel")  # QMainWindow.saveState() remembers docks by name
        self.setAllowedAreas(Qt.DockWidgetArea.LeftDockWidgetArea | Qt.DockWidgetArea.RightDockWidgetArea)
        self.context = context
        self.session: ChatSession | None = None
        colors: Colors = context.colors

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(6)
        self.pair_label = QLabel()
        self.pair_label.setWordWrap(True)
        self.why_label = QLabel()
        self.why_label.setWordWrap(True)
        self.figures_label = QLabel()
        self.figures_label.setWordWrap(True)
        for label in (self.pair_label, self.why_label, self.figures_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            layout.addWidget(label)

        row = QHBoxLayout()
        self.ab_button = QPushButton("A/B: plain vs speculative")
        self.ab_button.setToolTip(
            "Re-run your last prompt twice on the loaded pair — plain, then speculative — with the same seed "
            "and settings, and compare speed and output"
        )
        self.ab_button.clicked.connect(self.run_ab)
        self.ab_cancel = QPushButton("Cancel")
        self.ab_cancel.clicked.connect(self.cancel_ab)
        row.addWidget(self.ab_button, 1)
        row.addWidget(self.ab_cancel)
        layout.addLayout(row)
        self.ab_view = ABView(colors)
        layout.addWidget(self.ab_view)

        self.speed_chart = SpeedChart(colors)
        self.step_chart = StepChart(colors)
        self.hist_chart = HistogramChart(colors)
        for chart in (self.speed_chart, self.step_chart, self.hist_chart):
            layout.addWidget(chart, 1)  # the charts share whatever height the dock has

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        self.setWidget(scroll)
        self.setMinimumWidth(280)

        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_DELAY_MS)
        self._refresh_timer.timeout.connect(self.refresh)
        self._stale = True  # something changed while the panel was hidden: refresh when shown
        client = context.client
        for signal in (client.modelLoaded, client.modelUnloaded, client.predictionChanged):
            signal.connect(self.refresh)
        context.remotes.engineChanged.connect(self.schedule_refresh)
        context.colorsChanged.connect(self.set_colors)
        self.set_colors(colors)

    def detach(self) -> None:
        client = self.context.client
        for signal in (client.modelLoaded, client.modelUnloaded, client.predictionChanged):
            signal.disconnect(self.refresh)
        self.context.remotes.engineChanged.disconnect(self.schedule_refresh)
        self.context.colorsChanged.disconnect(self.set_colors)
        self.bind(None)

    # --- binding --------------------------------------------------------------------------------------
    def bind(self, session: ChatSession | None) -> None:
        if self.session is not None:
            for signal, slot in self._connections(self.session):
                signal.disconnect(slot)
        self.session = session
        if session is not None:
            for signal, slot in self._connections(session):
                signal.connect(slot)
        self.refresh()

    def _connections(self, s: ChatSession) -> list[tuple[Any, Any]]:
        # Signals that come in bursts (a send appends two messages and changes state) share one refresh.
        return [
            (s.messagesReset, self.schedule_refresh),
            (s.messageAppended, self.schedule_refresh),
            (s.settingsChanged, self.schedule_refresh),
            (s.stateChanged, self.schedule_refresh),
            (s.replyFinished, self.refresh),
            (s.replyStats, self._on_live),
            (s.ab.stateChanged, self._on_ab_state),
            (s.ab.progress, self._on_ab_progress),
            (s.ab.error, self.context.statusMessage),
        ]

    @Slot()
    def schedule_refresh(self, *_: object) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def set_colors(self, colors: Colors) -> None:
        self.ab_view.apply_colors(colors)
        for chart in (self.speed_chart, self.step_chart, self.hist_chart):
            chart.set_colors(colors)
        self.refresh()

    # --- A/B ------------------------------------------------------------------------------------------
    def run_ab(self) -> bool:
        self.show()
        self.raise_()
        return self.session is not None and self.session.ab.start()

    def cancel_ab(self) -> None:
        if self.session is not None:
            self.session.ab.cancel()

    @Slot(str)
    def _on_ab_state(self, state: str) -> None:
        if state == "waiting":
            self.ab_view.show_waiting()
        self._update_buttons()
        if state == "idle":
            self.refresh()

    @Slot(str, int)
    def _on_ab_progress(self, side: str, tokens: int) -> None:
        if self.session is not None and self.isVisible():
            ab = self.session.ab
            self.ab_view.show_running(side, tokens, self.session.settings.max_tokens, ab.round, ab.rounds)

    def _update_buttons(self) -> None:
        s = self.session
        running = s is not None and s.ab.state != "idle"
        self.ab_button.setEnabled(s is not None and s.ab.can_run())
        self.ab_cancel.setVisible(running)
        info = s.client.info if s is not None else None
        if s is None or info is None:
            self.ab_button.setToolTip("Load a model first" if s is None or not s.remote else "Not connected")
        elif info.endpoint and not info.spec_per_request:
            self.ab_button.setToolTip(
                f"{info.server} turns speculation on or off for the whole server, not per request: an A/B "
                "cannot run one side plain there"
            )
        elif not s.ab.prompt():
            self.ab_button.setToolTip("Send a message first: the A/B re-runs your last prompt")
        else:
            self.ab_button.setToolTip(
                "Re-run your last prompt twice on the loaded pair — plain, then speculative — with the same "
                "seed and settings, and compare speed and output"
            )

    # --- refresh --------------------------------------------------------------------------------------
    @Slot(object)
    def _on_live(self, item: MessageItem) -> None:
        """Once a second while a reply streams: move its point on the speed chart."""
        s = self.session
        if s is None or not self.isVisible():
            return
        _, tps, _ = s.live_figures()
        live = (s.settings.speculative and s.client.info is not None and bool(s.client.info.drafter), tps)
        done = [m for m in s.messages if m is not item]
        model = shown_model(done, s.client.info)
        self.speed_chart.show_points(speed_points(model_figures(done, model), live))

    @Slot()
    def refresh(self, *_: object) -> None:
        self._refresh_timer.stop()
        self._update_buttons()
        self._stale = not self.isVisible()
        if self._stale:  # charts are not worth redrawing unseen
            return
        s = self.session
        info = s.client.info if s is not None else self.context.client.info
        colors: Colors = self.context.colors
        every = s.messages if s is not None else []
        model = shown_model(every, info)
        messages = model_figures(every, model)
        stats = last_reply_stats(messages)
        spec = stats.spec if stats is not None else None

        others = other_models(every, model)
        also = (
            f"<br>Figures of {html.escape(model or 'this model')} only: this chat also has replies by "
            f"{html.escape(', '.join(others))}."
            if others
            else ""
        )
        if info is None:
            if s is not None and s.remote:
                self.pair_label.setText(f"<b>Not connected.</b>{also}")
            else:
                of = f" Figures of {html.escape(model)}, which wrote the last reply." if model else ""
                self.pair_label.setText(f"<b>No model loaded.</b>{of}{also}")
        elif info.endpoint:
            drafter = f" · drafter: {info.drafter}" if info.drafter else ""
            self.pair_label.setText(
                f"<b>{html.escape(info.model_name)}</b> on {html.escape(info.server or 'a server')} at "
                f"{html.escape(info.endpoint)}{html.escape(drafter)}<br>Speculation runs on the server: the "
                f"figures are what it reports.{also}"
            )
            self.pair_label.setToolTip("")
        else:
            prediction = self.context.client.prediction
            expected = (
                f"<b>{prediction.short()}</b> from what this machine has learned about the pair"
                if prediction is not None
                else "Expected speedup: not enough drafts seen yet — it is learned from every reply and "
                "A/B with speculation on"
            )
            drafter = html.escape(info.drafter or "no drafter")
            self.pair_label.setText(f"<b>{html.escape(info.model_name)}</b> · {drafter}<br>{expected}{also}")
            self.pair_label.setToolTip(prediction.detail() if prediction is not None else "")

        why = (
            why_not_speculating(s.settings if s else None, info, spec)
            if info is None or not info.endpoint
            else None
        )
        self.why_label.setVisible(why is not None)
        self.why_label.setText(why or "")
        self.why_label.setStyleSheet(f"color: {WARN_COLOR[1] if colors.dark else WARN_COLOR[0]}")

        if stats is not None and stats.server is not None:
            self.figures_label.setText(remote_figures_text(stats))
        elif stats is not None and spec is not None and spec.steps:
            self.figures_label.setText(
                f"Last reply: <b>{spec.acceptance_rate:.0%}</b> of drafted tokens accepted · mean accepted "
                f"length <b>{spec.mean_accepted_length:.2f}</b> · draft length now <b>{spec.current_k}</b> · "
                f"{stats.decode_tps:.1f} tok/s"
            )
        elif stats is not None:
            self.figures_label.setText(f"Last reply: plain decoding · {stats.decode_tps:.1f} tok/s")
        elif others and model:
            self.figures_label.setText(f"No reply by {html.escape(model)} yet in this chat.")
        else:
            self.figures_label.setText("No reply yet in this chat.")
        self.figures_label.setStyleSheet(f"color: {colors.muted}")

        self.speed_chart.show_points(speed_points(messages))
        self.step_chart.show_spec(spec)
        self.hist_chart.show_hist(spec.accepted_length_hist if spec is not None else ())
        # A server reports no per-step draft lengths: empty step charts would only look like a fault.
        remote = stats is not None and stats.server is not None
        self.step_chart.setVisible(not remote)
        self.hist_chart.setVisible(not remote)
        if s is None or s.ab.state == "idle":
            reports = (ABReport.from_dict(m.ab) for m in reversed(messages))
            self.ab_view.show_report(next((r for r in reports if r is not None), None))  # the shown model's
            no_ab = info is not None and info.endpoint and not info.spec_per_request
            if no_ab and self.ab_view.report is None:
                # Say why there is no A/B here, instead of inviting a press on a disabled button.
                self.ab_view.headline.setText(html.escape(self.ab_button.toolTip()) + ".")
        elif s.ab.state == "waiting":
            self.ab_view.show_waiting()


def attach_speed_panel(window: QMainWindow, panel: Any, context: Any) -> SpeedPanel:
    """Give `window` a speed dock on the right that follows `panel`'s chat; its A/B button opens it."""
    dock = SpeedPanel(context, window)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    dock.hide()  # until asked for (View menu, A/B): it needs room a small window does not have
    panel.sessionChanged.connect(dock.bind)
    panel.abRequested.connect(dock.run_ab)
    dock.bind(panel.session)
    return dock
