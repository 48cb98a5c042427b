"""A chat as Markdown, and title suggestion.

Everything here works on plain values, not on the database, so it can be tested and reused alone.
`render_markdown` turns the exchange document (`exchange.py`) into Markdown; `suggest_title` names a chat
after its first message.
"""

from __future__ import annotations

import re
import time
from typing import Any

from app.history.versions import path_indexes
from engine.measure.ab import DISTURBED, ABReport

DEFAULT_TITLE = "New chat"
TITLE_CHARS = 48


# ---------------------------------------------------------------- Markdown

_STATUS_NOTES = {
    "stopped": "stopped by the user",
    "interrupted": "interrupted: Tandem closed while this reply was being written",
    "error": "ended with an error",
    "streaming": "still being written when exported",
}
# CommonMark fenced code: up to 3 spaces of indent, then 3+ backticks (no backtick after) or 3+ tildes.
_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}(?=[^`]*$)|~{3,})")


def render_markdown(doc: dict[str, Any]) -> str:
    """Markdown for an export document: the conversation shown, each reply with the model that wrote it, and
    the other versions of a turn (Regenerate, Edit) quoted under it. Message text is Markdown already and is
    kept as written, except that a code block left open (a reply stopped mid-code) is closed so it cannot
    swallow the rest of the file."""
    chat = doc["chat"]
    messages = doc["messages"]
    parents = [m.get("parent") for m in messages] if all("parent" in m for m in messages) else None
    shown = path_indexes(parents, chat.get("current")) if parents is not None else range(len(messages))
    out = [f"# {_one_line(chat['title'])}", "", f"*{_escape(_provenance_line(doc, shown))}*", ""]
    system_prompt = chat.get("settings", {}).get("system_prompt")
    if isinstance(system_prompt, str) and system_prompt.strip():
        out += ["**System prompt**", "", _fenced(system_prompt), ""]
    for i in shown:
        message = messages[i]
        out += ["---", "", f"## {message['role'].capitalize()}", ""]
        if message["role"] == "system":
            out += [_fenced(message["content"]), ""]
        elif message["content"]:
            out += [close_open_fence(message["content"]).rstrip("\n"), ""]
        footer = _footer(message)
        if footer:
            out += [f"*{footer}*", ""]
        ab = _ab_line(message)
        if ab:
            out += [f"*{ab}*", ""]
        if parents is not None:
            out += _other_versions(messages, parents, i)
    return "\n".join(out).rstrip("\n") + "\n"


def _provenance_line(doc: dict[str, Any], shown: Any) -> str:
    """'Exported from Tandem on 2025-05-01 14:03 · replies by SmolLM2 135M Instruct'."""
    when = doc.get("exported_at")
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(when)) if isinstance(when, int | float) else "?"
    models = list(dict.fromkeys(m.get("model") for i in shown if (m := doc["messages"][i]).get("model")))
    by = f" · replies by {', '.join(models)}" if models else ""
    return f"Exported from Tandem on {stamp}{by}"


def _other_versions(messages: list[dict[str, Any]], parents: list[int | None], index: int) -> list[str]:
    siblings = [i for i, p in enumerate(parents) if p == parents[index]]
    if len(siblings) < 2:
        return []
    out = [f"*Version {siblings.index(index) + 1} of {len(siblings)} of this turn; the others:*", ""]
    for n, i in enumerate(siblings, 1):
        if i == index:
            continue
        other = messages[i]
        footer = _footer(other)
        out.append(f"> **Version {n}**" + (f" · *{footer}*" if footer else ""))
        out.append(">")
        text = close_open_fence(other["content"]).rstrip("\n") if other["content"] else "(empty)"
        out += [f"> {line}".rstrip() for line in text.split("\n")]
        out.append("")
    return out


def close_open_fence(text: str) -> str:
    """Append the closing fence of a fenced code block that `text` opens and never closes (CommonMark)."""
    opener: tuple[str, str] | None = None  # (indent, fence) of the block we are inside
    for line in text.splitlines():
        if opener is None:
            match = _FENCE_OPEN.match(line)
            if match:
                opener = (match.group(1), match.group(2))
        else:
            fence = opener[1]
            stripped = line.lstrip(" ")
            closer = re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*"
            if len(line) - len(stripped) <= 3 and re.fullmatch(closer, stripped):
                opener = None
    if opener is None:
        return text
    return text.rstrip("\n") + "\n" + opener[0] + opener[1]


def _fenced(text: str) -> str:
    """Text as a literal code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text.rstrip(chr(10))}\n{fence}"


def _footer(message: dict[str, Any]) -> str:
    parts = []
    model = message.get("model")
    if isinstance(model, str) and model:
        drafter = message.get("drafter")
        parts.append(f"{model} + {drafter}" if isinstance(drafter, str) and drafter else model)
    summary = message.get("summary") or {}
    if summary.get("n_generated"):
        parts.append(f"{summary['n_generated']} tokens, {summary['decode_tps']:.1f} tok/s")
    if "acceptance_rate" in summary and summary.get("drafted"):
        parts.append(
            f"{summary['drafter']}: {summary['acceptance_rate']:.0%} of drafts accepted, "
            f"{summary['mean_accepted_length']:.2f} tokens per step"
        )
    if message["status"] in _STATUS_NOTES:
        parts.append(_STATUS_NOTES[message["status"]])
    return _escape(" · ".join(parts))


def _ab_line(message: dict[str, Any]) -> str:
    """The A/B result kept with a message in one line (with the explanation when the outputs differ)."""
    report = ABReport.from_dict(message.get("ab"))
    if report is None:
        return ""
    line = (
        f"A/B on this prompt (seed {report.seed}): plain {report.plain_tps:.1f} tok/s, speculative "
        f"{report.spec_tps:.1f} tok/s ({report.speedup:.2f}×{', ' + DISTURBED if report.disturbed else ''}); "
        f"first token {report.plain_ttft_s:.2f} s vs {report.spec_ttft_s:.2f} s; outputs {report.verdict()}"
    )
    if not report.identical:
        line += ". " + report.explanation()
    return _escape(line)


def _escape(text: str) -> str:
    # Footers are wrapped in *...*: escape characters that would end or restyle them.
    return re.sub(r"([\\*_`\[\]<])", r"\\\1", text)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or DEFAULT_TITLE


