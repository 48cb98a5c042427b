"""GGUF files before llama.cpp sees them: the bounds-checked reader, metadata and validation, and the
architectures the pinned llama.cpp knows. Imports nothing else of the engine but its errors."""
