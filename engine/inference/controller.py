"""Adaptive draft length: pick the k that maximises expected tokens per second, k = 0 (off) included.

Expected tokens from a step with k drafts: E(k) = 1 + sum_j prod_{i<=j} a_i, where a_i is the measured
chance that draft token i is accepted given the ones before it were. Step time: T(k) = t(k+1) + k * d, with
t(n) the target's cost curve (engine.inference.cost: measured per batch size, not a line) and d the
drafter's time per token. Plain decoding yields 1 / t(1); speculation runs only when some k beats it, and
the best k lands on the batch sizes the CPU's matmul tiles make cheap. Estimates decay so they follow the
text being written.

Acceptance is kept per *match class*. A prompt-lookup drafter says how long the match behind its proposal is
(`Draft.match_len`), and text that repeats 16 tokens of its context is being copied: its proposals are right
far more often than those of a 2-token match. So a long match drafts long from its first step (its class's
prior is high: no probing or shadow phase on a plain copy), while a short match earns its length from
evidence. Model drafters have a single class. A proposed token that an equally good earlier match went on
differently from (`Draft.disputed_at`, a counter's next value) is priced on its class's record of such
guesses, apart from the copy around it. A declined free proposal is still checked against the tokens
the target then writes (ShadowDraft): evidence at no cost. A switched-off model drafter proves itself again
through a short probe now and then.

Past the first token, a depth with little evidence borrows the class's pooled acceptance beyond the first
token: once a copy is under way, the next token is about as likely to be right as the ones before it, so
after drafts of 3 were accepted 95% of the time the controller tries longer drafts instead of never learning
whether they pay. Pooling (rather than each depth inheriting the estimate of the one before) keeps one lucky
draft from making a 60-token draft look safe. For a copy (a match of 8+ tokens) that borrowed acceptance is
not one rate but a mixture of a clean copy and an edited one, weighed by the evidence: a copy either runs
on or breaks every few dozen tokens, and a few clean drafts do not say which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.config import SpecParams
from engine.inference.cost import CostCurve
from engine.inference.drafters.base import Drafter, draft_k_max
from engine.stats import StepResult

# Match classes by the length of the match behind a lookup proposal: [0, 4), [4, 8), [8, 16), [16, ...).
# Model drafters report no match (0) and always use the first class.
CLASS_EDGES = (0, 4, 8, 16)
# Chance that the first draft token is accepted before any evidence, per class. A 16-token repeat is a copy
# (llama.cpp's ngram-simple drafts 48 tokens after a 12-token match and is right nearly every time).
CLASS_PRIOR = (0.5, 0.6, 0.85, 0.95)
# Chance that a draft token past the first is accepted given the ones before it were, before evidence. Once
# a match of 8+ tokens has its first token right, a copy rarely breaks mid-draft: with a timid prior here the
# controller crept up through 7-, 15-, 31-token drafts on a copy that native llama.cpp drafts 48 at a time.
# Priced by benchmarks/replay_controller.py (docs/performance.md): +2.3 % (Gemma), +1.0 % (SmolLM2) over
# its prompts, from quoting (Gemma quote-article 1.75x -> 2.29x), at a cost on edit-dense copies (Gemma
# js-refactor 1.76x -> 1.57x).
CLASS_PRIOR_DEEP: tuple[float, ...] = (0.7, 0.85, 0.97, 0.99)
# A disputed token (`Draft.disputed_at`: an earlier occurrence matched as well and went on differently, as
# the values of a counter or a column do) has its own acceptance, learnt apart from its match class: it is
# a guess between the occurrences, and a failed guess says nothing about the copy around it. Its prior is
# low: in the copies priced it was wrong more often than right.
DISPUTED_PRIOR = 0.3
PRIOR_ACCEPT = CLASS_PRIOR[0]
# Pseudo-observations behind each depth's prior, for a lookup drafter. With 1, a single shadow-checked
# proposal of a 2-token match (3 of 4 right) lifted that class from 50 % to 75 % and the next short draft
# failed; on a 40-token reply one failed 3-token draft costs SmolLM2 4 % (docs/performance.md, "Changing the
# controller"). A model drafter has no shadow checks and its estimates decay towards the prior: it keeps 1,
# so a drafter right 90 % of the time is not held near 87 %.
PRIOR_WEIGHT = 3.0
MODEL_PRIOR_WEIGHT = 1.0
# Predicted speedup a draft must beat: the estimates behind a 1 % edge are noisier than 1 %, and a failed
# draft costs up to t(k + 1) - t(1), so a marginal draft loses more often than it wins.
MIN_GAIN = 1.02
DEEP_PRIOR_WEIGHT = 4.0  # pseudo-observations behind a class's pooled acceptance past the first token
# A copy (a match of 8+ tokens) is either clean, right token after token, or edited: a renamed name, a
# dropped sentence every few dozen tokens. Past the first token such a class's acceptance is a mixture of
# the two, weighed by the evidence, and a draft's chance to survive j tokens is the mixture's, not one
# rate's j-th power. Ten accepted tokens do not tell an edited copy (2 % of tokens break) from a clean one;
# a pooled rate read them as 99.8 % and SmolLM2 drafted 63 tokens into a quote that broke after 11, on a
# curve where 64 rows cost 28 tokens. Priced by benchmarks/replay_controller.py (docs/performance.md).
# The edited rate makes the mixture's mean the class's CLASS_PRIOR_DEEP.
COPY_CLASSES = (2, 3)
CLEAN_COPY_ACCEPT = 0.9995
CLEAN_COPY_PRIOR = 0.5  # the share of copies that are clean, before evidence
DECAY = 0.97  # per result of a class: old evidence fades
EMA = 0.2  # drafter cost smoothing
OFF_REASON = "controller chose k=0"  # stable key so steps aggregate; off_detail() carries the numbers
OFF_DETAIL = "drafts would not pay"  # how off_detail() begins: what the speed panel shows for OFF_REASON
MEASURING = "measuring plain decode speed"
PROBE_MIN, PROBE_MAX = 8, 64  # steps between probes while off (doubles after each failed probe)
REMEASURE_SINGLE = 64  # force a plain step if t(1) has not been measured for this many steps
FIRST_K = 8  # a model drafter's first draft, before any acceptance is known: measures a real verify batch
SHADOW_K = 4  # proposal tokens a declined free draft is checked on
SHOWN_K = 4  # the draft length off_detail() prices for the user
PROBE_K = 2  # a probe re-tests acceptance; a long failed probe would cost several plain steps


def match_class(match_len: int) -> int:
    return sum(1 for edge in CLASS_EDGES[1:] if match_len >= edge)


@dataclass(frozen=True, slots=True)
class Choice:
    k: int
    reason: str | None = None  # why speculation is off for this step
    probe: bool = False


class _Acceptance:
    """Decayed accepted / drafted counts per draft depth for one match class."""

    def __init__(
        self, k_max: int, prior: float, prior_deep: float, weight: float, copy: bool = False
    ) -> None:
        self.prior = prior
        self.prior_deep = prior_deep
        self.weight = weight  # pseudo-observations behind each depth's prior
        self.copy = copy  # past the first token: a clean/edited mixture (COPY_CLASSES), else one pooled rate
        self.acc = [0.0] * k_max
        self.tot = [0.0] * k_max
        self._probs: list[float] | None = None

    def record(self, n_drafted: int, n_accepted: int) -> None:
        k_max = len(self.tot)
        depth = min(n_drafted, n_accepted + 1, k_max)
        # Depths with evidence are contiguous from the first: stop decaying at the first empty one.
        acc, tot = self.acc, self.tot
        for i in range(k_max):
            if tot[i] == 0.0 and i >= depth:
                break
            acc[i] *= DECAY
            tot[i] *= DECAY
        # Depth i was "tried" if every draft token before it was accepted.
        for i in range(depth):
            tot[i] += 1.0
            if i < n_accepted:
                acc[i] += 1.0
        self._probs = None

    def probs(self) -> list[float]:
        """Per depth, the chance that draft token i+1 is accepted given the earlier ones were."""
        if self._probs is None:
            acc, tot = self.acc, self.tot
            if not tot:
                self._probs = []
                return self._probs
            deep = self._copy_deep() if self.copy else [self._pooled_deep()] * (len(tot) - 1)
            w = self.weight
            first = (acc[0] + w * self.prior) / (tot[0] + w)
            pairs = zip(acc[1:], tot[1:], deep, strict=True)
            self._probs = [first] + [(a + w * d) / (t + w) for a, t, d in pairs]
        return self._probs

    def _pooled_deep(self) -> float:
        prior = DEEP_PRIOR_WEIGHT * self.prior_deep
        return (sum(self.acc[1:]) + prior) / (sum(self.tot[1:]) + DEEP_PRIOR_WEIGHT)

    def _copy_deep(self) -> list[float]:
        """Per depth past the first, the chance a copy's token is accepted given the ones before it were:
        the clean and edited rates weighed by how well each explains the accepted and rejected tokens seen
        (decayed counts), then by how likely each is to have survived to that depth."""
        clean = CLEAN_COPY_ACCEPT
        edited = 2.0 * self.prior_deep - clean
        accepted = sum(self.acc[1:])
        rejected = max(0.0, sum(self.tot[1:]) - accepted)
        log_odds = (
            math.log((1.0 - CLEAN_COPY_PRIOR) / CLEAN_COPY_PRIOR)
            + accepted * math.log(edited / clean)
            + rejected * math.log((1.0 - edited) / (1.0 - clean))
        )
        alive_clean = 1.0 / (1.0 + math.exp(min(log_odds, 700.0)))  # P(clean), not overflowing
        alive_edited = 1.0 - alive_clean
        out = []
        for _ in range(len(self.tot) - 1):
            before = alive_clean + alive_edited
            alive_clean *= clean
            alive_edited *= edited
            out.append((alive_clean + alive_edited) / before)
        return out

    @property
    def evidence(self) -> float:
        return self.tot[0] if self.tot else 0.0


class DraftLengthController:
    def __init__(
        self, k_max: int, *, adaptive: bool = True, costs: CostCurve | None = None, lookup: bool = False
    ) -> None:
        """`lookup`: the drafter is a free lookup drafter (n-gram), whose priors weigh PRIOR_WEIGHT
        observations; a model drafter's weigh MODEL_PRIOR_WEIGHT."""
        self.k_max = max(0, k_max)
        self.adaptive = adaptive
        self.costs = costs if costs is not None else CostCurve()  # shared with the engine: the machine's
        weight = PRIOR_WEIGHT if lookup else MODEL_PRIOR_WEIGHT
        priors = enumerate(zip(CLASS_PRIOR, CLASS_PRIOR_DEEP, strict=True))
        self._classes = [
            _Acceptance(self.k_max, prior, deep, weight, copy=lookup and cls in COPY_CLASSES)
            for cls, (prior, deep) in priors
        ]
        # Per class, one depth (the disputed token itself): a 2-token match's rivals disagree all the time
        # in prose and are often right; a 20-token match's rivals disagreeing is a counter.
        self._disputed = [_Acceptance(1, DISPUTED_PRIOR, DISPUTED_PRIOR, weight) for _ in CLASS_EDGES]
        self._class = 0  # the class of the last choice: the verified draft it leads to counts there
        self._disputed_at: int | None = None  # and the last choice's disputed token, if any
        self._d: float | None = None  # EMA drafter seconds per drafted token
        self._steps_since_single = 0
        self._off_steps = 0
        self._probe_interval = PROBE_MIN

    @classmethod
    def for_drafter(
        cls, drafter: Drafter | None, spec: SpecParams, costs: CostCurve | None = None
    ) -> DraftLengthController:
        """The controller for `drafter` under `spec`: its longest draft, whether it adapts, and the prior
        weight of the drafter's kind (a cheap drafter is a lookup drafter)."""
        lookup = drafter is not None and drafter.cheap
        return cls(draft_k_max(drafter, spec), adaptive=spec.adaptive, costs=costs, lookup=lookup)

    # --- measurements -------------------------------------------------------------------------------
    def record_step(self, step: StepResult) -> None:
        """Learn from one step of the loop: the verify decode's time and, for a draft, its acceptance."""
        self.record_decode(step.drafted + 1, step.verify_s)
        if step.drafted:
            self.record_result(step.drafted, step.accepted, self._class, self._disputed_at)

    def record_decode(self, n_tokens: int, seconds: float) -> None:
        self.costs.record(n_tokens, seconds)
        if n_tokens == 1:
            self._steps_since_single = 0

    def record_draft(self, n_tokens: int, seconds: float) -> None:
        if n_tokens <= 0:
            return
        per = seconds / n_tokens
        self._d = per if self._d is None else (1 - EMA) * self._d + EMA * per

    def record_result(
        self, n_drafted: int, n_accepted: int, cls: int = 0, disputed_at: int | None = None
    ) -> None:
        """Learn from a checked draft of match class `cls`. A draft that reached its disputed token teaches
        the disputed estimate that token's outcome and its class the rest."""
        if not self.k_max:
            return
        d = disputed_at
        if d is None or d >= n_drafted or n_accepted < d:
            self._classes[cls].record(n_drafted, n_accepted)
        elif n_accepted == d:  # the guess failed: the agreed tokens before it were all right
            self._disputed[cls].record(1, 0)
            if d:
                self._classes[cls].record(d, d)
        else:
            self._disputed[cls].record(1, 1)
            if n_drafted > 1:
                self._classes[cls].record(n_drafted - 1, n_accepted - 1)

    # --- estimates ----------------------------------------------------------------------------------
    def accept_probs(self, cls: int = 0) -> list[float]:
        """Per depth, the chance that draft token i+1 is accepted given the earlier ones were."""
        return self._classes[cls].probs()

    def accept_prob(self, depth: int, cls: int = 0) -> float:
        """Chance that draft token `depth` (1-based) is accepted given the earlier ones were."""
        return self.accept_probs(cls)[depth - 1]

    def expected_tokens(self, k: int, cls: int = 0) -> float:
        total, chain = 1.0, 1.0
        for p in self.accept_probs(cls)[:k]:
            chain *= p
            total += chain
        return total

    def decode_time(self, n: int) -> float | None:
        """Seconds for a target decode of n tokens, from the cost curve (None: nothing measured yet)."""
        return self.costs.time(n)

    def speedup(self, k: int, cls: int = 0) -> float:
        """Predicted tokens/s with k drafts relative to plain decoding (1.0 = same)."""
        t1 = self.decode_time(1)
        tk = self.decode_time(k + 1)
        if k == 0 or t1 is None or tk is None:
            return 1.0
        return self.expected_tokens(k, cls) / ((tk + k * (self._d or 0.0)) / t1)

    def best(
        self, k_max: int | None = None, cls: int = 0, disputed_at: int | None = None
    ) -> tuple[int, float]:
        """The draft length with the highest predicted speedup (0: plain decoding wins), and that speedup:
        argmax of speedup(k) over 0..k_max, in one pass (choose() runs it every step). A draft must be
        predicted to beat plain decoding by MIN_GAIN. The token at `disputed_at` is priced at the disputed
        estimate: a draft stops short of a bad guess and lets the verify step's own token write it."""
        top = self.k_max if k_max is None else min(self.k_max, k_max)
        t1 = self.decode_time(1)
        if t1 is None:
            return 0, 1.0
        best_k, best, tokens, chain = 0, MIN_GAIN, 1.0, 1.0
        d = self._d or 0.0
        time = self.costs.time
        for k, p in enumerate(self.accept_probs(cls)[:top], 1):
            chain *= p if k - 1 != disputed_at else self._disputed[cls].probs()[0]
            tokens += chain
            tk = time(k + 1)
            if tk is not None and tokens * t1 / (tk + k * d) > best:
                best_k, best = k, tokens * t1 / (tk + k * d)
        return (best_k, best) if best_k else (0, 1.0)

    @property
    def draft_cost(self) -> float | None:
        """Smoothed drafter seconds per drafted token (None: not measured, or a free drafter)."""
        return self._d

    @classmethod
    def from_estimates(
        cls,
        accept: Sequence[float],
        costs: CostCurve,
        draft_s: float | None,
        *,
        weight: float = 100.0,
    ) -> DraftLengthController:
        """A controller that starts from earlier evidence instead of the prior: `accept[i]` is the chance
        that draft token i+1 is accepted given the ones before it were, worth `weight` observations."""
        ctl = cls(len(accept), costs=costs)
        first = ctl._classes[0]
        first.acc = [min(max(a, 0.0), 1.0) * weight for a in accept]
        first.tot = [weight] * len(accept)
        ctl._d = draft_s
        return ctl

    # --- decision -----------------------------------------------------------------------------------
    def choose(
        self, available: int | None = None, match_len: int = 0, disputed_at: int | None = None
    ) -> Choice:
        """The draft length for the next step. `available`: for free drafters (n-gram) that draft before
        the decision, how many tokens they proposed, `match_len` how long the match behind them is and
        `disputed_at` which of them is a guess between earlier occurrences; k is then chosen in
        0..available."""
        k_max = self.k_max if available is None else min(self.k_max, available)
        if k_max == 0:
            return Choice(0, "speculation disabled (k_max = 0)" if self.k_max == 0 else None)
        self._steps_since_single += 1
        cls = self._class = match_class(match_len)
        self._disputed_at = disputed_at
        if not self.adaptive:
            return Choice(k_max)
        if self.decode_time(1) is None or self._steps_since_single > REMEASURE_SINGLE:
            return Choice(0, MEASURING)  # every estimate is relative to the plain decode time
        if available is None and self._classes[cls].evidence == 0.0:
            return Choice(min(k_max, FIRST_K))  # a model drafter, no acceptance seen yet: try it first
        best_k, _ = self.best(k_max, cls, disputed_at)
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

    @property
    def last_class(self) -> int:
        """The match class of the last choice (what a shadow-checked proposal counts toward)."""
        return self._class

    @property
    def last_disputed_at(self) -> int | None:
        """The disputed token of the last choice's proposal (what a shadow-checked proposal reports)."""
        return self._disputed_at

    def off_detail(self) -> str:
        """Why drafting is off, in a user's words: how often the drafter's guesses are right (the estimate,
        which counts guesses checked without drafting them too), and what checking a short draft costs in
        plain tokens (the speed panel shows this)."""
        k = max(1, min(self.k_max, SHOWN_K))
        ratio = self.costs.ratio(k + 1) or float("nan")
        right = self.accept_prob(1, self._class)
        return (
            f"{OFF_DETAIL}: the drafter's guesses are right about {right:.0%} of the time, and checking "
            f"{k} of them costs as much as {ratio:.1f} plain tokens"
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
        self.cls = 0  # the match class the proposal came from
        self.disputed_at: int | None = None

    def watch(
        self, position: int, tokens: Sequence[int], cls: int = 0, disputed_at: int | None = None
    ) -> None:
        if self.position is None and tokens:
            # Only the first few: a long watch settles only after as many plain steps, and deeper depths
            # inherit the acceptance measured here anyway.
            self.position, self.tokens, self.cls = position, tuple(tokens[:SHADOW_K]), cls
            self.disputed_at = disputed_at if disputed_at is not None and disputed_at < SHADOW_K else None

    def check(self, output: Sequence[int]) -> tuple[int, int, int, int | None] | None:
        """(drafted, accepted, class, disputed token) once `output` (every token so far) settles the
        watched proposal: what DraftLengthController.record_result takes."""
        if self.position is None:
            return None
        seen = output[self.position : self.position + len(self.tokens)]
        n = 0
        while n < len(seen) and seen[n] == self.tokens[n]:
            n += 1
        if n == len(seen) and len(seen) < len(self.tokens):
            return None  # all right so far: wait for more tokens
        self.position = None
        return len(self.tokens), n, self.cls, self.disputed_at
