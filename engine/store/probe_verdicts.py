"""What the isolated probe (engine.inference.probe) found about a model file, kept in the data dir so each
file is probed once: `probe_verdicts.json`, keyed by the identity of the files a load opens.

A file's identity is its size, modification time and a hash of its first MiB (the header, where every
value llama.cpp checks lives): a file replaced, re-downloaded or edited in place is probed again. Writes
are atomic (temporary file + rename) and merge what another Tandem process wrote meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from engine.paths import data_dir

log = logging.getLogger(__name__)

FILE_NAME = "probe_verdicts.json"
HEADER_BYTES = 1024 * 1024
MAX_ENTRIES = 500  # oldest verdicts are dropped beyond this: the file stays small
VERSION = 1

Outcome = Literal["ok", "crash"]


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    path: str = ""  # for a crash: the file that crashed
    message: str = ""  # for a crash: the error shown to the user (bounded)
    details: str = ""  # for a crash: llama.cpp's last log lines (bounded)
    checked_at: float = 0.0  # time.time() of the probe


def file_identity(path: Path) -> str:
    """Size, mtime and header hash of `path` as one string; raises OSError if it cannot be read."""
    st = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(HEADER_BYTES))
    return f"{st.st_size}:{st.st_mtime_ns}:{digest.hexdigest()[:32]}"


def _seconds(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


class VerdictStore:
    """Verdicts by key (engine.inference.probe builds the key from file identities and load settings)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else data_dir() / FILE_NAME

    def get(self, key: str) -> Verdict | None:
        raw = self._read().get(key)
        if not isinstance(raw, dict):
            return None
        try:
            outcome = raw["outcome"]
            if outcome not in ("ok", "crash"):
                return None
            return Verdict(
                outcome=outcome,
                path=str(raw.get("path", ""))[:4096],
                message=str(raw.get("message", ""))[:1000],
                details=str(raw.get("details", ""))[:8000],
                checked_at=_seconds(raw.get("checked_at")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, verdict: Verdict) -> None:
        """Record a verdict. A data dir that cannot be written only costs a probe next time: logged."""
        try:
            entries = self._read()
            entries[key] = asdict(verdict) | {"checked_at": verdict.checked_at or time.time()}
            if len(entries) > MAX_ENTRIES:
                ordered = sorted(entries.items(), key=lambda kv: _seconds(kv[1].get("checked_at")))
                entries = dict(ordered[-MAX_ENTRIES:])
            self._write(entries)
        except OSError as exc:
            log.warning("could not record the probe verdict in %s: %s", self.path, exc)

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return {}
        entries = data.get("verdicts")
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, dict)}

    def _write(self, entries: dict[str, dict[str, object]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".verdicts-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": VERSION, "verdicts": entries}, f, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
