"""benchmarks/replay_controller.py's models of llama.cpp's n-gram drafters, on token lists with a flat cost
curve (every decode costs one unit, so the speedup is tokens per step)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from replay_controller import bench_replies, main, native_mod, native_simple  # noqa: E402
from vs_llama_cpp import Row  # noqa: E402


def flat(n: int) -> float:
    return 1.0


def test_ngram_mod_drafts_once_its_key_is_copied_and_only_a_long_enough_chain() -> None:
    prompt = list(range(100, 220))  # 120 distinct tokens
    reply = prompt[:100]  # copied from the start
    # 23 plain steps write the 24-token key; one draft of 64, all right. The table has taken in the reply by
    # then (a chunk of 32 new tokens), so the chain runs on past the prompt's end into the reply's start:
    # one more draft of the 10 tokens left. 99 tokens after the first in 25 steps.
    assert native_mod(prompt, reply, 24, 48, 64, flat) == 99 / 25
    # A chain shorter than the least draft is never drafted.
    assert native_mod(prompt, reply, 24, 65, 64, flat) == 1.0


def test_ngram_simple_drafts_what_followed_the_latest_match() -> None:
    prompt = list(range(100, 140))
    reply = prompt[:30]
    # The 4-token key exists after 3 plain steps (reply[0] comes from the prompt's decode); then drafts of 16
    # and of the 9 left before the last token, every one right: 29 tokens in 3 + 2 steps.
    assert native_simple(prompt, reply, 4, 16, flat) == 29 / 5


def test_a_native_benchmark_file_replays_native_replies_on_their_own_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """vs_llama_cpp.py --json keeps what its "priced on N's reply" column priced; --load prices it again."""
    prompt = list(range(100, 160))
    rows = [
        Row("gemma", "copy", "copy", len(prompt), "ngram-simple n4 m16", prompt_tokens=prompt,
            native_reply=prompt[:40], curve={1: (0.01,), 2: (0.012,), 64: (0.1,)}),
        Row("gemma", "short", "free", len(prompt), "ngram-simple n4 m16", prompt_tokens=prompt,
            native_reply=[7], curve={1: (0.02,)}),
        Row("smollm2", "copy", "copy", len(prompt), "ngram-simple n4 m16", prompt_tokens=prompt,
            native_reply=prompt[:40], curve={1: (0.01,)}),
    ]  # fmt: skip
    file = tmp_path / "bench.json"
    file.write_text(json.dumps([asdict(r) for r in rows]))
    data = bench_replies(json.loads(file.read_text()), "gemma")
    assert [r["id"] for r in data["replies"]] == ["copy", "short"]
    assert data["replies"][0]["reply"] == prompt[:40]
    assert data["replies"][0]["curve"] == {1: (0.01,), 2: (0.012,), 64: (0.1,)}  # JSON's string keys undone
    with pytest.raises(SystemExit):
        bench_replies(json.loads(file.read_text()), "llama")
    monkeypatch.setattr(sys, "argv", ["replay_controller.py", "--model", "gemma", "--load", str(file)])
    assert main() == 0
    out = capsys.readouterr().out
    assert "copy           curve t(n)/t(1): 2:1.20" in out  # each reply on its own row's curve
    assert "short          1 tokens: too short to price" in out
    assert "geometric mean" in out
