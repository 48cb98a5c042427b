"""The A/B run (engine.measure.ab) on the tiny llama: both sides, one seed, identity, cancellation, the
report and its plain-words explanation; and `tandem bench`'s per-prompt result, which is built on it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine.config import CancelToken, ChatMessage, GenerationParams, LoadConfig, SamplingParams, SpecParams
from engine.events import DoneEvent, TokenEvent
from engine.inference.session import ChatEngine
from engine.measure.ab import NEAR_TIE, ABReport, ABResult, ABStep, first_divergence, iter_ab, run_ab
from engine.measure.bench import BenchPrompt, bench_prompt, format_table

HELLO = (ChatMessage("user", "Hello world"),)


def params(temperature: float = 0.0, seed: int | None = 3, max_tokens: int = 48) -> GenerationParams:
    return GenerationParams(
        sampling=SamplingParams(temperature=temperature, seed=seed),
        max_tokens=max_tokens,
        spec=SpecParams(enabled=True, k_max=3),
    )


@pytest.fixture(scope="module")
def engine(tiny_llama_path: Path) -> Iterator[ChatEngine]:
    with ChatEngine.load(LoadConfig(model_path=tiny_llama_path, n_threads=1, n_batch=64, n_ctx=512)) as e:
        yield e


def test_ab_runs_plain_then_speculative_with_events_tagged(engine: ChatEngine) -> None:
    items = list(iter_ab(engine, HELLO, params()))
    result = items[-1]
    assert isinstance(result, ABResult)
    steps = [i for i in items if isinstance(i, ABStep)]
    sides = [s.side for s in steps if isinstance(s.event, DoneEvent)]
    assert sides == ["plain", "speculative"]
    # Every plain event comes before every speculative one.
    first_spec = next(n for n, s in enumerate(steps) if s.side == "speculative")
    assert all(s.side == "speculative" for s in steps[first_spec:])
    plain_tokens = [s.event.token for s in steps if s.side == "plain" and isinstance(s.event, TokenEvent)]
    assert tuple(plain_tokens[: len(result.plain.tokens)]) == result.plain.tokens
    assert result.plain.stats.spec is None and result.spec.stats.spec is not None
    assert result.spec.stats.spec.drafter == "n-gram"
    assert result.identical and result.divergence is None
    assert result.plain.stats.decode_tps > 0 and result.spec.stats.decode_tps > 0
    # Both sides evaluated the whole prompt: no warm cache for the second.
    assert result.plain.stats.n_prompt_cached == result.spec.stats.n_prompt_cached == 0
    assert dict(result.plain.decode_s)[1] > 0


def test_one_seed_for_both_sides_when_none_is_given(engine: ChatEngine) -> None:
    result = run_ab(engine, HELLO, params(temperature=1.0, seed=None))
    assert result is not None
    assert result.params.sampling.seed == result.seed
    assert result.identical  # sampled, yet the same tokens: the position-keyed RNG and one seed
    report = result.report()
    assert report.temperature == 1.0 and f"seed {result.seed}" in report.explanation()


def test_cancel_yields_no_result(engine: ChatEngine) -> None:
    cancel = CancelToken()
    seen: list[object] = []
    for item in iter_ab(engine, HELLO, params(max_tokens=200), cancel):
        seen.append(item)
        if isinstance(item, ABStep) and isinstance(item.event, TokenEvent):
            cancel.cancel()
    assert not any(isinstance(i, ABResult) for i in seen)
    assert not any(isinstance(i, ABStep) and i.side == "speculative" for i in seen)


def test_report_round_trips_through_json_shape(engine: ChatEngine) -> None:
    result = run_ab(engine, HELLO, params())
    assert result is not None
    report = result.report()
    data = report.to_dict()
    assert data["speedup"] == pytest.approx(result.speedup)
    assert ABReport.from_dict(data) == report
    assert ABReport.from_dict({**data, "version": 99}) is None
    assert ABReport.from_dict({k: v for k, v in data.items() if k != "plain_tps"}) is None
    assert ABReport.from_dict("nonsense") is None
    assert report.identical and report.explanation().startswith("Identical: both runs wrote the same")


def _report(**kw: object) -> ABReport:
    base = dict(
        seed=1, temperature=0.0, max_tokens=64, k_max=3, n_prompt=10, plain_tps=40.0, spec_tps=60.0,
        plain_ttft_s=0.1, spec_ttft_s=0.1, n_plain=64, n_spec=64, plain_stop="max_tokens",
        spec_stop="max_tokens", drafter="n-gram", acceptance=0.5, mean_accepted_length=1.8, mean_k=2.5,
        k_off_share=0.1, off_reason=None, identical=False, divergence_position=17, divergence_margin=0.02,
        context_before="the capital of", plain_piece=" France", spec_piece=" Paris", created_at=0.0,
    )  # fmt: skip
    base.update(kw)
    return ABReport(**base)  # type: ignore[arg-type]


def test_explanations_tell_near_tie_from_a_real_difference() -> None:
    near = _report().explanation()
    assert "first 17 tokens" in near and "“ France”" in near and "“ Paris”" in near
    assert "almost tied" in near and "bug" not in near
    clear = _report(divergence_margin=NEAR_TIE * 10).explanation()
    assert "clearly preferred" in clear and "bug" in clear
    lengths = _report(divergence_margin=None, n_spec=50, spec_stop="eog").explanation()
    assert "plain wrote 64 tokens and the speculative run 50" in lengths and "end of reply" in lengths
    assert _report().speedup == pytest.approx(1.5)


def test_first_divergence() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3], [0.1, 0.2, 0.3]) is None
    d = first_divergence([1, 2, 3], [1, 5, 3], [0.1, 0.2, 0.3])
    assert d is not None and (d.position, d.plain_token, d.spec_token, d.top2_margin) == (1, 2, 5, 0.2)
    d = first_divergence([1, 2], [1, 2, 3], [0.1, 0.2])
    assert d is not None and d.position == 2 and d.plain_token == -1 and math.isnan(d.top2_margin)


def test_bench_prompt_uses_the_ab_run(engine: ChatEngine) -> None:
    p = replace(params(), spec=SpecParams(enabled=True, k_max=2, adaptive=False))
    result = bench_prompt(engine, BenchPrompt("hello", HELLO, max_tokens=20), p)
    assert result.prompt_id == "hello" and result.identical and result.divergence is None
    assert result.n_plain == result.n_spec == 20  # the prompt's own max_tokens wins
    assert result.drafter == "n-gram" and result.plain_tps > 0
    table = format_table([result])
    assert "hello" in table and "yes" in table and "geometric mean speedup" in table