# ---------------------------------------------------------------- titles


def suggest_title(text: str, max_chars: int = TITLE_CHARS) -> str:
    """A short chat title from the first user message: its first sentence of prose, Markdown stripped.

    Code blocks are skipped unless the message is only code, in which case the first code line is used."""
    lines = text.splitlines()
    prose: list[str] = []
    code: list[str] = []
    in_code = False
    for line in lines:
        if _FENCE_OPEN.match(line):
            in_code = not in_code
            continue
        (code if in_code else prose).append(line)
    candidates = [ln for ln in prose if ln.strip()] or [ln for ln in code if ln.strip()]
    if not candidates:
        return DEFAULT_TITLE
    line = candidates[0].strip()
    line = re.sub(r"^(#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)+", "", line)  # heading, quote, list markers
    line = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line)  # links and images -> their text
    line = re.sub(r"(\*\*|__|`)", "", line)
    line = " ".join(line.split())
    sentence = re.split(r"(?<=[.!?])\s+", line, maxsplit=1)[0]
    sentence = sentence.rstrip(".:;, ") if not sentence.endswith("...") else sentence
    if len(sentence) > max_chars:
        cut = sentence[: max_chars - 1]
        if " " in cut[max_chars // 2 :]:
            cut = cut[: cut.rindex(" ")]
        sentence = cut.rstrip(" ,.;:-") + "…"
    return sentence or DEFAULT_TITLE
