"""Typed errors the engine raises. Every message names the file or pair and the problem in plain words,
so the CLI and the app can show it as-is instead of a traceback."""

from __future__ import annotations

from pathlib import Path


class TandemError(Exception):
    """Base class for every error the engine raises on purpose."""


class ModelFileError(TandemError):
    """A model file is missing, unreadable, corrupt, truncated or not a GGUF llama.cpp can load."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class IncompatibleDrafterError(TandemError):
    """A drafter does not match its target; `rule` names the failed compatibility rule."""

    def __init__(self, rule: str, detail: str) -> None:
        self.rule = rule
        self.detail = detail
        super().__init__(f"drafter incompatible ({rule}): {detail}")


class ModelLoadError(TandemError):
    """llama.cpp refused to load a model or create a context (it logged why)."""


class ContextOverflowError(TandemError):
    """The prompt does not fit in the context window even after dropping old turns."""


class DecodeError(TandemError):
    """llama_decode failed (returned a non-zero status)."""


class KVRollbackError(TandemError):
    """Removing rejected positions from the KV cache failed; continuing would corrupt the sequence."""


class TemplateError(TandemError):
    """The model's chat template failed to render (bad syntax, or it tried to escape the sandbox)."""


class CatalogError(TandemError):
    """The pair catalog (resources/catalog.json) is malformed, or a pair or model id is not in it."""
