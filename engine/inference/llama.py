"""Thin, typed wrapper over llama-cpp-python's low-level API: backend, model, context, batch.

Everything that touches llama.cpp pointers lives here (and in the MTP drafter, which needs the experimental
API). Files are validated from GGUF metadata before llama.cpp sees them, because llama.cpp can abort the
process on a bad file. KV rollback has exactly one implementation: `KVSequence.rewind` (over
`Context.truncate`), which keeps a context's cache and the list of tokens it holds in step, and knows how far
the model's memory can go back (`Context.rollback_limit`).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import llama_cpp as L
import numpy as np
import numpy.typing as npt

from engine.errors import DecodeError, KVRollbackError, ModelLoadError
from engine.fit.hardware import load_backends
from engine.store.names import display_name
from engine.threads import recommended_threads

log = logging.getLogger("tandem.llama")

_backend_lock = threading.Lock()
_backend_ready = False
_LOG_LINES: collections.deque[str] = collections.deque(maxlen=400)
_log_partial: list[str] = []
_log_level = 2

# llama_get_logits_ith returning the address as an int: the binding's own returns a ctypes pointer, which
# costs a cast per token to key a view on. lib[name] makes a new function object, leaving the binding's alone.
_logits_ith = L.llama_cpp._lib["llama_get_logits_ith"]
_logits_ith.argtypes = [ctypes.c_void_p, ctypes.c_int32]
_logits_ith.restype = ctypes.c_void_p
MAX_LOGIT_VIEWS = 512  # cached row views; more than the widest verify batch (n_batch rows)

# ggml.h: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continuation of the previous line).
_LOG_LEVELS = {0: logging.CRITICAL, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO, 4: logging.ERROR}


@L.llama_log_callback  # type: ignore[untyped-decorator,unused-ignore]
def _log_callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    # llama.cpp logs in fragments (level 5 = continuation); assemble lines so they can be searched later.
    global _log_level
    if level != 5:
        _log_level = level
    _log_partial.append(text.decode("utf-8", errors="replace"))
    if not _log_partial[-1].endswith("\n"):
        return
    line = "".join(_log_partial).rstrip("\n")
    _log_partial.clear()
    _LOG_LINES.append(line)
    log.log(_LOG_LEVELS.get(_log_level, logging.DEBUG), "%s", line)


def ensure_backend() -> None:
    """Initialise llama.cpp once per process and route its log into Python logging (quiet by default)."""
    global _backend_ready
    with _backend_lock:
        if _backend_ready:
            return
        L.llama_log_set(_log_callback, ctypes.c_void_p(0))
        load_backends()
        _backend_ready = True


def recent_log(n: int = 50) -> list[str]:
    """The last llama.cpp log lines: used to explain failures and to read allocation sizes."""
    return list(_LOG_LINES)[-n:]


# What llama.cpp's log says about a failure, most specific first: an assert or abort, the loader's
# "error loading model: <reason>", any error, any failure. Generic summaries ("failed to load model") come
# last because the line above them says why.
_REASON_MARKERS = ("ggml_assert", "ggml_abort", "error loading model", "error", "unsupported", "failed")
_GENERIC = ("failed to load model", "failed to decode", "failed to initialize batch")


def log_reason(lines: Sequence[str]) -> str:
    """llama.cpp's own reason for a failure, from its log lines (the most telling line, stripped; a source
    path in an assert line cut to the file name). Quote it through an error, which bounds and escapes it."""
    lines = [ln.strip() for ln in lines if ln.strip()]
    if not lines:
        return "llama.cpp logged no reason"
    for marker in _REASON_MARKERS:
        for line in reversed(lines):
            low = line.lower()
            if marker in low and not any(low.endswith(g) for g in _GENERIC):
                return _short_source(line)
    return _short_source(lines[-1])


def _short_source(line: str) -> str:
    head, sep, rest = line.partition(": ")
    if sep and ("/" in head or "\\" in head) and ":" in head:  # "/long/path/ops.cpp:135: GGML_ASSERT(..)"
        return f"{Path(head.rsplit(':', 1)[0]).name}: {rest}"
    return line


def _failure_reason() -> str:
    """llama.cpp's own reason for the last failure in this process."""
    return log_reason(recent_log(40))


def _log_details() -> str:
    return "\n".join(recent_log(30))


