"""A classic small draft model with its own context, kept in step with the target's accepted tokens."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.config import MODEL_DRAFT_K_MAX, SpecParams
from engine.errors import KVRollbackError
from engine.inference.drafters.base import Draft
from engine.inference.llama import Context, KVSequence, Model, common_prefix


class DraftModelDrafter:
    cheap = False  # every drafted token is a decode of the draft model
    default_k_max = MODEL_DRAFT_K_MAX

    def __init__(self, model: Model, ctx: Context, p_min: float = 0.0) -> None:
        self.model = model
        self.ctx = ctx
        self.seq = KVSequence(ctx)  # the draft model's own cache, caught up lazily in draft()
        self.p_min = self.default_p_min = p_min
        self.name = f"draft model: {model.name}"

    def configure(self, spec: SpecParams) -> None:
        self.p_min = self.default_p_min if spec.p_min is None else spec.p_min

    def draft(self, context: Sequence[int], k: int) -> Draft:
        if k <= 0 or not context:
            return Draft(())
        # Reuse whatever prefix the draft cache already holds; the last context token must be decoded
        # again for its logits. A recurrent draft model goes back to its checkpoint (below) and forward.
        try:
            self.seq.rewind(common_prefix(self.seq.tokens, context[:-1]))
        except KVRollbackError:
            self.seq.clear()
        room = self.ctx.n_ctx - len(context)
        k = min(k, room)
        if k <= 0:
            return Draft((), "draft model context is full")
        self.seq.decode(context[len(self.seq) :], "last")
        self.seq.checkpoint()  # drafted tokens go in one by one: no snapshot could drop them later
        out: list[int] = []
        for i in range(k):
            logits = self.ctx.logits(-1)
            tok = int(np.argmax(logits))
            if self.p_min > 0.0 and _top_prob(logits) < self.p_min:
                break
            out.append(tok)
            if i + 1 < k:
                self.seq.decode([tok], "last")
        return Draft(tuple(out), None if out else f"draft model confidence below p_min={self.p_min}")

    def observe(self, batch: Sequence[int], pos0: int, n_kept: int) -> None:
        pass  # the draft cache follows the context lazily in draft()

    def reset(self) -> None:
        self.seq.clear()

    def close(self) -> None:
        self.ctx.close()
        self.model.close()


def _top_prob(logits: np.ndarray) -> float:
    m = float(logits.max())
    return 1.0 / float(np.exp(logits - m).sum())
