"""The model store: layout, manifest, import (validated, linked or copied), find, remove, and `tandem models`
list / import / rm."""

from __future__ import annotations

import argparse
import errno
import json
import os
from pathlib import Path

import pytest

import engine.cli
from engine.cli import models as models_cli
from engine.errors import InsufficientDiskError, ModelFileError, ModelNotInStoreError, StoreError
from engine.store.model_store import ModelStore, data_dir, sha256_file
from tests.fakehub import write_tiny_gguf


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "tandem"))
    return ModelStore()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "incoming" / "tiny.gguf"
    path.parent.mkdir()
    write_tiny_gguf(path)
    return path


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def test_data_dir_honours_tandem_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "elsewhere"))
    assert data_dir() == tmp_path / "elsewhere"
    assert ModelStore().models_dir == tmp_path / "elsewhere" / "models"
    monkeypatch.delenv("TANDEM_DATA_DIR")
    assert data_dir().name == "tandem"


def test_import_links_and_records_the_model(store: ModelStore, model: Path) -> None:
    entry = store.import_file(model)
    assert (entry.name, entry.source, entry.kind, entry.repo) == ("local/tiny.gguf", "import", "plain", None)
    assert entry.sha256 == sha256_file(model) and entry.size == model.stat().st_size
    assert entry.path == store.path_for(None, "tiny.gguf") and os.path.samefile(entry.path, model)
    assert store.list() == [entry]
    manifest = json.loads((store.models_dir / "manifest.json").read_text())
    assert manifest["models"][0]["sha256"] == entry.sha256
    assert store.import_file(model) == entry  # the same file again is a no-op


def test_remove_reports_the_space_really_freed(store: ModelStore, model: Path) -> None:
    size = model.stat().st_size
    assert store.remove(store.import_file(model).name) == 0  # the original still holds the bytes
    assert store.list() == [] and not (store.models_dir / "local").exists()  # empty folders pruned
    entry = store.import_file(model)
    model.unlink()
    assert store.remove(entry.name) == size


