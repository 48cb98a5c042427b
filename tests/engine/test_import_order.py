"""llama.cpp's libraries load before numpy in every entry point (engine/__init__.py says why: a CUDA build
crashed at every model load in a process that had imported numpy first)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ENTRY_POINTS = ["engine.gguf.metadata", "engine.cli.bench", "engine.inference.session", "app.main"]

# Audit events come in the order things happen: "import" when an import starts, "ctypes.dlopen" when the
# binding loads a library. (sys.modules is no record of that: a module moves to its end when it finishes.)
PROBE = """
import sys
events = []
def hook(event, args):
    if event == "import" and args[0].split(".")[0] == "numpy":
        events.append("numpy")
    elif event == "ctypes.dlopen" and "llama" in str(args[0]):
        events.append("libllama")
sys.addaudithook(hook)
import {module}
llama_at = events.index("libllama") if "libllama" in events else -1
print(llama_at, events.index("numpy") if "numpy" in events else 10**9)
"""


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_llama_cpp_is_loaded_before_numpy(module: str) -> None:
    code = PROBE.format(module=module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    llama_at, numpy_at = map(int, out.stdout.split())
    assert 0 <= llama_at < numpy_at, f"{module}: numpy imported before llama.cpp's library was loaded"
