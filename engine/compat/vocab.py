"""Draft-model vocabulary rules, after llama.cpp's `common_speculative_are_compatible`: a draft model's
tokens must mean the same thing to the target. Checked on the loaded models (token texts are only known
then); the metadata-only pre-check for the model manager is engine.compat.options.check_draft_metadata.
No llama.cpp here: the loaded models are read through the small `Vocabulary` protocol."""

from __future__ import annotations

from typing import Protocol

from engine.errors import IncompatibleDrafterError

MAX_VOCAB_SIZE_DIFF = 128  # as llama.cpp's common_speculative_are_compatible
VOCAB_CHECK_START = 5  # llama.cpp skips the first ids (special tokens often differ harmlessly)


class Vocabulary(Protocol):
    """What the rules read of a loaded model (engine.inference.llama.Model provides it)."""

    vocab_type: int
    n_vocab: int
    add_bos: bool
    bos: int
    eos: int

    def token_text(self, token: int) -> str: ...


def check_draft_compatible(target: Vocabulary, draft: Vocabulary) -> None:
    """Refuse a draft model whose tokens would not mean the same thing to the target. Names the rule."""
    if target.vocab_type != draft.vocab_type:
        raise IncompatibleDrafterError(
            "vocab type", f"target vocab type {target.vocab_type}, draft vocab type {draft.vocab_type}"
        )
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
