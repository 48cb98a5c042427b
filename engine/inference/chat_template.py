"""Chat templates from model files, rendered in an immutable sandboxed Jinja environment.

A GGUF's `tokenizer.chat_template` is untrusted code: it runs in engine.inference.template_sandbox, bounded
in what it may touch, in the size of what it builds and in time (MAX_RENDER_SECONDS, wherever the time goes).
A template that was stopped for taking too long is not run again: the default template renders instead,
with a note, so a hanging template costs one reply two seconds, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jinja2

from engine.config import CancelToken, ChatMessage
from engine.errors import TemplateError
from engine.inference.template_sandbox import (
    MAX_OUTPUT_CHARS,
    TEMPLATE_FILENAME,
    TemplateRaise,
    compile_template,
)
from engine.watchdog import Stop, Watchdog

JINJA_DIR = str(Path(jinja2.__file__).parent)  # Jinja's runtime and sandbox: where a render may be stopped

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

MAX_RENDER_SECONDS = 2.0


class TemplateTimeout(TemplateError):
    """The template ran past MAX_RENDER_SECONDS and was stopped."""


class TemplateCancelled(TemplateError):
    """The request was cancelled while its template rendered (no fallback: nothing is wanted)."""


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
        self.stopped: str | None = None  # why a render of this template was stopped: it is not run again
        try:
            self._compiled = compile_template(self.text)
        except jinja2.TemplateError as exc:
            self._compile_error = f"the model's chat template does not compile: {exc}"

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        cancel: CancelToken | None = None,
        seconds: float = MAX_RENDER_SECONDS,
    ) -> str:
        if self._compiled is None:
            raise TemplateError(self._compile_error or "the chat template does not compile")
        if self.stopped is not None:
            raise TemplateTimeout(self.stopped)
        payload = [{"role": m.role, "content": m.content} for m in messages]
        watchdog = Watchdog(seconds, cancel, trace_lines_of=TEMPLATE_FILENAME, stop_in=(JINJA_DIR,))
        try:
            with watchdog:
                out = self._render_bounded(payload, add_generation_prompt)
        except Stop:
            if watchdog.reason == "cancelled":
                raise TemplateCancelled("cancelled while the chat template rendered") from None
            self.stopped = f"the model's chat template took more than {seconds:g} s to render and was stopped"
            raise TemplateTimeout(self.stopped) from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"the chat template tried something unsafe and was stopped: {exc}") from exc
        except TemplateRaise as exc:
            raise TemplateError(f"the chat template rejected the conversation: {exc}") from exc
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise TemplateError(f"the chat template failed to render: {type(exc).__name__}: {exc}") from exc
        except (RecursionError, OverflowError, MemoryError) as exc:
            raise TemplateError(f"the chat template exceeded a limit: {exc}") from exc
        return out

    def _render_bounded(self, payload: list[dict[str, str]], add_generation_prompt: bool) -> str:
        assert self._compiled is not None
        chunks: list[str] = []
        size = 0  # time is the watchdog's business; size is checked here, chunk by chunk
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
        return "".join(chunks)


def render_with_fallback(
    template: ChatTemplate, messages: Sequence[ChatMessage], cancel: CancelToken | None = None
) -> tuple[str, str | None]:
    """Render with the model's template; if it fails, render ChatML and return why (shown to the user).
    A cancel while rendering raises TemplateCancelled."""
    try:
        return template.render(messages, cancel=cancel), None
    except TemplateCancelled:
        raise
    except TemplateError as exc:
        fallback = ChatTemplate(None, bos_token=template.bos_token, eos_token=template.eos_token)
        return fallback.render(messages, cancel=cancel), f"{exc}; used the default ChatML template instead"
