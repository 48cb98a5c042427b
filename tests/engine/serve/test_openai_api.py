"""Reading OpenAI requests and shaping responses, on plain dicts: every bad field is a 400 with an
OpenAI-style body naming the field, and what is valid becomes Tandem's GenerationParams."""

from __future__ import annotations

from typing import Any

import pytest

from engine.config import ChatMessage, GenerationParams, SpecParams
from engine.events import StopReason
from engine.serve.openai_api import (
    FINISH_REASONS,
    Limits,
    Reply,
    RequestError,
    parse_chat_request,
    parse_text_request,
)
from engine.serve.timings import timings
from engine.stats import GenerationStats, SpecRecorder

LIMITS = Limits(max_tokens=100, default_max_tokens=50)
BASE = GenerationParams(spec=SpecParams(k_max=5))


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_a_chat_request_becomes_generation_params() -> None:
    req = parse_chat_request(
        chat(temperature=0, top_p=0.5, seed=7, max_tokens=20, stop=["\n\n", ""], stream=True), LIMITS, BASE
    )
    assert req.kind == "chat" and req.stream and req.messages == (ChatMessage("user", "hi"),)
    p = req.params
    assert p.sampling.temperature == 0 and p.sampling.top_p == 0.5 and p.sampling.seed == 7
    assert p.max_tokens == 20 and p.stop == ("\n\n",)
    assert p.spec.enabled and p.spec.k_max == 5  # the server's speculation settings carry over


def test_defaults_and_the_speculative_switch() -> None:
    req = parse_chat_request(chat(speculative=False), LIMITS, BASE)
    assert req.params.max_tokens == 50 and not req.stream
    assert not req.speculative and not req.params.spec.enabled


def test_content_parts_and_developer_role() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ]
    }
    req = parse_chat_request(body, LIMITS, BASE)
    assert req.messages == (ChatMessage("system", "ab"),)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([1, 2], None),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(max_tokens=101), "max_tokens"),
        (chat(max_tokens=True), "max_tokens"),
        (chat(max_completion_tokens="5"), "max_completion_tokens"),
        (chat(temperature=3), "temperature"),
        (chat(temperature="hot"), "temperature"),
        (chat(top_p=float("nan")), "top_p"),
        (chat(seed=1.5), "seed"),
        (chat(stop=[1]), "stop"),
        (chat(stop=["x" * 300]), "stop"),
        (chat(stop=["s"] * 17), "stop"),
        (chat(n=2), "n"),
        (chat(stream="yes"), "stream"),
        (chat(stream_options=[]), "stream_options"),
        (chat(speculative="no"), "speculative"),
        (chat(tools=[{"type": "function"}]), "tools"),
        (chat(model=5), "model"),
    ],
)
def test_bad_requests_are_400_with_the_field_named(body: Any, param: str | None) -> None:
    with pytest.raises(RequestError) as info:
        parse_chat_request(body, LIMITS, BASE)
    err = info.value
    assert err.status == 400 and err.param == param
    assert err.body()["error"]["type"] == "invalid_request_error" and err.body()["error"]["message"]


def test_text_completion_requests() -> None:
    req = parse_text_request({"prompt": ["Once"], "echo": True, "max_tokens": 3}, LIMITS, BASE)
    assert req.kind == "text" and req.prompt == "Once" and req.echo and req.params.max_tokens == 3
    for bad in ({"prompt": 5}, {"prompt": ["a", "b"]}, {"prompt": "a", "suffix": "b"}):
        with pytest.raises(RequestError):
            parse_text_request(bad, LIMITS, BASE)


def test_reply_shapes() -> None:
    req = parse_chat_request(chat(), LIMITS, BASE)
    reply = Reply(req, "served")
    first = reply.chunk("", first=True)
    assert first["object"] == "chat.completion.chunk" and first["id"].startswith("chatcmpl-")
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    closing = reply.chunk(None, "length")
    assert closing["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    whole = reply.complete("hello", "stop", {"prompt_tokens": 1})
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    text = Reply(parse_text_request({"prompt": "A", "echo": True}, LIMITS, BASE), "served")
    assert text.complete("B", "stop", {})["choices"][0]["text"] == "AB"
    assert FINISH_REASONS[StopReason.MAX_TOKENS] == "length" and FINISH_REASONS[StopReason.EOG] == "stop"


def test_timings_carry_llama_server_names_and_tandems_own() -> None:
    rec = SpecRecorder("n-gram")
    rec.record_step(4, 3)
    rec.record_step(4, 0)
    stats = GenerationStats(
        n_prompt=30,
        n_prompt_cached=10,
        prompt_s=0.2,
        ttft_s=0.25,
        n_generated=7,
        decode_s=0.5,
        total_s=0.8,
        spec=rec.snapshot(),
    )
    t = timings(stats, speculative=True)
    assert t["prompt_n"] == 20 and t["cache_n"] == 10 and t["predicted_n"] == 7
    assert t["prompt_ms"] == pytest.approx(200) and t["predicted_ms"] == pytest.approx(550)
    assert t["predicted_per_second"] == pytest.approx(7 / 0.55)
    assert t["draft_n"] == 8 and t["draft_n_accepted"] == 3 and t["draft_steps"] == 2
    assert t["draft_mean_accepted_length"] == pytest.approx(2.5)
    assert t["draft_acceptance_by_position"] == [0.5, 0.5, 0.5, 0.0]
    assert t["speculation_off"] is None and t["drafter"] == "n-gram"
    plain = timings(stats.__class__(1, 0, 0.1, 0.1, 1, 0.0, 0.1), speculative=False)
    assert plain["draft_n"] == 0 and plain["speculation_off"] == "switched off for this request"
