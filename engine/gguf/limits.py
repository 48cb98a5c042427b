"""Metadata values the pinned llama.cpp aborts on instead of refusing: checked before llama.cpp sees a file.

llama.cpp reports most bad files with a clean error, but some values reach a `GGML_ASSERT` or a
`GGML_ABORT`, which ends the whole process (the app with it). Each check below names one such abort class
found by corrupting real files; the child-process probe (engine.inference.probe) is the net for the ones
nobody listed.

- layer count: `GGML_ASSERT(n_layer_all > 0 && n_layer_all <= LLAMA_MAX_LAYERS)` and
  `n_layer_nextn <= n_layer_all` (llama.cpp `src/llama-model.cpp`, `load_hparams`);
- expert counts: `n_expert <= LLAMA_MAX_EXPERTS`, `n_expert_used <= n_expert` (same place);
- tensor data alignment: the CPU backend maps the file and asserts every buffer pointer is a multiple of
  TENSOR_ALIGNMENT, 32 bytes (`ggml/src/ggml-backend.cpp`, `ggml_backend_cpu_buffer_from_ptr`);
- norm epsilons: `GGML_ASSERT(eps >= 0.0f)` in the norm kernels (`ggml/src/ggml-cpu/ops.cpp`); NaN fails too;
- rope dimensions: an odd count or one beyond the head size aborts in the rope kernels
  (`GGML_ASSERT(n_dims % 2 == 0)`, `ggml/src/ggml-cpu/ops.cpp`; `c->ne[0] >= n_dims / 2`, `ggml/src/ggml.c`),
  zero hangs a Gemma 4 decode;
- tensor types: element-wise ops (norm weights, biases) support F32 operands only and abort with
  "unsupported types" at the first decode (`ggml/src/ggml-cpu/binary-ops.cpp`); integer, F64 and the
  internal Q8_1/Q8_K types have no matrix kernels at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from engine.gguf.reader import TensorInfo
from engine.text import shown

LLAMA_MAX_LAYERS = 512  # src/llama-hparams.h
LLAMA_MAX_EXPERTS = 1024  # src/llama-hparams.h
TENSOR_ALIGNMENT = 32  # ggml/src/ggml-impl.h
MAX_EMBEDDING = 1 << 20  # far above any released model (the largest: ~25k); beyond it sizes overflow

# Types a weight may never have: no matrix-multiplication kernel (integers, F64) or ggml-internal
# quantisations used only for activations (Q8_1, Q8_K).
FORBIDDEN_TYPES = frozenset({"I8", "I16", "I32", "I64", "F64", "Q8_1", "Q8_K"})
# Norm weights, biases and other 1-D tensors enter element-wise ops with F32 activations: F32 only. Every
# converter and quantiser keeps them F32 (gguf-py writes n_dims <= 1 and *_norm tensors as F32).
ELEMENTWISE_TYPES = frozenset({"F32"})

_BLOCK = re.compile(r"^blk\.(\d+)\.")


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    return value if isinstance(value, int) else None


def _floats(value: object) -> Iterable[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, tuple):
        yield from (v for v in value if isinstance(v, float))


def layer_problems(
    arch: str, block_count: int | None, nextn: int, tensors: Iterable[TensorInfo]
) -> str | None:
    """The layer count against llama.cpp's range and against the `blk.N.` tensors the file holds."""
    if block_count is None:
        return None  # a required key: metadata._check_architecture names it
    if not 0 < block_count <= LLAMA_MAX_LAYERS:
        return (
            f"{arch}.block_count is {block_count}: llama.cpp supports 1 to {LLAMA_MAX_LAYERS} layers "
            "(the file is corrupt)"
        )
    if not 0 <= nextn <= block_count:
        return f"{arch}.nextn_predict_layers is {nextn}, more than its {block_count} layers (corrupt file)"
    present: set[int] = set()
    for tensor in tensors:
        match = _BLOCK.match(tensor.name)
        if match:
            present.add(int(match.group(1)))
    if not present:
        return None  # an architecture without per-layer tensors: nothing to compare
    beyond = max(present)
    if beyond >= block_count:
        return (
            f"{arch}.block_count is {block_count} but the file holds tensors of layer {beyond} "
            "(the file is corrupt)"
        )
    # NextN layers are optional (llama.cpp skips them unless asked to load MTP); trunk layers are not.
    missing = [i for i in range(block_count - nextn) if i not in present]
    if missing:
        return (
            f"{arch}.block_count is {block_count} but the file has no tensors for layer {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + " (the file is corrupt)"
        )
    return None


