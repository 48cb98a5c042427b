"""The time Tandem's plain generation loop spends between two `llama_decode` calls (sampling, stats, events:
everything that is not the decode), against a bare loop of `llama_decode` + `argmax` on the same context,
alternating in one run; medians over every gap of every round.

    python benchmarks/loop_overhead.py [--model M.gguf] [--threads 2] [--tokens 256] [--rounds 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import llama_cpp as L
import numpy as np
from _common import default_model, median, prompt_tokens, tandem_engine

from engine.config import GenerationParams, SpecParams
from engine.inference import llama as tandem_llama
from engine.inference.session import ChatEngine

PROMPT = "Write a long, detailed story about a robot who learns to paint. Use many paragraphs."


class DecodeSpans:
    """Wraps llama_decode as Tandem's wrapper calls it, keeping each call's start and end."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self._real = L.llama_decode

    def __call__(self, ctx: object, batch: object) -> int:
        t0 = time.perf_counter()
        rc = int(self._real(ctx, batch))
        self.spans.append((t0, time.perf_counter()))
        return rc

    def gaps(self) -> list[float]:
        """End of one decode to the start of the next, the prompt's decode left out."""
        s = self.spans[1:]
        return [s[i + 1][0] - s[i][1] for i in range(len(s) - 1)]


def tandem_gaps(engine: ChatEngine, tokens: list[int], n: int, spans: DecodeSpans) -> list[float]:
    engine.reset()
    spans.spans.clear()
    params = GenerationParams(max_tokens=n, spec=SpecParams(enabled=False))
    for _ in engine.generate(tokens, params):
        pass
    return spans.gaps()


def bare_gaps(engine: ChatEngine, tokens: list[int], n: int, spans: DecodeSpans) -> list[float]:
    """The least a Python loop can do per token: decode, read the logits, argmax."""
    engine.reset()
    spans.spans.clear()
    ctx, n_vocab = engine.ctx, engine.model.n_vocab
    ctx.decode(tokens, 0, "last")
    token, pos = 0, len(tokens)
    for _ in range(n):
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx.ptr, -1), shape=(n_vocab,))
        token = int(np.argmax(logits))
        ctx.decode([token], pos, "last")
        pos += 1
    return spans.gaps()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    engine = tandem_engine(args.model or default_model(), args.threads, 2048, "none")
    tokens = prompt_tokens(engine, PROMPT)
    spans = DecodeSpans()
    tandem_llama.L.llama_decode = spans  # type: ignore[assignment]  # the module Tandem's wrapper calls through
    results: dict[str, list[float]] = {"tandem": [], "bare": []}
    for r in range(args.rounds):
        for side in ("tandem", "bare") if r % 2 == 0 else ("bare", "tandem"):
            run = tandem_gaps if side == "tandem" else bare_gaps
            results[side] += run(engine, tokens, args.tokens, spans)
    t, b = median(results["tandem"]), median(results["bare"])
    print(f"between two decodes, median over {len(results['tandem'])} gaps a side:")
    print(f"  Tandem's loop {t * 1e6:.0f} us, a bare decode + argmax loop {b * 1e6:.0f} us")
    print(f"Tandem's loop costs {(t - b) * 1e6:.0f} us a token more than the least a Python loop pays")


if __name__ == "__main__":
    main()
