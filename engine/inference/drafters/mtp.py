"""MTP drafter: multi-token-prediction heads that read the target's hidden state.

Two flavours share one class (call sequence: docs/llama-cpp-mtp.md,
scripts/mtp_raw_sequence.py proves it standalone):

- Gemma 4 assistant (separate `gemma4-assistant` file): its MTP context is created with `ctx_other=<target
  ctx>` and reads the target's KV cache. Every draft step runs at the same position, nothing is written to
  any KV: no catch-up, no draft rollback.
- Embedded NextN heads (qwen35 and friends): an MTP context on the target model itself (loaded with
  `load_mtp=True`) with its own KV. Every target batch is fed to it (catch-up) and positions the target
  drops are dropped there too.

Both take as input, per token, the target's hidden row of the token *before* it. The target context emits
those rows (`llama_set_embeddings_nextn(target, on, masked=False)`) and the drafter copies them out in
`observe`, right after each target decode, before the buffer is reused. Verification stays in the
generation loop: whatever the drafter proposes, the output is the target's own.

The experimental `llama_cpp.llama_cpp_ext` module is only imported here (pinned llama-cpp-python 0.3.36).
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as L
import numpy as np
import numpy.typing as npt
from llama_cpp import llama_cpp_ext as X

from engine.compat.mtp import MTPPlan, mtp_memory, plan_mtp
from engine.config import MODEL_DRAFT_K_MAX, LoadConfig, SpecParams
from engine.errors import DecodeError, ModelLoadError
from engine.gguf.metadata import GGUFInfo, check_loadable
from engine.inference.drafters.base import Draft
from engine.inference.llama import Context, Model

ROW_HISTORY = 64  # target hidden rows kept, by position: enough to re-feed a verify batch or a re-decode
# NextN: kept target tokens held back from the MTP KV until a draft needs them. While the controller keeps
# speculation off, feeding each token as it comes costs a decode of the NextN layer per token; held back,
# they go in as one batch when drafting resumes (or when this many are waiting).
MAX_BACKLOG = 256


@dataclass
class MTPStats:
    """The drafter's own counters (the loop's SpecStats count acceptance; these count MTP work)."""

    draft_decodes: int = 0  # single-row decodes of the MTP context while drafting
    draft_s: float = 0.0
    catchup_rows: int = 0  # NextN: target tokens fed to the MTP KV
    catchup_s: float = 0.0
    mtp_rollbacks: int = 0  # NextN: truncations of the MTP KV
    p_min_stops: int = 0  # drafts cut short by the confidence cutoff
    missing_rows: int = 0  # catch-up rows fed with a zero hidden state (target row no longer known)
    decode_failures: int = 0


class _HiddenBatch:
    """A legacy llama_batch carrying a token *and* a hidden row per entry (what MTP contexts take).

    llama_batch_init allocates `embd` only when n_embd > 0, so the token array is ours; it is detached again
    before llama_batch_free, which would otherwise free memory it does not own."""

    def __init__(self, capacity: int, n_embd: int) -> None:
        self.capacity = capacity
        self.n_embd = n_embd
        self._batch: Any = L.llama_batch_init(capacity, n_embd, 1)
        self._tokens = (L.llama_token * capacity)()
        self._batch.token = self._tokens
        self._embd = np.ctypeslib.as_array(self._batch.embd, shape=(capacity, n_embd))

    def fill(
        self,
        tokens: Sequence[int],
        positions: Sequence[int],
        rows: npt.NDArray[np.float32],
        logits_last: bool,
    ) -> Any:
        n = len(tokens)
        if n > self.capacity:
            raise ValueError(f"MTP batch of {n} rows exceeds capacity {self.capacity}")
        b = self._batch
        b.n_tokens = n
        for i, (tok, pos) in enumerate(zip(tokens, positions, strict=True)):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = logits_last and i == n - 1
        self._embd[:n] = rows
        return b

    def close(self) -> None:
        if self._batch is not None:
            self._batch.token = ctypes.POINTER(L.llama_token)()
            L.llama_batch_free(self._batch)
            self._batch = None


def _top_prob(logits: npt.NDArray[np.float32]) -> float:
    m = float(logits.max())
    return 1.0 / float(np.exp(logits - m).sum())


# Recurrent-state snapshots asked of a NextN hybrid target; drafts are capped at this length (the drafter
# reads the context's actual value). llama-server uses its n-max, 3, the default k_max.
RS_SNAPSHOTS = MODEL_DRAFT_K_MAX


def mtp_load_settings(
    config: LoadConfig, target_info: GGUFInfo, assistant_info: GGUFInfo | None
) -> MTPPlan:
    """Before the target is loaded: whether MTP will run and how the target must be loaded for it
    (`load_mtp`, `n_rs_seq`). A named assistant (`assistant_info`, read from config.assistant_path) is
    checked against the target here, from metadata, so a mismatched pair raises IncompatibleDrafterError
    (rule named) before llama.cpp sees either file."""
    if config.drafter not in ("auto", "mtp"):
        return MTPPlan(None, "MTP not selected")
    plan = plan_mtp(target_info, assistant_info, RS_SNAPSHOTS)  # pair rules first: they name the problem
    if assistant_info is not None:
        check_loadable(assistant_info)  # then the generic checks (tokenizer, keys)
    return plan


def make_mtp_drafter(
    config: LoadConfig,
    model: Model,
    ctx: Context,
    plan: MTPPlan,
    target_info: GGUFInfo,
    assistant_info: GGUFInfo | None,
) -> tuple[MTPDrafter | None, str | None, int]:
    """The session's hook (engine.inference.session._make_drafter): (drafter, why not, bytes it adds). The
    target was loaded with `plan` (mtp_load_settings)'s load_mtp / n_rs_seq."""
    if plan.kind == "nextn" and not model.load_mtp:
        return None, "the model was loaded without its MTP layers", 0
    drafter, why = open_mtp_drafter(
        plan, model, ctx, assistant_path=config.assistant_path, n_gpu_layers=config.n_gpu_layers
    )
    if drafter is None:
        return None, why, 0
    memory = mtp_memory(target_info, assistant_info, ctx.n_ctx, config.kv_type)
    return drafter, None, memory.total_bytes


