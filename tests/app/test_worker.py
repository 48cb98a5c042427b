"""The inference worker: event order, queueing, cancellation and errors, through queued signals."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QThread

from app.worker import RequestState, WorkerClient
from engine.config import ChatMessage, GenerationParams, LoadConfig
from engine.errors import DecodeError, ModelFileError
from engine.events import DoneEvent, NoticeEvent, StopReason, TokenEvent
from tests.app.fake_engine import FakeOptions, fake_factory

HELLO = [ChatMessage("user", "hello")]


class Recorder:
    """Records a request's signals in arrival order, with the thread they arrived in."""

    def __init__(self, request: object) -> None:
        self.log: list[tuple[str, object]] = []
        self.threads: set[object] = set()
        for name in ("queuePosition", "started", "engineEvent", "failed", "finished"):
            getattr(request, name).connect(lambda *args, n=name: self._on(n, args))

    def _on(self, name: str, args: tuple[object, ...]) -> None:
        self.threads.add(QThread.currentThread())
        self.log.append((name, args[0] if args else None))

    def names(self) -> list[str]:
        return [n for n, _ in self.log]

    def events(self) -> list[object]:
        return [a for n, a in self.log if n == "engineEvent"]


def test_send_stream_finish_order(qtbot, client, fake_options):
    fake_options.notice = "dropped the 1 oldest message(s)"
    request = client.submit(HELLO, GenerationParams())
    rec = Recorder(request)
    with qtbot.waitSignal(request.finished, timeout=5000):
        pass
    names = rec.names()
    assert names[0] == "started" and names[-1] == "finished"
    events = rec.events()
    assert isinstance(events[0], NoticeEvent)
    assert all(isinstance(e, TokenEvent) for e in events[1:-1])
    assert isinstance(events[-1], DoneEvent) and events[-1] is request.done_event
    done = events[-1]
    assert done.stop_reason is StopReason.EOG
    assert done.text == "".join(e.text for e in events[1:-1])
    assert done.stats.n_generated == len(events) - 2
    assert done.stats.spec is not None and len(done.stats.spec.provenance) == done.stats.n_generated
    assert request.state is RequestState.DONE
    assert rec.threads == {QThread.currentThread()}  # delivered in the GUI thread


def test_requests_queue_and_waiting_one_can_be_cancelled(qtbot, client, fake_options):
    gate = threading.Event()
    fake_options.gate = gate  # the first generation blocks until the test opens the gate
    first = client.submit(HELLO, GenerationParams())
    second = client.submit([ChatMessage("user", "second")], GenerationParams())
    third = client.submit([ChatMessage("user", "third")], GenerationParams())
    rec2, rec3 = Recorder(second), Recorder(third)
    qtbot.waitUntil(lambda: first.state is RequestState.RUNNING, timeout=2000)
    assert second.state is RequestState.WAITING and third.state is RequestState.WAITING
    with qtbot.waitSignal(third.finished, timeout=2000):
        third.cancel()
    assert third.state is RequestState.CANCELLED and rec3.names() == ["queuePosition", "finished"]
    # The second moved up: its position was re-announced.
    with qtbot.waitSignal(second.finished, timeout=5000):
        gate.set()
    names = rec2.names()
    assert names[0] == "queuePosition" and names[-1] == "finished"
    assert "queuePosition" not in names[names.index("started") :]
    assert first.state is RequestState.DONE and second.state is RequestState.DONE
    assert [m[-1].content for m in fake_options.calls] == ["hello", "second"]  # third never reached it


def test_queue_positions_are_announced(qtbot, client, fake_options):
    fake_options.gate = threading.Event()
    first = client.submit(HELLO, GenerationParams())
    second = client.submit(HELLO, GenerationParams())
    third = client.submit(HELLO, GenerationParams())
    positions: dict[str, list[int]] = {"first": [], "second": [], "third": []}
    for name, request in (("first", first), ("second", second), ("third", third)):
        request.queuePosition.connect(positions[name].append)
    qtbot.waitUntil(lambda: first.state is RequestState.RUNNING, timeout=2000)
    assert positions == {"first": [], "second": [1], "third": [2]}
    with qtbot.waitSignal(second.started, timeout=5000):
        fake_options.gate.set()
    assert positions["third"] == [2, 1]  # moved up when the first finished
    with qtbot.waitSignal(third.finished, timeout=5000):
        pass


