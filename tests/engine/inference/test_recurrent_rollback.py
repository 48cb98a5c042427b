"""Every drafter on a recurrent/hybrid target (the tiny qwen35 with gated delta-net layers): the one
rollback rule gives the target state snapshots for its drafter, drafts are capped to them, and the output
with forced drafts (fixed k) is token-identical to plain decoding. Before, n-gram and draft-model drafting
failed mid-reply with "llama.cpp refused to remove KV positions" (issue 13)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.compat.rollback import RECURRENT_NGRAM_K_MAX, rollback_snapshots
from engine.config import ChatMessage, GenerationParams, LoadConfig, SpecParams
from engine.events import DoneEvent, TokenEvent
from engine.inference.session import ChatEngine
from tests import REPO_ROOT
from tests.conftest import cached_build
from tests.fixtures import tiny_nextn

# Repetitive text: over 160 tokens the random model's reply repeats pieces of it, n-gram lookup proposes
# them and the target rejects them (random weights never agree): rollbacks of up to k tokens.
PROMPT = "the model the model the model is fast"
TURNS = [ChatMessage("user", PROMPT)]
N_NEW = 160


@pytest.fixture(scope="session")
def other_qwen35_path() -> Path:
    """Another tiny qwen35 (same vocabulary, other weights): a draft model whose drafts are rejected."""

    def build(path: Path) -> None:
        code = (
            "import sys; from tests.fixtures.tiny_nextn import build_nextn_model as b; b(sys.argv[1], seed=1)"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO_ROOT, check=True, timeout=300)

    return cached_build("tiny-qwen35-seed1", tiny_nextn.__file__, build)


def run(
    engine: ChatEngine, spec: SpecParams, messages: list[ChatMessage] = TURNS
) -> tuple[list[int], DoneEvent]:
    tokens: list[int] = []
    done = None
    params = GenerationParams(max_tokens=N_NEW, spec=spec)
    for event in engine.chat(messages, params):
        if isinstance(event, TokenEvent):
            tokens.append(event.token)
        elif isinstance(event, DoneEvent):
            done = event
    assert done is not None
    return tokens, done


def load(path: Path, **kw: object) -> ChatEngine:
    return ChatEngine.load(LoadConfig(model_path=path, n_ctx=512, n_batch=64, n_threads=1, **kw))  # type: ignore[arg-type]


def plain(path: Path, messages: list[ChatMessage] = TURNS) -> list[int]:
    with load(path, drafter="none") as engine:
        return run(engine, SpecParams(enabled=False), messages)[0]


@pytest.mark.parametrize("k", [2, 8, 16])
def test_ngram_on_qwen35_with_forced_drafts_matches_plain_decoding(tiny_nextn_path: Path, k: int) -> None:
    reference = plain(tiny_nextn_path)
    with load(tiny_nextn_path, drafter="ngram") as engine:
        assert engine.ctx.rollback_limit == RECURRENT_NGRAM_K_MAX == rollback_snapshots("qwen35", "ngram")
        tokens, done = run(engine, SpecParams(k_max=k, adaptive=False))
        spec = done.stats.spec
        assert spec is not None and spec.drafted > 0 and spec.accepted < spec.drafted  # rollbacks happened
        assert max(spec.k_history) <= RECURRENT_NGRAM_K_MAX  # capped to the snapshots
        assert tokens == reference
        # A second turn on the same engine reuses the prompt cache through the recurrent checkpoint.
        follow = [
            *TURNS,
            ChatMessage("assistant", engine.model.detokenize(tokens)),
            ChatMessage("user", "more"),
        ]
        again, done2 = run(engine, SpecParams(k_max=k, adaptive=False), follow)
        assert done2.stats.n_prompt_cached > 0
    assert again == plain(tiny_nextn_path, follow)


def test_draft_model_on_qwen35_drafting_for_itself_matches_plain_decoding(tiny_nextn_path: Path) -> None:
    reference = plain(tiny_nextn_path)
    with load(tiny_nextn_path, drafter="draft", draft_model_path=tiny_nextn_path) as engine:
        assert engine.info.drafter is not None and engine.info.drafter.startswith("draft model")
        assert engine.ctx.rollback_limit == rollback_snapshots("qwen35", "draft")
        tokens, done = run(engine, SpecParams(k_max=3, adaptive=False))
        spec = done.stats.spec
        # Drafting for itself, greedy: every draft token is the target's own choice.
        assert spec is not None and spec.drafted > 0 and spec.accepted == spec.drafted
    assert tokens == reference


def test_a_rejected_draft_model_on_qwen35_matches_plain_decoding(
    tiny_nextn_path: Path, other_qwen35_path: Path
) -> None:
    """Another model drafts: its drafts are rejected, the target rolls back through its snapshots and the
    recurrent draft model goes back through its checkpoint every step."""
    reference = plain(tiny_nextn_path)
    with load(tiny_nextn_path, drafter="draft", draft_model_path=other_qwen35_path) as engine:
        tokens, done = run(engine, SpecParams(k_max=3, adaptive=False))
        spec = done.stats.spec
        assert spec is not None and spec.drafted > 30 and spec.accepted < spec.drafted
    assert tokens == reference


def test_requests_longer_than_the_snapshots_are_capped(tiny_nextn_path: Path) -> None:
    with load(tiny_nextn_path, drafter="ngram") as engine:
        _, done = run(engine, SpecParams(k_max=64, adaptive=False))
    assert done.stats.spec is not None and max(done.stats.spec.k_history) <= RECURRENT_NGRAM_K_MAX


@pytest.mark.subprocess
def test_the_issue_command_runs_to_the_end(tiny_nextn_path: Path, tmp_path: Path) -> None:
    """`tandem chat --model tiny-qwen35 --drafter ngram --fixed-k` on a repetitive prompt (issue 13)."""
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "chat", "--model", str(tiny_nextn_path), "--drafter", "ngram",
         "--fixed-k", "--ctx", "512", "--max-tokens", str(N_NEW), "--stats", PROMPT],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused" not in proc.stderr and "drafted" in proc.stderr
