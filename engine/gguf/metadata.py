"""Describe and validate a GGUF model file from its metadata alone: no weights are read, llama.cpp is
never called. The engine runs `validate_model_file` before `llama_model_load_from_file`, because
llama.cpp can abort the whole process on a file it does not expect."""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.errors import ModelFileError
from engine.gguf.archs import FORK_MTP_ARCHITECTURES, LLAMA_CPP_ARCHITECTURES
from engine.gguf.limits import hparam_problems, layer_problems, tensor_problems
from engine.gguf.reader import (
    GGUF_MAGIC,
    HEADER_SIZE,
    ArrayRef,
    GGUFFormatError,
    MetaValue,
    ParsedGGUF,
    TensorInfo,
    describe_bytes,
    parse,
    read_array,
)

ModelKind = Literal["plain", "gemma4-assistant", "nextn", "fork-mtp"]

# tokenizer.ggml.model values the pinned llama.cpp accepts (llama_vocab::impl::load in src/llama-vocab.cpp).
NO_VOCAB_MODELS = frozenset({"no_vocab", "none"})
KNOWN_VOCAB_MODELS = (
    frozenset({"llama", "bert", "gpt2", "hybriddna", "whitespace", "t5", "rwkv", "test", "plamo2", "gemma4"})
    | NO_VOCAB_MODELS
)
VOCAB_MODELS_WITH_MERGES = frozenset({"gpt2", "hybriddna", "whitespace", "gemma4"})
BYTE_TOKEN_TYPE = 6  # llama_token_type LLAMA_TOKEN_TYPE_BYTE (tokenizer.ggml.token_type)

# Gemma 4 E2B/E4B assistants converted from Google's checkpoints with their centroid ("ordered embedding")
# LM head keep these tensors. The pinned llama.cpp asks for them with an empty shape
# (src/models/gemma4-assistant.cpp) and its loader fails on any real one ("vector::_M_range_check"); its own
# converter drops them (conversion/gemma.py, Gemma4AssistantModel.filter_tensors) and drafts with the dense
# tied head. Measured with tests/fixtures/published_shapes.py.
CENTROID_HEAD_TENSORS = ("masked_embd_centroids.weight", "masked_embd_ordering")
CENTROID_HEAD_REASON = (
    "it carries a centroid ('ordered embedding') LM head (masked_embd_centroids / masked_embd_ordering), "
    "which the bundled llama.cpp cannot load; use the GGUF converted by upstream llama.cpp (its "
    "convert_hf_to_gguf.py drops those tensors and drafts with the dense head), e.g. the mtp-*.gguf of "
    "the model's GGUF repository"
)

__all__ = ["GGUFInfo", "ModelKind", "TensorInfo", "read_gguf", "validate_model_file"]


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file says about itself. Hyperparameters are None when the file lacks them.

    `head_count`/`head_count_kv` are the maximum over layers when the file stores one value per layer
    (use `arch_get` for the list). `key_length`/`value_length` fall back, as in llama.cpp, to
    embedding_length / head_count. `n_vocab` is the token count (or `<arch>.vocab_size` for files without
    a vocabulary). `tensors` keep file order; `tensor_bytes` is the sum of their data sizes.
    """

    path: Path
    file_size: int
    version: int
    architecture: str
    kind: ModelKind
    name: str | None
    n_tensors: int
    tensor_bytes: int
    n_vocab: int
    vocab_model: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    eot_token_id: int | None
    chat_template: str | None
    block_count: int | None
    embedding_length: int | None
    context_length: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    key_length_swa: int | None
    value_length_swa: int | None
    sliding_window: int | None
    nextn_predict_layers: int
    embedding_length_out: int | None
    alignment: int
    data_offset: int
    tensors: tuple[TensorInfo, ...] = field(repr=False)
    _metadata: Mapping[str, MetaValue] = field(repr=False, compare=False)

    def keys(self) -> tuple[str, ...]:
        """Every metadata key, in file order."""
        return tuple(self._metadata)

    def get(self, key: str, default: object = None) -> object:
        """A metadata value: int, float, bool, str, or a tuple for arrays. Long arrays (the vocabulary)
        are read from the file on demand, so the file must still be there and unchanged."""
        value = self._metadata.get(key, default)
        if isinstance(value, ArrayRef):
            return _read_array_from(self.path, value)
        return value

    def arch_get(self, suffix: str, default: object = None) -> object:
        """`get(f"{architecture}.{suffix}")`, e.g. arch_get("attention.head_count_kv")."""
        return self.get(f"{self.architecture}.{suffix}", default)

    def has(self, key: str) -> bool:
        return key in self._metadata

    def tensor(self, name: str) -> TensorInfo | None:
        return next((t for t in self.tensors if t.name == name), None)

    @property
    def has_centroid_head(self) -> bool:
        """A centroid LM head the pinned llama.cpp refuses (see CENTROID_HEAD_TENSORS); a one-element
        placeholder is what its loader expects, so only real ones count."""
        return any(t.name in CENTROID_HEAD_TENSORS and t.n_elements > 1 for t in self.tensors)

    @property
    def n_trunk_layers(self) -> int | None:
        """The blocks a plain forward pass runs: block_count less the embedded NextN (MTP) blocks, which
        llama.cpp stores last and loads only for an MTP context. An assistant's blocks are all MTP blocks."""
        if self.block_count is None:
            return None
        if self.kind == "gemma4-assistant":
            return self.block_count
        return max(self.block_count - self.nextn_predict_layers, 0)


