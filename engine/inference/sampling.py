"""Token sampling with a position-keyed RNG.

`Sampler.sample(logits, position, history)` is a pure function of its arguments: the random draw for
absolute position p depends only on (seed, p). So plain decoding and speculative verification, which
samples the same positions from a batched decode, pick the same tokens whenever the logits agree. The
filters and the final draw are llama.cpp's own samplers (top-k, top-p, min-p, temperature, dist), applied
to a candidate set pre-selected with numpy so a 262k vocabulary costs one argpartition, not a sort.
"""

from __future__ import annotations

import ctypes
import random
from collections.abc import Sequence

import llama_cpp as L
import numpy as np
import numpy.typing as npt

from engine.config import SamplingParams

_MASK64 = (1 << 64) - 1
_LLAMA_DEFAULT_SEED = 0xFFFFFFFF
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def position_seed(seed: int, position: int) -> int:
    """A 32-bit seed for one position (splitmix64 of seed and position): independent across positions."""
    z = (seed * 0x9E3779B97F4A7C15 + position + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    out = (z ^ (z >> 31)) & 0xFFFFFFFF
    # llama_sampler_init_dist treats LLAMA_DEFAULT_SEED (0xFFFFFFFF) as "seed from the clock": never pass it.
    return out if out != _LLAMA_DEFAULT_SEED else 0


def resolve_seed(params: SamplingParams) -> int:
    return params.seed if params.seed is not None else random.SystemRandom().randrange(1 << 31)


def apply_repeat_penalty(
    logits: npt.NDArray[np.float32], history: Sequence[int], penalty: float, last_n: int
) -> npt.NDArray[np.float32]:
    """llama.cpp's classic repetition penalty over the last `last_n` tokens (returns a copy).
    As in llama.cpp, last_n = 0 disables the penalty and last_n < 0 covers the whole history."""
    if penalty == 1.0 or not history or last_n == 0:
        return logits
    recent = np.unique(np.asarray(history[-last_n:] if last_n > 0 else history, dtype=np.int64))
    out = logits.copy()
    vals = out[recent]
    out[recent] = np.where(vals > 0, vals / penalty, vals * penalty)
    return out


def top2_margin(logits: npt.NDArray[np.float32]) -> float:
    """Gap between the two highest logits: how close a greedy decision was."""
    top = np.partition(logits, -2)[-2:]
    return float(abs(top[1] - top[0]))


class Sampler:
    """Samples one token from a row of logits. Holds only immutable settings and native filter objects."""

    def __init__(self, params: SamplingParams, seed: int | None = None) -> None:
        self.params = params
        self.seed = seed if seed is not None else resolve_seed(params)
        self._chain = None
        if not params.greedy:
            chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
            if 0 < params.top_p < 1.0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(params.top_p, 1))
            if params.min_p > 0.0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(params.min_p, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(params.temperature))
            self._chain = chain

    def sample(self, logits: npt.NDArray[np.float32], position: int, history: Sequence[int] = ()) -> int:
        """The token for absolute `position`, given that position's logits and the tokens before it."""
        p = self.params
        if p.repeat_penalty != 1.0:
            logits = apply_repeat_penalty(logits, history, p.repeat_penalty, p.repeat_last_n)
        if self._chain is None:
            return int(np.argmax(logits))
        n_vocab = logits.shape[0]
        if 0 < p.top_k < n_vocab:
            ids = np.argpartition(logits, -p.top_k)[-p.top_k :]
        else:
            ids = np.arange(n_vocab)
        # Deterministic candidate order (logit desc, then id) so ties never depend on argpartition.
        ids = ids[np.lexsort((ids, -logits[ids]))]
        cand = np.empty(len(ids), dtype=_TOKEN_DATA)
        cand["id"] = ids
        cand["logit"] = logits[ids]
        cand["p"] = 0.0
        arr = L.llama_token_data_array(
            data=cand.ctypes.data_as(L.llama_token_data_p),
            size=len(cand),
            selected=-1,
            sorted=True,
        )
        L.llama_sampler_apply(self._chain, ctypes.byref(arr))
        dist = L.llama_sampler_init_dist(position_seed(self.seed, position))
        try:
            L.llama_sampler_apply(dist, ctypes.byref(arr))
        finally:
            L.llama_sampler_free(dist)
        if not 0 <= arr.selected < arr.size:
            raise RuntimeError("sampler selected no token")
        return int(arr.data[arr.selected].id)

    def close(self) -> None:
        if self._chain is not None:
            L.llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:
        self.close()
