"""Prompt-lookup drafting on plain token lists (no model needed)."""

from __future__ import annotations

import pytest

from engine.config import SpecParams
from engine.inference.drafters.ngram import NGramDrafter


def test_proposes_what_followed_the_longest_matching_suffix() -> None:
    d = NGramDrafter(2, 4)
    #          0  1  2  3  4  5  6  7  8  9
    context = [1, 2, 3, 4, 9, 9, 2, 3, 7, 8, 5, 2, 3, 4]
    # suffix (2, 3, 4) occurred at 1..3, followed by 9 9 2 3 ...; the 2-gram (3, 4) alone would match too.
    assert d.draft(context, 5).tokens == (9, 9, 2, 3, 7)
    assert d.draft(context, 2).tokens == (9, 9)


def test_most_recent_occurrence_wins() -> None:
    d = NGramDrafter(2, 2)
    assert d.draft([5, 6, 1, 5, 6, 2, 5, 6], 1).tokens == (2,)


def test_no_match_says_why() -> None:
    draft = NGramDrafter(2, 4).draft([1, 2, 3, 4, 5], 4)
    assert draft.tokens == () and draft.reason == "drafter has no match"


def test_a_match_shorter_than_n_min_is_not_used() -> None:
    context = [7, 1, 2, 3, 7]  # only the 1-gram (7,) repeats
    assert NGramDrafter(2, 4).draft(context, 3).tokens == ()
    assert NGramDrafter(1, 4).draft(context, 3).tokens == (1, 2, 3)


def test_context_growth_is_indexed_incrementally_and_a_new_context_resets() -> None:
    d = NGramDrafter(2, 3)
    ctx = [1, 2, 3]
    assert d.draft(ctx, 2).tokens == ()
    ctx += [4, 1, 2]
    assert d.draft(ctx, 2).tokens == (3, 4)
    assert d.draft([8, 9, 8, 9], 2).tokens == (8, 9)  # a different conversation: index rebuilt


def test_request_settings_change_the_ngram_sizes() -> None:
    d = NGramDrafter(2, 4)
    context = [7, 1, 2, 3, 7]
    assert d.draft(context, 2).tokens == ()
    d.configure(SpecParams(ngram_min=1, ngram_max=1))
    assert (d.n_min, d.n_max) == (1, 1)
    assert d.draft(context, 2).tokens == (1, 2)
    with pytest.raises(ValueError, match="n-gram sizes"):
        d.configure(SpecParams(ngram_min=3, ngram_max=2))


def test_a_recent_match_continues_the_repetition_past_the_end_of_the_context() -> None:
    d = NGramDrafter(2, 4)
    context = [9, 1, 2, 3, 1, 2, 3, 1, 2]  # period 3: the latest (1, 2) ends 3 tokens back
    assert d.draft(context, 7).tokens == (3, 1, 2, 3, 1, 2, 3)
    assert d.draft([5, 5, 5], 4).tokens == (5, 5, 5, 5)  # period 1


def test_the_occurrence_matching_furthest_back_wins_and_says_how_far() -> None:
    d = NGramDrafter(2, 2)
    # (5, 6) occurs three times; only the first occurrence is preceded by 3, as the context's end is.
    context = [3, 5, 6, 1, 9, 5, 6, 2, 8, 5, 6, 4, 3, 5, 6]
    draft = d.draft(context, 2)
    assert draft.tokens == (1, 9) and draft.match_len == 3
    # With no longer match anywhere, the most recent occurrence wins.
    assert d.draft([*context, 7, 5, 6], 1).tokens == (7,)


def test_a_long_copy_reports_a_long_match() -> None:
    source = list(range(100, 140))
    d = NGramDrafter()
    draft = d.draft([*source, 1, 2, *source[:30]], 8)
    assert draft.tokens == tuple(source[30:38])
    assert draft.match_len == 30  # followed back across the whole copied span


def test_a_verify_step_keeps_the_index_and_a_rewind_resets_it() -> None:
    d = NGramDrafter()
    context = [1, 2, 3, 4, 1, 2]
    d.draft(context, 2)
    indexed = d._index
    d.observe([2, 3, 4], len(context) - 1, 2)  # the step's batch starts with the context's last token
    assert d._index is indexed
    d.observe([9], 2, 1)  # the target went back: a new prompt or an edit
    assert d._index is not indexed and d._tokens == []


def test_a_counter_copied_line_by_line_is_disputed_at_its_value() -> None:
    """`age: 20`, `age: 21`: the next line matches both earlier lines as far back as they go, and they went on
    with different values: the proposal says which token is a guess. A plain copy has no dispute."""
    line = [50, 51, 52, 53, 54, 55, 56, 57, 58]  # `  { name: 'John', age:`
    rest = [60, 61, 62, 63]  # `, created: Date.now() },`
    context = [*rest, *line, 20, *rest, *line, 21, *rest, *line]
    draft = NGramDrafter().draft(context, 6)
    assert draft.tokens == (21, *rest, 50)  # the latest line, matched furthest back
    assert draft.disputed_at == 0
    # Earlier along the line, the proposal agrees with both earlier lines up to the value.
    early = NGramDrafter().draft(context[:-6], 8)
    assert early.tokens == (*line[3:], 21, 60) and early.disputed_at == 6
    copy = NGramDrafter().draft([*rest, *line, 20, *rest, 9, *rest, *line[:3]], 6)
    assert copy.disputed_at is None


def test_only_an_occurrence_matched_about_as_far_back_is_a_rival() -> None:
    """A 2-token phrase that went on differently elsewhere says little against a 14-token match; an
    occurrence matched 10 tokens back says as much as the best one."""
    long_match = list(range(100, 112))
    best = [*long_match, 7, 8, 5, 9, 9]
    end = [*long_match, 7, 8]
    draft = NGramDrafter(2, 4).draft([*best, 3, 7, 8, 6, 4, 4, *end], 3)
    assert draft.tokens == (5, 9, 9) and draft.match_len == 14 and draft.disputed_at is None
    rival = [*long_match[-8:], 7, 8, 6, 4, 4]
    draft = NGramDrafter(2, 4).draft([*best, 3, *rival, *end], 3)
    assert draft.tokens == (5, 9, 9) and draft.disputed_at == 0
