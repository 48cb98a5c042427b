"""A catalog file, found in its repository's listing the way llama.cpp's `-hf repo:TAG` finds it.

The catalog names the file it expects (`Quant.file`), but repositories rename, drop and re-upload files. So
a download starts from the hub's listing (engine.store.hub.list_repo): the expected name when it is there,
else the model file that carries the quantization tag (engine.store.gguf_select.find_best_model); the size
and sha256 to verify come from that listing, never from the catalog. When neither is there, the error names
what the repository has instead. The MTP drafter beside a target is found with llama.cpp's
`find_best_sibling`.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import QuantNotFoundError
from engine.store.catalog import ModelEntry, Quant
from engine.store.gguf_select import (
    MTP_KEYWORD,
    drafter_files,
    find_best_model,
    find_best_sibling,
    model_files,
    split_files,
    split_info,
)
from engine.store.hub import RemoteFile, RepoListing
from engine.units import format_bytes


@dataclass(frozen=True, slots=True)
class ResolvedFile:
    """One file (all its shards) at the commit of the listing it was found in, with the listing's facts."""

    repo: str
    revision: str
    path: str  # the file, or the first shard of a split file
    shards: tuple[RemoteFile, ...]
    expected: str  # what was asked for: the catalog's file name, or a tag
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return sum(s.size for s in self.shards)

    @property
    def sha256(self) -> str | None:
        return self.shards[0].sha256

    @property
    def renamed(self) -> bool:
        return self.path != self.expected


def file_label(listing: RepoListing, path: str) -> str:
    """'UD-Q4_K_XL: gemma-4-E2B-it-qat-UD-Q4_K_XL.gguf (3.2 GB)'."""
    shards = split_files(listing.paths, path)
    return f"{display_tag(path)}: {path} ({format_bytes(listing.size_of(shards))})"


def display_tag(path: str) -> str:
    """The quantization as people name it: llama.cpp's tag (the last word), with Unsloth's `UD-` (dynamic
    quant) prefix kept: UD-Q4_K_XL rather than Q4_K_XL."""
    info = split_info(path)
    if info is None or not info.tag:
        return "?"
    return f"UD-{info.tag}" if info.prefix.upper().endswith(f"UD-{info.tag}") else info.tag


def what_it_has(listing: RepoListing) -> tuple[str, ...]:
    """The repository's model files and its MTP drafter, for messages."""
    out = [file_label(listing, p) for p in _target_candidates(listing)]
    drafter = listing.best_drafter(None)
    if drafter is not None:
        out.append(f"MTP drafter {drafter} ({format_bytes(listing.size_of([drafter]))})")
    return tuple(out)


def _target_candidates(listing: RepoListing) -> tuple[str, ...]:
    # llama.cpp's model rule, and never a file of an MTP/ folder: whatever its name, it is a drafter.
    return model_files(listing.paths)


def _resolved(listing: RepoListing, path: str, expected: str, notes: list[str]) -> ResolvedFile:
    shards = tuple(f for p in split_files(listing.paths, path) if (f := listing.file(p)) is not None)
    return ResolvedFile(listing.repo, listing.revision, path, shards, expected, tuple(notes))


def resolve_quant(model: ModelEntry, quant: Quant, listing: RepoListing) -> ResolvedFile:
    """`quant`'s file in `listing` (its repository's): the catalog's name if present, else the model file with
    the quantization tag. Raises QuantNotFoundError naming what the repository has instead."""
    notes: list[str] = []
    candidates = _target_candidates(listing)
    if quant.file in candidates:
        path: str | None = quant.file
    else:
        path = find_best_model(candidates, quant.name)
        if path is not None:
            notes.append(f"{quant.file} is not in {listing.repo}; its {quant.name} file is {path}")
    if path is None:
        raise QuantNotFoundError(listing.repo, quant.name, quant.file, what_it_has(listing))
    found = _resolved(listing, path, quant.file, notes)
    return _compare_with_catalog(model, quant, found)


def _compare_with_catalog(model: ModelEntry, quant: Quant, found: ResolvedFile) -> ResolvedFile:
    # Re-uploads change size and sha256: the listing is what the download is checked against, the catalog's
    # figures only say whether the file changed since they were written.
    changed = []
    if quant.size_bytes is not None and quant.size_bytes != found.size:
        changed.append(f"size {quant.size_bytes} -> {found.size} bytes")
    if quant.sha256 is not None and found.sha256 is not None and quant.sha256 != found.sha256:
        changed.append("sha256")
    if not changed:
        return found
    note = f"{found.path} changed since the catalog entry for {model.name} was written ({', '.join(changed)})"
    return ResolvedFile(
        found.repo, found.revision, found.path, found.shards, found.expected, (*found.notes, note)
    )


def resolve_drafter(listing: RepoListing, target: str, tag: str | None = None) -> ResolvedFile | None:
    """The MTP drafter llama.cpp's `-hf` pairs with `target` in this listing (find_best_sibling: an `mtp-`
    GGUF in the target's folder or an ancestor, deepest first, then the exact tag, then the closest bit
    width), or None."""
    path = find_best_sibling(listing.paths, target, MTP_KEYWORD, tag)
    return _resolved(listing, path, path, []) if path is not None else None


def resolve_named(listing: RepoListing, expected: str) -> ResolvedFile | None:
    """A file asked for by name (a drafter entry of the catalog), when the listing has it."""
    return _resolved(listing, expected, expected, []) if listing.file(expected) is not None else None


def drafter_summary(listing: RepoListing, target: str, tag: str | None = None) -> str | None:
    """'MTP drafter available: mtp-gemma-4-E2B-it.gguf (56.5 MiB)', or None."""
    found = resolve_drafter(listing, target, tag)
    if found is None:
        others = drafter_files(listing.paths)
        return (
            f"no MTP drafter beside {target} ({len(others)} elsewhere in the repository)" if others else None
        )
    return f"MTP drafter available: {found.path} ({format_bytes(found.size)})"
