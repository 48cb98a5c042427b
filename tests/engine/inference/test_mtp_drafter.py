"""The MTP drafter driven by the generation loop on the tiny Gemma 4 pair and the tiny qwen35+NextN model:
greedy output identical to plain decoding, accept / partial reject / rollback through the real MTP context
(with an oracle choosing the tokens), the confidence cutoff, prompt-cache reuse, and fallbacks with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.compat.mtp import MTPPlan, plan_mtp
from engine.config import GenerationParams, SpecParams
from engine.events import DoneEvent, TokenEvent
from engine.gguf.metadata import read_gguf
from engine.inference.drafters.base import Draft
from engine.inference.drafters.mtp import ROW_HISTORY, MTPDrafter, open_mtp_drafter
from engine.inference.generate import GenerationLoop
from engine.inference.llama import Context, KVSequence, Model
from tests.fixtures.oracle import OracleDrafter

PROMPT = (
    "<start_of_turn>user\nHello world, what is the name of the model?<end_of_turn>\n<start_of_turn>model\n"
)
N_NEW = 32


@dataclass
class Setup:
    model: Model
    plan: MTPPlan
    assistant_path: Path | None

    def context(self, n_rs_seq: int | None = None) -> Context:
        rs = self.plan.n_rs_seq if n_rs_seq is None else n_rs_seq
        return Context(self.model, n_ctx=512, n_batch=64, n_threads=1, n_rs_seq=rs)

    def drafter(self, ctx: Context, p_min: float = 0.0) -> MTPDrafter:
        drafter, why = open_mtp_drafter(
            self.plan, self.model, ctx, assistant_path=self.assistant_path, p_min=p_min
        )
        assert drafter is not None, why
        return drafter


@pytest.fixture(scope="module", params=["gemma4-assistant", "nextn"])
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    if request.param == "gemma4-assistant":
        target = request.getfixturevalue("tiny_gemma4_path")
        assistant: Path | None = request.getfixturevalue("tiny_gemma4_assistant_path")
    else:
        target, assistant = request.getfixturevalue("tiny_nextn_path"), None
    plan = plan_mtp(read_gguf(target), read_gguf(assistant) if assistant else None, k_max=3)
    assert plan.kind == request.param
    model = Model(target, load_mtp=plan.load_mtp)
    yield Setup(model, plan, assistant)
    model.close()


def generate(
    setup: Setup,
    ctx: Context,
    prompt: Sequence[int],
    drafter: Any = None,
    kv: KVSequence | None = None,
    k: int = 3,
) -> tuple[list[int], DoneEvent]:
    params = GenerationParams(
        max_tokens=N_NEW, spec=SpecParams(enabled=drafter is not None, k_max=k, adaptive=False)
    )
    # One KVSequence across turns, as the session keeps: it knows how far the cache can still go back.
    loop = GenerationLoop(
        setup.model, kv if kv is not None else KVSequence(ctx), params, seed=7, drafter=drafter
    )
    tokens: list[int] = []
    done: DoneEvent | None = None
    for event in loop.run(prompt):
        if isinstance(event, TokenEvent):
            tokens.append(event.token)
        elif isinstance(event, DoneEvent):
            done = event
    assert done is not None
    return tokens, done


def plain(setup: Setup, prompt: Sequence[int]) -> list[int]:
    with setup.context(n_rs_seq=0) as ctx:
        return generate(setup, ctx, prompt)[0]


def prompt_tokens(setup: Setup, text: str = PROMPT) -> list[int]:
    return setup.model.tokenize(text, add_special=True)


# --- exactness and the drafter's own stats ------------------------------------------------------------
def test_greedy_output_identical_to_plain(setup: Setup) -> None:
    prompt = prompt_tokens(setup)
    reference = plain(setup, prompt)
    with setup.context() as ctx:
        drafter = setup.drafter(ctx)
        try:
            tokens, done = generate(setup, ctx, prompt, drafter)
        finally:
            drafter.close()
    assert tokens == reference and len(set(reference)) > 5  # a varied continuation, not one repeated token
    spec = done.stats.spec
    assert spec is not None and spec.drafter == drafter.name and spec.steps > 0
    assert drafter.stats.draft_decodes == spec.drafted  # one MTP decode per proposed token (p_min = 0)
    if setup.plan.kind == "nextn":
        # every target token entered the NextN KV exactly once per time it was (re)decoded, or waits to
        assert drafter.stats.catchup_rows + drafter.backlog == len(prompt) + len(tokens) - 1
        assert drafter.stats.mtp_rollbacks >= spec.steps and drafter.stats.missing_rows == 0
    else:
        assert drafter.stats.catchup_rows == 0 and drafter.stats.mtp_rollbacks == 0  # shared KV


class OracleMTP(MTPDrafter):
    """The real MTP context runs every call; the oracle decides which tokens are proposed, so random
    weights still produce accepted drafts, partial rejects and full rejects."""

    oracle: OracleDrafter
    real: list[tuple[tuple[int, ...], tuple[int, ...]]]  # (context, what the MTP heads proposed)

    def begin(self, prompt: Sequence[int]) -> None:
        super().begin(prompt)
        self.oracle.begin(prompt)

    def draft(self, context: Sequence[int], k: int) -> Draft:
        real = super().draft(context, k)
        assert len(real.tokens) == k, real.reason
        self.real.append((tuple(context), real.tokens))
        return self.oracle.draft(context, k)


def oracle_mtp(setup: Setup, ctx: Context, expected: Sequence[int]) -> OracleMTP:
    assistant = Model(setup.assistant_path, load_mtp=True) if setup.assistant_path else None
    drafter = OracleMTP(setup.model, ctx, assistant=assistant)
    drafter.oracle = OracleDrafter(expected, setup.model.n_vocab, first_wrong=(None, 1, 0, 2))
    drafter.real = []
    return drafter


def test_accept_partial_reject_and_rollback_through_mtp(setup: Setup) -> None:
    prompt = prompt_tokens(setup)
    reference = plain(setup, prompt)
    with setup.context() as ctx:
        drafter = oracle_mtp(setup, ctx, [*prompt, *reference])
        try:
            tokens, done = generate(setup, ctx, prompt, drafter)
        finally:
            drafter.close()
    assert tokens == reference
    spec = done.stats.spec
    assert spec is not None
    hist = spec.accepted_length_hist
    assert hist[3] > 0 and hist[1] > 0 and hist[0] > 0  # full accept, partial reject, full reject
    assert spec.n_rollback > 0 and any(d > 0 for d in spec.provenance)
    if setup.plan.kind == "nextn":
        # accepted drafts reached the NextN KV through catch-up: one row per target token kept
        assert drafter.stats.catchup_rows + drafter.backlog == len(prompt) + len(tokens) - 1
        assert drafter._mtp_len + drafter.backlog == len(prompt) + len(tokens) - 1


def test_drafts_depend_only_on_the_context(setup: Setup) -> None:
    """What the MTP heads propose for a context must not depend on how the caches got there (accepted or
    rejected drafts, verify batches, catch-up): recompute sampled steps from a fresh context, where the
    context is one prompt batch, and compare. A misaligned hidden row or a stale NextN KV entry shows here
    although the verified output would still be right."""
    prompt = prompt_tokens(setup)
    reference = plain(setup, prompt)
    with setup.context() as ctx:
        drafter = oracle_mtp(setup, ctx, [*prompt, *reference])
        try:
            generate(setup, ctx, prompt, drafter)
        finally:
            drafter.close()
    steps = drafter.real[1::3]  # every third step after the first keeps the test short
    assert len(steps) >= 4
    for context, proposed in steps:
        with setup.context() as fresh:
            again = setup.drafter(fresh)
            try:
                for start in range(0, len(context) - 1, fresh.n_batch):  # as the loop feeds a prompt
                    chunk = context[start : min(start + fresh.n_batch, len(context) - 1)]
                    fresh.decode(chunk, start, "last")
                    again.observe(chunk, start, len(chunk))
                assert again.draft(context, len(proposed)).tokens == proposed, (
                    f"context length {len(context)}"
                )
            finally:
                again.close()


def test_p_min_cuts_every_draft(setup: Setup) -> None:
    prompt = prompt_tokens(setup)
    reference = plain(setup, prompt)
    with setup.context() as ctx:
        drafter = setup.drafter(ctx, p_min=1.0)  # no softmax over 355 tokens reaches 1.0
        try:
            tokens, done = generate(setup, ctx, prompt, drafter)
        finally:
            drafter.close()
    assert tokens == reference
    spec = done.stats.spec
    assert spec is not None and spec.drafted == 0 and drafter.stats.p_min_stops > 0
    assert spec.main_reason == "MTP confidence below p_min=1.0"


def test_second_turn_reuses_the_prompt_cache(setup: Setup) -> None:
    """A follow-up turn decodes only the new tokens; the drafter must stay in step with the reused KV,
    also when the cache is rewound (the same prompt again: its last token is decoded a second time)."""
    first = prompt_tokens(setup)
    with setup.context() as ctx:
        drafter = setup.drafter(ctx)
        try:
            kv = KVSequence(ctx)
            reply, _ = generate(setup, ctx, first, drafter, kv)
            follow_up = setup.model.tokenize("<end_of_turn>\n<start_of_turn>user\nHi<end_of_turn>\n")
            second = [*first, *reply, *follow_up]
            again, done = generate(setup, ctx, second, drafter, kv)
            third = list(kv.tokens)  # exactly the cached tokens: the loop re-decodes the last one
            repeat, repeat_done = generate(setup, ctx, third, drafter, kv)
        finally:
            drafter.close()
    assert done.stats.n_prompt_cached > len(first) and repeat_done.stats.n_prompt_cached == len(third) - 1
    assert again == plain(setup, second) and repeat == plain(setup, third)
    assert drafter.stats.decode_failures == 0 and drafter.stats.missing_rows == 0


def test_regenerate_rewinds_the_drafter(setup: Setup) -> None:
    first = prompt_tokens(setup)
    with setup.context() as ctx:
        drafter = setup.drafter(ctx)
        try:
            kv = KVSequence(ctx)
            reply, _ = generate(setup, ctx, first, drafter, kv)
            third = [*first, *reply[:5]]
            regen, done = generate(setup, ctx, third, drafter, kv)
        finally:
            drafter.close()
    # qwen35 keeps only n_rs_seq recurrent snapshots, too few to cut back this far: the sequence goes back
    # to its checkpoint after the first prompt and decodes the kept reply tokens again.
    assert done.stats.n_prompt_cached == len(third) - 1
    assert regen == plain(setup, third)


# --- fallbacks ------------------------------------------------------------------------------------------
def test_plain_model_falls_back_with_reason(tiny_llama_path: Path) -> None:
    plan = plan_mtp(read_gguf(tiny_llama_path), None, k_max=3)
    with Model(tiny_llama_path) as model, Context(model, n_ctx=128, n_batch=32, n_threads=1) as ctx:
        drafter, why = open_mtp_drafter(plan, model, ctx)
    assert drafter is None and why == "the model has no MTP layers"


def test_nextn_without_mtp_layers_loaded_falls_back(tiny_nextn_path: Path) -> None:
    plan = plan_mtp(read_gguf(tiny_nextn_path), None, k_max=3)
    # loaded without load_mtp: llama.cpp would abort on an MTP context, the drafter refuses first
    with (
        Model(tiny_nextn_path, load_mtp=False) as model,
        Context(model, n_ctx=128, n_batch=32, n_rs_seq=3) as ctx,
    ):
        drafter, why = open_mtp_drafter(plan, model, ctx)
    assert drafter is None and "MTP layers" in (why or "")


def test_hybrid_target_without_rollback_snapshots_falls_back(tiny_nextn_path: Path) -> None:
    plan = plan_mtp(read_gguf(tiny_nextn_path), None, k_max=3)
    with (
        Model(tiny_nextn_path, load_mtp=True) as model,
        Context(model, n_ctx=128, n_batch=32, n_rs_seq=0) as ctx,
    ):
        drafter, why = open_mtp_drafter(plan, model, ctx)
    assert drafter is None and "unsupported memory layout" in (why or "")


def test_hybrid_target_drafts_no_more_than_its_snapshots(setup: Setup) -> None:
    if setup.plan.kind != "nextn":
        pytest.skip("only recurrent/hybrid targets limit the draft length")
    prompt = prompt_tokens(setup)
    with setup.context(n_rs_seq=2) as ctx:
        drafter = setup.drafter(ctx)
        try:
            tokens, done = generate(setup, ctx, prompt, drafter, k=3)
        finally:
            drafter.close()
    spec = done.stats.spec
    assert spec is not None and max(spec.k_history) == 2 and tokens == plain(setup, prompt)


def test_weight_bytes_reports_the_assistant(setup: Setup) -> None:
    with setup.context() as ctx:
        drafter = setup.drafter(ctx)
        try:
            if setup.plan.kind == "gemma4-assistant":
                assert drafter.weight_bytes > 0 and drafter.weight_bytes == drafter.assistant.size_bytes  # type: ignore[union-attr]
            else:
                assert drafter.weight_bytes == 0  # the NextN layers are part of the target model
        finally:
            drafter.close()


def test_tokens_written_while_no_draft_is_asked_for_enter_the_nextn_kv_in_one_batch(setup: Setup) -> None:
    """While speculation is off, NextN drafting holds the target's tokens back instead of decoding its MTP
    layer once per token; the next draft feeds them as one batch (its time not counted as drafting), and
    proposes what a fresh context given the same tokens proposes. The stretch is longer than the rows
    kept by position, so the row before it must have been kept with it."""
    if setup.plan.kind != "nextn":
        pytest.skip("the shared-KV assistant reads the target's KV: nothing to catch up")
    prompt = prompt_tokens(setup)
    stretch = [*plain(setup, prompt), *prompt][:80]
    assert len(stretch) > ROW_HISTORY
    context = [*prompt, *stretch]
    with setup.context() as ctx:
        drafter = setup.drafter(ctx)
        try:
            ctx.decode(prompt, 0, "last")
            drafter.observe(prompt, 0, len(prompt))
            drafter.catch_up()
            rows_before = drafter.stats.catchup_rows
            for i, token in enumerate(stretch[:-1]):  # plain steps: one token each, no draft asked for
                ctx.decode([token], len(prompt) + i, "last")
                drafter.observe([token], len(prompt) + i, 1)
            assert drafter.stats.catchup_rows == rows_before and drafter.backlog == len(stretch) - 1
            proposal = drafter.draft(context, 3)
            assert drafter.backlog == 0 and drafter.stats.catchup_rows == len(context) - 1
            assert proposal.catch_up_s > 0.0 and len(proposal.tokens) == 3
        finally:
            drafter.close()
    assert drafter.stats.missing_rows == 0
    with setup.context() as fresh:
        again = setup.drafter(fresh)
        try:
            for start in range(0, len(context) - 1, fresh.n_batch):
                chunk = context[start : min(start + fresh.n_batch, len(context) - 1)]
                fresh.decode(chunk, start, "last")
                again.observe(chunk, start, len(chunk))
            assert again.draft(context, 3).tokens == proposal.tokens
        finally:
            again.close()
