"""The position-keyed sampler: determinism, independence, the exact sampling distribution, and the filters.

Statistical tests use fixed seeds, so they are deterministic; thresholds are generous (p ~ 1e-5) and each
one is paired with a check that the same statistic rejects a slightly wrong distribution, so a test that
could never fail would be noticed.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.config import SamplingParams
from engine.inference.sampling import Sampler, apply_repeat_penalty, position_seed, top2_margin

MASK64 = (1 << 64) - 1
LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp replaces this seed with a random one


def pure_sampling(temperature: float, seed: int = 7, **kw: float) -> Sampler:
    """Temperature only: no top-k, top-p or min-p truncation."""
    params = SamplingParams(temperature=temperature, top_k=0, top_p=1.0, min_p=0.0, seed=seed, **kw)
    return Sampler(params, seed)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


# Upper 1e-5 quantiles of the chi-square distribution (dof -> critical value).
CHI2_CRIT = {1: 19.5, 3: 25.9, 7: 33.1, 9: 37.3, 11: 41.3}


# --- position_seed ------------------------------------------------------------------------------------


def test_position_seed_is_deterministic_and_32_bit() -> None:
    for seed, pos in [(0, 0), (1, 5), (2**31 - 1, 10**6), (123456789012, 3)]:
        a, b = position_seed(seed, pos), position_seed(seed, pos)
        assert a == b
        assert 0 <= a < 2**32


def test_position_seed_has_no_collisions_over_positions_and_seeds() -> None:
    seeds = {position_seed(7, p) for p in range(20000)}
    assert len(seeds) == 20000
    across = {position_seed(s, 11) for s in range(20000)}
    assert len(across) == 20000
    # Nearby (seed, position) pairs must not alias: seed s at p+1 vs seed s+1 at p.
    assert all(position_seed(s, p + 1) != position_seed(s + 1, p) for s in range(50) for p in range(50))


def test_position_seed_bits_are_balanced() -> None:
    values = np.array([position_seed(3, p) for p in range(8192)], dtype=np.uint64)
    for bit in range(32):
        ones = int(((values >> np.uint64(bit)) & np.uint64(1)).sum())
        assert abs(ones - 4096) < 4 * np.sqrt(8192 / 4)  # 4 sigma


def _invert_xorshift(y: int, shift: int) -> int:
    x = y
    for _ in range(64 // shift + 1):
        x = y ^ (x >> shift)
    return x & MASK64


def _preimage_of(seed_out: int, seed: int) -> int:
    """A position whose splitmix64 output has low 32 bits == seed_out (the mix is a bijection on 64 bits)."""
    z = seed_out  # high bits 0
    z = _invert_xorshift(z, 31)
    z = (z * pow(0x94D049BB133111EB, -1, 1 << 64)) & MASK64
    z = _invert_xorshift(z, 27)
    z = (z * pow(0xBF58476D1CE4E5B9, -1, 1 << 64)) & MASK64
    z = _invert_xorshift(z, 30)
    return (z - seed * 0x9E3779B97F4A7C15 - 1) & MASK64


def test_position_seed_never_hands_llama_cpp_its_random_seed_marker() -> None:
    # llama_sampler_init_dist(0xFFFFFFFF) seeds from the clock: that position would be non-reproducible.
    for seed in (0, 7, 2**31 - 1):
        pos = _preimage_of(LLAMA_DEFAULT_SEED, seed)
        assert position_seed(seed, pos) != LLAMA_DEFAULT_SEED
        assert position_seed(seed, _preimage_of(0x1234, seed)) == 0x1234  # the preimage construction works


def test_consecutive_positions_are_independent() -> None:
    # A fair coin per position: pairs (b_p, b_{p+1}) must be uniform over the four outcomes.
    s = pure_sampling(1.0, seed=99)
    coin = np.zeros(2, dtype=np.float32)
    bits = [s.sample(coin, p) for p in range(6001)]
    pairs = np.zeros(4)
    for a, b in zip(bits[:-1], bits[1:], strict=True):
        pairs[2 * a + b] += 1
    assert chi_square(pairs, np.full(4, 0.25)) < CHI2_CRIT[3]
    # And across seeds at the same position.
    other = [pure_sampling(1.0, seed=100).sample(coin, p) for p in range(6000)]
    cross = np.zeros(4)
    for a, b in zip(bits[:6000], other, strict=True):
        cross[2 * a + b] += 1
    assert chi_square(cross, np.full(4, 0.25)) < CHI2_CRIT[3]


# --- Sampler ------------------------------------------------------------------------------------------


def test_greedy_is_argmax() -> None:
    rng = np.random.default_rng(0)
    s = Sampler(SamplingParams(temperature=0.0), seed=1)
    for p in range(200):
        logits = rng.standard_normal(500).astype(np.float32) * 3
        assert s.sample(logits, p) == int(np.argmax(logits))


def test_same_seed_and_position_give_same_token_in_any_call_order() -> None:
    rng = np.random.default_rng(1)
    rows = [rng.standard_normal(300).astype(np.float32) * 2 for _ in range(300)]
    params = SamplingParams(temperature=1.0, seed=5)
    sequential = [Sampler(params, 5).sample(rows[p], p) for p in range(300)]
    shared = Sampler(params, 5)
    order = list(range(300))
    random.Random(3).shuffle(order)
    shuffled = {p: shared.sample(rows[p], p) for p in order}
    assert [shuffled[p] for p in range(300)] == sequential
    # "Batched": a verifier samples positions 10..13 from four rows at once, after other positions ran.
    batched = [shared.sample(rows[p], p) for p in (13, 12, 11, 10)][::-1]
    assert batched == sequential[10:14]
    # The draw really depends on the position: the same row at different positions varies.
    assert len({shared.sample(rows[0], p) for p in range(300)}) > 5


def test_different_seeds_give_different_streams() -> None:
    rng = np.random.default_rng(2)
    row = rng.standard_normal(100).astype(np.float32)
    a = [pure_sampling(1.0, seed=1).sample(row, p) for p in range(100)]
    b = [pure_sampling(1.0, seed=2).sample(row, p) for p in range(100)]
    assert a != b


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_samples_follow_softmax_of_logits_over_temperature(temperature: float) -> None:
    logits = np.array([2.0, 1.5, 1.0, 0.3, 0.0, -0.5, -1.0, -2.0, 0.7, 1.2], dtype=np.float32)
    n = 6000
    s = pure_sampling(temperature, seed=2024)
    counts = np.bincount([s.sample(logits, p) for p in range(n)], minlength=len(logits)).astype(float)
    target = softmax(logits.astype(np.float64) / temperature)
    assert chi_square(counts, target) < CHI2_CRIT[9]
    # Power check: a 20% temperature error is rejected by the same statistic.
    wrong = softmax(logits.astype(np.float64) / (temperature * 1.2))
    assert chi_square(counts, wrong) > CHI2_CRIT[9]


def test_sampled_distribution_is_exact_over_many_positions_with_varying_logits() -> None:
    # Each position has its own logits: sum the per-position probabilities into expected counts.
    rng = np.random.default_rng(11)
    n, v, temperature = 5000, 8, 0.8
    rows = rng.standard_normal((n, v)).astype(np.float32) * 1.5
    s = pure_sampling(temperature, seed=77)
    counts = np.zeros(v)
    expected = np.zeros(v)
    for p in range(n):
        counts[s.sample(rows[p], p)] += 1
        expected += softmax(rows[p].astype(np.float64) / temperature)
    assert chi_square(counts, expected / n) < CHI2_CRIT[7]


def test_top_k_restricts_support_to_the_k_best() -> None:
    logits = np.array([0.1, 3.0, 2.9, -1.0, 2.8, 0.0, 2.7], dtype=np.float32)
    s = Sampler(SamplingParams(temperature=5.0, top_k=3, top_p=1.0, min_p=0.0), seed=1)
    picked = {s.sample(logits, p) for p in range(2000)}
    assert picked == {1, 2, 4}


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.log(probs).astype(np.float32)
    s = Sampler(SamplingParams(temperature=1.0, top_k=0, top_p=0.7, min_p=0.0), seed=1)
    picked = np.bincount([s.sample(logits, p) for p in range(3000)], minlength=4)
    assert picked[2] == picked[3] == 0
    # Renormalised over the kept set: 0.5/0.8 and 0.3/0.8.
    assert chi_square(picked[:2].astype(float), np.array([0.625, 0.375])) < CHI2_CRIT[1]


def test_min_p_drops_tokens_below_a_fraction_of_the_best() -> None:
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.log(probs).astype(np.float32)
    s = Sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.2), seed=1)
    picked = {s.sample(logits, p) for p in range(3000)}
    assert picked == {0, 1, 2}  # 0.05 < 0.2 * 0.5


def test_filters_apply_before_temperature() -> None:
    # llama.cpp's chain order: truncation sees the untempered distribution, so a high temperature cannot
    # bring back a token that top-p removed.
    probs = np.array([0.6, 0.3, 0.1])
    logits = np.log(probs).astype(np.float32)
    s = Sampler(SamplingParams(temperature=50.0, top_k=0, top_p=0.85, min_p=0.0), seed=4)
    assert {s.sample(logits, p) for p in range(2000)} == {0, 1}


def test_ties_are_ordered_by_token_id_not_by_partition_order() -> None:
    # Three tied tokens among 1000: candidates are ordered by id, so the draw maps to ids exactly like the
    # same draw over a three-token vocabulary [5, 5, 5] maps to 0, 1, 2.
    logits = np.zeros(1000, dtype=np.float32)
    ids = [17, 503, 999]
    logits[ids] = 5.0
    big = Sampler(SamplingParams(temperature=1.0, top_k=3, top_p=1.0, min_p=0.0), seed=8)
    small = Sampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0), seed=8)
    three = np.full(3, 5.0, dtype=np.float32)
    drawn = [big.sample(logits, p) for p in range(300)]
    assert drawn == [ids[small.sample(three, p)] for p in range(300)]
    assert set(drawn) == set(ids)


# --- repeat penalty -----------------------------------------------------------------------------------


def test_repeat_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    logits = np.array([2.0, -2.0, 1.0, -1.0, 4.0], dtype=np.float32)
    out = apply_repeat_penalty(logits, [0, 1, 0, 0], penalty=2.0, last_n=64)
    np.testing.assert_allclose(out, [1.0, -4.0, 1.0, -1.0, 4.0])  # once per token, however often it occurred
    np.testing.assert_allclose(logits, [2.0, -2.0, 1.0, -1.0, 4.0])  # input untouched


def test_repeat_penalty_only_looks_at_the_last_n_tokens() -> None:
    logits = np.ones(5, dtype=np.float32)
    out = apply_repeat_penalty(logits, [0, 1, 2, 3], penalty=2.0, last_n=2)
    np.testing.assert_allclose(out, [1.0, 1.0, 0.5, 0.5, 1.0])


def test_repeat_penalty_last_n_follows_llama_cpp_conventions() -> None:
    # llama.cpp: repeat_last_n = 0 disables the penalty, -1 means the whole context.
    logits = np.ones(5, dtype=np.float32)
    np.testing.assert_allclose(apply_repeat_penalty(logits, [0, 1, 2, 3], 2.0, last_n=0), np.ones(5))
    np.testing.assert_allclose(apply_repeat_penalty(logits, [0, 1, 2, 3], 2.0, last_n=-1), [0.5] * 4 + [1.0])


def test_repeat_penalty_of_one_or_empty_history_is_a_no_op() -> None:
    logits = np.array([1.0, -1.0], dtype=np.float32)
    assert apply_repeat_penalty(logits, [0, 1], 1.0, 64) is logits
    assert apply_repeat_penalty(logits, [], 1.3, 64) is logits


def test_sampler_applies_repeat_penalty_to_the_given_history_only() -> None:
    logits = np.array([3.0, 2.0, 0.0], dtype=np.float32)
    s = Sampler(SamplingParams(temperature=0.0, repeat_penalty=2.0), seed=1)
    assert s.sample(logits, 0, ()) == 0
    assert s.sample(logits, 0, [0]) == 1  # 3/2 < 2
    assert s.sample(logits, 0, [0, 1]) == 0  # both halved
    assert s.sample(logits, 0) == 0  # pure: an earlier call left no state behind


def test_top2_margin() -> None:
    assert top2_margin(np.array([0.0, 5.0, 3.5, -1.0], dtype=np.float32)) == pytest.approx(1.5)
    assert top2_margin(np.array([2.0, 2.0], dtype=np.float32)) == 0.0
