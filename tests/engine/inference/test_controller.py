"""The adaptive draft-length controller, fed synthetic timings and acceptances (no model needed)."""

from __future__ import annotations

import pytest

from engine.config import MODEL_DRAFT_K_MAX, NGRAM_K_MAX, SpecParams
from engine.inference.controller import (
    CLASS_EDGES,
    CLASS_PRIOR_DEEP,
    CLEAN_COPY_ACCEPT,
    COPY_CLASSES,
    FIRST_K,
    MEASURING,
    MIN_GAIN,
    OFF_REASON,
    PRIOR_ACCEPT,
    PROBE_K,
    PROBE_MAX,
    PROBE_MIN,
    REMEASURE_SINGLE,
    SHADOW_K,
    Choice,
    DraftLengthController,
    ShadowDraft,
    match_class,
)
from engine.inference.cost import CostCurve
from engine.inference.drafters.base import draft_k_max
from engine.inference.drafters.ngram import NGramDrafter
from tests.fixtures.oracle import OracleDrafter

T1 = 0.010


def timed(c: DraftLengthController, slope: float, sizes: range) -> None:
    """Record decode timings t(n) = T1 * (1 + slope * (n - 1)) for every n in sizes."""
    for n in sizes:
        c.record_decode(n, T1 * (1 + slope * (n - 1)))


def teach(c: DraftLengthController, n_drafted: int, n_accepted: int, times: int, cls: int = 0) -> None:
    for _ in range(times):
        c.record_result(n_drafted, n_accepted, cls)


# t(n) / t(1) of Gemma 3 270M on a 2-core CPU (issue 17's quiet-machine table): the tiles make 9 and 17 dear.
STEPPED = {1: 1.00, 2: 1.35, 4: 1.72, 8: 2.63, 9: 3.52, 16: 4.36, 17: 5.24}


def curve(ratios: dict[int, float], samples: int = 3) -> CostCurve:
    return CostCurve({n: [T1 * r] * samples for n, r in ratios.items()})


LONG = CLASS_EDGES[-1]  # a match this long is a copy


def test_plain_speed_first_then_a_first_draft() -> None:
    c = DraftLengthController(3)
    assert c.choose() == Choice(0, MEASURING)
    c.record_decode(1, T1)
    assert c.choose().k == min(3, FIRST_K)  # a model drafter: no acceptance known, a first try
    c.record_decode(4, T1 * 1.3)
    c.record_result(3, 3)
    assert c.choose().k == 3  # it paid: the controller now decides from evidence


def test_a_copy_drafts_long_from_its_first_step_a_short_match_earns_its_length() -> None:
    """No probing or shadow phase on text plainly being copied: a 16-token match starts from a high prior
    and, on the measured curve, drafts long at once; a 2-token match starts from a coin flip."""
    c = DraftLengthController(16, costs=curve(STEPPED))
    copy = c.choose(available=16, match_len=LONG)
    assert copy.k >= 4 and copy.reason is None
    short = c.choose(available=16, match_len=2)
    assert short.k < copy.k
    # Evidence moves each class on its own: failed short matches do not make copies look bad.
    teach(c, 4, 0, 20, cls=match_class(2))
    assert c.choose(available=16, match_len=2) == Choice(0, OFF_REASON)
    assert c.choose(available=16, match_len=LONG).k == copy.k


def test_match_classes() -> None:
    assert [match_class(n) for n in (0, 2, 3, 4, 7, 8, 15, 16, 40)] == [0, 0, 0, 1, 1, 2, 2, 3, 3]


def test_without_any_timing_plain_speed_is_measured_first() -> None:
    c = DraftLengthController(16)
    assert c.choose(available=16, match_len=LONG) == Choice(0, MEASURING)
    c.record_decode(1, T1)
    assert c.choose(available=16, match_len=LONG).k > 0  # the prior's curve: t(1) alone is enough


def test_shadow_draft_settles_on_the_first_mismatch_or_the_last_token() -> None:
    shadow = ShadowDraft()
    shadow.watch(3, (7, 8, 9), cls=2)
    shadow.watch(4, (1, 1))  # one at a time: overlapping proposals of one match count once
    assert shadow.check([0, 0, 0, 7]) is None  # right so far
    assert shadow.check([0, 0, 0, 7, 8, 5]) == (3, 2, 2, None)  # with the match class it counts toward
    assert shadow.check([0, 0, 0, 7, 8, 5]) is None  # settled
    shadow.watch(2, (4, 5))
    assert shadow.check([0, 0, 6]) == (2, 0, 0, None)
    shadow.watch(1, (4, 5))
    assert shadow.check([0, 4, 5, 6]) == (2, 2, 0, None)
    shadow.watch(0, tuple(range(SHADOW_K + 5)))
    # settles after SHADOW_K tokens
    assert shadow.check(list(range(SHADOW_K))) == (SHADOW_K, SHADOW_K, 0, None)


