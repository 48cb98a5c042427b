"""The remote client against real servers on loopback: Tandem's own (around the fake engine), and small
Starlette servers that answer in vLLM's documented shape or expose only Prometheus counters. What each one
reports about speculation ends up in the DoneEvent; a cancel hangs up even on a server that is silent."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.config import CancelToken, ChatMessage, GenerationParams, SamplingParams, SpecParams
from engine.events import DoneEvent, NoticeEvent, StopReason, TokenEvent
from engine.measure.ab import ABReport, ABStep
from engine.remote.ab import cannot_ab, iter_remote_ab
from engine.remote.client import GENERIC, TANDEM, VLLM, RemoteClient, RemoteEndpoint, RemoteError
from engine.remote.engine import RemoteChatEngine
from engine.serve.http import ServerOptions
from engine.serve.queue import JobFailed
from engine.serve.server import ServerThread
from tests.app.fake_engine import SCRIPT, FakeOptions
from tests.engine.remote.test_figures import VLLM_METRICS

MESSAGES = [ChatMessage("user", "ping")]
PARAMS = GenerationParams(sampling=SamplingParams(temperature=0.0, seed=3), max_tokens=500)


def run(events: Iterator[Any]) -> tuple[str, DoneEvent, list[Any]]:
    items = list(events)
    done = items[-1]
    assert isinstance(done, DoneEvent)
    text = "".join(e.text for e in items if isinstance(e, TokenEvent))
    return text, done, items


def test_tandem_server_as_a_remote_engine(fake_server) -> None:
    server = fake_server()
    engine = RemoteChatEngine(RemoteEndpoint(server.url + "/v1/"))
    try:
        assert engine.probe.kind == TANDEM and engine.probe.spec_per_request
        assert engine.info.drafter == "MTP (fake assistant)" and engine.info.endpoint == server.url
        text, done, _ = run(engine.chat(MESSAGES, PARAMS))
        assert text == done.text == "You said: ping\n\n" + SCRIPT and done.stop_reason is StopReason.EOG
        f = done.stats.server
        assert f is not None and f.source == "Tandem timings" and f.drafted and f.steps
        assert f.mean_accepted_length is not None and f.accepted_by_position
        assert done.stats.n_generated > 0 and done.stats.ttft_s > 0
        _, plain, _ = run(engine.chat(MESSAGES, GenerationParams(spec=SpecParams(enabled=False))))
        assert plain.stats.server is not None and plain.stats.server.drafted == 0
        assert plain.stats.server.caveat == "speculation off: switched off for this request"
    finally:
        engine.close()


def test_ab_on_a_tandem_server(fake_server) -> None:
    server = fake_server()
    engine = RemoteChatEngine(RemoteEndpoint(server.url))
    try:
        items = list(engine.ab(MESSAGES, PARAMS))
    finally:
        engine.close()
    report = items[-1]
    assert isinstance(report, ABReport) and report.remote == TANDEM and report.identical
    assert {i.side for i in items[:-1] if isinstance(i, ABStep)} == {"plain", "speculative"}
    assert report.plain_tps > 0 and report.spec_tps > 0 and report.acceptance > 0
    assert ABReport.from_dict(report.to_dict()) == report
    old = {k: v for k, v in report.to_dict().items() if k != "remote"}
    assert ABReport.from_dict(old) is not None  # a report saved before "remote" existed still reads


def test_cancel_mid_stream_hangs_up(fake_server) -> None:
    server = fake_server(fake=FakeOptions(token_delay=0.05))  # the whole script would take ~10 s
    client = RemoteClient(RemoteEndpoint(server.url))
    cancel = CancelToken()
    pieces: list[str] = []
    done = None
    for event in client.chat(MESSAGES, PARAMS, cancel):
        if isinstance(event, TokenEvent):
            pieces.append(event.text)
            if len(pieces) == 3:
                cancel.cancel()
        elif isinstance(event, DoneEvent):
            done = event
    assert done is not None and done.stop_reason is StopReason.CANCELLED and done.text == "".join(pieces)
    (end,) = server.recorder.wait_for(1, timeout=5)  # the server noticed the hang-up and stopped
    assert isinstance(end, DoneEvent) and end.stop_reason is StopReason.CANCELLED
    client.close()


def test_cancel_while_the_server_is_silent(fake_server) -> None:
    gate = threading.Event()  # the fake engine holds its first token until this is set
    server = fake_server(fake=FakeOptions(gate=gate))
    client = RemoteClient(RemoteEndpoint(server.url))
    cancel = CancelToken()
    threading.Timer(0.5, cancel.cancel).start()
    t0 = time.monotonic()
    _, done, _ = run(client.chat(MESSAGES, PARAMS, cancel))
    assert done.stop_reason is StopReason.CANCELLED and time.monotonic() - t0 < 3
    gate.set()
    (end,) = server.recorder.wait_for(1)
    assert isinstance(end, JobFailed) or end.stop_reason is StopReason.CANCELLED
    client.close()


def test_errors_are_short_and_clear(fake_server) -> None:
    server = fake_server(ServerOptions(api_key="sesame", loopback_only=False))
    with pytest.raises(RemoteError, match="401: invalid or missing API key"):
        RemoteClient(RemoteEndpoint(server.url, api_key="wrong")).probe()
    good = RemoteClient(RemoteEndpoint(server.url, api_key="sesame", model="nope"))
    with pytest.raises(RemoteError, match="no model 'nope'"):
        good.probe()
    with pytest.raises(RemoteError, match="cannot reach"):
        RemoteClient(RemoteEndpoint("http://127.0.0.1:9")).probe()
    long = RemoteClient(RemoteEndpoint(server.url, api_key="sesame"))
    with pytest.raises(RemoteError, match="max_tokens"):
        list(long.chat(MESSAGES, GenerationParams(max_tokens=10**6)))


# --- other servers, in the shapes they document ---------------------------------------------------------
def serve(app: Starlette) -> Iterator[str]:
    thread = ServerThread(app, "127.0.0.1", 0)
    thread.start()
    try:
        yield thread.address.url
    finally:
        thread.stop()


def sse(chunks: list[dict[str, Any]]) -> StreamingResponse:
    async def body() -> Any:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


def canned_server(owner: str, final: dict[str, Any], metrics: Callable[[], str] | None = None) -> Starlette:
    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "big", "object": "model", "owned_by": owner}]})

    async def chat(request: Request) -> Response:
        body = await request.json()
        assert "speculative" not in body  # only a Tandem server is sent Tandem's extension
        head = {"id": "x", "object": "chat.completion.chunk", "model": "big"}
        chunks = [
            {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {**head, "choices": [{"index": 0, "delta": {"content": "Hello"}}]},
            {**head, "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}]},
            {**head, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}, **final},
        ]
        return sse(chunks)

    async def prometheus(request: Request) -> Response:
        if metrics is None:
            return PlainTextResponse("not found", status_code=404)
        return PlainTextResponse(metrics())

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/metrics", prometheus),
        ]
    )


@pytest.fixture
def canned() -> Iterator[Callable[..., str]]:
    running: list[Iterator[str]] = []

    def start(*args: Any) -> str:
        gen = serve(canned_server(*args))
        running.append(gen)
        return next(gen)

    yield start
    for gen in running:
        next(gen, None)


def test_vllm_per_request_metrics_are_read(canned) -> None:
    url = canned("vllm", {"metrics": VLLM_METRICS})
    client = RemoteClient(RemoteEndpoint(url))
    probe = client.probe()
    assert probe.kind == VLLM and not probe.spec_per_request and cannot_ab(probe)
    items = list(client.chat(MESSAGES, GenerationParams(spec=SpecParams(enabled=False))))
    assert isinstance(items[0], NoticeEvent) and "no effect" in items[0].message
    text, done, _ = run(iter(items))
    assert text == "Hello there" and done.stats.n_generated == 2 and done.stats.n_prompt == 5
    f = done.stats.server
    assert f is not None and f.source.startswith("vLLM") and (f.drafted, f.accepted, f.steps) == (129, 10, 43)
    with pytest.raises(Exception, match="whole server"):
        list(iter_remote_ab(client, probe, MESSAGES, PARAMS))


def test_prometheus_counters_when_the_response_has_none(canned) -> None:
    counter = itertools.count(0, 10)

    def metrics() -> str:
        n = next(counter)  # grows by 10 drafted / 6 accepted / 2 steps and 2 tokens per scrape
        return (
            f"vllm:spec_decode_num_draft_tokens_total {n}\n"
            f"vllm:spec_decode_num_accepted_tokens_total {n * 6 // 10}\n"
            f"vllm:spec_decode_num_drafts_total {n // 5}\n"
            f"vllm:generation_tokens_total {n // 5}\n"
        )

    url = canned("someone", {}, metrics)
    client = RemoteClient(RemoteEndpoint(url))
    assert client.probe().kind == GENERIC
    _, done, _ = run(client.chat(MESSAGES, PARAMS))
    f = done.stats.server
    assert (
        f is not None
        and f.source.startswith("vLLM /metrics")
        and (f.drafted, f.accepted, f.steps) == (10, 6, 2)
    )
    assert f.caveat is None  # the server generated exactly this request's 2 tokens meanwhile


def test_a_server_that_reports_nothing_says_so(canned) -> None:
    url = canned("someone", {})
    _, done, _ = run(RemoteClient(RemoteEndpoint(url)).chat(MESSAGES, PARAMS))
    assert done.stats.server is not None and not done.stats.server.reported
    assert done.stats.server.caveat == "this server reports no speculative figures"
