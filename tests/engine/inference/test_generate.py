"""GenerationLoop on the tiny llama: speculative output is token-identical to plain decoding, every emitted
token is the target's own pick for its position, and the KV cache stays true after rollbacks and stops.

A random-weight model never agrees with a real drafter, so the OracleDrafter proposes the known plain
continuation with planted mistakes to drive every verify path (accept, partial reject, full reject, bonus).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import llama_cpp as L
import pytest

from engine.config import CancelToken, GenerationParams, SamplingParams, SpecParams
from engine.events import DoneEvent, Event, StopReason, TokenEvent
from engine.inference.controller import MEASURING, OFF_DETAIL, PRIOR_ACCEPT, SHADOW_K
from engine.inference.drafters.base import Drafter
from engine.inference.drafters.ngram import NGramDrafter
from engine.inference.generate import GenerationLoop
from engine.inference.llama import Context, KVSequence, Model
from tests.fixtures.oracle import OracleDrafter

SEED = 7
K = 3
PROMPTS = {
    "repetitive": "Hello world, hello world. The quick brown fox",
    "chat": "<|im_start|>user\nWhat is the answer?<|im_end|>\n<|im_start|>assistant\n",
}
# Oracle mistake schedule, cycled per draft: all right (full accept + bonus), wrong at 0 (full reject),
# wrong at 1 and 2 (partial rejects).
MISTAKES: tuple[int | None, ...] = (None, 0, 1, 2, None)


@pytest.fixture(scope="module")
def model(tiny_llama_path: Any) -> Iterator[Model]:
    with Model(tiny_llama_path) as m:
        yield m


@pytest.fixture(scope="module")
def ctx(model: Model) -> Iterator[Context]:
    with Context(model, n_ctx=512, n_batch=64, n_threads=1) as c:
        yield c


def make_params(
    temperature: float = 0.0, max_tokens: int = 48, spec: bool = True, adaptive: bool = False, **kw: Any
) -> GenerationParams:
    return GenerationParams(
        sampling=SamplingParams(temperature=temperature, seed=SEED),
        max_tokens=max_tokens,
        spec=SpecParams(enabled=spec, k_max=K, adaptive=adaptive),
        **kw,
    )


class Run:
    def __init__(self, loop: GenerationLoop, events: list[Event]) -> None:
        self.loop = loop
        self.events = events
        done = events[-1]
        assert isinstance(done, DoneEvent)
        self.done = done
        self.tokens = [e for e in events if isinstance(e, TokenEvent)]

    @property
    def generated(self) -> list[int]:
        return self.loop.generated


def run(
    model: Model,
    ctx: Context,
    prompt: Sequence[int],
    params: GenerationParams,
    drafter: Drafter | None = None,
    *,
    kv: list[int] | None = None,
    loop_cls: type[GenerationLoop] = GenerationLoop,
    cancel: CancelToken | None = None,
) -> Run:
    """A generation; with kv=None the cache is cleared first (a fresh run)."""
    if kv is None:
        ctx.clear()
        kv = []
    loop = loop_cls(model, KVSequence(ctx, kv), params, seed=SEED, drafter=drafter, cancel=cancel)
    return Run(loop, list(loop.run(prompt)))


def prompt_tokens(model: Model, name: str) -> list[int]:
    return model.tokenize(PROMPTS[name], add_special=True)


def plain(model: Model, ctx: Context, prompt: Sequence[int], **kw: Any) -> Run:
    return run(model, ctx, prompt, make_params(spec=False, **kw))


def oracle_for(
    model: Model, prompt: Sequence[int], reference: Run, mistakes: Sequence[int | None] = MISTAKES
) -> OracleDrafter:
    return OracleDrafter([*prompt, *reference.generated], model.n_vocab, first_wrong=mistakes)


def kv_pos_max(ctx: Context) -> int:
    return int(L.llama_memory_seq_pos_max(ctx.memory, 0))


def assert_kv_is_true(model: Model, ctx: Context, kv: list[int], history: Sequence[int]) -> None:
    """`kv` must describe the cache exactly: its length matches llama.cpp's, its tokens are the sequence
    so far, and a continuation that reuses all of it equals one computed from scratch."""
    assert kv_pos_max(ctx) == len(kv) - 1
    assert kv == list(history[: len(kv)])
    extension = [*kv, *model.tokenize(" and the model", add_special=False)]
    reused = run(model, ctx, extension, make_params(spec=False, max_tokens=12), kv=kv)
    assert reused.done.stats.n_prompt_cached == len(extension) - 4  # everything but the new tokens
    fresh = run(model, ctx, extension, make_params(spec=False, max_tokens=12))
    assert reused.generated == fresh.generated


# --- identical output ---------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.5])
@pytest.mark.parametrize("prompt_name", list(PROMPTS))
def test_oracle_with_mistakes_is_token_identical_to_plain(
    model: Model, ctx: Context, temperature: float, prompt_name: str
) -> None:
    prompt = prompt_tokens(model, prompt_name)
    ref = plain(model, ctx, prompt, temperature=temperature, max_tokens=60)
    assert len(ref.generated) > 10, "the fixture should not stop at once"
    oracle = oracle_for(model, prompt, ref)
    spec = run(model, ctx, prompt, make_params(temperature, max_tokens=60), oracle)
    assert spec.generated == ref.generated
    assert spec.done.text == ref.done.text
    assert spec.done.stop_reason == ref.done.stop_reason
    if ref.done.stop_reason == StopReason.MAX_TOKENS:
        # Every verify path ran: full reject (0), partial rejects (1, 2), full accept with bonus (K).
        assert {0, 1, 2, K} <= set(oracle.accepted)
        assert spec.done.stats.spec is not None and spec.done.stats.spec.n_rollback > 0


@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.5])
@pytest.mark.parametrize("adaptive", [False, True])
def test_ngram_is_token_identical_to_plain(
    model: Model, ctx: Context, temperature: float, adaptive: bool
) -> None:
    prompt = prompt_tokens(model, "repetitive")
    ref = plain(model, ctx, prompt, temperature=temperature, max_tokens=80)
    spec = run(model, ctx, prompt, make_params(temperature, max_tokens=80, adaptive=adaptive), NGramDrafter())
    assert spec.generated == ref.generated
    assert spec.done.text == ref.done.text
    stats = spec.done.stats.spec
    assert stats is not None and stats.drafter == "n-gram"
    if temperature == 0.0:
        assert stats.drafted > 0  # the greedy continuation of this prompt repeats itself


def test_same_seed_same_tokens_different_seed_different_tokens(model: Model, ctx: Context) -> None:
    prompt = prompt_tokens(model, "chat")
    a = plain(model, ctx, prompt, temperature=1.0)
    b = plain(model, ctx, prompt, temperature=1.0)
    assert a.generated == b.generated
    ctx.clear()
    loop = GenerationLoop(model, KVSequence(ctx), make_params(1.0, spec=False), seed=SEED + 1)
    list(loop.run(prompt))
    assert loop.generated != a.generated


# --- the internal invariant ---------------------------------------------------------------------------


class RecordingLoop(GenerationLoop):
    """Records the target's pick for every absolute position, from the logits the loop really used."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.picks: dict[int, list[int]] = defaultdict(list)

    def _pick(self, row: int, position: int, draft: Sequence[int]) -> int:
        token = super()._pick(row, position, draft)
        self.picks[position].append(token)
        return token


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("drafter_kind", ["oracle", "ngram", "none"])
def test_every_generated_token_is_the_targets_pick_for_its_position(
    model: Model, ctx: Context, temperature: float, drafter_kind: str
) -> None:
    prompt = prompt_tokens(model, "repetitive")
    ref = plain(model, ctx, prompt, temperature=temperature, max_tokens=50)
    drafter: Drafter | None = {
        "oracle": oracle_for(model, prompt, ref),
        "ngram": NGramDrafter(),
        "none": None,
    }[drafter_kind]
    spec = run(model, ctx, prompt, make_params(temperature, max_tokens=50), drafter, loop_cls=RecordingLoop)
    loop = spec.loop
    assert isinstance(loop, RecordingLoop)
    for i, token in enumerate(spec.generated):
        picks = loop.picks[len(prompt) + i]
        assert picks and picks[-1] == token, f"generated[{i}] is not the target's pick"
        assert len(picks) == 1, f"position {len(prompt) + i} sampled {len(picks)} times (lazy verify)"
    # No position past the last emitted one was sampled except the one that ended the run.
    assert max(loop.picks) <= len(prompt) + len(spec.generated)
    # One TokenEvent per generated token (a final flush may add one more), with consecutive positions and
    # the provenance the stats report.
    emitted = spec.tokens[: len(spec.generated)]
    assert [e.position for e in emitted] == list(range(len(prompt), len(prompt) + len(spec.generated)))
    assert [e.token for e in emitted] == spec.generated
    if spec.done.stats.spec is not None:
        prov = spec.done.stats.spec.provenance
        assert [e.draft_depth for e in spec.tokens[: len(spec.generated)]] == list(prov)


