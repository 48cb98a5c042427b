"""A chat on an OpenAI-compatible server, as Tandem's own events.

`RemoteClient.probe()` learns what kind of server it is (`/v1/models`: `owned_by` says "tandem", "llamacpp"
or "vllm"; llama-server's `/slots` says whether it speculates). `chat()` streams `/v1/chat/completions` and
yields TokenEvents (text deltas; a server gives no token ids, so `token` is -1) and one DoneEvent whose stats
carry the server's speculative figures (engine.remote.figures) in `GenerationStats.server`. Speeds are
measured here, on the client: time to first token and tokens per second are what the user gets, network
included; the server's own figure is kept as `server_tps`.

Cancelling: a watcher thread shuts the socket down when the CancelToken is set, which wakes a read blocked
on a quiet server (a long prompt) and tells the server to stop, the way a closed browser tab does.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx2

from engine.config import CancelToken, ChatMessage, GenerationParams
from engine.errors import TandemError
from engine.events import DoneEvent, Event, NoticeEvent, StopReason, TokenEvent
from engine.remote import figures
from engine.remote.sse import StreamFormatError, iter_data, iter_lines
from engine.stats import GenerationStats, ServerSpecStats

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 600.0  # a big model on a busy server may think for minutes before its first token
PROBE_TIMEOUT_S = 10.0
METRICS_TIMEOUT_S = 3.0
MAX_ERROR_BYTES = 64 * 1024
MAX_JSON_BYTES = 16 * 2**20
MAX_TEXT_CHARS = 16 * 2**20  # a reply longer than this is cut off: a runaway server must not fill memory
COUNTERS_SETTLE_S = 1.0  # /metrics may lag the end of the stream by a moment

TANDEM, LLAMA_SERVER, VLLM, GENERIC = "Tandem", "llama-server", "vLLM", "OpenAI-compatible server"
SERVER_SIDE = "server-side"  # a drafter the server runs but has not named yet
_OWNERS = {"tandem": TANDEM, "llamacpp": LLAMA_SERVER, "vllm": VLLM}


class RemoteError(TandemError):
    """The server could not be reached, refused the request, or answered something unreadable."""


@dataclass(frozen=True, slots=True)
class RemoteEndpoint:
    """A server the user named: its URL (with or without /v1), an API key, and the model to ask for."""

    url: str
    api_key: str | None = field(default=None, repr=False)  # never in a log line or a traceback
    model: str | None = None
    name: str = ""

    @property
    def root(self) -> str:
        url = self.url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        return url[: -len("/v1")] if url.endswith("/v1") else url

    @property
    def label(self) -> str:
        return self.name or self.root.split("://", 1)[-1]


@dataclass(frozen=True, slots=True)
class ServerProbe:
    kind: str  # TANDEM, LLAMA_SERVER, VLLM or GENERIC
    models: tuple[str, ...]
    model: str  # the model requests ask for
    drafter: str | None = None  # what the server drafts with, when it says
    speculating: bool | None = None  # whether it runs speculation at all (None: it does not say)
    spec_per_request: bool = False  # whether a request may turn speculation off (Tandem's extension)
    n_ctx: int = 0


@dataclass
class _Reply:
    """What the stream has brought so far."""

    text: list[str] = field(default_factory=list)
    n_chars: int = 0
    pieces: int = 0
    finish: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    notices: list[str] = field(default_factory=list)
    first_at: float | None = None
    last_at: float = 0.0


class RemoteClient:
    def __init__(self, endpoint: RemoteEndpoint) -> None:
        self.endpoint = endpoint
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        timeout = httpx2.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        self._http = httpx2.Client(headers=headers, timeout=timeout, follow_redirects=False)
        # Chat streams on connections of their own (no keep-alive): the cancel watcher may shut one down.
        self._streams = httpx2.Client(
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            limits=httpx2.Limits(max_keepalive_connections=0),
        )
        self._probe: ServerProbe | None = None
        self._per_request_figures = False  # responses of this server carried speculative figures
        self._has_metrics: bool | None = None  # whether /metrics has speculative counters (None: not tried)

    def close(self) -> None:
        self._http.close()
        self._streams.close()

    # --- what the server is ---------------------------------------------------------------------------
    def probe(self) -> ServerProbe:
        data = self._get_json("/v1/models")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise RemoteError(f"{self.endpoint.root}/v1/models did not list models: is this an OpenAI API?")
        models = tuple(
            str(e["id"])[:300] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)
        )
        owner = next((e.get("owned_by") for e in entries if isinstance(e, dict)), None)
        kind = _OWNERS.get(owner, GENERIC) if isinstance(owner, str) else GENERIC
        model = self.endpoint.model or (models[0] if models else "")
        if self.endpoint.model and models and self.endpoint.model not in models:
            raise RemoteError(
                f"the server has no model {self.endpoint.model!r}; it lists: {', '.join(models[:10])}"
            )
        probe = ServerProbe(kind=kind, models=models, model=model)
        if kind == TANDEM:
            extra = next(
                (e.get("tandem") for e in entries if isinstance(e, dict) and e.get("id") == model), None
            )
            if isinstance(extra, dict):
                drafter = extra.get("drafter")
                probe = ServerProbe(
                    kind,
                    models,
                    model,
                    drafter=drafter[:200] if isinstance(drafter, str) else None,
                    speculating=isinstance(drafter, str),
                    spec_per_request=extra.get("speculative_per_request") is True,
                    n_ctx=_int(extra.get("n_ctx")),
                )
        elif kind == LLAMA_SERVER:
            probe = self._llama_slots(probe)
        self._probe = probe
        return probe

    def _llama_slots(self, probe: ServerProbe) -> ServerProbe:
        """llama-server's /slots: whether its slots speculate, and with what. (Its /props lists the
        per-request defaults, where speculative.types reads "none" even on a speculating server.)"""
        try:
            slots = self._get_json("/slots")
        except RemoteError:  # started with --no-slots: the replies' timings will tell
            return probe
        slot = slots[0] if isinstance(slots, list) and slots and isinstance(slots[0], dict) else {}
        params = slot.get("params")
        speculating = slot.get("speculative")
        types = params.get("speculative.types") if isinstance(params, dict) else None
        drafter = SERVER_SIDE if speculating is True else None  # its kind shows once a slot has served
        if isinstance(types, str) and speculating is True:
            named = [t for t in types.split(",") if t.strip() and t.strip() != "none"]
            drafter = ", ".join(named)[:200] or drafter
        return ServerProbe(
            probe.kind,
            probe.models,
            probe.model,
            drafter=drafter,
            speculating=speculating if isinstance(speculating, bool) else None,
            n_ctx=_int(slot.get("n_ctx")),
        )

    def _get_json(self, path: str) -> Any:
        url = self.endpoint.root + path
        try:
            response = self._http.get(url, timeout=PROBE_TIMEOUT_S)
        except httpx2.HTTPError as exc:
            raise RemoteError(f"cannot reach {url}: {_reason(exc)}") from None
        if response.status_code != 200:
            raise RemoteError(f"{url} answered {response.status_code}: {_error_message(response.content)}")
        if len(response.content) > MAX_JSON_BYTES:
            raise RemoteError(f"{url} answered more than {MAX_JSON_BYTES} bytes")
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError):
            raise RemoteError(f"{url} did not answer JSON") from None

    def _metrics(self) -> dict[str, float] | None:
        try:
            response = self._http.get(self.endpoint.root + "/metrics", timeout=METRICS_TIMEOUT_S)
        except httpx2.HTTPError:
            return None
        if response.status_code != 200 or len(response.content) > figures.MAX_METRICS_BYTES:
            return None
        samples = figures.parse_prometheus(response.text)
        return samples if figures.counter_server(samples) else None

    # --- a chat -----------------------------------------------------------------------------------------
    def chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams, cancel: CancelToken | None = None
    ) -> Iterator[Event]:
        probe = self._probe or self.probe()
        cancel = cancel or CancelToken()
        if not params.spec.enabled and not probe.spec_per_request:
            yield NoticeEvent(
                f"{probe.kind} decides speculation for all its requests: switching it off here has no effect"
            )
        # Counters before the request: the figures when a response carries none, and for llama-server
        # (whose timings lack verification steps) the steps and per-position acceptance.
        wants_counters = probe.kind == LLAMA_SERVER or (
            probe.kind != TANDEM and not self._per_request_figures
        )
        before = self._metrics() if wants_counters and self._has_metrics is not False else None
        self._has_metrics = before is not None if wants_counters else self._has_metrics
        body = self._body(probe, messages, params)
        reply = _Reply()
        t0 = time.perf_counter()
        stopped = yield from self._stream(body, reply, cancel, t0)
        for notice in reply.notices:
            yield NoticeEvent(notice)
        total = time.perf_counter() - t0
        n_generated = _int((reply.usage or {}).get("completion_tokens")) or reply.pieces
        server = self._figures(probe, reply, before, n_generated)
        if probe.kind == LLAMA_SERVER and probe.drafter == SERVER_SIDE and stopped is None:
            self._probe = self._llama_slots(probe)  # a slot that has served names its speculative types
        text = "".join(reply.text)
        yield DoneEvent(
            text=text,
            stop_reason=stopped or _stop_reason(reply.finish),
            stats=_stats(reply, t0, total, n_generated, server),
        )

    def _body(
        self, probe: ServerProbe, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> dict[str, Any]:
        s = params.sampling
        body: dict[str, Any] = {
            "model": probe.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens,
            "temperature": max(0.0, s.temperature),
            "top_p": s.top_p,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if probe.kind in (TANDEM, LLAMA_SERVER):  # both read llama.cpp's sampler settings
            body.update(top_k=s.top_k, min_p=s.min_p, repeat_penalty=s.repeat_penalty)
        if probe.spec_per_request:
            body["speculative"] = params.spec.enabled
        return body

    def _stream(
        self, body: dict[str, Any], reply: _Reply, cancel: CancelToken, t0: float
    ) -> Generator[Event, None, StopReason | None]:
        """Stream one request into `reply`, yielding TokenEvents; returns CANCELLED when cancelled."""
        url = self.endpoint.root + "/v1/chat/completions"
        try:
            with (
                _HangUpOnCancel(cancel) as hang_up,
                self._streams.stream("POST", url, json=body, extensions={"trace": hang_up.trace}) as response,
            ):
                if response.status_code != 200:
                    content = b"".join(_bounded(response.iter_raw(), MAX_ERROR_BYTES))
                    raise RemoteError(
                        f"the server answered {response.status_code}: {_error_message(content)}"
                    )
                for data in iter_data(iter_lines(response.iter_raw())):
                    if data.strip() == "[DONE]":
                        break
                    for text in _read_chunk(data, reply):
                        now = time.perf_counter()
                        reply.first_at = reply.first_at or now
                        reply.last_at = now
                        reply.pieces += 1
                        if reply.n_chars + len(text) > MAX_TEXT_CHARS:
                            raise RemoteError(f"the reply is longer than {MAX_TEXT_CHARS} characters")
                        reply.n_chars += len(text)
                        reply.text.append(text)
                        yield TokenEvent(-1, text, reply.pieces - 1, 0, now - t0)
                    if cancel.cancelled:
                        return StopReason.CANCELLED
        except (httpx2.HTTPError, StreamFormatError, OSError) as exc:
            if cancel.cancelled:
                return StopReason.CANCELLED
            raise RemoteError(f"the connection to {self.endpoint.root} failed: {_reason(exc)}") from None
        return StopReason.CANCELLED if cancel.cancelled else None

    def _figures(
        self, probe: ServerProbe, reply: _Reply, before: dict[str, float] | None, n_generated: int
    ) -> ServerSpecStats:
        found = (
            figures.from_tandem(reply.timings)
            or figures.from_vllm(reply.metrics)
            or figures.from_llama_timings(reply.timings, speculating=probe.speculating)
        )
        if found is not None:
            self._per_request_figures = True
            if before is not None and found.reported and found.steps is None:
                return self._with_steps(found, before, n_generated)
            return found
        if before is not None:
            after = self._settled_metrics(before, n_generated)
            counted = figures.from_counters(before, after, n_generated) if after else None
            if counted is not None:
                return counted
        if probe.speculating is False:
            return figures.none_reported("the server runs no drafter")
        return figures.none_reported()

    def _with_steps(self, found: ServerSpecStats, before: dict[str, float], own: int) -> ServerSpecStats:
        """Per-request figures plus the verification steps and per-position acceptance from the counters,
        when the counters moved by exactly this request's drafts (no other client drafted meanwhile)."""
        after = self._settled_metrics(before, own)
        counted = figures.from_counters(before, after, own) if after else None
        if counted is None or (counted.drafted, counted.accepted) != (found.drafted, found.accepted):
            return found
        return replace(
            found,
            source=f"{found.source} + /metrics",
            steps=counted.steps,
            accepted_by_position=counted.accepted_by_position,
        )

    def _settled_metrics(self, before: dict[str, float], own: int) -> dict[str, float] | None:
        """/metrics after the request, read again briefly until the server has counted this request."""
        deadline = time.monotonic() + COUNTERS_SETTLE_S
        while True:
            after = self._metrics()
            grown = figures.generated_delta(before, after) if after else None
            if after is None or grown is None or grown >= own or time.monotonic() > deadline:
                return after
            time.sleep(0.1)


