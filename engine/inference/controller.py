"""Adaptive draft length: pick the k that maximises expected tokens per second, k = 0 (off) included.

Expected tokens from a step with k drafts: E(k) = 1 + sum_j prod_{i<=j} a_i, where a_i is the measured
chance that draft token i is accepted given the ones before it were. Step time: T(k) = t(k+1) + k * d,
with t(n) the measured time of a target decode of n tokens and d the drafter's time per token. Plain
decoding yields 1 / t(1); speculation runs only when some k beats it. Estimates decay so they follow the
text being written. A switched-off model drafter proves itself again through a short probe now and then;
a free drafter (n-gram) needs none: its declined proposals are checked against the target's own tokens
(ShadowDraft), which is acceptance evidence at no cost.

A depth with little evidence borrows its prior from the depth before it: after drafts of 3 were accepted
95% of the time, a 4th token is assumed about as likely, so the controller tries longer drafts instead of
never learning whether they pay (a fixed 50% prior would keep it at the length it started with).
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.stats import StepResult

PRIOR_ACCEPT = 0.5  # before any evidence, at depth 1 (deeper depths inherit the estimate above them)
PRIOR_WEIGHT = 1.0  # pseudo-observations behind each depth's prior
DECAY = 0.97  # per recorded step: old evidence fades
PRIOR_BATCH_SLOPE = 0.5  # t(n) ~ t(1) * (1 + slope * (n - 1)) until measured (a CPU-like guess)
EMA = 0.2  # drafter cost smoothing
TIMING_WINDOW = 9  # decode timings kept per batch size
SIZE_SAMPLES = 3  # timings of a batch size before its own median replaces the fitted line
OFF_REASON = "controller chose k=0"  # stable key so steps aggregate; off_detail() carries the numbers
MEASURING = "measuring plain decode speed"
LEARNING = "checking the drafter's proposals against the target's own tokens"
PROBE_MIN, PROBE_MAX = 8, 64  # steps between probes while off (doubles after each failed probe)
REMEASURE_SINGLE = 64  # force a plain step if t(1) has not been measured for this many steps
FIRST_K = 8  # the first draft, before any acceptance is known: measures a real verify batch, lost once
SHADOW_K = 4  # proposal tokens a declined free draft is checked on
PROBE_K = 2  # a probe re-tests acceptance; a long failed probe would cost several plain steps


@dataclass(frozen=True, slots=True)
class Choice:
    k: int
    reason: str | None = None  # why speculation is off for this step
    probe: bool = False


class DraftLengthController:
    def __init__(self, k_max: int, *, adaptive: bool = True) -> None:
        self.k_max = max(0, k_max)
        self.adaptive = adaptive
        self._acc = [0.0] * self.k_max  # decayed accepted counts per depth
        self._tot = [0.0] * self.k_max  # decayed drafted counts per depth
        self._probs: list[float] | None = None  # accept_probs(), until the next result
        self._samples: dict[int, collections.deque[float]] = {}  # recent seconds per decode of n tokens
        self._t: dict[int, float] = {}  # their median: robust to a one-off slow first decode
        self._slope: float | None = None  # fitted extra seconds per extra token in a decode batch
        self._d: float | None = None  # EMA drafter seconds per drafted token
        self._steps_since_single = 0
        self._off_steps = 0
        self._probe_interval = PROBE_MIN

    # --- measurements -------------------------------------------------------------------------------
    def record_step(self, step: StepResult) -> None:
        """Learn from one step of the loop: the verify decode's time and, for a draft, its acceptance."""
        self.record_decode(step.drafted + 1, step.verify_s)
        if step.drafted:
            self.record_result(step.drafted, step.accepted)

    def record_decode(self, n_tokens: int, seconds: float) -> None:
        window = self._samples.setdefault(n_tokens, collections.deque(maxlen=TIMING_WINDOW))
        window.append(seconds)
        self._t[n_tokens] = statistics.median(window)
        if n_tokens == 1:
            self._steps_since_single = 0
        self._slope = self._fit_slope()

    def _fit_slope(self) -> float | None:
        """Least-squares slope of t(n) - t(1) against n - 1 over the measured sizes, each size's median
        weighted by how many timings it has. CPU verify cost grows about linearly with the batch."""
        t1 = self._t.get(1)
        if t1 is None:
            return None
        num = den = 0.0
        for n, t in self._t.items():
            if n > 1:
                w = len(self._samples[n])
                num += w * (n - 1) * (t - t1)
                den += w * (n - 1) ** 2
        return max(0.0, num / den) if den else None

    def record_draft(self, n_tokens: int, seconds: float) -> None:
        if n_tokens <= 0:
            return
        per = seconds / n_tokens
        self._d = per if self._d is None else (1 - EMA) * self._d + EMA * per

    def record_result(self, n_drafted: int, n_accepted: int) -> None:
        for i in range(self.k_max):
            self._acc[i] *= DECAY
            self._tot[i] *= DECAY
        # Depth i was "tried" if every draft token before it was accepted.
        for i in range(min(n_drafted, n_accepted + 1, self.k_max)):
            self._tot[i] += 1.0
            if i < n_accepted:
                self._acc[i] += 1.0
        self._probs = None

    # --- estimates ----------------------------------------------------------------------------------
    def accept_probs(self) -> list[float]:
        """Per depth, the chance that draft token i+1 is accepted given the earlier ones were."""
        if self._probs is None:
            probs, prior = [], PRIOR_ACCEPT
            for acc, tot in zip(self._acc, self._tot, strict=True):
                prior = (acc + PRIOR_WEIGHT * prior) / (tot + PRIOR_WEIGHT)
                probs.append(prior)
            self._probs = probs
        return self._probs

    def accept_prob(self, depth: int) -> float:
        """Chance that draft token `depth` (1-based) is accepted given the earlier ones were."""
        return self.accept_probs()[depth - 1]

    def expected_tokens(self, k: int) -> float:
        total, chain = 1.0, 1.0
        for p in self.accept_probs()[:k]:
            chain *= p
            total += chain
        return total

    def decode_time(self, n: int) -> float | None:
        """Seconds for a target decode of n tokens: the median of its own timings once there are a few,
        else the line through t(1) fitted to every batch size measured. One noisy timing must not decide
        a size's fate: the controller only measures sizes it picks, so a size that once looked slow
        would never be tried again."""
        if n in self._t and (n == 1 or len(self._samples[n]) >= SIZE_SAMPLES):
            return self._t[n]
        if 1 in self._t and self._slope is not None:
            return self._t[1] + self._slope * (n - 1)
        if n in self._t:
            return self._t[n]
        known = sorted(self._t)
        if not known:
            return None
        base_n = known[0]
        t1 = self._t[base_n] / (1 + PRIOR_BATCH_SLOPE * (base_n - 1))
        return t1 * (1 + PRIOR_BATCH_SLOPE * (n - 1))

    def speedup(self, k: int) -> float:
        """Predicted tokens/s with k drafts relative to plain decoding (1.0 = same)."""
        t1 = self.decode_time(1)
        tk = self.decode_time(k + 1)
        if k == 0 or t1 is None or tk is None:
            return 1.0
        return self.expected_tokens(k) / ((tk + k * (self._d or 0.0)) / t1)

    def best(self, k_max: int | None = None) -> tuple[int, float]:
        """The draft length with the highest predicted speedup (0: plain decoding wins), and that speedup:
        argmax of speedup(k) over 0..k_max, in one pass (choose() runs it every step)."""
        top = self.k_max if k_max is None else min(self.k_max, k_max)
        t1 = self.decode_time(1)
        if t1 is None:
            return 0, 1.0
        best_k, best, tokens, chain = 0, 1.0, 1.0, 1.0
        d = self._d or 0.0
        for k, p in enumerate(self.accept_probs()[:top], 1):
            chain *= p
            tokens += chain
            tk = self.decode_time(k + 1)
            if tk is not None and tokens * t1 / (tk + k * d) > best:
                best_k, best = k, tokens * t1 / (tk + k * d)
        return best_k, best

    # --- what was learned (persisted per model pair by engine.measure.pair_profile) ------------------------
    def measured_decode_times(self) -> dict[int, float]:
        """Median seconds of a target decode of n tokens, for every n measured so far."""
        return dict(self._t)

    @property
    def draft_cost(self) -> float | None:
        """Smoothed drafter seconds per drafted token (None: not measured, or a free drafter)."""
        return self._d

    @classmethod
    def from_estimates(
        cls,
        accept: Sequence[float],
        decode_s: Mapping[int, float],
        draft_s: float | None,
        *,
        weight: float = 100.0,
    ) -> DraftLengthController:
        """A controller that starts from earlier evidence instead of the prior: `accept[i]` is the chance
        that draft token i+1 is accepted given the ones before it were, worth `weight` observations."""
        ctl = cls(len(accept))
        ctl._acc = [min(max(a, 0.0), 1.0) * weight for a in accept]
        ctl._tot = [weight] * len(accept)
        for n, seconds in decode_s.items():
            ctl.record_decode(n, seconds)
        ctl._d = draft_s
        return ctl

    # --- decision -----------------------------------------------------------------------------------
    def choose(self, available: int | None = None) -> Choice:
        """The draft length for the next step. `available`: for free drafters (n-gram) that draft before
        the decision, how many tokens they proposed; k is then chosen in 0..available."""
        k_max = self.k_max if available is None else min(self.k_max, available)
        if k_max == 0:
            return Choice(0, "speculation disabled (k_max = 0)" if self.k_max == 0 else None)
        self._steps_since_single += 1
        if not self.adaptive:
            return Choice(k_max)
        if 1 not in self._t or self._steps_since_single > REMEASURE_SINGLE:
            return Choice(0, MEASURING)  # every estimate is relative to the plain decode time
        if self._tot[0] == 0.0:
            if available is not None:  # a free drafter: watch its proposals in the shadow first
                return Choice(0, LEARNING)
            return Choice(min(k_max, FIRST_K))  # no acceptance seen yet: try speculation first
        best_k, _ = self.best(k_max)
        if best_k > 0:
            self._off_steps = 0
            self._probe_interval = PROBE_MIN
            return Choice(best_k)
        if available is not None:
            return Choice(0, OFF_REASON)  # a free drafter's proposals are checked in the shadow instead
        self._off_steps += 1
        if self._off_steps >= self._probe_interval:
            self._off_steps = 0
            self._probe_interval = min(PROBE_MAX, self._probe_interval * 2)
            return Choice(min(k_max, PROBE_K), probe=True)
        return Choice(0, OFF_REASON)

    def off_detail(self) -> str:
        t1 = self.decode_time(1) or 0.0
        t_full = self.decode_time(self.k_max + 1) or 0.0
        ratio = t_full / t1 if t1 else float("nan")
        return (
            f"controller chose k=0: verify cost {ratio:.1f}× for {self.k_max + 1} tokens, "
            f"acceptance {self.accept_prob(1) * 100:.0f}%"
        )


