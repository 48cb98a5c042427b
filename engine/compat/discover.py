"""The MTP drafter beside a local model file, found as llama.cpp's `-hf` finds one in a repository
(engine.store.gguf_select.find_best_sibling: an `mtp-*.gguf` in the model's folder or above it, never below),
and whether it can draft for that model (engine.compat.mtp's pair rules, from metadata alone).

Used when a model is imported (`tandem models import`, the app's "Import GGUF…") to offer: "found
mtp-gemma-4-E4B-it.gguf beside this model: use it as the drafter?".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.compat.mtp import check_assistant_pair
from engine.errors import IncompatibleDrafterError, ModelFileError
from engine.gguf.metadata import read_gguf
from engine.store.gguf_select import MTP_KEYWORD, find_best_sibling

# The model's folder and its parent: a drafter at a download's root with the model in a sub-folder.
SEARCH_LEVELS = 1
MAX_ENTRIES = 10_000  # folder entries looked at per folder (a huge Downloads folder cannot stall an import)
RULE_NOT_ASSISTANT_FILE = "not-an-assistant"


@dataclass(frozen=True, slots=True)
class DrafterOffer:
    """A drafter file found beside a model; `rule`/`reason` say why it cannot draft for it (None: it can)."""

    path: Path
    size: int
    rule: str | None = None
    reason: str | None = None

    @property
    def usable(self) -> bool:
        return self.rule is None

    @property
    def question(self) -> str:
        return f"found {self.path.name} beside this model: use it as the drafter?"

    @property
    def refusal(self) -> str:
        name, rule = self.path.name, self.rule
        return f"found {name} beside this model, but it cannot draft for it ({rule}): {self.reason}"


def _gguf_names(folder: Path) -> list[str]:
    names: list[str] = []
    try:
        with os.scandir(folder) as it:
            for n, entry in enumerate(it):
                if n >= MAX_ENTRIES:
                    break
                if entry.name.endswith(".gguf") and MTP_KEYWORD in entry.name and entry.is_file():
                    names.append(entry.name)
    except OSError:
        return []
    return sorted(names)


def find_drafter_beside(model: Path, levels: int = SEARCH_LEVELS) -> Path | None:
    """The `mtp-*.gguf` llama.cpp would pair with `model` among the files of its folder and `levels` folders
    above it (deepest folder first, then the closest bit width); None when there is none."""
    model = model.resolve()
    chain = [model.parent]
    for _ in range(levels):
        if chain[-1].parent == chain[-1]:
            break
        chain.append(chain[-1].parent)
    root = chain[-1]
    rel_model = model.relative_to(root).as_posix()
    paths = []
    for folder in reversed(chain):
        prefix = folder.relative_to(root).as_posix()
        paths += [f"{prefix}/{name}" if prefix != "." else name for name in _gguf_names(folder)]
    paths = [p for p in paths if p != rel_model]
    found = find_best_sibling(paths, rel_model, MTP_KEYWORD)
    return root / found if found is not None else None


def drafter_offer(model: Path) -> DrafterOffer | None:
    """The drafter beside `model`, checked against it; None when there is no `mtp-*.gguf` beside it or the
    model itself cannot be read (its import reports that)."""
    found = find_drafter_beside(model)
    if found is None:
        return None
    try:
        target = read_gguf(model)
    except ModelFileError:
        return None
    size = found.stat().st_size
    try:
        drafter = read_gguf(found)
    except ModelFileError as exc:
        return DrafterOffer(found, size, "unreadable", exc.problem)
    if drafter.kind not in ("gemma4-assistant", "fork-mtp"):
        return DrafterOffer(found, size, RULE_NOT_ASSISTANT_FILE, f"it is a '{drafter.architecture}' model")
    try:
        check_assistant_pair(target, drafter)
    except IncompatibleDrafterError as exc:
        return DrafterOffer(found, size, exc.rule, exc.detail)
    return DrafterOffer(found, size)
