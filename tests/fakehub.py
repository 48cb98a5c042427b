"""A fake Hugging Face Hub for tests, on 127.0.0.1 with ephemeral ports.

It speaks what huggingface_hub 2.4's client expects from the real hub (read from its source):
- `GET /api/models/{repo}[/revision/{rev}]` -> model info JSON; `?blobs=true` adds size, blobId and
  `lfs: {size, sha256, pointerSize}` to each sibling. Public for gated repos, as on the real hub.
- `GET /api/models/{repo}/tree/{rev}[/{folder}]?recursive=true` -> the tree listing llama.cpp's `-hf` and
  `HfApi.list_repo_tree` read: `{type, path, oid, size, lfs: {oid, size, pointerSize}}` per file (and a
  `directory` entry per folder), paged with a `Link: <...>; rel="next"` header (`tree_page_size`).
- `GET /api/models?search=&filter=gguf&expand=...&limit=` -> search results (expanded fields only).
- `HEAD|GET /{repo}/resolve/{rev}/{file}` -> for LFS files a 302 to the "CDN" (a second server, so a different
  origin, like cdn-lfs / cas-bridge) with `X-Repo-Commit`, `X-Linked-Etag` (the sha256), `X-Linked-Size`,
  `ETag`; for files kept in git a 200 with `ETag` = git blob id.
- Errors as the hub sends them: 401 + `X-Error-Code: RepoNotFound` (missing repo), 401/403 + `GatedRepo`,
  404 + `EntryNotFound` (with `X-Repo-Commit`), 404 + `RevisionNotFound`.
- The CDN honours `Range: bytes=N-` (206 + Content-Range; 416 past the end).

Test controls: `cut_after[file] = n` closes the next CDN transfer of `file` after n body bytes (one-shot);
`slow = (piece, delay)` sends CDN bodies in pieces with a pause; `requests` logs every request. The server
stops when the context exits, or by itself after `lifetime_s`; every socket has a timeout.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np
import pytest

_POINTER_SIZE = 134


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False
    downloads: int = 0
    likes: int = 0
    lfs: bool = True
    commit: str = field(default_factory=lambda: secrets.token_hex(20))
    declared_sha256: dict[str, str] = field(default_factory=dict)  # lie about a file's sha256
    declared_size: dict[str, int] = field(default_factory=dict)  # lie about a file's size (listings only)

    def sha256(self, name: str) -> str:
        return self.declared_sha256.get(name) or hashlib.sha256(self.files[name]).hexdigest()

    def size(self, name: str) -> int:
        return self.declared_size.get(name, len(self.files[name]))

    def git_oid(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int


class FakeHub:
    def __init__(
        self,
        repos: Iterable[FakeRepo],
        *,
        grants: dict[str, set[str]] | None = None,
        lifetime_s: float = 120.0,
    ) -> None:
        self.repos = {r.repo_id: r for r in repos}
        # token -> gated repos it may read; any token in here is a valid login
        self.grants = grants if grants is not None else {}
        self.cut_after: dict[str, int] = {}
        self.tree_page_size = 1000  # the hub's page size for tree listings without expand
        self.slow: tuple[int, float] | None = None
        self._log: list[Request] = []
        self._lock = threading.Lock()
        self._hub = _Server(("127.0.0.1", 0), self, "hub")
        self._cdn = _Server(("127.0.0.1", 0), self, "cdn")
        self.endpoint = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn_endpoint = f"http://127.0.0.1:{self._cdn.server_address[1]}"
        servers = (self._hub, self._cdn)
        self._threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True) for s in servers]
        self._watchdog = threading.Timer(lifetime_s, self.stop)
        self._watchdog.daemon = True
        self._stopped = False

    def __enter__(self) -> FakeHub:
        for t in self._threads:
            t.start()
        self._watchdog.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._watchdog.cancel()
        for s in (self._hub, self._cdn):
            s.shutdown()
            s.server_close()

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def file_gets(self) -> list[Request]:
        """CDN (or in-git) body transfers."""
        return [
            r for r in self.requests if r.method == "GET" and (r.server == "cdn" or "/resolve/" in r.path)
        ]

    def range_starts(self) -> list[int]:
        return [int(r.range.split("=")[1].split("-")[0]) for r in self.file_gets() if r.range]

    def record(self, req: Request) -> None:
        with self._lock:
            self._log.append(req)

    def blob(self, sha: str) -> tuple[FakeRepo, str] | None:
        for repo in self.repos.values():
            for name, data in repo.files.items():
                if hashlib.sha256(data).hexdigest() == sha:
                    return repo, name
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: FakeHub, role: str) -> None:
        super().__init__(address, _Handler)
        self.hub = hub
        self.role = role


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15  # a stuck client cannot hold a server thread forever
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    # ----- routing ------------------------------------------------------------------------------------

    def _route(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if self.server.role == "cdn":
            if len(parts) == 2 and parts[0] == "blobs":
                return self._cdn_blob(parts[1])
            return self._error(404, None, "Not found")
        if parts[:2] == ["api", "models"] and len(parts) == 2:
            return self._search(query)
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            return self._tree("/".join(parts[2:4]), parts[5], "/".join(parts[6:]), query)
        if parts[:2] == ["api", "models"] and len(parts) in (4, 6):
            repo_id = "/".join(parts[2:4])
            revision = parts[5] if len(parts) == 6 and parts[4] == "revision" else "main"
            return self._model_info(repo_id, revision, query.get("blobs", [""])[0].lower() == "true")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        return self._error(404, None, "Not found")

    # ----- hub API ------------------------------------------------------------------------------------

    def _search(self, query: dict[str, list[str]]) -> None:
        text = query.get("search", [""])[0].lower()
        expand = set(query.get("expand", []))
        want_gguf = "gguf" in query.get("filter", [])
        hits = [
            r
            for r in self.server.hub.repos.values()
            if text in r.repo_id.lower() and (not want_gguf or any(f.endswith(".gguf") for f in r.files))
        ]
        hits.sort(key=lambda r: -r.downloads)
        limit = int(query.get("limit", ["1000"])[0])
        out = []
        for r in hits[:limit]:
            item: dict[str, object] = {"id": r.repo_id, "_id": r.commit[:24]}
            if "downloads" in expand:
                item["downloads"] = r.downloads
            if "likes" in expand:
                item["likes"] = r.likes
            if "gated" in expand:
                item["gated"] = "manual" if r.gated else False
            if "siblings" in expand:
                item["siblings"] = [{"rfilename": f} for f in r.files]
            out.append(item)
        self._json(200, out)

    def _model_info(self, repo_id: str, revision: str, blobs: bool) -> None:
        repo = self.server.hub.repos.get(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, repo)
        siblings = []
        for name, data in repo.files.items():
            sib: dict[str, object] = {"rfilename": name}
            if blobs:
                sib["size"] = len(data)
                sib["blobId"] = repo.git_oid(name)
                if repo.lfs:
                    sib["lfs"] = {
                        "size": len(data),
                        "sha256": repo.sha256(name),
                        "pointerSize": _POINTER_SIZE,
                    }
            siblings.append(sib)
        self._json(
            200,
            {
                "_id": repo.commit[:24],
                "id": repo.repo_id,
                "sha": repo.commit,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "downloads": repo.downloads,
                "likes": repo.likes,
                "tags": ["gguf"],
                "library_name": "gguf",
                "siblings": siblings,
                "lastModified": "2026-01-01T00:00:00.000Z",
            },
        )

    def _tree(self, repo_id: str, revision: str, folder: str, query: dict[str, list[str]]) -> None:
        repo = self.server.hub.repos.get(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, repo)
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        prefix = f"{folder}/" if folder else ""
        entries: list[dict[str, object]] = []
        folders: set[str] = set()
        for name in repo.files:
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :].split("/")
            for depth in range(1, len(rest)):
                sub = prefix + "/".join(rest[:depth])
                if sub not in folders and (recursive or depth == 1):
                    folders.add(sub)
                    tree_id = secrets.token_hex(20)
                    entries.append({"type": "directory", "oid": tree_id, "size": 0, "path": sub})
            if len(rest) > 1 and not recursive:
                continue
            entry: dict[str, object] = {
                "type": "file",
                "oid": repo.git_oid(name),
                "size": repo.size(name) if repo.lfs else len(repo.files[name]),
                "path": name,
            }
            if repo.lfs:
                lfs = {"oid": repo.sha256(name), "size": repo.size(name), "pointerSize": _POINTER_SIZE}
                entry["lfs"] = lfs
            entries.append(entry)
        if folder and not entries:
            return self._error(404, "EntryNotFound", f"{folder} does not exist on {revision}", repo)
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + self.server.hub.tree_page_size]
        headers = {}
        if start + len(page) < len(entries):
            url = f"{self.server.hub.endpoint}{urlsplit(self.path).path}"
            rec = "true" if recursive else "false"
            headers["Link"] = f'<{url}?recursive={rec}&cursor={start + len(page)}>; rel="next"'
        self._json(200, page, headers)

    def _resolve(self, repo_id: str, revision: str, name: str) -> None:
        hub = self.server.hub
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if repo.gated:
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            if token not in hub.grants:
                msg = f"Access to model {repo_id} is restricted. You must be authenticated to access it."
                return self._error(401, "GatedRepo", msg)
            if repo_id not in hub.grants[token]:
                msg = f"Access to model {repo_id} is restricted and you are not in the authorized list."
                return self._error(403, "GatedRepo", msg)
        if revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, repo)
        if name not in repo.files:
            return self._error(404, "EntryNotFound", f'{name} does not exist on "{revision}"', repo)
        data = repo.files[name]
        headers = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
        if repo.lfs:
            actual = hashlib.sha256(data).hexdigest()
            signature = quote(secrets.token_hex(8))
            headers.update(
                {
                    "X-Linked-Etag": f'"{repo.sha256(name)}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'"{repo.git_oid(name)}"',
                    "Location": f"{hub.cdn_endpoint}/blobs/{actual}?X-Signature={signature}",
                }
            )
            return self._send(302, b"Found. Redirecting", headers, content_type="text/plain")
        headers["ETag"] = f'"{repo.git_oid(name)}"'
        self._body(data, name, headers)

    def _cdn_blob(self, sha: str) -> None:
        found = self.server.hub.blob(sha)
        if found is None:
            return self._error(404, None, "NoSuchKey")
        repo, name = found
        self._body(repo.files[name], name, {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"})

    # ----- responses ----------------------------------------------------------------------------------

    def _body(self, data: bytes, name: str, headers: dict[str, str]) -> None:
        """Serve `data` honouring Range, cuts and slowness."""
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                headers["Content-Range"] = f"bytes */{len(data)}"
                return self._send(416, b"", headers)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        self._head(status, len(body), headers, "application/octet-stream")
        if self.command == "HEAD":
            return
        hub = self.server.hub
        cut = hub.cut_after.pop(name, None) if self.command == "GET" else None
        limit = len(body) if cut is None else min(cut, len(body))
        piece, delay = hub.slow or (len(body) or 1, 0.0)
        try:
            for offset in range(0, limit, piece):
                self.wfile.write(body[offset : min(offset + piece, limit)])
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if cut is not None:
            self.close_connection = True  # the client sees fewer bytes than Content-Length

    def _head(self, status: int, length: int, headers: dict[str, str], content_type: str) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.server.hub.record(
            Request(
                server=self.server.role,
                method=self.command,
                path=self.path,
                range=self.headers.get("Range"),
                authorization=self.headers.get("Authorization"),
                status=status,
            )
        )

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], content_type: str = "text/plain"
    ) -> None:
        self._head(status, len(body), headers, content_type)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers or {}, "application/json")

    def _error(self, status: int, code: str | None, message: str, repo: FakeRepo | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if repo is not None:
            headers["X-Repo-Commit"] = repo.commit
        self._json(status, {"error": message}, headers)


def write_tiny_gguf(
    path: Path, *, arch: str = "llama", tensor_bytes: int = 64 * 1024, nextn_layers: int = 0
) -> bytes:
    """A small valid GGUF (metadata + one random F32 tensor); not loadable by llama.cpp, but it passes
    Tandem's metadata validation (architecture keys and a vocabulary)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    add_minimal_model_keys(writer)
    if nextn_layers:
        writer.add_uint32(f"{arch}.nextn_predict_layers", nextn_layers)
    rng = np.random.default_rng(len(arch) + tensor_bytes + nextn_layers)
    writer.add_tensor("token_embd.weight", rng.standard_normal(tensor_bytes // 4).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def add_minimal_model_keys(writer: Any) -> None:
    """The keys engine.gguf.metadata.validate_model_file requires of a language model."""
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_embedding_length(8)
    writer.add_head_count(1)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>", "a", "b"])
    writer.add_token_scores([0.0] * 5)
    writer.add_token_types([2, 3, 3, 1, 1])


def unused_port() -> int:
    """A loopback port nothing listens on (for 'hub unreachable' tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolate_hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real token, cache, endpoint or offline flag leaks in; Tandem's data dir is under tmp_path."""
    from huggingface_hub import constants

    for var in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
        "HF_OIDC_RESOURCE",
        "HF_HOME",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "tandem"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-hf-token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
