"""Tandem's inference engine: llama.cpp through llama-cpp-python's low-level API. Never imports Qt."""

import contextlib

# llama.cpp's libraries are loaded before anything imports numpy: on an H200 machine (CUDA 13 build of the
# pinned binding, the machine's numpy 2.5.2) a process that had imported numpy first crashed in
# llama_model_load_from_file (in libstdc++'s stream code) on every load, and one that imported llama_cpp first
# never did (docs/performance.md, "On a GPU"). A missing or broken binding is reported where it is used.
with contextlib.suppress(ImportError, OSError):
    import llama_cpp  # noqa: F401

__version__ = "0.1.0"
