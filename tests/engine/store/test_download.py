"""Downloads against a local fake hub (tests/fakehub.py) that speaks the hub API huggingface_hub uses."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

import engine.store.download as dl
from engine.config import CancelToken
from engine.errors import (
    ChecksumMismatchError,
    DiskFullError,
    DownloadBusyError,
    DownloadCancelledError,
    GatedRepoAccessError,
    HubOfflineError,
    InsufficientDiskError,
    ModelFileError,
    RemoteFileNotFoundError,
    RepoNotFoundError,
    TandemError,
)
from engine.store.hub import choose_gguf, search, split_shards
from engine.store.model_store import ModelStore
from tests import REPO_ROOT
from tests.fakehub import FakeHub, FakeRepo, isolate_hf_env, unused_port, write_tiny_gguf

REPO = "acme/tiny-GGUF"
MODEL = "tiny-Q4_K_M.gguf"
GATED = "google/gemma-4-E2B-it-GGUF"


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("gguf")
    return {
        "model": write_tiny_gguf(d / "m.gguf", tensor_bytes=256 * 1024),
        "q8": write_tiny_gguf(d / "q8.gguf", tensor_bytes=96 * 1024),
        "assistant": write_tiny_gguf(d / "a.gguf", arch="gemma4-assistant", tensor_bytes=32 * 1024),
    }


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, blobs: dict[str, bytes]) -> Iterator[FakeHub]:
    isolate_hf_env(monkeypatch, tmp_path)
    repos = [
        FakeRepo(
            REPO,
            {MODEL: blobs["model"], "tiny-Q8_0.gguf": blobs["q8"], "mtp-tiny.gguf": blobs["assistant"]},
            downloads=50,
        ),
        FakeRepo(GATED, {"gemma-4-E2B-it-Q4_K_M.gguf": blobs["q8"]}, gated=True, downloads=900),
        FakeRepo("acme/corrupt-GGUF", {"c.gguf": blobs["q8"]}, declared_sha256={"c.gguf": "0" * 64}),
        FakeRepo("acme/in-git-GGUF", {"g.gguf": blobs["assistant"]}, lfs=False),
        FakeRepo("acme/garbage-GGUF", {"junk.gguf": b"GGUF" + bytes(5000)}),
        FakeRepo(
            "acme/drafter-folder-GGUF", {"m.gguf": blobs["q8"], "MTP/m-assistant.gguf": blobs["assistant"]}
        ),
        FakeRepo("acme/readme-only", {"README.md": b"hello"}),
    ]
    with FakeHub(repos, grants={"hf_good": {GATED}, "hf_no_licence": set()}) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        yield h


@pytest.fixture
def store(tmp_path: Path, hub: FakeHub) -> ModelStore:
    return ModelStore(tmp_path / "tandem")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_places_a_verified_file_with_progress(
    hub: FakeHub, store: ModelStore, blobs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "CHUNK_BYTES", 16 * 1024)
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL_S", 0.0)
    events: list[dl.DownloadProgress] = []
    path = dl.download(REPO, MODEL, store=store, progress=events.append)

    assert path == store.path_for(REPO, MODEL) and path.read_bytes() == blobs["model"]
    (entry,) = store.list()
    assert (entry.name, entry.source, entry.kind, entry.sha256) == (
        f"{REPO}/{MODEL}",
        "hub",
        "plain",
        _sha(blobs["model"]),
    )
    assert entry.revision == hub.repos[REPO].commit
    assert not list(store.downloads_dir.rglob("*.part"))  # nothing half-done left behind
    total = len(blobs["model"])
    assert [e.bytes_done for e in events] == sorted(set(e.bytes_done for e in events))  # rising, no repeats
    assert len(events) > 3 and events[0].bytes_done == 0 and events[-1].bytes_done == total
    assert all(e.bytes_total == total and e.file == MODEL for e in events)
    assert events[-1].eta_s == 0 and events[-1].rate_bps > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].bytes_done = 1  # type: ignore[misc]


def test_progress_is_throttled(hub: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "CHUNK_BYTES", 4096)  # 64+ chunks, a report each if unthrottled
    events: list[dl.DownloadProgress] = []
    start = time.monotonic()
    dl.download(REPO, MODEL, store=store, progress=events.append)
    elapsed = time.monotonic() - start
    assert 2 <= len(events) <= 3 + elapsed / dl.PROGRESS_INTERVAL_S


def test_stored_model_is_returned_without_network(hub: FakeHub, store: ModelStore) -> None:
    first = dl.download(REPO, MODEL, store=store)
    hub.clear_log()
    assert dl.download(REPO, MODEL, store=store) == first
    assert hub.requests == []


def test_dropped_connection_resumes_with_a_range_request(
    hub: FakeHub, store: ModelStore, blobs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "CHUNK_BYTES", 4096)
    hub.cut_after[MODEL] = 50_000  # the first transfer dies after 50 kB; huggingface_hub retries with Range
    path = dl.download(REPO, MODEL, store=store)
    assert path.read_bytes() == blobs["model"]
    starts = hub.range_starts()
    assert len(starts) == 1 and 0 < starts[0] <= 50_000


def test_resume_after_the_process_is_killed(
    hub: FakeHub, store: ModelStore, blobs: dict[str, bytes], tmp_path: Path
) -> None:
    hub.slow = (4096, 0.02)  # ~1.3 s for the file: time to kill the child mid-transfer
    partial = store.partial_path(REPO, MODEL, _sha(blobs["model"]))
    child_code = (
        "import sys, engine.store.download as d; d.CHUNK_BYTES = 4096; d.download(sys.argv[1], sys.argv[2])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_TOKEN")}
    env.update(PYTHONPATH=str(REPO_ROOT), HF_TOKEN_PATH=str(tmp_path / "no-hf-token"))
    child = subprocess.Popen(
        [sys.executable, "-c", child_code, REPO, MODEL], env=env, cwd=REPO_ROOT, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size >= 40_000):
            assert child.poll() is None, (
                f"child ended early: {child.stderr.read().decode() if child.stderr else ''}"
            )
            assert time.monotonic() < deadline, "child never started writing"
            time.sleep(0.01)
        child.kill()  # SIGKILL on POSIX: no cleanup code runs
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stderr:
            child.stderr.close()
    kept = partial.stat().st_size
    assert 0 < kept < len(blobs["model"])
    assert store.list() == [] and not store.path_for(REPO, MODEL).exists()  # a partial is never a model

    hub.slow = None
    hub.clear_log()
    events: list[dl.DownloadProgress] = []
    path = dl.download(REPO, MODEL, store=store, progress=events.append)
    assert path.read_bytes() == blobs["model"]
    assert hub.range_starts() == [kept]  # continued from the partial bytes, not from zero
    assert events[0].bytes_done == kept
    assert not partial.exists()


def test_wrong_checksum_is_rejected_and_nothing_placed(hub: FakeHub, store: ModelStore) -> None:
    with pytest.raises(ChecksumMismatchError, match="checksum mismatch") as err:
        dl.download("acme/corrupt-GGUF", "c.gguf", store=store)
    assert err.value.expected == "0" * 64
    assert store.list() == [] and not store.path_for("acme/corrupt-GGUF", "c.gguf").exists()
    assert not list(store.downloads_dir.rglob("*.part"))  # a corrupt file is not kept for resuming


def test_file_kept_in_git_is_checked_against_its_blob_id(
    hub: FakeHub, store: ModelStore, blobs: dict[str, bytes]
) -> None:
    path = dl.download("acme/in-git-GGUF", "g.gguf", store=store)
    assert path.read_bytes() == blobs["assistant"]
    assert store.get("acme/in-git-GGUF", "g.gguf").kind == "mtp-assistant"  # type: ignore[union-attr]


def test_checksum_ok_but_not_a_gguf_is_refused(hub: FakeHub, store: ModelStore) -> None:
    with pytest.raises(ModelFileError):
        dl.download("acme/garbage-GGUF", "junk.gguf", store=store)
    assert store.list() == [] and not list(store.downloads_dir.rglob("*.part"))


def test_gated_repo_without_token_says_how_to_log_in(hub: FakeHub, store: ModelStore) -> None:
    with pytest.raises(GatedRepoAccessError) as err:
        dl.download(GATED, "gemma-4-E2B-it-Q4_K_M.gguf", store=store)
    assert not err.value.has_token
    assert "hf auth login" in str(err.value) and "HF_TOKEN" in str(err.value) and GATED in str(err.value)


def test_gated_repo_with_token_but_no_licence(
    hub: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_no_licence")
    with pytest.raises(GatedRepoAccessError, match="accept its licence") as err:
        dl.download(GATED, "gemma-4-E2B-it-Q4_K_M.gguf", store=store)
    assert err.value.has_token


def test_gated_repo_with_token_read_like_huggingface_hub(
    hub: FakeHub, store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    token_file = tmp_path / "token"
    token_file.write_text("hf_good\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))  # where `hf auth login` saves it
    path = dl.download(GATED, "gemma-4-E2B-it-Q4_K_M.gguf", store=store)
    assert path.is_file()
    resolve = [r for r in hub.requests if "/resolve/" in r.path]
    assert resolve and all(r.authorization == "Bearer hf_good" for r in resolve)
    assert all(r.authorization is None for r in hub.file_gets())  # the token never goes to the CDN


def test_missing_repo_and_missing_file(hub: FakeHub, store: ModelStore) -> None:
    with pytest.raises(RepoNotFoundError, match="acme/nope"):
        dl.download("acme/nope", "x.gguf", store=store)
    with pytest.raises(RemoteFileNotFoundError) as err:
        dl.download(REPO, "tiny-Q2_K.gguf", store=store)
    assert MODEL in err.value.available and "mtp-tiny.gguf" not in err.value.available


def test_unreachable_hub(hub: FakeHub, store: ModelStore) -> None:
    with pytest.raises(HubOfflineError, match="cannot reach the hub"):
        dl.download(REPO, MODEL, store=store, endpoint=f"http://127.0.0.1:{unused_port()}")
    with pytest.raises(HubOfflineError, match="cannot reach the hub"):
        search("tiny", endpoint=f"http://127.0.0.1:{unused_port()}")


def test_offline_mode_uses_the_hf_cache_or_says_why_not(
    hub: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch, blobs: dict[str, bytes]
) -> None:
    from huggingface_hub import hf_hub_download

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE"):
        dl.download(REPO, MODEL, store=store)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hf_hub_download(REPO, "tiny-Q8_0.gguf", endpoint=hub.endpoint, cache_dir=os.environ["HF_HUB_CACHE"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.clear_log()
    path = dl.download(REPO, "tiny-Q8_0.gguf", store=store)
    assert path.read_bytes() == blobs["q8"] and hub.requests == []
    assert store.get(REPO, "tiny-Q8_0.gguf").source == "hf-cache"  # type: ignore[union-attr]

    drafter_repo, drafter = "acme/drafter-folder-GGUF", "MTP/m-assistant.gguf"  # a file in a subfolder
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hf_hub_download(drafter_repo, drafter, endpoint=hub.endpoint, cache_dir=os.environ["HF_HUB_CACHE"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dl.download(drafter_repo, drafter, store=store)
    entry = store.get(drafter_repo, drafter)
    assert entry is not None and entry.revision == hub.repos[drafter_repo].commit
    assert entry.kind == "mtp-assistant" and entry.sha256 == _sha(blobs["assistant"])


def test_reuses_the_hf_cache_instead_of_downloading(
    hub: FakeHub, store: ModelStore, blobs: dict[str, bytes]
) -> None:
    from huggingface_hub import hf_hub_download

    # The real client fills the cache from the fake hub (which also checks that the fake speaks its protocol).
    cached = Path(hf_hub_download(REPO, MODEL, endpoint=hub.endpoint, cache_dir=os.environ["HF_HUB_CACHE"]))
    hub.clear_log()
    path = dl.download(REPO, MODEL, store=store)
    assert path.read_bytes() == blobs["model"]
    assert hub.file_gets() == []  # metadata only, no bytes
    entry = store.get(REPO, MODEL)
    assert entry is not None and entry.source == "hf-cache" and entry.sha256 == _sha(blobs["model"])
    assert os.path.samefile(path, cached.resolve())  # hard link: no second copy on disk
    assert store.remove(entry.name) == 0  # the cache still holds the bytes
    assert cached.read_bytes() == blobs["model"]


def test_free_disk_is_checked_before_any_byte(
    hub: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    usage = shutil.disk_usage(store.root.parent)
    monkeypatch.setattr(
        "engine.store.model_store.shutil.disk_usage", lambda _p: usage._replace(free=100 * 1024 * 1024)
    )
    with pytest.raises(InsufficientDiskError, match="not enough free disk space") as err:
        dl.download(REPO, MODEL, store=store)
    assert err.value.free == 100 * 1024 * 1024
    assert hub.file_gets() == [] and store.list() == []


def test_disk_full_while_writing_keeps_a_resumable_partial(
    hub: FakeHub, store: ModelStore, blobs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "CHUNK_BYTES", 8192)
    real_write = dl._write_chunk
    written = 0

    def write_until_full(raw: object, data: memoryview) -> int:
        nonlocal written
        if written >= 3 * 8192:
            raise OSError(errno.ENOSPC, "No space left on device")
        written += len(data)
        return real_write(raw, data)  # type: ignore[arg-type]

    monkeypatch.setattr(dl, "_write_chunk", write_until_full)
    with pytest.raises(DiskFullError, match="disk full"):
        dl.download(REPO, MODEL, store=store)
    assert store.list() == [] and not store.path_for(REPO, MODEL).exists()
    partial = store.partial_path(REPO, MODEL, _sha(blobs["model"]))
    assert partial.stat().st_size == 3 * 8192

    monkeypatch.setattr(dl, "_write_chunk", real_write)
    hub.clear_log()
    assert dl.download(REPO, MODEL, store=store).read_bytes() == blobs["model"]
    assert hub.range_starts() == [3 * 8192]


SETUP_FAILURES = {
    errno.ENOSPC: ("No space left on device", "disk full"),
    errno.EACCES: ("Permission denied", "permission denied"),
    errno.EROFS: ("Read-only file system", "read-only file system"),
}


@pytest.mark.parametrize("stage", ["folders", "lock file", "manifest"])
@pytest.mark.parametrize("code", list(SETUP_FAILURES), ids=["disk full", "permission", "read-only"])
def test_a_set_up_that_cannot_write_says_why_and_leaves_no_model(
    hub: FakeHub,
    store: ModelStore,
    blobs: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
    code: int,
) -> None:
    """The download's folders, its lock file, the manifest (issue 13: 5 of these 9 set-ups ended in a
    traceback): each failure is one clear error, and nothing half-made is listed as a model."""
    strerror, words = SETUP_FAILURES[code]
    failure = OSError(code, strerror)
    with pytest.MonkeyPatch.context() as fault:
        if stage == "folders":
            real_mkdir = Path.mkdir

            def mkdir(self: Path, *args: object, **kwargs: object) -> None:
                if store.root in self.parents:
                    raise failure
                real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

            fault.setattr(Path, "mkdir", mkdir)
        elif stage == "lock file":

            class Unwritable(FileLock):
                def acquire(self, *args: object, **kwargs: object) -> object:
                    raise failure

            fault.setattr(dl, "FileLock", Unwritable)
        else:

            def write_manifest(self: ModelStore, manifest: object) -> None:
                raise failure

            fault.setattr(ModelStore, "_write_manifest", write_manifest)
        with pytest.raises(TandemError) as err:
            dl.download(REPO, MODEL, store=store)
    message = str(err.value)
    assert words in message.lower() and len(message) <= 500, message
    assert "Traceback" not in message and "\n" not in message
    assert store.list() == [] and store.untracked() == []  # nothing half-made is a model
    assert not store.path_for(REPO, MODEL).exists()
    # Once the disk or the folder is fixed, the same download completes (a placed-but-unrecorded file was
    # taken back as the partial, so nothing is fetched twice).
    hub.clear_log()
    assert dl.download(REPO, MODEL, store=store).read_bytes() == blobs["model"]
    if stage == "manifest":
        assert hub.file_gets() == []


def test_cancel_mid_file_then_resume(
    hub: FakeHub, store: ModelStore, blobs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL_S", 0.0)
    token = CancelToken()
    seen: list[int] = []

    def cancel_after_some(p: dl.DownloadProgress) -> None:
        seen.append(p.bytes_done)
        if p.bytes_done >= 20_000:
            token.cancel()

    with pytest.raises(DownloadCancelledError, match="resumes"):
        dl.download(REPO, MODEL, store=store, progress=cancel_after_some, cancel=token)
    partial = store.partial_path(REPO, MODEL, _sha(blobs["model"]))
    assert partial.stat().st_size == seen[-1] < len(blobs["model"])  # stopped within one chunk
    assert store.list() == []

    hub.clear_log()
    assert dl.download(REPO, MODEL, store=store).read_bytes() == blobs["model"]
    assert hub.range_starts() == [seen[-1]]


def test_same_file_downloading_elsewhere_is_refused(
    hub: FakeHub, store: ModelStore, blobs: dict[str, bytes]
) -> None:
    partial = store.partial_path(REPO, MODEL, _sha(blobs["model"]))
    partial.parent.mkdir(parents=True)
    with FileLock(f"{partial}.lock"), pytest.raises(DownloadBusyError):
        dl.download(REPO, MODEL, store=store)


def test_search_marks_drafters_and_gated_repos(hub: FakeHub) -> None:
    hits = {h.repo: h for h in search("GGUF")}
    assert "acme/readme-only" not in hits  # no GGUF files
    assert list(hits)[0] == GATED  # most downloaded first
    assert hits[GATED].gated and not hits[GATED].has_mtp_drafter
    assert hits[REPO].has_mtp_drafter and hits[REPO].drafter_files == ("mtp-tiny.gguf",)
    assert set(hits[REPO].gguf_files) == {MODEL, "tiny-Q8_0.gguf", "mtp-tiny.gguf"}
    assert hits[REPO].drafter == "mtp-tiny.gguf"
    # a file in an MTP/ folder is labelled a drafter, but llama.cpp never pairs a sub-folder's file with a
    # model at the root (find_best_sibling), so the repo is not advertised as having one
    folder = hits["acme/drafter-folder-GGUF"]
    assert folder.drafter_files == ("MTP/m-assistant.gguf",) and not folder.has_mtp_drafter
    assert not hits["acme/corrupt-GGUF"].has_mtp_drafter
    assert [h.repo for h in search("tiny", limit=1)] == [REPO]


def test_choose_gguf_follows_llama_cpp_hf_conventions() -> None:
    files = ["README.md", "m-Q4_K_M.gguf", "m-Q8_0.gguf", "mtp-m.gguf", "MTP/x.gguf"]
    assert choose_gguf("r", files, None) == "m-Q4_K_M.gguf"
    assert choose_gguf("r", files, "Q8_0") == "m-Q8_0.gguf"
    assert choose_gguf("r", files, "q8_0") == "m-Q8_0.gguf"
    assert choose_gguf("r", files, "mtp-m.gguf") == "mtp-m.gguf"
    assert choose_gguf("r", ["only.gguf", "mtp-only.gguf"], None) == "only.gguf"
    split = ["big-Q4_K_M-00001-of-00002.gguf", "big-Q4_K_M-00002-of-00002.gguf"]
    assert choose_gguf("r", split, None) == split[0]
    assert split_shards([*split, "other-00001-of-00002.gguf", *files], split[0]) == tuple(split)
    assert split_shards(files, "m-Q8_0.gguf") == ("m-Q8_0.gguf",)
    with pytest.raises(RemoteFileNotFoundError):
        choose_gguf("r", files, "Q2_K")
    # no tag: Q4_K_M, else Q8_0, else the first model file (llama.cpp's find_best_model)
    assert choose_gguf("r", ["b-Q6_K.gguf", "a-Q8_0.gguf"], None) == "a-Q8_0.gguf"
    assert choose_gguf("r", ["b-Q6_K.gguf", "a-Q5_K_M.gguf", "mtp-b.gguf"], None) == "b-Q6_K.gguf"


def test_bad_requests_fail_before_any_network(hub: FakeHub, store: ModelStore) -> None:
    from engine.errors import DownloadError, StoreError

    with pytest.raises(DownloadError, match="not a .gguf"):
        dl.download(REPO, "README.md", store=store)
    with pytest.raises(StoreError, match="not a repo id"):
        dl.download("no-slash", "x.gguf", store=store)
    with pytest.raises(StoreError, match="unsafe"):
        dl.download(REPO, "../escape.gguf", store=store)
    assert hub.requests == []


# ----- CLI ------------------------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    import argparse

    from engine.cli import models as models_cli

    parser = argparse.ArgumentParser(prog="tandem")
    models_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_pull_with_drafter_then_list(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["models", "pull", REPO]) == 0  # no tag: the Q4_K_M file
    out = capsys.readouterr().out
    assert f"{REPO}/{MODEL} (hub, plain" in out and "--with-drafter" in out
    assert _run(["models", "pull", f"{REPO}:Q8_0", "--with-drafter"]) == 0
    out = capsys.readouterr().out
    assert f"{REPO}/tiny-Q8_0.gguf" in out and f"{REPO}/mtp-tiny.gguf (hub, MTP assistant" in out
    assert _run(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.count(REPO) >= 3 and "MTP assistant" in listed


def test_cli_pull_gated_without_token_fails_with_the_hint(hub: FakeHub) -> None:
    with pytest.raises(GatedRepoAccessError, match="hf auth login"):
        _run(["models", "pull", GATED])


def test_cli_search(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["models", "search", "tiny"]) == 0
    out = capsys.readouterr().out
    assert REPO in out and "MTP drafter" in out
    assert _run(["models", "search", "gemma", "--json"]) == 0
    import json

    (hit,) = json.loads(capsys.readouterr().out)
    assert hit["repo"] == GATED and hit["gated"] is True
