"""Tandem's inference engine: llama.cpp through llama-cpp-python's low-level API. Never imports Qt."""

__version__ = "0.1.0"
