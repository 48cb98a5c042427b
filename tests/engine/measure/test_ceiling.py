"""The benchmark's yardsticks from a cost curve: the ceiling for the acceptance a run achieved, and the
oracle schedule over a lookup drafter's proposals (synthetic curves and token streams, no model)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from engine.inference.drafters.base import Draft
from engine.inference.drafters.ngram import NGramDrafter
from engine.measure.ceiling import accepted_per_step, achieved_ceiling, oracle_ceiling, priced_policy

STEPPED = {1: 1.0, 2: 1.35, 3: 1.55, 4: 1.72, 5: 2.0, 6: 2.2, 7: 2.45, 8: 2.63, 9: 3.52}


def cost(n: int) -> float:
    return STEPPED.get(n, 3.52 + 0.25 * (n - 9))


def test_steps_from_provenance() -> None:
    # first token from the prompt; then a step accepting 2 drafts, a plain step, a step accepting 3 that
    # the end of the reply cut before the target's own token.
    assert accepted_per_step([0, 1, 2, 0, 0, 1, 2, 3]) == [2, 0, 2]
    assert accepted_per_step([0]) == []


def test_achieved_ceiling_verifies_exactly_what_was_accepted() -> None:
    provenance = [0, *[1, 2, 3, 4, 5, 6, 7, 0] * 4]  # four steps of 7 accepted + 1 own token
    assert achieved_ceiling(provenance, cost) == pytest.approx(8 / 2.63)
    assert achieved_ceiling([0, 0, 0, 0], cost) == pytest.approx(1.0)  # plain steps: no gain possible
    # Where a bigger batch is cheaper, the ceiling uses it.
    assert achieved_ceiling(provenance, lambda n: 1.0 if n == 1 else (2.0 if n == 9 else 3.0)) == 4.0


class Oracle:
    """Proposes the true continuation of `truth` for `good` tokens, then wrong tokens."""

    def __init__(self, truth: Sequence[int], good: int) -> None:
        self.truth, self.good = list(truth), good

    def draft(self, context: Sequence[int], k: int) -> Draft:
        right = self.truth[len(context) : len(context) + min(k, self.good)]
        return Draft(tuple(right) + (-1,) * (k - len(right)))


def test_oracle_schedules_the_cheapest_path() -> None:
    prompt = [100]
    generated = list(range(1, 34))  # 33 tokens: the first from the prompt, 32 after it
    # Every proposal is right for 7 tokens: the best is 4 steps of 8 tokens at t(8).
    assert oracle_ceiling(Oracle(prompt + generated, 7).draft, prompt, generated, cost, 64) == pytest.approx(
        32 / (4 * 2.63)
    )
    # Proposals never right: plain decoding is the ceiling.
    assert oracle_ceiling(Oracle(prompt + generated, 0).draft, prompt, generated, cost, 64) == pytest.approx(
        1.0
    )


def test_oracle_with_the_real_drafter_on_a_copy() -> None:
    source = list(range(200, 260))
    prompt = [*source, 1]
    generated = source[:40]
    speedup = oracle_ceiling(NGramDrafter().draft, prompt, generated, cost, 64)
    # The second token has no match yet (one plain step); from then on the lookup finds the copy and the
    # remaining 38 tokens come in one step of 37 drafts.
    assert speedup == pytest.approx(39 / (cost(1) + cost(38)))


def test_priced_policy_drafts_a_copy_and_stays_plain_on_new_text() -> None:
    """Tandem's own controller and drafter priced on a text: a copy of the prompt drafts long at once and
    comes within reach of the oracle; text with nothing to copy costs exactly plain decoding."""
    curve = {n: (STEPPED.get(n, cost(n)),) * 3 for n in (*STEPPED, 16, 17, 32, 33, 48, 64)}
    source = list(range(200, 300))
    prompt = [*source, 1]
    copy = source[:80]
    speedup, ks, accepted = priced_policy(prompt, copy, curve)
    oracle = oracle_ceiling(NGramDrafter().draft, prompt, copy, cost, 64)
    assert 0.8 * oracle < speedup <= oracle + 1e-9
    assert max(ks) >= 16 and sum(accepted) == sum(ks)  # a clean copy: every drafted token was right
    fresh = list(range(1000, 1080))
    speedup, ks, _ = priced_policy(prompt, fresh, curve)
    assert speedup == pytest.approx(1.0) and not any(ks)
