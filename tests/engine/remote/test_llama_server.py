"""A real llama-server, built from the llama.cpp sources the pinned llama-cpp-python vendors
(scripts/build_native_llama.sh, cached per version), serving Gemma 3 270M with n-gram speculation
(`--spec-type ngram-simple`, llama.cpp common/arg.cpp): Tandem chats through it and shows its draft_n /
draft_n_accepted, in the client and in `tandem chat --server`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from engine.config import ChatMessage, GenerationParams, SamplingParams
from engine.events import DoneEvent, TokenEvent
from engine.remote.ab import cannot_ab
from engine.remote.client import LLAMA_SERVER, RemoteClient, RemoteEndpoint
from tests import REPO_ROOT
from tests.engine.serve.test_serve_process import COPY_PROMPT

pytestmark = [pytest.mark.real_model, pytest.mark.subprocess]

BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_native_llama.sh"
NGRAM_FLAGS = [
    "--spec-type", "ngram-simple",
    "--spec-ngram-simple-size-n", "3",  # match the last 3 tokens (the default 12 rarely matches a chat)
    "--spec-ngram-simple-size-m", "16",  # and propose up to 16 that followed them
    "--spec-draft-n-max", "16",
]  # fmt: skip


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """The cached llama-server; built on first use (`make test` builds it before the suite runs)."""
    env = os.environ.get("TANDEM_LLAMA_SERVER")
    if env:
        return Path(env)
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.skip("llama-server is built from source and needs cmake and a C++ compiler")
    r = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "llama-server"],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    if r.returncode != 0:
        pytest.fail(f"building llama-server failed:\n{r.stderr[-3000:]}")
    return Path(r.stdout.strip().splitlines()[-1]) / "llama-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(llama_server_bin: Path, gemma3_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(llama_server_bin), "-m", str(gemma3_path), "--host", "127.0.0.1", "--port", str(port)]
        + ["-c", "2048", "-np", "1", "--metrics", *NGRAM_FLAGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"llama-server exited:\n{proc.stderr.read()[-3000:] if proc.stderr else ''}"
                )
            try:
                if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("llama-server did not become ready in 120 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_tandem_chats_through_llama_server_and_reads_its_draft_figures(llama_server: str) -> None:
    client = RemoteClient(RemoteEndpoint(llama_server))
    try:
        probe = client.probe()
        assert probe.kind == LLAMA_SERVER and probe.speculating and probe.drafter
        assert cannot_ab(probe) is not None  # llama-server sets speculation for the whole server
        params = GenerationParams(sampling=SamplingParams(temperature=0.0), max_tokens=64)
        events = list(client.chat([ChatMessage("user", COPY_PROMPT)], params))
        assert client.probe().drafter == "ngram-simple"  # named by /slots once a slot has served
    finally:
        client.close()
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.text == "".join(e.text for e in events if isinstance(e, TokenEvent)) and done.text
    f = done.stats.server
    assert f is not None and f.source.startswith("llama-server timings")
    assert f.drafted and f.drafted > 0 and f.accepted and 0 < f.accepted <= f.drafted
    # The counters moved by exactly this request's drafts, so /metrics adds the verification steps.
    assert f.source == "llama-server timings + /metrics" and f.steps and f.mean_accepted_length
    assert done.stats.n_generated == 64 and done.stats.decode_tps > 0


def test_tandem_chat_server_prints_llama_servers_draft_figures(llama_server: str) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "chat",
            "--server",
            llama_server,
            "--stats",
            "--max-tokens",
            "48",
        ]
        + [COPY_PROMPT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()  # the reply streamed to stdout
    assert "llama-server at " in r.stderr and "drafter: " in r.stderr
    line = next(line for line in r.stderr.splitlines() if "draft_n " in line)
    drafted = int(line.split("draft_n ")[1].split(",")[0])
    accepted = int(line.split("draft_n_accepted ")[1].split(" ")[0].rstrip(","))
    assert drafted > 0 and 0 < accepted <= drafted
