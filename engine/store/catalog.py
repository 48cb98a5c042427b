"""The curated pair catalog (resources/catalog.json), loaded and validated into plain dataclasses.

Other modules (model store, GUI model manager, fit estimator) read pairs from here. Numbers that could not be
verified offline stay None: file sizes and sha256 are resolved from the hub's listing at download time
(engine.store.resolve); `approx_bytes` gives a planning estimate (parameters x typical bits per weight)
clearly marked as such. A quantization may live in another repository than its model's (`Quant.repo`), and
names where its file name came from (`Quant.source`, a key of the catalog's `sources`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from engine.errors import CatalogError
from engine.gguf.archs import FORK_MTP_ARCHITECTURES

DrafterKind = Literal["assistant", "nextn", "draft", "ngram"]
Role = Literal["target", "draft", "assistant"]
DRAFTER_KINDS: tuple[str, ...] = ("assistant", "nextn", "draft", "ngram")
ROLES: tuple[str, ...] = ("target", "draft", "assistant")

# Gemma 4 MTP drafters converted for llama.cpp forks (e.g. ik_llama.cpp) spell the architecture with an
# underscore; the pinned llama.cpp only loads the upstream "gemma4-assistant" conversion.
FORK_MTP_REASON = (
    "is a Gemma 4 MTP drafter converted for a llama.cpp fork (architecture '{arch}'); the bundled llama.cpp "
    "only loads the upstream conversion (architecture 'gemma4-assistant')"
)

# Typical bits per weight of whole GGUF files (llama.cpp quantize figures; embeddings and norms included).
# Only used for approximate sizes of files not yet downloaded.
TYPICAL_BPW: dict[str, float] = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "MTP": 16.0,
    "Q8_0": 8.5, "Q6_K": 6.56, "Q5_K_M": 5.69, "Q5_K_S": 5.54, "Q5_1": 6.0, "Q5_0": 5.5,
    "Q4_K_M": 4.89, "Q4_K_S": 4.58, "Q4_1": 5.0, "Q4_0": 4.55, "IQ4_XS": 4.25, "IQ4_NL": 4.5,
    "UD-Q4_K_XL": 5.0, "UD-Q2_K_XL": 3.2, "Q3_K_M": 3.91, "Q3_K_S": 3.5, "Q2_K": 3.0,
}  # fmt: skip

ARCH_INT_FIELDS = (
    "n_layer", "n_embd", "n_ff", "n_head", "n_head_kv", "head_dim", "n_head_kv_swa", "head_dim_swa", "n_swa",
    "swa_period", "shared_kv_layers", "per_layer_input", "nextn_layers", "full_attention_interval",
    "n_vocab", "n_ctx_train", "n_embd_out", "n_experts", "n_experts_used", "n_ff_exp",
)  # fmt: skip
SSM_FIELDS = ("conv_kernel", "inner_size", "state_size", "group_count", "time_step_rank")


@dataclass(frozen=True, slots=True)
class ArchNumbers:
    """What the fit estimator needs from config.json when the GGUF is not on disk yet. None = unknown."""

    architecture: str
    source: str
    n_layer: int | None = None  # trunk blocks (NextN blocks not included)
    n_embd: int | None = None
    n_ff: int | None = None  # widest FFN
    n_head: int | None = None
    n_head_kv: int | None = None  # full-attention layers
    head_dim: int | None = None  # full-attention layers
    n_head_kv_swa: int | None = None  # sliding-window layers, when they differ
    head_dim_swa: int | None = None
    n_swa: int | None = None  # sliding window, tokens
    swa_period: int | None = None  # every swa_period-th layer is full attention, the others sliding
    shared_kv_layers: int = 0  # last N layers reuse earlier layers' KV (Gemma 3n / Gemma 4)
    per_layer_input: int = 0  # Gemma per-layer embedding width (a CPU-resident table)
    nextn_layers: int = 0  # embedded MTP blocks
    full_attention_interval: int | None = None  # hybrid recurrent models: every Nth layer has attention
    ssm: Mapping[str, int] = field(default_factory=dict)
    n_vocab: int | None = None
    n_ctx_train: int | None = None
    n_embd_out: int | None = None  # Gemma 4 assistant: the target's hidden size
    tied_embeddings: bool = True
    n_experts: int | None = None
    n_experts_used: int | None = None
    n_ff_exp: int | None = None


@dataclass(frozen=True, slots=True)
class Quant:
    name: str  # "Q4_K_M", "UD-Q4_K_XL", "MTP"...: also the tag the file is looked up by in a listing
    file: str  # path inside the repository, as the catalog expects it
    size_bytes: int | None  # exact, when verified; else resolved at download time
    sha256: str | None
    verified: bool  # name, size and sha256 were read from the real file or a real listing
    approx_bytes: int | None = None  # planning estimate when size_bytes is None
    repo: str | None = None  # the repository holding this file, when not the model's
    source: str | None = None  # where the file name came from (the text of a catalog `sources` entry)

    @property
    def bits_per_weight(self) -> float | None:
        return TYPICAL_BPW.get(self.name.upper())

    @property
    def planning_bytes(self) -> int | None:
        return self.size_bytes if self.size_bytes is not None else self.approx_bytes


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str
    name: str
    role: Role
    licence: str
    params_b: float | None
    repo: str | None
    arch: ArchNumbers
    quants: tuple[Quant, ...]
    pypi: Mapping[str, str] | None = None  # {"package", "version", "member"} for models shipped in a wheel

    def repo_of(self, quant: Quant) -> str | None:
        """The repository `quant`'s file is downloaded from."""
        return quant.repo or self.repo

    def quant(self, name: str) -> Quant:
        for q in self.quants:
            if q.name.lower() == name.lower():
                return q
        raise CatalogError(
            f"model '{self.id}' has no quantization '{name}' "
            f"(it has {', '.join(q.name for q in self.quants)})"
        )


