"""installers/launcher.py (the installed program's entry) and installers/build.py's fixed choices: cheap
checks that run with the rest of the suite; tests/installers/test_linux_bundle.py builds and runs the real
thing."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import engine
from engine.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"installers_{name}", ROOT / "installers" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    seen: list[tuple[str, list[str]]] = []
    import app.main
    import engine.cli

    monkeypatch.setattr(app.main, "main", lambda argv: seen.append(("app", list(argv))) or 0)
    monkeypatch.setattr(engine.cli, "main", lambda argv: seen.append(("cli", list(argv))) or 0)
    return seen


def test_tandem_alone_or_app_opens_the_app(calls: list[tuple[str, list[str]]]) -> None:
    launcher = _load("launcher")
    assert launcher.main([], "tandem") == 0
    assert launcher.main(["app", "--model", "m.gguf"], "tandem") == 0
    assert launcher.main(["--model", "m.gguf"], "tandem-app") == 0
    assert calls == [("app", []), ("app", ["--model", "m.gguf"]), ("app", ["--model", "m.gguf"])]


def test_commands_go_to_the_cli(calls: list[tuple[str, list[str]]]) -> None:
    launcher = _load("launcher")
    launcher.main(["chat", "hello"], "tandem")
    launcher.main(["--version"], "tandem")
    assert calls == [("cli", ["chat", "hello"]), ("cli", ["--version"])]


def test_tandem_app_in_a_frozen_program_runs_the_program_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    execs: list[list[str]] = []
    monkeypatch.setattr(cli_app.os, "execv", lambda path, argv: execs.append(list(argv)))
    parser = argparse.ArgumentParser()
    cli_app.add_app_args(parser)
    args = parser.parse_args(["--theme", "dark"])
    cli_app.run(args)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    cli_app.run(args)
    assert execs == [
        [sys.executable, "-m", "app", "--theme", "dark"],
        [sys.executable, "app", "--theme", "dark"],
    ]


def test_build_reads_the_versions_it_packages() -> None:
    build = _load("build")
    assert build.project_version() == engine.__version__
    assert build.llama_version() == "0.3.36"


def test_build_asks_for_cpu_variants_loaded_at_run_time() -> None:
    build = _load("build")
    flags = build.llama_cmake_args()
    if sys.platform == "darwin":
        assert "-DGGML_METAL=ON" in flags
        return
    assert {"-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_NATIVE=OFF"} <= set(flags)
    assert "-DCMAKE_INSTALL_BINDIR=llama_cpp/lib" in flags  # the modules beside the binding's libraries


def test_build_reuses_its_cached_llama_wheel_for_the_same_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    build = _load("build")
    monkeypatch.setenv("TANDEM_INSTALLER_CACHE", str(tmp_path))
    assert build.cache_root() == tmp_path
    compiled: list[object] = []

    def fake_compile(cmd: list[object], **kwargs: object) -> None:  # pip wheel -w STAGING
        compiled.append(cmd)
        staging = Path(str(cmd[-1]))
        staging.mkdir(parents=True)
        (staging / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl").write_bytes(b"")

    monkeypatch.setattr(build, "run", fake_compile)
    first = build.llama_wheel(Path(sys.executable), ["-DGGML_BACKEND_DL=ON"])
    again = build.llama_wheel(Path(sys.executable), ["-DGGML_BACKEND_DL=ON"])
    other = build.llama_wheel(Path(sys.executable), ["-DGGML_BACKEND_DL=ON", "-DGGML_VULKAN=ON"])
    assert first == again and first.parent != other.parent and len(compiled) == 2
    assert first.parent.parent == tmp_path
    assert "--no-cache-dir" in [str(c) for c in compiled[0]]  # never into (or from) pip's wheel cache