def test_margins_are_recorded_for_every_pick(model: Model, ctx: Context) -> None:
    prompt = prompt_tokens(model, "repetitive")
    ref = plain(model, ctx, prompt, max_tokens=30)
    ctx.clear()
    loop = RecordingLoop(
        model,
        KVSequence(ctx),
        make_params(max_tokens=30),
        seed=SEED,
        drafter=oracle_for(model, prompt, ref),
        record_margins=True,
    )
    list(loop.run(prompt))
    assert len(loop.margins) == sum(len(v) for v in loop.picks.values())
    assert all(m >= 0.0 for m in loop.margins)


# --- stops inside a draft -----------------------------------------------------------------------------


def _mid_draft_index(generated: Sequence[int], ok: Any) -> int:
    """An index j whose token, with a fixed-K all-correct oracle, sits strictly inside a draft (the first
    token comes from the prompt's logits, then each step drafts generated[4s+1 .. 4s+3]), is the first
    occurrence of that token, and satisfies ok(j)."""
    for j in range(2, len(generated)):
        if j % (K + 1) == 2 and generated[j] not in generated[:j] and ok(j):
            return j
    raise AssertionError("no suitable mid-draft token in the reference continuation")


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_end_of_generation_inside_a_draft(
    model: Model, ctx: Context, monkeypatch: pytest.MonkeyPatch, temperature: float
) -> None:
    prompt = prompt_tokens(model, "repetitive")
    ref = plain(model, ctx, prompt, temperature=temperature, max_tokens=60)
    j = _mid_draft_index(ref.generated, lambda j: True)
    eog = ref.generated[j]
    real_is_eog = model.is_eog
    monkeypatch.setattr(model, "is_eog", lambda t: t == eog or real_is_eog(t))

    stopped_plain = plain(model, ctx, prompt, temperature=temperature, max_tokens=60)
    assert stopped_plain.generated == ref.generated[:j]
    assert stopped_plain.done.stop_reason == StopReason.EOG

    oracle = oracle_for(model, prompt, ref, mistakes=(None,))
    kv: list[int] = []
    ctx.clear()
    spec = run(model, ctx, prompt, make_params(temperature, max_tokens=60), oracle, kv=kv)
    assert spec.generated == ref.generated[:j]
    assert spec.done.stop_reason == StopReason.EOG
    assert spec.done.text == stopped_plain.done.text
    assert any(eog in d[:-1] for d in oracle.drafts), "the end-of-generation token was not mid-draft"
    monkeypatch.undo()
    # The cache holds what was accepted, including the end token and any draft token accepted after it.
    assert_kv_is_true(model, ctx, kv, [*prompt, *ref.generated])