def test_no_proposal_and_disabled() -> None:
    c = DraftLengthController(4)
    assert c.choose(available=0) == Choice(0)  # nothing proposed: no draft, and nothing to explain
    off = DraftLengthController(0).choose()
    assert off.k == 0 and off.reason is not None and "disabled" in off.reason


def test_not_adaptive_always_drafts_the_maximum() -> None:
    c = DraftLengthController(3, adaptive=False)
    timed(c, 2.0, range(1, 5))
    teach(c, 3, 0, 50)
    assert {c.choose().k for _ in range(20)} == {3}


def test_expected_tokens_follows_the_chain_rule() -> None:
    c = DraftLengthController(3)
    assert c.expected_tokens(0) == 1.0
    deep = CLASS_PRIOR_DEEP[0]  # past the first token, the class's pooled prior
    assert c.expected_tokens(2) == pytest.approx(1 + PRIOR_ACCEPT + PRIOR_ACCEPT * deep)
    teach(c, 3, 3, 200)  # evidence outweighs the prior (decay keeps ~33 recent steps): every depth ~0.97
    assert 3.8 < c.expected_tokens(3) < 4.0


def test_costly_verify_and_poor_acceptance_switch_speculation_off_with_numbers() -> None:
    c = DraftLengthController(3)
    timed(c, 1.5, range(1, 5))
    teach(c, 3, 0, 40)
    choice = c.choose()
    assert choice.k == 0 and choice.reason == OFF_REASON
    detail = c.off_detail()
    assert "checking 3 of them costs as much as 5.5 plain tokens" in detail and "right about" in detail
    assert c.speedup(1) < 1.0


def test_cheap_verify_and_good_acceptance_draft_the_maximum() -> None:
    c = DraftLengthController(3)
    timed(c, 0.1, range(1, 5))
    teach(c, 3, 3, 20)
    assert c.choose().k == 3
    assert c.speedup(3) > 2.5


def test_untried_depths_inherit_acceptance_so_long_drafts_get_tried() -> None:
    """Only drafts of 3 were ever verified, all accepted. With a CPU-like linear verify cost a 50% prior
    at depth 4+ would keep k at 3 forever; the class's pooled acceptance past the first token makes the
    controller try longer drafts."""
    c = DraftLengthController(16)
    timed(c, 0.45, range(1, 5))
    teach(c, 3, 3, 30)
    assert c.accept_prob(4) > 0.95 and c.accept_prob(16) == pytest.approx(c.accept_prob(4))
    assert c.choose(available=16).k > 3
    # ...and evidence that depth 4 fails pulls it back to 3.
    teach(c, 4, 3, 60)
    assert c.accept_prob(4) < 0.1
    assert c.choose(available=16).k == 3


def test_one_lucky_draft_does_not_make_a_long_draft_look_safe() -> None:
    """A short match accepted once 7 tokens deep: its class's acceptance past the first token is pooled over
    depths with a prior, so a 63-token draft is not expected to come back nearly whole."""
    c = DraftLengthController(NGRAM_K_MAX, costs=curve({1: 1.0, 2: 1.35, 8: 2.63, 16: 4.36, 64: 13.6}))
    teach(c, 7, 7, 1)
    assert c.expected_tokens(63) < 12
    assert c.choose(available=NGRAM_K_MAX, match_len=2).k < 16


def test_choice_maximises_the_predicted_speedup() -> None:
    c = DraftLengthController(8)
    timed(c, 0.6, range(1, 10))
    for n_drafted, n_acc in [(8, 8), (8, 2), (8, 5), (8, 1), (8, 8), (8, 3)] * 5:
        c.record_result(n_drafted, n_acc)
    best = max(range(9), key=c.speedup)
    assert c.choose().k == best