@dataclass(frozen=True, slots=True)
class Pair:
    id: str
    name: str
    target: ModelEntry
    drafter: ModelEntry | None
    drafter_kind: DrafterKind
    default: bool = False
    notes: str = ""


@dataclass(frozen=True, slots=True)
class Catalog:
    models: Mapping[str, ModelEntry]
    pairs: tuple[Pair, ...]

    def pair(self, pair_id: str) -> Pair:
        for p in self.pairs:
            if p.id == pair_id:
                return p
        known = ", ".join(p.id for p in self.pairs)
        raise CatalogError(f"no pair '{pair_id}' in the catalog (known: {known})")

    def model(self, model_id: str) -> ModelEntry:
        try:
            return self.models[model_id]
        except KeyError:
            raise CatalogError(f"no model '{model_id}' in the catalog") from None

    @property
    def default_pair(self) -> Pair:
        return next(p for p in self.pairs if p.default)


# --- validation ----------------------------------------------------------------------------------------


def _need(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise CatalogError(f"{where}: '{key}' is missing")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise CatalogError(f"{where}: '{key}' must be {_kind_name(kind)}, not {type(value).__name__}")
    return value


def _opt(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if obj.get(key) is None:
        return None
    return _need(obj, key, kind, where)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _positive(value: int | None, key: str, where: str) -> int | None:
    if value is not None and value <= 0:
        raise CatalogError(f"{where}: '{key}' must be positive, got {value}")
    return value


def _arch(raw: Mapping[str, Any], where: str) -> ArchNumbers:
    where = f"{where}.arch"
    architecture = _need(raw, "architecture", str, where)
    if architecture in FORK_MTP_ARCHITECTURES:
        raise CatalogError(f"{where}: {FORK_MTP_REASON.format(arch=architecture)}")
    ints: dict[str, int | None] = {}
    for key in ARCH_INT_FIELDS:
        ints[key] = _opt(raw, key, int, where)
        if key not in ("shared_kv_layers", "per_layer_input", "nextn_layers"):
            _positive(ints[key], key, where)
    ssm_raw = _opt(raw, "ssm", dict, where) or {}
    ssm = {
        k: _positive(_need(ssm_raw, k, int, f"{where}.ssm"), k, f"{where}.ssm")
        for k in SSM_FIELDS
        if k in ssm_raw
    }
    unknown = set(raw) - set(ARCH_INT_FIELDS) - {"architecture", "source", "ssm", "tied_embeddings"}
    if unknown:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown)}")
    return ArchNumbers(
        architecture=architecture,
        source=_need(raw, "source", str, where),
        tied_embeddings=bool(raw.get("tied_embeddings", True)),
        ssm=cast(dict[str, int], ssm),
        **{k: v for k, v in ints.items() if k not in ("shared_kv_layers", "per_layer_input", "nextn_layers")},
        shared_kv_layers=ints["shared_kv_layers"] or 0,
        per_layer_input=ints["per_layer_input"] or 0,
        nextn_layers=ints["nextn_layers"] or 0,
    )


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _quant(
    raw: Mapping[str, Any], where: str, params_b: float | None, sources: Mapping[str, str]
) -> Quant:
    name = _need(raw, "name", str, where)
    where = f"{where}[{name}]"
    size = _positive(_opt(raw, "size_bytes", int, where), "size_bytes", where)
    sha = _opt(raw, "sha256", str, where)
    if sha is not None and not _SHA256.match(sha):
        raise CatalogError(f"{where}: sha256 must be 64 lowercase hex digits")
    approx_gb = _opt(raw, "approx_size_gb", (int, float), where)
    bpw = TYPICAL_BPW.get(name.upper())
    if approx_gb is not None:
        approx: int | None = int(approx_gb * 1e9)
    elif params_b is not None and bpw is not None:
        approx = int(params_b * 1e9 * bpw / 8)
    else:
        approx = None
    repo = _opt(raw, "repo", str, where)
    if repo is not None and not _REPO_ID.match(repo):
        raise CatalogError(f"{where}: 'repo' must be owner/name, not {repo!r}")
    source_key = _opt(raw, "source", str, where)
    if source_key is not None and source_key not in sources:
        raise CatalogError(f"{where}: source '{source_key}' is not in the catalog's sources")
    unknown = set(raw) - {
        "name", "file", "size_bytes", "sha256", "verified", "approx_size_gb", "repo", "source"
    }  # fmt: skip
    if unknown:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown)}")
    return Quant(
        name=name,
        file=_need(raw, "file", str, where),
        size_bytes=size,
        sha256=sha,
        verified=bool(_need(raw, "verified", bool, where)),
        approx_bytes=approx,
        repo=repo,
        source=sources[source_key] if source_key is not None else None,
    )


