"""Chat templates are untrusted code from model files: hostile ones end in TemplateError, real-world ones
render, and render_with_fallback turns a failure into ChatML plus a note."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from engine.config import CancelToken, ChatMessage
from engine.errors import TemplateError
from engine.inference.chat_template import (
    DEFAULT_TEMPLATE,
    ChatTemplate,
    TemplateCancelled,
    render_with_fallback,
)
from tests import REPO_ROOT

CONVERSATION = [
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Hello"),
    ChatMessage("assistant", "Hi!"),
    ChatMessage("user", "What is 2+2?"),
]

HOSTILE = {
    "attribute escape": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler escape": "{{ cycler.__init__.__globals__.os }}",
    "format escape": "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "mutation of messages": "{% set _ = messages.append({'role': 'user', 'content': 'x'}) %}ok",
    "mutation of a message": "{% set _ = messages[0].update({'content': 'x'}) %}ok",
    "huge range": "{% for i in range(10 ** 9) %}x{% endfor %}",
    "huge output": "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}"
    "{% endfor %}",
    "raise_exception": "{{ raise_exception('Conversation roles must alternate user/assistant') }}",
    "syntax error": "{% for message in messages %}{{ message.content }",
    "unknown filter": "{{ messages | no_such_filter }}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "type error": "{{ messages + 1 }}",
}


def render(template: str, messages: list[ChatMessage] = CONVERSATION) -> str:
    return ChatTemplate(template).render(messages)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_templates_raise_template_error(name: str) -> None:
    with pytest.raises(TemplateError):
        render(HOSTILE[name])


@pytest.mark.parametrize(
    "template",
    [
        "{{ raise_exception.__globals__ }}",
        "{{ '{0.__class__}'.format(messages) }}",
        "{{ messages.__class__ }}{{ raise_exception.__code__ }}",
        "{{ (messages | attr('__class__')) }}",
    ],
)
def test_single_unsafe_attribute_renders_as_nothing_or_fails(template: str) -> None:
    # Jinja's sandbox turns a lone unsafe attribute into an empty undefined; a chained one raises. Either way
    # nothing of Python's internals may reach the prompt.
    try:
        out = render(template)
    except TemplateError:
        return
    assert out == ""


def test_mutation_attempt_leaves_the_callers_messages_alone() -> None:
    messages = list(CONVERSATION)
    with pytest.raises(TemplateError):
        render(HOSTILE["mutation of messages"], messages)
    assert messages == CONVERSATION


def test_raise_exception_message_reaches_the_user() -> None:
    with pytest.raises(TemplateError, match="roles must alternate"):
        render(HOSTILE["raise_exception"])


# A real-world style template (Llama-2/Mistral family): bos_token, a system prompt folded into the first
# user turn, raise_exception when roles do not alternate.
MISTRAL_STYLE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{{ bos_token }}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)


def test_real_world_template_renders_with_bos_and_eos() -> None:
    t = ChatTemplate(MISTRAL_STYLE, bos_token="<s>", eos_token="</s>")
    assert t.source == "model"
    out = t.render(CONVERSATION)
    assert out == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST] Hi! </s>[INST] What is 2+2? [/INST]"
    )


def test_real_world_template_rejects_bad_role_order() -> None:
    t = ChatTemplate(MISTRAL_STYLE, bos_token="<s>", eos_token="</s>")
    with pytest.raises(TemplateError, match="alternate"):
        t.render([ChatMessage("user", "a"), ChatMessage("user", "b")])


def test_tojson_and_strftime_now_are_available() -> None:
    out = render("{{ messages[1] | tojson }}|{{ strftime_now('%Y') | length }}")
    assert out == '{"role": "user", "content": "Hello"}|4'


def test_generation_prompt_flag() -> None:
    t = ChatTemplate(None)
    msgs = [ChatMessage("user", "Hi")]
    assert t.render(msgs) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert t.render(msgs, add_generation_prompt=False) == "<|im_start|>user\nHi<|im_end|>\n"


def test_no_template_means_chatml() -> None:
    t = ChatTemplate(None)
    assert t.source == "default (ChatML)" and t.text == DEFAULT_TEMPLATE


def test_render_with_fallback_uses_chatml_and_explains_why() -> None:
    bad = ChatTemplate(HOSTILE["attribute escape"], bos_token="<s>")
    text, note = render_with_fallback(bad, CONVERSATION[1:2])
    assert text == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    assert note is not None and "ChatML" in note and "unsafe" in note


def test_render_with_fallback_passes_a_good_template_through() -> None:
    good = ChatTemplate(MISTRAL_STYLE, bos_token="<s>", eos_token="</s>")
    text, note = render_with_fallback(good, CONVERSATION)
    assert note is None and text.startswith("<s>[INST]")


# --- resource exhaustion in a single expression ---------------------------------------------------------
# One expression can build a huge value (or compute a huge number) before any clock is looked at: the
# sandbox bounds such operations themselves. Run in a child process with an address-space cap and a timeout
# so that the test machine is never at risk.

_CHILD = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
    sys.path.insert(0, sys.argv[2])
    from engine.inference.chat_template import ChatTemplate
    from engine.config import ChatMessage
    from engine.errors import TemplateError
    try:
        ChatTemplate(sys.argv[1]).render([ChatMessage("user", "hi")])
        print("RENDERED")
    except TemplateError:
        print("REFUSED")
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across fork+exec.
    hwm_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print("PEAK_RSS_MB", hwm_kb // 1024)
    """
)


