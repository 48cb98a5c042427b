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

Both are speedups over plain decoding, which costs t(1) per token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.inference.drafters.base import Draft

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


def achieved_ceiling(provenance: Sequence[int], cost: Cost) -> float:
    """Speedup over plain decoding if every step of the run had verified exactly what it accepted."""
    steps = accepted_per_step(provenance)
    tokens = sum(a + 1 for a in steps)
    best_time = sum(cost(a + 1) for a in steps)
    return tokens * cost(1) / best_time if best_time > 0 else 1.0


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
    output. Drafting more than L(p) never pays (t is non-decreasing), so the step emits k + 1 tokens with
    k <= L(p); the fastest path to the end is found backwards over positions."""
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
    costs = [cost(i) for i in range(1, k_max + 2)]
    for p in range(n - 1, 0, -1):
        best = costs[0] + time_to_end[p + 1]
        for k in range(1, min(accept[p], n - p - 1) + 1):
            best = min(best, costs[k] + time_to_end[p + k + 1])
        time_to_end[p] = best
    return (n - 1) * costs[0] / time_to_end[1] if time_to_end[1] > 0 else 1.0
