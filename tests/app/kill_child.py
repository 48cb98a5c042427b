"""Child process for test_kill: runs the real app entry point on the fake engine, sends a prompt, and prints
"STREAMING" once a checkpoint of the reply is in the history; the test then kills it with SIGKILL."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app import main as app_main  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from tests.app.fake_engine import FakeOptions, fake_factory  # noqa: E402

PROMPT = "Please write a long answer"


def drive() -> None:
    window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))
    if window.context.client.info is None:
        QTimer.singleShot(20, drive)
        return
    window.panel.composer.setPlainText(PROMPT)
    window.panel.send()
    session = window.panel.session
    store = window.context.store

    def watch() -> None:
        stored = store.messages(session.chat_id)
        if len(stored) == 2 and stored[1].status == "streaming" and len(stored[1].content) > 40:
            print("STREAMING", flush=True)  # the parent kills us now, mid-stream
        QTimer.singleShot(50, watch)

    watch()


if __name__ == "__main__":
    history = sys.argv[1]
    QTimer.singleShot(0, drive)
    factory = fake_factory(FakeOptions(script="word " * 5000, token_delay=0.005))
    sys.exit(app_main.main(["--history", history, "--model", "fake.gguf"], engine_factory=factory))
