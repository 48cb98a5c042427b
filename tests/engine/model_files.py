"""Model files for the fit tests, found without depending on one test-suite layout: the session fixtures of
tests/conftest.py when the suite has them (smollm2_path, gemma3_path, tiny_llama_path), else an environment
variable, else the test is skipped with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {
    "smollm2_path": "TANDEM_SMOLLM2",
    "gemma3_path": "TANDEM_GEMMA3",
    "tiny_llama_path": "TANDEM_TINY_LLAMA",
}


def model_file(request: pytest.FixtureRequest, fixture: str) -> Path:
    try:
        return Path(request.getfixturevalue(fixture))
    except pytest.FixtureLookupError:
        pass
    env = os.environ.get(ENV[fixture], "")
    if env and Path(env).is_file():
        return Path(env)
    pytest.skip(f"no {fixture}: needs the tests/conftest.py fixture or ${ENV[fixture]}")


def tiny_mtp_fixtures(directory: Path) -> dict[str, Path]:
    """The tiny Gemma 4 target/assistant and qwen35+NextN fixtures (tests/fixtures/tiny_gemma4.py and
    tiny_nextn.py), built into `directory`; skips when the builders are not in this checkout."""
    try:
        import tests.fixtures.tiny_gemma4 as tiny_gemma4  # type: ignore[import-not-found,unused-ignore]
        import tests.fixtures.tiny_nextn  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        pytest.skip("tiny Gemma 4 / NextN fixture builders not available (tests/fixtures/tiny_gemma4.py)")
    paths = {
        "gemma4": directory / "tiny-gemma4.gguf",
        "assistant": directory / "tiny-gemma4-assistant.gguf",
        "nextn": directory / "tiny-nextn.gguf",
    }
    if not paths["gemma4"].exists():
        tiny_gemma4.build_gemma4_target(paths["gemma4"])
        tiny_gemma4.build_gemma4_assistant(paths["assistant"])
    if not paths["nextn"].exists():  # loads llama.cpp: build in a child process
        subprocess.run(
            [sys.executable, "-m", "tests.fixtures.tiny_nextn", str(paths["nextn"])],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return paths
