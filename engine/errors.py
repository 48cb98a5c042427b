"""Typed errors the engine raises. Every message names the file or pair and the problem in plain words,
so the CLI and the app can show it as-is instead of a traceback. Messages often quote a file's own bytes
(keys, names, llama.cpp's log): every message is escaped and bounded (engine.text.one_line) when the error
is made, so no error can flood a terminal or a dialog."""

from __future__ import annotations

from pathlib import Path

from engine.text import escape_controls, one_line, shown
from engine.units import format_bytes

DETAILS_LIMIT = 4000  # characters of `details` (a log tail): enough to diagnose, never a frozen dialog


class TandemError(Exception):
    """Base class for every error the engine raises on purpose. `str(error)` is one line of at most
    engine.text.MESSAGE_LIMIT characters without control characters, written for the command line ("run the
    same command again"); `gui`, when given, says the same for the app's windows; `details` (optional,
    several lines, bounded too) is what the app shows under "Details": e.g. llama.cpp's last log lines."""

    def __init__(self, message: str = "", *, details: str | None = None, gui: str | None = None) -> None:
        super().__init__(one_line(str(message)))
        self.details = bounded_details(details) if details else None
        self.gui = one_line(gui) if gui else None

    def for_gui(self) -> str:
        """The message as the app shows it."""
        return self.gui or str(self)


def bounded_details(text: str) -> str:
    """Several lines, each escaped, the whole kept to its last DETAILS_LIMIT characters."""
    lines = [escape_controls(line) for line in text[-4 * DETAILS_LIMIT :].splitlines()]
    joined = "\n".join(lines)
    return joined if len(joined) <= DETAILS_LIMIT else "…" + joined[-(DETAILS_LIMIT - 1) :]


class ModelFileError(TandemError):
    """A model file is missing, unreadable, corrupt, truncated or not a GGUF llama.cpp can load."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{shown(str(self.path), 200)}: {problem}")


class IncompatibleDrafterError(TandemError):
    """A drafter does not match its target; `rule` names the failed compatibility rule."""

    def __init__(self, rule: str, detail: str) -> None:
        self.rule = rule
        self.detail = detail
        super().__init__(f"drafter incompatible ({rule}): {detail}")


class ModelLoadError(TandemError):
    """llama.cpp refused to load a model or create a context (it logged why). `path`: the file, when known
    (the app tells a refused drafter from a refused target by it)."""

    def __init__(
        self, message: str = "", *, path: str | Path | None = None, details: str | None = None
    ) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message, details=details)


class ModelCrashError(ModelLoadError):
    """llama.cpp crashed (or hung) opening a model file in the isolated probe process; the app's own process
    never opened it, so the model already loaded keeps working. `path` names the file that crashed."""

    def __init__(self, path: str | Path, message: str, *, details: str | None = None) -> None:
        super().__init__(message, path=path, details=details)


class ContextOverflowError(TandemError):
    """The prompt does not fit in the context window even after dropping old turns."""


class DecodeError(TandemError):
    """llama_decode failed (returned a non-zero status)."""


class KVRollbackError(TandemError):
    """Removing rejected positions from the KV cache failed; continuing would corrupt the sequence."""


class TemplateError(TandemError):
    """The model's chat template failed to render (bad syntax, or it tried to escape the sandbox)."""


class StoreError(TandemError):
    """The model store cannot do what was asked (unknown or ambiguous name, name clash, bad path)."""


class ModelNotInStoreError(StoreError):
    """No stored model matches a name; `candidates` lists near matches (may be empty)."""

    def __init__(self, name: str, candidates: tuple[str, ...] = ()) -> None:
        self.name = name
        self.candidates = candidates
        hint = "; see `tandem models list`"
        if candidates:
            hint = f"; did you mean one of: {', '.join(candidates)}"
        super().__init__(f"no stored model named {name!r}{hint}")


class InsufficientDiskError(TandemError):
    """Not enough free space to start writing a file (checked before any byte is written)."""

    def __init__(self, path: str | Path, needed: int, free: int) -> None:
        self.path = Path(path)
        self.needed = needed
        self.free = free
        sizes = f"need {format_bytes(needed)}, {format_bytes(free)} free"
        problem = f"not enough free disk space in {self.path}: {sizes}"
        super().__init__(
            f"{problem}; free some space or move the data dir with TANDEM_DATA_DIR",
            gui=f"{problem[0].upper()}{problem[1:]}. Free some space, then try again.",
        )