def _read_chunk(data: str, reply: _Reply) -> list[str]:
    """Fold one streamed JSON chunk into `reply`; returns its text deltas."""
    try:
        chunk = json.loads(data)
    except (ValueError, RecursionError):
        raise RemoteError("the server streamed something that is not JSON") from None
    if not isinstance(chunk, dict):
        return []
    if "error" in chunk:
        raise RemoteError(f"the server reported an error: {_message_of(chunk)}")
    texts: list[str] = []
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if isinstance(content, str) and content:
            texts.append(content)
        if isinstance(choice.get("finish_reason"), str):
            reply.finish = choice["finish_reason"]
    for key in ("usage", "timings", "metrics"):
        if isinstance(chunk.get(key), dict):
            setattr(reply, key, chunk[key])
    notices = chunk.get("notices")
    if isinstance(notices, list):
        reply.notices.extend(str(n)[:500] for n in notices[:20])
    return texts


def _stats(
    reply: _Reply, t0: float, total: float, n_generated: int, server: ServerSpecStats
) -> GenerationStats:
    usage = reply.usage or {}
    timings = reply.timings or {}
    details = usage.get("prompt_tokens_details")
    cached = _int(timings.get("cache_n")) or (
        _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    )
    n_prompt = _int(usage.get("prompt_tokens"))
    ttft = (reply.first_at - t0) if reply.first_at is not None else total
    prompt_ms = timings.get("prompt_ms")
    prompt_s = prompt_ms / 1000.0 if isinstance(prompt_ms, int | float) and prompt_ms >= 0 else ttft
    return GenerationStats(
        n_prompt=n_prompt,
        n_prompt_cached=min(cached, n_prompt),
        prompt_s=float(prompt_s),
        ttft_s=ttft,
        n_generated=n_generated,
        decode_s=max(0.0, reply.last_at - reply.first_at) if reply.first_at is not None else 0.0,
        total_s=total,
        spec=None,
        server=server,
    )