def open_mtp_drafter(
    plan: MTPPlan,
    target: Model,
    target_ctx: Context,
    *,
    assistant_path: Path | None = None,
    p_min: float = 0.0,
    n_gpu_layers: int = 0,
) -> tuple[MTPDrafter | None, str | None]:
    """The drafter for `plan` (engine.compat.mtp.plan_mtp, which already validated any assistant against the
    target from metadata), or (None, why MTP cannot run) so the caller falls back and says so."""
    if plan.kind is None:
        return None, plan.reason
    assistant: Model | None = None
    try:
        if plan.kind == "gemma4-assistant":
            if assistant_path is None:
                return None, "MTP needs the Gemma 4 -assistant file"
            assistant = Model(assistant_path, n_gpu_layers=n_gpu_layers, load_mtp=True)
        return MTPDrafter(target, target_ctx, assistant=assistant, p_min=p_min), None
    except ModelLoadError as exc:
        if assistant is not None:
            assistant.close()
        return None, f"MTP context creation failed: {exc}"


class MTPDrafter:
    """Drafter protocol implementation for both MTP flavours (see the module docstring).

    `assistant`: the loaded Gemma 4 assistant (shared-KV flavour; pair checked with
    engine.compat.mtp.check_assistant_pair before it was loaded). None: the target's own NextN heads, which
    requires `target` loaded with load_mtp=True and, for recurrent/hybrid targets, `target_ctx` created with
    n_rs_seq >= the longest draft. The drafter owns `assistant` and its MTP context; it must be closed
    before the target context (the MTP context points into it).
    """

    cheap = False  # every drafted token is a decode of the MTP context
    default_k_max = MODEL_DRAFT_K_MAX

    def __init__(
        self,
        target: Model,
        target_ctx: Context,
        *,
        assistant: Model | None = None,
        p_min: float = 0.0,
        n_threads: int | None = None,
    ) -> None:
        self.target = target
        self.target_ctx = target_ctx
        self.assistant = assistant
        self.shared = assistant is not None
        self.p_min = self.default_p_min = p_min
        self.stats = MTPStats()
        self.name = "MTP (Gemma 4 assistant)" if self.shared else "MTP (NextN)"
        draft_model = assistant if assistant is not None else target
        if not self.shared and not getattr(target, "load_mtp", False):
            # An MTP context on a NextN model loaded without its MTP layers aborts the process.
            raise ModelLoadError(f"{target.path}: NextN drafting needs the model loaded with its MTP layers")
        if L.llama_model_n_layer_nextn(draft_model.ptr) <= 0:
            raise ModelLoadError(f"{draft_model.path}: the model has no MTP layers")
        # Recurrent/hybrid targets roll back through per-position state snapshots: never draft more tokens
        # than the target context keeps snapshots for, or the verify step could not drop the rejected ones.
        self.max_draft: int | None = None
        if L.llama_model_is_recurrent(target.ptr) or L.llama_model_is_hybrid(target.ptr):
            self.max_draft = int(L.llama_n_rs_seq(target_ctx.ptr))
            if self.max_draft <= 0:
                raise ModelLoadError(
                    f"{target.path}: unsupported memory layout for speculation (recurrent state without "
                    "rollback snapshots: create the target context with n_rs_seq >= the draft length)"
                )
        n_embd_out = int(L.llama_model_n_embd_out(target.ptr)) or target.n_embd
        self.n_embd = n_embd_out
        if self.shared and int(L.llama_model_n_embd_out(draft_model.ptr)) != n_embd_out:
            raise ModelLoadError("the assistant's output hidden size does not match the target")

        def mtp_params(p: Any) -> None:
            p.ctx_type = L.LLAMA_CONTEXT_TYPE_MTP
            p.n_rs_seq = 0
            p.n_outputs_max = 1  # one output row per draft decode; catch-up rows need none
            if self.shared:
                p.ctx_other = target_ctx.ptr

        self.ctx = Context(
            draft_model,
            n_ctx=target_ctx.n_ctx,
            n_batch=target_ctx.n_batch,
            n_threads=n_threads or target_ctx.n_threads,
            extra=mtp_params,
        )
        other = X.llama_get_ctx_other(self.ctx.ptr)
        if self.shared and other != target_ctx.ptr:
            self.ctx.close()
            raise ModelLoadError("llama.cpp did not attach the assistant to the target's KV cache")
        self._batch = _HiddenBatch(self.ctx.n_batch, n_embd_out)
        X.llama_set_embeddings_nextn(target_ctx.ptr, True, False)  # a row for every target batch token
        X.llama_set_embeddings_nextn(self.ctx.ptr, True, True)  # rows for output rows only
        self._rows: dict[int, npt.NDArray[np.float32]] = {}  # target hidden row by position
        self._mtp_len = 0  # NextN: positions 0.._mtp_len-1 are in the MTP KV
        self._in_step = True  # NextN: False after a gap the MTP KV cannot bridge (until reset / pos 0)
        self._backlog_pos0 = 0  # NextN: kept target tokens not yet in the MTP KV, from this position
        self._backlog_tokens: list[int] = []
        self._backlog_rows: list[npt.NDArray[np.float32]] = []
        self._backlog_prev: npt.NDArray[np.float32] | None = None  # the target row before the backlog

    # --- weights / memory ------------------------------------------------------------------------------
    @property
    def weight_bytes(self) -> int:
        """Bytes of weights this drafter adds (the assistant file; NextN layers are inside the target)."""
        return self.assistant.size_bytes if self.assistant is not None else 0

    # --- protocol ----------------------------------------------------------------------------------------
    def configure(self, spec: SpecParams) -> None:
        self.p_min = self.default_p_min if spec.p_min is None else spec.p_min

    def draft(self, context: Sequence[int], k: int) -> Draft:
        if self.max_draft is not None:
            k = min(k, self.max_draft)
        if k <= 0 or not context:
            return Draft(())
        n_past = len(context) - 1  # position of context[-1], the last token, not yet decoded by the target
        h = self._rows.get(n_past - 1)
        if h is None:
            return Draft((), "MTP: the target's hidden state for the last token is unknown")
        catch_up_s = 0.0
        if not self.shared:
            catch_up_s = self.catch_up()
            if not self._in_step or self._mtp_len < n_past:
                return Draft((), "MTP: the NextN context is behind the target")
            if self._mtp_len > n_past:
                self._truncate(n_past)
        t0 = time.perf_counter()
        out: list[int] = []
        reason: str | None = None
        token = int(context[-1])
        for i in range(k):
            pos = n_past if self.shared else n_past + i
            try:
                self._decode([token], [pos], h[None, :], logits=True)
                self.stats.draft_decodes += 1
                logits = self.ctx.logits(0)
                if self.p_min > 0.0 and _top_prob(logits) < self.p_min:
                    self.stats.p_min_stops += 1
                    reason = f"MTP confidence below p_min={self.p_min}"
                    break
                token = int(np.argmax(logits))
                out.append(token)
                if i + 1 < k:
                    h = self._draft_row()
            except DecodeError:
                self.stats.decode_failures += 1
                reason = "MTP: draft decode failed"
                break
        if not self.shared and self._mtp_len > n_past:
            self._truncate(n_past)  # drafted rows leave the MTP KV; catch-up re-adds the verified ones
        self.stats.draft_s += time.perf_counter() - t0
        return Draft(tuple(out), reason if len(out) < k else None, catch_up_s=catch_up_s)

    def observe(self, batch: Sequence[int], pos0: int, n_kept: int) -> None:
        if n_kept <= 0:
            return
        ptr = X.llama_get_embeddings_nextn(self.target_ctx.ptr)
        if not ptr:
            self._rows.clear()
            return
        rows = np.ctypeslib.as_array(ptr, shape=(len(batch), self.n_embd))[:n_kept].copy()
        for i in range(n_kept):
            self._rows[pos0 + i] = rows[i]
        for pos in [p for p in self._rows if p < pos0 + n_kept - ROW_HISTORY or p >= pos0 + n_kept]:
            del self._rows[pos]
        if not self.shared:
            self._hold_back(batch[:n_kept], pos0, rows)

    def reset(self) -> None:
        self._rows.clear()
        self._backlog_tokens.clear()
        self._backlog_rows.clear()
        if not self.shared:
            self.ctx.clear()
        self._mtp_len = 0
        self._in_step = True

    def close(self) -> None:
        if getattr(self, "ctx", None) is None:
            return
        if self.target_ctx.ptr:
            X.llama_set_embeddings_nextn(self.target_ctx.ptr, False, False)
        self._batch.close()
        self.ctx.close()
        self.ctx = None  # type: ignore[assignment]
        if self.assistant is not None:
            self.assistant.close()

    # --- NextN KV ------------------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """NextN: kept target tokens waiting to enter the MTP KV."""
        return len(self._backlog_tokens)

    def catch_up(self) -> float:
        """NextN: feed the held-back target tokens to the MTP KV, in one batch; the seconds it took."""
        if not self._backlog_tokens:
            return 0.0
        tokens, pos0 = self._backlog_tokens, self._backlog_pos0
        rows = self._backlog_rows[0] if len(self._backlog_rows) == 1 else np.vstack(self._backlog_rows)
        self._backlog_tokens, self._backlog_rows = [], []
        t0 = time.perf_counter()
        self._catch_up(tokens, pos0, rows, self._backlog_prev)
        return time.perf_counter() - t0

    def _hold_back(self, tokens: Sequence[int], pos0: int, rows: npt.NDArray[np.float32]) -> None:
        """Add kept target tokens to the backlog. A batch that does not continue it (the target went back,
        or skipped ahead) first drops what it replaces and feeds the rest, so the MTP KV sees what the
        target's KV holds, in order."""
        end = self._backlog_pos0 + len(self._backlog_tokens)
        if self._backlog_tokens and pos0 != end:
            keep = max(0, pos0 - self._backlog_pos0)
            if keep < len(self._backlog_tokens):
                self._trim_backlog(keep)
            if self._backlog_pos0 + len(self._backlog_tokens) != pos0:
                self.catch_up()
        if not self._backlog_tokens:
            # The row before it now: a long backlog outlives the ROW_HISTORY rows kept by position.
            self._backlog_pos0, self._backlog_prev = pos0, self._rows.get(pos0 - 1)
        self._backlog_tokens.extend(int(t) for t in tokens)
        self._backlog_rows.append(rows)
        if len(self._backlog_tokens) >= MAX_BACKLOG:
            self.catch_up()

    def _trim_backlog(self, keep: int) -> None:
        rows = np.vstack(self._backlog_rows)[:keep] if keep else None
        del self._backlog_tokens[keep:]
        self._backlog_rows = [rows] if rows is not None else []

    def _catch_up(
        self,
        tokens: Sequence[int],
        pos0: int,
        rows: npt.NDArray[np.float32],
        prev: npt.NDArray[np.float32] | None,
    ) -> None:
        """Feed target tokens to the MTP KV: position p holds (token_p, target row of p-1); `prev` is the
        row of pos0 - 1."""
        if pos0 == 0:
            self._in_step = True
        if self._mtp_len > pos0:
            self._truncate(pos0)  # the target went back (prompt cache reuse, regenerate)
        if self._mtp_len < pos0 or not self._in_step:
            self._in_step = False  # a gap: llama.cpp requires consecutive positions
            return
        if prev is None:
            prev = np.zeros(self.n_embd, dtype=np.float32)
            self.stats.missing_rows += pos0 > 0
        inputs = np.vstack([prev[None, :], rows[:-1]])
        t0 = time.perf_counter()
        step = self._batch.capacity
        for start in range(0, len(tokens), step):
            end = min(start + step, len(tokens))
            self._decode(tokens[start:end], range(pos0 + start, pos0 + end), inputs[start:end], logits=False)
        self._mtp_len = pos0 + len(tokens)
        self.stats.catchup_rows += len(tokens)
        self.stats.catchup_s += time.perf_counter() - t0

    def _truncate(self, n_keep: int) -> None:
        self.ctx.truncate(n_keep)
        self._mtp_len = n_keep
        self.stats.mtp_rollbacks += 1

    # --- native calls ----------------------------------------------------------------------------------
    def _decode(
        self, tokens: Sequence[int], positions: Sequence[int], rows: npt.NDArray[np.float32], *, logits: bool
    ) -> None:
        rc = L.llama_decode(self.ctx.ptr, self._batch.fill(tokens, positions, rows, logits))
        if rc != 0:
            raise DecodeError(f"MTP decode failed with status {rc} at position {positions[0]}")
        if not self.shared:
            self._mtp_len = max(self._mtp_len, int(positions[-1]) + 1)

    def _draft_row(self) -> npt.NDArray[np.float32]:
        ptr = X.llama_get_embeddings_nextn_ith(self.ctx.ptr, 0)
        if not ptr:
            raise DecodeError("the MTP context produced no hidden row")
        return np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).copy()
