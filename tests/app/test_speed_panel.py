"""The speed panel and the A/B button: a real A/B on the tiny model (both series, an "identical" verdict, kept
with the chat and exported), the GUI thread staying free during a run, cancelling, the expected speedup next
to the toggle, and the data behind the charts and the "why not speculating" line."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

import engine.measure.ab as ab_module
from app.context import AppContext
from app.main_window import MainWindow
from app.records import ChatSettings, MessageItem
from app.speed_charts import speed_points, step_points
from app.speed_panel import why_not_speculating
from app.theme import LIGHT
from app.worker import WorkerClient
from engine.config import LoadConfig
from engine.inference.api import EngineInfo
from engine.measure.ab import ABReport
from engine.measure.pair_profile import ProfileStore, pair_key
from engine.stats import GenerationStats, SpecRecorder
from tests.app.fake_engine import FakeOptions, fake_factory
from tests.app.lateness import Lateness

GREEDY = ChatSettings(temperature=0.0, max_tokens=24, seed=1, speculative=True)


def open_main(qtbot, context: AppContext, settings: ChatSettings = GREEDY) -> MainWindow:
    window = MainWindow(context)
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    window.panel.session.set_settings(settings)
    return window


def ask(qtbot, window: MainWindow, text: str) -> None:
    window.panel.composer.setPlainText(text)
    window.panel.send()
    qtbot.waitUntil(lambda: window.panel.session.state == "idle", timeout=30_000)


@pytest.fixture
def tiny_context(qtbot, store, tmp_path, tiny_llama_path):
    client = WorkerClient(profiles=ProfileStore(tmp_path / "profiles.json"))  # the real engine
    with qtbot.waitSignal(client.modelLoaded, timeout=60_000):
        client.load(LoadConfig(model_path=tiny_llama_path, n_ctx=1024, n_threads=1))
    context = AppContext(store, client, LIGHT)
    yield context
    context.shutdown()


def test_ab_on_the_tiny_model_shows_both_series_and_identical(
    qtbot, tiny_context, store, tmp_path, monkeypatch
):
    # The tiny model decodes thousands of tokens a second: its runs spread too far to call the timings clean.
    # This test is about the flow; disturbed timings have tests of their own.
    monkeypatch.setattr(ab_module, "DISTURBED_SPREAD", float("inf"))
    window = open_main(qtbot, tiny_context)
    speed, panel = window.speed, window.panel
    assert not speed.isVisible() and not panel.ab_button.isEnabled()  # nothing to re-run yet
    ask(qtbot, window, "Hello world")
    assert panel.ab_button.isEnabled()
    panel.ab_button.click()  # opens the panel and runs
    assert speed.isVisible()
    qtbot.waitUntil(lambda: panel.session.ab.state == "idle", timeout=30_000)
    # The reply (speculative), then the A/B: one point on each series.
    assert speed.speed_chart.spec.count() == 2 and speed.speed_chart.plain.count() == 1
    assert speed.ab_view.verdict.text() == "✓ Identical output"
    assert "Identical: both runs wrote the same 24 tokens" in speed.ab_view.explanation.text()
    report = panel.session.ab.last_report()
    assert report is not None and report.identical and report.plain_tps > 0 and report.spec_tps > 0
    assert report.drafter == "n-gram" and report.seed == 1
    assert speed.ab_view.cells[("tokens written", "plain")].text() == "24"
    # Kept with the chat: in the store, in both exports, and shown again after a restart of the view.
    chat_id = panel.chat_id
    assert store.messages(chat_id)[-1].ab["identical"] is True
    doc = store.export_json(chat_id)
    assert doc["messages"][-1]["ab"]["spec_tps"] == pytest.approx(report.spec_tps)
    assert "A/B on this prompt (seed 1)" in store.export_markdown(chat_id)
    assert "outputs identical" in store.export_markdown(chat_id)
    json.dumps(doc)  # the report is plain JSON
    panel.session.reload()
    qtbot.waitUntil(lambda: speed.ab_view.report == report, timeout=2000)
    # The pair's profile was calibrated on load, learned from the reply and once from the clean A/B
    # (acceptance may be thin on random weights), and kept the A/B's measured speedup: read back from the
    # file, as the next start would.
    info = tiny_context.client.info
    key = pair_key(LoadConfig(model_path=info.model_path, n_threads=1), info)
    profile = ProfileStore(tmp_path / "profiles.json").get(key)
    assert profile is not None and profile.generations == 2 and profile.calibrated
    assert profile.last_ab == pytest.approx(report.spec_tps / report.plain_tps)
    assert len(dict(profile.decode_s)) > 10  # the calibration timed many batch sizes


def test_ab_never_blocks_the_gui_thread(qtbot, context, fake_options):
    """While both sides run (about 1.5 s of fake decoding), a 10 ms timer keeps firing on time and the panel
    shows progress: the run lives in the worker thread, and the panel's updates are coalesced."""
    window = open_main(qtbot, context, ChatSettings(max_tokens=60, seed=3))
    ask(qtbot, window, "first")
    fake_options.token_delay = 0.012
    speed, session = window.speed, window.panel.session
    started = time.perf_counter()
    assert speed.run_ab()
    with Lateness(10) as lateness:
        qtbot.waitUntil(lambda: "run 1 of 6: plain" in speed.ab_view.headline.text(), timeout=5000)
        assert speed.ab_cancel.isVisible() and not speed.ab_button.isEnabled()
        qtbot.waitUntil(lambda: "run 2 of 6: speculative" in speed.ab_view.headline.text(), timeout=5000)
        qtbot.waitUntil(lambda: "run 3 of 6: speculative" in speed.ab_view.headline.text(), timeout=5000)
        assert 0 < speed.ab_view.progress.value() <= 60
        qtbot.waitUntil(lambda: session.ab.state == "idle", timeout=10_000)
    elapsed = time.perf_counter() - started
    assert elapsed > 1.0  # the run took long enough for the measurement to mean something
    assert len(lateness.late) > elapsed / 0.010 * 0.5
    assert lateness.worst < 240, f"the GUI thread stalled for {lateness.worst + 10:.0f} ms"
    assert speed.ab_view.verdict.text() == "✓ Identical output"
    assert not speed.ab_cancel.isVisible() and speed.ab_button.isEnabled()


