"""`tandem` command line, run as a real child process (`python -m engine.cli`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine import __version__
from tests import REPO_ROOT


def tandem(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_the_subcommands() -> None:
    r = tandem("--help")
    assert r.returncode == 0
    assert "chat" in r.stdout and "app" in r.stdout
    chat = tandem("chat", "--help")
    assert chat.returncode == 0
    for option in ("--model", "--draft-model", "--max-tokens", "--stats", "--no-spec", "--temp", "--seed"):
        assert option in chat.stdout


def test_version() -> None:
    r = tandem("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"tandem {__version__}"


def test_one_shot_chat_with_stats(tiny_llama_path: Path) -> None:
    r = tandem(
        "chat", "--model", str(tiny_llama_path), "hi", "--max-tokens", "8", "--stats", "--threads", "1"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()  # the reply
    assert "Traceback" not in r.stderr
    assert "[8 tokens" in r.stderr and "stop: max_tokens" in r.stderr
    assert "tiny-llama (test fixture)" in r.stderr  # the banner names the model


def test_one_shot_chat_is_reproducible_with_a_seed(tiny_llama_path: Path) -> None:
    args = (
        "chat",
        "--model",
        str(tiny_llama_path),
        "hi",
        "--max-tokens",
        "12",
        "--temp",
        "1.0",
        "--threads",
        "1",
    )
    a = tandem(*args, "--seed", "3")
    b = tandem(*args, "--seed", "3", "--no-spec")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout


def test_interactive_mode_reads_stdin_until_quit(tiny_llama_path: Path) -> None:
    r = tandem(
        "chat",
        "--model",
        str(tiny_llama_path),
        "--max-tokens",
        "5",
        "--threads",
        "1",
        "--stats",
        stdin="Hello\nand more\n/quit\nnever sent\n",
    )
    assert r.returncode == 0, r.stderr
    cached = [int(n) for n in re.findall(r"\((\d+) cached\)", r.stderr)]
    assert len(cached) == 2  # two replies, nothing after /quit
    assert cached[0] == 0 and cached[1] > 0  # the second turn reuses the first one's KV cache


def test_interactive_mode_ends_cleanly_at_end_of_input(tiny_llama_path: Path) -> None:
    r = tandem(
        "chat", "--model", str(tiny_llama_path), "--max-tokens", "3", "--threads", "1", stdin="Hello\n"
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("problem", ["missing", "corrupt", "folder"])
def test_bad_model_file_exits_2_with_a_clear_message(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "model.gguf"
    if problem == "corrupt":
        path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    elif problem == "folder":
        path.mkdir()
    r = tandem("chat", "--model", str(path), "hi")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("tandem: error: ")
    assert str(path) in r.stderr


def test_unknown_option_is_a_usage_error() -> None:
    r = tandem("chat", "--no-such-option")
    assert r.returncode == 2
    assert "usage:" in r.stderr and "Traceback" not in r.stderr
