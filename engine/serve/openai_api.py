"""The OpenAI API as Tandem serves it: read and check a request body, shape responses, stream chunks and
error bodies. No HTTP here (engine.serve.http carries these over the wire), so every rule is testable on
plain dicts.

A request is untrusted input: every field is type-checked and bounded before the engine sees it, and what
is wrong is said in OpenAI's error shape (`{"error": {"message", "type", "param", "code"}}`). Fields Tandem
does not use (`user`, `logit_bias`, penalties of 0 ...) are ignored, as llama-server does; fields whose
meaning Tandem cannot honour (`n` > 1, tools, images) are refused rather than silently dropped.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from engine.config import ChatMessage, GenerationParams, SamplingParams
from engine.events import StopReason

MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
MAX_MESSAGES = 4096


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask for. `default_max_tokens` applies when a request does not say."""

    max_body_bytes: int = 4 * 2**20
    max_tokens: int = 4096
    default_max_tokens: int = 1024


class RequestError(Exception):
    """A request the server refuses: becomes an HTTP error with an OpenAI-style body."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.kind = kind
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, kind=self.kind, param=self.param, code=self.code)


def error_body(
    message: str, *, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A checked request: a chat (messages) or a raw-text completion (prompt)."""

    kind: Literal["chat", "text"]
    model: str
    params: GenerationParams
    stream: bool
    include_usage: bool = False
    messages: tuple[ChatMessage, ...] = ()
    prompt: str = ""
    echo: bool = False  # /v1/completions: start the text with the prompt
    speculative: bool = True


# --- reading requests ---------------------------------------------------------------------------------------
def parse_chat_request(body: Any, limits: Limits, base: GenerationParams) -> CompletionRequest:
    """`POST /v1/chat/completions`. `base`: the server's own defaults (its speculation settings)."""
    data = _object(body)
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    if len(raw) > MAX_MESSAGES:
        raise RequestError(f"at most {MAX_MESSAGES} messages per request", param="messages")
    if data.get("tools") or data.get("functions"):
        raise RequestError("tools and function calling are not supported by this server", param="tools")
    messages = tuple(_message(m, i) for i, m in enumerate(raw))
    params, speculative = _params(data, limits, base)
    return CompletionRequest(
        kind="chat",
        model=_model(data),
        params=params,
        stream=_bool(data, "stream", False),
        include_usage=_include_usage(data),
        messages=messages,
        speculative=speculative,
    )


def parse_text_request(body: Any, limits: Limits, base: GenerationParams) -> CompletionRequest:
    """`POST /v1/completions`: one prompt string (or a list holding exactly one)."""
    data = _object(body)
    prompt = data.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise RequestError("'prompt' must be a string (one prompt per request)", param="prompt")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError("'prompt' must be a string", param="prompt")
    if data.get("suffix"):
        raise RequestError("'suffix' (fill-in-the-middle) is not supported", param="suffix")
    params, speculative = _params(data, limits, base)
    return CompletionRequest(
        kind="text",
        model=_model(data),
        params=params,
        stream=_bool(data, "stream", False),
        include_usage=_include_usage(data),
        prompt=prompt,
        echo=_bool(data, "echo", False),
        speculative=speculative,
    )


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _model(data: dict[str, Any]) -> str:
    model = data.get("model", "")
    if model is None:
        return ""
    if not isinstance(model, str) or len(model) > 512:
        raise RequestError("'model' must be a string", param="model")
    return model


def _message(raw: Any, index: int) -> ChatMessage:
    param = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise RequestError(f"{param} must be an object with 'role' and 'content'", param=param)
    role = raw.get("role")
    if role == "developer":  # OpenAI's newer name for the system prompt
        role = "system"
    if role in ("tool", "function"):
        raise RequestError(f"{param}: tool messages are not supported by this server", param=param)
    if role not in ("system", "user", "assistant"):
        raise RequestError(f"{param}.role must be 'system', 'user' or 'assistant'", param=f"{param}.role")
    return ChatMessage(role, _content(raw.get("content"), f"{param}.content"))