def _stop_reason(finish: str | None) -> StopReason:
    return StopReason.MAX_TOKENS if finish == "length" else StopReason.EOG


class _HangUpOnCancel:
    """While a request is under way, a thread waits for the cancel and then shuts the socket down: that wakes
    a read blocked on a quiet server (a long prompt, a queue) and tells the server to stop (closing the
    socket would not wake the reader). The socket comes from httpx's `trace` hook as the connection opens,
    so a cancel works before the response headers too; chat requests get a connection of their own, never
    one from the pool. Leaving the block ends the watch first."""

    def __init__(self, cancel: CancelToken) -> None:
        self._cancel = cancel
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False
        self._thread = threading.Thread(target=self._watch, name="tandem-remote-cancel", daemon=True)

    def __enter__(self) -> _HangUpOnCancel:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True

    def trace(self, name: str, info: dict[str, Any]) -> None:
        """httpx's trace extension: keep the socket of the connection this request opens."""
        if name.endswith("connect_tcp.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                self._sock = sock if isinstance(sock, socket.socket) else None
                if self._cancel.cancelled and not self._done:
                    self._shutdown()

    def _watch(self) -> None:
        while True:
            cancelled = self._cancel.wait(0.05)
            with self._lock:
                if self._done:
                    return
                if cancelled:
                    self._shutdown()  # no socket yet: trace() shuts it as soon as there is one
                    return

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)


def _bounded(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    n = 0
    for chunk in chunks:
        yield chunk[: limit - n]
        n += len(chunk)
        if n >= limit:
            return


def _message_of(data: Any) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str):
        return message[:500]
    if isinstance(error, str):
        return error[:500]
    return "no message"


def _error_message(content: bytes) -> str:
    try:
        return _message_of(json.loads(content))
    except (ValueError, RecursionError):
        text = content[:300].decode("utf-8", errors="replace").strip()
        return text or "no message"


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if isinstance(cause, OSError) and cause.strerror:
        text = cause.strerror
    return text[:300]


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
