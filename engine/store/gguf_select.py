"""Which GGUF of a repository `-hf repo[:TAG]` means, and which MTP drafter goes with it: llama.cpp's own
rules, ported from llama.cpp `common/download.cpp` (`get_gguf_split_info`, `extract_quant_bits`,
`gguf_filename_is_model`, `find_best_model`, `find_best_sibling`) so Tandem picks the same files as
`llama-server -hf` for the same listing.

Everything here works on repository-relative paths ("MTP/mtp-x-Q8_0.gguf"), from a hub listing or from a
local folder, and never touches the network.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

# A file whose name contains one of these is a side file of a model, not a model to chat with.
SIDECAR_MARKERS = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")
MTP_KEYWORD = "mtp-"
# What `-hf repo` without a tag tries, in order, before falling back to the first model file.
DEFAULT_TAGS = ("Q4_K_M", "Q8_0")
# Some repositories keep extra drafter precisions in an `MTP/` folder (names change across revisions, so
# only the folder is a convention). llama.cpp never picks a file from a sub-folder of the model's folder as
# its drafter; Tandem only uses the folder to label such files as drafters, not models.
DRAFTER_FOLDER = "MTP"

_SPLIT = re.compile(r"^(.+)-([0-9]{5})-of-([0-9]{5})$", re.IGNORECASE)
_TAG = re.compile(r"[-.]([A-Z0-9_]+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SplitInfo:
    """`get_gguf_split_info`: the path without `.gguf` and the split suffix, its quantization tag (the last
    `-`/`.`-separated word, upper case) and the shard number and count (1 of 1 for an unsplit file)."""

    prefix: str
    tag: str
    index: int
    count: int


def split_info(path: str) -> SplitInfo | None:
    """None for a path that does not end in `.gguf` (llama.cpp compares case-sensitively)."""
    if not path.endswith(".gguf"):
        return None
    prefix = path[: -len(".gguf")]
    index = count = 1
    m = _SPLIT.match(prefix)
    if m:
        prefix, index, count = m[1], int(m[2]), int(m[3])
    t = _TAG.search(prefix)
    return SplitInfo(prefix, t[1].upper() if t else "", index, count)


def quant_bits(path: str) -> int:
    """`extract_quant_bits`: the first number in the file's tag (Q4_0 -> 4, F16 -> 16, UD-Q2_K_XL -> 2),
    0 when the tag has none."""
    info = split_info(path)
    return _first_number(info.tag) if info else 0


def _first_number(text: str) -> int:
    m = re.search(r"[0-9]+", text)
    return int(m[0]) if m else 0


def is_model_file(path: str) -> bool:
    """`gguf_filename_is_model`: a `.gguf` whose file name (not folder) has none of the sidecar markers."""
    if not path.endswith(".gguf"):
        return False
    name = path.rsplit("/", 1)[-1]
    return not any(marker in name for marker in SIDECAR_MARKERS)


def is_drafter_file(path: str) -> bool:
    """A drafter candidate for labels and listings: the llama.cpp keyword anywhere in the path, or any GGUF
    kept in an `MTP/` folder."""
    p = PurePosixPath(path)
    if p.suffix.lower() != ".gguf":
        return False
    return MTP_KEYWORD in path or DRAFTER_FOLDER in p.parts[:-1]


def is_first_shard(path: str) -> bool:
    info = split_info(path)
    return info is not None and (info.count <= 1 or info.index == 1)


def find_best_model(paths: Sequence[str], tag: str | None) -> str | None:
    """`find_best_model`: the first model file (listing order) whose path contains TAG followed by `.` or `-`
    (case-insensitive), skipping later shards of split files. Without a tag: Q4_K_M, then Q8_0, then the first
    model file of any kind. None when nothing matches."""
    tags = (tag,) if tag else DEFAULT_TAGS
    for t in tags:
        pattern = re.compile(re.escape(t) + r"[.-]", re.IGNORECASE)
        for p in paths:
            if is_model_file(p) and pattern.search(p) and is_first_shard(p):
                return p
    if not tag:
        return next((p for p in paths if is_model_file(p) and is_first_shard(p)), None)
    return None


def split_files(paths: Iterable[str], first: str) -> tuple[str, ...]:
    """`get_split_files`: every shard of the split file `first` belongs to, in shard order; the file alone
    when it is not split."""
    info = split_info(first)
    if info is None or info.count <= 1:
        return (first,)
    shards = []
    for p in paths:
        other = split_info(p)
        if other is not None and other.count == info.count and other.prefix == info.prefix:
            shards.append((other.index, p))
    return tuple(p for _, p in sorted(shards))


def find_best_sibling(
    paths: Sequence[str], model: str, keyword: str = MTP_KEYWORD, tag: str | None = None
) -> str | None:
    """`find_best_sibling`: among the `.gguf` paths containing `keyword`, those in the model's folder or one
    of its ancestors (never a sub-folder), ranked by the deepest shared folder, then an exact `-TAG.` match,
    then the closest bit width (to the tag's, or else to the model's). Ties keep the earlier path."""
    tag_upper = (tag or "").upper()
    model_bits = _first_number(tag_upper) if tag_upper else quant_bits(model)
    model_dirs = model.split("/")[:-1]
    best: str | None = None
    best_key: tuple[int, bool, int] | None = None
    for p in paths:
        if not p.endswith(".gguf") or keyword not in p:
            continue
        dirs = p.split("/")[:-1]
        if dirs != model_dirs[: len(dirs)]:
            continue  # a sub-folder of the model's folder, or another branch of the tree
        depth = len(dirs)
        exact = bool(tag_upper) and f"-{tag_upper}." in p.upper()
        diff = abs(quant_bits(p) - model_bits)
        better = best_key is None or (
            depth > best_key[0]
            or (depth == best_key[0] and exact and not best_key[1])
            or (depth == best_key[0] and exact == best_key[1] and diff < best_key[2])
        )
        if better:
            best, best_key = p, (depth, exact, diff)
    return best


def model_files(paths: Iterable[str]) -> tuple[str, ...]:
    """Model files to chat with, each split model once (its first shard); drafters in `MTP/` left out."""
    return tuple(p for p in paths if is_model_file(p) and is_first_shard(p) and not is_drafter_file(p))


def drafter_files(paths: Iterable[str]) -> tuple[str, ...]:
    return tuple(p for p in paths if is_drafter_file(p))
