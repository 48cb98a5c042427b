"""The architecture of docs/architecture.md, checked on the source: engine sub-packages import only
downwards, only inference code loads llama.cpp, the engine never imports Qt, the app has no import cycle,
and no file points a reader at a path outside the repository. Every import counts, also those inside
functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests import REPO_ROOT

# Lowest first: a package may import the engine root, itself, and the packages before it.
ENGINE_LAYERS = ("gguf", "store", "compat", "fit", "inference", "measure", "serve", "remote", "cli")
# engine/__init__.py only loads the library first, before numpy (its comment says why); it calls nothing.
LLAMA_CPP_ALLOWED = ("engine/inference/", "engine/fit/hardware.py", "engine/__init__.py")


def modules(package: str) -> dict[str, Path]:
    root = REPO_ROOT / package
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(module: str, path: Path) -> Iterator[str]:
    """Every module name `path` imports (absolute names; relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # `from app import render`


def layer(module: str) -> int:
    """-1 for the engine root (config, errors, ...), else the index of its sub-package."""
    parts = module.split(".")
    if len(parts) < 3 and not (len(parts) == 2 and parts[1] in ENGINE_LAYERS):
        return -1
    return ENGINE_LAYERS.index(parts[1])


def test_engine_imports_only_go_down() -> None:
    engine = modules("engine")
    upward = []
    for module, path in engine.items():
        if module == "engine":
            continue
        mine = layer(module)
        for target in imports(module, path):
            if target in engine and target != "engine" and layer(target) > mine:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports that run upward:\n" + "\n".join(sorted(set(upward)))


def test_only_inference_and_hardware_load_llama_cpp_and_no_engine_code_imports_qt() -> None:
    offenders = []
    for module, path in modules("engine").items():
        rel = path.relative_to(REPO_ROOT).as_posix()
        for target in imports(module, path):
            top = target.split(".")[0]
            if top in ("PySide6", "shiboken6", "PyQt5", "PyQt6"):
                offenders.append(f"{rel} imports Qt ({target})")
            if top == "llama_cpp" and not rel.startswith(LLAMA_CPP_ALLOWED):
                offenders.append(f"{rel} imports llama_cpp")
    assert not offenders, "\n".join(sorted(set(offenders)))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_app_has_no_import_cycle() -> None:
    app = modules("app")
    graph = {m: {t for t in imports(m, p) if t in app and t != m and t != "app"} for m, p in app.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


OUTSIDE = re.compile(r"(?<![\w.])/(work|farm|tmp/sdist)/|\.\./shared/|shared/notes")


def test_no_file_cites_a_path_outside_the_repository() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = []
    for name in files:
        path = REPO_ROOT / name
        if name == "tests/test_architecture.py" or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{name}:{i}: {line.strip()[:100]}")
    assert not hits, "paths outside the repository:\n" + "\n".join(hits)
