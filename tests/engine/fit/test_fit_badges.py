"""Fit badges (engine.fit.badges), pair files and load settings (engine.fit.pair_plan), partial clean-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.compat.options import NGRAM, catalog_drafter_options
from engine.errors import CatalogError
from engine.fit.badges import badge_for, catalog_fits, file_badge, pair_fit, with_drafter
from engine.fit.hardware import fake_hardware
from engine.fit.pair_plan import load_config, locate, missing, pair_files, pair_option
from engine.fit.planner import Verdict, fit
from engine.store.catalog import load_catalog
from engine.store.model_store import ModelStore

TINY_GPU = fake_hardware((2,), ram_gb=16)
HUGE_GPU = fake_hardware((96,), ram_gb=128)
CPU_ONLY = fake_hardware((), ram_gb=16)


def test_verdicts_for_three_machines():
    catalog = load_catalog()
    e2b = catalog.pair("gemma4-e2b-mtp")
    huge, tiny, cpu = (pair_fit(e2b, hw, 8192) for hw in (HUGE_GPU, TINY_GPU, CPU_ONLY))
    assert huge.badge.level == "gpu" and huge.badge.text == "Fits on GPU"
    result = tiny.quant(tiny.best).result
    assert tiny.badge.level == "partial" and result.verdict == Verdict.PARTIAL
    assert tiny.badge.text == f"Partial offload ({result.n_gpu_layers} of {result.total_layers} layers)"
    assert 0 < result.n_gpu_layers < result.total_layers
    assert cpu.badge.text == "CPU only" and not cpu.badge.needs_confirmation
    big = pair_fit(catalog.pair("gemma4-31b-mtp"), fake_hardware((), ram_gb=8), 8192)
    assert big.best is None and big.badge.text == "Too large" and big.badge.needs_confirmation
    assert "needs at least" in big.badge.tooltip


def test_cpu_only_badges_tell_a_small_model_from_a_large_one():
    """Issue 16: "CPU only" for both a 135M and a 31B model told nothing."""
    catalog = load_catalog()
    roomy = fake_hardware((), ram_gb=64)
    small, e2b, large = (pair_fit(catalog.pair(p), roomy, 4096).badge
                         for p in ("smollm2-135m", "gemma4-e2b-mtp", "gemma4-31b-mtp"))  # fmt: skip
    assert small.text == e2b.text == large.text == "CPU only"
    assert small.speed and e2b.speed and large.speed
    assert small.speed.tokens_per_s > 10 * e2b.speed.tokens_per_s > 10 * large.speed.tokens_per_s
    assert (small.tone, large.tone) == ("good", "poor") and small.label.startswith("CPU only · ≈ ")
    assert "tok/s" in small.label and "GB/s" in small.tooltip
    gpu = pair_fit(catalog.pair("gemma4-e2b-mtp"), HUGE_GPU, 4096).badge
    assert gpu.speed is None and gpu.tone == "good" and gpu.label == "Fits on GPU"


def test_every_quant_gets_a_badge_and_the_best_is_preselected():
    fits = catalog_fits(load_catalog().pairs, HUGE_GPU, 4096)
    assert all(len(f.quants) >= 1 and f.best is not None for f in fits)
    llama = next(f for f in fits if f.pair_id == "llama3.1-8b+3.2-1b")
    assert [q.quant for q in llama.quants] == ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"]
    assert llama.best == "Q8_0"  # everything fits: the highest precision
    assert all(q.size_bytes and q.size_bytes > 4 * 10**9 for q in llama.quants)


def test_context_changes_the_badge():
    pair = load_catalog().pair("llama3.1-8b+3.2-1b")
    hw = fake_hardware((8,), ram_gb=32)
    short, long = pair_fit(pair, hw, 2048), pair_fit(pair, hw, 131072)
    assert short.badge.level == "gpu" and long.badge.level == "partial"
    assert short.badge.n_ctx == 2048 and long.badge.n_ctx == 131072


def test_tooltip_breaks_the_memory_down_against_free_memory():
    badge = pair_fit(load_catalog().pair("gemma4-e2b-mtp"), HUGE_GPU, 8192).badge
    text = badge.tooltip
    for word in ("weights", "KV", "compute", "drafter", "8192 tokens"):
        assert word in text, word
    assert "CUDA0: needs" in text and "of 96.0 GiB free" in text and "RAM 128 GiB free" in text


def test_caveats_when_the_plan_gives_something_up():
    catalog = load_catalog()
    pair = catalog.pair("gemma4-12b-mtp")
    result = fit(pair, fake_hardware((2,), ram_gb=8), n_ctx=8192, quant="UD-Q4_K_XL")
    badge = badge_for(result, fake_hardware((2,), ram_gb=8), has_drafter=True)
    assert result.drafter == "none" and "without the drafter" in badge.full_label
    assert not badge.needs_confirmation and "without the drafter" not in badge.label  # the column stays short
    ngram = pair_fit(with_drafter(pair, catalog, NGRAM), fake_hardware((2,), ram_gb=8), 8192)
    assert all("drafter" not in (q.badge.caveat or "") for q in ngram.quants)


def test_with_drafter_swaps_the_pair_drafter():
    catalog = load_catalog()
    pair = catalog.pair("llama3.1-8b+3.2-1b")
    qwen = next(o for o in catalog_drafter_options(catalog, pair.target) if o.model_id == "qwen3-0.6b")
    swapped = with_drafter(pair, catalog, qwen)
    assert (
        swapped.drafter is not None and swapped.drafter.id == "qwen3-0.6b" and swapped.drafter_kind == "draft"
    )
    assert with_drafter(pair, catalog, NGRAM).drafter is None


def test_file_badge_reads_the_gguf_or_says_why_not(tmp_path: Path, tiny_llama_path: Path):
    badge, result = file_badge(tiny_llama_path, HUGE_GPU, 1024, drafter_kind="ngram")
    assert badge.level == "gpu" and result is not None and result.n_ctx == 1024
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf")
    badge, result = file_badge(junk, HUGE_GPU, 1024)
    assert badge.level == "unknown" and result is None and "not a GGUF" in badge.tooltip


# --- pair_plan -------------------------------------------------------------------------------------------


def test_pair_files_follow_the_chosen_drafter():
    catalog = load_catalog()
    pair = catalog.pair("gemma4-e2b-mtp")
    option = pair_option(catalog, pair)
    assert option.kind == "assistant" and option.model_id == "gemma-4-e2b-it-assistant"
    target, drafter = pair_files(catalog, pair, "UD-Q2_K_XL", option)
    assert (target.repo, target.filename, target.role) == (
        "unsloth/gemma-4-E2B-it-qat-GGUF",
        "gemma-4-E2B-it-qat-UD-Q2_K_XL.gguf",
        "target",
    )
    assert drafter.filename == "mtp-gemma-4-E2B-it.gguf" and drafter.role == "drafter"
    assert [r.role for r in pair_files(catalog, pair, None, NGRAM)] == ["target"]
    (embedded,) = pair_files(catalog, catalog.pair("smollm2-135m"), None, NGRAM)
    assert embedded.pypi and embedded.repo is None
    with pytest.raises(CatalogError):
        pair_files(catalog, pair, "Q2_K", option)


def test_locate_in_the_store(tmp_path: Path, tiny_llama_path: Path):
    catalog = load_catalog()
    store = ModelStore(tmp_path / "data")
    pair = catalog.pair("llama3.1-8b+3.2-1b")
    refs = pair_files(catalog, pair, "Q4_K_M", pair_option(catalog, pair))
    assert missing(refs, store) == refs
    store.adopt(
        tiny_llama_path,
        repo=refs[1].repo,
        filename=refs[1].filename,
        sha256="0" * 64,
        source="hub",
        revision=None,
        move=False,
    )
    assert missing(refs, store) == refs[:1] and locate(refs[1], store) == store.path_for(
        refs[1].repo, refs[1].filename
    )


def test_load_config_follows_the_plan():
    catalog = load_catalog()
    pair = catalog.pair("llama3.1-8b+3.2-1b")
    option = pair_option(catalog, pair)
    target, draft = Path("/m/target.gguf"), Path("/m/draft.gguf")
    plan = fit(pair, HUGE_GPU, n_ctx=4096, quant="Q4_K_M")
    config = load_config(target, option, draft, n_ctx=4096, plan=plan)
    assert (config.drafter, config.draft_model_path, config.assistant_path) == ("draft", draft, None)
    assert (config.n_ctx, config.n_gpu_layers) == (4096, plan.n_gpu_layers) and plan.n_gpu_layers > 0
    dropped = fit(pair, fake_hardware((2,), ram_gb=8), n_ctx=8192, quant="Q6_K")
    assert dropped.drafter == "none"
    config = load_config(target, option, draft, n_ctx=8192, plan=dropped)
    assert config.drafter == "ngram" and config.draft_model_path is None and config.n_ctx == dropped.n_ctx
    anyway = load_config(target, option, draft, n_ctx=65536, plan=None)
    assert (anyway.n_ctx, anyway.n_gpu_layers, anyway.drafter) == (65536, 0, "draft")
    with pytest.raises(CatalogError):
        load_config(target, option, None, n_ctx=4096, plan=plan)


def test_load_config_for_mtp_drafters():
    catalog = load_catalog()
    e2b = catalog.pair("gemma4-e2b-mtp")
    assistant = Path("/m/mtp.gguf")
    config = load_config(Path("/m/t.gguf"), pair_option(catalog, e2b), assistant, n_ctx=2048, plan=None)
    assert (config.drafter, config.assistant_path) == ("mtp", assistant)
    qwen = catalog.pair("qwen3.6-27b-nextn")
    config = load_config(Path("/m/q.gguf"), pair_option(catalog, qwen), None, n_ctx=2048, plan=None)
    assert config.drafter == "mtp" and config.assistant_path is None


def test_discard_partials(tmp_path: Path):
    store = ModelStore(tmp_path)
    keep = store.partial_path("acme/x-GGUF", "other.gguf", "a" * 64)
    mine = [store.partial_path("acme/x-GGUF", "sub/m.gguf", v * 64) for v in "bc"]
    for i, p in enumerate([keep, *mine]):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * (10 + i))
    assert store.partials_of("acme/x-GGUF", "sub/m.gguf") == sorted(mine)
    assert store.discard_partials("acme/x-GGUF", "sub/m.gguf") == 23
    assert keep.exists() and not any(p.exists() for p in mine)
    assert store.discard_partials("acme/none-GGUF", "m.gguf") == 0


def test_offload_counts_leave_the_nextn_block_out():
    """Qwen3.6 27B MTP: 65 blocks = 64 trunk + 1 NextN. llama.cpp's n_gpu_layers counts all 66 (with the
    output layer) and offloads from the end, NextN block first; people are shown the 64 + output."""
    fit = pair_fit(load_catalog().pair("qwen3.6-27b-nextn"), fake_hardware((8,), ram_gb=64), 8192)
    result = fit.quant(fit.best).result if fit.best else None
    assert result is not None and result.verdict == Verdict.PARTIAL
    assert result.total_layers == 66 and result.shown_layers == 65
    assert result.shown_gpu_layers == result.n_gpu_layers - 1  # the NextN block is among the offloaded ones
    assert fit.badge.text == f"Partial offload ({result.shown_gpu_layers} of 65 layers)"
