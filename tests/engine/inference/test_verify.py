"""verify_draft as a pure function, and losslessness of sample-and-match with synthetic logits.

The synthetic "target model" maps a context to logits deterministically, so a plain run (one position at a
time) and a speculative run (a drafter proposes, verify_draft decides) can be compared token for token.
Because the sampler's randomness is keyed by (seed, position), the emitted tokens must be *exactly* the
plain samples whatever the drafter proposes; a frequency check confirms they follow the target's
distribution.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from engine.config import SamplingParams
from engine.inference.sampling import Sampler
from engine.inference.verify import Verdict, verify_draft

VOCAB = 12


def target_logits(context: Sequence[int]) -> np.ndarray:
    """A deterministic 'model': logits depend on the last three tokens (peaked enough to repeat itself)."""
    return _logits_of(tuple(context[-3:]))


@functools.cache
def _logits_of(tail: tuple[int, ...]) -> np.ndarray:
    key = 1469598103934665603
    for t in tail:
        key = ((key ^ (t + 1)) * 1099511628211) & ((1 << 64) - 1)
    rng = np.random.default_rng(key)
    logits = (rng.standard_normal(VOCAB) * 2.0).astype(np.float32)
    logits.setflags(write=False)  # shared between calls: nobody may modify it
    return logits


def drafter_logits(context: Sequence[int]) -> np.ndarray:
    """A different model: a drafter whose distribution is close to the target's, but not equal."""
    return target_logits(context) + np.linspace(-1.0, 1.0, VOCAB, dtype=np.float32)


def plain_run(sampler: Sampler, prompt: Sequence[int], n: int) -> list[int]:
    ctx = list(prompt)
    for _ in range(n):
        ctx.append(sampler.sample(target_logits(ctx), len(ctx), ctx))
    return ctx[len(prompt) :]


Proposer = Callable[[list[int], int, np.random.Generator], list[int]]


def uniform_proposer(ctx: list[int], k: int, rng: np.random.Generator) -> list[int]:
    return [int(t) for t in rng.integers(0, VOCAB, size=k)]


def adversarial_proposer(ctx: list[int], k: int, rng: np.random.Generator) -> list[int]:
    """Always the target's *least* likely token: every draft is wrong at once."""
    out: list[int] = []
    for _ in range(k):
        out.append(int(np.argmin(target_logits([*ctx, *out]))))
    return out


def greedy_proposer(ctx: list[int], k: int, rng: np.random.Generator) -> list[int]:
    """The target's mode: a biased drafter that a naive 'accept if likely' rule would over-accept."""
    out: list[int] = []
    for _ in range(k):
        out.append(int(np.argmax(target_logits([*ctx, *out]))))
    return out


def other_distribution_proposer(ctx: list[int], k: int, rng: np.random.Generator) -> list[int]:
    out: list[int] = []
    for _ in range(k):
        logits = drafter_logits([*ctx, *out]).astype(np.float64)
        cdf = np.cumsum(np.exp(logits - logits.max()))
        out.append(min(VOCAB - 1, int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))))
    return out


def speculative_run(
    sampler: Sampler, prompt: Sequence[int], n: int, propose: Proposer, k: int, rng: np.random.Generator
) -> tuple[list[int], int, int]:
    """Returns (emitted tokens, drafted, accepted)."""
    ctx = list(prompt)
    drafted = accepted = 0
    while len(ctx) - len(prompt) < n:
        room = n - (len(ctx) - len(prompt)) - 1
        draft = propose(ctx, min(k, room), rng)
        base = list(ctx)

        def pick(i: int, base: list[int] = base, draft: list[int] = draft) -> int:
            row_ctx = [*base, *draft[:i]]
            return sampler.sample(target_logits(row_ctx), len(row_ctx), row_ctx)

        verdict = verify_draft(draft, pick)
        drafted += len(draft)
        accepted += verdict.n_accepted
        ctx.extend(verdict.emitted)
    return ctx[len(prompt) :], drafted, accepted


# --- verify_draft itself ------------------------------------------------------------------------------


def picker(targets: Sequence[int]) -> tuple[Callable[[int], int], list[int]]:
    calls: list[int] = []

    def pick(i: int) -> int:
        calls.append(i)
        return targets[i]

    return pick, calls


def test_full_accept_gives_a_bonus_token() -> None:
    pick, calls = picker([5, 6, 7, 8])
    assert verify_draft([5, 6, 7], pick) == Verdict(n_accepted=3, emitted=(5, 6, 7, 8))
    assert calls == [0, 1, 2, 3]


def test_partial_reject_emits_the_targets_recovered_token() -> None:
    pick, calls = picker([5, 9, 7, 8])
    assert verify_draft([5, 6, 7], pick) == Verdict(n_accepted=1, emitted=(5, 9))
    assert calls == [0, 1]  # rows after the mismatch are never sampled


def test_full_reject() -> None:
    pick, calls = picker([4, 6, 7, 8])
    assert verify_draft([5, 6, 7], pick) == Verdict(n_accepted=0, emitted=(4,))
    assert calls == [0]


