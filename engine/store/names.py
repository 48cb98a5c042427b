"""Names a person reads for a model file: 'SmolLM2 135M Instruct', not the file name
'SmolLM2-135M-Instruct.Q4_1' nor the converter's 'Smollm2 135M 8k Lc100K Mix1 Ep2'.

The catalog's name comes first (for a file the catalog lists); else the file name without its quantization
tag, when its author gave it capitals (most hub files: 'Meta-Llama-3.1-8B-Instruct-Q4_K_M'); else the file's
own `general.name`, cleaned.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from engine.errors import TandemError
from engine.store.catalog import load_catalog

MAX_NAME = 64
# A quantization tag at the end of a file name: Q4_K_M, IQ3_XXS, UD-Q4_K_XL, Q8_0, F16, BF16, MXFP4...
_QUANT_TAG = re.compile(r"[-._](?:UD[-_])?(?:I?Q\d\w*|B?F16|F32|MXFP4\w*)$", re.IGNORECASE)
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
_NOTE = re.compile(r"\s*\([^)]*\)\s*$")  # the catalog's "(QAT)", "(MTP drafter)"


@functools.lru_cache(maxsize=1)
def _catalog_names() -> dict[str, str]:
    try:
        catalog = load_catalog()
    except (TandemError, OSError, ValueError):
        return {}
    names: dict[str, str] = {}
    for model in catalog.models.values():
        for quant in model.quants:
            names[Path(quant.file).name.lower()] = _NOTE.sub("", model.name)
    return names


def display_name(path: str | Path, general_name: str | None = None) -> str:
    path = Path(path)
    known = _catalog_names().get(path.name.lower())
    if known:
        return known
    stem = _SHARD.sub("", path.stem)
    stem = _QUANT_TAG.sub("", stem) or stem
    from_file = " ".join(part for part in re.split(r"[-_\s]+", stem) if part)
    general = " ".join((general_name or "").replace("_", " ").split())
    if any(ch.isupper() for ch in from_file) or not general:
        return _short(from_file or path.name)
    return _short(general)


def _short(name: str) -> str:
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1].rstrip() + "…"