@pytest.mark.parametrize("max_tokens", range(1, 11))
def test_max_tokens_inside_a_draft(model: Model, ctx: Context, max_tokens: int) -> None:
    prompt = prompt_tokens(model, "repetitive")
    ref = plain(model, ctx, prompt, max_tokens=20)
    kv: list[int] = []
    ctx.clear()
    oracle = oracle_for(model, prompt, ref, mistakes=(None,))
    spec = run(model, ctx, prompt, make_params(max_tokens=max_tokens), oracle, kv=kv)
    assert spec.generated == ref.generated[:max_tokens]
    assert spec.done.stop_reason == StopReason.MAX_TOKENS
    assert spec.done.stats.n_generated == max_tokens
    assert spec.done.stats.spec is not None
    assert all(t in ref.generated for d in oracle.drafts for t in d)  # drafts were clamped to the budget
    assert len(spec.done.stats.spec.provenance) == max_tokens
    assert_kv_is_true(model, ctx, kv, [*prompt, *ref.generated])


def test_stop_string_inside_a_draft(model: Model, ctx: Context) -> None:
    prompt = prompt_tokens(model, "repetitive")
    ref = plain(model, ctx, prompt, max_tokens=60)

    def first_occurrence(j: int) -> bool:
        piece = model.piece(ref.generated[j]).decode("utf-8", errors="ignore")
        before = model.detokenize(ref.generated[:j])
        return len(piece.strip()) >= 2 and piece not in before + piece[:-1]

    j = _mid_draft_index(ref.generated, first_occurrence)
    stop = model.piece(ref.generated[j]).decode()
    stopped_plain = plain(model, ctx, prompt, max_tokens=60, stop=(stop,))
    kv: list[int] = []
    ctx.clear()
    oracle = oracle_for(model, prompt, ref, mistakes=(None,))
    spec = run(model, ctx, prompt, make_params(max_tokens=60, stop=(stop,)), oracle, kv=kv)
    for r in (stopped_plain, spec):
        assert r.done.stop_reason == StopReason.STOP_STRING
        assert r.generated == ref.generated[: j + 1]
        assert r.done.text == model.detokenize(ref.generated[:j])
        assert "".join(e.text for e in r.tokens) == r.done.text
    assert any(ref.generated[j] in d[:-1] for d in oracle.drafts)
    assert_kv_is_true(model, ctx, kv, [*prompt, *ref.generated])