def _render_in_child(template: str, timeout: float) -> tuple[str, int] | None:
    """(outcome, peak RSS in MB), or None if rendering did not finish within `timeout` seconds."""
    root = str(REPO_ROOT)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, template, root], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None
    lines = proc.stdout.split()
    return lines[0], int(lines[-1])


@pytest.mark.subprocess
def test_huge_power_is_refused_quickly() -> None:
    result = _render_in_child("{{ (9 ** (9 ** 8)) > 0 }}", timeout=4.0)
    assert result is not None and result[0] == "REFUSED"


@pytest.mark.subprocess
def test_huge_string_repetition_is_refused_before_allocation() -> None:
    result = _render_in_child("{{ 'x' * 100000000 }}", timeout=20.0)
    assert result is not None and result[0] == "REFUSED"
    assert result[1] < 100  # MB: the 100 MB string was never built


def test_template_that_does_not_compile_falls_back_too() -> None:
    # A model whose template has a syntax error must still be usable (with ChatML), not fail to load.
    broken = ChatTemplate(HOSTILE["syntax error"])
    text, note = render_with_fallback(broken, CONVERSATION[1:2])
    assert text == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    assert note is not None and "does not compile" in note


# --- time: templates that loop without printing -----------------------------------------------------------
HANGING = {
    "nested 99999^2 (issue 13)": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}"
    "{% endfor %}",
    "1000^3 (issue 13)": "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "loop in a macro": "{% macro f() %}{% for i in range(99999) %}{% endfor %}{% endmacro %}"
    "{% for i in range(99999) %}{{ f() }}{% endfor %}",
    "sorting in a loop": "{% for i in range(99999) %}{{ range(99999)|list|sort|first }}{% endfor %}",
    "busy namespace": "{% set ns = namespace(n=0) %}{% for i in range(99999) %}{% for j in range(99999) %}"
    "{% set ns.n = ns.n + 1 %}{% endfor %}{% endfor %}{{ ns.n }}",
}


@pytest.mark.parametrize("name", list(HANGING))
def test_a_hanging_template_falls_back_within_3_s_and_is_not_run_again(name: str) -> None:
    template = ChatTemplate(HANGING[name])
    started = time.perf_counter()
    text, note = render_with_fallback(template, CONVERSATION[1:2])
    elapsed = time.perf_counter() - started
    print(f"\n{name}: fell back in {elapsed:.2f} s")
    assert elapsed < 3.0
    assert text == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    assert note is not None and "more than 2 s" in note and "ChatML" in note
    started = time.perf_counter()
    assert render_with_fallback(template, CONVERSATION[1:2])[1] == note
    assert time.perf_counter() - started < 0.2  # stopped once: straight to the fallback


def test_cancel_stops_a_hanging_template_at_once() -> None:
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel).start()
    started = time.perf_counter()
    with pytest.raises(TemplateCancelled):
        render_with_fallback(ChatTemplate(HANGING["nested 99999^2 (issue 13)"]), CONVERSATION, cancel)
    assert time.perf_counter() - started < 0.6


def test_the_watchdog_leaves_tracing_as_it_found_it() -> None:
    seen: list[str] = []

    def tracer(frame: object, event: str, arg: object) -> None:
        seen.append(event)

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        render("{{ messages | length }}")
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(old)


MEMORY_BOMBS = {
    "doubling with ~": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "doubling with +": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "doubling a list": "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}"
    "{% endfor %}{{ ns.l|length }}",
    "join filter": "{{ (['x' * 100000] * 100000)|join }}",
    "join method": "{{ ''.join(['x' * 100000] * 100000) }}",
    "replace method": "{{ ('x' * 100000).replace('x', 'x' * 100000) }}",
    "replace filter": "{{ ('x' * 100000)|replace('x', 'x' * 100000) }}",
    "recursive macro": "{% macro f(s, n) %}{% if n < 40 %}{{ f(s ~ s, n + 1) }}{% endif %}{% endmacro %}"
    "{{ f('x', 0) }}",
    "indent width": "{{ 'a\\nb'|indent(10 ** 9) }}",
    "format width": "{{ '%*s'|format(10 ** 9, 'x') }}",
}


@pytest.mark.subprocess
@pytest.mark.parametrize("name", list(MEMORY_BOMBS))
def test_a_template_cannot_build_a_huge_string(name: str) -> None:
    result = _render_in_child(MEMORY_BOMBS[name], timeout=10.0)
    assert result is not None and result[0] == "REFUSED", result
    assert result[1] < 200  # MB peak: nothing huge was ever built
