"""Ask the real llama.cpp what it allocates: load a model on the CPU, create one context per setting, and
collect from its log the KV cache size (`llama_kv_cache: size = ...`), the compute buffer sizes
(`... compute buffer size = ...`), the output buffer and the recurrent state (`... RS buffer size`), plus
llama_model_size. Runs in a child process (`python -m tests.engine.alloc_probe MODEL SETTINGS_JSON
[ASSISTANT] [--no-alloc]`): the log callback is process-wide, and llama.cpp may abort on a bad model.

`--no-alloc` loads with `no_alloc` and `LLAMA_LOAD_MODE_NONE`, llama.cpp's own dry run (what its
`common_fit_params` uses): no weight is read or allocated, so a skeleton GGUF (tests/fixtures/skeletons.py)
of a model far larger than this machine's memory can be measured. Its KV buffers are then dummies, so the
KV size comes from the cache's own accounting line (`llama_kv_cache: size = ...`).

Prints one JSON object: {"model_size": int, "runs": [{"settings": {...}, "kv_mib": float, ...}]}.
"""

from __future__ import annotations

import ctypes
import json
import re
import sys
from typing import Any

KV_TYPE_IDS = {"f32": 0, "f16": 1, "q8_0": 8, "q4_0": 2}
_MIB = r"([\d.]+) MiB"


def _sum(pattern: str, text: str) -> float:
    return sum(float(x) for x in re.findall(pattern, text))


def _measure(text: str, no_alloc: bool = False) -> dict[str, float]:
    if no_alloc:
        return {
            "kv_mib": _sum(r"llama_kv_cache: size = +" + _MIB, text),
            "compute_mib": _sum(r"compute buffer size = +" + _MIB, text),
            "output_mib": _sum(r"output buffer size = +" + _MIB, text),
            "state_mib": _sum(r"RS buffer size = +" + _MIB, text),
        }
    return {
        # the allocated buffers: `llama_kv_cache: size = ...` also counts layers that only view another
        # context's cache (a Gemma 4 assistant), which allocate nothing
        "kv_mib": _sum(r"KV buffer size = +" + _MIB, text),
        "compute_mib": _sum(r"compute buffer size = +" + _MIB, text),
        "output_mib": _sum(r"output buffer size = +" + _MIB, text),
        "state_mib": _sum(r"RS buffer size = +" + _MIB, text),
    }


def probe(
    model_path: str, settings: list[dict[str, Any]], assistant_path: str | None = None, no_alloc: bool = False
) -> dict[str, Any]:
    """`settings` entries: n_ctx, n_batch, n_ubatch, kv_type, flash_attn, swa_full, n_outputs_max, n_rs_seq,
    and "mtp": {"n_outputs_max": N} to also create an MTP context on the assistant (when given) or on the
    model's own NextN head; its allocations are reported under "mtp"."""
    import llama_cpp

    lines: list[str] = []

    skipping = [False]

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator,misc]
    def on_log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        # enum ggml_log_level: 1 DEBUG (thousands of lines we do not need), 2 INFO, 3 WARN, 4 ERROR, 5 CONT
        if level != 5:
            skipping[0] = level == 1
        if not skipping[0]:
            lines.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = 0
    mparams.load_mtp = any("mtp" in s for s in settings)
    if no_alloc:
        mparams.no_alloc = True
        mparams.load_mode = 0  # LLAMA_LOAD_MODE_NONE: no mmap, nothing read

    def load(path: str) -> Any:
        model = llama_cpp.llama_model_load_from_file(path.encode(), mparams)
        if not model:
            raise SystemExit(f"llama.cpp could not load {path}:\n{''.join(lines[-20:])}")
        return model

    model = load(model_path)
    drafter = load(assistant_path) if assistant_path else model
    out: dict[str, Any] = {"model_size": int(llama_cpp.llama_model_size(model)), "runs": []}
    if assistant_path:
        out["assistant_size"] = int(llama_cpp.llama_model_size(drafter))
    for s in settings:
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = s["n_ctx"]
        cparams.n_batch = s.get("n_batch", 512)
        cparams.n_ubatch = s.get("n_ubatch", 512)
        cparams.type_k = cparams.type_v = KV_TYPE_IDS[s.get("kv_type", "f16")]
        cparams.flash_attn_type = 1 if s.get("flash_attn", True) else 0
        cparams.swa_full = s.get("swa_full", True)
        cparams.n_outputs_max = s.get("n_outputs_max") or 0
        cparams.n_rs_seq = s.get("n_rs_seq", 0)
        cparams.n_threads = cparams.n_threads_batch = 1
        lines.clear()
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        text = "".join(lines)
        if not ctx:
            raise SystemExit(f"llama.cpp could not create a context for {s}:\n{text[-2000:]}")
        run: dict[str, Any] = {
            "settings": s,
            "n_ctx": int(llama_cpp.llama_n_ctx(ctx)),
            **_measure(text, no_alloc),
        }
        draft_ctx = None
        if "mtp" in s:
            cparams.ctx_type = llama_cpp.LLAMA_CONTEXT_TYPE_MTP
            cparams.ctx_other = ctx
            cparams.n_rs_seq = 0
            cparams.n_outputs_max = s["mtp"].get("n_outputs_max") or 0
            lines.clear()
            draft_ctx = llama_cpp.llama_init_from_model(drafter, cparams)
            text = "".join(lines)
            if not draft_ctx:
                raise SystemExit(f"llama.cpp could not create the MTP context for {s}:\n{text[-2000:]}")
            run["mtp"] = _measure(text, no_alloc)
        out["runs"].append(run)
        if draft_ctx:
            llama_cpp.llama_free(draft_ctx)  # before the target context it points into
        llama_cpp.llama_free(ctx)
    if assistant_path:
        llama_cpp.llama_model_free(drafter)
    llama_cpp.llama_model_free(model)
    return out


if __name__ == "__main__":
    argv = [a for a in sys.argv[1:] if a != "--no-alloc"]
    assistant = argv[2] if len(argv) > 2 else None
    print(json.dumps(probe(argv[0], json.loads(argv[1]), assistant, no_alloc="--no-alloc" in sys.argv)))