class ShadowDraft:
    """A free drafter's proposal that the controller declined, checked against what the target then wrote
    itself. Plain decoding samples exactly the tokens verification would have (same sampler, same
    position-keyed draw), so this is acceptance evidence at no cost: a switched-off n-gram drafter sees
    when a copy starts being right, without paying for probes. One proposal is watched at a time so
    overlapping proposals of the same match do not count several times."""

    def __init__(self) -> None:
        self.position: int | None = None  # where the watched proposal's first token would go
        self.tokens: tuple[int, ...] = ()

    def watch(self, position: int, tokens: Sequence[int]) -> None:
        if self.position is None and tokens:
            # Only the first few: a long watch settles only after as many plain steps, and deeper depths
            # inherit the acceptance measured here anyway.
            self.position, self.tokens = position, tuple(tokens[:SHADOW_K])

    def check(self, output: Sequence[int]) -> tuple[int, int] | None:
        """(drafted, accepted) once `output` (every token so far) settles the watched proposal, else None."""
        if self.position is None:
            return None
        seen = output[self.position : self.position + len(self.tokens)]
        n = 0
        while n < len(seen) and seen[n] == self.tokens[n]:
            n += 1
        if n == len(seen) and len(seen) < len(self.tokens):
            return None  # all right so far: wait for more tokens
        self.position = None
        return len(self.tokens), n