def test_ab_can_be_cancelled(qtbot, context, fake_options):
    window = open_main(qtbot, context, ChatSettings(max_tokens=200, seed=3))
    ask(qtbot, window, "first")
    fake_options.token_delay = 0.01
    speed, session = window.speed, window.panel.session
    assert speed.run_ab()
    qtbot.waitUntil(lambda: session.ab.state == "running", timeout=5000)
    speed.ab_cancel.click()
    qtbot.waitUntil(lambda: session.ab.state == "idle", timeout=5000)
    assert session.ab.last_report() is None and all(m.ab is None for m in session.messages)
    assert "Press <b>A/B</b>" in speed.ab_view.headline.text()


def test_expected_speedup_next_to_the_toggle(qtbot, store, tmp_path):
    client = WorkerClient(fake_factory(FakeOptions()), profiles=ProfileStore(tmp_path / "p.json"))
    with qtbot.waitSignal(client.modelLoaded, timeout=5000):
        client.load(LoadConfig(model_path=Path("/models/fake-target.gguf")))
    context = AppContext(store, client, LIGHT)
    try:
        window = open_main(qtbot, context)
        label = window.panel.prediction_label
        assert label.text() == "no estimate yet" and label.isVisible()
        ask(qtbot, window, "teach the profile")
        qtbot.waitUntil(lambda: label.text().startswith("expected ≈"), timeout=5000)
        assert "first drafts accepted" in label.toolTip()
        window.speed.show()
        assert client.prediction.short() in window.speed.pair_label.text()
    finally:
        context.shutdown()


def test_panel_follows_the_chat_and_the_toggle(qtbot, context):
    window = open_main(qtbot, context)
    speed = window.speed
    speed.show()
    ask(qtbot, window, "one")
    assert speed.session is window.panel.session and speed.speed_chart.spec.count() == 1
    assert not speed.why_label.isVisible() or not speed.why_label.text()
    window.panel.spec_toggle.setChecked(False)
    qtbot.waitUntil(lambda: "switched off for this chat" in speed.why_label.text(), timeout=2000)
    window.new_chat()
    assert speed.session is window.panel.session
    qtbot.waitUntil(lambda: speed.speed_chart.spec.count() == 0, timeout=2000)
    assert "No reply yet" in speed.figures_label.text()


# --- the data behind the panel -------------------------------------------------------------------------
def _info(drafter: str | None = "n-gram", note: str | None = None) -> EngineInfo:
    return EngineInfo("m", Path("m.gguf"), "llama", 512, drafter, note, "CPU", 0, 1)


def _stats(spec: bool, tps_tokens: int = 11) -> GenerationStats:
    rec = SpecRecorder("n-gram") if spec else None
    return GenerationStats(5, 0, 0.1, 0.1, tps_tokens, 1.0, 1.1, spec=rec.snapshot() if rec else None)


def test_why_not_speculating() -> None:
    assert why_not_speculating(GREEDY, None, None) == "Not speculating: no model is loaded."
    why = why_not_speculating(GREEDY, _info(None, "no drafter selected"), None)
    assert why is not None and "has no drafter (no drafter selected)" in why
    off = dataclasses.replace(GREEDY, speculative=False)
    assert "switched off for this chat" in why_not_speculating(off, _info(), None)
    assert why_not_speculating(GREEDY, _info(), None) is None
    rec = SpecRecorder("n-gram")
    rec.k_history += [3, 0]
    detail = "drafts would not pay: the drafter's guesses are right about 9% of the time, and checking 3 ..."
    rec.record_reason("controller chose k=0", detail)
    why = why_not_speculating(GREEDY, _info(), rec.snapshot())
    assert why is not None and why.startswith("Drafting paused") and "right about 9% of the time" in why
    rec.k_history.append(2)
    assert why_not_speculating(GREEDY, _info(), rec.snapshot()) is None  # drafting again


