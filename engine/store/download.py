"""Downloading model files from the Hugging Face Hub into the store.

Everything on the wire goes through `huggingface_hub`: the repository's tree listing at its current commit
(engine.store.hub.list_repo, as llama.cpp's `-hf` reads it) for the file's size and LFS sha256,
`get_hf_file_metadata` for the HEAD of `/resolve` (redirect to the CDN, auth), and `file_download.http_get`
for the bytes (Range resume, retries on a dropped connection). `hf_hub_download` itself is not used:
since huggingface_hub 1.x it writes every attempt to a process-unique temp file and deletes it on failure,
so a download killed halfway would start again from zero. Here the partial file has a stable name keyed by
the file's sha256 and the next call resumes it with a Range request.

The order of operations: store hit -> Hugging Face cache hit (link/copy, no download) -> free-disk check ->
transfer into downloads/ -> sha256 check -> GGUF validation -> atomic placement under models/.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast
from urllib.parse import urlparse

from filelock import FileLock, Timeout
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # public, not re-exported

from engine.config import CancelToken
from engine.errors import (
    ChecksumMismatchError,
    DiskFullError,
    DownloadBusyError,
    DownloadCancelledError,
    DownloadError,
    HubOfflineError,
    TandemError,
)
from engine.paths import data_dir
from engine.store.hub import (
    RemoteFile,
    RepoHit,
    hf_cache_dir,
    hub_endpoint,
    hub_errors,
    offline_mode,
    remote_file,
    resolve_token,
    search,
)
from engine.store.model_store import (
    ModelEntry,
    ModelStore,
    check_free_space,
    sha256_file,
    storage_error,
    writing,
)

__all__ = ["CHUNK_BYTES", "DownloadProgress", "RepoHit", "download", "search"]

# huggingface_hub streams in 10 MiB chunks; progress and cancel are observed once per chunk, so a smaller
# chunk keeps both responsive on slow links (10 MiB at 1 MB/s would be 10 s without a word).
CHUNK_BYTES = 1024 * 1024
PROGRESS_INTERVAL_S = 0.25
_RATE_WINDOW_S = 5.0
_SHA256 = re.compile(r"[0-9a-f]{64}")

ProgressCallback = Callable[["DownloadProgress"], None]


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    file: str
    bytes_done: int  # includes bytes resumed from an earlier attempt
    bytes_total: int
    rate_bps: float  # over the last few seconds of this attempt
    eta_s: float | None  # None until a rate is known


def download(
    repo: str,
    filename: str,
    *,
    revision: str = "main",
    store: ModelStore | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    use_hf_cache: bool = True,
) -> Path:
    """Make `repo`/`filename` available in the store and return its path.

    Already stored -> returned at once, no network. In the Hugging Face cache at the same commit -> linked
    or copied. Otherwise downloaded, resuming any partial left by an earlier attempt (even one whose
    process was killed). Raises typed errors: HubOfflineError, RepoNotFoundError, RemoteFileNotFoundError,
    GatedRepoAccessError, InsufficientDiskError, DiskFullError, ChecksumMismatchError,
    DownloadCancelledError, DownloadBusyError, ModelFileError (not a usable GGUF)."""
    if store is None:
        with writing(data_dir(False), "create its data folder"):
            store = ModelStore()
    if not filename.lower().endswith(".gguf"):
        raise DownloadError(f"{filename} is not a .gguf file; Tandem stores GGUF models only")
    store.path_for(repo, filename)  # validates the repo id and file name before any network use
    existing = store.get(repo, filename)
    if existing is not None:
        return existing.path

    if offline_mode():
        entry = _adopt_from_hf_cache(store, repo, filename, revision, None) if use_hf_cache else None
        if entry is None:
            raise HubOfflineError(
                f"HF_HUB_OFFLINE is set and {repo}/{filename} is neither in the store nor in the Hugging "
                "Face cache; unset HF_HUB_OFFLINE to download it"
            )
        return entry.path

    endpoint = endpoint or hub_endpoint()
    token = resolve_token(token)
    remote = remote_file(repo, filename, revision=revision, token=token, endpoint=endpoint)
    if use_hf_cache:
        entry = _adopt_from_hf_cache(store, repo, filename, remote.revision, remote)
        if entry is not None:
            return entry.path
    return _download_to_store(store, remote, progress, cancel, token, endpoint).path


def _adopt_from_hf_cache(
    store: ModelStore, repo: str, filename: str, revision: str, remote: RemoteFile | None
) -> ModelEntry | None:
    """Reuse the Hugging Face cache's copy of the file at this revision instead of downloading it twice."""
    cached = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir(), revision=revision)
    if not isinstance(cached, str):
        return None
    path = Path(cached)
    blob = path.resolve()
    if remote is not None and blob.stat().st_size != remote.size:
        return None  # a different or damaged copy: download ours
    # The cache names LFS blobs by their sha256, so a matching name is a cheap, reliable check.
    digest = blob.name if _SHA256.fullmatch(blob.name) else sha256_file(blob)
    if remote is not None and remote.sha256 is not None and digest != remote.sha256:
        return None
    snapshot = path.parents[len(Path(filename).parts) - 1]  # .../snapshots/<commit>/<filename>
    commit = remote.revision if remote is not None else snapshot.name
    return store.adopt(
        path, repo=repo, filename=filename, sha256=digest, source="hf-cache", revision=commit, move=False
    )


