"""How many bytes llama.cpp allocates, per device, for a target model (and its drafter) at a given context.

Mirrors the pinned llama.cpp (vendor/llama.cpp/src):
- placement (llama_model_base::load_tensors): with n_gpu_layers = g, blocks il >= n_layer_all + 1 - g and the
  output layer (index n_layer_all) go to the GPUs, split by free memory; input tensors stay on the CPU; a tied
  output head is a duplicate of token_embd on the output device;
- KV (llama_kv_cache): n_ctx is padded to 256; every layer that owns a cache stores n_ctx cells of
  K = n_head_kv x key_length and V = n_head_kv x value_length elements (V padded to the widest layer without
  flash attention); sliding-window layers hold GGML_PAD(min(n_ctx, n_swa + n_ubatch), 256) cells unless
  swa_full (the library default); shared-KV layers (Gemma 3n/4) and a Gemma 4 assistant allocate nothing;
- recurrent state (llama_memory_recurrent): (n_embd_r + n_embd_s) f32 x (1 + n_rs_seq) per recurrent layer;
- compute buffer (sched_reserve): the worst-case graph of n_ubatch tokens. Measured on CPU (see
  tests/engine/test_fit.py) it is the larger of the output phase, n_outputs x n_vocab f32 logits +
  2 x n_ubatch x n_embd f32, and the layer phase: the attention masks (n_kv x n_ubatch, f16 with flash
  attention, f32 without) plus the larger of n_ubatch x (3 n_ff + 4 n_embd) f32 of FFN temporaries and the
  attention's: n_ubatch x (2 n_head x head_k + 4 n_embd) f32 (Q and the attention output; Gemma 4 heads are
  512 wide, so this wins on its assistants), and without flash attention the n_head x n_kv x n_ubatch f32
  score matrix too. ggml's allocator fragments its arena differently at each context, so llama.cpp's own
  figure moves non-monotonically around this (within -12 % .. +6 % on the catalog models at full size,
  docs/fit-real-shapes.md).
GPU-side splits (host compute buffer, weight copies for CPU layers under partial offload) follow the source
but could not be measured here (no GPU): treat them as estimates.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from engine.compat.rollback import rollback_snapshots
from engine.config import MODEL_DRAFT_K_MAX
from engine.fit.model_spec import LayerSpec, ModelSpec

CPU = "CPU"

# ggml type sizes of the KV cache: (bytes per block, elements per block)
KV_TYPE_SIZES: dict[str, tuple[int, int]] = {
    "f32": (4, 1), "f16": (2, 1), "bf16": (2, 1), "q8_0": (34, 32), "q4_0": (18, 32), "q4_1": (20, 32),
    "q5_0": (22, 32), "q5_1": (24, 32), "iq4_nl": (18, 32),
}  # fmt: skip

DrafterKind = Literal["assistant", "nextn", "draft", "ngram", "none"]
SPEC_K_MAX = MODEL_DRAFT_K_MAX  # drafts per step a model drafter verifies by default


def pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def kv_row_bytes(n_elems: int, kv_type: str) -> int:
    try:
        block_bytes, block_elems = KV_TYPE_SIZES[kv_type]
    except KeyError:
        raise ValueError(f"unknown KV cache type {kv_type!r}; known: {', '.join(KV_TYPE_SIZES)}") from None
    return n_elems // block_elems * block_bytes


@dataclass(frozen=True, slots=True)
class ContextSettings:
    """The llama_context parameters that change memory. Defaults are those the engine uses today
    (engine.inference.llama.Context: n_batch 512, n_ubatch min(n_batch, 512), flash attention left to
    llama.cpp's auto mode, which picks it on CPU, CUDA, Metal and Vulkan) and llama.cpp's own defaults
    otherwise."""

    n_ctx: int = 4096
    kv_type: str = "f16"
    n_batch: int = 512
    n_ubatch: int = 512
    n_outputs_max: int | None = None  # None: llama.cpp's default, n_batch
    flash_attn: bool = True
    swa_full: bool = True  # llama_context_default_params(); False caps sliding-window layers
    n_rs_seq: int = 0  # recurrent-state snapshots kept for rollback (the engine sets n_draft for qwen35)
    logit_rows: int = 4  # logits rows asked per decode at run time (verify k+1 rows): host output buffer
    mtp_n_outputs: int = 1  # n_outputs_max of an MTP context (engine.inference.drafters.mtp sets 1)
    draft_n_outputs: int | None = None  # n_outputs_max of a draft model's context (None: its n_batch)

    @property
    def kv_cells(self) -> int:
        return pad(max(self.n_ctx, 1), 256)

    @property
    def ubatch_tokens(self) -> int:
        n_batch = min(self.kv_cells, self.n_batch)  # causal attention: n_batch <= n_ctx
        return min(n_batch, self.n_ubatch)

    def outputs(self, n_outputs_max: int | None) -> int:
        return min(self.ubatch_tokens, n_outputs_max or min(self.kv_cells, self.n_batch))

    def swa_cells(self, n_swa: int) -> int:
        if self.swa_full:
            return self.kv_cells
        return pad(min(self.kv_cells, n_swa + self.n_ubatch), 256)


@dataclass(frozen=True, slots=True)
class Usage:
    """Bytes one model takes on one device."""

    weights: int = 0
    kv: int = 0
    state: int = 0  # recurrent state
    compute: int = 0
    output: int = 0  # host-side logits/embeddings buffer

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.state + self.compute + self.output

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.weights + other.weights,
            self.kv + other.kv,
            self.state + other.state,
            self.compute + other.compute,
            self.output + other.output,
        )


@dataclass(frozen=True)
class ModelMemory:
    name: str
    by_device: Mapping[str, Usage]
    n_gpu_layers: int  # as passed to llama.cpp (n_layer_all + 1 = everything)
    kv_cells: int
    swa_cells: int
    # Input tables on the CPU a token reads one row of (token and per-layer embeddings): weights decoding
    # does not stream through (engine.fit.speed). A tied output on the CPU reads its table whole.
    lookup_bytes: int = 0

    def on(self, device: str) -> Usage:
        return self.by_device.get(device, Usage())

    @property
    def total(self) -> int:
        return sum(u.total for u in self.by_device.values())


@dataclass(frozen=True)
class MemoryEstimate:
    target: ModelMemory
    drafter: ModelMemory | None
    drafter_kind: DrafterKind
    settings: ContextSettings
    devices: tuple[str, ...]  # GPU names in llama.cpp's order, then "CPU"
    notes: tuple[str, ...] = field(default=())

    def device_total(self, device: str) -> int:
        return self.target.on(device).total + (self.drafter.on(device).total if self.drafter else 0)

    @property
    def by_device(self) -> dict[str, int]:
        return {d: self.device_total(d) for d in self.devices}

    @property
    def gpu_total(self) -> int:
        return sum(self.device_total(d) for d in self.devices if d != CPU)

    @property
    def cpu_total(self) -> int:
        return self.device_total(CPU)


# --- placement ---------------------------------------------------------------------------------------------


def layer_devices(
    n_layer_all: int, n_gpu_layers: int, gpus: Sequence[str], gpu_free: Sequence[int]
) -> list[str]:
    """Device of blocks 0..n_layer_all-1 and of the output layer (last entry), as llama.cpp assigns them."""
    ngl = n_layer_all + 1 if n_gpu_layers < 0 else n_gpu_layers
    if not gpus:
        return [CPU] * (n_layer_all + 1)
    start = max(n_layer_all + 1 - ngl, 0)
    act = min(ngl, n_layer_all + 1)
    weights = [float(f) for f in gpu_free] if gpu_free and sum(gpu_free) > 0 else [1.0] * len(gpus)
    cum, acc = [], 0.0
    for w in weights:
        acc += w
        cum.append(acc / sum(weights))
    out = []
    for il in range(n_layer_all + 1):
        if il < start or il - start >= act:
            out.append(CPU)
        else:
            out.append(gpus[min(bisect.bisect_right(cum, (il - start) / act), len(gpus) - 1)])
    return out


# --- one model ----------------------------------------------------------------------------------------------


def _kv_bytes(layer: LayerSpec, cells: int, s: ContextSettings, v_elems_max: int) -> int:
    k_elems, v_elems = layer.kv_row_elems
    if not s.flash_attn:
        v_elems = v_elems_max  # [TAG_V_CACHE_VARIABLE]: transposed V is padded to the widest layer
    return cells * (kv_row_bytes(k_elems, s.kv_type) + kv_row_bytes(v_elems, s.kv_type))


def _compute_bytes(
    spec: ModelSpec,
    s: ContextSettings,
    attn_layers: Sequence[LayerSpec],
    n_outputs: int,
    with_layers: bool,
    with_output: bool,
) -> int:
    """Worst-case graph of one ubatch; `attn_layers` are the layers that attend a KV cache (their own or
    a shared one), each cache size needing one mask."""
    t = s.ubatch_tokens
    out_phase = n_outputs * spec.n_vocab * 4 + 2 * t * spec.n_embd * 4 if with_output else 0
    if not with_layers:
        return out_phase
    caches = []  # one mask per KV cache: the full one and the sliding-window one
    if any(not layer.is_swa for layer in attn_layers):
        caches.append(s.kv_cells)
    if any(layer.is_swa for layer in attn_layers):
        caches.append(s.swa_cells(spec.n_swa) if spec.n_swa else s.kv_cells)
    n_kv = max(caches, default=0)
    mask_bytes = sum(c * t * (2 if s.flash_attn else 4) for c in caches)
    ffn = t * 4 * (3 * spec.n_ff + 4 * spec.n_embd)
    attn = 0
    if attn_layers:
        head_k = max(layer.head_k for layer in attn_layers)
        scores = 0 if s.flash_attn else spec.n_head * n_kv
        attn = t * 4 * (scores + 4 * spec.n_embd + 2 * spec.n_head * head_k)
    return max(mask_bytes + max(ffn, attn), out_phase)


def model_memory(
    spec: ModelSpec,
    s: ContextSettings,
    *,
    n_gpu_layers: int,
    gpus: Sequence[str] = (),
    gpu_free: Sequence[int] = (),
    context: Literal["main", "mtp"] = "main",
    n_outputs_max: int | None,
) -> ModelMemory:
    """Memory of one llama_model + one llama_context on it.

    context="main": the trunk's weights, KV and buffers (NextN blocks are left out: they are the drafter's).
    context="mtp": only what an MTP context adds on top of an already counted model: the NextN blocks' own
    KV (embedded heads) or nothing (a Gemma 4 assistant reads its target's KV), plus its compute buffer.
    """
    devs = layer_devices(spec.n_layer_all, n_gpu_layers, gpus, gpu_free)
    usage: dict[str, Usage] = {}

    def add(dev: str, **kw: int) -> None:
        usage[dev] = usage.get(dev, Usage()) + Usage(**kw)

    if context == "main":
        add(CPU, weights=spec.input_bytes)
        add(devs[-1], weights=spec.output_bytes + (spec.tied_output_bytes if devs[-1] != CPU else 0))
        for il, layer in enumerate(spec.layers):
            if not layer.is_nextn:
                add(devs[il], weights=layer.weight_bytes)

    runs_here = [
        (il, layer)
        for il, layer in enumerate(spec.layers)
        if layer.is_nextn == (context == "mtp" and not spec.is_assistant) or spec.is_assistant
    ]
    attn_layers = [layer for _, layer in runs_here if not layer.is_recurrent]
    v_max = max((layer.kv_row_elems[1] for layer in attn_layers if layer.has_kv), default=0)
    for il, layer in runs_here:
        if layer.has_kv:
            cells = s.swa_cells(spec.n_swa) if layer.is_swa and spec.n_swa else s.kv_cells
            add(devs[il], kv=_kv_bytes(layer, cells, s, v_max))
        if layer.is_recurrent:
            add(devs[il], state=(spec.n_embd_r + spec.n_embd_s) * 4 * (1 + s.n_rs_seq))

    n_outputs = s.outputs(n_outputs_max)
    layer_devs = {devs[il] for il, _ in runs_here}
    for dev in layer_devs | {devs[-1]}:
        add(dev, compute=_compute_bytes(spec, s, attn_layers, n_outputs, dev in layer_devs, dev == devs[-1]))
    if any(d != CPU for d in devs):
        # GPU runs: token embeddings are looked up on the CPU (host compute buffer), and with partial offload
        # the scheduler copies a CPU block's weights to the GPU for large batches (op_offload).
        add(CPU, compute=s.ubatch_tokens * 4 * spec.n_embd)
        cpu_blocks = [layer.weight_bytes for il, layer in runs_here if devs[il] == CPU]
        if cpu_blocks and s.ubatch_tokens >= 32:
            add(next(d for d in devs if d != CPU), compute=max(cpu_blocks))
    if context == "main":
        add(CPU, output=spec.n_vocab * 4 * max(1, s.logit_rows))
    lookup = 0
    if context == "main":
        lookup = spec.input_bytes - (spec.tied_output_bytes if devs[-1] == CPU else 0)
    swa_cells = s.swa_cells(spec.n_swa) if spec.n_swa else 0
    return ModelMemory(spec.name, usage, n_gpu_layers, s.kv_cells, swa_cells, max(lookup, 0))


def _check_kv_type(spec: ModelSpec, kv_type: str) -> None:
    """llama_init_from_model refuses a quantized cache whose block does not divide the head size."""
    block = KV_TYPE_SIZES[kv_type][1] if kv_type in KV_TYPE_SIZES else 1
    heads = {h for layer in spec.layers if layer.has_kv for h in (layer.head_k, layer.head_v)}
    bad = sorted(h for h in heads if h % block)
    if bad:
        raise ValueError(
            f"{spec.name}: a {kv_type} KV cache needs head sizes divisible by {block}, this model "
            f"has {', '.join(map(str, bad))}"
        )


def estimate_specs(
    target: ModelSpec,
    drafter: ModelSpec | None,
    drafter_kind: DrafterKind,
    settings: ContextSettings,
    *,
    n_gpu_layers: int,
    drafter_gpu_layers: int | None = None,
    gpus: Sequence[str] = (),
    gpu_free: Sequence[int] = (),
) -> MemoryEstimate:
    """Target and drafter memory for one device set. `drafter_gpu_layers` None = same choice as the target
    (all or nothing); a NextN head always sits where llama.cpp puts its block."""
    notes = list(target.notes)
    if drafter_kind in ("assistant", "draft") and drafter is None:
        raise ValueError(f"a '{drafter_kind}' drafter needs its model")
    if drafter_kind == "nextn" and target.n_nextn == 0:
        raise ValueError(f"{target.name} has no embedded NextN block to draft with")
    _check_kv_type(target, settings.kv_type)
    s = settings
    if any(layer.is_recurrent for layer in target.layers):
        # Rolling back rejected drafts needs recurrent-state snapshots: as many as the engine asks for
        # (engine.compat.rollback, the one rule), for every drafter.
        kind = {"assistant": "mtp", "nextn": "mtp"}.get(drafter_kind, drafter_kind)
        s = replace(settings, n_rs_seq=max(settings.n_rs_seq, rollback_snapshots(target.architecture, kind)))
    tgt = model_memory(
        target, s, n_gpu_layers=n_gpu_layers, gpus=gpus, gpu_free=gpu_free, n_outputs_max=s.n_outputs_max
    )
    extra_out = 0
    drf: ModelMemory | None = None
    if drafter_kind == "nextn":
        drf = model_memory(
            target,
            s,
            n_gpu_layers=n_gpu_layers,
            gpus=gpus,
            gpu_free=gpu_free,
            context="mtp",
            n_outputs_max=s.mtp_n_outputs,
        )
        devs = layer_devices(target.n_layer_all, n_gpu_layers, gpus, gpu_free)
        by_dev = dict(drf.by_device)
        for il, layer in enumerate(target.layers):  # load_mtp loads the head's weights with the model
            if layer.is_nextn:
                by_dev[devs[il]] = by_dev.get(devs[il], Usage()) + Usage(weights=layer.weight_bytes)
        drf = replace(drf, name=f"{target.name} NextN head", by_device=by_dev)
        extra_out = target.n_embd * 4 * s.n_batch  # the target context returns unmasked NextN embeddings
    elif drafter is not None and drafter_kind in ("assistant", "draft"):
        full = n_gpu_layers < 0 or n_gpu_layers > target.n_layer_all
        dgl = drafter_gpu_layers if drafter_gpu_layers is not None else (-1 if full and gpus else 0)
        if drafter_kind == "draft":
            drf = model_memory(
                drafter, s, n_gpu_layers=dgl, gpus=gpus, gpu_free=gpu_free, n_outputs_max=s.draft_n_outputs
            )
        else:  # the assistant's own weights, plus an MTP context reading the target's KV
            base = model_memory(drafter, s, n_gpu_layers=dgl, gpus=gpus, gpu_free=gpu_free, n_outputs_max=1)
            mtp = model_memory(
                drafter,
                s,
                n_gpu_layers=dgl,
                gpus=gpus,
                gpu_free=gpu_free,
                context="mtp",
                n_outputs_max=s.mtp_n_outputs,
            )
            devices = set(base.by_device) | set(mtp.by_device)
            drf = replace(mtp, by_device={d: Usage(weights=base.on(d).weights) + mtp.on(d) for d in devices})
            extra_out = target.n_embd * 4 * s.n_batch
        notes.extend(drafter.notes)
    if extra_out:
        tgt = replace(tgt, by_device={**tgt.by_device, CPU: tgt.on(CPU) + Usage(output=extra_out)})
    return MemoryEstimate(tgt, drf, drafter_kind, s, (*gpus, CPU), tuple(dict.fromkeys(notes)))