def test_speed_points_in_run_order() -> None:
    ab = {"version": 1, **{f.name: 0 for f in dataclasses.fields(ABReport)}}
    ab.update(plain_tps=40.0, spec_tps=60.0, identical=True, context_before="", plain_piece="", spec_piece="")
    messages = [
        MessageItem(1, "user", "q"),
        MessageItem(2, "assistant", "a", stats=_stats(spec=True)),  # 10 tok/s
        MessageItem(3, "user", "q2"),
        MessageItem(4, "assistant", "b", stats=_stats(spec=False, tps_tokens=21), ab=ab),  # 20 tok/s
        MessageItem(5, "assistant", "bad", ab={"winner": "foreign"}),  # not a report: no point
    ]
    points = speed_points(messages, live=(True, 33.0))
    assert points.speculative == ((1, 10.0), (3, 60.0), (4, 33.0))
    assert points.plain == ((2, 20.0), (3, 40.0))
    assert points.n_runs == 4


def test_charts_never_join_two_models() -> None:
    from app.speed_panel import model_figures, other_models, shown_model

    ab = {"version": 1, **{f.name: 0 for f in dataclasses.fields(ABReport)}}
    ab.update(plain_tps=40.0, spec_tps=60.0, identical=True, context_before="", plain_piece="", spec_piece="")
    messages = [
        MessageItem(1, "user", "q"),
        MessageItem(2, "assistant", "a", stats=_stats(spec=True), model="Small"),  # 10 tok/s
        MessageItem(3, "user", "q2"),
        MessageItem(4, "assistant", "b", stats=_stats(spec=False, tps_tokens=21), model="Big",
                    ab={**ab, "model": "Small"}),  # an A/B on Small, kept with Big's reply
        MessageItem(5, "user", "q3"),
        MessageItem(6, "assistant", "c", stats=_stats(spec=True, tps_tokens=31), model="Big"),
    ]  # fmt: skip
    small = speed_points(model_figures(messages, "Small"))
    assert (small.speculative, small.plain) == (((1, 10.0), (2, 60.0)), ((2, 40.0),))
    big = speed_points(model_figures(messages, "Big"))
    assert (big.speculative, big.plain) == (((2, 30.0),), ((1, 20.0),))
    assert shown_model(messages, None) == "Big" and shown_model(messages, _info()) == _info().model_name
    assert other_models(messages, "Big") == ["Small"]
    legacy = [MessageItem(1, "user", "q"), MessageItem(2, "assistant", "a", stats=_stats(spec=True))]
    assert speed_points(model_figures(legacy, "Any")).speculative == ((1, 10.0),)  # no model recorded yet


def test_step_points_follow_the_provenance() -> None:
    rec = SpecRecorder("n-gram")
    # First token from the prompt; steps: k=3 accepting 2, k=3 accepting 0, k=0 (off), k=2 accepting 2.
    rec.provenance += [0, 1, 2, 0, 0, 0, 1, 2, 0]
    rec.k_history += [3, 3, 0, 2]
    k_points, rate = step_points(rec.snapshot())
    assert k_points == [(1, 3), (2, 3), (3, 0), (4, 2)]
    assert rate == [(1, pytest.approx(200 / 3)), (2, pytest.approx(200 / 6)), (3, pytest.approx(200 / 6)),
                    (4, pytest.approx(400 / 8))]  # fmt: skip


def test_view_menu_toggle_is_remembered_and_chat_menu_runs_ab(qtbot, context):
    first = open_main(qtbot, context)
    actions = {a.text(): a for a in first.findChildren(type(first.speed.toggleViewAction()))}
    toggle = actions["Speed panel"]
    assert not first.speed.isVisible()
    toggle.trigger()
    assert first.speed.isVisible()
    first.close()
    second = open_main(qtbot, context)
    assert second.speed.isVisible()  # remembered with the window's state
    ask(qtbot, second, "hello")
    ab = next(a for a in second.findChildren(type(toggle)) if a.text() == "A/B: plain vs speculative")
    ab.trigger()
    qtbot.waitUntil(lambda: second.panel.session.ab.state == "idle", timeout=10_000)
    assert second.panel.session.ab.last_report() is not None


def test_long_draft_histograms_pool_counts_so_every_label_fits() -> None:
    from app.speed_charts import MAX_BINS, histogram_bins

    assert histogram_bins([3, 1, 2]) == (["0", "1", "2"], [3, 1, 2])
    hist = [5, 1, 0, 2, 0, 0, 0, 4] + [0] * 55 + [3]  # counts 0..63
    labels, values = histogram_bins(hist)
    assert labels == ["0", "1", "2", "4", "8", "16", "32"]  # each bin runs from its label to the next
    assert values == [5, 1, 2, 4, 0, 0, 3] and sum(values) == sum(hist)
    assert len(histogram_bins([1] * 65)[0]) <= MAX_BINS  # up to 64 accepted: "64" is a bin of its own
    assert histogram_bins([1] * 65)[0][-1] == "64"