def test_context_full_stops_plain_and_speculative_at_the_same_token(model: Model) -> None:
    with Context(model, n_ctx=256, n_batch=64, n_threads=1) as small:
        words = " the model is fast and the answer is" * 40
        prompt = model.tokenize(words, add_special=True)[: small.n_ctx - 30]
        ref = run(model, small, prompt, make_params(spec=False, max_tokens=500))
        assert ref.done.stop_reason == StopReason.CONTEXT_FULL
        kv: list[int] = []
        small.clear()
        spec = run(model, small, prompt, make_params(max_tokens=500), oracle_for(model, prompt, ref), kv=kv)
        assert spec.done.stop_reason == StopReason.CONTEXT_FULL
        assert spec.generated == ref.generated
        assert len(kv) < small.n_ctx
        assert kv_pos_max(small) == len(kv) - 1


def test_prompt_that_fills_the_context_is_refused(model: Model, ctx: Context) -> None:
    prompt = model.tokenize(" the" * ctx.n_ctx, add_special=True)[: ctx.n_ctx]
    loop = GenerationLoop(model, KVSequence(ctx), make_params(), seed=SEED)
    with pytest.raises(ValueError, match="context"):
        list(loop.run(prompt))


def test_empty_prompt_is_refused_with_a_clear_error(model: Model, ctx: Context) -> None:
    ctx.clear()
    loop = GenerationLoop(model, KVSequence(ctx), make_params(), seed=SEED)
    with pytest.raises(ValueError, match="empty"):
        list(loop.run([]))


