"""Standalone proof of the MTP call sequence through llama-cpp-python's low-level API (no engine code).

    python scripts/mtp_raw_sequence.py --model T.gguf [--assistant A.gguf] [--n-draft 3] [--tokens 48]
                                       [--oracle]

Runs greedy generation twice on the same prompt: plain (one target decode per token) and speculative with the
MTP drafter (Gemma 4 assistant with shared KV when --assistant is given, else the model's embedded NextN
heads), then checks the outputs are token-identical and prints acceptance figures. `--oracle` replaces the
MTP's proposals by the plain output with a deliberate mistake every third step, so accept, partial reject
and KV rollback all happen even with random weights (the MTP context still runs every call).
Exit status 0 = identical, 1 = diverged. Runs llama.cpp in-process: call it in a subprocess from tests.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys

import llama_cpp as L
import numpy as np
from llama_cpp import llama_cpp_ext as X

PROMPT = (
    "<start_of_turn>user\nHello world, what is the name of the model?<end_of_turn>\n<start_of_turn>model\n"
)


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quiet(level: int, text: bytes, _ud: ctypes.c_void_p) -> None:
    if level >= 4 and b"error" in text.lower():  # GGML_LOG_LEVEL_ERROR
        sys.stderr.write(text.decode(errors="replace"))


def load(path: str, load_mtp: bool) -> L.llama_model_p:
    mp = L.llama_model_default_params()
    mp.load_mtp = load_mtp
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise SystemExit(f"cannot load {path}")
    return model


def context(
    model: L.llama_model_p, n_rs_seq: int = 0, mtp_other: L.llama_context_p | None = None, mtp: bool = False
) -> L.llama_context_p:
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 512, 256, 256, 1
    cp.n_threads = cp.n_threads_batch = 1
    cp.n_rs_seq = n_rs_seq
    if mtp:
        cp.ctx_type = L.LLAMA_CONTEXT_TYPE_MTP
        cp.n_outputs_max = 1
        if mtp_other is not None:
            cp.ctx_other = mtp_other
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit("context creation failed")
    return ctx


class Batch:
    """A legacy llama_batch carrying tokens and, optionally, one hidden row per token (MTP input)."""

    def __init__(self, n: int, n_embd: int = 0) -> None:
        self.n_embd = n_embd
        self.raw = L.llama_batch_init(n, n_embd, 1)
        if n_embd:  # llama_batch_init allocates embd XOR token: attach our own token array
            self._tokens = (L.llama_token * n)()
            self.raw.token = self._tokens
            self.embd = np.ctypeslib.as_array(self.raw.embd, shape=(n * n_embd,))

    def set(
        self,
        tokens: list[int],
        pos0: int,
        rows: np.ndarray | None = None,
        logits: str = "all",
        same_pos: bool = False,
    ) -> None:
        self.raw.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            self.raw.token[i] = t
            self.raw.pos[i] = pos0 if same_pos else pos0 + i
            self.raw.n_seq_id[i] = 1
            self.raw.seq_id[i][0] = 0
            self.raw.logits[i] = logits == "all" or (logits == "last" and i == len(tokens) - 1)
        if rows is not None:
            self.embd[: rows.size] = rows.reshape(-1)

    def free(self) -> None:
        if self.n_embd:
            self.raw.token = ctypes.POINTER(L.llama_token)()
        L.llama_batch_free(self.raw)


def argmax(ctx: L.llama_context_p, i: int, n_vocab: int) -> int:
    return int(np.argmax(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,))))


def hidden_rows(ctx: L.llama_context_p, n: int, n_embd: int) -> np.ndarray:
    return np.ctypeslib.as_array(X.llama_get_embeddings_nextn(ctx), shape=(n, n_embd)).copy()


def tokenize(model: L.llama_model_p, text: str) -> list[int]:
    vocab = L.llama_model_get_vocab(model)
    buf = (L.llama_token * 512)()
    n = L.llama_tokenize(vocab, text.encode(), len(text.encode()), buf, 512, True, True)
    return list(buf[:n])


def plain(model: L.llama_model_p, prompt: list[int], n_new: int) -> list[int]:
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    ctx = context(model)
    b = Batch(256)
    b.set(prompt, 0, logits="last")
    assert L.llama_decode(ctx, b.raw) == 0
    out = [argmax(ctx, len(prompt) - 1, n_vocab)]
    while len(out) < n_new:
        b.set([out[-1]], len(prompt) + len(out) - 1)
        assert L.llama_decode(ctx, b.raw) == 0
        out.append(argmax(ctx, 0, n_vocab))
    b.free()
    L.llama_free(ctx)
    return out


def speculative(
    model: L.llama_model_p,
    assistant: L.llama_model_p | None,
    prompt: list[int],
    n_new: int,
    n_draft: int,
    oracle: list[int] | None,
    proposals: list[tuple[int, list[int]]] | None = None,
) -> tuple[list[int], dict[str, int]]:
    """`proposals` collects (context length, the MTP's own draft) per step, before any oracle swap."""
    shared = assistant is not None
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    n_embd = L.llama_model_n_embd(model)
    hybrid = L.llama_model_is_hybrid(model) or L.llama_model_is_recurrent(model)
    tctx = context(model, n_rs_seq=n_draft if hybrid else 0)
    dctx = context(assistant if shared else model, mtp=True, mtp_other=tctx if shared else None)
    assert (X.llama_get_ctx_other(dctx) is not None) == shared
    X.llama_set_embeddings_nextn(tctx, True, False)  # a hidden row for every target batch token
    X.llama_set_embeddings_nextn(dctx, True, True)  # rows for output rows only
    tmem, dmem = L.llama_get_memory(tctx), L.llama_get_memory(dctx)
    tb, db = Batch(256), Batch(256, n_embd)
    stats = {"steps": 0, "drafted": 0, "accepted": 0, "rollbacks": 0}

    def catch_up(tokens: list[int], pos0: int, prev_h: np.ndarray, rows: np.ndarray) -> None:
        # NextN only: the MTP KV at position p holds (token_p, target hidden row of p-1).
        if shared:
            return
        db.set(tokens, pos0, np.vstack([prev_h[None, :], rows[:-1]]), logits="none")
        assert L.llama_decode(dctx, db.raw) == 0

    tb.set(prompt, 0, logits="last")
    assert L.llama_decode(tctx, tb.raw) == 0
    rows = hidden_rows(tctx, len(prompt), n_embd)
    catch_up(prompt, 0, np.zeros(n_embd, np.float32), rows)
    out = [argmax(tctx, len(prompt) - 1, n_vocab)]
    pending_h = rows[-1]  # target hidden row of the token before `out[-1]`
    n_past = len(prompt)  # position of out[-1], not decoded yet

    while len(out) < n_new:
        # draft: row 0 = last sampled token + target row before it; then draft token + draft's own row
        k = min(n_draft, n_new - len(out) - 1)
        drafts: list[int] = []
        tok, h = out[-1], pending_h
        for i in range(k):
            db.set([tok], n_past if shared else n_past + i, h[None, :], logits="all")
            if L.llama_decode(dctx, db.raw) != 0:
                break
            tok = argmax(dctx, 0, n_vocab)
            h = np.ctypeslib.as_array(X.llama_get_embeddings_nextn_ith(dctx, 0), shape=(n_embd,)).copy()
            drafts.append(tok)
        if not shared:  # drafted positions leave the MTP KV; catch-up re-adds the verified ones
            assert L.llama_memory_seq_rm(dmem, 0, n_past, -1)
        if proposals is not None:
            proposals.append((len(prompt) + len(out), list(drafts)))
        if oracle is not None:
            drafts = oracle[len(out) : len(out) + len(drafts)]
            if stats["steps"] % 3 == 2 and drafts:  # a deliberate mistake: partial reject
                drafts[len(drafts) // 2] = (drafts[len(drafts) // 2] + 1) % n_vocab
        # verify [last, d1..dk] in one target decode, logits for every row; accept by sample-and-match
        batch = [out[-1], *drafts]
        tb.set(batch, n_past, logits="all")
        assert L.llama_decode(tctx, tb.raw) == 0
        rows = hidden_rows(tctx, len(batch), n_embd)
        n_acc = 0
        while True:
            t = argmax(tctx, n_acc, n_vocab)
            if n_acc < len(drafts) and t == drafts[n_acc]:
                n_acc += 1
                continue
            break
        emitted = drafts[:n_acc] + [t]
        if drafts:
            stats["steps"] += 1
            stats["drafted"] += len(drafts)
            stats["accepted"] += n_acc
        if n_acc < len(drafts):
            assert L.llama_memory_seq_rm(tmem, 0, n_past + n_acc + 1, -1), "target rollback refused"
            stats["rollbacks"] += 1
        catch_up(batch[: n_acc + 1], n_past, pending_h, rows[: n_acc + 1])
        pending_h = rows[n_acc]
        n_past += n_acc + 1
        out.extend(emitted)
    db.free()
    tb.free()
    L.llama_free(dctx)  # points into the target context: free it first
    L.llama_free(tctx)
    return out[:n_new], stats


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--assistant")
    ap.add_argument("--n-draft", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--oracle", action="store_true")
    ap.add_argument("--dump-proposals", help="write the prompt and (context length, MTP draft) pairs as JSON")
    a = ap.parse_args()
    L.llama_log_set(_quiet, None)
    L.llama_backend_init()
    model = load(a.model, load_mtp=True)
    assistant = load(a.assistant, load_mtp=True) if a.assistant else None
    prompt = tokenize(model, PROMPT)
    ref = plain(model, prompt, a.tokens)
    proposals: list[tuple[int, list[int]]] = []
    spec, stats = speculative(
        model, assistant, prompt, a.tokens, a.n_draft, ref if a.oracle else None, proposals
    )
    if a.dump_proposals:
        with open(a.dump_proposals, "w") as f:
            json.dump({"prompt": prompt, "plain": ref, "proposals": proposals}, f)
    same = ref == spec
    print(f"identical={same} distinct={len(set(ref))} plain={ref[:12]}... {stats}")
    if assistant is not None:
        L.llama_model_free(assistant)
    L.llama_model_free(model)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
