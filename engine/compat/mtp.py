"""Which MTP drafting a model file allows, and whether a Gemma 4 assistant fits a target: decided from GGUF
metadata alone (engine.gguf.metadata), before llama.cpp sees either file.

This check is what keeps the app alive: llama.cpp 0.3.36 does not validate an assistant against its target.
It casts the target's KV cache to the Gemma 4 layout and views the target's K/V tensors with the assistant's
head sizes, so a wrong pair segfaults in `llama_init_from_model` or aborts in the first decode (facts in
docs/llama-cpp-mtp.md; llama.cpp `src/llama-model.cpp` `create_memory`,
src/models/gemma4-assistant.cpp). Every rule below names one such precondition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from engine.errors import IncompatibleDrafterError
from engine.gguf.metadata import CENTROID_HEAD_REASON

GEMMA4 = "gemma4"
GEMMA4_ASSISTANT = "gemma4-assistant"

# Architectures whose NextN layers the pinned llama.cpp can run as an MTP context (they build an
# LLM_GRAPH_TYPE_DECODER_MTP graph: vendor/llama.cpp/src/models/*.cpp). Others with nextn_predict_layers > 0
# would get the trunk graph in an MTP context.
# fmt: off
NEXTN_ARCHITECTURES = frozenset({
    "bailingmoe3", "cohere2moe", "deepseek2", "deepseek32", "deepseek4", "glm-dsa", "glm4moe", "glm5-next",
    "hy_v3", "mimo2", "nemotron_h_moe", "qwen35", "qwen35moe", "qwen3next", "step35",
})
# Recurrent/hybrid architectures (llm_arch_is_recurrent / llm_arch_is_hybrid): verification must drop
# rejected positions from their recurrent state, which works only where llama.cpp keeps per-sequence
# snapshots (llm_arch_supports_rs_rollback, RS_ROLLBACK) and the context asks for them (n_rs_seq).
RECURRENT_OR_HYBRID = frozenset({
    "mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7", "jamba", "falcon-h1", "plamo2",
    "granitehybrid", "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe", "qwen3next", "kimi-linear",
    "bailingmoe3", "kimi-k3", "glm5-next", "qwen35", "qwen35moe", "qwen4exp", "deepseek4", "minimax-01",
})
RS_ROLLBACK = frozenset({
    "kimi-k3", "qwen35", "qwen35moe", "qwen4exp", "deepseek4", "glm5-next", "nemotron_h", "nemotron_h_moe",
    "lfm2", "lfm2moe", "bailingmoe3",
})
# fmt: on

MTPKind = Literal["plain", "gemma4-assistant", "nextn", "fork-mtp"]

# Rule names carried by IncompatibleDrafterError.rule (tests and the UI key on them).
RULE_FORK_FORMAT = "fork-format"
RULE_NOT_ASSISTANT = "not-an-assistant"
RULE_TARGET_ARCH = "target-architecture"
RULE_TARGET_LAYOUT = "target-layout"
RULE_ASSISTANT_LAYOUT = "assistant-layout"
RULE_HIDDEN_SIZE = "hidden-size"
RULE_VOCAB = "vocab-size"
RULE_HEAD_DIM = "head-dim"
RULE_HEAD_DIM_SWA = "head-dim-swa"
RULE_KV_HEADS = "kv-heads"
RULE_CENTROID_HEAD = "centroid-head"


class ModelMeta(Protocol):
    """What pairing reads from a model file; engine.gguf.metadata.GGUFInfo provides it."""

    @property
    def architecture(self) -> str: ...
    @property
    def kind(self) -> MTPKind: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def embedding_length(self) -> int | None: ...
    @property
    def embedding_length_out(self) -> int | None: ...
    @property
    def block_count(self) -> int | None: ...
    @property
    def nextn_predict_layers(self) -> int: ...
    @property
    def key_length(self) -> int | None: ...
    @property
    def value_length(self) -> int | None: ...
    @property
    def key_length_swa(self) -> int | None: ...
    @property
    def value_length_swa(self) -> int | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def has_centroid_head(self) -> bool: ...

    def arch_get(self, suffix: str, default: object = None) -> object: ...


@dataclass(frozen=True, slots=True)
class MTPCapability:
    """What MTP a model file offers. `reason` says why it cannot be used (None: usable)."""

    kind: MTPKind
    reason: str | None
    n_mtp_layers: int = 0
    accepts_assistant: bool = False  # a Gemma 4 target: MTP with a separate -assistant file

    @property
    def available(self) -> bool:
        return self.reason is None and self.kind in ("gemma4-assistant", "nextn")

    @property
    def badge(self) -> str | None:
        """The catalog/model-store badge: "MTP" for files that carry a usable MTP drafter."""
        return "MTP" if self.available else None


def mtp_capability(info: ModelMeta) -> MTPCapability:
    arch = info.architecture
    if info.kind == "fork-mtp":
        return MTPCapability(
            "fork-mtp",
            f"'{arch}' is a Gemma 4 MTP drafter converted for a llama.cpp fork; "
            "this llama.cpp runs only the upstream 'gemma4-assistant' conversion",
        )
    if info.kind == "gemma4-assistant":
        n = info.nextn_predict_layers or (info.block_count or 0)
        centroids = info.has_centroid_head
        reason = f"this assistant cannot be loaded: {CENTROID_HEAD_REASON}" if centroids else None
        return MTPCapability("gemma4-assistant", reason, n_mtp_layers=n)
    if info.kind == "nextn":
        n = info.nextn_predict_layers
        if arch not in NEXTN_ARCHITECTURES:
            reason = f"the bundled llama.cpp has no MTP graph for '{arch}' NextN layers"
        elif arch in RECURRENT_OR_HYBRID and arch not in RS_ROLLBACK:
            reason = (
                f"unsupported memory layout: '{arch}' keeps a recurrent state this llama.cpp cannot roll "
                "back, so rejected draft tokens could not be undone"
            )
        else:
            reason = None
        return MTPCapability("nextn", reason, n_mtp_layers=n)
    if arch == GEMMA4:
        return MTPCapability(
            "plain", "MTP needs the matching Gemma 4 -assistant file", accepts_assistant=True
        )
    return MTPCapability("plain", "the model has no MTP layers")


def needs_rs_snapshots(info: ModelMeta) -> bool:
    """A NextN target whose recurrent state must be snapshotted (`n_rs_seq >= n_draft`) for rollback."""
    return info.architecture in RECURRENT_OR_HYBRID


def _swa_pattern(info: ModelMeta) -> tuple[bool, ...] | None:
    value = info.arch_get("attention.sliding_window_pattern")
    if isinstance(value, tuple) and all(isinstance(v, (bool, int)) for v in value):
        return tuple(bool(v) for v in value)
    return None


def _per_layer(info: ModelMeta, suffix: str, n_layer: int) -> list[int] | None:
    """A hyper-parameter that is either one number or one per layer, as a list of n_layer numbers."""
    value = info.arch_get(suffix)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return [value] * n_layer
    if isinstance(value, tuple) and len(value) == n_layer and all(isinstance(v, int) for v in value):
        return [int(v) for v in value]
    return None


def _refuse(rule: str, detail: str) -> IncompatibleDrafterError:
    return IncompatibleDrafterError(rule, detail)


def _label(info: ModelMeta, fallback: str) -> str:
    # general.name is informational only (no key names the target); it just makes messages readable.
    return f"'{info.name}'" if info.name else fallback


def check_assistant_pair(target: ModelMeta, assistant: ModelMeta) -> None:
    """Raise IncompatibleDrafterError(rule, detail) unless `assistant` is a Gemma 4 MTP assistant that
    llama.cpp can safely attach to `target`. Returns None for a compatible pair."""
    a_name, t_name = _label(assistant, "the assistant"), _label(target, "the target")
    if assistant.kind == "fork-mtp":
        raise _refuse(
            RULE_FORK_FORMAT,
            f"{a_name} has architecture '{assistant.architecture}', a llama.cpp fork's "
            "conversion; use a GGUF converted with upstream llama.cpp ('gemma4-assistant')",
        )
    if assistant.architecture != GEMMA4_ASSISTANT:
        raise _refuse(
            RULE_NOT_ASSISTANT,
            f"{a_name} is a '{assistant.architecture}' model, not a Gemma 4 -assistant drafter",
        )
    if assistant.has_centroid_head:
        raise _refuse(RULE_CENTROID_HEAD, f"{a_name}: {CENTROID_HEAD_REASON}")
    if target.architecture != GEMMA4:
        raise _refuse(
            RULE_TARGET_ARCH,
            f"a Gemma 4 assistant drafts only for Gemma 4 models; {t_name} is '{target.architecture}'",
        )

    t_layers, a_layers = target.block_count or 0, assistant.block_count or 0
    t_swa, a_swa = _swa_pattern(target), _swa_pattern(assistant)
    if t_layers < 2 or t_swa is None or len(t_swa) != t_layers or not t_swa[-2] or t_swa[-1]:
        raise _refuse(
            RULE_TARGET_LAYOUT,
            f"{t_name} must end with a sliding-window layer then a full-attention "
            "layer (the assistant reads their KV cache)",
        )
    if t_layers - _shared_kv_layers(target) < 2 or not all(
        t_swa[_cache_layer(target, t_layers, swa)] == swa for swa in (True, False)
    ):
        raise _refuse(RULE_TARGET_LAYOUT, f"{t_name} has a KV-sharing layout the assistant cannot read")
    if a_layers < 1 or a_swa is None or len(a_swa) != a_layers or assistant.nextn_predict_layers != a_layers:
        raise _refuse(
            RULE_ASSISTANT_LAYOUT,
            f"{a_name} lacks a per-layer sliding-window pattern or has nextn_predict_layers != block_count",
        )

    out = assistant.embedding_length_out
    if out is None or out != target.embedding_length or out == assistant.embedding_length:
        raise _refuse(
            RULE_HIDDEN_SIZE,
            f"{a_name} is made for another model size: it expects hidden size {out}, "
            f"{t_name} has {target.embedding_length}",
        )
    if assistant.n_vocab != target.n_vocab or assistant.n_vocab <= 0:
        raise _refuse(RULE_VOCAB, f"{a_name} has {assistant.n_vocab} tokens, {t_name} {target.n_vocab}")
    if (assistant.key_length, assistant.value_length) != (target.key_length, target.value_length):
        raise _refuse(
            RULE_HEAD_DIM,
            f"full-attention head size {assistant.key_length}/{assistant.value_length} "
            f"(key/value) vs the target's {target.key_length}/{target.value_length}",
        )
    a_dims_swa = (assistant.key_length_swa, assistant.value_length_swa)
    t_dims_swa = (target.key_length_swa, target.value_length_swa)
    if a_dims_swa != t_dims_swa or None in a_dims_swa:
        raise _refuse(
            RULE_HEAD_DIM_SWA,
            f"sliding-window head size {a_dims_swa[0]}/{a_dims_swa[1]} (key/value) "
            f"vs the target's {t_dims_swa[0]}/{t_dims_swa[1]}",
        )
    _check_kv_heads(target, assistant, t_layers, a_layers, a_swa)


def _cache_layer(target: ModelMeta, t_layers: int, is_swa: bool) -> int:
    """The target layer whose K/V tensors an assistant layer reads: n-2 (SWA) or n-1 (full), or, when those
    are KV-shared layers (Gemma 4 E2B/E4B), the earlier layer they reuse (llama-model.cpp `reuse`)."""
    layer = t_layers - 2 if is_swa else t_layers - 1
    n_kv_from_start = t_layers - _shared_kv_layers(target)
    if layer >= n_kv_from_start:
        layer = n_kv_from_start - (2 if is_swa else 1)
    return layer


def _shared_kv_layers(target: ModelMeta) -> int:
    value = target.arch_get("attention.shared_kv_layers", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_kv_heads(
    target: ModelMeta, assistant: ModelMeta, t_layers: int, a_layers: int, a_swa: Sequence[bool]
) -> None:
    # Assistant SWA layers view the target's layer n-2 K/V, full layers layer n-1's: the KV head counts
    # must match those layers exactly (the views are shaped with the assistant's count).
    t_kv = _per_layer(target, "attention.head_count_kv", t_layers) or _per_layer(
        target, "attention.head_count", t_layers
    )
    a_kv = _per_layer(assistant, "attention.head_count_kv", a_layers) or _per_layer(
        assistant, "attention.head_count", a_layers
    )
    if t_kv is None or a_kv is None:
        raise _refuse(RULE_KV_HEADS, "attention.head_count_kv is missing or malformed")
    for il, is_swa in enumerate(a_swa):
        shared = _cache_layer(target, t_layers, is_swa)
        if a_kv[il] != t_kv[shared]:
            raise _refuse(
                RULE_KV_HEADS,
                f"assistant layer {il} has {a_kv[il]} KV heads, the target layer {shared} "
                f"whose cache it reads has {t_kv[shared]}",
            )


@dataclass(frozen=True, slots=True)
class MTPPlan:
    """How to load a target for MTP, decided before llama.cpp sees any file.

    `kind` None means MTP will not run and `reason` says why (generation falls back to plain decoding or
    another drafter). `load_mtp` and `n_rs_seq` are the target's model/context settings."""

    kind: Literal["gemma4-assistant", "nextn"] | None
    reason: str | None = None
    load_mtp: bool = False
    n_rs_seq: int = 0