def hparam_problems(arch: str, items: Iterable[tuple[str, object]]) -> str | None:
    """Hyperparameters (`<arch>.*` keys) out of the range llama.cpp's kernels accept."""
    values = dict(items)
    prefix = f"{arch}."
    for key, value in values.items():
        if not key.startswith(prefix):
            continue
        for number in _floats(value):
            if not math.isfinite(number):
                return f"{shown(key, 80)} is {number}: not a finite number (the file is corrupt)"
            if "epsilon" in key and number <= 0.0:
                return f"{shown(key, 80)} is {number}: a norm epsilon must be positive (the file is corrupt)"
    embd = _int(values.get(f"{prefix}embedding_length"))
    if embd is not None and not 0 < embd <= MAX_EMBEDDING:
        return f"{arch}.embedding_length is {embd}: out of range (the file is corrupt)"
    n_head = _int(values.get(f"{prefix}attention.head_count"))
    n_head_kv = _int(values.get(f"{prefix}attention.head_count_kv"))
    if n_head and n_head_kv and (n_head_kv > n_head or n_head % n_head_kv):
        return (
            f"{arch}.attention.head_count_kv is {n_head_kv}, which does not divide head_count {n_head} "
            "(the file is corrupt)"
        )
    head_dim = _int(values.get(f"{prefix}attention.key_length"))
    if head_dim is None and embd and n_head:
        head_dim = embd // n_head
    swa_dim = _int(values.get(f"{prefix}attention.key_length_swa")) or head_dim
    for suffix, dim in (("rope.dimension_count", head_dim), ("rope.dimension_count_swa", swa_dim)):
        n_rot = _int(values.get(f"{prefix}{suffix}"))
        if n_rot is not None and dim and (n_rot <= 0 or n_rot % 2 or n_rot > dim):
            return (
                f"{arch}.{suffix} is {n_rot}: rotary dimensions must be an even number from 2 to the head "
                f"size {dim} (the file is corrupt)"
            )
    n_expert = _int(values.get(f"{prefix}expert_count")) or 0
    n_used = _int(values.get(f"{prefix}expert_used_count")) or 0
    if not 0 <= n_expert <= LLAMA_MAX_EXPERTS:
        return f"{arch}.expert_count is {n_expert}: llama.cpp supports at most {LLAMA_MAX_EXPERTS} experts"
    if n_used > n_expert or (n_expert and n_used <= 0):
        return (
            f"{arch}.expert_used_count is {n_used} with {n_expert} experts: it must be between 1 and the "
            "expert count (the file is corrupt)"
        )
    return None


def tensor_problems(tensors: Iterable[TensorInfo]) -> str | None:
    """Each tensor's data placement and type against what llama.cpp can map and compute with."""
    for t in tensors:
        name = shown(t.name, 80)
        if t.offset % TENSOR_ALIGNMENT:
            return (
                f"tensor '{name}' starts at byte {t.offset}, not a multiple of {TENSOR_ALIGNMENT}: llama.cpp "
                "cannot map it (general.alignment is wrong or the file is corrupt)"
            )
        if t.type_name in FORBIDDEN_TYPES:
            return f"tensor '{name}' has type {t.type_name}, which no model weight can have (corrupt file)"
        elementwise = len(t.shape) <= 1 or t.name.endswith("norm.weight")
        if elementwise and t.type_name not in ELEMENTWISE_TYPES:
            return (
                f"tensor '{name}' has type {t.type_name}; llama.cpp needs F32 for norm weights, biases and "
                "other 1-D tensors (the file is corrupt)"
            )
    return None