def test_empty_draft_is_a_plain_step() -> None:
    pick, calls = picker([3])
    assert verify_draft([], pick) == Verdict(n_accepted=0, emitted=(3,))
    assert calls == [0]


def test_rows_after_a_mismatch_are_never_sampled() -> None:
    def pick(i: int) -> int:
        if i > 1:
            raise AssertionError(f"row {i} sampled after the mismatch at row 1")
        return [1, 99][i]

    assert verify_draft([1, 2, 3, 4], pick).emitted == (1, 99)


def test_verify_with_the_real_sampler_at_temperature() -> None:
    sampler = Sampler(SamplingParams(temperature=1.0, seed=3), 3)
    prompt = [1, 2, 3]
    expected = plain_run(sampler, prompt, 4)

    def pick(i: int) -> int:
        ctx = [*prompt, *expected[:i]]
        return sampler.sample(target_logits(ctx), len(ctx), ctx)

    assert verify_draft(expected[:3], pick) == Verdict(3, tuple(expected))
    wrong = [expected[0], (expected[1] + 1) % VOCAB, expected[2]]
    assert verify_draft(wrong, pick) == Verdict(1, tuple(expected[:2]))


# --- losslessness -------------------------------------------------------------------------------------

PROPOSERS = {
    "uniform": uniform_proposer,
    "adversarial": adversarial_proposer,
    "greedy": greedy_proposer,
    "other-distribution": other_distribution_proposer,
}
SAMPLINGS = {
    "greedy": SamplingParams(temperature=0.0),
    "t0.7": SamplingParams(temperature=0.7, top_k=0, top_p=1.0, min_p=0.0),
    "t1.5-filters": SamplingParams(temperature=1.5, top_k=6, top_p=0.9, min_p=0.05),
    "penalty": SamplingParams(temperature=1.0, repeat_penalty=1.3, repeat_last_n=8),
}


@pytest.mark.parametrize("sampling", list(SAMPLINGS))
@pytest.mark.parametrize("proposer", list(PROPOSERS))
def test_speculative_tokens_equal_plain_tokens(proposer: str, sampling: str) -> None:
    params = SAMPLINGS[sampling]
    total_drafted = total_accepted = 0
    for seed in range(40):
        sampler = Sampler(params, seed)
        prompt = [seed % VOCAB, (seed * 7) % VOCAB]
        plain = plain_run(sampler, prompt, 24)
        rng = np.random.default_rng(seed)
        k = 1 + seed % 4
        spec, drafted, accepted = speculative_run(sampler, prompt, 24, PROPOSERS[proposer], k, rng)
        assert spec == plain, f"seed {seed}: speculative output differs from plain"
        total_drafted += drafted
        total_accepted += accepted
    assert total_drafted > 0
    if proposer == "adversarial" and sampling == "greedy":
        assert total_accepted == 0  # the least likely token is never the argmax
    if proposer == "greedy" and sampling == "greedy":
        assert total_accepted == total_drafted  # the oracle path: every draft accepted
    if proposer in ("greedy", "other-distribution"):
        assert total_accepted > 0  # accept and reject paths both exercised


def tempered(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    return p / p.sum()


def chi_square_pooled(counts: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    """Chi-square with the small-expectation cells pooled into one; returns (statistic, dof)."""
    keep = expected >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] < 5:
        observed, exp = observed[:-1], exp[:-1]
    return float(((observed - exp) ** 2 / exp).sum()), len(observed) - 1


@pytest.mark.parametrize("proposer", list(PROPOSERS))
def test_emitted_tokens_follow_the_target_distribution(proposer: str) -> None:
    # Per generated position j, over many seeds: observed tokens against the sum of the target's
    # conditional distributions p(. | prompt + emitted[:j]); and the same counts against the drafter's
    # distribution, which must be rejected (the check has power).
    temperature, n_seeds, n_tokens = 0.9, 2000, 3
    prompt = [3, 1, 4]
    params = SamplingParams(temperature=temperature, top_k=0, top_p=1.0, min_p=0.0)
    counts = np.zeros((n_tokens, VOCAB))
    expected = np.zeros((n_tokens, VOCAB))
    expected_draft = np.zeros((n_tokens, VOCAB))
    for seed in range(n_seeds):
        sampler = Sampler(params, seed)
        rng = np.random.default_rng(seed)
        emitted, _, _ = speculative_run(sampler, prompt, n_tokens, PROPOSERS[proposer], 3, rng)
        for j in range(n_tokens):
            ctx = [*prompt, *emitted[:j]]
            counts[j, emitted[j]] += 1
            expected[j] += tempered(target_logits(ctx), temperature)
            expected_draft[j] += tempered(drafter_logits(ctx), temperature)
    for j in range(n_tokens):
        stat, dof = chi_square_pooled(counts[j], expected[j])
        assert stat < 19.5 + 2.0 * dof, f"position {j}: chi-square {stat:.1f} with {dof} dof"
        wrong, wdof = chi_square_pooled(counts[j], expected_draft[j])
        assert wrong > 19.5 + 2.0 * wdof
