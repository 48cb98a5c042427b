"""Tandem's n-gram speculation against llama-cpp-python's own `LlamaPromptLookupDecoding` (its best setting
from a small sweep) and against plain decoding, same model, threads and prompt, in one run.

llama-cpp-python's high-level draft path crashes once prompt + output exceed n_batch, so it runs with
n_batch = n_ctx here (the workaround the issue names).

    python benchmarks/prompt_lookup.py [--model M.gguf] [--threads 2] [--tokens 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from _common import default_model, llama_decode, median, prompt_tokens, tandem_decode, tandem_engine


def code_edit_prompt() -> str:
    for line in resources.files("resources").joinpath("bench_prompts.jsonl").read_text().splitlines():
        obj = json.loads(line)
        if obj["id"] == "code-edit":
            return str(obj["prompt"])
    raise SystemExit("bundled code-edit prompt missing")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3, help="runs per setting; medians are compared")
    args = ap.parse_args()
    model = args.model or default_model()

    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    engine = tandem_engine(model, args.threads, args.ctx, "ngram")
    tokens = prompt_tokens(engine, code_edit_prompt())
    tandem_decode(engine, tokens, 8, spec=False)
    plains, specs = [], []
    for _ in range(args.repeat):  # alternating, so load from elsewhere hits both sides alike
        rate, plain_out = tandem_decode(engine, tokens, args.tokens, spec=False)
        plains.append(rate)
        rate, spec_out = tandem_decode(engine, tokens, args.tokens, spec=True)
        specs.append(rate)
    plain, spec = median(plains), median(specs)
    plain_text = engine.model.detokenize(plain_out)
    print(
        f"tandem plain {plain:.1f} tok/s; tandem n-gram {spec:.1f} tok/s ({spec / plain:.2f}x plain), "
        f"identical: {plain_out == spec_out}"
    )
    best = (0.0, "")
    for num_pred in (2, 4, 10, 16):
        for ngram in (2, 3):
            llm = Llama(
                str(model),
                n_ctx=args.ctx,
                n_batch=args.ctx,
                n_threads=args.threads,
                n_threads_batch=args.threads,
                draft_model=LlamaPromptLookupDecoding(num_pred_tokens=num_pred, max_ngram_size=ngram),
                verbose=False,
            )
            llama_decode(llm, tokens, 8)
            runs = [llama_decode(llm, tokens, args.tokens) for _ in range(args.repeat)]
            rate = median([r for r, _ in runs])
            # Its text against Tandem's plain output: a faster run that writes something else is no win.
            same = all(text == plain_text for _, text in runs)
            print(
                f"  LlamaPromptLookupDecoding num_pred_tokens={num_pred} "
                f"max_ngram_size={ngram}: {rate:.1f} tok/s, same text as plain: {same}"
            )
            if rate > best[0]:
                best = (rate, f"num_pred_tokens={num_pred}, max_ngram_size={ngram}")
            del llm
    print(f"model {model.name}, {args.threads} threads, prompt {len(tokens)} tokens, {args.tokens} tokens")
    print(
        f"tandem n-gram {spec:.1f} tok/s vs best LlamaPromptLookupDecoding ({best[1]}) {best[0]:.1f} tok/s: "
        f"{spec / best[0]:.2f}x; vs tandem plain {spec / plain:.2f}x"
    )
    engine.close()


if __name__ == "__main__":
    main()