def test_import_copies_across_volumes(
    store: ModelStore, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(*_a: object, **_k: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    entry = store.import_file(model)
    assert not os.path.samefile(entry.path, model) and entry.path.read_bytes() == model.read_bytes()
    assert store.remove(entry.name) == model.stat().st_size
    assert [p.name for p in _files_under(store.models_dir) if p.suffix == ".tmp"] == []


def test_copy_checks_free_space_first(
    store: ModelStore, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    usage = shutil.disk_usage(model.parent)
    monkeypatch.setattr(os, "link", lambda *_a, **_k: (_ for _ in ()).throw(OSError(errno.EXDEV, "x")))
    monkeypatch.setattr("engine.store.model_store.shutil.disk_usage", lambda _p: usage._replace(free=1000))
    with pytest.raises(InsufficientDiskError):
        store.import_file(model)
    assert store.list() == [] and [p for p in _files_under(store.models_dir) if p.suffix == ".gguf"] == []


@pytest.mark.parametrize(
    ("arch", "nextn", "kind", "label"),
    [("gemma4-assistant", 0, "mtp-assistant", "MTP assistant"), ("qwen35", 1, "nextn", "NextN")],
)
def test_import_tells_the_model_kind(
    store: ModelStore, tmp_path: Path, arch: str, nextn: int, kind: str, label: str
) -> None:
    path = tmp_path / f"{arch}.gguf"
    write_tiny_gguf(path, arch=arch, nextn_layers=nextn)
    entry = store.import_file(path)
    assert (entry.kind, entry.kind_label) == (kind, label)


def test_split_model_shards_are_accepted(store: ModelStore, tmp_path: Path) -> None:
    import gguf
    import numpy as np

    from tests.fakehub import add_minimal_model_keys

    writer = gguf.GGUFWriter(str(tmp_path / "big.gguf"), "llama", split_max_tensors=1)
    add_minimal_model_keys(writer)
    for name in ("a.weight", "b.weight"):
        writer.add_tensor(name, np.ones(256, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    shards = sorted(tmp_path.glob("big-*-of-00002.gguf"))
    assert [store.import_file(p).kind for p in shards] == ["plain", "plain"]  # shard 2 has no architecture


def test_bad_files_are_refused_and_nothing_is_placed(store: ModelStore, model: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("definitely not a model")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="not a GGUF"):
        store.import_file(text)
    with pytest.raises(ModelFileError, match="truncated"):
        store.import_file(truncated)
    with pytest.raises(ModelFileError, match="no such file"):
        store.import_file(tmp_path / "missing.gguf")
    assert store.list() == [] and _files_under(store.models_dir) == []


def test_name_clash_with_different_content(store: ModelStore, model: Path, tmp_path: Path) -> None:
    store.import_file(model)
    other = tmp_path / "tiny.gguf"
    write_tiny_gguf(other, tensor_bytes=8192)
    with pytest.raises(StoreError, match="different model named local/tiny.gguf"):
        store.import_file(other)


def test_find_accepts_names_files_and_repos_but_never_guesses(store: ModelStore, tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    write_tiny_gguf(src)
    for repo in ("acme/one-GGUF", "acme/two-GGUF"):
        store.adopt(src, repo=repo, filename="m.gguf", sha256="x", source="hub", revision="c", move=False)
    store.adopt(
        src, repo="acme/two-GGUF", filename="MTP/d.gguf", sha256="x", source="hub", revision="c", move=False
    )

    assert store.find("acme/one-GGUF/m.gguf").repo == "acme/one-GGUF"
    assert store.find("acme/one-GGUF:m.gguf").repo == "acme/one-GGUF"
    assert store.find("acme/one-GGUF").filename == "m.gguf"  # a repo with a single model
    assert store.find("d.gguf").name == "acme/two-GGUF/MTP/d.gguf"
    assert (
        store.path_for("acme/two-GGUF", "MTP/d.gguf")
        == store.models_dir / "acme__two-GGUF" / "MTP" / "d.gguf"
    )
    with pytest.raises(ModelNotInStoreError) as err:
        store.find("m.gguf")  # in two repos
    assert set(err.value.candidates) == {"acme/one-GGUF/m.gguf", "acme/two-GGUF/m.gguf"}
    with pytest.raises(ModelNotInStoreError) as err:
        store.find("one")
    assert err.value.candidates == ("acme/one-GGUF/m.gguf",)


def test_partials_and_stray_files_are_never_models(store: ModelStore, model: Path) -> None:
    partial = store.partial_path("acme/x-GGUF", "big.gguf", "ab" * 32)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(model.read_bytes()[:100])
    stray = store.models_dir / "acme__x-GGUF" / "dropped.gguf"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(model.read_bytes())
    assert store.models_dir not in partial.parents
    assert store.list() == []
    assert store.untracked() == [stray]
    assert store.partials() == [(partial, 100)]


def test_corrupt_manifest_is_set_aside_and_files_can_be_reimported(store: ModelStore, model: Path) -> None:
    entry = store.import_file(model)
    (store.models_dir / "manifest.json").write_text("{ not json")
    assert store.list() == []
    assert store.untracked() == [entry.path]
    assert list(store.models_dir.glob("manifest.corrupt-*.json"))
    assert store.import_file(entry.path).sha256 == entry.sha256


def test_embedded_source(store: ModelStore, model: Path) -> None:
    assert store.import_file(model, source="embedded").source == "embedded"


# ----- CLI ------------------------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tandem")
    models_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_models_is_a_registered_command() -> None:
    assert "models" in engine.cli.COMMANDS


def test_cli_import_list_rm(store: ModelStore, model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["models"]) == 0
    assert "no models" in capsys.readouterr().out
    assert _run(["models", "import", str(model)]) == 0
    assert "imported local/tiny.gguf (plain" in capsys.readouterr().out
    assert _run(["models", "list"]) == 0
    out = capsys.readouterr().out
    from engine.units import format_bytes

    size = format_bytes(model.stat().st_size)
    assert "local/tiny.gguf" in out and "plain" in out and "import" in out and size in out
    assert _run(["models", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "local/tiny.gguf"
    model.unlink()
    assert _run(["models", "rm", "tiny.gguf"]) == 0
    assert f"removed local/tiny.gguf; freed {size}" in capsys.readouterr().out


def test_cli_errors_are_typed(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(ModelNotInStoreError):
        _run(["models", "rm", "nothing"])
    with pytest.raises(ModelFileError):
        _run(["models", "import", str(tmp_path / "nope.gguf")])


def test_fit_subcommand_judges_a_catalog_pair(capsys: pytest.CaptureFixture[str]) -> None:
    # A simulated 24 GiB GPU: E2B with its assistant fits there; with no GPU and 2 GiB of RAM it cannot.
    assert _run(["models", "fit", "gemma4-e2b-mtp", "--vram-gb", "24", "--ram-gb", "32", "--json"]) == 0
    roomy = json.loads(capsys.readouterr().out)
    assert _run(["models", "fit", "gemma4-e2b-mtp", "--vram-gb", "0", "--ram-gb", "2", "--json"]) == 0
    tight = json.loads(capsys.readouterr().out)
    assert roomy["verdict"] == "fits_gpu" and roomy["hardware"]["fake"] is True
    assert tight["verdict"] == "too_large"
