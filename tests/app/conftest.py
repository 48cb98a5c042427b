"""Fixtures for the GUI tests: an isolated QSettings and history, a worker client on the fake engine."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QSettings

from app.context import AppContext
from app.history.store import HistoryStore
from app.main import qt_binding_problem
from app.theme import LIGHT
from app.worker import WorkerClient
from engine.config import LoadConfig
from tests.app.fake_engine import FakeOptions, fake_factory


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Window geometry and other QSettings, the log and other data go to a temporary folder, never the
    user's."""
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "data"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QCoreApplication.setOrganizationName("TandemTest")
    QCoreApplication.setApplicationName("TandemTest")
    yield
    gc.unfreeze()  # app.main freezes what is alive after start-up: not for the next test's objects


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore(tmp_path / "history.sqlite3")
    yield s
    s.close()


@pytest.fixture
def fake_options() -> FakeOptions:
    return FakeOptions()


@pytest.fixture
def client(qtbot: object, fake_options: FakeOptions) -> Iterator[WorkerClient]:
    """A worker client with the fake model already loaded."""
    c = WorkerClient(fake_factory(fake_options))
    with qtbot.waitSignal(c.modelLoaded, timeout=5000):  # type: ignore[attr-defined]
        c.load(LoadConfig(model_path=Path("/models/fake-target.gguf")))
    # "loaded" arrives before the worker says it is free: tests that count queue positions must start idle.
    qtbot.waitUntil(lambda: not c.busy, timeout=5000)  # type: ignore[attr-defined]
    yield c
    if fake_options.gate is not None:
        fake_options.gate.set()  # a test that failed half-way must not leave the worker blocked
    c.shutdown()


@pytest.fixture
def context(store: HistoryStore, client: WorkerClient) -> Iterator[AppContext]:
    ctx = AppContext(store, client, LIGHT)
    yield ctx
    for window in list(ctx.windows):
        window.close()
    ctx.server.shutdown()
    ctx.remotes.shutdown()  # their worker threads must end before Qt objects are collected


# The offscreen platform plugin warns about window-manager requests it cannot pass on; they say nothing about
# the app. Every other Qt warning still fails the test (qt_log_level_fail = WARNING in pyproject.toml).
OFFSCREEN_NOISE = r"^This plugin does not support \w+\(\)$"  # propagateSizeHints(), raise()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    # A PySide6 that aborts the interpreter after a few thousand calls would take the whole test run down:
    # its Qt tests are skipped, with the reason, instead.
    problem = qt_binding_problem()
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.qt_log_ignore(OFFSCREEN_NOISE))
            if problem and {"qapp", "qtbot"} & set(getattr(item, "fixturenames", ())):
                item.add_marker(pytest.mark.skip(reason=problem.replace("\n", " ")))