def plan_mtp(target: ModelMeta, assistant: ModelMeta | None, k_max: int) -> MTPPlan:
    """Raises IncompatibleDrafterError when `assistant` is given but does not fit `target` (the user asked
    for that pair: refusing names the rule); otherwise says whether and how MTP runs."""
    if assistant is not None:
        check_assistant_pair(target, assistant)
        return MTPPlan("gemma4-assistant", load_mtp=False)
    cap = mtp_capability(target)
    if cap.kind != "nextn" or cap.reason is not None:
        return MTPPlan(None, cap.reason or "the model has no MTP layers")
    # Recurrent state cannot be rewound position by position: llama.cpp keeps n_rs_seq snapshots, one per
    # position a verify step may have to drop (at most the draft length).
    n_rs_seq = max(1, k_max) if needs_rs_snapshots(target) else 0
    return MTPPlan("nextn", load_mtp=True, n_rs_seq=n_rs_seq)


KV_BYTES_PER_ELEMENT = {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32}


@dataclass(frozen=True, slots=True)
class MTPMemory:
    """Memory the MTP drafter adds on top of the plain target, for the fit picker."""

    weights_bytes: int  # assistant file, or the NextN layers loaded only with load_mtp
    kv_bytes: int  # NextN's own KV cache (an assistant reads the target's: 0)

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes


def mtp_memory(target: ModelMeta, assistant: ModelMeta | None, n_ctx: int, kv_type: str = "f16") -> MTPMemory:
    """Estimated from metadata (tensor sizes and KV geometry); compute buffers are not included."""
    if assistant is not None:
        return MTPMemory(_tensor_bytes(assistant, lambda _name: True), 0)
    n_nextn = target.nextn_predict_layers
    n_trunk = (target.block_count or 0) - n_nextn
    if n_nextn <= 0:
        return MTPMemory(0, 0)

    def is_mtp_tensor(name: str) -> bool:
        parts = name.split(".")
        return len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit() and int(parts[1]) >= n_trunk

    kv_heads = _per_layer(target, "attention.head_count_kv", target.block_count or 0) or []
    heads = max(kv_heads[n_trunk:], default=0)
    per_token = heads * ((target.key_length or 0) + (target.value_length or 0))
    kv = int(n_nextn * n_ctx * per_token * KV_BYTES_PER_ELEMENT.get(kv_type, 2.0))
    return MTPMemory(_tensor_bytes(target, is_mtp_tensor), kv)


def _tensor_bytes(info: ModelMeta, keep: Callable[[str], bool]) -> int:
    tensors = getattr(info, "tensors", ())
    return sum(int(t.n_bytes) for t in tensors if keep(t.name))