def _read_array_from(path: Path, ref: ArrayRef) -> tuple[object, ...]:
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return read_array(mm, ref)
    except (OSError, ValueError, GGUFFormatError) as exc:
        raise ModelFileError(path, f"could not read metadata array from the file: {exc}") from exc


def _parse_file(path: Path) -> tuple[int, ParsedGGUF]:
    """Open, size-check and parse `path`; every failure becomes ModelFileError."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(path, "file not found") from None
    except PermissionError:
        raise ModelFileError(path, "permission denied: cannot look at the file") from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot access the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(path, "is a folder, not a model file (choose the .gguf file inside it)")
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO or device would block or read for ever.
        raise ModelFileError(path, "is not a regular file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelFileError(path, "the file is empty (0 bytes)")
            if size < HEADER_SIZE:
                head = f.read(64)
                if not (head[:4] == GGUF_MAGIC or GGUF_MAGIC.startswith(head)):
                    raise ModelFileError(path, f"not a GGUF file: it starts with {describe_bytes(head)}")
                raise ModelFileError(path, f"the file is truncated: {size} bytes, less than a GGUF header")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return size, parse(mm, size)
    except ModelFileError:
        raise
    except GGUFFormatError as exc:
        raise ModelFileError(path, str(exc)) from None
    except PermissionError:
        raise ModelFileError(path, "permission denied: cannot read the file") from None
    except MemoryError:
        raise ModelFileError(path, "the metadata is too large to read (the file is corrupt)") from None
    except (OSError, ValueError, OverflowError, IndexError, UnicodeError) as exc:
        # Last resort: the parser checks bounds itself, this only keeps unforeseen cases typed.
        raise ModelFileError(path, f"cannot read the file: {exc}") from None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return max(int(v) for v in value)  # a per-layer list
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _kind(architecture: str, nextn_layers: int) -> ModelKind:
    if architecture in FORK_MTP_ARCHITECTURES:
        return "fork-mtp"
    if architecture == "gemma4-assistant":
        return "gemma4-assistant"
    return "nextn" if nextn_layers > 0 else "plain"


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read and describe a GGUF file. Raises ModelFileError if it is not a structurally sound GGUF
    (missing, unreadable, wrong magic or version, absurd counts, truncated). Does not judge whether
    llama.cpp supports the model: `validate_model_file` does."""
    p = Path(path)
    size, parsed = _parse_file(p)
    meta = parsed.metadata
    architecture = _str_or_none(meta.get("general.architecture"))
    if architecture is None:
        raise ModelFileError(p, "general.architecture is missing: this GGUF does not say what model it is")

    def arch_int(suffix: str) -> int | None:
        return _int_or_none(meta.get(f"{architecture}.{suffix}"))

    tokens = meta.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayRef):
        n_vocab = tokens.count
    elif isinstance(tokens, tuple):
        n_vocab = len(tokens)
    else:
        n_vocab = arch_int("vocab_size") or 0

    embedding_length = arch_int("embedding_length")
    head_count = arch_int("attention.head_count")
    default_head_dim = embedding_length // head_count if embedding_length and head_count else None
    key_length = arch_int("attention.key_length") or default_head_dim
    nextn_layers = arch_int("nextn_predict_layers") or 0
    return GGUFInfo(
        path=p,
        file_size=size,
        version=parsed.version,
        architecture=architecture,
        kind=_kind(architecture, nextn_layers),
        name=_str_or_none(meta.get("general.name")),
        n_tensors=len(parsed.tensors),
        tensor_bytes=sum(t.n_bytes for t in parsed.tensors),
        n_vocab=n_vocab,
        vocab_model=_str_or_none(meta.get("tokenizer.ggml.model")),
        bos_token_id=_int_or_none(meta.get("tokenizer.ggml.bos_token_id")),
        eos_token_id=_int_or_none(meta.get("tokenizer.ggml.eos_token_id")),
        eot_token_id=_int_or_none(meta.get("tokenizer.ggml.eot_token_id")),
        chat_template=_str_or_none(meta.get("tokenizer.chat_template")),
        block_count=arch_int("block_count"),
        embedding_length=embedding_length,
        context_length=arch_int("context_length"),
        head_count=head_count,
        head_count_kv=arch_int("attention.head_count_kv") or head_count,
        key_length=key_length,
        value_length=arch_int("attention.value_length") or key_length,
        key_length_swa=arch_int("attention.key_length_swa"),
        value_length_swa=arch_int("attention.value_length_swa"),
        sliding_window=arch_int("attention.sliding_window"),
        nextn_predict_layers=nextn_layers,
        embedding_length_out=arch_int("embedding_length_out"),
        alignment=parsed.alignment,
        data_offset=parsed.data_offset,
        tensors=parsed.tensors,
        _metadata=meta,
    )


