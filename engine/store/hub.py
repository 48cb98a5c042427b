"""Talking to the Hugging Face Hub through `huggingface_hub`: endpoint and token, repo file metadata,
GGUF search, MTP drafter detection, and the translation of hub errors into Tandem's typed errors."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import httpx2
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import (  # type: ignore[attr-defined]  # public, not re-exported
    build_hf_headers,
    get_session,
    hf_raise_for_status,
)

from engine.errors import (
    DownloadError,
    GatedRepoAccessError,
    HubOfflineError,
    RemoteFileNotFoundError,
    RepoNotFoundError,
)

# llama.cpp's `-hf` convention: a repo's MTP drafter is an `mtp-*.gguf` at its root; some repos keep drafters
# in an `MTP/` folder instead.
_DRAFTER_DIR = "MTP"
_DRAFTER_PREFIX = "mtp-"
SEARCH_TIMEOUT_S = 15.0
DEFAULT_QUANT = "Q4_K_M"  # what llama.cpp's `-hf repo` picks when no tag is given
_SPLIT_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file of a repo at an exact commit, with what the hub says its content is."""

    repo: str
    filename: str
    revision: str  # commit hash
    size: int
    sha256: str | None  # LFS files (all real GGUFs)
    git_oid: str | None  # files stored directly in git

    @property
    def version(self) -> str:
        """Identifies the exact content: a partial download is only resumed for the same version."""
        return self.sha256 or self.git_oid or self.revision


@dataclass(frozen=True, slots=True)
class RepoHit:
    repo: str
    downloads: int
    likes: int
    gguf_files: tuple[str, ...]  # every .gguf in the repo, drafters included
    has_mtp_drafter: bool
    gated: bool
    drafter_files: tuple[str, ...] = ()


def is_mtp_drafter(filename: str) -> bool:
    path = PurePosixPath(filename)
    if path.suffix.lower() != ".gguf":
        return False
    at_root = len(path.parts) == 1 and path.name.lower().startswith(_DRAFTER_PREFIX)
    return at_root or (len(path.parts) == 2 and path.parts[0] == _DRAFTER_DIR)


def drafter_files(filenames: Iterable[str]) -> tuple[str, ...]:
    return tuple(f for f in filenames if is_mtp_drafter(f))


def model_files(filenames: Iterable[str]) -> tuple[str, ...]:
    """GGUF files that are models to chat with (not drafters, not the 2nd.. shards of a split model)."""
    out = []
    for f in filenames:
        shard = _SPLIT_SHARD.search(f)
        if f.lower().endswith(".gguf") and not is_mtp_drafter(f) and (shard is None or shard[1] == "00001"):
            out.append(f)
    return tuple(out)


def split_shards(filenames: Iterable[str], first: str) -> tuple[str, ...]:
    """All shards of a split GGUF (`x-00001-of-00003.gguf` ...) in order, given the first one; llama.cpp
    loads the first and needs the others beside it. A file that is not split gives just itself."""
    match = _SPLIT_SHARD.search(first)
    if match is None:
        return (first,)
    stem, count = first[: match.start()], match[2]
    pattern = re.compile(rf"{re.escape(stem)}-\d{{5}}-of-{count}\.gguf", re.IGNORECASE)
    return tuple(sorted(f for f in filenames if pattern.fullmatch(f)))


def choose_gguf(repo: str, filenames: Iterable[str], spec: str | None) -> str:
    """Which file `tandem models pull REPO[:SPEC]` means. SPEC is a file name or, as with llama.cpp's
    `-hf repo:TAG`, a quantisation tag (Q4_K_M, Q8_0, ...). Without SPEC: the only model file, else Q4_K_M."""
    names = tuple(filenames)
    candidates = model_files(names)
    if spec is not None and spec in names:
        return spec
    tag = (spec or DEFAULT_QUANT).lower()
    if spec is None and len(candidates) == 1:
        return candidates[0]
    tagged = [f for f in candidates if re.search(rf"[-._]{re.escape(tag)}[-._]", f.lower())]
    if len(tagged) == 1:
        return tagged[0]
    wanted = f"file or tag {spec!r}" if spec else f"a single GGUF (and no {DEFAULT_QUANT} file)"
    if len(tagged) > 1:
        raise DownloadError(f"repo {repo}: several files match {wanted}: {', '.join(tagged)}; name one")
    raise RemoteFileNotFoundError(repo, spec or wanted, candidates)


