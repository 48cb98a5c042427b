"""ChatEngine on the tiny llama: streaming, the prompt cache across turns, cancellation from another thread,
context overflow, hostile templates, draft models (self-drafting, incompatible pairs) and bad files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp as L
import pytest

from engine.config import CancelToken, ChatMessage, GenerationParams, LoadConfig, SamplingParams, SpecParams
from engine.errors import ContextOverflowError, ModelFileError
from engine.events import DoneEvent, Event, NoticeEvent, StopReason, TokenEvent
from engine.inference.llama import common_prefix
from engine.inference.session import ChatEngine
from tests.fixtures import tiny_llama

K = 3
HELLO = [ChatMessage("user", "Hello")]


def params(
    temperature: float = 0.0, max_tokens: int = 40, seed: int = 5, spec: bool = True, adaptive: bool = False
) -> GenerationParams:
    return GenerationParams(
        sampling=SamplingParams(temperature=temperature, seed=seed),
        max_tokens=max_tokens,
        spec=SpecParams(enabled=spec, k_max=K, adaptive=adaptive),
    )


def load(path: Path, **kw: Any) -> ChatEngine:
    kw.setdefault("n_ctx", 512)
    return ChatEngine.load(LoadConfig(model_path=path, n_threads=1, n_batch=64, **kw))


@pytest.fixture()
def engine(tiny_llama_path: Path) -> Iterator[ChatEngine]:
    with load(tiny_llama_path) as e:
        yield e


def done_of(events: list[Event]) -> DoneEvent:
    assert isinstance(events[-1], DoneEvent)
    assert sum(isinstance(e, DoneEvent) for e in events) == 1
    return events[-1]


def notices(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, NoticeEvent)]


def assert_kv_matches_cache(engine: ChatEngine) -> None:
    assert int(L.llama_memory_seq_pos_max(engine.ctx.memory, 0)) == len(engine.seq.tokens) - 1


# --- streaming ----------------------------------------------------------------------------------------


def test_chat_streams_tokens_then_done(engine: ChatEngine) -> None:
    events = list(engine.chat(HELLO, params()))
    done = done_of(events)
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) >= done.stats.n_generated > 0
    assert "".join(e.text for e in tokens) == done.text
    assert all(not isinstance(e, DoneEvent) for e in events[:-1])
    assert done.stats.spec is not None and done.stats.spec.drafter == "n-gram"
    assert_kv_matches_cache(engine)


def test_same_seed_same_text_at_temperature(engine: ChatEngine, tiny_llama_path: Path) -> None:
    a = done_of(list(engine.chat(HELLO, params(temperature=1.0, seed=11))))
    b = done_of(list(engine.chat(HELLO, params(temperature=1.0, seed=11))))  # now with a warm prompt cache
    assert b.stats.n_prompt_cached > 0
    with load(tiny_llama_path) as other:
        c = done_of(list(other.chat(HELLO, params(temperature=1.0, seed=11, spec=False))))
    assert a.text == b.text == c.text
    d = done_of(list(engine.chat(HELLO, params(temperature=1.0, seed=12))))
    assert d.text != a.text


# --- prompt cache -------------------------------------------------------------------------------------


def test_second_turn_reuses_the_first_turns_tokens(engine: ChatEngine, tiny_llama_path: Path) -> None:
    first = done_of(list(engine.chat(HELLO, params())))
    assert first.stats.n_prompt_cached == 0
    prompt1, _ = engine.render(HELLO)
    kv_before = list(engine.seq.tokens)
    turn2 = [*HELLO, ChatMessage("assistant", first.text), ChatMessage("user", "Tell me more")]
    prompt2, _ = engine.render(turn2)
    second = done_of(list(engine.chat(turn2, params())))
    s = second.stats
    assert s.n_prompt == len(prompt2)
    assert s.n_prompt_cached == common_prefix(kv_before, prompt2)
    assert s.n_prompt_cached >= len(prompt1)  # at least the whole first prompt came from the cache
    assert s.n_prompt_evaluated == len(prompt2) - s.n_prompt_cached
    assert_kv_matches_cache(engine)
    with load(tiny_llama_path) as fresh:
        assert done_of(list(fresh.chat(turn2, params()))).text == second.text


def test_reset_forgets_the_cache(engine: ChatEngine) -> None:
    list(engine.chat(HELLO, params()))
    engine.reset()
    assert engine.seq.tokens == []
    again = done_of(list(engine.chat(HELLO, params())))
    assert again.stats.n_prompt_cached == 0


# --- cancellation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("drafter", ["ngram", "self"])
def test_cancel_from_another_thread_stops_within_one_step(tiny_llama_path: Path, drafter: str) -> None:
    # With the model drafting for itself every step emits K + 1 tokens: the cancel lands mid-step.
    kw: dict[str, Any] = (
        {"drafter": "draft", "draft_model_path": tiny_llama_path} if drafter == "self" else {}
    )
    with load(tiny_llama_path, **kw) as engine:
        _cancel_and_continue(engine, tiny_llama_path)


def _cancel_and_continue(engine: ChatEngine, tiny_llama_path: Path) -> None:
    cancel = CancelToken()
    reached, cancelled = threading.Event(), threading.Event()

    def canceller() -> None:
        if reached.wait(timeout=60):
            cancel.cancel()
        cancelled.set()

    thread = threading.Thread(target=canceller)
    thread.start()
    events: list[Event] = []
    n_tokens_at_cancel = None
    try:
        for ev in engine.chat(HELLO, params(max_tokens=300), cancel):
            events.append(ev)
            if isinstance(ev, TokenEvent) and n_tokens_at_cancel is None:
                n = sum(isinstance(e, TokenEvent) for e in events)
                if n == 6:
                    reached.set()
                    assert cancelled.wait(timeout=60)
                    n_tokens_at_cancel = n
    finally:
        reached.set()
        thread.join()
    done = done_of(events)
    assert done.stop_reason == StopReason.CANCELLED
    assert n_tokens_at_cancel is not None
    after = sum(isinstance(e, TokenEvent) for e in events) - n_tokens_at_cancel
    assert after <= K  # only the rest of the step that was already verified (at most K + 1 tokens)
    assert done.stats.n_generated < 300
    assert_kv_matches_cache(engine)

    # The engine stays usable and its prompt cache true: the next request equals a fresh engine's.
    nxt = done_of(list(engine.chat(HELLO, params(max_tokens=30))))
    assert nxt.stop_reason == StopReason.MAX_TOKENS
    assert nxt.stats.n_prompt_cached > 0
    with load(tiny_llama_path) as fresh:
        assert done_of(list(fresh.chat(HELLO, params(max_tokens=30)))).text == nxt.text


# --- context overflow ---------------------------------------------------------------------------------


def long_history(n_pairs: int) -> list[ChatMessage]:
    msgs = [ChatMessage("system", "You are the system prompt.")]
    for i in range(n_pairs):
        msgs.append(ChatMessage("user", f"question {i}: " + "what is the word for this " * 3))
        msgs.append(ChatMessage("assistant", f"answer {i}: " + "the word is one of them " * 3))
    msgs.append(ChatMessage("user", "final question"))
    return msgs


def test_oldest_turns_are_dropped_and_the_system_prompt_is_kept(tiny_llama_path: Path) -> None:
    with load(tiny_llama_path, n_ctx=256) as engine:
        events = list(engine.chat(long_history(12), params(max_tokens=16)))
        done = done_of(events)
        assert any("dropped" in n and "oldest" in n for n in notices(events))
        prompt_text = engine.model.detokenize(engine.seq.tokens[: done.stats.n_prompt])
        assert "You are the system prompt." in prompt_text
        assert "final question" in prompt_text
        assert "question 0:" not in prompt_text
        assert "answer 11:" in prompt_text  # the most recent turns survive
        assert done.stats.n_prompt + 16 <= engine.ctx.n_ctx


def test_history_that_fits_is_not_touched(engine: ChatEngine) -> None:
    events = list(engine.chat(long_history(2), params(max_tokens=8)))
    assert notices(events) == []


def test_a_single_message_too_long_raises_context_overflow(tiny_llama_path: Path) -> None:
    with load(tiny_llama_path, n_ctx=256) as engine:
        huge = [ChatMessage("system", "sys"), ChatMessage("user", "the model is fast " * 200)]
        with pytest.raises(ContextOverflowError, match="context"):
            list(engine.chat(huge, params()))
        # Nothing was lost: the engine still answers.
        assert done_of(list(engine.chat(HELLO, params(max_tokens=5)))).stats.n_generated == 5


ALTERNATING = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|im_start|>system\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% else %}"
    "{% set first = 1 if messages[0]['role'] == 'system' else 0 %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == first) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_dropping_turns_keeps_roles_alternating(tmp_path: Path) -> None:
    path = tiny_llama.build_tiny_llama(tmp_path / "alternating.gguf", chat_template=ALTERNATING)
    # Different reply budgets leave room for different numbers of messages, odd and even.
    for max_tokens in (8, 24, 32, 56):
        with load(path, n_ctx=256) as engine:
            events = list(engine.chat(long_history(12), params(max_tokens=max_tokens)))
            assert not any("ChatML" in n for n in notices(events)), (max_tokens, notices(events))


# --- hostile or broken chat templates in the model file ------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for m in messages %}{{ m.content }",  # does not compile
        "{{ raise_exception('no') }}",
        "{% for i in range(10 ** 9) %}x{% endfor %}",
    ],
    ids=["escape", "syntax", "raise", "range"],
)
def test_hostile_template_in_the_model_falls_back_to_chatml(tmp_path: Path, template: str) -> None:
    path = tiny_llama.build_tiny_llama(tmp_path / "hostile.gguf", chat_template=template)
    with load(path) as engine:
        events = list(engine.chat(HELLO, params(max_tokens=8)))
        assert any("ChatML" in n for n in notices(events))
        assert done_of(events).stats.n_generated == 8
        chatml = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
        n_prompt = done_of(events).stats.n_prompt
        assert engine.seq.tokens[:n_prompt] == engine.model.tokenize(chatml, add_special=True)


def test_model_without_a_template_uses_chatml_silently(tmp_path: Path) -> None:
    path = tiny_llama.build_tiny_llama(tmp_path / "none.gguf", chat_template=None)
    with load(path) as engine:
        assert engine.template.source == "default (ChatML)"
        events = list(engine.chat(HELLO, params(max_tokens=4)))
        assert notices(events) == []


# --- drafters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_self_drafting_gives_identical_output_and_high_acceptance(
    tiny_llama_path: Path, temperature: float
) -> None:
    with load(tiny_llama_path, drafter="draft", draft_model_path=tiny_llama_path) as engine:
        assert engine.info.drafter == "draft model: tiny-llama (test fixture)"
        assert engine.info.drafter_note is None and engine.info.drafter_bytes > 0
        spec = done_of(list(engine.chat(HELLO, params(temperature, max_tokens=40))))
        engine.reset()
        plain = done_of(list(engine.chat(HELLO, params(temperature, max_tokens=40, spec=False))))
    assert spec.text == plain.text
    s = spec.stats.spec
    assert s is not None and s.drafted > 0
    if temperature == 0.0:
        assert s.acceptance_rate > 0.9  # the draft is the target: only batched-vs-single rounding can differ
    else:
        assert s.accepted > 0


def test_incompatible_draft_model_is_a_note_not_a_failure(tiny_llama_path: Path, smollm2_path: Path) -> None:
    with load(tiny_llama_path, drafter="draft", draft_model_path=smollm2_path) as engine:
        assert engine.drafter is None and engine.info.drafter is None
        assert engine.info.drafter_note is not None and "vocab type" in engine.info.drafter_note
        events = list(engine.chat(HELLO, params(max_tokens=4)))
        assert any("speculative decoding is off" in n and "vocab type" in n for n in notices(events))
        assert done_of(events).stats.spec is None


def test_drafter_none_generates_plainly(tiny_llama_path: Path) -> None:
    with load(tiny_llama_path, drafter="none") as engine:
        assert engine.drafter is None
        done = done_of(list(engine.chat(HELLO, params(max_tokens=6, spec=False))))
        assert done.stats.spec is None and done.stats.n_generated == 6


# --- bad files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"GGUF",
        b"GGUF\x03\x00\x00\x00" + b"\xff" * 100,
        b"not a model at all, just some text" * 10,
    ],
    ids=["empty", "header-only", "absurd-counts", "text"],
)
def test_corrupt_model_file_is_refused_before_llama_cpp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)

    def no_llama(*args: object, **kw: object) -> None:
        raise AssertionError("llama.cpp was handed a file that failed validation")

    monkeypatch.setattr("engine.inference.session.Model", no_llama)
    with pytest.raises(ModelFileError) as info:
        ChatEngine.load(LoadConfig(model_path=bad))
    assert info.value.path == bad


def test_truncated_copy_of_the_tiny_llama_is_refused(
    tmp_path: Path, tiny_llama_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tiny_llama_path.read_bytes()
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr("engine.inference.session.Model", None)
    with pytest.raises(ModelFileError, match="truncated|short|size|tensor"):
        ChatEngine.load(LoadConfig(model_path=bad))


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        ChatEngine.load(LoadConfig(model_path=tmp_path / "nope.gguf"))


# --- a chat template that hangs -------------------------------------------------------------------------
HANGING_TEMPLATE = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"


def test_a_hanging_template_costs_one_reply_two_seconds_then_chatml(engine: ChatEngine) -> None:
    import time

    from engine.inference.chat_template import ChatTemplate

    engine.template = ChatTemplate(HANGING_TEMPLATE, bos_token="<s>")
    started = time.perf_counter()
    events = list(engine.chat(HELLO, params(max_tokens=4)))
    assert time.perf_counter() - started < 3.0
    assert any("took more than 2 s" in n and "ChatML" in n for n in notices(events))
    assert done_of(events).stats.n_generated > 0
    started = time.perf_counter()
    list(engine.chat(HELLO, params(max_tokens=4)))
    assert time.perf_counter() - started < 1.0  # the template is not run again


def test_stop_ends_a_reply_whose_template_hangs(engine: ChatEngine) -> None:
    import time

    from engine.inference.chat_template import ChatTemplate

    engine.template = ChatTemplate(HANGING_TEMPLATE)
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel).start()
    started = time.perf_counter()
    events = list(engine.chat(HELLO, params(), cancel))
    assert time.perf_counter() - started < 1.0
    assert done_of(events).stop_reason is StopReason.CANCELLED and done_of(events).text == ""
    assert engine.template.stopped is None  # stopped by the user, not for time: it may run next time


# --- logits rows --------------------------------------------------------------------------------------
def test_logits_rows_read_the_current_decode_after_the_output_buffer_is_reused_and_grows(
    engine: ChatEngine,
) -> None:
    """Context.logits keeps one view per row address (llama.cpp reuses its output buffer): each call must
    still show the values llama.cpp's own accessor returns for the last decode, row by row."""
    ctx, n_vocab = engine.ctx, engine.model.n_vocab

    def binding(i: int) -> list[float]:
        return list(L.llama_get_logits_ith(ctx.ptr, i)[:n_vocab])

    ctx.truncate(0)
    ctx.decode([1, 5, 9], 0, "last")
    first = list(ctx.logits(-1))
    assert first == binding(-1)
    ctx.decode([7], 3, "last")  # the same buffer, a new token
    second = list(ctx.logits(-1))
    assert second == binding(-1) == list(ctx.logits(0))
    assert second != first
    ctx.decode([11, 12, 13, 14, 15, 16], 4, "all")  # more rows than before: the buffer may move
    rows = [list(ctx.logits(i)) for i in range(6)]
    assert rows == [binding(i) for i in range(6)]
    assert len({tuple(r) for r in rows}) == 6
