"""A server's speculative figures, read from the formats the servers document: llama-server's timings
(llama.cpp tools/server/server-common.cpp), vLLM's per-request metrics (docs.vllm.ai, "Per-Request
Acceptance Metrics"; vLLM cannot run here, so these are its documented shape), Tandem's own timings, and the
difference of Prometheus counters, which other clients can spoil."""

from __future__ import annotations

from engine.remote import figures
from engine.remote.sse import StreamFormatError, iter_data, iter_lines

# The summary a vLLM >= 0.28 server started with --per-request-spec-decode-metrics summary puts in the
# response's top-level "metrics" (the documented example).
VLLM_METRICS = {
    "speculative_decoding": {
        "mean_acceptance_length": 1.2325581395348837,
        "draft_acceptance_rate": 0.07751937984496124,
        "acceptance_histogram": [39, 1, 0, 3],
        "num_spec_steps": 43,
        "num_accepted_draft_tokens": 10,
        "num_draft_tokens": 129,
        "num_spec_tokens": 3,
    }
}

LLAMA_TIMINGS = {
    "cache_n": 0,
    "prompt_n": 24,
    "prompt_ms": 50.1,
    "prompt_per_token_ms": 2.1,
    "prompt_per_second": 479.0,
    "predicted_n": 64,
    "predicted_ms": 800.0,
    "predicted_per_token_ms": 12.5,
    "predicted_per_second": 80.0,
    "draft_n": 40,
    "draft_n_accepted": 30,
}


def test_llama_server_timings() -> None:
    f = figures.from_llama_timings(LLAMA_TIMINGS)
    assert f is not None and f.source == "llama-server timings"
    assert (f.drafted, f.accepted, f.steps) == (40, 30, None)
    assert f.acceptance_rate == 0.75 and f.mean_accepted_length is None and f.server_tps == 80.0
    no_drafts = {k: v for k, v in LLAMA_TIMINGS.items() if not k.startswith("draft")}
    assert figures.from_llama_timings(no_drafts) is None  # unknown whether it speculates at all
    zero = figures.from_llama_timings(no_drafts, speculating=True)
    assert zero is not None and zero.drafted == 0 and zero.caveat
    off = figures.from_llama_timings(no_drafts, speculating=False)
    assert off is not None and not off.reported and off.caveat == "the server runs no drafter"


def test_vllm_per_request_metrics() -> None:
    f = figures.from_vllm(VLLM_METRICS)
    assert f is not None and f.source.startswith("vLLM")
    assert (f.drafted, f.accepted, f.steps) == (129, 10, 43)
    assert f.mean_accepted_length == 1 + 10 / 43  # the same definition as vLLM's mean_acceptance_length
    # histogram [39, 1, 0, 3]: steps that accepted 0, 1, 2, 3 drafts -> accepted at depth 1, 2, 3
    assert f.accepted_by_position == (4, 3, 3)
    assert figures.from_vllm({"speculative_decoding": None}) is None
    assert figures.from_vllm(None) is None


def test_tandem_timings() -> None:
    t = {**LLAMA_TIMINGS, "draft_steps": 10, "drafter": "n-gram", "draft_n_accepted_by_position": [9, 8, 7]}
    t["speculation_off"] = None
    f = figures.from_tandem(t)
    assert f is not None and f.source == "Tandem timings" and f.steps == 10 and f.drafter == "n-gram"
    assert f.mean_accepted_length == 4.0 and f.accepted_by_position == (9, 8, 7)
    assert figures.from_tandem(LLAMA_TIMINGS) is None  # llama-server's timings are not Tandem's
    off = figures.from_tandem({**t, "speculation_off": "switched off for this request"})
    assert off is not None and off.caveat == "speculation off: switched off for this request"


def test_untrusted_values_read_as_not_reported() -> None:
    f = figures.from_llama_timings({"predicted_n": 1, "draft_n": -5, "draft_n_accepted": "many"})
    assert f is not None and f.drafted is None and f.accepted is None and not f.reported
    v = figures.from_vllm({"speculative_decoding": {"num_draft_tokens": True, "acceptance_histogram": "x"}})
    assert v is not None and v.drafted is None and v.accepted_by_position == ()


LLAMA_METRICS = """# HELP llamacpp:tokens_predicted_total Number of generation tokens processed
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total {tokens}
llamacpp:spec_decode_num_draft_tokens_total {drafted}
llamacpp:spec_decode_num_accepted_tokens_total {accepted}
llamacpp:spec_decode_num_drafts_total {steps}
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{{position="0"}} {p0}
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{{position="1"}} {p1}
"""


def llama_metrics(tokens: int, drafted: int, accepted: int, steps: int, p0: int, p1: int) -> dict[str, float]:
    text = LLAMA_METRICS.format(tokens=tokens, drafted=drafted, accepted=accepted, steps=steps, p0=p0, p1=p1)
    return figures.parse_prometheus(text)


def test_counter_difference_around_one_request() -> None:
    before = llama_metrics(100, 50, 20, 10, 12, 8)
    after = llama_metrics(160, 90, 50, 20, 30, 20)
    f = figures.from_counters(before, after, own_tokens=60)
    assert f is not None and f.source.startswith("llama-server /metrics")
    assert (f.drafted, f.accepted, f.steps) == (40, 30, 10) and f.accepted_by_position == (18, 12)
    assert f.caveat is None and f.mean_accepted_length == 4.0


def test_counter_difference_says_when_other_clients_were_generating() -> None:
    before = llama_metrics(100, 50, 20, 10, 12, 8)
    after = llama_metrics(300, 150, 80, 30, 50, 30)
    f = figures.from_counters(before, after, own_tokens=60)
    assert f is not None and f.caveat is not None and "140 tokens for other clients" in f.caveat


def test_vllm_counters_sum_over_labels() -> None:
    text = (
        'vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="g"} 30\n'
        'vllm:spec_decode_num_draft_tokens_total{engine="1",model_name="g"} 10\n'
        'vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="g"} 20\n'
        'vllm:spec_decode_num_drafts_total{engine="0",model_name="g"} 8\n'
        'vllm:generation_tokens_total{model_name="g"} 70\n'
    )
    after = figures.parse_prometheus(text)
    before = figures.parse_prometheus(
        text.replace(" 30\n", " 0\n").replace(" 20\n", " 0\n").replace(" 70\n", " 40\n")
    )
    f = figures.from_counters(before, after, own_tokens=30)
    assert f is not None and f.source.startswith("vLLM") and f.drafted == 30 and f.accepted == 20
    assert figures.from_counters({}, figures.parse_prometheus("# nothing\nfoo 1\n"), 5) is None


def test_describe_says_where_figures_come_from() -> None:
    f = figures.from_llama_timings(LLAMA_TIMINGS)
    assert f is not None
    assert figures.describe(f) == (
        "llama-server timings: draft_n 40, draft_n_accepted 30 (75%), server decode 80.0 tok/s"
    )
    assert figures.describe(figures.none_reported()) == figures.NONE_REPORTED


def test_event_stream_lines_and_data() -> None:
    raw = [b'data: {"a":', b" 1}\r\n\r\n: comment\n", b"event: x\ndata: one\ndata: two\n\n", b"data: [DONE]"]
    assert list(iter_data(iter_lines(raw))) == ['{"a": 1}', "one\ntwo", "[DONE]"]
    assert list(iter_lines([b"a\r", b"\nb\rc"])) == ["a", "b", "c"]
    try:
        list(iter_lines([b"x" * 100], max_line=10))
    except StreamFormatError:
        pass
    else:
        raise AssertionError("an endless line must be refused")
