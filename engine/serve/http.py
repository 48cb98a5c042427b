"""The HTTP side of `tandem serve`: a Starlette application over an `EngineQueue`.

Routes: `GET /health`, `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions` (also without
the `/v1` prefix, as llama-server accepts them). Each generation is one `EngineJob`; its events cross from the
engine's thread into the event loop through `call_soon_threadsafe`. A client that goes away cancels its job:
a task listens for `http.disconnect` while the request waits in the queue, runs, and streams.

Safe by default: the API key (when set) is checked in constant time on every route but /health; without a key
the server answers only requests addressed to a loopback name (a web page that rebinds its DNS name to
127.0.0.1 gets a 403); bodies and `max_tokens` are bounded; whatever fails becomes an OpenAI-style error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from engine import __version__
from engine.config import CancelToken, GenerationParams
from engine.events import DoneEvent, NoticeEvent, TokenEvent
from engine.serve.openai_api import (
    FINISH_REASONS,
    CompletionRequest,
    Limits,
    Reply,
    RequestError,
    error_body,
    parse_chat_request,
    parse_text_request,
    usage,
)
from engine.serve.queue import EngineJob, EngineQueue, JobFailed, JobItem, ServedModel
from engine.serve.timings import timings

log = logging.getLogger("tandem.serve")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True, slots=True)
class ServerOptions:
    api_key: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    base: GenerationParams = field(default_factory=GenerationParams)  # the server's speculation settings
    loopback_only: bool = True  # no API key: refuse requests addressed to a non-loopback host name


class Activity:
    """Live request count (queued or generating), thread-safe; `on_change(active)` is called from whichever
    thread changed it."""

    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self.total = 0
        self._on_change = on_change

    def begin(self) -> None:
        with self._lock:
            self.active += 1
            self.total += 1
            active = self.active
        if self._on_change:
            self._on_change(active)

    def end(self) -> None:
        with self._lock:
            self.active -= 1
            active = self.active
        if self._on_change:
            self._on_change(active)


def build_app(engine: EngineQueue, options: ServerOptions, activity: Activity | None = None) -> Starlette:
    handlers = _Handlers(engine, options, activity or Activity())
    routes = [
        Route("/health", handlers.health, methods=["GET"]),
        Route("/v1/health", handlers.health, methods=["GET"]),
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/models", handlers.models, methods=["GET"]),
        Route("/v1/chat/completions", handlers.chat, methods=["POST"]),
        Route("/chat/completions", handlers.chat, methods=["POST"]),
        Route("/v1/completions", handlers.text, methods=["POST"]),
        Route("/completions", handlers.text, methods=["POST"]),
    ]
    middleware = []
    if options.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(options.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            RequestError: _request_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return JSONResponse(error_body(message, kind=kind), status_code=exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    body = error_body(f"internal server error ({type(exc).__name__})", kind="server_error")
    return JSONResponse(body, status_code=500)


class _Handlers:
    def __init__(self, engine: EngineQueue, options: ServerOptions, activity: Activity) -> None:
        self.engine = engine
        self.options = options
        self.activity = activity
        self._key = options.api_key.encode() if options.api_key else None

    # --- access ---------------------------------------------------------------------------------------
    def _check(self, request: Request, *, auth: bool = True) -> None:
        if self._key is None and self.options.loopback_only:
            host = request.url.hostname or ""
            if host.lower() not in LOOPBACK_NAMES:
                raise RequestError(
                    f"this server answers only requests to a loopback address, not to {host!r}",
                    status=403,
                    kind="permission_error",
                )
        if auth and self._key is not None:
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._key):
                raise RequestError(
                    "invalid or missing API key: send 'Authorization: Bearer <key>'",
                    status=401,
                    kind="authentication_error",
                    code="invalid_api_key",
                )

    # --- routes ---------------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        self._check(request, auth=False)
        if self.engine.model() is None:
            return JSONResponse({"status": "no model loaded"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        self._check(request)
        model = self.engine.model()
        data = [] if model is None else [_model_card(model)]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, parse_chat_request)

    async def text(self, request: Request) -> Response:
        return await self._generate(request, parse_text_request)

    async def _generate(
        self, request: Request, parse: Callable[[Any, Limits, GenerationParams], CompletionRequest]
    ) -> Response:
        self._check(request)
        body = await _read_json(request, self.options.limits.max_body_bytes)
        req = parse(body, self.options.limits, self.options.base)
        model = self.engine.model()
        if model is None:
            raise RequestError("no model is loaded", status=503, kind="unavailable_error")
        items: asyncio.Queue[JobItem] = asyncio.Queue()
        job = EngineJob(
            params=req.params,
            emit=self._emitter(asyncio.get_running_loop(), items),
            messages=req.messages if req.kind == "chat" else None,
            prompt=req.prompt if req.kind == "text" else None,
            origin=f"{request.url.path} from {request.client.host if request.client else '?'}",
        )
        watcher = asyncio.create_task(_watch_disconnect(request.receive, job.cancel))
        try:
            self.activity.begin()
            self.engine.submit(job)
            first = await items.get()
            if isinstance(first, JobFailed):
                raise RequestError(first.message, status=first.status, kind=_error_kind(first.status))
            result = _Result(req, Reply(req, model.id), _off_reason(req, model, self.options.base))
            if req.stream:
                stream = _sse(result, first, items)
                return _EventStream(stream, job.cancel, watcher)
            item: JobItem = first
            while True:
                result.add(item)
                if isinstance(item, DoneEvent | JobFailed):
                    break
                item = await items.get()
            if result.failed is not None:
                raise RequestError(result.failed.message, status=result.failed.status, kind="server_error")
            return JSONResponse(result.response())
        except BaseException:
            job.cancel.cancel()  # the client is gone, the request failed, or the server is shutting down
            watcher.cancel()
            raise
        finally:
            if not req.stream:
                job.cancel.cancel()
                watcher.cancel()

    def _emitter(
        self, loop: asyncio.AbstractEventLoop, items: asyncio.Queue[JobItem]
    ) -> Callable[[JobItem], None]:
        """The job's `emit`, called from the engine's thread."""

        def emit(item: JobItem) -> None:
            if isinstance(item, DoneEvent | JobFailed):
                self.activity.end()
            with contextlib.suppress(RuntimeError):  # the event loop has closed: nobody is listening
                loop.call_soon_threadsafe(items.put_nowait, item)

        return emit


def _model_card(model: ServedModel) -> dict[str, Any]:
    info = model.info
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": "tandem",
        # Tandem's own: what a client (a second Tandem) shows, and that a request may switch speculation off.
        "tandem": {
            "version": __version__,
            "drafter": info.drafter,
            "drafter_note": info.drafter_note,
            "n_ctx": info.n_ctx,
            "speculative_per_request": True,
        },
    }


def _off_reason(req: CompletionRequest, model: ServedModel, base: GenerationParams) -> str | None:
    if not req.speculative:
        return "switched off for this request"
    if not base.spec.enabled:
        return "switched off on this server"
    if model.info.drafter is None:
        return model.info.drafter_note or "the model has no drafter"
    return None


def _error_kind(status: int) -> str:
    return {400: "invalid_request_error", 503: "unavailable_error"}.get(status, "server_error")


async def _read_json(request: Request, limit: int) -> Any:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise RequestError(f"the request body is larger than {limit} bytes", status=413)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise RequestError(f"the request body is larger than {limit} bytes", status=413)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"the request body is not valid JSON ({type(exc).__name__})") from None


async def _watch_disconnect(receive: Receive, cancel: CancelToken) -> None:
    """Cancel the job when the client hangs up (or the connection is closed by the server)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancel.cancel()
            return


