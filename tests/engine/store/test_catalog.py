"""engine.store.catalog: the bundled pair catalog loads, and malformed catalogs are refused with a reason."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import CatalogError
from engine.store.catalog import load_catalog, parse_catalog
from tests import REPO_ROOT

CATALOG = REPO_ROOT / "resources" / "catalog.json"


@pytest.fixture
def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CATALOG.read_text())
    return data


def test_bundled_catalog_has_the_curated_pairs() -> None:
    cat = load_catalog()
    kinds = {p.id: p.drafter_kind for p in cat.pairs}
    gemma4 = [p for p in cat.pairs if p.target.arch.architecture == "gemma4"]
    assert {p.target.id for p in gemma4} == {
        "gemma-4-e2b-it",
        "gemma-4-e4b-it",
        "gemma-4-12b-it",
        "gemma-4-26b-a4b-it",
        "gemma-4-31b-it",
    }
    assert all(p.drafter_kind == "assistant" and p.drafter is not None for p in gemma4)
    assert all(p.drafter.arch.architecture == "gemma4-assistant" for p in gemma4 if p.drafter)
    assert "nextn" in kinds.values() and list(kinds.values()).count("draft") >= 2
    assert cat.default_pair.target.id == "smollm2-135m-instruct" and cat.default_pair.drafter_kind == "ngram"
    for p in gemma4:  # llama.cpp -hf convention: the mtp-*.gguf drafter at the root of the target's repo
        assert p.drafter is not None and p.drafter.repo == p.target.repo
        assert p.drafter.quants[0].file.startswith("mtp-")


def test_no_unverified_checksums_or_sizes() -> None:
    """Sizes and sha256 are given only for files checked offline; everything else is resolved at download."""
    for model in load_catalog().models.values():
        assert model.arch.source
        for q in model.quants:
            if q.sha256 is not None or q.size_bytes is not None:
                assert q.verified, f"{model.id} {q.name}: size/sha256 given for an unverified file"


def test_smollm2_entry_matches_the_real_file(request: pytest.FixtureRequest) -> None:
    from engine.fit.model_spec import spec_from_gguf
    from tests.engine.model_files import model_file

    path = model_file(request, "smollm2_path")

    entry = load_catalog().model("smollm2-135m-instruct")
    q = entry.quants[0]
    data = Path(path).read_bytes()
    assert len(data) == q.size_bytes
    assert hashlib.sha256(data).hexdigest() == q.sha256
    spec = spec_from_gguf(path)
    a = entry.arch
    assert (spec.architecture, spec.n_layer_all, spec.n_embd, spec.n_ff, spec.n_vocab, spec.n_ctx_train) == (
        a.architecture,
        a.n_layer,
        a.n_embd,
        a.n_ff,
        a.n_vocab,
        a.n_ctx_train,
    )
    assert spec.layers[0].n_head_kv == a.n_head_kv and spec.layers[0].head_k == a.head_dim


def test_approximate_sizes_are_marked(raw: dict[str, Any]) -> None:
    q = load_catalog().model("llama-3.1-8b-instruct").quant("q4_k_m")
    assert q.size_bytes is None and q.sha256 is None and not q.verified
    assert q.approx_bytes is not None and 4.5e9 < q.approx_bytes < 5.5e9  # 8.03B x ~4.9 bits


def test_fork_converted_drafter_is_refused(raw: dict[str, Any]) -> None:
    bad = copy.deepcopy(raw)
    bad["models"]["gemma-4-31b-it-assistant"]["arch"]["architecture"] = "gemma4_assistant"
    with pytest.raises(CatalogError, match="fork.*gemma4-assistant"):
        parse_catalog(bad)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["pairs"][1].update(drafter="nope"), "not a model of the catalog"),
        (lambda d: d["pairs"][1].update(drafter=None), "needs drafter model"),
        (lambda d: d["pairs"][0].update(default=False), "exactly one pair must be marked default"),
        (lambda d: d["pairs"][-1].update(drafter="llama-3.2-1b-instruct"), "vocabulary"),
        (lambda d: d["models"]["qwen3-8b"]["arch"].update(n_layer=-1), "must be positive"),
        (lambda d: d["models"]["qwen3-8b"]["quants"][0].update(sha256="xyz"), "sha256"),
        (lambda d: d["models"]["qwen3-8b"]["arch"].update(layers=3), "unknown keys"),
        (lambda d: d.update(schema=2), "schema"),
        (lambda d: d["pairs"].append(dict(d["pairs"][1], default=False)), "duplicate pair ids"),
        (lambda d: d["models"]["qwen3.6-27b"]["arch"].update(nextn_layers=0), "no embedded NextN"),
        (lambda d: d["models"]["qwen3-8b"]["quants"][0].update(alt_files=["MTP/"]), "unknown keys"),
        (
            lambda d: d["models"]["qwen3-8b"]["quants"][0].update(source="nowhere"),
            "not in the catalog's sources",
        ),
        (lambda d: d["models"]["qwen3-8b"]["quants"][0].update(repo="no-slash"), "owner/name"),
    ],
)
def test_malformed_catalogs_are_refused(raw: dict[str, Any], mutate: Any, message: str) -> None:
    bad = copy.deepcopy(raw)
    mutate(bad)
    with pytest.raises(CatalogError, match=message):
        parse_catalog(bad)


def test_lookup_errors_name_what_exists(tmp_path: Path) -> None:
    cat = load_catalog()
    with pytest.raises(CatalogError, match="known: smollm2-135m"):
        cat.pair("no-such-pair")
    with pytest.raises(CatalogError, match="has no quantization 'Q2_K'"):
        cat.model("qwen3-8b").quant("Q2_K")
    broken = tmp_path / "catalog.json"
    broken.write_text("{not json")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(broken)


def test_corrected_entries_point_at_the_published_repositories() -> None:
    """The six entries a check of the published repositories found wrong, as corrected."""
    cat = load_catalog()
    for size in ("e2b", "e4b", "12b", "31b"):
        model = cat.model(f"gemma-4-{size}-it")
        names = [q.name for q in model.quants]
        assert names[:2] == ["UD-Q4_K_XL", "UD-Q2_K_XL"] and all(
            "qat" in model.repo_of(q) for q in model.quants[:2]
        )
        assert all(not q.verified and q.source for q in model.quants)
        q8 = [q for q in model.quants if q.name == "Q8_0"]
        if size == "e2b":
            assert not q8  # no 8-bit E2B was reported anywhere
        else:
            assert model.repo_of(q8[0]) == f"ggml-org/gemma-4-{size.upper()}-it-GGUF"
    qwen = cat.model("qwen3.6-27b")
    assert (
        qwen.repo == "unsloth/Qwen3.6-27B-MTP-GGUF"
        and qwen.arch.nextn_layers == 1
        and qwen.arch.n_layer == 64
    )
