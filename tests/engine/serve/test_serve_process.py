"""`tandem serve` as a real process on 127.0.0.1, driven by the official openai client, raw HTTP and two
clients at once; a copy prompt on Gemma 3 270M with n-gram drafting reports its draft figures in `timings`;
a non-loopback address without a key is refused before any model loads."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import openai
import pytest

from tests import REPO_ROOT

READY = re.compile(r"serving on (http://\S+)/v1")
COPY_TEXT = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
    "How vexingly quick daft zebras jump. Sphinx of black quartz, judge my vow."
)
COPY_PROMPT = f"Repeat the following text exactly, twice, with nothing else:\n\n{COPY_TEXT}"


class ServeProcess:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "serve", "--port", "0", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.url = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                match = READY.search(line)
                if match:
                    self.url = match.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120) or not self.url:
            self.stop()
            raise AssertionError("tandem serve did not start:\n" + "".join(self.lines[-30:]))

    def client(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=120)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serve() -> Iterator[Callable[..., ServeProcess]]:
    running: list[ServeProcess] = []

    def start(*args: str) -> ServeProcess:
        process = ServeProcess(*args)
        running.append(process)
        return process

    yield start
    for process in running:
        process.stop()


def post(url: str, path: str, body: bytes) -> tuple[int, bytes]:
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.subprocess
def test_openai_client_and_raw_requests(serve, tiny_llama_path: Path) -> None:
    server = serve("--model", str(tiny_llama_path), "--drafter", "ngram", "--ctx", "512")
    c = server.client()
    (model,) = c.models.list().data
    assert model.id == tiny_llama_path.stem and model.owned_by == "tandem"
    messages = [{"role": "user", "content": "hello"}]
    reply = c.chat.completions.create(model=model.id, messages=messages, max_tokens=12, temperature=0, seed=1)
    assert reply.choices[0].finish_reason in ("length", "stop") and reply.usage.completion_tokens <= 12
    timings = reply.model_extra["timings"]
    for name in ("prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms"):
        assert name in timings
    assert timings["predicted_n"] == reply.usage.completion_tokens and "draft_n" in timings
    stream = c.chat.completions.create(
        model=model.id, messages=messages, max_tokens=12, temperature=0, seed=1, stream=True
    )
    streamed = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert streamed == reply.choices[0].message.content  # greedy: the same reply either way
    text = c.completions.create(model=model.id, prompt="Once upon a time", max_tokens=5, temperature=0)
    assert text.usage.completion_tokens == 5 and text.model_extra["timings"]["predicted_n"] == 5
    code, body = post(server.url, "/v1/chat/completions", b'{"messages": [{"role": "user"')
    assert code == 400 and "not valid JSON" in json.loads(body)["error"]["message"]
    code, body = post(server.url, "/v1/chat/completions", json.dumps({"messages": messages, "n": 3}).encode())
    assert code == 400 and json.loads(body)["error"]["param"] == "n"
    too_long = json.dumps({"messages": [{"role": "user", "content": "word " * 2000}]}).encode()
    code, body = post(server.url, "/v1/chat/completions", too_long)
    assert code == 400 and "context" in json.loads(body)["error"]["message"]
    assert b"Traceback" not in body and not any("Traceback" in line for line in server.lines)


@pytest.mark.subprocess
def test_two_concurrent_clients(serve, tiny_llama_path: Path) -> None:
    server = serve("--model", str(tiny_llama_path), "--ctx", "512", "--quiet")
    answers: dict[int, str] = {}

    def ask(i: int) -> None:
        reply = server.client().chat.completions.create(
            model="x", messages=[{"role": "user", "content": f"client {i}"}], max_tokens=40, temperature=0
        )
        answers[i] = reply.choices[0].message.content or ""

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    alone = {
        i: server.client()
        .chat.completions.create(
            model="x", messages=[{"role": "user", "content": f"client {i}"}], max_tokens=40, temperature=0
        )
        .choices[0]
        .message.content
        for i in range(2)
    }
    assert answers == alone  # each got its own reply, as if it had been alone


def test_a_network_address_without_a_key_is_refused() -> None:
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "serve", "--host", "0.0.0.0", "--model", "/nonexistent.gguf"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2 and "refusing to listen on 0.0.0.0" in r.stderr and "API key" in r.stderr
    assert time.monotonic() - t0 < 30  # refused before loading anything


@pytest.mark.subprocess
def test_a_network_address_with_a_key(serve, tiny_llama_path: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sesame\n")
    server = serve("--model", str(tiny_llama_path), "--host", "0.0.0.0", "--api-key-file", str(key_file))
    local = server.url.replace("0.0.0.0", "127.0.0.1")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{local}/v1", api_key="wrong", max_retries=0).models.list()
    assert openai.OpenAI(base_url=f"{local}/v1", api_key="sesame", max_retries=0).models.list().data


@pytest.mark.real_model
@pytest.mark.subprocess
def test_copy_prompt_reports_draft_figures_gemma3_ngram(serve, gemma3_path: Path) -> None:
    server = serve("--model", str(gemma3_path), "--drafter", "ngram")
    messages = [{"role": "user", "content": COPY_PROMPT}]
    reply = server.client().chat.completions.create(
        model="x", messages=messages, max_tokens=64, temperature=0
    )
    t = reply.model_extra["timings"]
    assert t["drafter"] == "n-gram" and t["speculative"] is True
    assert t["draft_n"] > 0 and 0 < t["draft_n_accepted"] <= t["draft_n"] and t["draft_steps"] > 0
    assert t["draft_mean_accepted_length"] > 1.5  # copying: several tokens per verification step
    # Per depth: how long drafts ran is the controller's choice (it follows this machine's timings, so a
    # loaded machine may keep them short); the figures must add up to the totals whatever it chose.
    assert len(t["draft_acceptance_by_position"]) == len(t["draft_n_by_position"]) >= 1
    assert sum(t["draft_n_by_position"]) == t["draft_n"]
    assert sum(t["draft_n_accepted_by_position"]) == t["draft_n_accepted"]
    assert "fox jumps over the lazy dog" in (reply.choices[0].message.content or "")
    plain = server.client().chat.completions.create(
        model="x", messages=messages, max_tokens=16, temperature=0, extra_body={"speculative": False}
    )
    t = plain.model_extra["timings"]
    assert t["draft_n"] == 0 and t["speculation_off"] == "switched off for this request"
