"""Lossless verification of a draft, as a pure function.

Sample-and-match (what every llama.cpp production path does): the target's own sampler picks the token of
each position from the verification logits; a draft token is *accepted* only if it equals that pick. The
first mismatch is replaced by the target's pick (*recovered*); if every draft token is accepted, the
target's pick after the last one is a free *bonus* token. Emitted tokens are therefore exactly what the
target would have sampled at those positions, at any temperature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    n_accepted: int  # draft tokens accepted (0..k)
    emitted: tuple[int, ...]  # accepted drafts + one target token (recovered or bonus); len = n_accepted + 1


def verify_draft(draft: Sequence[int], target_pick: Callable[[int], int]) -> Verdict:
    """`target_pick(i)` is the target's sampled token for verify row i (row 0 follows the last emitted
    token, row i follows draft[i-1]). Rows are sampled lazily: only as far as the draft keeps matching."""
    emitted: list[int] = []
    for i in range(len(draft) + 1):
        token = target_pick(i)
        emitted.append(token)
        if i == len(draft) or token != draft[i]:
            break
    return Verdict(n_accepted=len(emitted) - 1, emitted=tuple(emitted))