class DiskFullError(TandemError):
    """The disk filled up while writing; nothing was placed in the store."""

    def __init__(self, path: str | Path, detail: str) -> None:
        self.path = Path(path)
        super().__init__(
            f"disk full while writing {self.path} ({detail}); free some space and run the same command "
            "again: the download resumes where it stopped",
            gui=f"The disk filled up while writing {self.path} ({detail}). Free some space, then press "
            "Resume: the download goes on where it stopped.",
        )


class DownloadError(TandemError):
    """Base class for problems reaching the Hugging Face Hub or fetching a file from it."""


class HubOfflineError(DownloadError):
    """The hub cannot be reached (no network, HF_HUB_OFFLINE set, proxy/DNS failure)."""


class RepoNotFoundError(DownloadError):
    def __init__(self, repo: str) -> None:
        self.repo = repo
        super().__init__(
            f"repo {repo} not found on the Hugging Face Hub (check the spelling; a private repo also needs "
            "a token: `hf auth login` or HF_TOKEN)",
            gui=f"The Hugging Face Hub has no repository {repo}. Check the spelling; a private repository "
            "also needs a Hugging Face token (sign in once with `hf auth login` in a terminal).",
        )


class RemoteFileNotFoundError(DownloadError):
    """The repo exists but has no such file; `available` lists the repo's GGUF files."""

    def __init__(self, repo: str, filename: str, available: tuple[str, ...] = ()) -> None:
        self.repo = repo
        self.filename = filename
        self.available = available
        listing = f"; its GGUF files: {', '.join(available)}" if available else "; it has no GGUF files"
        super().__init__(f"repo {repo} has no file {filename!r}{listing}")


class QuantNotFoundError(RemoteFileNotFoundError):
    """A catalog quantization's file is not in its repository (renamed away, removed, or never there), and no
    other file carries its tag; the message names what the repository has instead."""

    def __init__(self, repo: str, tag: str, expected: str, instead: tuple[str, ...]) -> None:
        self.tag = tag
        self.expected = expected
        self.instead = instead
        has = "; ".join(instead) if instead else "no GGUF model files"
        DownloadError.__init__(
            self,
            f"{repo} has no {tag} file (the catalog expected {expected}); the repository has instead: {has}",
        )
        self.repo, self.filename, self.available = repo, expected, instead


class GatedRepoAccessError(DownloadError):
    """A gated repo refused access: either no token was found or the token's account has no access yet."""

    def __init__(self, repo: str, has_token: bool) -> None:
        self.repo = repo
        self.has_token = has_token
        if has_token:
            why = (
                f"repo {repo} is gated and your Hugging Face token has no access to it: accept its licence "
                f"on https://huggingface.co/{repo} with the account the token belongs to, then retry"
            )
        else:
            why = (
                f"repo {repo} is gated and no Hugging Face token was found: accept its licence on "
                f"https://huggingface.co/{repo}, then log in with `hf auth login` or set HF_TOKEN"
            )
        gui = (
            f"{repo} asks you to accept its licence first: open https://huggingface.co/{repo}, accept it "
            + ("with the account of your Hugging Face token, then try again." if has_token else
               "and sign in once with `hf auth login` in a terminal, then try again.")
        )  # fmt: skip
        super().__init__(why, gui=gui)


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not hash to what the hub's metadata says; the file was deleted, not placed."""

    def __init__(self, repo: str, filename: str, expected: str, actual: str) -> None:
        self.repo = repo
        self.filename = filename
        self.expected = expected
        self.actual = actual
        problem = f"{repo}/{filename}: checksum mismatch (the hub says {expected[:16]}…, got {actual[:16]}…)"
        super().__init__(
            f"{problem}; the corrupt download was deleted, run the command again to fetch it afresh",
            gui=f"{problem}. The damaged download was deleted: press Try again to download it afresh.",
        )


class DownloadCancelledError(DownloadError):
    """The download was cancelled; the partial file is kept and the next download of it resumes."""


class DownloadBusyError(DownloadError):
    """Another process is downloading the same file right now."""


class CatalogError(TandemError):
    """The pair catalog (resources/catalog.json) is malformed, or a pair or model id is not in it."""
