"""Typed errors of the chat history store; they derive from TandemError so the app can show them as-is."""

from __future__ import annotations

from engine.errors import TandemError


class HistoryError(TandemError):
    """Base class for every error the history store raises on purpose."""


class HistorySchemaError(HistoryError):
    """The history file cannot be used as it is: not a database, damaged, or written by a newer Tandem.

    The file is left untouched so nothing is lost; the app may offer to move it aside."""


class ChatNotFoundError(HistoryError, LookupError):
    """A chat or message id that is not (or no longer) in the store."""


class ChatImportError(HistoryError, ValueError):
    """An import file is not a Tandem chat export; the message names the field and the problem."""