# --- KV cache -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 1.2])
def test_kv_is_consistent_after_rollbacks(model: Model, ctx: Context, temperature: float) -> None:
    prompt = prompt_tokens(model, "repetitive")
    ref = plain(model, ctx, prompt, temperature=temperature, max_tokens=40)
    kv: list[int] = []
    ctx.clear()
    oracle = oracle_for(model, prompt, ref)
    spec = run(model, ctx, prompt, make_params(temperature, max_tokens=40), oracle, kv=kv)
    assert spec.done.stats.spec is not None and spec.done.stats.spec.n_rollback > 0
    assert_kv_is_true(model, ctx, kv, [*prompt, *ref.generated])


def test_prompt_cache_reuses_the_common_prefix_and_trims_the_rest(model: Model, ctx: Context) -> None:
    prompt = prompt_tokens(model, "repetitive")
    kv: list[int] = []
    ctx.clear()
    first = run(model, ctx, prompt, make_params(max_tokens=20), NGramDrafter(), kv=kv)
    assert first.done.stats.n_prompt_cached == 0
    # A new prompt that shares only part of the old one: reuse stops at the divergence.
    diverging = [*prompt[:5], *model.tokenize(" with other words", add_special=False)]
    second = run(model, ctx, diverging, make_params(spec=False, max_tokens=20), kv=kv)
    assert second.done.stats.n_prompt_cached == 5
    assert second.done.stats.n_prompt_evaluated == len(diverging) - 5
    assert second.generated == plain(model, ctx, diverging, max_tokens=20).generated
    # The same prompt again: everything but the last token is reused (its logits are needed).
    kv2: list[int] = []
    ctx.clear()
    run(model, ctx, prompt, make_params(spec=False, max_tokens=1), kv=kv2)
    again = run(model, ctx, prompt, make_params(spec=False, max_tokens=20), kv=kv2)
    assert again.done.stats.n_prompt_cached == len(prompt) - 1
    assert again.generated == plain(model, ctx, prompt, max_tokens=20).generated


def test_cancel_before_the_first_token(model: Model, ctx: Context) -> None:
    cancel = CancelToken()
    cancel.cancel()
    kv: list[int] = []
    ctx.clear()
    r = run(model, ctx, prompt_tokens(model, "chat"), make_params(), NGramDrafter(), kv=kv, cancel=cancel)
    assert r.done.stop_reason == StopReason.CANCELLED
    assert r.generated == [] and r.done.text == ""
    assert kv_pos_max(ctx) == len(kv) - 1


# --- statistics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("drafter_kind", ["oracle", "ngram"])
def test_spec_stats_are_consistent(model: Model, ctx: Context, drafter_kind: str) -> None:
    prompt = prompt_tokens(model, "repetitive")
    ref = plain(model, ctx, prompt, max_tokens=60)
    drafter = oracle_for(model, prompt, ref) if drafter_kind == "oracle" else NGramDrafter()
    r = run(model, ctx, prompt, make_params(max_tokens=60), drafter)
    assert r.done.stop_reason == StopReason.MAX_TOKENS
    s = r.done.stats.spec
    assert s is not None
    assert r.done.stats.n_generated == len(r.generated) == len(s.provenance)
    assert s.steps > 0
    assert s.drafted == sum(s.k_history) == sum(s.drafted_by_position)
    assert s.accepted == sum(s.accepted_by_position)
    assert s.accepted == sum(n * c for n, c in enumerate(s.accepted_length_hist))
    assert s.steps == sum(s.accepted_length_hist) == sum(1 for k in s.k_history if k)
    assert list(s.drafted_by_position) == sorted(s.drafted_by_position, reverse=True)
    assert list(s.accepted_by_position) == sorted(s.accepted_by_position, reverse=True)
    assert all(a <= d for a, d in zip(s.accepted_by_position, s.drafted_by_position, strict=True))
    assert s.mean_accepted_length == pytest.approx(1 + s.accepted / s.steps)
    assert s.acceptance_rate == pytest.approx(s.accepted / s.drafted)
    assert all(0 <= k <= K for k in s.k_history)
    assert s.current_k == s.k_history[-1]
    # Provenance: accepted drafts were all emitted (MAX_TOKENS never cuts a draft), at depths 1, 2, ...
    assert sum(1 for d in s.provenance if d) == s.accepted
    for i, d in enumerate(s.provenance):
        if d > 1:
            assert s.provenance[i - 1] == d - 1
    assert s.n_rollback <= s.steps
    if drafter_kind == "oracle":
        assert s.n_rollback > 0
    # One k per step; the first token comes from the prompt's logits.
    assert len(s.k_history) + 1 <= len(r.generated) <= len(s.k_history) + 1 + s.accepted
    if drafter_kind == "ngram":
        assert 0 in s.k_history
        # Every k = 0 step has a reason, except a last step left with no token budget to draft.
        unexplained = s.k_history.count(0) - dict(s.reasons).get("drafter has no match", 0)
        assert unexplained in (0, 1) and (unexplained == 0 or s.k_history[-1] == 0)
        assert s.main_reason == "drafter has no match"
    else:
        assert s.reasons == () and s.main_reason is None


