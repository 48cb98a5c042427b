"""The fit estimator against what llama.cpp really allocates, and the fit planner's verdicts.

Real allocations come from tests/engine/alloc_probe.py (a child process reading llama.cpp's log): KV cache,
compute buffer, recurrent state and llama_model_size, for real small models and the tiny fixtures at several
context sizes and KV types. Tolerance: 5 % (and 0.02 MiB, the rounding of llama.cpp's two-decimal log).
The measured figures are in the module docstring of engine/fit/memory.py and the hwfit report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ModelFileError
from engine.fit.hardware import fake_hardware
from engine.fit.memory import ContextSettings, estimate_specs, layer_devices
from engine.fit.model_spec import spec_from_catalog, spec_from_gguf
from engine.fit.planner import Verdict, budgets, estimate, fit, pick_quant
from engine.store.catalog import load_catalog
from engine.units import MIB
from tests import REPO_ROOT
from tests.engine.model_files import model_file, tiny_mtp_fixtures

TOLERANCE = 0.05
ROUNDING_MIB = 0.02

SMOLLM2_GRID = [
    {"n_ctx": 512},
    {"n_ctx": 2048},
    {"n_ctx": 8192},
    {"n_ctx": 8192, "kv_type": "q8_0"},
    {"n_ctx": 2048, "kv_type": "q8_0"},
    {"n_ctx": 8192, "flash_attn": False},
    {"n_ctx": 8192, "n_outputs_max": 8},
    {"n_ctx": 2048, "n_ubatch": 128},
]
GEMMA3_GRID = [
    {"n_ctx": 512},
    {"n_ctx": 2048},
    {"n_ctx": 8192},
    {"n_ctx": 8192, "kv_type": "q8_0"},
    {"n_ctx": 8192, "swa_full": False},
    {"n_ctx": 32768, "swa_full": False, "kv_type": "q8_0"},
    {"n_ctx": 8192, "flash_attn": False, "n_outputs_max": 8},
    {"n_ctx": 8192, "n_outputs_max": 8},
]
TINY_LLAMA_GRID = [{"n_ctx": 8192}, {"n_ctx": 32768}, {"n_ctx": 8192, "flash_attn": False}]
TINY_GEMMA4_GRID = [
    {"n_ctx": 32768, "mtp": {"n_outputs_max": 1}},
    {"n_ctx": 32768, "swa_full": False, "mtp": {"n_outputs_max": 1}},
]
TINY_NEXTN_GRID = [{"n_ctx": 32768, "n_rs_seq": 3, "mtp": {"n_outputs_max": 1}}, {"n_ctx": 8192}]

_probe_cache: dict[tuple[str, str, str | None], dict[str, Any]] = {}


def probe(model: Path, grid: list[dict[str, Any]], assistant: Path | None = None) -> dict[str, Any]:
    key = (str(model), json.dumps(grid), str(assistant) if assistant else None)
    if key not in _probe_cache:
        cmd = [sys.executable, "-m", "tests.engine.alloc_probe", str(model), json.dumps(grid)]
        done = subprocess.run(
            cmd + ([str(assistant)] if assistant else []),
            capture_output=True,
            text=True,
            timeout=600,
            cwd=REPO_ROOT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        _probe_cache[key] = json.loads(done.stdout.strip().splitlines()[-1])
    return _probe_cache[key]


def settings_of(s: dict[str, Any]) -> ContextSettings:
    return ContextSettings(
        n_ctx=s["n_ctx"],
        kv_type=s.get("kv_type", "f16"),
        n_batch=s.get("n_batch", 512),
        n_ubatch=s.get("n_ubatch", 512),
        flash_attn=s.get("flash_attn", True),
        swa_full=s.get("swa_full", True),
        n_outputs_max=s.get("n_outputs_max"),
        n_rs_seq=s.get("n_rs_seq", 0),
        logit_rows=1,
        mtp_n_outputs=s.get("mtp", {}).get("n_outputs_max", 1),
    )


def assert_close(what: str, estimated_bytes: int, actual_mib: float, tolerance: float = TOLERANCE) -> None:
    est = estimated_bytes / MIB
    assert abs(est - actual_mib) <= max(tolerance * actual_mib, ROUNDING_MIB), (
        f"{what}: estimated {est:.2f} MiB, llama.cpp allocated {actual_mib:.2f} MiB"
    )


def check_model(
    path: Path,
    grid: list[dict[str, Any]],
    assistant: Path | None = None,
    compute_tolerance: float = TOLERANCE,
) -> None:
    measured = probe(path, grid, assistant)
    spec = spec_from_gguf(path)
    drafter = spec_from_gguf(assistant) if assistant else None
    assert measured["model_size"] == spec.input_bytes + spec.output_bytes + sum(
        layer.weight_bytes for layer in spec.layers
    )
    if assistant is not None and drafter is not None:
        assert measured["assistant_size"] == drafter.file_weight_bytes
    for run in measured["runs"]:
        s = run["settings"]
        kind = ("assistant" if assistant else "nextn") if "mtp" in s else "none"
        e = estimate_specs(spec, drafter, kind, settings_of(s), n_gpu_layers=0)
        t = e.target.on("CPU")
        label = f"{path.name} {s}"
        assert_close(f"{label} KV", t.kv, run["kv_mib"])
        assert_close(f"{label} compute", t.compute, run["compute_mib"], compute_tolerance)
        assert_close(f"{label} recurrent state", t.state, run["state_mib"])
        if "mtp" not in s:  # with MTP the estimate adds the NextN embeddings the engine turns on later
            assert_close(f"{label} output", t.output, run["output_mib"])
        else:
            assert e.drafter is not None
            d = e.drafter.on("CPU")
            assert_close(f"{label} MTP KV", d.kv, run["mtp"]["kv_mib"])
            assert_close(f"{label} MTP compute", d.compute, run["mtp"]["compute_mib"], compute_tolerance)


@pytest.mark.real_model
@pytest.mark.subprocess
def test_smollm2_matches_llama_cpp(request: pytest.FixtureRequest) -> None:
    check_model(model_file(request, "smollm2_path"), SMOLLM2_GRID)


@pytest.mark.real_model
@pytest.mark.subprocess
def test_gemma3_matches_llama_cpp(request: pytest.FixtureRequest) -> None:
    """Sliding-window layers (5 of 6), capped with swa_full off; 262k-token vocabulary."""
    check_model(model_file(request, "gemma3_path"), GEMMA3_GRID)


@pytest.mark.subprocess
def test_tiny_llama_matches_llama_cpp(request: pytest.FixtureRequest) -> None:
    check_model(model_file(request, "tiny_llama_path"), TINY_LLAMA_GRID)


@pytest.mark.subprocess
def test_gemma4_assistant_shares_target_kv(tmp_path_factory: pytest.TempPathFactory) -> None:
    paths = tiny_mtp_fixtures(tmp_path_factory.mktemp("mtp"))
    check_model(paths["gemma4"], TINY_GEMMA4_GRID, paths["assistant"])


@pytest.mark.subprocess
def test_nextn_head_and_recurrent_state(tmp_path_factory: pytest.TempPathFactory) -> None:
    paths = tiny_mtp_fixtures(tmp_path_factory.mktemp("mtp"))
    check_model(paths["nextn"], TINY_NEXTN_GRID)


SHAPED_GRID = [
    {"n_ctx": 4096, "mtp": {"n_outputs_max": 1}},
    {"n_ctx": 32768, "swa_full": False, "mtp": {"n_outputs_max": 1}},
]


@pytest.mark.subprocess
@pytest.mark.parametrize("family", ["e2b", "12b", "26b-a4b"])
def test_published_shapes_match_llama_cpp(
    family: str, published_shape_paths: dict[str, tuple[Path, Path]]
) -> None:
    """Per-layer KV head arrays, K = V layers, KV sharing, per-layer inputs, experts: weights and KV exact;
    compute within 10 % (ggml's allocator packs these few-KB temporaries differently at each size)."""
    target, assistant = published_shape_paths[family]
    check_model(target, SHAPED_GRID, assistant, compute_tolerance=0.10)


# --- the memory model's rules, without llama.cpp ------------------------------------------------------------


def test_layer_placement_follows_llama_cpp() -> None:
    # 4 blocks + output; n_gpu_layers counts from the output layer backwards
    assert layer_devices(4, 0, ["GPU"], [1]) == ["CPU"] * 5
    assert layer_devices(4, 1, ["GPU"], [1]) == ["CPU"] * 4 + ["GPU"]
    assert layer_devices(4, 3, ["GPU"], [1]) == ["CPU", "CPU", "GPU", "GPU", "GPU"]
    assert layer_devices(4, -1, ["GPU"], [1]) == ["GPU"] * 5
    # two GPUs split by free memory (3:1)
    assert layer_devices(3, 4, ["A", "B"], [3, 1]) == ["A", "A", "A", "B"]


def test_shared_kv_and_swa_layers_in_catalog_specs() -> None:
    cat = load_catalog()
    e2b = spec_from_catalog(cat.model("gemma-4-e2b-it"))
    own = [layer for layer in e2b.layers if layer.has_kv]
    assert len(own) == 35 - 20  # the last 20 layers reuse earlier caches
    assert sum(not layer.is_swa for layer in own) == 3  # full attention at 4, 9, 14
    s = ContextSettings(n_ctx=32768, swa_full=False)
    kv = estimate_specs(e2b, None, "none", s, n_gpu_layers=0).target.on("CPU").kv
    full_rows = 3 * 1 * 512 * 2 * 2 * 32768  # 3 layers x 1 KV head x 512 x (K+V) x f16 x cells
    swa_rows = 12 * 1 * 256 * 2 * 2 * 1024  # window 512 + ubatch 512 cells
    assert kv == full_rows + swa_rows


def test_assistant_has_no_kv_and_nextn_one_layer() -> None:
    cat = load_catalog()
    pair = cat.pair("gemma4-31b-mtp")
    assert pair.drafter is not None
    t, d = spec_from_catalog(pair.target), spec_from_catalog(pair.drafter)
    e = estimate_specs(t, d, "assistant", ContextSettings(n_ctx=8192), n_gpu_layers=-1, gpus=["GPU"])
    assert e.drafter is not None and e.drafter.on("GPU").kv == 0 and e.drafter.on("GPU").weights > 0
    q = spec_from_catalog(cat.model("qwen3.6-27b"))
    e = estimate_specs(q, None, "nextn", ContextSettings(n_ctx=8192), n_gpu_layers=0)
    assert e.drafter is not None
    one_layer = 8192 * 4 * 256 * 2 * 2  # cells x 4 KV heads x 256 x (K+V) x f16
    assert e.drafter.on("CPU").kv == one_layer
    assert e.target.on("CPU").kv == 16 * one_layer  # 16 of 64 trunk layers have attention
    assert e.target.on("CPU").state > 0 and e.settings.n_rs_seq >= 1  # rollback snapshots while drafting


def test_quantized_kv_needs_whole_blocks_per_head(request: pytest.FixtureRequest) -> None:
    """The tiny llama has 16-wide heads: llama.cpp refuses a q8_0 cache (blocks of 32), so must we."""
    spec = spec_from_gguf(model_file(request, "tiny_llama_path"))
    assert spec.layers[0].head_k % 32
    with pytest.raises(ValueError, match="q8_0 KV cache needs head sizes divisible by 32"):
        estimate_specs(spec, None, "none", ContextSettings(kv_type="q8_0"), n_gpu_layers=0)


def test_fork_converted_drafter_gguf_is_refused(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "fork.gguf"
    w = gguf.GGUFWriter(str(path), "gemma4_assistant")
    w.add_uint32("gemma4_assistant.block_count", 1)
    w.add_tensor("blk.0.attn_q.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFileError, match="fork.*gemma4-assistant"):
        spec_from_gguf(path)


# --- verdicts with fake devices -----------------------------------------------------------------------------


def test_huge_gpu_fits_everything() -> None:
    pair = load_catalog().pair("gemma4-31b-mtp")
    r = fit(pair, fake_hardware([141], ram_gb=64), n_ctx=32768)
    assert r.verdict == Verdict.FITS_GPU and r.n_gpu_layers == r.total_layers == 61
    assert r.drafter == "gpu" and r.drafter_bytes > 0 and r.n_ctx == 32768
    assert r.estimate is not None and r.estimate.cpu_total < 2 * 1024**3  # input embeddings, buffers


def test_tiny_gpu_means_cpu_only_and_tiny_ram_too_large() -> None:
    pair = load_catalog().pair("llama3.1-8b+3.2-1b")
    r = fit(pair, fake_hardware([0.25], ram_gb=32))
    assert r.verdict == Verdict.CPU_ONLY and r.n_gpu_layers == 0 and r.drafter == "cpu"
    r = fit(pair, fake_hardware([], ram_gb=2))
    assert r.verdict == Verdict.TOO_LARGE and r.max_ctx == 0 and "RAM" in r.explanation


def test_partial_offload_uses_the_most_layers_that_fit() -> None:
    cat = load_catalog()
    pair = cat.pair("qwen3-8b+0.6b")
    hw = fake_hardware([4], ram_gb=32)
    r = fit(pair, hw, quant="Q8_0")
    assert r.verdict == Verdict.PARTIAL and 0 < r.n_gpu_layers < r.total_layers
    budget = budgets(hw)

    def gpu_bytes(ngl: int) -> int:
        dgl = -1 if r.drafter == "gpu" else 0
        e = estimate(
            pair.target,
            pair.drafter,
            n_ctx=r.n_ctx,
            n_gpu_layers=ngl,
            drafter_gpu_layers=dgl,
            hardware=hw,
            quant="Q8_0",
        )
        return e.device_total("CUDA0")

    assert gpu_bytes(r.n_gpu_layers) <= budget["CUDA0"] < gpu_bytes(r.n_gpu_layers + 1)


def test_max_ctx_is_the_largest_that_fits() -> None:
    pair = load_catalog().pair("llama3.1-8b+3.2-1b")
    hw = fake_hardware([12], ram_gb=32)
    r = fit(pair, hw)
    assert r.verdict == Verdict.FITS_GPU and r.drafter == "gpu"
    budget = budgets(hw)["CUDA0"]
    at = estimate(pair.target, pair.drafter, n_ctx=r.max_ctx, n_gpu_layers=-1, hardware=hw)
    beyond = estimate(pair.target, pair.drafter, n_ctx=r.max_ctx + 256, n_gpu_layers=-1, hardware=hw)
    assert at.device_total("CUDA0") <= budget < beyond.device_total("CUDA0")


def test_target_fits_but_not_with_drafter_offers_choices() -> None:
    pair = load_catalog().pair("llama3.1-8b+3.2-1b")
    r = fit(pair, fake_hardware([6.6], ram_gb=32))
    assert r.verdict == Verdict.FITS_GPU and r.n_gpu_layers == r.total_layers
    choices = {o.choice: o for o in r.options}
    assert set(choices) == {"keep", "smaller_context", "drafter_on_cpu", "no_drafter"}
    assert not choices["keep"].feasible and choices["no_drafter"].feasible
    assert choices["smaller_context"].n_ctx < r.options[0].n_ctx
    assert r.choice != "keep" and choices[r.choice].feasible
    # MTP heads share the target's device: no "drafter on CPU" choice for an assistant
    mtp = fit(load_catalog().pair("gemma4-e4b-mtp"), fake_hardware([5.9], ram_gb=32), n_ctx=65536)
    assert "drafter_on_cpu" not in {o.choice for o in mtp.options}


def test_pick_quant_prefers_quality_that_fits() -> None:
    pair = load_catalog().pair("qwen3-8b+0.6b")
    assert pick_quant(pair, fake_hardware([80], ram_gb=64)).quant.name == "Q8_0"  # type: ignore[union-attr]
    small = pick_quant(pair, fake_hardware([8], ram_gb=32))
    assert small.quant is not None and small.result is not None
    assert small.result.verdict == Verdict.FITS_GPU and small.quant.name != "Q8_0"
    cpu = pick_quant(pair, fake_hardware([], ram_gb=32))
    assert (
        cpu.quant is not None and cpu.quant.name == "Q4_K_M"
    )  # smallest at/above 4 bits: CPU is bandwidth-bound
    assert pick_quant(pair, fake_hardware([], ram_gb=1)).quant is None


def test_real_gguf_fit_on_fake_devices(request: pytest.FixtureRequest) -> None:
    path = model_file(request, "smollm2_path")
    assert fit(path, fake_hardware([24], ram_gb=16)).verdict == Verdict.FITS_GPU
    r = fit(path, fake_hardware([], ram_gb=16), n_ctx=4096)
    assert r.verdict == Verdict.CPU_ONLY and r.max_ctx == 8192  # capped at the training context
    e = estimate(path, n_ctx=4096, n_gpu_layers=-1, hardware=fake_hardware([24]))
    assert (
        e.target.on("CUDA0").weights
        == spec_from_gguf(path).file_weight_bytes
        - spec_from_gguf(path).input_bytes
        + spec_from_gguf(path).tied_output_bytes
    )  # tied head duplicated on the GPU


def test_swa_full_note_quantifies_the_saving() -> None:
    r = fit(load_catalog().pair("gemma4-31b-mtp"), fake_hardware([80], ram_gb=64), n_ctx=32768)
    assert any("swa_full off" in n for n in r.notes)
    off = fit(
        load_catalog().pair("gemma4-31b-mtp"),
        fake_hardware([80], ram_gb=64),
        n_ctx=32768,
        settings=replace(ContextSettings(), swa_full=False),
    )
    assert off.estimate is not None and r.estimate is not None
    assert off.estimate.gpu_total < r.estimate.gpu_total


def test_cli_fit_json(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from engine.cli.fit import add_fit_parser

    parser = argparse.ArgumentParser()
    add_fit_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fit", "llama3.1-8b+3.2-1b", "--vram-gb", "0", "--ram-gb", "32", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "cpu_only" and out["quant"] == "Q4_K_M" and out["hardware"]["fake"]
    args = parser.parse_args(["fit", "qwen3-8b+qwen3-0.6b", "--vram-gb", "24", "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "fits_gpu"