class _Result:
    """What one job produced so far, and the response built from it."""

    def __init__(self, request: CompletionRequest, reply: Reply, off_reason: str | None) -> None:
        self.request = request
        self.reply = reply
        self.off_reason = off_reason
        self.notices: list[str] = []
        self.done: DoneEvent | None = None
        self.failed: JobFailed | None = None

    def add(self, item: JobItem) -> None:
        if isinstance(item, NoticeEvent):
            self.notices.append(item.message)
        elif isinstance(item, DoneEvent):
            self.done = item
            s = item.stats
            log.info(
                "%s: %d prompt + %d tokens, %.1f tok/s%s, stop: %s",
                self.reply.id,
                s.n_prompt,
                s.n_generated,
                s.decode_tps,
                f", drafted {s.spec.drafted} accepted {s.spec.accepted}" if s.spec else "",
                item.stop_reason.value,
            )
        elif isinstance(item, JobFailed):
            self.failed = item

    def usage(self) -> dict[str, Any]:
        s = self.done.stats if self.done else None
        return usage(s.n_prompt, s.n_generated, s.n_prompt_cached) if s else usage(0, 0)

    def timings(self) -> dict[str, Any]:
        assert self.done is not None
        return timings(
            self.done.stats, speculative=self.request.params.spec.enabled, off_reason=self.off_reason
        )

    def finish_reason(self) -> str:
        return FINISH_REASONS[self.done.stop_reason] if self.done else "stop"

    def response(self) -> dict[str, Any]:
        assert self.done is not None
        out = self.reply.complete(self.done.text, self.finish_reason(), self.usage())
        out["timings"] = self.timings()
        if self.notices:
            out["notices"] = self.notices
        return out


def _sse_line(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def _sse(result: _Result, first: JobItem, items: asyncio.Queue[JobItem]) -> AsyncIterator[bytes]:
    """Server-sent events as OpenAI streams them: a role chunk, content deltas, a closing chunk with the
    finish reason (and Tandem's `timings`, where llama-server puts them), the usage chunk when asked for,
    then `data: [DONE]`."""
    reply = result.reply
    if result.request.kind == "chat":
        yield _sse_line(reply.chunk("", first=True))
    elif result.request.echo and result.request.prompt:
        yield _sse_line(reply.chunk(result.request.prompt))
    item = first
    while True:
        result.add(item)
        if isinstance(item, TokenEvent) and item.text:
            yield _sse_line(reply.chunk(item.text))
        elif isinstance(item, JobFailed):
            yield _sse_line(error_body(item.message, kind=_error_kind(item.status)))
            return
        elif isinstance(item, DoneEvent):
            final = reply.chunk(None, result.finish_reason())
            final["timings"] = result.timings()
            if result.notices:
                final["notices"] = result.notices
            yield _sse_line(final)
            if result.request.include_usage:
                yield _sse_line(reply.usage_chunk(result.usage()))
            yield b"data: [DONE]\n\n"
            return
        item = await items.get()


class _EventStream(Response):
    """A text/event-stream response that cancels its job when the client hangs up or the stream ends early.
    Written out rather than StreamingResponse so disconnect handling does not depend on the ASGI spec
    version the server speaks."""

    media_type = "text/event-stream"

    def __init__(
        self, chunks: AsyncIterator[bytes], cancel: CancelToken, watcher: asyncio.Task[None]
    ) -> None:
        # Not Response.__init__: it would render an empty body and announce "content-length: 0".
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.chunks = chunks
        self.cancel = cancel
        self.watcher = watcher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in self.chunks:
                if self.cancel.cancelled:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-stream
            pass
        finally:
            self.cancel.cancel()  # the job is finished or nobody reads it any more
            self.watcher.cancel()
