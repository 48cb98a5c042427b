"""Replies that break Markdown renderers: loops of small models, unclosed brackets, deep nesting. Each is
a few kilobytes at most, like a reply of a looping model; tests/app/test_render.py and
tests/app/test_untrusted_input.py render them and time it."""

from __future__ import annotations

HOSTILE_REPLIES = {
    "list loop (issue 13, 991 chars)": "- " * 495 + "x",
    "unclosed brackets (issue 13)": "[" * 8000,
    "open links": "[a](" * 2000,
    "open images": "![" * 3000,
    "bracket parens": "[](" * 3000,
    "nested quotes": ">" * 1000 + " deep",
    "numbered loop": "1. " * 400 + "x",
    "list and quote loop": "- > " * 300 + "x",
    "indented list 200 deep": "\n".join(" " * (2 * i) + "- item" for i in range(200)),
    "4 KB of nested lists": ("- " * 20 + "x\n") * 100,
    "emphasis pairs": "*a " * 3000,
    "emphasis nesting": "*_" * 2000,
    "backslashes": "\\" * 10000,
    "wide table": "|" + "a|" * 1000 + "\n|" + "-|" * 1000 + "\n|" + "b|" * 1000,
    "reference flood": "[a]: b\n" * 2000 + "[a]" * 2000,
    "autolinks": "<http://" * 2000,
    "raw html": "<a " * 3000,
    "one long line": "word " * 20000,
    "huge code block": "```python\n" + "x = [" * 20000 + "\n```",
}