def _content(content: Any, param: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: text only
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise RequestError(f"{param}: only text content parts are supported", param=param)
            texts.append(part["text"])
        return "".join(texts)
    raise RequestError(f"{param} must be a string or an array of text parts", param=param)


def _params(data: dict[str, Any], limits: Limits, base: GenerationParams) -> tuple[GenerationParams, bool]:
    n = data.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise RequestError("only n = 1 is supported", param="n")
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    param = "max_completion_tokens" if "max_completion_tokens" in data else "max_tokens"
    if max_tokens is None:
        max_tokens = limits.default_max_tokens
    elif not _is_int(max_tokens) or max_tokens < 1:
        raise RequestError(f"'{param}' must be a positive integer", param=param)
    elif max_tokens > limits.max_tokens:
        raise RequestError(
            f"'{param}' is {max_tokens}, more than this server allows ({limits.max_tokens})", param=param
        )
    sampling = SamplingParams(
        temperature=_number(data, "temperature", 0.8, 0.0, 2.0),
        top_p=_number(data, "top_p", 0.95, 0.0, 1.0),
        top_k=int(_number(data, "top_k", 40, 0, 1_000_000, integer=True)),  # llama-server's extension
        min_p=_number(data, "min_p", 0.05, 0.0, 1.0),
        repeat_penalty=_number(data, "repeat_penalty", 1.0, 0.0, 10.0),
        seed=_seed(data),
    )
    speculative = _bool(data, "speculative", True)
    params = GenerationParams(
        sampling=sampling,
        max_tokens=int(max_tokens),
        stop=_stop(data.get("stop")),
        spec=replace(base.spec, enabled=base.spec.enabled and speculative),
    )
    return params, speculative


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(
    data: dict[str, Any], name: str, default: float, low: float, high: float, *, integer: bool = False
) -> float:
    value = data.get(name)
    if value is None:
        return default
    ok = _is_int(value) if integer else (isinstance(value, int | float) and not isinstance(value, bool))
    if not ok or not math.isfinite(value) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise RequestError(f"'{name}' must be {kind} from {low:g} to {high:g}", param=name)
    return float(value)


def _seed(data: dict[str, Any]) -> int | None:
    seed = data.get("seed")
    if seed is None:
        return None
    if not _is_int(seed) or not -(2**63) <= seed < 2**64:
        raise RequestError("'seed' must be an integer", param="seed")
    return int(seed) % 2**32  # llama.cpp's samplers take a 32-bit seed


def _bool(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"'{name}' must be true or false", param=name)
    return value


def _include_usage(data: dict[str, Any]) -> bool:
    options = data.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", param="stream_options")
    return _bool(options, "include_usage", False)


def _stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise RequestError("'stop' must be a string or an array of strings", param="stop")
    if len(items) > MAX_STOP_STRINGS:
        raise RequestError(f"at most {MAX_STOP_STRINGS} stop strings", param="stop")
    if any(len(s) > MAX_STOP_CHARS for s in items):
        raise RequestError(f"stop strings are limited to {MAX_STOP_CHARS} characters", param="stop")
    return tuple(s for s in items if s)


# --- shaping responses --------------------------------------------------------------------------------------
FINISH_REASONS = {
    StopReason.EOG: "stop",
    StopReason.STOP_STRING: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.CONTEXT_FULL: "length",
    StopReason.CANCELLED: "stop",
}


@dataclass(slots=True)
class Reply:
    """The identity of one response, shared by its chunks."""

    request: CompletionRequest
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        prefix = "chatcmpl" if self.request.kind == "chat" else "cmpl"
        self.id = self.id or f"{prefix}-{secrets.token_hex(12)}"

    @property
    def object(self) -> str:
        return "chat.completion" if self.request.kind == "chat" else "text_completion"

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def chunk(
        self, text: str | None, finish_reason: str | None = None, *, first: bool = False
    ) -> dict[str, Any]:
        """One streamed piece: a text delta, or (text None) the closing chunk with its finish reason."""
        if self.request.kind == "chat":
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return {**self._head("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        return {**self._head("text_completion"), "choices": [choice]}

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.request.kind == "chat" else "text_completion"
        return {**self._head(obj), "choices": [], "usage": usage}

    def complete(self, text: str, finish_reason: str, usage: dict[str, Any]) -> dict[str, Any]:
        """The whole (non-streamed) response, before `timings` is added."""
        if self.request.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        else:
            if self.request.echo:
                text = self.request.prompt + text
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head(self.object), "choices": [choice], "usage": usage}


def usage(n_prompt: int, n_generated: int, n_cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": n_prompt,
        "completion_tokens": n_generated,
        "total_tokens": n_prompt + n_generated,
        "prompt_tokens_details": {"cached_tokens": n_cached},
    }