def _download_to_store(
    store: ModelStore,
    remote: RemoteFile,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
    token: str | None,
    endpoint: str,
) -> ModelEntry:
    partial = store.partial_path(remote.repo, remote.filename, remote.version)
    with writing(partial.parent, "create the download's folder"):
        partial.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{partial}.lock")
    try:
        with writing(partial.parent, "create the download's lock file"):
            lock.acquire(timeout=0)
    except Timeout as exc:
        raise DownloadBusyError(
            f"{remote.repo}/{remote.filename} is already being downloaded (by this or another Tandem "
            "process); wait for that download to finish"
        ) from exc
    except TandemError:
        with contextlib.suppress(OSError):
            partial.parent.rmdir()  # only when empty: nothing half-made stays behind
        raise
    try:
        done = partial.stat().st_size if partial.exists() else 0
        if done > remote.size:  # not a prefix of this version: start over
            partial.unlink()
            done = 0
        check_free_space(partial.parent, remote.size - done)
        digest = _hash_prefix(partial, done)
        if done < remote.size:
            _transfer(remote, partial, done, digest, progress, cancel, token, endpoint)
        _verify(remote, partial, digest)
        return store.adopt(
            partial,
            repo=remote.repo,
            filename=remote.filename,
            sha256=digest.hexdigest(),
            source="hub",
            revision=remote.revision,
            move=True,
        )
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            os.unlink(lock.lock_file)
            partial.parent.rmdir()  # only when empty: other partials of the repo stay


