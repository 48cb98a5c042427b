"""Chat templates from model files, rendered in an immutable sandboxed Jinja environment.

A GGUF's `tokenizer.chat_template` is untrusted code: the sandbox refuses attribute access to Python
internals (`__class__`, `__globals__`, ...) and mutation of passed-in objects; rendering time and output
size are bounded so a hostile template cannot hang or exhaust the app.
"""

from __future__ import annotations

import datetime
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


def _environment() -> ImmutableSandboxedEnvironment:
    # The sandbox itself caps range() at 100k items; output size and render time are capped in render().
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
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
        try:
            self._compiled = _environment().from_string(self.text)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"the model's chat template does not compile: {exc}") from exc

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
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
