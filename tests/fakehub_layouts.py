"""Fake-hub repositories laid out like the published ones the catalog points at, so resolution and drafter
discovery are tested on realistic listings (tests/fakehub.py serves them).

Layouts, as reported by a check of the real repositories (see resources/catalog.json `sources`):
- unsloth QAT repos (`unsloth/gemma-4-<size>-it-qat-GGUF`): only `…-qat-UD-Q4_K_XL.gguf` and
  `…-qat-UD-Q2_K_XL.gguf`, one drafter `mtp-gemma-4-<size>-it.gguf` at the root (E2B: 59,235,648 bytes),
  more drafter precisions in `MTP/` (their names changed across revisions: two spellings here), a vision
  projector and an imatrix file that are not models;
- ggml-org repos (`ggml-org/gemma-4-<size>-it-GGUF`): the 8-bit target and a Q8_0 drafter at the root. The
  12B file name was not reported: the fake spells it differently from the catalog (lower-case `12b`), so the
  tests prove the Q8_0 tag finds it;
- `unsloth/Qwen3.6-27B-MTP-GGUF` (NextN block kept) beside `unsloth/Qwen3.6-27B-GGUF` (same names, no NextN).

File contents are tiny GGUFs of the right architecture (tests/fakehub.write_tiny_gguf), not the real
weights; only the E2B drafter's size is declared as the real one, and only where a test asks for it.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakehub import FakeRepo, write_tiny_gguf

E2B_DRAFTER_BYTES = 59_235_648  # the root drafter of unsloth/gemma-4-E2B-it-qat-GGUF (a Q4_0)
QAT_SIZES = ("E2B", "E4B", "12B", "31B")
GGML_ORG_Q8 = {  # size -> the Q8_0 file of ggml-org/gemma-4-<size>-it-GGUF
    "E4B": "gemma-4-E4B-it-Q8_0.gguf",
    "12B": "gemma-4-12b-it-Q8_0.gguf",  # name not reported: a spelling the catalog does not expect
    "31B": "gemma-4-31B-it-Q8_0.gguf",
}


def blobs(directory: Path) -> dict[str, bytes]:
    """One tiny GGUF per kind of file the layouts hold."""
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "gemma4": write_tiny_gguf(directory / "gemma4.gguf", arch="gemma4", tensor_bytes=8 * 1024),
        "assistant": write_tiny_gguf(directory / "a.gguf", arch="gemma4-assistant", tensor_bytes=4 * 1024),
        "clip": write_tiny_gguf(directory / "mmproj.gguf", arch="clip", tensor_bytes=2 * 1024),
        "qwen35-mtp": write_tiny_gguf(
            directory / "q.gguf", arch="qwen35", tensor_bytes=8 * 1024, nextn_layers=1
        ),
        "qwen35": write_tiny_gguf(directory / "q0.gguf", arch="qwen35", tensor_bytes=6 * 1024),
        "llama": write_tiny_gguf(directory / "l.gguf", arch="llama", tensor_bytes=6 * 1024),
        "qwen3": write_tiny_gguf(directory / "q3.gguf", arch="qwen3", tensor_bytes=6 * 1024),
    }


def _readme(repo: str) -> dict[str, bytes]:
    return {
        ".gitattributes": b"*.gguf filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": f"# {repo}\n".encode(),
    }


def unsloth_qat(size: str, b: dict[str, bytes], *, real_drafter_size: bool = False) -> FakeRepo:
    repo = f"unsloth/gemma-4-{size}-it-qat-GGUF"
    files = {
        **_readme(repo),
        f"gemma-4-{size}-it-qat-UD-Q2_K_XL.gguf": b["gemma4"],
        f"gemma-4-{size}-it-qat-UD-Q4_K_XL.gguf": b["gemma4"],
        f"mtp-gemma-4-{size}-it.gguf": b["assistant"],
        f"MTP/mtp-gemma-4-{size}-it-BF16.gguf": b["assistant"],
        f"MTP/gemma-4-{size}-it-assistant-Q8_0.gguf": b["assistant"],  # an older spelling, no `mtp-`
        "mmproj-BF16.gguf": b["clip"],
        "imatrix_unsloth.gguf": b["clip"],
    }
    declared = (
        {f"mtp-gemma-4-{size}-it.gguf": E2B_DRAFTER_BYTES} if real_drafter_size and size == "E2B" else {}
    )
    return FakeRepo(repo, files, downloads=10_000, declared_size=declared)


def ggml_org(size: str, b: dict[str, bytes]) -> FakeRepo:
    repo = f"ggml-org/gemma-4-{size}-it-GGUF"
    files = {
        **_readme(repo),
        GGML_ORG_Q8[size]: b["gemma4"],
        f"mtp-gemma-4-{size}-it.gguf": b["assistant"],
        f"mmproj-gemma-4-{size}-it-Q8_0.gguf": b["clip"],
    }
    return FakeRepo(repo, files, downloads=5_000)


def unsloth_26b(b: dict[str, bytes]) -> FakeRepo:
    repo = "unsloth/gemma-4-26B-A4B-it-GGUF"
    files = {
        **_readme(repo),
        "gemma-4-26B-A4B-it-UD-Q4_K_XL.gguf": b["gemma4"],
        "gemma-4-26B-A4B-it-Q8_0.gguf": b["gemma4"],
        "mtp-gemma-4-26B-A4B-it.gguf": b["assistant"],
        "MTP/mtp-gemma-4-26B-A4B-it-F16.gguf": b["assistant"],
        "mmproj-F16.gguf": b["clip"],
    }
    return FakeRepo(repo, files, downloads=8_000)


def qwen36(b: dict[str, bytes], *, mtp: bool) -> FakeRepo:
    repo = "unsloth/Qwen3.6-27B-MTP-GGUF" if mtp else "unsloth/Qwen3.6-27B-GGUF"
    blob = b["qwen35-mtp"] if mtp else b["qwen35"]
    files = {
        **_readme(repo),
        "Qwen3.6-27B-Q4_K_M.gguf": blob,
        "Qwen3.6-27B-Q8_0.gguf": blob,
        "Qwen3.6-27B-UD-Q4_K_XL.gguf": blob,
        "mmproj-F16.gguf": b["clip"],
    }
    return FakeRepo(repo, files, downloads=20_000 if mtp else 30_000)


def plain(repo: str, names: list[str], blob: bytes) -> FakeRepo:
    return FakeRepo(repo, {**_readme(repo), **dict.fromkeys(names, blob)}, downloads=1_000)


def catalog_repos(directory: Path, *, real_drafter_size: bool = False) -> list[FakeRepo]:
    """Every repository resources/catalog.json downloads from, in its published layout."""
    b = blobs(directory)
    repos = [unsloth_qat(s, b, real_drafter_size=real_drafter_size) for s in QAT_SIZES]
    repos += [ggml_org(s, b) for s in GGML_ORG_Q8]
    repos += [unsloth_26b(b), qwen36(b, mtp=True), qwen36(b, mtp=False)]
    llama8 = "Meta-Llama-3.1-8B-Instruct"
    repos.append(
        plain(
            f"bartowski/{llama8}-GGUF",
            [f"{llama8}-{q}.gguf" for q in ("IQ4_XS", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "f32")],
            b["llama"],
        )
    )
    repos.append(
        plain(
            "bartowski/Llama-3.2-1B-Instruct-GGUF",
            [f"Llama-3.2-1B-Instruct-{q}.gguf" for q in ("Q4_K_M", "Q8_0", "f16")],
            b["llama"],
        )
    )
    repos.append(
        plain(
            "Qwen/Qwen3-8B-GGUF",
            [f"Qwen3-8B-{q}.gguf" for q in ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")],
            b["qwen3"],
        )
    )
    repos.append(plain("Qwen/Qwen3-0.6B-GGUF", ["Qwen3-0.6B-Q8_0.gguf"], b["qwen3"]))
    return repos
