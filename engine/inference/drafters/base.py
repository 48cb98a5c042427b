"""The drafter protocol, after llama.cpp's common/speculative.h verb set: compatible? -> begin -> draft ->
accept. Drafters only propose; the verifier (engine.inference.verify) alone decides what is emitted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.config import MODEL_DRAFT_K_MAX, SpecParams


@dataclass(frozen=True, slots=True)
class Draft:
    tokens: tuple[int, ...]
    reason: str | None = None  # why the draft is empty or shorter than asked ("no n-gram match", ...)


@runtime_checkable
class Drafter(Protocol):
    """Proposes tokens that the target then verifies.

    The generation loop calls, in order: `begin` once per generation (after the prompt is in the target's
    KV), then per step `draft` -> target verify decode -> `observe` -> `accept`. `observe` is also called
    after every plain single-token target decode, so drafters that read the target's state (MTP hidden
    rows) or keep their own KV in step (draft model, NextN) see every target batch.
    """

    # Optional class attribute `cheap = True`: drafting costs next to nothing (n-gram lookup), so the loop
    # asks for a draft every step and the controller trims it, instead of deciding before drafting.
    # Optional `default_k_max`: the longest draft when the request leaves k_max unset (else 3).
    name: str  # shown in stats and the UI: "n-gram", "draft model: SmolLM2-135M", "MTP (Gemma 4 assistant)"

    def configure(self, spec: SpecParams) -> None:
        """Take a request's drafter settings (p_min, n-gram sizes); unset ones: the drafter's own."""

    def begin(self, prompt: Sequence[int]) -> None:
        """A new generation starts; `prompt` is the full context now in the target's KV cache."""

    def draft(self, context: Sequence[int], k: int) -> Draft:
        """Propose up to k tokens to follow `context` (every token so far, the last one not yet decoded)."""

    def observe(self, batch: Sequence[int], pos0: int, n_kept: int) -> None:
        """The target just decoded `batch` at positions pos0..; its first n_kept tokens stay in its KV."""

    def accept(self, n_accepted: int) -> None:
        """The target accepted the first n_accepted tokens of the last draft."""

    def reset(self) -> None:
        """Forget all state (a new conversation, or the target's KV was cleared)."""

    def close(self) -> None:
        """Free native resources. Idempotent."""


def draft_k_max(drafter: Drafter | None, spec: SpecParams) -> int:
    """The longest draft one step may verify: the request's k_max, else the drafter's default."""
    if drafter is None or not spec.enabled:
        return 0
    k = spec.k_max if spec.k_max is not None else getattr(drafter, "default_k_max", MODEL_DRAFT_K_MAX)
    return max(0, int(k))
