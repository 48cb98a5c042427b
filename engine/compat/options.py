"""Which drafters can go with a target: every candidate listed, each either usable or with the rule it fails.

The model manager shows the incompatible ones greyed out with their reason instead of hiding them, so the
user learns why a file cannot be used. Two sources of facts:

- catalog entries (nothing downloaded yet): the numbers in resources/catalog.json (architecture, backbone
  width, vocabulary size);
- files on disk: their GGUF metadata, through the same checks the engine runs before loading
  (engine.compat.mtp.check_assistant_pair for Gemma 4 assistants, `check_draft_metadata` for draft models).

A draft model's token texts are compared only when both models are loaded
(engine.inference.drafters.draft_model): passing here means "not refused by metadata", and the engine may
still decline it with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.compat.mtp import (
    GEMMA4,
    NEXTN_ARCHITECTURES,
    RECURRENT_OR_HYBRID,
    RS_ROLLBACK,
    RULE_FORK_FORMAT,
    RULE_HIDDEN_SIZE,
    RULE_TARGET_ARCH,
    RULE_VOCAB,
    check_assistant_pair,
    mtp_capability,
)
from engine.compat.vocab import MAX_VOCAB_SIZE_DIFF
from engine.errors import IncompatibleDrafterError
from engine.gguf.metadata import GGUFInfo
from engine.store.catalog import Catalog, ModelEntry

OptionKind = Literal["assistant", "nextn", "draft", "ngram"]

# Rules of this module (the assistant rules are engine.compat.mtp's).
RULE_NO_MTP_LAYERS = "no-mtp-layers"
RULE_NEXTN_UNSUPPORTED = "nextn-unsupported"
RULE_VOCAB_TYPE = "vocab-type"
RULE_SPECIAL_TOKENS = "special-tokens"
RULE_NOT_SMALLER = "not-smaller"
RULE_SAME_FILE = "same-file"

KIND_LABELS: dict[OptionKind, str] = {
    "assistant": "MTP assistant",
    "nextn": "embedded NextN head",
    "draft": "draft model",
    "ngram": "n-gram lookup",
}


@dataclass(frozen=True, slots=True)
class DrafterOption:
    """One candidate drafter. `rule` None: usable with the target; otherwise the failed rule and why."""

    kind: OptionKind
    label: str
    rule: str | None = None
    reason: str | None = None
    model_id: str | None = None  # a catalog model (assistant or draft model)
    path: Path | None = None  # a file on disk

    @property
    def compatible(self) -> bool:
        return self.rule is None

    @property
    def kind_label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def key(self) -> str:
        """Stable identity across recomputations (for keeping a selection)."""
        return f"{self.kind}:{self.model_id or self.path or ''}"


NEXTN_LABEL = "Embedded NextN head (inside the target file)"
NGRAM = DrafterOption("ngram", "n-gram lookup (no extra model: drafts from text already in the chat)")


def _ordered(options: Sequence[DrafterOption]) -> tuple[DrafterOption, ...]:
    return tuple(o for o in options if o.compatible) + tuple(o for o in options if not o.compatible)


# --- catalog entries ---------------------------------------------------------------------------------------


def nextn_refusal(architecture: str, nextn_layers: int) -> tuple[str, str] | None:
    """(rule, reason) when the model's own NextN head cannot draft, else None."""
    if nextn_layers <= 0:
        return RULE_NO_MTP_LAYERS, "the model has no embedded NextN (MTP) layers"
    if architecture not in NEXTN_ARCHITECTURES:
        return (
            RULE_NEXTN_UNSUPPORTED,
            f"the bundled llama.cpp has no MTP graph for '{architecture}' NextN layers",
        )
    if architecture in RECURRENT_OR_HYBRID and architecture not in RS_ROLLBACK:
        return (
            RULE_NEXTN_UNSUPPORTED,
            f"'{architecture}' keeps a recurrent state this llama.cpp cannot roll back",
        )
    return None


def _catalog_assistant(target: ModelEntry, assistant: ModelEntry) -> DrafterOption:
    t, a = target.arch, assistant.arch
    refusal: tuple[str, str] | None = None
    if t.architecture != GEMMA4:
        refusal = (
            RULE_TARGET_ARCH,
            f"a Gemma 4 assistant drafts only for Gemma 4 models; {target.name} is '{t.architecture}'",
        )
    elif a.n_embd_out is not None and t.n_embd is not None and a.n_embd_out != t.n_embd:
        refusal = (
            RULE_HIDDEN_SIZE,
            f"made for another model size: it expects hidden size {a.n_embd_out}, the target has {t.n_embd}",
        )
    elif a.n_vocab is not None and t.n_vocab is not None and a.n_vocab != t.n_vocab:
        refusal = (RULE_VOCAB, f"vocabulary mismatch: {a.n_vocab} tokens, the target has {t.n_vocab}")
    rule, reason = refusal if refusal else (None, None)
    return DrafterOption("assistant", assistant.name, rule, reason, model_id=assistant.id)


