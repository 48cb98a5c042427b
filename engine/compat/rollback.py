"""How far a target's memory can roll back, decided once, at load, for every drafter.

Speculation drops the rejected tail of each verify batch from the target's memory. An attention KV cache
drops any suffix. A recurrent or hybrid model (Mamba, Qwen 3.5, LFM2, ...) keeps a running state instead:
llama.cpp can only restore it from per-token snapshots the context keeps (`n_rs_seq`, llama.cpp
`src/llama-memory-recurrent.cpp`, `seq_rm`), and only for the architectures that write them
(`llm_arch_supports_rs_rollback`, `src/llama-arch.cpp`). So a recurrent target gets as many snapshots as
its drafter's longest draft, and drafts are capped to the snapshots the context really has
(engine.inference.llama.KVSequence); a recurrent architecture without snapshots cannot speculate at all.
"""

from __future__ import annotations

from engine.compat.mtp import RECURRENT_OR_HYBRID, RS_ROLLBACK
from engine.config import MODEL_DRAFT_K_MAX

# n-gram lookup proposes up to NGRAM_K_MAX tokens, but every snapshot costs a copy of the whole recurrent
# state per layer (tens of MB on a 9B model): a recurrent target keeps 8, and n-gram drafts stop there.
RECURRENT_NGRAM_K_MAX = 8

_SNAPSHOTS = {"mtp": MODEL_DRAFT_K_MAX, "draft": MODEL_DRAFT_K_MAX, "ngram": RECURRENT_NGRAM_K_MAX}


def is_recurrent(architecture: str) -> bool:
    return architecture in RECURRENT_OR_HYBRID


def rollback_snapshots(architecture: str, drafter: str) -> int:
    """`n_rs_seq` to create a target context with for `drafter` ("mtp", "draft", "ngram" or "none"): the
    drafter's default draft length on a recurrent architecture that supports snapshots, else 0."""
    if architecture not in RS_ROLLBACK:
        return 0
    return _SNAPSHOTS.get(drafter, 0)


def rollback_refusal(architecture: str) -> str | None:
    """Why a target cannot speculate at all (its state cannot go back), else None."""
    if architecture in RECURRENT_OR_HYBRID and architecture not in RS_ROLLBACK:
        return (
            f"'{architecture}' keeps a recurrent state that this llama.cpp cannot roll back, so rejected "
            "drafts could not be undone"
        )
    return None