def test_cancel_running_request_stops_within_a_step(qtbot, client, fake_options):
    fake_options.token_delay = 0.01
    request = client.submit(HELLO, GenerationParams())
    tokens: list[TokenEvent] = []
    request.engineEvent.connect(lambda e: tokens.append(e) if isinstance(e, TokenEvent) else None)
    qtbot.waitUntil(lambda: len(tokens) >= 3, timeout=5000)
    with qtbot.waitSignal(request.finished, timeout=5000):
        request.cancel()
    done = request.done_event
    assert done is not None and done.stop_reason is StopReason.CANCELLED
    assert 3 <= done.stats.n_generated < 40  # stopped early, not run to the end
    assert request.state is RequestState.DONE


def test_engine_error_becomes_message(qtbot, client, fake_options):
    fake_options.fail_after = 5
    request = client.submit(HELLO, GenerationParams())
    rec = Recorder(request)
    with qtbot.waitSignal(request.finished, timeout=5000):
        pass
    assert rec.names()[-2:] == ["failed", "finished"]
    assert request.error == str(DecodeError("llama_decode returned -1 (fake failure)"))
    assert "Traceback" not in request.error
    # The worker survives: the next request runs.
    fake_options.fail_after = None
    again = client.submit(HELLO, GenerationParams())
    with qtbot.waitSignal(again.finished, timeout=5000):
        pass
    assert again.state is RequestState.DONE


def test_load_failure_is_reported_and_generation_says_no_model(qtbot):
    options = FakeOptions(load_error=ModelFileError("/m/broken.gguf", "truncated file"))
    c = WorkerClient(fake_factory(options))
    try:
        with qtbot.waitSignal(c.loadFailed, timeout=5000) as blocker:
            c.load(LoadConfig(model_path=Path("/m/broken.gguf")))
        assert blocker.args == ["/m/broken.gguf: truncated file"]
        assert c.info is None
        request = c.submit(HELLO, GenerationParams())
        with qtbot.waitSignal(request.finished, timeout=5000):
            pass
        assert request.state is RequestState.FAILED and request.error == "No model is loaded."
    finally:
        c.shutdown()


def test_load_reports_progress_and_can_be_cancelled(qtbot):
    c = WorkerClient(fake_factory(FakeOptions(load_delay=0.5)))
    progress: list[float] = []
    c.loadProgress.connect(progress.append)
    try:
        with qtbot.waitSignal(c.loadFailed, timeout=5000) as blocker:
            c.load(LoadConfig(model_path=Path("/m/slow.gguf")))
            qtbot.waitUntil(lambda: len(progress) >= 1, timeout=2000)
            c.cancel_load()
        assert blocker.args == ["Loading was cancelled."]
        with qtbot.waitSignal(c.modelLoaded, timeout=5000):
            c.load(LoadConfig(model_path=Path("/m/slow.gguf")))
        assert progress[-1] == 1.0
    finally:
        c.shutdown()


def test_ab_request_runs_both_sides_in_the_worker(qtbot, client, fake_options):
    fake_options.scripted_tps = [40.0, 60.0, 61.0, 41.0, 40.5, 59.0]
    request = client.submit_ab(HELLO, GenerationParams(max_tokens=30))
    rec = Recorder(request)
    with qtbot.waitSignal(request.finished, timeout=5000):
        pass
    from engine.measure.ab import ABResult, ABStep

    events = rec.events()
    assert isinstance(events[-1], ABResult) and events[-1] is request.result
    dones = [e.side for e in events if isinstance(e, ABStep) and isinstance(e.event, DoneEvent)]
    assert dones == ["plain", "speculative", "speculative", "plain", "plain", "speculative"]
    result = request.result
    assert result.identical and result.plain.stats.spec is None and result.spec.stats.spec is not None
    assert result.plain_tps == pytest.approx(40.5) and result.spec_tps == pytest.approx(60.0)
    assert not result.disturbed
    assert len(result.plain.tokens) == len(result.spec.tokens) == 30
    assert rec.threads == {QThread.currentThread()}
    assert fake_options.calls == []  # an A/B is not a chat turn