def test_plain_run_has_no_spec_stats(model: Model, ctx: Context) -> None:
    r = plain(model, ctx, prompt_tokens(model, "chat"), max_tokens=10)
    assert r.done.stats.spec is None
    assert r.done.stats.n_generated == len(r.generated) == 10
    assert all(e.draft_depth == 0 for e in r.tokens)
    assert "".join(e.text for e in r.tokens) == r.done.text == model.detokenize(r.generated)


def test_speculation_disabled_in_params_ignores_the_drafter(model: Model, ctx: Context) -> None:
    prompt = prompt_tokens(model, "repetitive")
    drafter = NGramDrafter()
    r = run(model, ctx, prompt, make_params(spec=False, max_tokens=20), drafter)
    assert r.done.stats.spec is None
    assert r.generated == plain(model, ctx, prompt, max_tokens=20).generated


def test_draft_length_is_clamped_to_the_decode_batch(model: Model) -> None:
    # k_max larger than n_batch - 1: the verify batch would not fit one decode with logits for every row.
    with Context(model, n_ctx=512, n_batch=16, n_threads=1) as small:
        prompt = prompt_tokens(model, "repetitive")
        ref = run(model, small, prompt, make_params(spec=False, max_tokens=60))
        params = GenerationParams(
            sampling=SamplingParams(seed=SEED), max_tokens=60, spec=SpecParams(k_max=40, adaptive=False)
        )
        spec = run(model, small, prompt, params, oracle_for(model, prompt, ref, mistakes=(None,)))
        assert spec.generated == ref.generated
        assert spec.done.stats.spec is not None
        assert max(spec.done.stats.spec.k_history) == small.n_batch - 1


def test_adaptive_loop_measures_then_learns_a_free_drafter_in_the_shadow(model: Model, ctx: Context) -> None:
    """Without a calibrated curve the controller measures plain speed first; a short-match proposal that
    the prior does not think pays is checked against the target's own tokens instead: evidence arrives
    without drafting, and the output is still the plain one."""
    prompt = prompt_tokens(model, "chat")
    reference = plain(model, ctx, prompt, max_tokens=40)
    drafter = oracle_for(model, prompt, reference, mistakes=(None,))
    r = run(model, ctx, prompt, make_params(max_tokens=40, adaptive=True), drafter)
    assert r.generated == reference.generated
    spec = r.done.stats.spec
    assert spec is not None
    reasons = dict(spec.reasons)
    # The measuring step already watches a proposal; it settles after min(K, SHADOW_K) plain tokens.
    declined = sum(n for reason, n in reasons.items() if reason.startswith(OFF_DETAIL))
    assert reasons[MEASURING] >= 1 and reasons[MEASURING] + declined >= min(K, SHADOW_K), reasons
    assert spec.k_history[0] == 0 and spec.k_history[1] == 0  # nothing verified before evidence
    assert r.loop.controller.accept_prob(1) > PRIOR_ACCEPT  # the shadow's perfect proposals were counted
