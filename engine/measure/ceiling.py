"""How fast speculation could have been, from the measured cost curve: the yardsticks a benchmark holds the
draft-length controller to.

- `achieved_ceiling`: for the acceptance a run achieved. Each verify step of the run emitted a accepted
  drafts and one token of the target's own; no policy can emit those a + 1 tokens for less than t(a + 1)
  (drafting exactly the tokens that will be accepted, nothing spent outside the decode). The run's speedup
  over that ceiling is how much of the possible the controller and the loop delivered.
- `oracle_ceiling`: for the drafter. Replaying a lookup drafter along the output (its proposals depend only
  on the text so far) gives, at every position, how many of its tokens would be accepted; the fastest
  schedule of drafts over those, on the measured curve, is the best any draft-length policy could do with
  this drafter on this machine.
- `priced_policy`: what Tandem's own controller and n-gram drafter reach on a given text and curve, with no
  model in the loop (benchmarks/replay_controller.py; benchmarks/vs_llama_cpp.py prices it on the reply
  native llama.cpp wrote, to compare the two policies on one text).

All three are speedups over plain decoding, which costs t(1) per token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.config import NGRAM_K_MAX
from engine.inference.controller import DraftLengthController, ShadowDraft
from engine.inference.cost import CostCurve
from engine.inference.drafters.base import Draft
from engine.inference.drafters.ngram import NGramDrafter
from engine.stats import StepResult

Cost = Callable[[int], float]  # t(n): seconds of a verify decode of n tokens


def accepted_per_step(provenance: Sequence[int]) -> list[int]:
    """Accepted drafts of each verify step, from a run's per-token provenance (0: the target's own token,
    d > 0: an accepted draft at depth d). Each step emits its accepted drafts, then one token of the target's
    own; the first token comes from the prompt, before any step. A step cut short by the end of the reply
    (its drafts accepted, the target's token never emitted) counts as one that accepted one token fewer:
    it emitted as many tokens."""
    steps: list[int] = []
    run = 0
    for depth in provenance[1:]:
        if depth:
            run += 1
        else:
            steps.append(run)
            run = 0
    if run:
        steps.append(run - 1)
    return steps


def achieved_ceiling(provenance: Sequence[int], cost: Cost, k_max: int = 64) -> float:
    """Speedup over plain decoding if every step of the run had verified exactly what it accepted (or a
    bigger batch, where the curve makes one cheaper)."""
    steps = accepted_per_step(provenance)
    cheapest = _cheapest_from(cost, k_max)
    tokens = sum(a + 1 for a in steps)
    best_time = sum(cheapest[min(a, k_max)] for a in steps)
    return tokens * cost(1) / best_time if best_time > 0 else 1.0


def _cheapest_from(cost: Cost, k_max: int) -> list[float]:
    """Index a: the cheapest verify of a or more drafts, up to k_max (a curve that is not monotone where a
    bigger batch really is cheaper makes drafting a few extra tokens free)."""
    out = [cost(k + 1) for k in range(k_max + 1)]
    for a in range(k_max - 1, -1, -1):
        out[a] = min(out[a], out[a + 1])
    return out


def oracle_ceiling(
    draft: Callable[[Sequence[int], int], Draft],
    prompt: Sequence[int],
    generated: Sequence[int],
    cost: Cost,
    k_max: int,
) -> float:
    """Speedup over plain decoding of the best schedule of drafts from `draft` (a lookup drafter's `draft`
    method, replayed on the output) along `generated`, on the cost curve `cost`.

    From position p (tokens generated[:p] emitted, the last one not yet decoded) a step drafting k tokens
    emits min(k, L(p)) + 1 of them for t(k + 1), where L(p) is how many of the drafter's proposal match the
    output. So a step emits a + 1 tokens for a <= L(p), at the cheapest t(k + 1) with k >= a (drafting more
    than will be accepted pays only where the curve drops); the fastest path to the end is found backwards
    over positions."""
    n = len(generated)
    if n < 2:
        return 1.0
    context = [*prompt, generated[0]]
    accept = [0] * n  # accept[p]: drafts that would be accepted from position p (generated[:p+1] emitted)
    for p in range(1, n):
        proposal = draft(context, k_max).tokens
        future = generated[p : p + len(proposal)]
        a = 0
        while a < len(future) and proposal[a] == future[a]:
            a += 1
        accept[p] = a
        context.append(generated[p])
    # time_to_end[p]: least seconds to emit generated[p:] once generated[:p] is out (the first token comes
    # from the prompt, as in the run).
    time_to_end = [0.0] * (n + 1)
    cheapest = _cheapest_from(cost, k_max)
    t1 = cost(1)
    for p in range(n - 1, 0, -1):
        best = t1 + time_to_end[p + 1]
        for a in range(1, min(accept[p], n - p - 1, k_max) + 1):
            best = min(best, cheapest[a] + time_to_end[p + a + 1])
        time_to_end[p] = best
    return (n - 1) * t1 / time_to_end[1] if time_to_end[1] > 0 else 1.0


class _FrozenCurve(CostCurve):
    """A curve that ignores timings after its seed: every decision of a priced run sees the same costs."""

    def __init__(self, samples: dict[int, tuple[float, ...]]) -> None:
        self._frozen = False
        super().__init__(samples)
        self._frozen = True

    def record(self, n: int, seconds: float) -> None:
        if not self._frozen:
            super().record(n, seconds)


def priced_policy(
    prompt: Sequence[int],
    generated: Sequence[int],
    curve: dict[int, tuple[float, ...]],
    k_max: int = NGRAM_K_MAX,
) -> tuple[float, list[int], list[int]]:
    """Speedup over plain decoding that Tandem's controller and n-gram drafter reach on `generated`, priced on
    the cost curve measured as `curve` (CostCurve samples) with no model in the loop: step by step as the
    generation loop drives them (a proposal, the controller's trim, the accepted prefix, the shadow check of a
    declined proposal). Deterministic for a given curve, so two texts or two policies compare on equal
    costs. Returns the speedup and each step's draft length and accepted count."""
    costs = _FrozenCurve(curve)

    def t(n: int) -> float:
        return costs.time(n) or 0.0

    ctl = DraftLengthController(k_max, costs=costs, lookup=True)
    drafter, shadow = NGramDrafter(), ShadowDraft()
    ctx, p, spent = [*prompt, generated[0]], 1, 0.0
    ks: list[int] = []
    accepted: list[int] = []
    while p < len(generated):
        room = len(generated) - p - 1
        draft: Sequence[int] = ()
        if room > 0:
            proposal = drafter.draft(ctx, min(ctl.k_max, room))
            if proposal.tokens:
                choice = ctl.choose(
                    available=len(proposal.tokens),
                    match_len=proposal.match_len,
                    disputed_at=proposal.disputed_at,
                )
                draft = proposal.tokens[: choice.k]
                if not draft:
                    shadow.watch(len(ctx), proposal.tokens, ctl.last_class, ctl.last_disputed_at)
        a = 0
        while a < len(draft) and draft[a] == generated[p + a]:
            a += 1
        emitted = tuple(generated[p : p + a + 1])
        spent += t(len(draft) + 1)
        ctl.record_step(StepResult(len(draft), a, emitted, 0.0, t(len(draft) + 1), a < len(draft)))
        drafter.observe([ctx[-1], *draft], len(ctx) - 1, a + 1)
        ctx += emitted
        p += len(emitted)
        settled = shadow.check(ctx)
        if settled is not None:
            ctl.record_result(*settled)
        ks.append(len(draft))
        accepted.append(a)
    return ((len(generated) - 1) * t(1) / spent if spent else 1.0), ks, accepted