def test_switched_off_controller_probes_with_growing_intervals() -> None:
    c = DraftLengthController(3)
    timed(c, 1.5, range(1, 5))
    teach(c, 3, 0, 40)
    choices = [c.choose() for i in range(PROBE_MIN + 2 * PROBE_MIN + 4 * PROBE_MIN)]
    assert [i for i, ch in enumerate(choices) if ch.probe] == [
        PROBE_MIN - 1,
        3 * PROBE_MIN - 1,
        7 * PROBE_MIN - 1,
    ]
    assert {ch.k for ch in choices if ch.probe} == {PROBE_K}  # short: a failed probe costs little
    assert {ch.reason for ch in choices if not ch.probe} == {OFF_REASON}
    # Failed probes keep doubling the wait, up to PROBE_MAX steps between probes.
    later = []
    for i in range(12 * PROBE_MAX):
        if c.choose().probe:
            later.append(i)
            c.record_result(PROBE_K, 0)
        c.record_decode(1, T1)  # the plain step the loop decodes (or the probe's, as cheap as one here)
    gaps = [b - a for a, b in zip(later, later[1:], strict=False)]
    assert gaps == sorted(gaps) and max(gaps) == PROBE_MAX and gaps.count(PROBE_MAX) >= 3


def test_plain_speed_is_remeasured_when_it_goes_stale() -> None:
    c = DraftLengthController(3)
    timed(c, 0.1, range(1, 5))
    teach(c, 3, 3, 20)
    choices = [c.choose() for _ in range(REMEASURE_SINGLE + 1)]
    assert choices[-1] == Choice(0, MEASURING)
    assert all(ch.k == 3 for ch in choices[:-1])
    c.record_decode(1, T1)
    assert c.choose().k == 3


def test_the_real_curve_lands_on_the_cheap_batch_sizes() -> None:
    """A line through the stepped curve would put 16 drafts (a batch of 17) and 8 (a batch of 9) at their
    fair share; the measured curve makes a batch of 16 and of 8 the better buys."""
    c = DraftLengthController(16, costs=curve(STEPPED))
    teach(c, 16, 16, 60, cls=3)  # a copy: every draft token accepted
    assert c.choose(available=16, match_len=LONG).k == 15
    k, speedup = c.best(cls=3)
    assert k == 15 and speedup == pytest.approx(c.expected_tokens(15, cls=3) / 4.36)
    # Nine in ten tokens right: E(7) / t(8) beats E(8) / t(9), E(3) / t(4) and E(15) / t(16).
    c2 = DraftLengthController(16, costs=curve(STEPPED))
    for i in range(16):
        c2._classes[0].acc[i], c2._classes[0].tot[i] = 90.0, 100.0
    assert c2.choose(available=16).k + 1 in (7, 8)  # 7 is interpolated between 4 and 8: about a tie


def test_long_drafts_where_the_curve_pays() -> None:
    """SmolLM2's CPU curve: half a token's cost per row up to 48 rows, but 64 rows cost about as much as 48.
    A long confident copy then drafts 63 tokens; a short match on the same curve does not."""
    smol = {1: 1.0, 2: 1.5, 4: 2.5, 8: 4.5, 16: 8.5, 32: 16.5, 48: 24.5, 64: 25.0, 65: 33.0}
    c = DraftLengthController(NGRAM_K_MAX, costs=curve(smol))
    teach(c, 64, 64, 60, cls=3)
    assert c.choose(available=NGRAM_K_MAX, match_len=40).k == 63
    assert c.choose(available=NGRAM_K_MAX, match_len=2).k < 16


# t(n) / t(1) of SmolLM2 135M on this 2-core CPU (a calibration of benchmarks/replay_controller.py): past 16
# rows each row costs about half a token, so 64 rows cost 28.
SMOLLM2_CPU = {
    1: 1.0, 2: 1.85, 4: 2.61, 8: 4.44, 9: 4.99, 16: 7.94, 17: 8.93, 32: 14.86, 33: 15.72, 48: 22.88, 64: 27.99
}  # fmt: skip


def test_a_copy_class_is_a_mixture_of_clean_and_edited_copies() -> None:
    c = DraftLengthController(NGRAM_K_MAX, lookup=True)
    for cls in COPY_CLASSES:
        p = c.accept_probs(cls)
        assert p[1] == pytest.approx(CLASS_PRIOR_DEEP[cls], abs=1e-3)  # the mixture's mean is the prior
        assert all(a <= b for a, b in zip(p[1:], p[2:], strict=False))  # deep in, a copy is likelier clean
    # A break 20 tokens in is what an edited copy does: past the depths tried, the edited rate.
    c.record_result(40, 20, cls=3)
    assert c.accept_probs(3)[50] < 0.985
    # Two hundred clean tokens since are what a clean copy does; another break puts it back in doubt.
    teach(c, 40, 40, 5, cls=3)
    clean = c.accept_probs(3)[50]
    assert CLEAN_COPY_ACCEPT > clean > 0.995
    c.record_result(40, 20, cls=3)
    assert c.accept_probs(3)[50] < 0.99 < clean
    # Short matches, and a model drafter's single class, keep one pooled rate past the first token.
    assert len(set(c.accept_probs(0)[1:])) == 1
    assert len(set(DraftLengthController(NGRAM_K_MAX).accept_probs(3)[1:])) == 1


