"""`tandem models pull PAIR[:QUANT]` on the published layouts, and `tandem models import` offering the MTP
drafter found beside a model (checked against it first)."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import models as models_cli
from engine.store.model_store import ModelStore
from tests.fakehub import FakeHub, isolate_hf_env
from tests.fakehub_layouts import catalog_repos


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tandem")
    models_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    isolate_hf_env(monkeypatch, tmp_path)
    return tmp_path


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, env: Path) -> Iterator[FakeHub]:
    with FakeHub(catalog_repos(env / "blobs")) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        yield h


def test_pull_a_catalog_pair(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["models", "pull", "gemma4-12b-mtp:Q8_0"]) == 0
    out = capsys.readouterr().out
    # the 12B Q8_0 has another name in ggml-org's listing: found by its tag, and said so
    assert "note: gemma-4-12B-it-Q8_0.gguf is not in ggml-org/gemma-4-12B-it-GGUF" in out
    assert "ggml-org/gemma-4-12B-it-GGUF/gemma-4-12b-it-Q8_0.gguf (hub, plain" in out
    assert "ggml-org/gemma-4-12B-it-GGUF/mtp-gemma-4-12B-it.gguf (hub, MTP assistant" in out


def test_pull_repo_with_drafter_takes_the_sibling_only(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["models", "pull", "unsloth/gemma-4-E4B-it-qat-GGUF:UD-Q4_K_XL"]) == 0
    out = capsys.readouterr().out
    assert "MTP drafter available: mtp-gemma-4-E4B-it.gguf (" in out and "--with-drafter" in out
    assert run(["models", "pull", "unsloth/gemma-4-E4B-it-qat-GGUF:UD-Q2_K_XL", "--with-drafter"]) == 0
    names = {e.filename for e in ModelStore().list()}
    assert names == {
        "gemma-4-E4B-it-qat-UD-Q4_K_XL.gguf",
        "gemma-4-E4B-it-qat-UD-Q2_K_XL.gguf",
        "mtp-gemma-4-E4B-it.gguf",
    }


def _folder(tmp: Path, target: Path, drafter: Path) -> Path:
    folder = tmp / "dl"
    folder.mkdir()
    shutil.copy(target, folder / "tiny-gemma4.gguf")
    shutil.copy(drafter, folder / "mtp-tiny-gemma4.gguf")
    return folder / "tiny-gemma4.gguf"


def test_import_offers_the_drafter_beside_it(
    env: Path, capsys: pytest.CaptureFixture[str], tiny_gemma4_path: Path, tiny_gemma4_assistant_path: Path
) -> None:
    model = _folder(env, tiny_gemma4_path, tiny_gemma4_assistant_path)
    assert run(["models", "import", str(model)]) == 0  # not a terminal: the offer is printed, not taken
    out = capsys.readouterr().out
    assert "found mtp-tiny-gemma4.gguf beside this model: use it as the drafter?" in out
    assert "--with-drafter" in out and [e.filename for e in ModelStore().list()] == ["tiny-gemma4.gguf"]
    assert run(["models", "import", str(model), "--with-drafter"]) == 0
    out = capsys.readouterr().out
    assert "imported local/mtp-tiny-gemma4.gguf (MTP assistant" in out and "--assistant" in out


def test_import_explains_a_drafter_that_does_not_fit(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_gemma4_path: Path,
    mismatched_assistant_paths: dict[str, Path],
) -> None:
    model = _folder(env, tiny_gemma4_path, mismatched_assistant_paths["kv-heads"])
    assert run(["models", "import", str(model), "--with-drafter"]) == 0
    out = capsys.readouterr().out
    assert "found mtp-tiny-gemma4.gguf beside this model, but it cannot draft for it (kv-heads)" in out
    assert [e.filename for e in ModelStore().list()] == ["tiny-gemma4.gguf"]


def test_pull_pair_offline_uses_the_catalog_names(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No listing can be read offline: the catalog's names are looked up in the Hugging Face cache."""
    from engine.errors import HubOfflineError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubOfflineError, match="gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf is neither in the store"):
        run(["models", "pull", "gemma4-e2b-mtp"])