def _model(model_id: str, raw: Mapping[str, Any], sources: Mapping[str, str]) -> ModelEntry:
    where = f"models.{model_id}"
    role = _need(raw, "role", str, where)
    if role not in ROLES:
        raise CatalogError(f"{where}: role must be one of {', '.join(ROLES)}, not '{role}'")
    params_b = _opt(raw, "params_b", (int, float), where)
    quants_raw = _need(raw, "quants", list, where)
    if not quants_raw:
        raise CatalogError(f"{where}: needs at least one quantization")
    quants = tuple(_quant(q, f"{where}.quants", params_b, sources) for q in quants_raw)
    if len({q.name.lower() for q in quants}) != len(quants):
        raise CatalogError(f"{where}: duplicate quantization names")
    arch = _arch(_need(raw, "arch", dict, where), where)
    if role == "assistant" and arch.architecture != "gemma4-assistant":
        raise CatalogError(f"{where}: an assistant must have architecture 'gemma4-assistant'")
    pypi = _opt(raw, "pypi", dict, where)
    return ModelEntry(
        id=model_id,
        name=_need(raw, "name", str, where),
        role=cast(Role, role),
        licence=_need(raw, "licence", str, where),
        params_b=float(params_b) if params_b is not None else None,
        repo=_opt(raw, "repo", str, where),
        arch=arch,
        quants=quants,
        pypi={str(k): str(v) for k, v in pypi.items()} if pypi else None,
    )


