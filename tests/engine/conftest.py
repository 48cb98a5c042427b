"""Engine-test fixtures. `fake_server` starts a real server (uvicorn on a loopback socket) around the GUI
tests' fake engine: fast, deterministic tests of the HTTP side (what arrives, what is refused, that a client
who leaves cancels its generation) and of the remote client that talks to it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.config import LoadConfig
from engine.events import DoneEvent
from engine.serve.http import Activity, ServerOptions, build_app
from engine.serve.queue import EngineJob, EngineThread, JobFailed, JobItem, ServedModel
from engine.serve.server import ServerThread
from tests.app.fake_engine import FakeChatEngine, FakeOptions


@dataclass
class Recorder:
    """The terminal item of every job, as the engine's owner emitted it."""

    ends: list[JobItem] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[JobItem]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.ends) >= n, timeout), f"{self.ends}"
            return list(self.ends)


class RecordingQueue:
    """An EngineThread whose jobs report their ending to a Recorder."""

    def __init__(self, owner: EngineThread, recorder: Recorder) -> None:
        self.owner = owner
        self.recorder = recorder
        self.model_present = True

    def submit(self, job: EngineJob) -> None:
        emit = job.emit

        def recording(item: JobItem) -> None:
            emit(item)
            if isinstance(item, DoneEvent | JobFailed):
                with self.recorder.changed:
                    self.recorder.ends.append(item)
                    self.recorder.changed.notify_all()

        job.emit = recording
        self.recorder.origins.append(job.origin)
        self.owner.submit(job)

    def model(self) -> ServedModel | None:
        return self.owner.model() if self.model_present else None


@dataclass
class FakeServer:
    url: str
    queue: RecordingQueue
    recorder: Recorder
    activity: Activity
    fake: FakeOptions


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    started: list[tuple[ServerThread, EngineThread]] = []

    def start(options: ServerOptions | None = None, fake: FakeOptions | None = None) -> FakeServer:
        fake = fake or FakeOptions()
        engine = FakeChatEngine(LoadConfig(model_path=Path("/models/fake-target.gguf")), fake)
        owner = EngineThread(engine)
        recorder = Recorder()
        queue = RecordingQueue(owner, recorder)
        activity = Activity()
        thread = ServerThread(build_app(queue, options or ServerOptions(), activity), "127.0.0.1", 0)
        thread.start()
        started.append((thread, owner))
        return FakeServer(thread.address.url, queue, recorder, activity, fake)

    yield start
    for thread, owner in started:
        thread.stop()
        owner.close(timeout=5)
