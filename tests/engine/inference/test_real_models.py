"""The engine on real small models (SmolLM2-135M, Gemma 3 270M): speculative == plain, tokenizer round trips
and UTF-8-safe streaming. Skipped, with the reason, when a model is not installed (see conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import ChatMessage, GenerationParams, LoadConfig, SamplingParams, SpecParams
from engine.events import DoneEvent, Event, TokenEvent
from engine.inference.session import ChatEngine
from engine.inference.textstream import TextStream

pytestmark = pytest.mark.real_model

REPEAT = [
    ChatMessage("user", "Repeat this list exactly three times: apple, banana, cherry, apple, banana, cherry.")
]
# The last one uses characters rare enough that Gemma's 262k vocabulary spells them with byte tokens.
UNICODE_TEXTS = [
    "Hello 😀 日本語 — ¿Qué? 🎉",
    "猫は かわいい 🐱🐱",
    "naïve café, 𝄞 and 👩‍👩‍👧",
    "rare 𠀋𪚥 🫨 𓀀 ꙮ",
]


def params(spec: bool, temperature: float = 0.0, max_tokens: int = 48) -> GenerationParams:
    return GenerationParams(
        sampling=SamplingParams(temperature=temperature, seed=42),
        max_tokens=max_tokens,
        spec=SpecParams(enabled=spec, k_max=3, adaptive=False),
    )


def load(path: Path) -> ChatEngine:
    return ChatEngine.load(LoadConfig(model_path=path, n_ctx=512, n_batch=64, n_threads=1, drafter="ngram"))


@pytest.fixture(scope="module")
def smollm2(smollm2_path: Path) -> Iterator[ChatEngine]:
    with load(smollm2_path) as engine:
        yield engine


@pytest.fixture(scope="module")
def gemma3(gemma3_path: Path) -> Iterator[ChatEngine]:
    with load(gemma3_path) as engine:
        yield engine


def generate(
    engine: ChatEngine, messages: list[ChatMessage], p: GenerationParams
) -> tuple[list[Event], DoneEvent]:
    engine.reset()
    tokens, _ = engine.fit_messages(messages, p.max_tokens)
    assert len(tokens) + p.max_tokens < 256  # short: keep the test quick
    events = list(engine.generate(tokens, p))
    done = events[-1]
    assert isinstance(done, DoneEvent)
    return events, done


def generated_tokens(events: list[Event], done: DoneEvent) -> list[int]:
    return [e.token for e in events if isinstance(e, TokenEvent)][: done.stats.n_generated]


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_smollm2_ngram_speculation_is_identical_to_plain(smollm2: ChatEngine, temperature: float) -> None:
    plain_events, plain = generate(smollm2, REPEAT, params(False, temperature))
    spec_events, spec = generate(smollm2, REPEAT, params(True, temperature))
    assert generated_tokens(spec_events, spec) == generated_tokens(plain_events, plain)
    assert spec.text == plain.text
    assert spec.stats.spec is not None
    if temperature == 0.0:
        assert spec.stats.spec.accepted > 0  # a list to repeat: the n-gram drafter gets accepted


def test_smollm2_second_turn_from_the_cache_equals_a_fresh_run(smollm2: ChatEngine) -> None:
    _, first = generate(smollm2, REPEAT, params(True, max_tokens=16))
    turn2 = [*REPEAT, ChatMessage("assistant", first.text), ChatMessage("user", "Now only once.")]
    cached = list(smollm2.chat(turn2, params(True, max_tokens=16)))
    done = cached[-1]
    assert isinstance(done, DoneEvent) and done.stats.n_prompt_cached > 0
    smollm2.reset()
    fresh = list(smollm2.chat(turn2, params(False, max_tokens=16)))
    assert isinstance(fresh[-1], DoneEvent) and fresh[-1].text == done.text


@pytest.mark.parametrize("text", UNICODE_TEXTS)
@pytest.mark.parametrize("which", ["smollm2", "gemma3"])
def test_tokenize_detokenize_round_trip(request: pytest.FixtureRequest, which: str, text: str) -> None:
    engine: ChatEngine = request.getfixturevalue(which)
    ids = engine.model.tokenize(text, add_special=False)
    assert engine.model.detokenize(ids) == text


@pytest.mark.parametrize("text", UNICODE_TEXTS)
@pytest.mark.parametrize("which", ["smollm2", "gemma3"])
def test_real_token_pieces_stream_as_whole_characters(
    request: pytest.FixtureRequest, which: str, text: str
) -> None:
    engine: ChatEngine = request.getfixturevalue(which)
    pieces = [engine.model.piece(t) for t in engine.model.tokenize(text, add_special=False)]
    stream = TextStream()
    deltas = [stream.feed(p) for p in pieces] + [stream.finish()]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)


@pytest.mark.parametrize("which", ["smollm2", "gemma3"])
def test_some_real_pieces_end_mid_character(request: pytest.FixtureRequest, which: str) -> None:
    # The streaming test above is only meaningful if some token ends mid-character: check that one does.
    engine: ChatEngine = request.getfixturevalue(which)
    pieces = [engine.model.piece(t) for text in UNICODE_TEXTS for t in engine.model.tokenize(text)]

    def is_whole(piece: bytes) -> bool:
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    assert not all(is_whole(p) for p in pieces)


def test_streamed_reply_is_valid_utf8_and_adds_up(smollm2: ChatEngine) -> None:
    messages = [ChatMessage("user", "Write a short line with three emoji and the Japanese word for cat.")]
    events, done = generate(smollm2, messages, params(True, temperature=0.7, max_tokens=40))
    deltas = [e.text for e in events if isinstance(e, TokenEvent)]
    assert "".join(deltas) == done.text
    for d in deltas:
        d.encode("utf-8")  # no lone surrogates
    raw = b"".join(smollm2.model.piece(t) for t in generated_tokens(events, done))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # the model itself produced invalid bytes: replacement characters are then correct
    assert all("\ufffd" not in d for d in deltas)


def test_gemma3_loads_and_ngram_speculation_is_identical_to_plain(gemma3: ChatEngine) -> None:
    assert gemma3.info.architecture == "gemma3"
    plain_events, plain = generate(gemma3, REPEAT, params(False, max_tokens=32))
    spec_events, spec = generate(gemma3, REPEAT, params(True, max_tokens=32))
    assert plain.stats.n_generated > 0
    assert generated_tokens(spec_events, spec) == generated_tokens(plain_events, plain)
    assert spec.text == plain.text
    assert spec.stats.spec is not None and spec.stats.spec.drafted > 0