def hub_endpoint() -> str:
    """HF_ENDPOINT read now (huggingface_hub reads it once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def resolve_token(token: str | None) -> str | None:
    """An explicit token, else the one huggingface_hub would use (HF_TOKEN, then `hf auth login`'s file)."""
    return token or get_token()


def offline_mode() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return constants.HF_HUB_OFFLINE or value.strip().lower() in ("1", "true", "yes", "on")


def hf_cache_dir() -> str:
    """The Hugging Face cache as huggingface_hub would find it, with the environment read now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


@contextlib.contextmanager
def hub_errors(
    repo: str | None, filename: str | None = None, *, has_token: bool, endpoint: str, during: str = ""
) -> Iterator[None]:
    """Translate huggingface_hub / httpx2 failures into typed, actionable Tandem errors."""
    try:
        yield
    except OfflineModeIsEnabled as exc:
        raise HubOfflineError(
            "HF_HUB_OFFLINE is set, so the hub cannot be contacted; unset it to download "
            "(models already in the store still work)"
        ) from exc
    except GatedRepoError as exc:
        raise GatedRepoAccessError(repo or "?", has_token) from exc
    except RevisionNotFoundError as exc:
        raise DownloadError(f"repo {repo} has no such revision ({exc.server_message or exc})") from exc
    except RemoteEntryNotFoundError as exc:
        raise RemoteFileNotFoundError(repo or "?", filename or "?") from exc
    except RepositoryNotFoundError as exc:
        raise RepoNotFoundError(repo or "?") from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise DownloadError(f"the hub answered HTTP {status} {during}: {exc.server_message or exc}") from exc
    except (httpx2.TransportError, httpx2.TooManyRedirects) as exc:
        where = f" {during}" if during else ""
        problem = f"cannot reach the hub at {endpoint}{where} ({type(exc).__name__}: {exc})"
        raise HubOfflineError(
            f"{problem}; check the network connection and proxy, then run the same command again (partial "
            "downloads resume)",
            gui=f"Tandem {problem}. Check the network connection and proxy, then try again (a partial "
            "download resumes).",
        ) from exc


def repo_files(
    repo: str, *, revision: str = "main", token: str | None = None, endpoint: str | None = None
) -> tuple[tuple[RemoteFile, ...], bool]:
    """Every file of `repo` at `revision` with size and hashes, and whether the repo is gated."""
    endpoint = endpoint or hub_endpoint()
    token = resolve_token(token)
    api = HfApi(endpoint=endpoint, token=token or False)
    with hub_errors(repo, has_token=token is not None, endpoint=endpoint, during="reading repo info"):
        info = api.model_info(repo, revision=revision, files_metadata=True)
    commit = info.sha or revision
    files = []
    for sib in info.siblings or ():
        lfs = sib.lfs
        size = lfs.size if lfs is not None else sib.size
        files.append(
            RemoteFile(
                repo=repo,
                filename=sib.rfilename,
                revision=commit,
                size=size if size is not None else 0,
                sha256=lfs.sha256 if lfs is not None else None,
                git_oid=sib.blob_id,
            )
        )
    return tuple(files), bool(info.gated)


def remote_file(
    repo: str, filename: str, *, revision: str = "main", token: str | None = None, endpoint: str | None = None
) -> RemoteFile:
    files, _ = repo_files(repo, revision=revision, token=token, endpoint=endpoint)
    for f in files:
        if f.filename == filename:
            return f
    raise RemoteFileNotFoundError(repo, filename, model_files(f.filename for f in files))


def search(
    query: str, *, limit: int = 20, token: str | None = None, endpoint: str | None = None
) -> list[RepoHit]:
    """GGUF repos on the hub matching `query`, most downloaded first, with their drafters marked."""
    endpoint = endpoint or hub_endpoint()
    token = resolve_token(token)
    # The request HfApi.list_models(search=, filter="gguf", expand=...) sends, made once: list_models retries
    # a refused connection five times with backoff (23 s), far too long to tell a search box it is offline.
    params: dict[str, str | int | list[str]] = {
        "search": query,
        "filter": "gguf",
        "sort": "downloads",
        "limit": limit,
        "expand": ["downloads", "likes", "gated", "siblings"],
    }
    with hub_errors(None, has_token=token is not None, endpoint=endpoint, during="searching"):
        response = get_session().get(
            f"{endpoint}/api/models",
            params=params,
            headers=build_hf_headers(token=token or False),
            timeout=SEARCH_TIMEOUT_S,
        )
        hf_raise_for_status(response)
        items = response.json()
    hits = []
    for item in items:
        names = tuple(str(s["rfilename"]) for s in item.get("siblings") or ())
        ggufs = tuple(n for n in names if n.lower().endswith(".gguf"))
        drafters = drafter_files(ggufs)
        hits.append(
            RepoHit(
                repo=str(item["id"]),
                downloads=int(item.get("downloads") or 0),
                likes=int(item.get("likes") or 0),
                gguf_files=ggufs,
                has_mtp_drafter=bool(drafters),
                gated=bool(item.get("gated")),
                drafter_files=drafters,
            )
        )
    return hits
