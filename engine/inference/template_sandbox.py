"""Where chat templates run: an immutable Jinja sandbox with bounded sizes, and a watchdog bounding time.

A GGUF's `tokenizer.chat_template` is untrusted code. Jinja's sandbox refuses Python internals
(`__class__`, `__globals__`, ...) and mutation of passed-in objects; `_BoundedSandbox` also bounds every
operation that could build a huge string or list in one step (`*`, `**`, `+`, `~`, join, replace, padding
widths). Time is bounded by engine.watchdog, told to follow every line compiled from TEMPLATE_FILENAME: it
stops a render wherever it is, also inside loops that print nothing, which a check between output chunks
never sees.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable
from typing import Any

import jinja2
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 4_000_000  # longest prompt, and longest string a template may build
MAX_REPEAT = 100_000  # longest string/list a template may build with `*` or pad to with center/ljust/...
MAX_EXPONENT = 64
TEMPLATE_FILENAME = "<template>"  # what Jinja names code compiled from a string
_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


class TemplateRaise(Exception):
    """raise_exception() called by the template (its message is meant for the user)."""


def _unsafe(what: str) -> jinja2.exceptions.SecurityError:
    return jinja2.exceptions.SecurityError(f"{what} too large in chat template")


def _check_size(n: int, what: str = "string") -> None:
    if n > MAX_OUTPUT_CHARS:
        raise _unsafe(what)


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox blocks Python internals; this also bounds the single expressions that could exhaust
    memory (one multiplication can ask for terabytes long before the watchdog looks at the clock)."""

    intercepted_binops = frozenset(["*", "**", "+"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise jinja2.exceptions.SecurityError(f"exponent {right} too large in chat template")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise _unsafe("string or list repetition")
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            _check_size(len(left) + len(right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            too_wide = any(isinstance(a, int) and a > MAX_REPEAT for a in args)
            if name in _WIDTH_METHODS and too_wide:
                raise _unsafe(f"str.{name} width")
            if name in ("format", "format_map") and any(
                int(w) > MAX_REPEAT for w in re.findall(r"\d+", owner)
            ):
                raise _unsafe("format width")
            if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
                count = owner.count(args[0]) if args[0] else len(owner) + 1
                _check_size(len(owner) + count * max(0, len(args[1]) - len(args[0])))
            if name == "join" and args:
                items = list(args[0])
                _check_size(sum(len(str(x)) for x in items) + len(owner) * len(items))
                args = (items, *args[1:])
        return super().call(__context, __obj, *args, **kwargs)


def bounded_join(seq: Iterable[Any]) -> str:
    """Jinja's `str_join` (what `~` and `{{ a }}{{ b }}` inside expressions compile to), bounded."""
    items = [str(x) for x in seq]
    _check_size(sum(map(len, items)))
    return "".join(items)


@jinja2.pass_environment
def _join_filter(env: jinja2.Environment, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    if attribute is not None:
        getter = make_attrgetter(env, attribute)
        value = (getter(x) for x in value)
    items = [str(x) for x in value]
    _check_size(sum(map(len, items)) + len(d) * len(items))
    return d.join(items)


def _bounded_center(value: str, width: int = 80) -> str:
    if width > MAX_REPEAT:
        raise _unsafe("center width")
    return str(value).center(width)


def _bounded(name: str, original: Any, check: Any) -> Any:
    """A built-in filter with a size check in front (the call() intercept never sees filters)."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return original(*args, **kwargs)

    bounded.__name__ = name
    for attr in ("jinja_pass_arg",):  # keep @pass_eval_context / @pass_environment markers
        if hasattr(original, attr):
            setattr(bounded, attr, getattr(original, attr))
    return bounded


def _check_replace(*args: Any, **kwargs: Any) -> None:
    # do_replace(eval_ctx, s, old, new, count=None)
    s, old, new = (list(args[1:4]) + [None, None, None])[:3]
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        count = s.count(old) if old else len(s) + 1
        _check_size(len(s) + count * max(0, len(new) - len(old)))


def _check_indent(s: Any = "", width: Any = 4, *args: Any, **kwargs: Any) -> None:
    width = kwargs.get("width", width)
    if isinstance(width, int) and width > MAX_REPEAT or isinstance(width, str) and len(width) > MAX_REPEAT:
        raise _unsafe("indent width")


def _check_format(value: Any = "", *args: Any, **kwargs: Any) -> None:
    numbers = [a for a in (*args, *kwargs.values()) if isinstance(a, int)]
    widths = re.findall(r"\d+", value) if isinstance(value, str) else []
    if any(n > MAX_REPEAT for n in numbers) or any(int(w) > MAX_REPEAT for w in widths):
        raise _unsafe("format width")


def _raise_exception(message: str) -> None:
    raise TemplateRaise(message)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


def environment() -> ImmutableSandboxedEnvironment:
    # The sandbox itself caps range() at 100k items; output size is capped by ChatTemplate, time by Watchdog.
    env = _BoundedSandbox(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["center"] = _bounded_center
    env.filters["join"] = _join_filter
    env.filters["replace"] = _bounded("replace", env.filters["replace"], _check_replace)
    env.filters["indent"] = _bounded("indent", env.filters["indent"], _check_indent)
    env.filters["format"] = _bounded("format", env.filters["format"], _check_format)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def compile_template(source: str) -> jinja2.Template:
    """Compile in the bounded sandbox; `~` and string concatenation in expressions go through
    bounded_join (the compiled module imports Jinja's unbounded `str_join` by name)."""
    template = environment().from_string(source)
    namespace = template.root_render_func.__globals__
    namespace["str_join"] = bounded_join
    namespace["markup_join"] = bounded_join
    return template
