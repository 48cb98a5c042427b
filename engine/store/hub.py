"""Talking to the Hugging Face Hub through `huggingface_hub`: endpoint and token, a repository's file listing
(recursive tree at one commit, with sizes and sha256), GGUF search, the MTP drafter llama.cpp's `-hf` would
pair with a file (engine.store.gguf_select), and the translation of hub errors into Tandem's typed errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx2
from huggingface_hub import HfApi, RepoFile, constants, get_token
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
from engine.store.gguf_select import (
    DEFAULT_TAGS,
    MTP_KEYWORD,
    drafter_files,
    find_best_model,
    find_best_sibling,
    is_drafter_file,
    model_files,
    split_files,
)

__all__ = ["drafter_files", "model_files"]  # re-exported for callers that list a repo's files

SEARCH_TIMEOUT_S = 15.0
MAX_LISTED_FILES = 20_000  # a listing is paged by the hub; stop following pages past this many files
DEFAULT_QUANT = DEFAULT_TAGS[0]  # what llama.cpp's `-hf repo` tries first when no tag is given


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
class RepoListing:
    """Every file of a repository at one commit, as the hub's recursive tree listing gives them."""

    repo: str
    revision: str  # the commit the listing was taken at
    files: tuple[RemoteFile, ...]
    gated: bool = False

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.filename for f in self.files)

    def file(self, path: str) -> RemoteFile | None:
        return next((f for f in self.files if f.filename == path), None)

    def size_of(self, paths: Iterable[str]) -> int:
        by_name = {f.filename: f.size for f in self.files}
        return sum(by_name.get(p, 0) for p in paths)

    def best_drafter(self, model: str | None, tag: str | None = None) -> str | None:
        """The MTP drafter llama.cpp's `-hf` would pair with `model` (find_best_sibling); with no model, the
        one it would pair with the repo's default file."""
        target = model or find_best_model(model_files(self.paths), None)
        return find_best_sibling(self.paths, target or "x.gguf", MTP_KEYWORD, tag)


@dataclass(frozen=True, slots=True)
class RepoHit:
    repo: str
    downloads: int
    likes: int
    gguf_files: tuple[str, ...]  # every .gguf in the repo, drafters included
    has_mtp_drafter: bool  # llama.cpp's -hf would find a drafter for the repo's default model
    gated: bool
    drafter_files: tuple[str, ...] = ()  # every drafter-looking file (mtp-*, MTP/)
    drafter: str | None = None  # the one find_best_sibling picks for the default model


def is_mtp_drafter(filename: str) -> bool:
    return is_drafter_file(filename)


def split_shards(filenames: Iterable[str], first: str) -> tuple[str, ...]:
    """All shards of a split GGUF (`x-00001-of-00003.gguf` ...) in order, given the first one; llama.cpp
    loads the first and needs the others beside it. A file that is not split gives just itself."""
    return split_files(filenames, first)


def choose_gguf(repo: str, filenames: Iterable[str], spec: str | None) -> str:
    """Which file `tandem models pull REPO[:SPEC]` means. SPEC is a file name or, as with llama.cpp's
    `-hf repo:TAG`, a quantisation tag (Q4_K_M, Q8_0, UD-Q4_K_XL ...) picked by llama.cpp's own rule
    (find_best_model); without SPEC: Q4_K_M, else Q8_0, else the first model file."""
    names = tuple(filenames)
    if spec is not None and spec in names:
        return spec
    # model_files, not every name: llama.cpp's rule alone would take an assistant kept in MTP/ for a model
    found = find_best_model(model_files(names), spec)
    if found is not None:
        return found
    wanted = f"file or tag {spec!r}" if spec else "a GGUF model file"
    raise RemoteFileNotFoundError(repo, wanted, model_files(names))


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


def list_repo(
    repo: str, *, revision: str = "main", token: str | None = None, endpoint: str | None = None
) -> RepoListing:
    """The repository's files at `revision`, as llama.cpp's `-hf` reads them (`common/hf-cache.cpp`
    `get_repo_files`): the commit the revision points to, then the recursive tree listing at that commit,
    whose `lfs.oid` is each file's sha256 and `size` its bytes (`expand` is not needed for either, and
    would cut the pages from 1000 entries to 50)."""
    endpoint = endpoint or hub_endpoint()
    token = resolve_token(token)
    api = HfApi(endpoint=endpoint, token=token or False)
    with hub_errors(repo, has_token=token is not None, endpoint=endpoint, during="reading repo info"):
        info = api.model_info(repo, revision=revision)
        commit = info.sha or revision
        files: list[RemoteFile] = []
        for entry in api.list_repo_tree(repo, revision=commit, recursive=True):
            if not isinstance(entry, RepoFile):
                continue  # folders
            if len(files) >= MAX_LISTED_FILES:
                raise DownloadError(f"repo {repo} lists more than {MAX_LISTED_FILES} files; name the file")
            lfs = entry.lfs
            files.append(
                RemoteFile(
                    repo=repo,
                    filename=entry.path,
                    revision=commit,
                    size=int(lfs.size if lfs is not None else entry.size),
                    sha256=lfs.sha256 if lfs is not None else None,
                    git_oid=entry.blob_id,
                )
            )
    return RepoListing(repo, commit, tuple(files), bool(info.gated))


def repo_files(
    repo: str, *, revision: str = "main", token: str | None = None, endpoint: str | None = None
) -> tuple[tuple[RemoteFile, ...], bool]:
    """Every file of `repo` at `revision` with size and hashes, and whether the repo is gated."""
    listing = list_repo(repo, revision=revision, token=token, endpoint=endpoint)
    return listing.files, listing.gated


def remote_file(
    repo: str, filename: str, *, revision: str = "main", token: str | None = None, endpoint: str | None = None
) -> RemoteFile:
    listing = list_repo(repo, revision=revision, token=token, endpoint=endpoint)
    found = listing.file(filename)
    if found is None:
        raise RemoteFileNotFoundError(repo, filename, model_files(listing.paths))
    return found


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
        best = find_best_model(model_files(ggufs), None)
        drafter = find_best_sibling(ggufs, best, MTP_KEYWORD) if best else None
        hits.append(
            RepoHit(
                repo=str(item["id"]),
                downloads=int(item.get("downloads") or 0),
                likes=int(item.get("likes") or 0),
                gguf_files=ggufs,
                has_mtp_drafter=drafter is not None,
                gated=bool(item.get("gated")),
                drafter_files=drafters,
                drafter=drafter,
            )
        )
    return hits
