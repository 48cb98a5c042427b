"""The numbers that decide how much memory a model takes in llama.cpp, per block: weight bytes, whether the
block has its own KV cache (and its shape), sliding window, recurrent state, embedded NextN block.

Built either from a local GGUF (exact weights, from the tensor table) or from catalog architecture numbers
(weights split from an approximate file size). The rules mirror the pinned llama.cpp:
- which layers are sliding-window: `<arch>.attention.sliding_window_pattern`, else the per-arch default
  period (`load_swa_pattern` calls in src/models/*.cpp);
- shared KV (Gemma 3n / Gemma 4): only layers < n_layer - shared_kv_layers own a cache (hparams.has_kv);
- recurrent layers (qwen35 family): `attention.recurrent_layers`, else `full_attention_interval`;
- tensors `token_embd`, `per_layer_token_embd`, ... are input tensors and always stay on the CPU.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.errors import ModelFileError
from engine.gguf.archs import FORK_MTP_ARCHITECTURES
from engine.store.catalog import FORK_MTP_REASON, ArchNumbers, ModelEntry, Quant

# Default sliding-window period of archs that do not store their pattern (load_swa_pattern(ml, N)):
# every N-th layer is full attention, the others sliding. Only applied when a window is set.
DEFAULT_SWA_PERIOD: dict[str, int] = {
    "gemma2": 2, "gemma3": 6, "gemma3n": 5, "gemma-embedding": 6, "cohere2": 4, "gpt-oss": 2,
    "exaone4": 4, "exaone-moe": 4, "olmo2": 4, "afmoe": 4, "mellum": 4, "plamo3": 8, "muse-glimmer": 4,
}  # fmt: skip
GEMMA3N_KV_LAYERS = 20  # models/gemma3n.cpp: hparams.n_layer_kv_from_start = 20
HYBRID_GDN_ARCHS = frozenset({"qwen35", "qwen35moe", "qwen3next"})  # gated delta net + attention
INPUT_TENSOR_PREFIXES = (
    "token_embd.",
    "position_embd.",
    "token_types.",
    "per_layer_token_embd.",
    "masked_embd",
)
_BLOCK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True, slots=True)
class LayerSpec:
    weight_bytes: int
    has_kv: bool = True  # owns a KV cache (False: attends another layer's, or recurrent)
    is_swa: bool = False
    is_recurrent: bool = False
    is_nextn: bool = False  # embedded MTP block: loaded with load_mtp, attended only by the MTP context
    n_head_kv: int = 0
    head_k: int = 0
    head_v: int = 0

    @property
    def kv_row_elems(self) -> tuple[int, int]:
        """(K, V) elements per cached token."""
        return self.n_head_kv * self.head_k, self.n_head_kv * self.head_v


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str
    layers: tuple[LayerSpec, ...]  # every block, NextN blocks last
    input_bytes: int  # token embeddings etc.: always on the CPU
    output_bytes: int  # output head and final norm: on the output device
    tied_output_bytes: int  # tied embeddings: llama.cpp duplicates token_embd onto the output device
    n_embd: int
    n_vocab: int
    n_ff: int  # widest FFN (MoE: experts used x expert width, if wider)
    n_head: int
    n_ctx_train: int
    n_swa: int = 0
    n_embd_r: int = 0  # recurrent conv state per sequence (f32 elements)
    n_embd_s: int = 0  # recurrent ssm state per sequence (f32 elements)
    is_assistant: bool = False  # Gemma 4 MTP assistant: no KV of its own, reads the target's
    n_embd_out: int = 0
    approximate: bool = False  # weights split from an estimated size, or architecture numbers guessed
    notes: tuple[str, ...] = field(default=())
    path: Path | None = None

    @property
    def n_layer_all(self) -> int:
        return len(self.layers)

    @property
    def n_nextn(self) -> int:
        return sum(layer.is_nextn for layer in self.layers)

    @property
    def trunk_weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers if not layer.is_nextn)

    @property
    def nextn_weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers if layer.is_nextn)

    @property
    def file_weight_bytes(self) -> int:
        """Every tensor in the file, counted once (= llama_model_size with the NextN block loaded)."""
        return self.input_bytes + self.output_bytes + sum(layer.weight_bytes for layer in self.layers)


# --- reading a GGUF -------------------------------------------------------------------------------------
# Private adapter: engine.gguf.metadata.read_gguf (fast, bounds-checked) when it is available, else the PyPI
# gguf package's GGUFReader (parses the whole vocabulary: seconds for 262k-token models). Swap to
# read_gguf only once engine/gguf/metadata.py is merged.


@dataclass(frozen=True)
class _GGUFFacts:
    architecture: str
    name: str | None
    n_vocab: int
    meta: Mapping[str, Any]  # "<arch>.<suffix>" and general keys -> int/float/bool/str/tuple
    tensors: tuple[tuple[str, int], ...]  # (name, data bytes)

    def arch(self, suffix: str, default: Any = None) -> Any:
        return self.meta.get(f"{self.architecture}.{suffix}", default)


def _facts_from_gguf_meta(path: Path) -> _GGUFFacts | None:
    try:
        from engine.gguf.metadata import read_gguf
    except ImportError:
        return None
    info = read_gguf(path)
    prefix = f"{info.architecture}."
    meta = {k: info.get(k) for k in info.keys() if k.startswith(prefix)}  # noqa: SIM118 (not a dict)
    return _GGUFFacts(
        info.architecture,
        info.name,
        info.n_vocab,
        meta,
        tuple((t.name, int(t.n_bytes)) for t in info.tensors),
    )


def _facts_from_gguf_reader(path: Path) -> _GGUFFacts:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ModelFileError(path, f"not a readable GGUF file: {exc}") from None
    fields = reader.fields

    def value(key: str) -> Any:
        f = fields.get(key)
        if f is None:
            return None
        v = f.contents()
        return tuple(v) if isinstance(v, list) else v

    architecture = value("general.architecture")
    if not isinstance(architecture, str):
        raise ModelFileError(path, "general.architecture is missing: this GGUF does not say what model it is")
    tokens = fields.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens.data) if tokens is not None else int(value(f"{architecture}.vocab_size") or 0)
    meta = {k: value(k) for k in fields if k.startswith(f"{architecture}.")}
    name = value("general.name")
    return _GGUFFacts(
        architecture,
        name if isinstance(name, str) else None,
        n_vocab,
        meta,
        tuple((t.name, int(t.n_bytes)) for t in reader.tensors),
    )


@lru_cache(maxsize=32)
def _read_facts(path: Path, _mtime_ns: int, _size: int) -> _GGUFFacts:
    return _facts_from_gguf_meta(path) or _facts_from_gguf_reader(path)


def _as_list(value: Any, n: int, default: int) -> list[int]:
    """A per-layer key: llama.cpp accepts a scalar (same for every layer) or an array."""
    if value is None:
        return [default] * n
    if isinstance(value, (tuple, list)):
        out = [int(v) for v in value][:n]
        return out + [out[-1] if out else default] * (n - len(out))
    return [int(value)] * n


def _swa_flags(arch: str, pattern: Any, n_layer_all: int, n_layer: int, n_swa: int) -> list[bool]:
    """load_swa_pattern: an explicit per-layer array wins; else an int period (key or per-arch default),
    where layer il is sliding when il % period < period - 1. NextN blocks are never sliding."""
    if isinstance(pattern, (tuple, list)):
        flags = [bool(v) for v in pattern][:n_layer_all]
        return flags + [False] * (n_layer_all - len(flags))
    period = int(pattern) if isinstance(pattern, int) else DEFAULT_SWA_PERIOD.get(arch, 0)
    if n_swa <= 0 or period <= 0:
        return [False] * n_layer_all
    return [il < n_layer and il % period < period - 1 for il in range(n_layer_all)]


def spec_from_gguf(path: str | os.PathLike[str]) -> ModelSpec:
    """Exact weight sizes from the tensor table, KV shapes from the metadata. Fork-only MTP drafters are
    refused (ModelFileError) because llama.cpp cannot load them."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ModelFileError(p, f"cannot access the file: {exc.strerror or exc}") from None
    facts = _read_facts(p, st.st_mtime_ns, st.st_size)
    arch = facts.architecture
    if arch in FORK_MTP_ARCHITECTURES:
        raise ModelFileError(p, FORK_MTP_REASON.format(arch=arch))
    n_layer_all = int(facts.arch("block_count") or 0)
    if n_layer_all <= 0:
        raise ModelFileError(p, f"'{arch}.block_count' is missing: cannot size the model")
    n_embd = int(facts.arch("embedding_length") or 0)
    n_head = _as_list(facts.arch("attention.head_count"), n_layer_all, 1)
    n_head_kv = _as_list(facts.arch("attention.head_count_kv"), n_layer_all, 0)
    n_head_kv = [kv if kv else h for kv, h in zip(n_head_kv, n_head, strict=True)]
    head_k = int(facts.arch("attention.key_length") or (n_embd // max(n_head[0], 1)))
    head_v = int(facts.arch("attention.value_length") or head_k)
    head_k_swa = int(facts.arch("attention.key_length_swa") or head_k)
    head_v_swa = int(facts.arch("attention.value_length_swa") or head_v)
    is_assistant = arch == "gemma4-assistant"
    n_nextn = int(facts.arch("nextn_predict_layers") or 0)
    n_trunk = 0 if is_assistant else n_layer_all - n_nextn
    n_swa = int(facts.arch("attention.sliding_window") or (4096 if arch == "gemma2" else 0))
    swa = _swa_flags(
        arch,
        facts.arch("attention.sliding_window_pattern"),
        n_layer_all,
        n_layer_all if is_assistant else n_trunk,
        n_swa,
    )

    kv_from_start = n_layer_all
    if arch == "gemma4":
        kv_from_start = n_layer_all - int(facts.arch("attention.shared_kv_layers") or 0)
    elif arch == "gemma3n":
        kv_from_start = GEMMA3N_KV_LAYERS
    recurrent = [False] * n_layer_all
    n_embd_r = n_embd_s = 0
    if arch in HYBRID_GDN_ARCHS or arch in ("mamba", "mamba2"):
        listed = facts.arch("attention.recurrent_layers")
        if isinstance(listed, (tuple, list)):
            recurrent = [bool(v) for v in listed][:n_layer_all] + [False] * max(0, n_layer_all - len(listed))
        elif arch in ("mamba", "mamba2"):
            recurrent = [True] * n_layer_all
        else:
            interval = int(facts.arch("full_attention_interval") or 4)
            recurrent = [il < n_trunk and (il + 1) % interval != 0 for il in range(n_layer_all)]
        d_conv, d_inner = int(facts.arch("ssm.conv_kernel") or 0), int(facts.arch("ssm.inner_size") or 0)
        d_state, n_group = int(facts.arch("ssm.state_size") or 0), int(facts.arch("ssm.group_count") or 0)
        n_embd_r = max(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state)
        n_embd_s = d_state * d_inner

    block_bytes = [0] * n_layer_all
    input_bytes = output_bytes = 0
    has_output = False
    tok_embd_bytes = 0
    for name, n_bytes in facts.tensors:
        m = _BLOCK.match(name)
        if m and int(m.group(1)) < n_layer_all:
            block_bytes[int(m.group(1))] += n_bytes
        elif name.startswith(INPUT_TENSOR_PREFIXES):
            input_bytes += n_bytes
            if name == "token_embd.weight":
                tok_embd_bytes = n_bytes
        else:
            output_bytes += n_bytes
            has_output |= name == "output.weight"

    n_ff_list = _as_list(facts.arch("feed_forward_length"), n_layer_all, 0)
    n_ff = max([*n_ff_list, 0])
    n_ff_exp = int(facts.arch("expert_feed_forward_length") or 0)
    n_exp_used = int(facts.arch("expert_used_count") or 0)
    n_ff = max(n_ff, n_ff_exp * n_exp_used, 1)
    layers = tuple(
        LayerSpec(
            weight_bytes=block_bytes[il],
            has_kv=(not is_assistant) and not recurrent[il] and il < kv_from_start,
            is_swa=swa[il],
            is_recurrent=recurrent[il],
            is_nextn=(not is_assistant) and il >= n_trunk,
            n_head_kv=n_head_kv[il],
            head_k=head_k_swa if swa[il] else head_k,
            head_v=head_v_swa if swa[il] else head_v,
        )
        for il in range(n_layer_all)
    )
    return ModelSpec(
        name=facts.name or p.stem,
        architecture=arch,
        layers=layers,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        tied_output_bytes=0 if has_output else tok_embd_bytes,
        n_embd=n_embd,
        n_vocab=facts.n_vocab,
        n_ff=n_ff,
        n_head=max(n_head),
        n_ctx_train=int(facts.arch("context_length") or 0),
        n_swa=n_swa,
        n_embd_r=n_embd_r,
        n_embd_s=n_embd_s,
        is_assistant=is_assistant,
        n_embd_out=int(facts.arch("embedding_length_out") or 0),
        path=p,
    )


# --- from catalog numbers --------------------------------------------------------------------------------


def spec_from_catalog(model: ModelEntry, quant: Quant | str | None = None) -> ModelSpec:
    """Approximate spec for a model not downloaded yet: the file size (verified, or params x bits per
    weight) is split into embeddings, output head and equal blocks. Unknown numbers get conservative
    stand-ins, listed in `notes`."""
    a: ArchNumbers = model.arch
    q = quant if isinstance(quant, Quant) else model.quant(quant) if quant else model.quants[0]
    notes: list[str] = [
        f"{model.name} {q.name}: sizes estimated from catalog numbers ({a.source.split('(')[0].strip()})"
    ]
    total = q.planning_bytes
    if total is None:
        notes.append("file size unknown offline: weights counted as 0 until the GGUF is downloaded")
        total = 0
    elif q.size_bytes is None:
        notes.append(
            f"file size is an estimate ({total / 1e9:.2f} GB = parameters x typical bits per weight)"
        )
    is_assistant = a.architecture == "gemma4-assistant"
    n_embd = a.n_embd or a.n_embd_out or 0
    n_vocab = a.n_vocab or 0
    if not a.n_embd or not a.n_layer:
        notes.append("layer shapes unknown offline: compute buffer sized for the widest plausible layer")
    n_layer = a.n_layer or 1
    n_layer_all = n_layer + a.nextn_layers
    bpw = q.bits_per_weight or (8.0 * total / (model.params_b * 1e9) if model.params_b and total else 16.0)
    embd_bytes = int(n_vocab * n_embd * bpw / 8)
    input_bytes = min(embd_bytes + int(n_vocab * n_layer * a.per_layer_input * bpw / 8), int(total * 0.9))
    output_bytes = 0 if a.tied_embeddings else min(embd_bytes, int(total * 0.3))
    per_block = max(total - input_bytes - output_bytes, 0) // max(n_layer_all, 1)

    head_k, n_kv = a.head_dim or (n_embd // (a.n_head or 1) if n_embd else 0), a.n_head_kv or a.n_head or 0
    head_k_swa, n_kv_swa = a.head_dim_swa or head_k, a.n_head_kv_swa or n_kv
    period = a.swa_period if a.n_swa or is_assistant else None
    kv_from_start = n_layer - a.shared_kv_layers
    interval = a.full_attention_interval
    layers: list[LayerSpec] = []
    for il in range(n_layer_all):
        nextn = il >= n_layer
        swa = bool(period) and not nextn and il % period < period - 1  # type: ignore[operator]
        recurrent = bool(interval) and not nextn and (il + 1) % interval != 0  # type: ignore[operator]
        layers.append(
            LayerSpec(
                weight_bytes=per_block,
                has_kv=(not is_assistant) and not recurrent and il < kv_from_start or nextn,
                is_swa=swa,
                is_recurrent=recurrent,
                is_nextn=nextn,
                n_head_kv=n_kv_swa if swa else n_kv,
                head_k=head_k_swa if swa else head_k,
                head_v=head_k_swa if swa else head_k,
            )
        )
    ssm = a.ssm
    n_embd_r = n_embd_s = 0
    if ssm:
        n_embd_r = (ssm["conv_kernel"] - 1) * (ssm["inner_size"] + 2 * ssm["group_count"] * ssm["state_size"])
        n_embd_s = ssm["state_size"] * ssm["inner_size"]
    n_ff = a.n_ff or 4 * n_embd
    if a.n_ff is None:
        notes.append("FFN width unknown: taken as 4 x hidden size")
    if a.n_ff_exp and a.n_experts_used:
        n_ff = max(n_ff, a.n_ff_exp * a.n_experts_used)
    return ModelSpec(
        name=f"{model.name} {q.name}",
        architecture=a.architecture,
        layers=tuple(layers),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        tied_output_bytes=min(embd_bytes, input_bytes) if a.tied_embeddings else 0,  # a copy of token_embd
        n_embd=n_embd,
        n_vocab=n_vocab,
        n_ff=n_ff,
        n_head=a.n_head or 1,
        n_ctx_train=a.n_ctx_train or 0,
        n_swa=a.n_swa or 0,
        n_embd_r=n_embd_r,
        n_embd_s=n_embd_s,
        is_assistant=is_assistant,
        n_embd_out=a.n_embd_out or 0,
        approximate=True,
        notes=tuple(notes),
    )
