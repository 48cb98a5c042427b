"""`tandem bench`: plain vs speculative on the same prompts, in one process, with the same settings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.bench import bench_prompt, format_table, load_prompts
from engine.cli.common import add_model_args, load_config
from engine.config import GenerationParams, SamplingParams, SpecParams
from engine.session import ChatEngine


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure the speedup of speculative decoding",
        description="For each prompt, decode plainly then speculatively (same process, settings and "
        "seed) and report tokens/s, speedup, acceptance, mean accepted length, the draft length chosen, "
        "and whether the two outputs are token-identical (if not: where they diverge and the target's "
        "top-2 margin).",
    )
    add_model_args(p)
    p.add_argument("--prompts", type=Path, help="JSONL prompt file (default: the bundled set of 5)")
    p.add_argument("--max-tokens", type=int, default=256, help="reply length per prompt unless the file says")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (default 1)")
    p.add_argument("--temp", type=float, default=0.0, help="temperature (default 0: greedy)")
    p.add_argument("--draft-max", type=int, default=3, help="maximum draft length k (default 3)")
    p.add_argument("--fixed-k", action="store_true", help="disable the adaptive controller (always k)")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prompts = load_prompts(args.prompts)
    config = load_config(args)
    params = GenerationParams(
        sampling=SamplingParams(temperature=args.temp, seed=args.seed),
        max_tokens=args.max_tokens,
        spec=SpecParams(enabled=True, k_max=args.draft_max, adaptive=not args.fixed_k),
    )
    results = []
    with ChatEngine.load(config) as engine:
        info = engine.info
        print(
            f"model: {info.model_name} · drafter: {info.drafter or 'none'}"
            + (f" ({info.drafter_note})" if info.drafter_note else "")
            + f" · threads: {engine.ctx.n_threads} · ctx: {info.n_ctx}",
            file=sys.stderr,
        )
        # Warm-up: first decodes pay one-off allocation costs that would skew the first prompt's plain run.
        list(
            engine.generate(
                engine.model.tokenize("warm up", add_special=True), GenerationParams(max_tokens=8)
            )
        )
        for prompt in prompts:
            result = bench_prompt(engine, prompt, params)
            results.append(result)
            print(f"  {prompt.id}: {result.speedup:.2f}×", file=sys.stderr)
    if args.json:
        print(
            json.dumps({"model": str(config.model_path), "results": [r.to_json() for r in results]}, indent=2)
        )
    else:
        print(format_table(results))
    return 0 if all(r.identical for r in results) else 1
