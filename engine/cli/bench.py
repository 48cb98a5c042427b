"""`tandem bench`: plain vs speculative on the same prompts, in one process, with the same settings."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.cli.common import add_model_args, add_spec_args, load_config, spec_params
from engine.config import GenerationParams, SamplingParams
from engine.inference.session import ChatEngine
from engine.measure.bench import BenchResult, bench_prompt, format_table, load_prompts
from engine.text import shown


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
    add_spec_args(p)
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per prompt, plain and speculative alternating; the table shows median tok/s (default 1)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.set_defaults(func=run)


def median_result(runs: list[BenchResult]) -> BenchResult:
    """One row from repeated runs: median plain and speculative tok/s (each run's speedup is noisy on a
    shared CPU); the rest from the run whose speculative speed is the median. Any divergence is kept."""
    plain = statistics.median(r.plain_tps for r in runs)
    by_spec = sorted(runs, key=lambda r: r.spec_tps)
    mid = by_spec[(len(by_spec) - 1) // 2]
    spec = statistics.median(r.spec_tps for r in runs)
    diverged = next((r for r in runs if not r.identical), None)
    return replace(
        mid,
        plain_tps=plain,
        spec_tps=spec,
        speedup=spec / plain if plain else 0.0,
        identical=diverged is None,
        divergence=diverged.divergence if diverged else None,
    )


def run(args: argparse.Namespace) -> int:
    prompts = load_prompts(args.prompts)
    config = load_config(args)
    params = GenerationParams(
        sampling=SamplingParams(temperature=args.temp, seed=args.seed),
        max_tokens=args.max_tokens,
        spec=spec_params(args),
    )
    results = []
    with ChatEngine.load(config) as engine:
        info = engine.info
        print(
            f"model: {shown(info.model_name, 80)} · drafter: {shown(info.drafter or 'none', 80)}"
            + (f" ({shown(info.drafter_note, 300)})" if info.drafter_note else "")
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
            result = median_result([bench_prompt(engine, prompt, params) for _ in range(max(1, args.repeat))])
            results.append(result)
            print(f"  {prompt.id}: {result.speedup:.2f}×", file=sys.stderr)
    if args.json:
        print(
            json.dumps({"model": str(config.model_path), "results": [r.to_json() for r in results]}, indent=2)
        )
    else:
        print(format_table(results))
    return 0 if all(r.identical for r in results) else 1