def _check_architecture(info: GGUFInfo) -> None:
    arch = info.architecture
    if arch in FORK_MTP_ARCHITECTURES:
        raise ModelFileError(
            info.path,
            f"architecture '{arch}' is a Gemma 4 MTP drafter converted for a llama.cpp fork; this llama.cpp "
            "loads only the upstream conversion (architecture 'gemma4-assistant'). Use a GGUF of the "
            "'-assistant' model converted with upstream llama.cpp.",
        )
    if arch == "clip":
        raise ModelFileError(
            info.path, "this is a vision/audio projector (mmproj, architecture 'clip'), not a language model"
        )
    if arch not in LLAMA_CPP_ARCHITECTURES:
        raise ModelFileError(info.path, f"architecture '{arch}' is not supported by the bundled llama.cpp")
    if info.has_centroid_head:
        raise ModelFileError(info.path, f"this Gemma 4 assistant cannot be used: {CENTROID_HEAD_REASON}")
    for suffix in ("context_length", "embedding_length", "block_count"):
        if _int_or_none(info.arch_get(suffix)) is None:
            raise ModelFileError(info.path, f"required key '{arch}.{suffix}' is missing or not a number")


def _check_vocab(info: GGUFInfo) -> None:
    model = info.vocab_model
    if model is None:
        raise ModelFileError(info.path, "the file has no tokenizer (tokenizer.ggml.model is missing)")
    if model not in KNOWN_VOCAB_MODELS:
        raise ModelFileError(info.path, f"unknown tokenizer type '{model}' (tokenizer.ggml.model)")
    if model in NO_VOCAB_MODELS:
        return  # llama.cpp accepts these: e.g. embedding-only or converted-without-vocab files.
    tokens = info._metadata.get("tokenizer.ggml.tokens")
    is_string_array = (isinstance(tokens, ArrayRef) and tokens.elem_type == 8) or (
        isinstance(tokens, tuple) and all(isinstance(t, str) for t in tokens)
    )
    if tokens is None:
        raise ModelFileError(info.path, "the file has no vocabulary (tokenizer.ggml.tokens is missing)")
    if not is_string_array or info.n_vocab == 0:
        raise ModelFileError(info.path, "tokenizer.ggml.tokens is not a non-empty list of strings")
    if model in VOCAB_MODELS_WITH_MERGES and not info.has("tokenizer.ggml.merges"):
        raise ModelFileError(info.path, f"the '{model}' tokenizer needs tokenizer.ggml.merges (missing)")
    if model == "bert":
        # A WordPiece vocabulary has no byte tokens: llama.cpp aborts ("fatal error", token_to_byte in
        # src/llama-vocab.cpp) the first time it turns one into text.
        types = info.get("tokenizer.ggml.token_type")
        if isinstance(types, tuple) and BYTE_TOKEN_TYPE in types:
            raise ModelFileError(
                info.path,
                "the 'bert' (WordPiece) tokenizer has byte tokens, which it cannot have (corrupt file)",
            )


def split_shard_index(path: str | os.PathLike[str]) -> int:
    """`split.no` of a split model's shard (0 for the first shard or an unsplit file). Only the first
    shard carries the model's metadata, so later shards are checked for structure alone."""
    _, parsed = _parse_file(Path(path))
    value = parsed.metadata.get("split.no", 0)
    return value if isinstance(value, int) else 0


def validate_model_file(path: str | os.PathLike[str]) -> GGUFInfo:
    """read_gguf + the checks that keep llama.cpp from refusing or crashing on the file: an architecture
    this llama.cpp knows (fork-only MTP conversions are refused), its required hyperparameters, and a
    usable tokenizer. Returns the GGUFInfo; raises ModelFileError(path, problem) otherwise."""
    info = read_gguf(path)
    check_loadable(info)
    return info


def check_loadable(info: GGUFInfo) -> None:
    """validate_model_file's checks on a GGUFInfo already read (a file's header is read once per load)."""
    _check_architecture(info)
    _check_vocab(info)
    _check_limits(info)


def _check_limits(info: GGUFInfo) -> None:
    """Values llama.cpp would abort on rather than refuse (engine.gguf.limits)."""
    arch = info.architecture
    problem = (
        layer_problems(
            arch, _int_or_none(info.arch_get("block_count")), info.nextn_predict_layers, info.tensors
        )
        or hparam_problems(arch, ((k, v) for k, v in info._metadata.items() if not isinstance(v, ArrayRef)))
        or tensor_problems(info.tensors)
    )
    if problem:
        raise ModelFileError(info.path, problem)