def _hash_prefix(partial: Path, done: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    if done:
        with open(partial, "rb") as f:
            while chunk := f.read(8 * 1024 * 1024):
                digest.update(chunk)
    return digest


def _transfer(
    remote: RemoteFile,
    partial: Path,
    done: int,
    digest: hashlib._Hash,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
    token: str | None,
    endpoint: str,
) -> None:
    url = hf_hub_url(remote.repo, remote.filename, revision=remote.revision, endpoint=endpoint)

    def errors() -> contextlib.AbstractContextManager[None]:
        return hub_errors(
            remote.repo,
            remote.filename,
            has_token=token is not None,
            endpoint=endpoint,
            during=f"while downloading {remote.filename}",
        )

    with errors():
        meta = get_hf_file_metadata(url, token=token or False, endpoint=endpoint)
    headers = build_hf_headers(token=token or False)
    if _origin(meta.location) != _origin(url):
        headers.pop("authorization", None)  # a signed CDN URL: the hub token must not leave the hub
    hf_constants.DOWNLOAD_CHUNK_SIZE = CHUNK_BYTES  # read by http_get at call time; no per-call argument
    meter = _Meter(remote.filename, remote.size, done, progress)
    try:
        with open(partial, "ab", buffering=0) as raw, errors():
            writer = _PartWriter(raw, partial, digest, meter, cancel, remote)
            http_get(
                meta.location,
                cast(BinaryIO, writer),
                resume_size=done,
                headers=headers,
                expected_size=remote.size,
                displayed_filename=remote.filename,
                tqdm_class=_NoBar,  # progress goes through _Meter instead
            )
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise DiskFullError(partial, exc.strerror or str(exc)) from exc
        if exc.errno is None:  # http_get's "Consistency check failed": the stream ended early
            raise DownloadError(
                f"{remote.filename}: the transfer ended early ({exc}); run the same command again to resume",
                gui=f"{remote.filename}: the transfer ended early ({exc}). Press Resume to go on.",
            ) from exc
        raise storage_error(partial.parent, exc, f"write {partial.name}") from exc
    meter.finish()


def _verify(remote: RemoteFile, partial: Path, digest: hashlib._Hash) -> None:
    """Compare with the hub's LFS sha256 (or the git blob id of a file kept in git); a mismatch deletes
    the file."""
    actual = digest.hexdigest()
    if remote.sha256 is not None:
        expected = remote.sha256
    elif remote.git_oid is not None:
        expected = remote.git_oid
        blob = hashlib.sha1(f"blob {partial.stat().st_size}\0".encode())
        blob.update(partial.read_bytes())
        actual = blob.hexdigest()
    else:
        return
    if actual != expected:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(remote.repo, remote.filename, expected, actual)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlparse(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _write_chunk(raw: BinaryIO, data: memoryview) -> int:
    """One write syscall (a seam for tests that simulate a full disk)."""
    return raw.write(data)


class _PartWriter:
    """What http_get writes into: appends to the partial file, hashes as it goes, reports progress and
    honours cancel between chunks. Only the calls http_get makes are implemented."""

    def __init__(
        self,
        raw: BinaryIO,
        path: Path,
        digest: hashlib._Hash,
        meter: _Meter,
        cancel: CancelToken | None,
        remote: RemoteFile,
    ) -> None:
        self._raw, self._path, self._digest = raw, path, digest
        self._meter, self._cancel, self._remote = meter, cancel, remote

    def write(self, data: bytes) -> int:
        if self._cancel is not None and self._cancel.cancelled:
            raise DownloadCancelledError(
                f"download of {self._remote.repo}/{self._remote.filename} cancelled at "
                f"{self._meter.done} of {self._remote.size} bytes; the next download of it resumes there"
            )
        view = memoryview(data)
        while view:
            view = view[_write_chunk(self._raw, view) :]
        self._digest.update(data)
        self._meter.advance(len(data))
        return len(data)

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        # http_get truncates when a server ignored our Range and resent the whole file.
        end = self._raw.truncate(size)
        self._digest = _hash_prefix(self._path, end)
        self._meter.restart(end)
        return end


class _Meter:
    """Turns byte counts into throttled DownloadProgress reports (a few per second, plus first and last)."""

    def __init__(self, file: str, total: int, start: int, callback: ProgressCallback | None) -> None:
        self.file, self.total, self.done = file, total, start
        self._callback = callback
        self._last_emit = -1.0
        self._last_emitted_done = -1
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic(), start)])
        self._emit(time.monotonic())

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[1][0] > _RATE_WINDOW_S:
            self._samples.popleft()
        if now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._emit(now)

    def restart(self, done: int) -> None:
        self.done = done
        self._samples = deque([(time.monotonic(), done)])

    def finish(self) -> None:
        if self._last_emitted_done != self.done:  # the last chunk may already have been reported
            self._emit(time.monotonic())

    def _emit(self, now: float) -> None:
        if self._callback is None:
            return
        self._last_emit, self._last_emitted_done = now, self.done
        t0, b0 = self._samples[0]
        rate = (self.done - b0) / (now - t0) if now > t0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        self._callback(DownloadProgress(self.file, self.done, self.total, rate, eta))


class _NoBar:
    """Stands in for tqdm inside http_get: progress is reported by _Meter, not printed by huggingface_hub."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def update(self, n: int | float | None = 1) -> None:
        return None
