"""A classic small draft model with its own context, kept in step with the target's accepted tokens."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.config import SpecParams
from engine.errors import IncompatibleDrafterError
from engine.inference.drafters.base import Draft
from engine.inference.llama import Context, Model

MAX_VOCAB_SIZE_DIFF = 128  # as llama.cpp's common_speculative_are_compatible
VOCAB_CHECK_START = 5  # llama.cpp skips the first ids (special tokens often differ harmlessly)


def check_draft_compatible(target: Model, draft: Model) -> None:
    """Refuse a draft model whose tokens would not mean the same thing to the target. Names the rule."""
    import llama_cpp as L

    t_type, d_type = L.llama_vocab_type(target.vocab), L.llama_vocab_type(draft.vocab)
    if t_type != d_type:
        raise IncompatibleDrafterError("vocab type", f"target vocab type {t_type}, draft vocab type {d_type}")
    if target.add_bos != draft.add_bos or (target.add_bos and target.bos != draft.bos):
        raise IncompatibleDrafterError("BOS token", f"target BOS {target.bos}, draft BOS {draft.bos}")
    if target.eos != draft.eos:
        raise IncompatibleDrafterError("EOS token", f"target EOS {target.eos}, draft EOS {draft.eos}")
    diff = abs(target.n_vocab - draft.n_vocab)
    if diff > MAX_VOCAB_SIZE_DIFF:
        raise IncompatibleDrafterError(
            "vocab size",
            f"target has {target.n_vocab} tokens, draft {draft.n_vocab} "
            f"(difference {diff} > {MAX_VOCAB_SIZE_DIFF})",
        )
    for tok in range(VOCAB_CHECK_START, min(target.n_vocab, draft.n_vocab)):
        t_text, d_text = target.token_text(tok), draft.token_text(tok)
        if t_text != d_text:
            raise IncompatibleDrafterError(
                "token texts", f"token {tok} is {t_text!r} in the target but {d_text!r} in the draft model"
            )


class DraftModelDrafter:
    def __init__(self, model: Model, ctx: Context, p_min: float = 0.0) -> None:
        self.model = model
        self.ctx = ctx
        self.p_min = self.default_p_min = p_min
        self.name = f"draft model: {model.name}"
        self._kv: list[int] = []  # tokens whose KV the draft context holds, positions 0..len-1

    def configure(self, spec: SpecParams) -> None:
        self.p_min = self.default_p_min if spec.p_min is None else spec.p_min

    def begin(self, prompt: Sequence[int]) -> None:
        pass  # catch-up happens lazily in draft(), reusing whatever prefix the draft KV already holds

    def draft(self, context: Sequence[int], k: int) -> Draft:
        if k <= 0 or not context:
            return Draft(())
        common = 0
        limit = min(len(self._kv), len(context) - 1)  # the last context token must be decoded for logits
        while common < limit and self._kv[common] == context[common]:
            common += 1
        if common < len(self._kv):
            self.ctx.truncate(common)
            del self._kv[common:]
        room = self.ctx.n_ctx - len(context)
        k = min(k, room)
        if k <= 0:
            return Draft((), "draft model context is full")
        self.ctx.decode(context[common:], common, "last")
        self._kv.extend(context[common:])
        out: list[int] = []
        for i in range(k):
            logits = self.ctx.logits(-1)
            tok = int(np.argmax(logits))
            if self.p_min > 0.0 and _top_prob(logits) < self.p_min:
                break
            out.append(tok)
            if i + 1 < k:
                self.ctx.decode([tok], len(self._kv), "last")
                self._kv.append(tok)
        return Draft(tuple(out), None if out else f"draft model confidence below p_min={self.p_min}")

    def observe(self, batch: Sequence[int], pos0: int, n_kept: int) -> None:
        pass

    def accept(self, n_accepted: int) -> None:
        pass

    def reset(self) -> None:
        self.ctx.clear()
        self._kv.clear()

    def close(self) -> None:
        self.ctx.close()
        self.model.close()


def _top_prob(logits: np.ndarray) -> float:
    m = float(logits.max())
    return 1.0 / float(np.exp(logits - m).sum())
