"""MTP through the ChatEngine and the `tandem chat` command: the drafter is picked and set up from metadata,
replies are identical to plain decoding, a mismatched assistant is refused without a crash, and a model
without MTP falls back with a notice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ChatMessage, GenerationParams, LoadConfig, SpecParams
from engine.errors import ModelFileError
from engine.events import DoneEvent, NoticeEvent
from engine.inference.session import ChatEngine
from tests import REPO_ROOT

MESSAGES = [ChatMessage("user", "Hello world, what is the name of the model?")]


def reply(engine: ChatEngine, spec: bool) -> tuple[str, DoneEvent, list[str]]:
    params = GenerationParams(max_tokens=24, spec=SpecParams(enabled=spec, adaptive=False))
    engine.reset()
    events = list(engine.chat(MESSAGES, params))
    done = events[-1]
    assert isinstance(done, DoneEvent)
    return done.text, done, [e.message for e in events if isinstance(e, NoticeEvent)]


def config(model: Path, **kw: object) -> LoadConfig:
    return LoadConfig(model_path=model, n_ctx=512, n_batch=64, n_threads=1, **kw)  # type: ignore[arg-type]


def test_gemma4_pair_runs_mtp(tiny_gemma4_path: Path, tiny_gemma4_assistant_path: Path) -> None:
    with ChatEngine.load(config(tiny_gemma4_path, assistant_path=tiny_gemma4_assistant_path)) as engine:
        assert engine.info.drafter == "MTP (Gemma 4 assistant)"
        assert engine.info.drafter_bytes > 0  # the assistant's weights
        spec_text, done, _ = reply(engine, spec=True)
        plain_text, _, _ = reply(engine, spec=False)
    assert spec_text == plain_text and done.stats.spec is not None and done.stats.spec.drafted > 0


@pytest.mark.parametrize("drafter", ["auto", "mtp"])
def test_nextn_model_runs_mtp(drafter: str, tiny_nextn_path: Path) -> None:
    with ChatEngine.load(config(tiny_nextn_path, drafter=drafter)) as engine:
        assert engine.info.drafter == "MTP (NextN)" and engine.model.load_mtp
        assert engine.info.drafter_bytes > 0  # NextN layer weights + its KV
        spec_text, done, _ = reply(engine, spec=True)
        plain_text, _, _ = reply(engine, spec=False)
    assert spec_text == plain_text and done.stats.spec is not None and done.stats.spec.drafted > 0


def test_model_without_mtp_falls_back_with_a_notice(tiny_llama_path: Path) -> None:
    with ChatEngine.load(config(tiny_llama_path, drafter="mtp")) as engine:
        assert engine.info.drafter is None
        text, done, notices = reply(engine, spec=True)
    assert notices == ["speculative decoding is off: the model has no MTP layers"]
    assert done.stats.n_generated > 0 and done.stats.spec is None


def test_auto_without_mtp_uses_another_drafter(tiny_llama_path: Path) -> None:
    with ChatEngine.load(config(tiny_llama_path, drafter="auto")) as engine:
        assert engine.info.drafter == "n-gram" and not engine.model.load_mtp


LOAD_BAD_PAIR = """
import sys
from pathlib import Path
from engine.config import LoadConfig
from engine.errors import IncompatibleDrafterError
from engine.inference.session import ChatEngine
try:
    ChatEngine.load(LoadConfig(model_path=Path(sys.argv[1]), assistant_path=Path(sys.argv[2]), n_ctx=256))
except IncompatibleDrafterError as exc:
    print("REFUSED", exc.rule)
    sys.exit(0)
print("LOADED")
"""


@pytest.mark.subprocess
def test_session_refuses_mismatched_pairs_without_crashing(
    tiny_gemma4_path: Path,
    mismatched_assistant_paths: dict[str, Path],
    tiny_nextn_path: Path,
    tiny_gemma4_assistant_path: Path,
) -> None:
    cases = [(rule, tiny_gemma4_path, path) for rule, path in mismatched_assistant_paths.items()]
    cases.append(("target-architecture", tiny_nextn_path, tiny_gemma4_assistant_path))
    for rule, target, assistant in cases:
        proc = subprocess.run(
            [sys.executable, "-c", LOAD_BAD_PAIR, str(target), str(assistant)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"{rule}: rc {proc.returncode}\n{proc.stderr[-2000:]}"
        assert proc.stdout.split() == ["REFUSED", rule]


def _chat(*args: str) -> tuple[str, str]:
    """(reply on stdout, banner and notices on stderr)"""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "chat",
            "Hello world",
            "--max-tokens",
            "20",
            "--ctx",
            "512",
            "--threads",
            "1",
            *args,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


@pytest.mark.subprocess
def test_tandem_chat_with_assistant_matches_plain(
    tiny_gemma4_path: Path, tiny_gemma4_assistant_path: Path
) -> None:
    spec = _chat(
        "--model", str(tiny_gemma4_path), "--assistant", str(tiny_gemma4_assistant_path), "--fixed-k"
    )
    plain = _chat("--model", str(tiny_gemma4_path), "--drafter", "none")
    assert "drafter: MTP (Gemma 4 assistant)" in spec[1] and spec[0].strip()
    assert spec[0] == plain[0]


@pytest.mark.subprocess
def test_tandem_chat_with_nextn_matches_plain(tiny_nextn_path: Path) -> None:
    spec = _chat("--model", str(tiny_nextn_path), "--drafter", "mtp", "--fixed-k")
    plain = _chat("--model", str(tiny_nextn_path), "--drafter", "none")
    assert "drafter: MTP (NextN)" in spec[1] and spec[0].strip()
    assert spec[0] == plain[0]


def test_an_assistant_loaded_as_the_model_says_it_is_a_drafter(tiny_gemma4_assistant_path: Path) -> None:
    """Issue 16: it failed with llama.cpp's context-size error instead."""
    with pytest.raises(ModelFileError, match="this is a drafter .* pair this file with it as its assistant"):
        ChatEngine.load(LoadConfig(model_path=tiny_gemma4_assistant_path))