def default_threads() -> int:
    """Physical cores (one fewer while other programs keep the CPU busy): engine.threads."""
    return recommended_threads()


KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}


class Model:
    """A loaded llama_model plus its vocabulary helpers. Call `close()` (or use `with`)."""

    def __init__(
        self,
        path: Path,
        *,
        n_gpu_layers: int = 0,
        load_mtp: bool = False,
        progress: Callable[[float], bool] | None = None,
    ) -> None:
        ensure_backend()
        self.path = Path(path)
        params = L.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.load_mtp = load_mtp
        self._progress_cb: Any = None
        if progress is not None:

            def _on_progress(value: float, _user: ctypes.c_void_p) -> bool:
                return bool(progress(float(value)))

            self._progress_cb = L.llama_progress_callback(_on_progress)
            params.progress_callback = self._progress_cb
        ptr = L.llama_model_load_from_file(str(self.path).encode(), params)
        if not ptr:
            raise ModelLoadError(
                f"{self.path.name}: llama.cpp could not load the model ({_failure_reason()})",
                path=self.path,
                details=_log_details(),
            )
        self.ptr = ptr
        self.n_gpu_layers = n_gpu_layers
        self.load_mtp = load_mtp  # NextN drafting must know: an MTP context without the layers aborts
        self.vocab = L.llama_model_get_vocab(ptr)
        self.n_vocab: int = L.llama_vocab_n_tokens(self.vocab)
        self.n_embd: int = L.llama_model_n_embd(ptr)
        self.n_ctx_train: int = L.llama_model_n_ctx_train(ptr)
        self.n_swa: int = L.llama_model_n_swa(ptr)
        self.bos: int = L.llama_vocab_bos(self.vocab)
        self.eos: int = L.llama_vocab_eos(self.vocab)
        self.add_bos: bool = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.vocab_type: int = L.llama_vocab_type(self.vocab)
        self.size_bytes: int = L.llama_model_size(ptr)
        # Recurrent and hybrid models keep a running state instead of (or beside) a KV cache: it can only be
        # rolled back through snapshots (Context.rollback_limit).
        self.recurrent: bool = bool(L.llama_model_is_recurrent(ptr) or L.llama_model_is_hybrid(ptr))
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = L.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            L.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    @property
    def chat_template(self) -> str | None:
        return self.meta("tokenizer.chat_template")

    @property
    def name(self) -> str:
        """The name a person reads: the catalog's, or one cleaned from the file (engine.store.names)."""
        return display_name(self.path, self.meta("general.name"))

    @property
    def architecture(self) -> str:
        return self.meta("general.architecture") or "unknown"

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a token contributes to visible text (control tokens render as nothing)."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        piece = buf.raw[:n]
        self._pieces[token] = piece
        return piece

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        """The vocabulary entry itself (used to compare vocabularies of two models)."""
        raw = L.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def is_eog(self, token: int) -> bool:
        cached = self._eog.get(token)
        if cached is None:
            cached = bool(L.llama_vocab_is_eog(self.vocab, token))
            self._eog[token] = cached
        return cached

    def close(self) -> None:
        if getattr(self, "ptr", None):
            L.llama_model_free(self.ptr)
            self.ptr = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Batch:
    """A reusable llama_batch for token input (one sequence)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._batch: Any = L.llama_batch_init(capacity, 0, 1)  # ctypes struct: untyped for mypy

    def fill(self, tokens: Sequence[int], pos0: int, logits: str) -> Any:
        """logits: "all" (every row, for verification), "last", or "none"."""
        n = len(tokens)
        if n > self.capacity:
            raise ValueError(f"batch of {n} tokens exceeds capacity {self.capacity}")
        b = self._batch
        b.n_tokens = n
        for i, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = logits == "all"
        if logits == "last" and n:
            b.logits[n - 1] = True
        return b

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            L.llama_batch_free(self._batch)
            self._batch = None


class Context:
    """A llama_context on one sequence (seq 0). Tracks nothing about tokens: sessions do that."""

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 4096,
        n_batch: int = 512,
        n_threads: int | None = None,
        flash_attn: bool | None = None,
        kv_type: str = "f16",
        n_rs_seq: int = 0,
        embeddings_nextn: bool = False,
        extra: Callable[[Any], None] | None = None,
    ) -> None:
        self.model = model
        params = L.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, 512)
        params.n_seq_max = 1
        threads = n_threads or default_threads()
        params.n_threads = threads
        params.n_threads_batch = threads
        if flash_attn is not None:
            params.flash_attn_type = 1 if flash_attn else 0
        if kv_type not in KV_TYPES:
            raise ValueError(f"unknown KV cache type {kv_type!r}; choose one of {', '.join(KV_TYPES)}")
        params.type_k = KV_TYPES[kv_type]
        params.type_v = KV_TYPES[kv_type]
        params.no_perf = True
        if n_rs_seq:
            params.n_rs_seq = n_rs_seq
        if extra is not None:
            extra(params)
        ptr = L.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise ModelLoadError(
                f"{model.path.name}: llama.cpp could not create a context of {n_ctx} tokens "
                f"({_failure_reason()})",
                path=model.path,
                details=_log_details(),
            )
        self.ptr = ptr
        self.n_ctx: int = L.llama_n_ctx(ptr)
        self.n_batch: int = L.llama_n_batch(ptr)
        self.n_threads = threads
        self.memory = L.llama_get_memory(ptr)
        # How many of the last decoded tokens the memory can drop: None = any (attention KV cache); for a
        # recurrent/hybrid model, the state snapshots llama.cpp keeps (n_rs_seq, 0 when the architecture
        # has no rollback: llama.cpp `src/llama-context.cpp` clamps it).
        self.rollback_limit: int | None = int(L.llama_n_rs_seq(ptr)) if model.recurrent else None
        self._batch = Batch(self.n_batch)
        self.last_chunk = 0  # tokens in the last llama_decode call (snapshots only cover those)
        self._n_vocab = model.n_vocab
        self._logit_views: dict[int, npt.NDArray[np.float32]] = {}  # row address -> view (see logits())

    def decode(self, tokens: Sequence[int], pos0: int, logits: str = "last") -> None:
        """Evaluate tokens at positions pos0.. (split into n_batch chunks; logits only where asked)."""
        step = self.n_batch
        for start in range(0, len(tokens), step):
            chunk = tokens[start : start + step]
            is_last_chunk = start + step >= len(tokens)
            mode = logits if is_last_chunk or logits == "all" else "none"
            if logits == "all" and len(tokens) > step:
                raise ValueError("logits for every row need the batch to fit n_batch")
            rc = L.llama_decode(self.ptr, self._batch.fill(chunk, pos0 + start, mode))
            self.last_chunk = len(chunk)
            if rc != 0:
                raise DecodeError(f"llama_decode failed with status {rc} at position {pos0 + start}")

    def synchronize(self) -> None:
        """Wait for the last decode to finish (GPU backends compute asynchronously), so timings are real."""
        L.llama_synchronize(self.ptr)

    def logits(self, i: int) -> npt.NDArray[np.float32]:
        """Logits of output row i of the last decode (a view: copy it before the next decode)."""
        address = _logits_ith(self.ptr, i)
        if not address:
            raise DecodeError(f"no logits for output row {i}")
        # llama.cpp reuses its output buffer, so a row's address recurs decode after decode: a view made
        # once per address saves numpy.ctypeslib's view per token: 40-50 us right after a decode, with the
        # interpreter's caches cold (benchmarks/loop_overhead.py), 0.5 % of a SmolLM2 token on this CPU.
        view = self._logit_views.get(address)
        if view is None:
            if len(self._logit_views) >= MAX_LOGIT_VIEWS:
                self._logit_views.clear()  # the buffer moved (it grows with the widest verify batch)
            row = (ctypes.c_float * self._n_vocab).from_address(address)
            view = self._logit_views[address] = np.ctypeslib.as_array(row)
        return view

    def truncate(self, n_keep: int) -> None:
        """Remove every position >= n_keep from the KV cache. The one rollback path of the engine."""
        ok = L.llama_memory_seq_rm(self.memory, 0, n_keep, -1)
        if not ok:
            raise KVRollbackError(f"llama.cpp refused to remove KV positions from {n_keep} on")

    def pos_min(self) -> int:
        return int(L.llama_memory_seq_pos_min(self.memory, 0))

    def clear(self) -> None:
        L.llama_memory_clear(self.memory, True)

    def save_state(self) -> bytes:
        """The recurrent part of sequence 0's memory (llama.cpp's PARTIAL_ONLY state): a checkpoint that
        `restore_state` puts back; the attention KV cache is not included (positions are dropped there)."""
        flags = L.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
        size = L.llama_state_seq_get_size_ext(self.ptr, 0, flags)
        buf = (ctypes.c_uint8 * size)()
        written = L.llama_state_seq_get_data_ext(self.ptr, buf, size, 0, flags)
        if written != size:
            raise KVRollbackError(f"llama.cpp saved {written} of {size} bytes of the recurrent state")
        return bytes(buf)

    def restore_state(self, state: bytes) -> None:
        flags = L.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if L.llama_state_seq_set_data_ext(self.ptr, buf, len(state), 0, flags) != len(state):
            raise KVRollbackError("llama.cpp could not restore the recurrent-state checkpoint")

    def close(self) -> None:
        if getattr(self, "ptr", None):
            self._batch.close()
            L.llama_free(self.ptr)
            self.ptr = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class KVSequence:
    """A context and the tokens its KV cache holds at positions 0..len-1, kept in step: decoding appends,
    `rewind` drops both the cache positions and the tokens. The one place the engine rolls a cache back.

    One rule decides how far back the memory can go. An attention KV cache drops any suffix. A recurrent or
    hybrid model's state goes back through llama.cpp's snapshots: at most `ctx.rollback_limit` tokens, only
    tokens of the last decode call (snapshots of older tokens are overwritten: llama.cpp would silently
    read stale ones), and once per decode. Deeper than that, `rewind` restores the last `checkpoint()` and
    decodes forward again; without one it raises KVRollbackError (the caller starts over).
    """

    def __init__(self, ctx: Context, tokens: list[int] | None = None) -> None:
        self.ctx = ctx
        self.tokens: list[int] = tokens if tokens is not None else []
        self._droppable = 0  # tokens a snapshot rollback may drop right now
        self._checkpoint: tuple[int, bytes] | None = None  # (length, recurrent state) of a checkpoint()

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def rollback_limit(self) -> int | None:
        """The longest suffix one decode can later drop (None: any); a draft must not be longer."""
        return self.ctx.rollback_limit

    def decode(self, tokens: Sequence[int], logits: str = "last") -> None:
        """Evaluate `tokens` at the next positions (see Context.decode for `logits`)."""
        self.ctx.decode(tokens, len(self.tokens), logits)
        self.tokens.extend(tokens)
        if self.ctx.rollback_limit is not None:
            self._droppable = min(self.ctx.rollback_limit, max(0, self.ctx.last_chunk - 1))

    def can_rewind(self, n_keep: int) -> bool:
        """Whether rewind(n_keep) can drop the cache positions directly (no checkpoint, no re-decode)."""
        depth = len(self.tokens) - n_keep
        return depth <= 0 or self.ctx.rollback_limit is None or depth <= self._droppable

    def checkpoint(self) -> None:
        """Remember the recurrent state at the current length, so a later rewind to this length or beyond
        does not have to start over. Does nothing for an attention-only model (it can always go back)."""
        if self.ctx.rollback_limit is not None:
            self._checkpoint = (len(self.tokens), self.ctx.save_state())

    def rewind(self, n_keep: int) -> None:
        """Keep the first n_keep tokens; raises KVRollbackError if the memory cannot go back that far."""
        if n_keep >= len(self.tokens):
            return
        if self.can_rewind(n_keep):
            self.ctx.truncate(n_keep)
            del self.tokens[n_keep:]
            self._droppable = 0  # llama.cpp: a snapshot rollback is single-use until the next decode
            if self._checkpoint is not None and self._checkpoint[0] > n_keep:
                self._checkpoint = None  # it holds tokens that are gone
            return
        mark = self._checkpoint
        if mark is None or mark[0] > n_keep:
            raise KVRollbackError(
                f"the model's recurrent state can go back at most {self._droppable} token(s) here, "
                f"not {len(self.tokens) - n_keep}"
            )
        length, state = mark
        tail = self.tokens[length:n_keep]
        self.ctx.restore_state(state)
        self.ctx.truncate(length)  # the attention part of a hybrid cache; the state is already there
        del self.tokens[length:]
        self._droppable = 0
        if tail:
            self.decode(tail, "last")

    def clear(self) -> None:
        self.ctx.clear()
        self.tokens.clear()
        self._droppable = 0
        self._checkpoint = None
