"""Drafter options for a target: every candidate listed, usable or with the rule it fails (catalog numbers and
GGUF metadata)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.compat.options import (
    RULE_NEXTN_UNSUPPORTED,
    RULE_NO_MTP_LAYERS,
    RULE_NOT_SMALLER,
    RULE_SAME_FILE,
    catalog_drafter_options,
    local_drafter_options,
    nextn_refusal,
)
from engine.gguf.metadata import read_gguf
from engine.store.catalog import load_catalog
from tests.fixtures.tiny_llama import TinyLlamaSpec, build_tiny_llama


def by_id(options):
    return {o.model_id if o.kind != "ngram" else "ngram": o for o in options}


def test_catalog_gemma4_target_offers_its_own_assistant_and_greys_the_rest():
    catalog = load_catalog()
    options = catalog_drafter_options(catalog, catalog.model("gemma-4-e2b-it"))
    found = by_id(options)
    assert found["gemma-4-e2b-it-assistant"].compatible and found["ngram"].compatible
    wider = found["gemma-4-e4b-it-assistant"]
    assert (wider.rule, wider.compatible) == ("hidden-size", False) and "2560" in wider.reason
    assert found["llama-3.2-1b-instruct"].rule == "vocab-size"
    assert found["gemma-4-e2b-it"].kind == "nextn" and found["gemma-4-e2b-it"].rule == RULE_NO_MTP_LAYERS
    usable = [o.compatible for o in options]
    assert usable == sorted(usable, reverse=True)  # usable ones first
    assert {o.kind for o in options} == {"assistant", "nextn", "draft", "ngram"}


def test_catalog_llama_target_takes_the_same_tokenizer_draft_only():
    catalog = load_catalog()
    found = by_id(catalog_drafter_options(catalog, catalog.model("llama-3.1-8b-instruct")))
    assert found["llama-3.2-1b-instruct"].compatible
    assert found["qwen3-0.6b"].rule == "vocab-size" and "151936" in found["qwen3-0.6b"].reason
    assert found["gemma-4-e2b-it-assistant"].rule == "target-architecture"


def test_catalog_nextn_target_offers_its_head():
    catalog = load_catalog()
    found = by_id(catalog_drafter_options(catalog, catalog.model("qwen3.6-27b")))
    assert found["qwen3.6-27b"].kind == "nextn" and found["qwen3.6-27b"].compatible


def test_nextn_refusals():
    assert nextn_refusal("qwen35", 1) is None
    assert nextn_refusal("qwen35", 0)[0] == RULE_NO_MTP_LAYERS
    assert nextn_refusal("llama", 1)[0] == RULE_NEXTN_UNSUPPORTED  # no MTP graph for it
    rule, reason = nextn_refusal("qwen3next", 1)  # recurrent without rollback snapshots
    assert rule == RULE_NEXTN_UNSUPPORTED and "roll back" in reason


def test_local_gemma4_target_checks_each_assistant_by_its_rule(
    tiny_gemma4_path: Path, tiny_gemma4_assistant_path: Path, mismatched_assistant_paths: dict[str, Path]
):
    target = read_gguf(tiny_gemma4_path)
    candidates = [read_gguf(tiny_gemma4_assistant_path), target]
    candidates += [read_gguf(p) for p in mismatched_assistant_paths.values()]
    options = local_drafter_options(target, candidates)
    by_path = {o.path: o for o in options if o.kind == "assistant"}
    assert by_path[tiny_gemma4_assistant_path].compatible
    for rule, path in mismatched_assistant_paths.items():
        assert by_path[path].rule == rule, (rule, by_path[path])
    fork = by_path[mismatched_assistant_paths["fork-format"]]
    assert "fork-only architecture" in fork.reason
    assert not any(o.kind == "draft" for o in options)  # the target itself is not offered as its drafter
    nextn = next(o for o in options if o.kind == "nextn")
    assert nextn.rule == RULE_NO_MTP_LAYERS
    assert options[-1].kind != "ngram" and any(o.kind == "ngram" and o.compatible for o in options)


def test_local_draft_models_by_metadata(tmp_path: Path, tiny_llama_path: Path, tiny_gemma4_path: Path):
    target = read_gguf(tiny_llama_path)
    small = read_gguf(build_tiny_llama(tmp_path / "small.gguf", TinyLlamaSpec(n_embd=32, n_ff=64)))
    same_size = read_gguf(build_tiny_llama(tmp_path / "twin.gguf"))
    other_vocab = read_gguf(tiny_gemma4_path)
    options = local_drafter_options(target, [small, same_size, other_vocab])
    by_path = {o.path: o for o in options if o.kind == "draft"}
    assert by_path[small.path].compatible
    assert by_path[same_size.path].rule == RULE_NOT_SMALLER
    assert by_path[other_vocab.path].rule == "vocab-size" and "355 tokens" in by_path[other_vocab.path].reason


def test_same_file_is_refused_as_draft(tiny_llama_path: Path):
    from engine.compat.options import check_draft_metadata
    from engine.errors import IncompatibleDrafterError

    info = read_gguf(tiny_llama_path)
    with pytest.raises(IncompatibleDrafterError) as exc:
        check_draft_metadata(info, info)
    assert exc.value.rule == RULE_SAME_FILE


def test_another_tokenizer_type_or_special_tokens_are_refused(tmp_path: Path, tiny_llama_path: Path):
    from engine.compat.options import RULE_SPECIAL_TOKENS, RULE_VOCAB_TYPE

    target = read_gguf(tiny_llama_path)
    small = read_gguf(build_tiny_llama(tmp_path / "small.gguf", TinyLlamaSpec(n_embd=32)))
    bpe = dataclasses.replace(small, vocab_model="gpt2")
    other_eos = dataclasses.replace(small, eos_token_id=4)
    options = {o.label: o for o in local_drafter_options(target, [small]) if o.kind == "draft"}
    assert all(o.compatible for o in options.values())
    (draft,) = [o for o in local_drafter_options(target, [bpe]) if o.kind == "draft"]
    assert draft.rule == RULE_VOCAB_TYPE and "'gpt2'" in draft.reason
    (draft,) = [o for o in local_drafter_options(target, [other_eos]) if o.kind == "draft"]
    assert draft.rule == RULE_SPECIAL_TOKENS and "EOS" in draft.reason