def test_ab_cancelled_mid_run_has_no_result(qtbot, client, fake_options):
    fake_options.gate = threading.Event()
    request = client.submit_ab(HELLO, GenerationParams())
    qtbot.waitUntil(lambda: request.state is RequestState.RUNNING, timeout=2000)
    request.cancel()
    fake_options.gate.set()
    qtbot.waitUntil(lambda: request.state is RequestState.DONE, timeout=5000)
    assert request.result is None and request.error is None


def test_prediction_learned_per_pair_and_kept_across_loads(qtbot, tmp_path):
    from engine.measure.pair_profile import ProfileStore, pair_key

    path = tmp_path / "profiles.json"
    config = LoadConfig(model_path=Path("/models/fake-target.gguf"))
    first_options = FakeOptions()
    client = WorkerClient(fake_factory(first_options), profiles=ProfileStore(path))
    try:
        with qtbot.waitSignal(client.modelLoaded, timeout=5000):
            client.load(config)
        assert client.prediction is None  # nothing learned yet
        assert first_options.calibrations == ["fake-target.gguf"]  # the pair's first load here calibrates
        client.submit(HELLO, GenerationParams())
        qtbot.waitUntil(lambda: client.prediction is not None, timeout=5000)
        first = client.prediction
        assert first is not None and first.evidence > 0 and first.speedup > 1.0 and first.last_ab is None
        with qtbot.waitSignal(client.modelUnloaded, timeout=5000):
            client.unload()
        assert client.prediction is None
    finally:
        client.shutdown()
    # A fresh app on the same machine knows the pair as soon as it is loaded.
    options = FakeOptions()
    again = WorkerClient(fake_factory(options), profiles=ProfileStore(path))
    try:
        with qtbot.waitSignal(again.modelLoaded, timeout=5000):
            again.load(config)
        assert again.prediction is not None  # announced before the model
        assert again.prediction.evidence == first.evidence
        key = pair_key(config, again.info)
        generations = ProfileStore(path).get(key).generations
        assert options.calibrations == [] and again.prediction is not None  # seeded from the profile
        # A disturbed A/B (one plain run slowed by another program) teaches the profile nothing...
        options.scripted_tps = [40.0, 60.0, 60.0, 5.0, 41.0, 61.0]
        request = again.submit_ab(HELLO, GenerationParams(max_tokens=20))
        qtbot.waitUntil(lambda: request.state is RequestState.DONE, timeout=5000)
        assert request.result.disturbed and again.prediction.last_ab is None
        assert ProfileStore(path).get(key).generations == generations
        # ...a clean one is learned once, and its measured speedup is what the app shows.
        options.scripted_tps = [40.0, 60.0, 60.0, 41.0, 40.5, 61.0]
        request = again.submit_ab(HELLO, GenerationParams(max_tokens=20))
        qtbot.waitUntil(lambda: request.state is RequestState.DONE, timeout=5000)
        qtbot.waitUntil(lambda: again.prediction.last_ab is not None, timeout=2000)
        assert again.prediction.last_ab == pytest.approx(60.0 / 40.5) == request.result.speedup
        assert again.prediction.short() == "measured 1.48× (A/B)"
        assert ProfileStore(path).get(key).generations == generations + 1
    finally:
        again.shutdown()


# --- loading is a transaction (issue 16, item 1) ------------------------------------------------------------
class Factory:
    """A fake engine factory that fails the loads `fail(config, loaded)` says should fail, where `loaded` is
    the set of paths whose engines are open right now (memory in use)."""

    def __init__(self, fail: object) -> None:
        self.fail = fail
        self.open: set[Path] = set()
        self.calls: list[LoadConfig] = []

    def __call__(self, config: LoadConfig, progress: object = None) -> object:
        self.calls.append(config)
        error = self.fail(config, set(self.open))  # type: ignore[operator]
        if error is not None:
            raise error
        engine = fake_factory(FakeOptions())(config, progress)
        self.open.add(config.model_path)
        close = engine.close

        def closed() -> None:
            self.open.discard(config.model_path)
            close()

        engine.close = closed  # type: ignore[method-assign]
        return engine


