"""benchmarks/replay_controller.py's models of llama.cpp's n-gram drafters, on token lists with a flat cost
curve (every decode costs one unit, so the speedup is tokens per step)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from replay_controller import native_mod, native_simple  # noqa: E402


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
