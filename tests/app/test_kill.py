"""History survives `kill -9` of the app in the middle of a streaming reply."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.history.store import HistoryStore
from app.main import qt_binding_problem

CHILD = Path(__file__).with_name("kill_child.py")


@pytest.mark.subprocess
@pytest.mark.skipif(bool(qt_binding_problem()), reason=str(qt_binding_problem()).replace("\n", " "))
def test_history_survives_kill_during_streaming(tmp_path):
    history = tmp_path / "history.sqlite3"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"))
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(history)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip() == "STREAMING", child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    with sqlite3.connect(history) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        raw = conn.execute("SELECT status FROM messages ORDER BY id").fetchall()
    assert raw == [("complete",), ("streaming",)]  # as the killed app left it

    store = HistoryStore(history)  # reopening marks the cut-off reply as interrupted
    try:
        (chat,) = store.list_chats()
        user, reply = store.messages(chat.id)
        assert (user.role, user.content, user.status) == ("user", "Please write a long answer", "complete")
        assert reply.role == "assistant" and reply.status == "interrupted"
        expected = "You said: Please write a long answer\n\n" + "word " * 5000
        assert len(reply.content) > 40 and expected.startswith(reply.content)
    finally:
        store.close()
