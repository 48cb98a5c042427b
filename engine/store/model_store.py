"""The model store: where model files live on disk and what is known about each one.

Layout under `data_dir()` (platformdirs' user data dir, or `$TANDEM_DATA_DIR` to relocate everything):

    models/<owner>__<repo>/<file>   files from the hub (or reused from the Hugging Face cache)
    models/local/<file>             imported local files
    models/manifest.json            one record per placed file (repo, sha256, size, source, kind, date)
    downloads/                      partial downloads; they never sit under models/, so a half-downloaded
                                    file cannot be mistaken for a model

A file is placed with a single `os.replace` after it has been completely written, hashed and validated, and
the manifest is rewritten atomically (temp file + replace) under a file lock, so a crash at any point
leaves either the old state or the new one. A model file without a manifest record (a crash between the
two steps, or a file dropped there by hand) is reported by `untracked()`, never listed as a model; when
the manifest cannot be written (a full disk, a read-only folder), the placed file is taken back.
Every file system failure of the store becomes a typed error that says what could not be written where
(`writing`), never a traceback.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Literal, cast

from filelock import FileLock, Timeout

from engine.errors import (
    DiskFullError,
    InsufficientDiskError,
    ModelFileError,
    ModelNotInStoreError,
    StoreError,
    TandemError,
)
from engine.gguf.metadata import split_shard_index, validate_model_file
from engine.paths import data_dir

ModelKind = Literal["plain", "mtp-assistant", "nextn"]
Source = Literal["hub", "import", "hf-cache", "embedded"]
KIND_LABELS: dict[ModelKind, str] = {"plain": "plain", "mtp-assistant": "MTP assistant", "nextn": "NextN"}

LOCAL_PREFIX = "local"  # store names and folder of imported files; hub folders always contain "__"
DISK_MARGIN_BYTES = 256 * 1024 * 1024  # keep this much free after a write: a full disk breaks everything else
_MANIFEST_VERSION = 1
_HASH_CHUNK = 8 * 1024 * 1024


def storage_error(path: Path, exc: OSError, doing: str) -> TandemError:
    """What the user is told when the store cannot `doing` (e.g. "create the download's folder") at `path`."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DiskFullError(path, f"could not {doing}: {reason}")
    where = "TANDEM_DATA_DIR"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreError(
            f"permission denied: Tandem could not {doing} in {path}; check that folder's permissions or set "
            f"{where} to a folder you can write to"
        )
    if exc.errno == errno.EROFS:
        return StoreError(
            f"{path} is on a read-only file system, so Tandem could not {doing} there; set {where} to a "
            "writable folder"
        )
    return StoreError(f"Tandem could not {doing} in {path}: {reason}")


@contextlib.contextmanager
def writing(path: Path, doing: str) -> Iterator[None]:
    """Turn a file system failure inside the block into storage_error(path, ...)."""
    try:
        yield
    except Timeout:
        raise  # a lock someone else holds (filelock's Timeout is an OSError): the caller says who
    except OSError as exc:
        raise storage_error(path, exc, doing) from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_free_space(directory: Path, needed: int) -> None:
    """Raise InsufficientDiskError unless `needed` bytes plus a safety margin fit in `directory`."""
    free = shutil.disk_usage(directory).free
    if needed + DISK_MARGIN_BYTES > free:
        raise InsufficientDiskError(directory, needed + DISK_MARGIN_BYTES, free)


def repo_folder(repo: str) -> str:
    owner, _, name = repo.partition("/")
    return f"{owner}__{name}"