def _pair(raw: Mapping[str, Any], models: Mapping[str, ModelEntry]) -> Pair:
    pair_id = _need(raw, "id", str, "pairs[]")
    where = f"pairs.{pair_id}"
    kind = _need(raw, "drafter_kind", str, where)
    if kind not in DRAFTER_KINDS:
        raise CatalogError(f"{where}: drafter_kind must be one of {', '.join(DRAFTER_KINDS)}, not '{kind}'")

    def ref(key: str) -> ModelEntry | None:
        model_id = _opt(raw, key, str, where)
        if model_id is None:
            return None
        if model_id not in models:
            raise CatalogError(f"{where}: {key} '{model_id}' is not a model of the catalog")
        return models[model_id]

    target = ref("target")
    if target is None:
        raise CatalogError(f"{where}: 'target' is missing")
    drafter = ref("drafter")
    needs_file = kind in ("assistant", "draft")
    if needs_file != (drafter is not None):
        raise CatalogError(f"{where}: a '{kind}' pair {'needs' if needs_file else 'takes no'} drafter model")
    if kind == "assistant" and drafter is not None and drafter.role != "assistant":
        raise CatalogError(f"{where}: drafter '{drafter.id}' is not a Gemma 4 assistant")
    if kind == "nextn" and target.arch.nextn_layers <= 0:
        raise CatalogError(f"{where}: target '{target.id}' has no embedded NextN layers")
    if kind == "draft" and drafter is not None:
        tv, dv = target.arch.n_vocab, drafter.arch.n_vocab
        if tv is not None and dv is not None and tv != dv:
            raise CatalogError(f"{where}: draft model vocabulary {dv} differs from the target's {tv}")
    if kind == "assistant" and drafter is not None:
        out, embd = drafter.arch.n_embd_out, target.arch.n_embd
        if out is not None and embd is not None and out != embd:
            raise CatalogError(f"{where}: assistant backbone width {out} differs from the target's {embd}")
    return Pair(
        id=pair_id,
        name=_need(raw, "name", str, where),
        target=target,
        drafter=drafter,
        drafter_kind=cast(DrafterKind, kind),
        default=bool(raw.get("default", False)),
        notes=str(raw.get("notes", "")),
    )


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """Validate the decoded JSON; every problem is a CatalogError naming the entry and the key."""
    if data.get("schema") != 1:
        raise CatalogError(f"unsupported catalog schema {data.get('schema')!r} (expected 1)")
    sources_raw = _opt(data, "sources", dict, "catalog") or {}
    sources = {str(k): _need(sources_raw, k, str, "sources") for k in sources_raw}
    models_raw = _need(data, "models", dict, "catalog")
    models = {mid: _model(mid, _need(models_raw, mid, dict, "models"), sources) for mid in models_raw}
    pairs = tuple(_pair(p, models) for p in _need(data, "pairs", list, "catalog"))
    ids = [p.id for p in pairs]
    if len(set(ids)) != len(ids):
        raise CatalogError("duplicate pair ids")
    if sum(p.default for p in pairs) != 1:
        raise CatalogError("exactly one pair must be marked default")
    return Catalog(models=models, pairs=pairs)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The catalog at `path`, or the bundled resources/catalog.json."""
    if path is None:
        return _bundled()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror or exc}") from None
    return _parse_text(text, str(path))


@cache
def _bundled() -> Catalog:
    text = resources.files("resources").joinpath("catalog.json").read_text(encoding="utf-8")
    return _parse_text(text, "resources/catalog.json")


def _parse_text(text: str, where: str) -> Catalog:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: the top level must be an object")
    return parse_catalog(data)
