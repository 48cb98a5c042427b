"""Tandem's fit estimate against llama.cpp's own accounting on every catalog pair at full size.

For each catalog pair and quantization: skeleton GGUFs of target and drafter (tests/fixtures/skeletons.py:
real tensor shapes and llama.cpp's per-tensor types, no data), loaded by llama.cpp with `no_alloc`
(tests/engine/alloc_probe.py --no-alloc) at 4k and 32k context with the MTP context on; llama.cpp reports
llama_model_size, the KV cache, the compute buffers (main and MTP context) and the recurrent state; Tandem
estimates the same from the same files (engine.fit). `python -m scripts.fit_table` writes the table in
docs/fit-real-shapes.md; tests/engine/fit/test_fit_real_shapes.py checks it.

What is compared, per pair and context, on the CPU (the dry run needs no GPU, and the sizes are the same
buffers a GPU would hold):
- weights: llama_model_size of the target (trunk and, for NextN, its MTP block) plus the drafter's;
- KV: the target's cache plus a NextN head's own cache (an assistant reads the target's cache: 0);
- compute: the main context's compute buffer plus the MTP context's;
- recurrent state (hybrid targets), kept for rollback snapshots.
Output buffers (logits rows) are left out: they depend on how many rows a caller asks for, not on the file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.fit.memory import SPEC_K_MAX, ContextSettings, estimate_specs
from engine.fit.model_spec import spec_from_catalog, spec_from_gguf
from engine.store.catalog import Catalog, Pair
from engine.units import MIB
from tests import REPO_ROOT
from tests.fixtures import skeletons

CONTEXTS = (4096, 32768)
# llama.cpp's Q4_0 for the QAT repos' drafters, Q8_0 elsewhere (resources/catalog.json sources)
DRAFTER_QUANT = {"unsloth-qat": "Q4_0", "default": "Q8_0"}


@dataclass(frozen=True)
class Row:
    pair_id: str
    quant: str
    n_ctx: int
    parts: dict[str, tuple[float, float]]  # part -> (Tandem MiB, llama.cpp MiB)
    catalog_mib: float = 0.0  # Tandem's estimate before download, from the catalog's numbers alone

    def error(self, part: str) -> float:
        est, real = self.parts[part]
        return (est - real) / real if real else 0.0

    @property
    def total(self) -> tuple[float, float]:
        return sum(e for e, _ in self.parts.values()), sum(r for _, r in self.parts.values())

    @property
    def total_error(self) -> float:
        est, real = self.total
        return (est - real) / real


def drafter_quant(pair: Pair, target_quant: str) -> str | None:
    if pair.drafter is None:
        return None
    if pair.drafter.role == "assistant":
        qat = "qat" in (pair.target.repo_of(pair.target.quant(target_quant)) or "")
        return DRAFTER_QUANT["unsloth-qat"] if qat else DRAFTER_QUANT["default"]
    return pair.drafter.quants[0].name


def cases(catalog: Catalog, *, first_quant_only: bool = False) -> Iterator[tuple[Pair, str]]:
    for pair in catalog.pairs:
        if pair.target.id not in skeletons.SKELETONS:
            continue
        quants = pair.target.quants[:1] if first_quant_only else pair.target.quants
        for q in quants:
            yield pair, q.name


def _child(code: str, *args: str, timeout: float = 900) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


_QUANTIZE = """
import json, sys
from pathlib import Path
from tests.fixtures.skeletons import quant_types
print(json.dumps({k: int(v) for k, v in quant_types(Path(sys.argv[1]), sys.argv[2]).items()}))
"""


_PROBE = "import runpy; runpy.run_module('tests.engine.alloc_probe', run_name='__main__')"


def _quantize_in_child(f16: Path, quant: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_child(_QUANTIZE, str(f16), quant))
    return result


def skeleton(directory: Path, model_id: str, quant: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return skeletons.build(directory, model_id, quant, quantize=_quantize_in_child)


def measure(pair: Pair, quant: str, directory: Path, contexts: tuple[int, ...] = CONTEXTS) -> list[Row]:
    target = skeleton(directory, pair.target.id, quant)
    d_quant = drafter_quant(pair, quant)
    drafter = skeleton(directory, pair.drafter.id, d_quant) if pair.drafter is not None and d_quant else None
    kind = pair.drafter_kind
    mtp = {"mtp": {"n_outputs_max": 1}} if kind in ("assistant", "nextn") else {}
    # drafting on a recurrent target keeps n_draft state snapshots (engine.fit.memory.estimate_specs)
    rs = {"n_rs_seq": SPEC_K_MAX} if kind != "ngram" and pair.target.arch.ssm else {}
    grid = [{"n_ctx": n, **mtp, **rs} for n in contexts]
    args = [str(target), json.dumps(grid)] + ([str(drafter)] if kind == "assistant" and drafter else [])
    real = json.loads(_child(_PROBE, *args, "--no-alloc"))
    real_draft = None
    if kind == "draft" and drafter is not None:
        draft_grid = json.dumps([{"n_ctx": n} for n in contexts])
        real_draft = json.loads(_child(_PROBE, str(drafter), draft_grid, "--no-alloc"))
    t_spec = spec_from_gguf(target)
    d_spec = spec_from_gguf(drafter) if drafter is not None else None
    t_cat = spec_from_catalog(pair.target, quant)
    d_cat = spec_from_catalog(pair.drafter) if pair.drafter is not None else None
    rows = []
    for i, run in enumerate(real["runs"]):
        s = ContextSettings(
            n_ctx=run["settings"]["n_ctx"],
            logit_rows=1,
            mtp_n_outputs=1,
            n_rs_seq=run["settings"].get("n_rs_seq", 0),
        )
        est = estimate_specs(t_spec, d_spec, kind if kind != "ngram" else "none", s, n_gpu_layers=0)
        before = estimate_specs(t_cat, d_cat, kind if kind != "ngram" else "none", s, n_gpu_layers=0)
        t, d = est.target.on("CPU"), est.drafter.on("CPU") if est.drafter else None
        weights_real = real["model_size"] + real.get("assistant_size", 0)
        kv_real, compute_real = run["kv_mib"], run["compute_mib"]
        if "mtp" in run:
            compute_real += run["mtp"]["compute_mib"]
            if kind == "nextn":  # an assistant's cache lines are views of the target's: nothing allocated
                kv_real += run["mtp"]["kv_mib"]
        if real_draft is not None:
            weights_real += real_draft["model_size"]
            kv_real += real_draft["runs"][i]["kv_mib"]
            compute_real += real_draft["runs"][i]["compute_mib"]
        # NextN: llama_model_size counts the MTP block, which Tandem puts under the drafter
        est_weights = t.weights + (d.weights if d else 0)
        rows.append(
            Row(
                pair.id,
                quant,
                s.n_ctx,
                {
                    "weights": (est_weights / MIB, weights_real / MIB),
                    "kv": ((t.kv + (d.kv if d else 0)) / MIB, kv_real),
                    "compute": ((t.compute + (d.compute if d else 0)) / MIB, compute_real),
                    "state": ((t.state + (d.state if d else 0)) / MIB, run["state_mib"]),
                },
                _total_without_output(before) / MIB,
            )
        )
    return rows


def _total_without_output(e: Any) -> int:
    parts = [e.target.on("CPU")] + ([e.drafter.on("CPU")] if e.drafter is not None else [])
    return sum(u.weights + u.kv + u.compute + u.state for u in parts)
