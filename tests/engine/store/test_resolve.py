"""Every catalog entry resolves against the published layouts (tests/fakehub_layouts.py on the fake hub):
the target by its quantization tag as llama.cpp's -hf picks it, the MTP drafter beside it, sizes and sha256
from the listing; a file that is gone gets a message naming what the repository has instead."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.compat.options import catalog_drafter_options, local_drafter_options
from engine.errors import QuantNotFoundError
from engine.fit.pair_plan import pair_files, pair_option, resolve_pair_files
from engine.gguf.metadata import read_gguf
from engine.store.catalog import load_catalog, parse_catalog
from engine.store.download import download
from engine.store.hub import list_repo, search
from engine.store.model_store import ModelStore
from engine.store.resolve import resolve_quant
from tests import REPO_ROOT
from tests.fakehub import FakeHub, isolate_hf_env
from tests.fakehub_layouts import E2B_DRAFTER_BYTES, GGML_ORG_Q8, catalog_repos


@pytest.fixture(scope="module")
def layout_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("layouts")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, layout_dir: Path) -> Iterator[FakeHub]:
    isolate_hf_env(monkeypatch, tmp_path)
    with FakeHub(catalog_repos(layout_dir, real_drafter_size=True)) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        yield h


def test_every_catalog_entry_resolves_with_its_drafter(hub: FakeHub) -> None:
    catalog = load_catalog()
    listed: dict[str, Any] = {}

    def lister(repo: str) -> Any:
        if repo not in listed:
            listed[repo] = list_repo(repo)
        return listed[repo]

    resolved = 0
    for pair in catalog.pairs:
        option = pair_option(catalog, pair)
        for quant in pair.target.quants:
            r = resolve_pair_files(catalog, pair, quant.name, option, lister)
            resolved += 1
            if pair.target.pypi is not None:
                continue
            target = r.files[0]
            listing = listed[target.repo or ""]
            remote = listing.file(target.filename)
            assert remote is not None and target.verified and target.revision == listing.revision
            assert (target.size_bytes, target.sha256) == (remote.size, remote.sha256)
            assert target.repo == (quant.repo or pair.target.repo)
            if pair.drafter_kind == "assistant":
                drafter = r.files[-1]
                assert drafter.role == "drafter" and drafter.repo == target.repo
                assert pair.drafter is not None and drafter.filename == pair.drafter.quants[0].file
                assert r.drafter_note is not None and drafter.filename in r.drafter_note
            if pair.drafter_kind == "draft":
                assert pair.drafter is not None and r.files[-1].repo == pair.drafter.repo
    assert resolved == sum(len(p.target.quants) for p in catalog.pairs)
    assert "unsloth/Qwen3.6-27B-MTP-GGUF" in listed and "unsloth/Qwen3.6-27B-GGUF" not in listed


def test_qat_pair_takes_the_root_drafter_with_the_listed_size(hub: FakeHub) -> None:
    catalog = load_catalog()
    pair = catalog.pair("gemma4-e2b-mtp")
    r = resolve_pair_files(catalog, pair, "UD-Q2_K_XL", pair_option(catalog, pair), list_repo)
    assert [f.filename for f in r.files] == ["gemma-4-E2B-it-qat-UD-Q2_K_XL.gguf", "mtp-gemma-4-E2B-it.gguf"]
    assert r.files[1].size_bytes == E2B_DRAFTER_BYTES  # from the listing, not from MTP/
    assert r.drafter_note == "MTP drafter available: mtp-gemma-4-E2B-it.gguf (56.5 MiB)"


def test_eight_bit_targets_come_from_ggml_org_with_their_own_drafter(hub: FakeHub) -> None:
    catalog = load_catalog()
    for pair_id, size in (("gemma4-e4b-mtp", "E4B"), ("gemma4-12b-mtp", "12B"), ("gemma4-31b-mtp", "31B")):
        pair = catalog.pair(pair_id)
        r = resolve_pair_files(catalog, pair, "Q8_0", pair_option(catalog, pair), list_repo)
        repo = f"ggml-org/gemma-4-{size}-it-GGUF"
        assert [(f.repo, f.filename) for f in r.files] == [
            (repo, GGML_ORG_Q8[size]),
            (repo, f"mtp-gemma-4-{size}-it.gguf"),
        ]
        renamed = [n for n in r.notes if "is not in" in n]
        assert bool(renamed) == (size == "12B")  # the 12B name was not reported: found by its tag


def test_a_file_that_is_gone_names_what_the_repo_has(hub: FakeHub) -> None:
    """The six entries the old catalog got wrong, written back: each is refused with the alternatives."""
    raw = json.loads((REPO_ROOT / "resources" / "catalog.json").read_text())
    e2b = raw["models"]["gemma-4-e2b-it"]
    e2b["quants"].append({"name": "Q8_0", "file": "gemma-4-E2B-it-qat-Q8_0.gguf", "verified": False})
    catalog = parse_catalog(raw)
    model = catalog.model("gemma-4-e2b-it")
    with pytest.raises(QuantNotFoundError) as err:
        resolve_quant(model, model.quant("Q8_0"), list_repo(model.repo or ""))
    message = str(err.value)
    assert "unsloth/gemma-4-E2B-it-qat-GGUF has no Q8_0 file" in message
    assert "gemma-4-E2B-it-qat-Q8_0.gguf" in message
    assert "UD-Q2_K_XL: gemma-4-E2B-it-qat-UD-Q2_K_XL.gguf" in message
    assert "UD-Q4_K_XL: gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf" in message
    assert "MTP drafter mtp-gemma-4-E2B-it.gguf (56.5 MiB)" in message
    assert "mmproj" not in message and "MTP/" not in message and "404" not in message


def test_re_upload_is_verified_against_the_listing_not_the_catalog(hub: FakeHub, tmp_path: Path) -> None:
    catalog = load_catalog()
    model = catalog.model("qwen3-0.6b")
    stale = dataclasses.replace(model.quants[0], size_bytes=123, sha256="0" * 64, verified=True)
    found = resolve_quant(model, stale, list_repo(model.repo or ""))
    assert any("changed since the catalog entry" in n for n in found.notes)
    path = download(found.repo, found.path, revision=found.revision, store=ModelStore(tmp_path / "s"))
    assert path.stat().st_size == found.size


def test_qwen36_without_mtp_build_offers_no_nextn(hub: FakeHub, tmp_path: Path) -> None:
    """The old catalog's Qwen3.6 repo has the same names but no NextN block: resolution alone cannot tell,
    the GGUF metadata does, and the NextN drafter is refused with its rule."""
    store = ModelStore(tmp_path / "s")
    old = read_gguf(download("unsloth/Qwen3.6-27B-GGUF", "Qwen3.6-27B-Q4_K_M.gguf", store=store))
    new = read_gguf(download("unsloth/Qwen3.6-27B-MTP-GGUF", "Qwen3.6-27B-Q4_K_M.gguf", store=store))
    rules = {o.kind: o.rule for o in local_drafter_options(old, [])}
    assert rules["nextn"] == "no-mtp-layers"
    assert (
        new.nextn_predict_layers == 1
        and {o.kind: o.rule for o in local_drafter_options(new, [])}["nextn"] is None
    )


def test_planning_names_follow_the_quant_repo() -> None:
    """Offline (no listing): the 8-bit E4B is planned from ggml-org, its drafter beside it."""
    catalog = load_catalog()
    pair = catalog.pair("gemma4-e4b-mtp")
    refs = pair_files(catalog, pair, "Q8_0", pair_option(catalog, pair))
    assert [(r.repo, r.filename) for r in refs] == [
        ("ggml-org/gemma-4-E4B-it-GGUF", "gemma-4-E4B-it-Q8_0.gguf"),
        ("ggml-org/gemma-4-E4B-it-GGUF", "mtp-gemma-4-E4B-it.gguf"),
    ]
    options = catalog_drafter_options(catalog, pair.target)
    assert any(o.kind == "assistant" and o.compatible for o in options)


def test_listing_follows_pages_and_search_marks_the_drafter(hub: FakeHub) -> None:
    hub.tree_page_size = 2
    listing = list_repo("unsloth/gemma-4-E2B-it-qat-GGUF")
    assert "MTP/mtp-gemma-4-E2B-it-BF16.gguf" in listing.paths and len(listing.paths) == 9
    assert sum("/tree/" in r.path for r in hub.requests) == 5  # 9 files + 1 folder entry, two per page
    hits = {h.repo: h for h in search("gemma-4-E2B")}
    hit = hits["unsloth/gemma-4-E2B-it-qat-GGUF"]
    assert hit.has_mtp_drafter and hit.drafter == "mtp-gemma-4-E2B-it.gguf"
