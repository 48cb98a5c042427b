"""The speed panel's charts (QtCharts): decode speed per reply, the draft length the controller chose per step
with the running acceptance rate, and how many drafts each step accepted. The data they show comes from plain
functions below (testable without painting); the widgets only restyle and refill their series."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSeries,
    QBarSet,
    QChart,
    QChartView,
    QLineSeries,
    QValueAxis,
)
from PySide6.QtCore import QMargins, QPointF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy

from app.records import MessageItem
from app.theme import Colors
from engine.measure.ab import ABReport
from engine.stats import SpecStats

ACCEPT_WINDOW = 16  # steps in the running acceptance rate
SPEC_COLOR = ("#1a7f37", "#3fb950")  # light, dark: the speculative series
PLAIN_COLOR = ("#6e7781", "#8b949e")
ACCEPT_COLOR = ("#0969da", "#58a6ff")


# --- data ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SpeedPoints:
    """Decode tok/s per run of a chat in order: a reply adds a point to its series, an A/B run one to each."""

    speculative: tuple[tuple[int, float], ...]
    plain: tuple[tuple[int, float], ...]
    n_runs: int


def speed_points(messages: Sequence[MessageItem], live: tuple[bool, float] | None = None) -> SpeedPoints:
    """`live`: (speculative?, tok/s so far) of the reply being written, shown as the last run."""
    spec: list[tuple[int, float]] = []
    plain: list[tuple[int, float]] = []
    run = 0
    for item in messages:
        stats = item.stats
        if item.role == "assistant" and stats is not None and stats.n_generated > 1:
            run += 1
            # A server's reply counts as speculative when the server reported drafting for it.
            drafted = stats.spec is not None or bool(stats.server is not None and stats.server.drafted)
            (spec if drafted else plain).append((run, stats.decode_tps))
        report = ABReport.from_dict(item.ab)
        if report is not None:
            run += 1
            spec.append((run, report.spec_tps))
            plain.append((run, report.plain_tps))
    if live is not None and live[1] > 0:
        run += 1
        (spec if live[0] else plain).append((run, live[1]))
    return SpeedPoints(tuple(spec), tuple(plain), run)


def step_points(spec: SpecStats) -> tuple[list[tuple[int, int]], list[tuple[int, float]]]:
    """Per verify step of one reply: the draft length chosen, and the share of drafted tokens accepted over
    the last ACCEPT_WINDOW steps (percent). Accepted drafts per step come from the provenance: each step
    emits its accepted drafts (depth > 0) and then one token of the target's own (depth 0); the very first
    token comes from the prompt, before any step."""
    accepted: list[int] = []
    run = 0
    for depth in spec.provenance[1:]:
        if depth:
            run += 1
        else:
            accepted.append(run)
            run = 0
    ks = list(spec.k_history)
    k_points = [(i + 1, k) for i, k in enumerate(ks)]
    rate: list[tuple[int, float]] = []
    for i in range(min(len(ks), len(accepted))):
        lo = max(0, i + 1 - ACCEPT_WINDOW)
        drafted = sum(ks[lo : i + 1])
        if drafted:
            rate.append((i + 1, 100.0 * sum(accepted[lo : i + 1]) / drafted))
    return k_points, rate


# --- widgets ------------------------------------------------------------------------------------------------
class _ChartView(QChartView):
    def __init__(self, title: str, colors: Colors) -> None:
        chart = QChart()
        chart.setTitle(title)
        chart.setMargins(QMargins(2, 2, 2, 2))
        chart.setBackgroundRoundness(0)
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        super().__init__(chart)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.colors = colors

    def _axis(self, title: str, align: Qt.AlignmentFlag, axis: QValueAxis | None = None) -> QValueAxis:
        axis = axis or QValueAxis()
        axis.setTitleText(title)
        axis.setLabelFormat("%d")
        self.chart().addAxis(axis, align)
        return axis

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
        chart = self.chart()
        text, muted = QColor(colors.text), QColor(colors.muted)
        chart.setBackgroundBrush(QColor(colors.assistant_bg))
        chart.setTitleBrush(text)
        title_font = QFont(chart.titleFont())
        title_font.setBold(True)
        chart.setTitleFont(title_font)
        chart.legend().setLabelColor(text)
        for axis in chart.axes():
            axis.setLabelsColor(text)
            axis.setTitleBrush(muted)
            axis.setLinePenColor(muted)
            axis.setGridLineColor(QColor(colors.code_border))
        self._color_series()

    def _color_series(self) -> None:
        raise NotImplementedError

    def pick(self, pair: tuple[str, str]) -> QColor:
        return QColor(pair[1] if self.colors.dark else pair[0])


def _line(name: str) -> QLineSeries:
    series = QLineSeries()
    series.setName(name)
    series.setPointsVisible(True)
    return series


def _nice_step(span: float, max_ticks: int) -> float:
    """The smallest round step (1, 2, 5 × 10^n) that covers `span` in at most `max_ticks` intervals."""
    magnitude = 1.0
    while True:
        for base in (1, 2, 5):
            step = base * magnitude
            if span / step <= max_ticks:
                return step
        magnitude *= 10


def set_ticks(axis: QValueAxis, high: float, max_ticks: int = 6) -> None:
    """Range 0..top with whole-number labels on a round step, top the first step at or above `high`. (Fixed
    ticks over such a range land on round numbers; QtCharts' dynamic ticks leave the labels' room unsized.)"""
    step = max(1.0, _nice_step(high, max_ticks))
    count = max(1, math.ceil(high / step - 1e-9))
    axis.setRange(0, step * count)
    axis.setTickType(QValueAxis.TickType.TicksFixed)
    axis.setTickCount(count + 1)
    axis.setLabelFormat("%.0f")


class SpeedChart(_ChartView):
    """Decode tok/s per reply (and per A/B run): speculative and plain as two series."""

    def __init__(self, colors: Colors) -> None:
        super().__init__("Decode speed (tok/s)", colors)
        self.spec = _line("speculative")
        self.plain = _line("plain")
        chart = self.chart()
        chart.addSeries(self.spec)
        chart.addSeries(self.plain)
        self.x_axis = self._axis("reply or A/B run", Qt.AlignmentFlag.AlignBottom)
        # The unit is in the title: room for the plot.
        self.y_axis = self._axis("", Qt.AlignmentFlag.AlignLeft)
        for series in (self.spec, self.plain):
            series.attachAxis(self.x_axis)
            series.attachAxis(self.y_axis)
        self.set_colors(colors)
        self.show_points(SpeedPoints((), (), 0))

    def _color_series(self) -> None:
        for series, pair in ((self.spec, SPEC_COLOR), (self.plain, PLAIN_COLOR)):
            pen = QPen(self.pick(pair), 2.0)
            series.setPen(pen)
            series.setColor(self.pick(pair))

    def show_points(self, points: SpeedPoints) -> None:
        self.spec.replace([QPointF(x, y) for x, y in points.speculative])
        self.plain.replace([QPointF(x, y) for x, y in points.plain])
        top = max((y for _, y in points.speculative + points.plain), default=0.0)
        # One more tick than runs: a run's point never sits on the frame.
        set_ticks(self.x_axis, max(points.n_runs, 1) + 1, max_ticks=8)
        set_ticks(self.y_axis, max(top * 1.1, 10.0), max_ticks=4)


class StepChart(_ChartView):
    """One reply, step by step: the draft length the controller chose, and the running acceptance rate."""

    def __init__(self, colors: Colors) -> None:
        super().__init__("Draft length, last reply", colors)
        self.k = QLineSeries()
        self.k.setName("draft length")
        self.rate = QLineSeries()
        self.rate.setName("% accepted")
        self.setToolTip(
            "The draft length k the controller chose at each verify step of the last reply, and the share "
            f"of drafted tokens accepted over the {ACCEPT_WINDOW} steps before it"
        )
        chart = self.chart()
        chart.addSeries(self.k)
        chart.addSeries(self.rate)
        self.x_axis = self._axis("verify step", Qt.AlignmentFlag.AlignBottom)
        self.y_axis = self._axis("k", Qt.AlignmentFlag.AlignLeft)
        self.y_rate = self._axis("%", Qt.AlignmentFlag.AlignRight)
        self.k.attachAxis(self.x_axis)
        self.k.attachAxis(self.y_axis)
        self.rate.attachAxis(self.x_axis)
        self.rate.attachAxis(self.y_rate)
        self.set_colors(colors)
        self.show_spec(None)

    def _color_series(self) -> None:
        self.k.setPen(QPen(self.pick(SPEC_COLOR), 2.0))
        self.rate.setPen(QPen(self.pick(ACCEPT_COLOR), 1.5, Qt.PenStyle.DashLine))

    def show_spec(self, spec: SpecStats | None) -> None:
        k_points, rate = step_points(spec) if spec is not None else ([], [])
        # Draw k as steps (it holds for a whole verify step), not as slopes between steps.
        stepped: list[QPointF] = []
        for step, k in k_points:
            stepped += [QPointF(step - 0.5, k), QPointF(step + 0.5, k)]
        self.k.replace(stepped)
        self.rate.replace([QPointF(x, y) for x, y in rate])
        n = len(k_points)
        k_max = max((k for _, k in k_points), default=3)
        set_ticks(self.x_axis, max(n, 10) + 0.5, max_ticks=6)
        set_ticks(self.y_axis, max(k_max, 1) + 0.5, max_ticks=6)
        set_ticks(self.y_rate, 100, max_ticks=4)


MAX_BINS = 12  # one bar per count up to this many; past it (drafts run to 64) the labels would not fit


def histogram_bins(hist: Sequence[int]) -> tuple[list[str], list[int]]:
    """Category labels and bar heights for `hist` (index i: steps that accepted i drafts). Long drafts would
    need a bar per count up to 64, too narrow to label at 1024 px: past MAX_BINS counts are pooled in ranges
    that double (0, 1, 2–3, 4–7, ..., 32–63, 64), each labelled by its lowest count (the axis title says
    so): "8–15" would not fit under a bar either."""
    values = list(hist) or [0, 0, 0, 0]
    if len(values) <= MAX_BINS:
        return [str(i) for i in range(len(values))], values
    labels, pooled = ["0"], [values[0]]
    lo = 1
    while lo < len(values):
        hi = min(2 * lo, len(values))  # this bin: counts lo .. hi - 1
        labels.append(str(lo))
        pooled.append(sum(values[lo:hi]))
        lo = hi
    return labels, pooled


class HistogramChart(_ChartView):
    """How many draft tokens each verify step accepted (0 = only the target's own token)."""

    def __init__(self, colors: Colors) -> None:
        super().__init__("Drafts accepted per step", colors)
        self.bars = QBarSet("verify steps")
        self.series = QBarSeries()
        self.series.append(self.bars)
        self.series.setLabelsVisible(True)
        self.series.setLabelsPosition(QBarSeries.LabelsPosition.LabelsOutsideEnd)
        chart = self.chart()
        chart.addSeries(self.series)
        chart.legend().setVisible(False)
        self.x_axis = QBarCategoryAxis()
        self.x_axis.setTitleText("drafts accepted")
        chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        self.series.attachAxis(self.x_axis)
        self.y_axis = self._axis("steps", Qt.AlignmentFlag.AlignLeft)
        self.series.attachAxis(self.y_axis)
        self.set_colors(colors)
        self.show_hist(())

    def _color_series(self) -> None:
        self.bars.setColor(self.pick(SPEC_COLOR))
        self.bars.setBorderColor(self.pick(SPEC_COLOR))
        self.bars.setLabelColor(QColor(self.colors.text))

    def show_hist(self, hist: Sequence[int]) -> None:
        labels, values = histogram_bins(hist)
        self.bars.remove(0, self.bars.count())
        self.bars.append([float(v) for v in values])
        self.x_axis.setCategories(labels)
        pooled = len(labels) < len(hist)
        self.x_axis.setTitleText("drafts accepted (8 = 8–15, …)" if pooled else "drafts accepted")
        set_ticks(self.y_axis, max(max(values) * 1.15, 4.0), max_ticks=4)
