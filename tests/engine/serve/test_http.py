"""The HTTP server over a socket, with the fake engine: the official openai client streams and waits, raw
requests get OpenAI-style errors (never a traceback), keys and hosts are checked, CORS is off unless asked,
two clients share the one engine in turn, and a client that hangs up cancels its generation."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlparse

import openai
import pytest

from engine.errors import TandemError
from engine.events import DoneEvent, StopReason
from engine.serve.http import ServerOptions
from engine.serve.openai_api import Limits
from engine.serve.queue import JobFailed
from engine.serve.server import check_bind, is_loopback
from tests.app.fake_engine import SCRIPT, FakeOptions

MESSAGES: list[Any] = [{"role": "user", "content": "ping"}]
EXPECTED = "You said: ping\n\n" + SCRIPT


def raw(
    url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def client(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def test_openai_client_non_stream_and_stream(fake_server) -> None:
    server = fake_server()
    c = client(server.url)
    models = c.models.list()
    assert [m.id for m in models.data] == ["fake-target"] and models.data[0].owned_by == "tandem"
    reply = c.chat.completions.create(model="fake-target", messages=MESSAGES, max_tokens=500, seed=1)
    assert reply.choices[0].message.content == EXPECTED
    assert reply.choices[0].finish_reason == "stop"
    timings = reply.model_extra["timings"]
    assert timings["predicted_n"] == reply.usage.completion_tokens > 0
    assert timings["draft_n"] > 0 and timings["draft_steps"] > 0  # the fake drafts 3 per step
    chunks = list(
        c.chat.completions.create(
            model="fake-target", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == EXPECTED
    closing = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(closing) == 1 and closing[0].model_extra["timings"]["draft_n"] > 0
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    text = c.completions.create(model="fake-target", prompt="ping", max_tokens=5)
    assert text.choices[0].finish_reason == "length" and text.usage.completion_tokens == 5


def test_stream_ends_with_done(fake_server) -> None:
    server = fake_server()
    body = json.dumps({"messages": MESSAGES, "stream": True, "max_tokens": 3}).encode()
    status, headers, data = raw(server.url, "POST", "/v1/chat/completions", body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [line for line in data.decode().split("\n\n") if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)


def test_speculative_false_turns_speculation_off(fake_server) -> None:
    server = fake_server()
    reply = client(server.url).chat.completions.create(
        model="x", messages=MESSAGES, max_tokens=20, extra_body={"speculative": False}
    )
    timings = reply.model_extra["timings"]
    assert timings["draft_n"] == 0 and timings["speculative"] is False
    assert timings["speculation_off"] == "switched off for this request"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[" * 20_000 + b"]" * 20_000, 400, "not valid JSON"),  # too deep for the parser
        (json.dumps({"messages": []}).encode(), 400, "messages"),
        (json.dumps({"messages": MESSAGES, "max_tokens": 10**9}).encode(), 400, "max_tokens"),
        (json.dumps({"messages": MESSAGES, "temperature": "warm"}).encode(), 400, "temperature"),
        (b"x" * 70_000, 413, "larger than"),
    ],
)
def test_malformed_requests_get_openai_errors(fake_server, body: bytes, status: int, fragment: str) -> None:
    server = fake_server(ServerOptions(limits=Limits(max_body_bytes=64_000)))
    code, headers, data = raw(server.url, "POST", "/v1/chat/completions", body)
    assert code == status and headers["content-type"] == "application/json"
    error = json.loads(data)["error"]
    assert fragment in error["message"] and "Traceback" not in data.decode()
    assert set(error) == {"message", "type", "param", "code"}


def test_unknown_routes_and_methods_are_json_errors(fake_server) -> None:
    server = fake_server()
    code, _, data = raw(server.url, "GET", "/v1/nothing")
    assert code == 404 and json.loads(data)["error"]["type"] == "not_found_error"
    code, _, data = raw(server.url, "GET", "/v1/chat/completions")
    assert code == 405 and "error" in json.loads(data)


def test_no_model_loaded_is_503(fake_server) -> None:
    server = fake_server()
    server.queue.model_present = False
    assert raw(server.url, "GET", "/health")[0] == 503
    code, _, data = raw(
        server.url, "POST", "/v1/chat/completions", json.dumps({"messages": MESSAGES}).encode()
    )
    assert code == 503 and json.loads(data)["error"]["message"] == "no model is loaded"
    assert json.loads(raw(server.url, "GET", "/v1/models")[2])["data"] == []


def test_api_key(fake_server) -> None:
    server = fake_server(ServerOptions(api_key="sesame", loopback_only=False))
    assert raw(server.url, "GET", "/health")[0] == 200  # public, like llama-server's
    code, _, data = raw(server.url, "GET", "/v1/models")
    assert code == 401 and json.loads(data)["error"]["code"] == "invalid_api_key"
    assert raw(server.url, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"})[0] == 401
    with pytest.raises(openai.AuthenticationError):
        client(server.url, "wrong").models.list()
    assert client(server.url, "sesame").models.list().data[0].id == "fake-target"


def test_without_a_key_only_loopback_host_names_are_answered(fake_server) -> None:
    server = fake_server()
    # A page on evil.example whose DNS name was rebound to 127.0.0.1 sends its own name as Host.
    code, _, data = raw(server.url, "GET", "/v1/models", headers={"Host": "evil.example:8642"})
    assert code == 403 and json.loads(data)["error"]["type"] == "permission_error"
    assert raw(server.url, "GET", "/v1/models", headers={"Host": "localhost:8642"})[0] == 200


def test_cors_is_off_unless_origins_are_listed(fake_server) -> None:
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    closed = fake_server()
    _, headers, _ = raw(closed.url, "GET", "/v1/models", headers={"Origin": "http://app.example"})
    assert "access-control-allow-origin" not in headers
    assert (
        "access-control-allow-origin"
        not in raw(closed.url, "OPTIONS", "/v1/chat/completions", headers=preflight)[1]
    )
    open_ = fake_server(ServerOptions(cors_origins=("http://app.example",)))
    code, headers, _ = raw(open_.url, "OPTIONS", "/v1/chat/completions", headers=preflight)
    assert code == 200 and headers["access-control-allow-origin"] == "http://app.example"


def test_two_concurrent_clients_share_the_engine_in_turn(fake_server) -> None:
    gate = threading.Event()
    server = fake_server(fake=FakeOptions(gate=gate))
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        reply = client(server.url).chat.completions.create(
            model="x", messages=[{"role": "user", "content": f"client {i}"}], max_tokens=500
        )
        results[i] = reply.choices[0].message.content or ""

    threads = [threading.Thread(target=ask, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while server.activity.active < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.activity.active == 2  # one generating (held at the gate), one waiting in the queue
    gate.set()
    for t in threads:
        t.join(30)
    assert results == {i: f"You said: client {i}\n\n" + SCRIPT for i in (1, 2)}
    assert server.activity.active == 0 and server.activity.total == 2


def test_a_client_that_disconnects_mid_stream_cancels_its_generation(fake_server) -> None:
    server = fake_server(fake=FakeOptions(token_delay=0.05))  # the whole script would take ~10 s
    c = client(server.url)
    stream = c.chat.completions.create(model="x", messages=MESSAGES, stream=True, max_tokens=2000)
    for seen, _chunk in enumerate(stream, 1):
        if seen == 5:
            break
    stream.close()
    t0 = time.monotonic()
    (end,) = server.recorder.wait_for(1, timeout=5)
    assert isinstance(end, DoneEvent) and end.stop_reason is StopReason.CANCELLED
    assert end.stats.n_generated < 40 and time.monotonic() - t0 < 3


def test_a_client_that_gives_up_while_waiting_cancels_too(fake_server) -> None:
    gate = threading.Event()
    server = fake_server(fake=FakeOptions(gate=gate))
    with pytest.raises(openai.APITimeoutError):
        openai.OpenAI(
            base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=0.5
        ).chat.completions.create(model="x", messages=MESSAGES)
    gate.set()  # the engine gets to the job only now: it must find it cancelled
    (end,) = server.recorder.wait_for(1)
    assert isinstance(end, DoneEvent | JobFailed)
    assert not isinstance(end, DoneEvent) or end.stop_reason is StopReason.CANCELLED


def test_binding_rules() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.1.2.3"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "192.168.1.5", "::", "my-box.local"):
        assert not is_loopback(host)
        with pytest.raises(TandemError, match="API key"):
            check_bind(host, None)
        check_bind(host, "key")