def test_a_few_clean_drafts_do_not_tell_a_clean_copy_from_an_edited_one() -> None:
    """SmolLM2 quoting an article (benchmarks/native_prompts.jsonl, quote-article): an 8-token match and then
    a 20-token one drafted 11 tokens each, all accepted; then the quote dropped a sentence. One pooled rate
    read the copy class's single draft as 99.8 % a token and drafted 63 tokens (28 tokens' time, 11 kept);
    the mixture keeps the draft shorter until the copy has shown it is clean."""
    c = DraftLengthController(NGRAM_K_MAX, costs=curve(SMOLLM2_CPU), lookup=True)
    c.record_result(11, 11, cls=2)
    c.record_result(11, 11, cls=3)
    assert 0 < c.choose(available=NGRAM_K_MAX, match_len=32).k < 32
    teach(c, 63, 63, 8, cls=3)
    assert c.choose(available=NGRAM_K_MAX, match_len=32).k >= 48


def test_nothing_pays_keeps_speculation_off() -> None:
    c = DraftLengthController(16, costs=curve({1: 1.0, 2: 2.0, 17: 17.0}))  # every row costs a full token
    teach(c, 16, 15, 40, cls=3)
    assert c.choose(available=16, match_len=LONG) == Choice(0, OFF_REASON)


def test_draft_cost_counts_against_model_drafters() -> None:
    free, costly = DraftLengthController(3), DraftLengthController(3)
    for c in (free, costly):
        timed(c, 0.2, range(1, 5))
        teach(c, 3, 2, 30)
    costly.record_draft(3, 3 * T1)  # drafting a token costs as much as a target decode
    assert costly.speedup(3) < free.speedup(3)
    assert costly.choose().k < free.choose().k


def test_draft_length_defaults_per_drafter() -> None:
    spec = SpecParams()
    assert draft_k_max(NGramDrafter(), spec) == NGRAM_K_MAX
    assert draft_k_max(OracleDrafter([], 10), spec) == MODEL_DRAFT_K_MAX
    assert draft_k_max(NGramDrafter(), SpecParams(k_max=5)) == 5
    assert draft_k_max(NGramDrafter(), SpecParams(enabled=False)) == 0
    assert draft_k_max(None, spec) == 0


def test_the_controller_for_a_drafter_takes_its_length_and_the_prior_weight_of_its_kind() -> None:
    class ModelDrafter:  # what for_drafter reads of a model drafter (MTP head, draft model)
        cheap = False
        default_k_max = MODEL_DRAFT_K_MAX

    spec = SpecParams()
    lookup = DraftLengthController.for_drafter(NGramDrafter(), spec)
    model = DraftLengthController.for_drafter(ModelDrafter(), spec)  # type: ignore[arg-type]
    assert (lookup.k_max, model.k_max) == (NGRAM_K_MAX, MODEL_DRAFT_K_MAX)
    assert DraftLengthController.for_drafter(NGramDrafter(), SpecParams(enabled=False)).k_max == 0
    assert not DraftLengthController.for_drafter(NGramDrafter(), SpecParams(adaptive=False)).adaptive
    for c in (lookup, model):
        teach(c, 1, 1, 60)
    # Always right: the decayed evidence (about 33 observations) against 3 or 1 behind the 50 % prior.
    assert lookup.accept_prob(1) < 0.97 < model.accept_prob(1)


# t(n) / t(1) of SmolLM2 135M on a 2-core CPU (one calibration, benchmarks/replay_controller.py): the first
# extra row costs most of a token.
SMOLLM2 = {1: 1.0, 2: 1.73, 3: 2.10, 4: 2.51, 5: 3.12, 8: 4.19, 9: 4.75, 16: 7.43, 17: 8.36, 64: 25.07}


