"""Markdown -> safe HTML, the streaming block split, provenance colouring, footers and stored stats."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from app import render
from app.records import ChatSettings, MessageItem, apply_stats_dict, stats_to_dict
from app.theme import DARK, LIGHT
from engine.stats import GenerationStats, SpecRecorder
from tests.app.fake_engine import SCRIPT, split_tokens
from tests.app.hostile_markdown import HOSTILE_REPLIES


@pytest.fixture(params=[LIGHT, DARK], ids=["light", "dark"])
def renderer(request):
    return render.Renderer(request.param)


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        "<div onclick='x()'>block html</div>\n\nafter",
        "inline <b>bold</b> and <img src=x onerror=alert(1)>",
        "<iframe src='https://evil.example'></iframe>",
        "<style>body{display:none}</style>",
    ],
)
def test_raw_html_is_escaped(renderer, source):
    html, _ = renderer.document(source)
    for tag in ("<script", "<div", "<b>", "<img", "<iframe", "<style"):
        assert tag not in html
    assert "&lt;" in html


def test_images_become_links_and_nothing_is_fetched(renderer):
    html, _ = renderer.document("![cat](https://evil.example/cat.png) and ![](file:///etc/hosts)")
    assert "<img" not in html
    assert '<a href="https://evil.example/cat.png">[image: cat]</a>' in html
    assert '<a href="file:///etc/hosts">[image: file:///etc/hosts]</a>' in html


def test_markdown_features(renderer):
    html, codes = renderer.document(SCRIPT)
    assert "<strong>quick answer</strong>" in html
    assert "<ol>" in html and html.count("<li>") == 2
    assert "<table" in html and "<th>Drafter</th>" in html
    assert '<a href="https://example.com/docs">the docs</a>' in html
    assert codes == ["def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)"]
    assert 'href="tandem-copy:0"' in html
    assert "<span style=" in html  # Pygments highlighting, inline styles (Qt ignores CSS classes)


def test_code_blocks_are_escaped_and_numbered(renderer):
    text = "```html\n<b>x</b>\n```\n\ntext\n\n```\nplain & <i>\n```\n\n~~~unknown-lang\n<y>\n~~~"
    html, codes = renderer.document(text)
    assert codes == ["<b>x</b>", "plain & <i>", "<y>"]
    assert "<b>x" not in html and "&lt;" in html
    assert [f"tandem-copy:{i}" in html for i in range(3)] == [True, True, True]


def test_unclosed_fence_renders_as_code_while_streaming(renderer):
    blocks = render.split_blocks("intro\n\n```python\nx = 1\n")
    assert blocks[-1] == render.Block("code", "x = 1\n", "python", closed=False)
    html, codes = renderer.document("intro\n\n```python\nx = 1\n")
    assert codes == ["x = 1\n"]


def test_split_is_prefix_stable_and_renders_like_the_whole():
    """What makes incremental streaming correct: every block finished in a prefix of the text is also a
    block of the full text, and rendering block by block gives what rendering the whole would."""
    text = SCRIPT * 2 + "\n\n- item one\n\n- item two\n\n1. one\n2. two\n\nend"
    full = render.split_blocks(text)
    prefix = ""
    for piece in split_tokens(text):
        prefix += piece
        finished = render.split_blocks(prefix)[:-1]
        assert full[: len(finished)] == finished
    r = render.Renderer(LIGHT)
    joined = "\n".join(
        r.code(b, i) if b.kind == "code" else r.markdown(b.text)
        for i, b in zip(_code_indices(full), full, strict=True)
    )
    assert joined == r.document(text)[0]


def _code_indices(blocks):
    n = 0
    for b in blocks:
        yield n
        n += b.kind == "code"


def test_blank_line_before_list_item_does_not_split():
    blocks = render.split_blocks("Steps:\n\n1. one\n\n2. two\n\nDone.\n")
    assert [b.text for b in blocks] == ["Steps:\n\n1. one\n\n2. two", "Done."]


def test_provenance_shades_the_rendered_markdown_by_depth(qapp):
    from PySide6.QtGui import QTextDocument

    from app.provenance import draft_runs, shade

    pieces = [("Say", 0), (" **", 1), ("hi", 1), ("**", 2), (" <b> 🚀", 0), ("\n\n```py", 0), ("\nx = 1", 3),
              ("\n```", 0), ("\n🚀", 0), ("deep", 7)]  # fmt: skip
    assert draft_runs(pieces)[:2] == [(3, 8, 1), (8, 10, 2)]
    html, codes = render.Renderer(LIGHT).document("".join(t for t, _ in pieces))
    doc = QTextDocument()
    doc.setHtml(html)
    assert shade(doc, pieces, LIGHT) > 0
    shaded: dict[str, str] = {}  # shade -> the text shaded with it, in order
    block = doc.begin()
    while block.isValid():
        for fragment in (it.fragment() for it in block):
            fmt = fragment.charFormat()
            if fmt.background().style() != fmt.background().style().NoBrush:
                color = fmt.background().color().name()
                shaded[color] = shaded.get(color, "") + fragment.text()
        block = block.next()
    # Bold text stays bold and is shaded by its draft depth; so is code, inside its highlighted block;
    # depths past the last shade share it; the code block's "Copy" line is never shaded.
    assert shaded == {LIGHT.prov_depth[0]: " hi", LIGHT.prov_depth[2]: "x = 1", LIGHT.prov_depth[3]: "deep"}
    assert codes == ["x = 1"]


def _stats(spec: bool) -> GenerationStats:
    recorder = SpecRecorder("MTP (Gemma 4 assistant)")
    recorder.record_step(3, 2)
    recorder.record_step(3, 0)
    recorder.provenance.extend([1, 2, 0, 0])
    recorder.reasons["low acceptance"] = 2
    return GenerationStats(
        n_prompt=10,
        n_prompt_cached=4,
        prompt_s=0.1,
        ttft_s=0.25,
        n_generated=4,
        decode_s=0.5,
        total_s=0.8,
        spec=recorder.snapshot() if spec else None,
    )


def test_footer_text():
    item = MessageItem(1, "assistant", "abcd", stats=_stats(True), stop_reason="max_tokens")
    assert render.footer_text(item) == (
        "6.0 tok/s · first token 0.25 s · 4 tokens · drafted 6, accepted 2 (33%) · mean accepted length 2.00"
        " · MTP (Gemma 4 assistant) · stopped at the token limit"
    )
    plain = MessageItem(2, "assistant", "x", stats=_stats(False), stop_reason="eog", status="interrupted")
    assert "speculation off" in render.footer_text(plain) and "interrupted" in render.footer_text(plain)


def test_stats_round_trip_through_json():
    import json

    item = MessageItem(1, "assistant", "ab", stats=_stats(True), stop_reason="eog", drafter="MTP")
    item.pieces = [("a", 1), ("b", 0)]
    item.notices = ["dropped 1 old message"]
    stored = json.loads(json.dumps(stats_to_dict(item)))
    again = MessageItem(1, "assistant", "ab")
    apply_stats_dict(again, stored)
    assert again.stats == item.stats
    assert (again.pieces, again.notices, again.drafter, again.stop_reason) == (
        item.pieces,
        item.notices,
        "MTP",
        "eog",
    )
    # Unreadable stats (an older or newer app) leave the message readable, just without figures.
    broken = MessageItem(1, "assistant", "ab")
    apply_stats_dict(broken, {"n_prompt": 3, "app": {"pieces": "nonsense"}})
    assert broken.stats is None and broken.pieces == []


def test_chat_settings_from_bad_dict_falls_back_to_defaults():
    good = ChatSettings(
        system_prompt="s", temperature=0.2, top_p=0.5, max_tokens=9, seed=3, speculative=False
    )
    assert ChatSettings.from_dict(good.to_dict()) == good
    messy = {"temperature": "hot", "max_tokens": 12.0, "seed": True, "speculative": 1, "extra": 5}
    assert ChatSettings.from_dict(messy) == dataclasses.replace(ChatSettings(), max_tokens=12)
    params = good.to_params()
    assert (params.sampling.temperature, params.sampling.top_p, params.sampling.seed) == (0.2, 0.5, 3)
    assert params.max_tokens == 9 and params.spec.enabled is False


# --- hostile replies ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(HOSTILE_REPLIES))
def test_a_hostile_reply_renders_quickly_and_is_never_lost(name):
    renderer = render.Renderer(LIGHT)
    source = HOSTILE_REPLIES[name]
    started = time.perf_counter()
    html, _ = renderer.document(source)
    elapsed = (time.perf_counter() - started) * 1000
    print(f"\n{name}: {elapsed:.1f} ms, {len(html)} chars of HTML")
    assert elapsed < 250  # the budget is 25 ms per block; generous for shared CI machines
    visible = re.sub(r"<[^>]+>", "", html)
    for word in re.findall(r"[a-z]{2,}", source)[:3]:
        assert word in visible  # the text is there, rendered or plain


def test_the_looping_list_reply_renders_as_a_list_capped_in_depth():
    html, _ = render.Renderer(LIGHT).document("- " * 495 + "x")
    assert html.count("<ul>") == render.MAX_NESTING
    assert html.rstrip().endswith("</ul>") and "- - -" in html and "x" in html


def test_nesting_within_the_cap_is_untouched():
    source = "- a\n  - b\n    - c\n> quote\n>> deeper\n1. one\n   2. two"
    assert render.cap_nesting(source) == source


def test_a_block_that_makes_markdown_fail_is_shown_as_text(monkeypatch):
    renderer = render.Renderer(LIGHT)

    def broken(source):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(renderer._md, "convert", broken)
    html, _ = renderer.document("# Title\n\nsome *text*")
    assert "# Title" in html and "some *text*" in html and renderer.fallbacks == 1


def test_a_slow_block_stays_plain_while_it_grows():
    renderer = render.Renderer(LIGHT)
    slow = "[" * 8000
    renderer.markdown(slow)
    assert renderer.fallbacks == 1
    started = time.perf_counter()
    renderer.markdown(slow + "[[[ more")  # streaming: the same block, longer
    assert (time.perf_counter() - started) < 0.02 and renderer.fallbacks == 2


def test_a_slow_code_block_stays_escaped_while_it_grows(monkeypatch):
    renderer = render.Renderer(LIGHT)
    calls = []

    def too_slow(*args):
        calls.append(args)
        raise render.Stop  # what the watchdog raises when highlighting runs out of time

    monkeypatch.setattr(render, "highlight", too_slow)
    block = render.Block("code", "x = [" * 100, "python", False)
    assert "x = [x = [" in renderer.code(block, 0) and renderer.fallbacks == 1
    grown = render.Block("code", block.text + "1, 2", "python", False)  # streaming: the same block, longer
    assert "1, 2" in renderer.code(grown, 0) and len(calls) == 1 and renderer.fallbacks == 2


def test_a_huge_code_block_is_cut_once_not_highlighted(monkeypatch):
    stream = render.StreamRenderer(render.Renderer(LIGHT))
    text = "Intro\n\n```python\n" + "x = [" * 20000 + "\n```"
    cuts = []
    huge = stream._huge
    monkeypatch.setattr(stream, "_huge", lambda *a: cuts.append(a) or huge(*a))
    monkeypatch.setattr(render, "highlight", lambda *a: pytest.fail("a huge block is shown as text"))
    html, codes = stream.render(text, budget_s=0.03)
    for _ in range(3):  # a reopened chat renders over several turns: the huge block is cut in the first
        assert stream.render(text, budget_s=0.03)[0] == html
    assert len(cuts) == 1 and codes == ["x = [" * 20000] and "Copy" in html


def test_a_time_budget_leaves_the_rest_for_later_and_finishes_it():
    stream = render.StreamRenderer(render.Renderer(LIGHT))
    text = "\n\n".join(f"Paragraph **{i}** with [a link](https://example.com/{i})." for i in range(200))
    html, _ = stream.render(text, budget_s=0.0)  # the first block always gets its time: progress
    assert stream.pending and "<strong>0</strong>" in html and "**199**" in html  # the rest as text for now
    for _ in range(400):
        html, _ = stream.render(text, budget_s=0.01)
        if not stream.pending:
            break
    assert not stream.pending and "<strong>199</strong>" in html