def _catalog_draft(target: ModelEntry, draft: ModelEntry) -> DrafterOption:
    tv, dv = target.arch.n_vocab, draft.arch.n_vocab
    rule = reason = None
    if tv is not None and dv is not None and abs(tv - dv) > MAX_VOCAB_SIZE_DIFF:
        rule, reason = RULE_VOCAB, f"vocabulary mismatch: {dv} tokens, the target has {tv}"
    elif target.params_b is not None and draft.params_b is not None and draft.params_b >= target.params_b:
        rule, reason = RULE_NOT_SMALLER, "a draft model must be much smaller than its target to save time"
    return DrafterOption("draft", draft.name, rule, reason, model_id=draft.id)


def catalog_drafter_options(catalog: Catalog, target: ModelEntry) -> tuple[DrafterOption, ...]:
    """Every drafter of the catalog for `target` (MTP assistants, its NextN head, draft models, n-gram),
    usable ones first."""
    options: list[DrafterOption] = [
        _catalog_assistant(target, m) for m in catalog.models.values() if m.role == "assistant"
    ]
    refusal = nextn_refusal(target.arch.architecture, target.arch.nextn_layers)
    rule, reason = refusal if refusal else (None, None)
    options.append(DrafterOption("nextn", NEXTN_LABEL, rule, reason, model_id=target.id))
    options += [_catalog_draft(target, m) for m in catalog.models.values() if m.role == "draft"]
    options.append(NGRAM)
    return _ordered(options)


# --- files on disk -----------------------------------------------------------------------------------------


def check_draft_metadata(target: GGUFInfo, draft: GGUFInfo) -> None:
    """Raise IncompatibleDrafterError unless `draft` could be a draft model for `target`, judged from GGUF
    metadata (tokenizer type, vocabulary size, special tokens, size). Token texts are compared at load."""
    if target.path == draft.path:
        raise IncompatibleDrafterError(RULE_SAME_FILE, "this is the target itself")
    if draft.kind in ("gemma4-assistant", "fork-mtp"):
        raise IncompatibleDrafterError(RULE_VOCAB_TYPE, "an MTP assistant is not a stand-alone draft model")
    if target.vocab_model != draft.vocab_model:
        raise IncompatibleDrafterError(
            RULE_VOCAB_TYPE, f"tokenizer '{draft.vocab_model}', the target's is '{target.vocab_model}'"
        )
    diff = abs(target.n_vocab - draft.n_vocab)
    if diff > MAX_VOCAB_SIZE_DIFF:
        raise IncompatibleDrafterError(
            RULE_VOCAB, f"vocabulary mismatch: {draft.n_vocab} tokens, the target has {target.n_vocab}"
        )
    for what, t_id, d_id in (
        ("BOS", target.bos_token_id, draft.bos_token_id),
        ("EOS", target.eos_token_id, draft.eos_token_id),
    ):
        if t_id is not None and d_id is not None and t_id != d_id:
            raise IncompatibleDrafterError(
                RULE_SPECIAL_TOKENS, f"{what} token {d_id}, the target's is {t_id}"
            )
    if draft.tensor_bytes >= target.tensor_bytes:
        raise IncompatibleDrafterError(
            RULE_NOT_SMALLER, "a draft model must be much smaller than its target to save time"
        )


def _label(info: GGUFInfo) -> str:
    # The file name, not general.name: several files of one model (quantizations, conversions) share a name.
    return info.path.name


def local_drafter_options(target: GGUFInfo, candidates: Sequence[GGUFInfo]) -> tuple[DrafterOption, ...]:
    """Every drafter `target` could use among `candidates` (GGUF files on disk), plus its own NextN head and
    n-gram lookup; usable ones first. Assistants are checked with the rules the engine enforces at load."""
    options: list[DrafterOption] = []
    for c in candidates:
        if c.path == target.path:
            continue
        if c.kind == "fork-mtp":
            options.append(
                DrafterOption(
                    "assistant",
                    _label(c),
                    RULE_FORK_FORMAT,
                    f"fork-only architecture '{c.architecture}': converted for a llama.cpp fork, the bundled "
                    "llama.cpp loads only 'gemma4-assistant'",
                    path=c.path,
                )
            )
            continue
        kind: OptionKind = "assistant" if c.kind == "gemma4-assistant" else "draft"
        try:
            if kind == "assistant":
                check_assistant_pair(target, c)
            else:
                check_draft_metadata(target, c)
        except IncompatibleDrafterError as exc:
            options.append(DrafterOption(kind, _label(c), exc.rule, exc.detail, path=c.path))
        else:
            options.append(DrafterOption(kind, _label(c), path=c.path))
    cap = mtp_capability(target)
    refusal = nextn_refusal(target.architecture, target.nextn_predict_layers)
    if refusal is None and cap.reason is not None:
        refusal = (RULE_NEXTN_UNSUPPORTED, cap.reason)
    rule, reason = refusal if refusal else (None, None)
    options.append(DrafterOption("nextn", NEXTN_LABEL, rule, reason, path=target.path))
    options.append(NGRAM)
    return _ordered(options)
