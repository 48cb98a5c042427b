"""Tandem's plain decode tok/s against llama-cpp-python's high-level `Llama`, same model, threads and prompt,
measured alternately in one run; prints the ratio (expect >= 0.98x).

    python benchmarks/plain_decode.py [--model M.gguf] [--threads 2] [--tokens 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import default_model, llama_decode, median, prompt_tokens, tandem_decode, tandem_engine

PROMPT = "Write a long, detailed story about a robot who learns to paint. Use many paragraphs."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ctx", type=int, default=2048)
    args = ap.parse_args()
    model = args.model or default_model()

    from llama_cpp import Llama

    engine = tandem_engine(model, args.threads, args.ctx, "none")
    tokens = prompt_tokens(engine, PROMPT)
    llm = Llama(
        str(model), n_ctx=args.ctx, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
    )
    tandem_decode(engine, tokens, 8, spec=False)  # warm-up both
    llama_decode(llm, tokens, 8)
    t_rates, l_rates = [], []
    for r in range(args.rounds):
        t, _ = tandem_decode(engine, tokens, args.tokens, spec=False)
        lr, _ = llama_decode(llm, tokens, args.tokens)
        t_rates.append(t)
        l_rates.append(lr)
        print(f"round {r + 1}: tandem {t:.1f} tok/s, llama-cpp-python Llama {lr:.1f} tok/s")
    t_med, l_med = median(t_rates), median(l_rates)
    print(f"model {model.name}, {args.threads} threads, {args.tokens} tokens, prompt {len(tokens)} tokens")
    print(f"median: tandem {t_med:.1f} tok/s, llama-cpp-python {l_med:.1f} tok/s, ratio {t_med / l_med:.3f}x")
    engine.close()


if __name__ == "__main__":
    main()
