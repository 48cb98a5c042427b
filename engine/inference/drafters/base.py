"""The drafter protocol, after llama.cpp's common/speculative.h small verb set. Drafters only propose; the
verifier (engine.inference.verify) alone decides what is emitted. Which drafter fits which target is decided
before one is built, from metadata (engine.compat)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.config import SpecParams


@dataclass(frozen=True, slots=True)
class Draft:
    tokens: tuple[int, ...]
    reason: str | None = None  # why the draft is empty or shorter than asked ("no n-gram match", ...)
    # Lookup drafters: how many tokens before the proposal match its source (0: not a lookup). A long match
    # is text being copied; the controller keeps acceptance per match length.
    match_len: int = 0
    # Lookup drafters: the index of the first proposed token that another earlier occurrence, matched about
    # as far back, went on differently from (a counter, a column of values): that token is a guess.
    disputed_at: int | None = None
    # Seconds of the draft call spent feeding earlier target tokens to the drafter's own cache (NextN's
    # held-back catch-up): not drafting, so the loop leaves it out of the drafter's cost per token.
    catch_up_s: float = 0.0


@runtime_checkable
class Drafter(Protocol):
    """Proposes tokens that the target then verifies.

    Per step the generation loop calls `draft` -> target verify decode -> `observe`. `observe` follows every
    target decode (prompt chunks and plain steps too), so drafters that read the target's state (MTP hidden
    rows) or mirror its KV (NextN) see every batch, and any drafter learns when the target went back.
    """

    name: str  # shown in stats and the UI: "n-gram", "draft model: SmolLM2-135M", "MTP (Gemma 4 assistant)"
    # Drafting costs next to nothing (n-gram lookup): the loop asks for a draft every step and the controller
    # trims it. Otherwise the controller decides the length first and the drafter's time counts against it.
    cheap: bool
    default_k_max: int  # the longest draft when the request leaves k_max unset

    def configure(self, spec: SpecParams) -> None:
        """Take a request's drafter settings (p_min, n-gram sizes); unset ones: the drafter's own."""

    def draft(self, context: Sequence[int], k: int) -> Draft:
        """Propose up to k tokens to follow `context` (every token so far, the last one not yet decoded)."""

    def observe(self, batch: Sequence[int], pos0: int, n_kept: int) -> None:
        """The target just decoded `batch` at positions pos0..; its first n_kept tokens stay in its KV."""

    def reset(self) -> None:
        """Forget all state (a new conversation, or the target's KV was cleared)."""

    def close(self) -> None:
        """Free native resources. Idempotent."""


def draft_k_max(drafter: Drafter | None, spec: SpecParams) -> int:
    """The longest draft one step may verify: the request's k_max, else the drafter's default."""
    if drafter is None or not spec.enabled:
        return 0
    return max(0, spec.k_max if spec.k_max is not None else drafter.default_k_max)