def _checked_relative(filename: str) -> PurePosixPath:
    """A repo file name as a relative path that cannot escape its folder."""
    rel = PurePosixPath(filename)
    if not filename or rel.is_absolute() or ".." in rel.parts or "\\" in filename:
        raise StoreError(f"unsafe model file name {filename!r}")
    return rel


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One placed model file. `name` is how the CLI and app refer to it: `owner/repo/file` or `local/file`."""

    name: str
    path: Path
    size: int
    kind: ModelKind
    source: Source
    repo: str | None
    filename: str
    sha256: str
    revision: str | None
    added: str  # ISO 8601, UTC

    @property
    def kind_label(self) -> str:
        return KIND_LABELS[self.kind]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


class ModelStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else data_dir()
        self.models_dir = self.root / "models"
        self.downloads_dir = self.root / "downloads"
        self._manifest_path = self.models_dir / "manifest.json"
        self._lock = FileLock(str(self.models_dir / ".manifest.lock"))

    # ----- queries -----------------------------------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        """Placed models whose file is present, sorted by name. Sizes are read from disk."""
        entries = []
        for record in self._read_manifest().values():
            entry = self._entry(record)
            if entry is not None:
                entries.append(entry)
        return sorted(entries, key=lambda e: e.name.lower())

    def get(self, repo: str | None, filename: str) -> ModelEntry | None:
        record = self._read_manifest().get(self._rel(repo, filename).as_posix())
        return self._entry(record) if record is not None else None

    def find(self, name: str) -> ModelEntry:
        """Resolve a user-given name: the full name (`owner/repo/file`, `owner/repo:file`, `local/file`), a
        file name, or a repo holding exactly one model. Never guesses between several matches."""
        query = name.strip().replace(":", "/", 1) if ":" in name else name.strip()
        entries = self.list()
        for matches in (
            [e for e in entries if e.name == query],
            [e for e in entries if e.filename == query or PurePosixPath(e.filename).name == query],
            [e for e in entries if e.repo == query],
        ):
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise ModelNotInStoreError(name, tuple(e.name for e in matches))
        near = tuple(e.name for e in entries if query.lower() in e.name.lower())
        raise ModelNotInStoreError(name, near)

    def path_for(self, repo: str | None, filename: str) -> Path:
        """Where a model file lives (or would live) in the store."""
        return self.models_dir / self._rel(repo, filename)

    def partial_path(self, repo: str, filename: str, version: str) -> Path:
        """The resumable partial download of one exact file version (its sha256 or git oid)."""
        flat = _checked_relative(filename).as_posix().replace("/", "__")
        return self.downloads_dir / repo_folder(repo) / f"{flat}.{version[:16]}.part"

    def untracked(self) -> builtins.list[Path]:
        """GGUF files under models/ without a manifest record (not shown as models; import them)."""
        known = {self.models_dir / rel for rel in self._read_manifest()}
        if not self.models_dir.is_dir():
            return []
        return sorted(p for p in self.models_dir.rglob("*.gguf") if p not in known and p.is_file())

    def partials(self) -> builtins.list[tuple[Path, int]]:
        """Partial downloads with their sizes: the same download resumes them; deleting them is safe."""
        if not self.downloads_dir.is_dir():
            return []
        return sorted((p, p.stat().st_size) for p in self.downloads_dir.rglob("*.part") if p.is_file())

    def partials_of(self, repo: str, filename: str) -> builtins.list[Path]:
        """The partial downloads of `repo`/`filename`, whatever version of the file they belong to."""
        flat = _checked_relative(filename).as_posix().replace("/", "__")
        folder = self.downloads_dir / repo_folder(repo)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob(f"{glob.escape(flat)}.*.part") if p.is_file())

    # ----- changes -----------------------------------------------------------------------------------------

    def discard_partials(self, repo: str, filename: str) -> int:
        """Delete the partial downloads of `repo`/`filename` (a cancelled download); returns bytes freed. A
        partial that a running download holds is deleted too: only call this once that download stopped."""
        freed = 0
        for path in self.partials_of(repo, filename):
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                path.unlink()
                freed += size
        with contextlib.suppress(OSError):
            (self.downloads_dir / repo_folder(repo)).rmdir()  # only when empty
        return freed

    def import_file(self, path: str | Path, *, source: Source = "import") -> ModelEntry:
        """Validate a local GGUF and place it under `local/` (hard link when possible, else a copy)."""
        src = Path(path).expanduser()
        if not src.is_file():
            raise ModelFileError(src, "no such file")
        kind = _validate(src)
        existing = self.get(None, src.name)
        digest = sha256_file(src)
        if existing is not None:
            if existing.sha256 == digest:
                return existing
            raise StoreError(
                f"a different model named {existing.name} is already in the store; rename the file or "
                f"remove the stored one with `tandem models rm {existing.name}`",
                gui=f"A different model named {existing.name} is already on this computer. Rename the file, "
                "or remove the stored one first (Remove… on the On this computer tab).",
            )
        return self._place(src, None, src.name, digest, source, None, kind, move=False)

    def adopt(
        self,
        src: Path,
        *,
        repo: str,
        filename: str,
        sha256: str,
        source: Source,
        revision: str | None,
        move: bool,
    ) -> ModelEntry:
        """Validate a complete, already-verified file and place it as `repo`/`filename`. `move=True` takes
        the file (a finished partial download); otherwise it is linked or copied (the HF cache keeps its
        own)."""
        try:
            kind = _validate(src)
        except ModelFileError:
            if move:
                src.unlink(missing_ok=True)  # it matched the hub's checksum, so retrying cannot fix it
            raise
        return self._place(src, repo, filename, sha256, source, revision, kind, move=move)

    def remove(self, name: str) -> int:
        """Delete a stored model; returns the bytes actually freed (0 when another hard link, e.g. the
        Hugging Face cache's blob, still holds the data)."""
        entry = self.find(name)
        with self._locked():
            manifest = self._read_manifest()
            rel = entry.path.relative_to(self.models_dir).as_posix()
            try:
                st = entry.path.stat()
            except FileNotFoundError:
                freed = 0
            else:
                freed = st.st_size if st.st_nlink <= 1 else 0
                entry.path.unlink()
            manifest.pop(rel, None)
            self._write_manifest(manifest)
        self._prune_empty_dirs(entry.path.parent)
        return freed

    # ----- internals ---------------------------------------------------------------------------------------

    def _rel(self, repo: str | None, filename: str) -> PurePosixPath:
        rel = _checked_relative(filename)
        if repo is None:
            return PurePosixPath(LOCAL_PREFIX) / rel
        owner, slash, repo_name = repo.partition("/")
        if not slash or not owner or not repo_name or "/" in repo_name:
            raise StoreError(f"{repo!r} is not a repo id (expected owner/name)")
        return PurePosixPath(repo_folder(repo)) / rel

    def _place(
        self,
        src: Path,
        repo: str | None,
        filename: str,
        sha256: str,
        source: Source,
        revision: str | None,
        kind: ModelKind,
        *,
        move: bool,
    ) -> ModelEntry:
        rel = self._rel(repo, filename)
        dest = self.models_dir / rel
        with writing(dest.parent, "create the model's folder"):
            dest.parent.mkdir(parents=True, exist_ok=True)
        with writing(dest.parent, "place the model file"):
            if move:
                _move_into_place(src, dest)
            else:
                _link_or_copy_into_place(src, dest)
        record: dict[str, Any] = {
            "rel": rel.as_posix(),
            "repo": repo,
            "filename": filename,
            "sha256": sha256,
            "size": dest.stat().st_size,
            "source": source,
            "kind": kind,
            "revision": revision,
            "added": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            with writing(self.models_dir, "record the model in its list (manifest.json)"), self._locked():
                manifest = self._read_manifest()
                manifest[record["rel"]] = record
                self._write_manifest(manifest)
        except TandemError:
            # Not recorded, so not a model: take the file back (a download keeps it as its partial).
            with contextlib.suppress(OSError):
                if move:
                    os.replace(dest, src)
                else:
                    dest.unlink()
            self._prune_empty_dirs(dest.parent)
            raise
        entry = self._entry(record)
        assert entry is not None  # just placed
        return entry

    def _entry(self, record: dict[str, Any]) -> ModelEntry | None:
        path = self.models_dir / record["rel"]
        try:
            size = path.stat().st_size
        except OSError:
            return None
        repo = record.get("repo")
        name = f"{repo}/{record['filename']}" if repo else f"{LOCAL_PREFIX}/{record['filename']}"
        return ModelEntry(
            name=name,
            path=path,
            size=size,
            kind=cast(ModelKind, record.get("kind", "plain")),
            source=cast(Source, record.get("source", "import")),
            repo=repo,
            filename=record["filename"],
            sha256=record.get("sha256", ""),
            revision=record.get("revision"),
            added=record.get("added", ""),
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            yield

    def _read_manifest(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads(self._manifest_path.read_text(encoding="utf-8"))
            records = raw["models"]
            return {r["rel"]: r for r in records if isinstance(r, dict) and "rel" in r and "filename" in r}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError):
            # Keep the damaged file for inspection and start afresh: the model files stay on disk and show
            # up in untracked(), from where they can be imported again. Refusing to work would lose more.
            aside = self._manifest_path.with_name(f"manifest.corrupt-{uuid.uuid4().hex[:8]}.json")
            with contextlib.suppress(OSError):
                os.replace(self._manifest_path, aside)
            return {}

    def _write_manifest(self, manifest: dict[str, dict[str, Any]]) -> None:
        body = {"version": _MANIFEST_VERSION, "models": sorted(manifest.values(), key=lambda r: r["rel"])}
        tmp = self._manifest_path.with_name(f".manifest.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
            os.replace(tmp, self._manifest_path)
        finally:
            tmp.unlink(missing_ok=True)  # a half-written temp file (disk full) is never left behind

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.models_dir and self.models_dir in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


def _move_into_place(src: Path, dest: Path) -> None:
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # models/ on another volume than downloads/ (a symlinked folder)
            raise
        _copy_into_place(src, dest)
        src.unlink()


def _link_or_copy_into_place(src: Path, dest: Path) -> None:
    """Hard link when src is on the same volume (no extra space), else copy; either way atomically."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.link(src.resolve(), tmp)
    except OSError:
        _copy_into_place(src, dest)
        return
    os.replace(tmp, dest)


def _copy_into_place(src: Path, dest: Path) -> None:
    check_free_space(dest.parent, src.stat().st_size)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


# ----- validation ---------------------------------------------------------------------------------------


def _validate(path: Path) -> ModelKind:
    """Check that `path` is a GGUF llama.cpp can be handed and say what kind of model it is."""
    if split_shard_index(path) > 0:
        return "plain"  # 2nd.. shard of a split model: only the first shard carries the metadata
    info = validate_model_file(path)
    if info.kind == "gemma4-assistant":
        return "mtp-assistant"
    return "nextn" if info.kind == "nextn" else "plain"