def wait_load(qtbot, client: WorkerClient, config: LoadConfig) -> tuple[str, object]:
    outcome: list[tuple[str, object]] = []
    client.modelLoaded.connect(lambda info: outcome.append(("loaded", info)))
    client.loadFailed.connect(lambda message: outcome.append(("failed", message)))
    client.load(config)
    qtbot.waitUntil(lambda: bool(outcome) and not client.busy, timeout=5000)
    return outcome[-1]


def test_a_failed_load_keeps_the_model_serving(qtbot):
    bad = Path("/m/bad.gguf")
    factory = Factory(
        lambda config, _open: ModelFileError(bad, "truncated") if config.model_path == bad else None
    )
    c = WorkerClient(factory)
    try:
        assert wait_load(qtbot, c, LoadConfig(model_path=Path("/m/good.gguf")))[0] == "loaded"
        kind, message = wait_load(qtbot, c, LoadConfig(model_path=bad))
        assert (kind, message) == ("failed", "/m/bad.gguf: truncated")
        assert c.info is not None and c.info.model_path == Path("/m/good.gguf")
        assert factory.open == {Path("/m/good.gguf")}  # never closed for the failed load
        request = c.submit(HELLO, GenerationParams())
        with qtbot.waitSignal(request.finished, timeout=5000):
            pass
        assert request.state is RequestState.DONE
    finally:
        c.shutdown()


def test_a_new_model_replaces_the_old_only_once_it_is_loaded(qtbot):
    seen: list[set[Path]] = []

    def fail(config: LoadConfig, open_: set[Path]) -> None:
        seen.append(open_)

    factory = Factory(fail)
    c = WorkerClient(factory)
    try:
        wait_load(qtbot, c, LoadConfig(model_path=Path("/m/a.gguf")))
        wait_load(qtbot, c, LoadConfig(model_path=Path("/m/b.gguf")))
        assert seen == [set(), {Path("/m/a.gguf")}]  # b was opened while a was still loaded
        assert factory.open == {Path("/m/b.gguf")} and c.info.model_path == Path("/m/b.gguf")
    finally:
        c.shutdown()


def test_when_two_models_do_not_fit_the_old_one_makes_room_and_comes_back_on_failure(qtbot):
    from engine.errors import ModelLoadError

    def fail(config: LoadConfig, open_: set[Path]) -> Exception | None:
        if config.model_path == Path("/m/big.gguf") and open_:
            return ModelLoadError(
                "big.gguf: llama.cpp could not create a context (failed to allocate buffer)"
            )
        if config.model_path == Path("/m/huge.gguf"):
            return ModelLoadError("huge.gguf: llama.cpp could not load the model (failed to allocate)")
        return None

    factory = Factory(fail)
    c = WorkerClient(factory)
    try:
        wait_load(qtbot, c, LoadConfig(model_path=Path("/m/a.gguf")))
        kind, info = wait_load(qtbot, c, LoadConfig(model_path=Path("/m/big.gguf")))
        assert kind == "loaded" and factory.open == {Path("/m/big.gguf")}  # a was closed to make room
        kind, message = wait_load(qtbot, c, LoadConfig(model_path=Path("/m/huge.gguf")))
        assert kind == "failed" and "allocate" in str(message)
        # big was closed to try huge, huge failed anyway: big is loaded again and answers
        assert factory.open == {Path("/m/big.gguf")} and c.info.model_path == Path("/m/big.gguf")
        request = c.submit(HELLO, GenerationParams())
        with qtbot.waitSignal(request.finished, timeout=5000):
            pass
        assert request.state is RequestState.DONE
    finally:
        c.shutdown()


def test_a_refused_drafter_loads_the_target_alone_and_says_why(qtbot):
    draft = Path("/m/draft.gguf")

    def fail(config: LoadConfig, _open: set[Path]) -> Exception | None:
        return ModelFileError(draft, "the file is truncated") if config.draft_model_path == draft else None

    c = WorkerClient(Factory(fail))
    try:
        kind, info = wait_load(qtbot, c, LoadConfig(model_path=Path("/m/t.gguf"), draft_model_path=draft))
        assert kind == "loaded" and info.drafter is None
        assert info.drafter_note.startswith("the drafter was refused: /m/draft.gguf: the file is truncated")
    finally:
        c.shutdown()
