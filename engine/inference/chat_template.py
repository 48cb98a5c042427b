"""Chat templates from model files, rendered in an immutable sandboxed Jinja environment.

A GGUF's `tokenizer.chat_template` is untrusted code: the sandbox refuses attribute access to Python
internals (`__class__`, `__globals__`, ...) and mutation of passed-in objects; rendering time and output
size are bounded so a hostile template cannot hang or exhaust the app.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.config import ChatMessage
from engine.errors import TemplateError

# ChatML: what llama.cpp falls back to as well when a model ships no template.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Gemma's turn format, for Gemma-family files that ship without a template (e.g. some Gemma 3 270M GGUFs).
GEMMA_TEMPLATE = (
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{% if message['role'] == 'system' %}{{ '<start_of_turn>user\n' + message['content'] + '\n\n' }}"
    "{% else %}{% if not (loop.index0 > 0 and messages[loop.index0 - 1]['role'] == 'system') %}"
    "{{ '<start_of_turn>' + role + '\n' }}{% endif %}{{ message['content'] + '<end_of_turn>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

MAX_OUTPUT_CHARS = 4_000_000
MAX_RENDER_SECONDS = 2.0


class _TemplateRaise(Exception):
    pass


def _raise_exception(message: str) -> None:
    raise _TemplateRaise(message)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


MAX_REPEAT = 100_000  # longest string/list a template may build with `*` or pad to with center/ljust/...
MAX_EXPONENT = 64
_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox blocks Python internals; this also bounds the single expressions that could hang or
    exhaust memory before the chunk-wise time/size checks in render() get a chance to run."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise jinja2.exceptions.SecurityError(f"exponent {right} too large in chat template")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise jinja2.exceptions.SecurityError(
                        "string or list repetition too large in chat template"
                    )
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        name = getattr(__obj, "__name__", "")
        if isinstance(getattr(__obj, "__self__", None), str):
            too_wide = any(isinstance(a, int) and a > MAX_REPEAT for a in args)
            if name in _WIDTH_METHODS and too_wide:
                raise jinja2.exceptions.SecurityError(f"str.{name} width too large in chat template")
            if name in ("format", "format_map") and any(
                int(w) > MAX_REPEAT for w in re.findall(r"\d+", __obj.__self__)
            ):
                raise jinja2.exceptions.SecurityError("format width too large in chat template")
        return super().call(__context, __obj, *args, **kwargs)


def _bounded_center(value: str, width: int = 80) -> str:
    if width > MAX_REPEAT:
        raise jinja2.exceptions.SecurityError("center width too large in chat template")
    return str(value).center(width)


def _environment() -> ImmutableSandboxedEnvironment:
    # The sandbox itself caps range() at 100k items; output size and render time are capped in render().
    env = _BoundedSandbox(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["center"] = _bounded_center
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    import json

    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


class ChatTemplate:
    """Renders conversations for one model. `source` says where the template came from."""

    def __init__(
        self, template: str | None, *, bos_token: str = "", eos_token: str = "", architecture: str = ""
    ) -> None:
        fallback = GEMMA_TEMPLATE if architecture.startswith("gemma") else DEFAULT_TEMPLATE
        self.source = (
            "model" if template else ("default (Gemma)" if fallback is GEMMA_TEMPLATE else "default (ChatML)")
        )
        self.text = template or fallback
        self.bos_token = bos_token
        self.eos_token = eos_token
        # A template that does not compile is reported when rendering, like any other template failure, so
        # that render_with_fallback can fall back to ChatML instead of the model failing to load.
        self._compiled: jinja2.Template | None = None
        self._compile_error: str | None = None
        try:
            self._compiled = _environment().from_string(self.text)
        except jinja2.TemplateError as exc:
            self._compile_error = f"the model's chat template does not compile: {exc}"

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        if self._compiled is None:
            raise TemplateError(self._compile_error or "the chat template does not compile")
        payload = [{"role": m.role, "content": m.content} for m in messages]
        try:
            out = self._render_bounded(payload, add_generation_prompt)
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"the chat template tried something unsafe and was stopped: {exc}") from exc
        except _TemplateRaise as exc:
            raise TemplateError(f"the chat template rejected the conversation: {exc}") from exc
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise TemplateError(f"the chat template failed to render: {type(exc).__name__}: {exc}") from exc
        except (RecursionError, OverflowError, MemoryError) as exc:
            raise TemplateError(f"the chat template exceeded a limit: {exc}") from exc
        return out

    def _render_bounded(self, payload: list[dict[str, str]], add_generation_prompt: bool) -> str:
        assert self._compiled is not None
        chunks: list[str] = []
        size = 0
        deadline = time.monotonic() + MAX_RENDER_SECONDS
        for chunk in self._compiled.generate(
            messages=payload,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        ):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateError("the chat template produced an absurdly long prompt")
            if time.monotonic() > deadline:
                raise TemplateError("the chat template took too long to render")
        return "".join(chunks)


def render_with_fallback(template: ChatTemplate, messages: Sequence[ChatMessage]) -> tuple[str, str | None]:
    """Render with the model's template; if it fails, render ChatML and return why (shown to the user)."""
    try:
        return template.render(messages), None
    except TemplateError as exc:
        fallback = ChatTemplate(None, bos_token=template.bos_token, eos_token=template.eos_token)
        return fallback.render(messages), f"{exc}; used the default ChatML template instead"