def test_a_marginal_predicted_gain_does_not_draft() -> None:
    """A 4-token match on SmolLM2's curve predicts a 1-2 % gain from its prior alone: less than the estimate's
    own error, while a failed 3-token draft costs 1.5 tokens. Plain decoding keeps it."""
    c = DraftLengthController(NGRAM_K_MAX, costs=curve(SMOLLM2), lookup=True)
    gain = max(c.speedup(k, match_class(4)) for k in range(NGRAM_K_MAX + 1))
    assert 1.0 < gain < MIN_GAIN
    assert c.choose(available=NGRAM_K_MAX, match_len=4) == Choice(0, OFF_REASON)
    assert c.choose(available=NGRAM_K_MAX, match_len=LONG).k > 0  # a copy still drafts at once


def test_one_good_shadow_check_does_not_make_short_matches_draft() -> None:
    """One declined 2-token-match proposal that turned out 3 of 4 right (a shadow check) is one observation
    against several behind a lookup drafter's prior: the class does not start drafting on it (with one
    pseudo-observation it did, and its next draft on a 40-token reply failed). A model drafter's prior weighs
    one observation: its estimates, which decay towards the prior, are not held far below what it achieves."""
    c = DraftLengthController(NGRAM_K_MAX, costs=curve(SMOLLM2), lookup=True)
    cls = match_class(2)
    assert c.choose(available=NGRAM_K_MAX, match_len=2).k == 0
    c.record_result(SHADOW_K, 3, cls)
    assert c.choose(available=NGRAM_K_MAX, match_len=2).k == 0
    teach(c, SHADOW_K, SHADOW_K, 6, cls)  # a run of right proposals does earn it
    assert c.choose(available=NGRAM_K_MAX, match_len=2).k > 0
    model = DraftLengthController(4, costs=curve(SMOLLM2))
    teach(model, 1, 1, 60)
    assert model.accept_prob(1) > 0.98


def test_a_disputed_token_is_priced_on_its_own_record_and_a_draft_stops_short_of_a_bad_guess() -> None:
    """A copy of a counter (`age: 20`, `age: 21`, ...): every line is copied except its value, which an
    earlier line matched as well went on differently from. Failed guesses there teach the class's disputed
    estimate, not the copy's: the next copy drafts up to the value and lets the verify step write it."""
    c = DraftLengthController(NGRAM_K_MAX, costs=curve(STEPPED), lookup=True)
    cls = match_class(LONG)
    free = c.choose(available=16, match_len=LONG)
    assert free.k > 6  # an undisputed copy drafts past where the value would be
    assert c.choose(available=16, match_len=LONG, disputed_at=6).k == 6  # the guess's low prior
    c.record_result(16, 6, cls, disputed_at=6)  # drafted anyway, and the guess failed
    c.record_result(16, 6, cls, disputed_at=6)
    assert c.accept_prob(1, cls) > 0.95  # the copy's own record holds: six of six right each time
    assert c.choose(available=16, match_len=LONG).k == free.k
    assert c.choose(available=16, match_len=LONG, disputed_at=6).k == 6
    assert c.last_disputed_at == 6
    # Guesses that keep coming out right earn the draft past them.
    for _ in range(12):
        c.record_result(16, 16, cls, disputed_at=6)
    assert c.choose(available=16, match_len=LONG, disputed_at=6).k > 6
    # A failure before the disputed token is the copy's.
    before = c.accept_prob(1, cls)
    c.record_result(16, 0, cls, disputed_at=6)
    assert c.accept_prob(1, cls) < before


def test_a_disputed_record_is_kept_per_match_class() -> None:
    """A 2-token match's rivals disagree all the time in prose and are often right; that does not make a long
    copy's disputed value look safe."""
    c = DraftLengthController(NGRAM_K_MAX, costs=curve(SMOLLM2), lookup=True)
    long_guess = c.choose(available=16, match_len=LONG, disputed_at=0).k
    short_guess = c.choose(available=16, match_len=2, disputed_at=0).k
    for _ in range(20):
        c.record_result(4, 4, match_class(2), disputed_at=0)
    assert c.choose(available=16, match_len=2, disputed_at=0).k > short_guess
    assert c.choose(available=16, match_len=LONG, disputed_at=0).k == long_guess


def test_a_shadow_check_reports_the_disputed_token_it_watched() -> None:
    shadow = ShadowDraft()
    shadow.watch(0, (1, 2, 3), cls=3, disputed_at=1)
    assert shadow.check([1, 5]) == (3, 1, 3, 1)
    shadow.watch(0, tuple(range(SHADOW_K + 2)), disputed_at=SHADOW_K + 1)  # beyond what is watched
    assert shadow.check([0, 9]) == (SHADOW_K, 1, 0, None)
