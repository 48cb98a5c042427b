"""`tandem bench`: plain vs speculative on the same prompts, in one process, with the same settings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import add_model_args, add_spec_args, load_config, spec_params
from engine.config import GenerationParams, SamplingParams
from engine.inference.session import ChatEngine
from engine.measure.ab import load_average
from engine.measure.bench import bench_prompt, format_table, load_prompts
from engine.text import shown


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure the speedup of speculative decoding",
        description="Calibrate the target's verify cost curve, then for each prompt decode plainly and "
        "speculatively, alternating for several rounds (same process, settings and seed), and report median "
        "tokens/s and the spread of the runs, the speedup, the ceiling for the acceptance achieved (from "
        "the measured cost curve) and how much of it was reached, acceptance, mean accepted length, the "
        "draft length chosen, the load average, and whether the outputs are token-identical (if not: where "
        "they diverge and the target's top-2 margin there).",
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
        default=3,
        help="runs of each side per prompt, plain and speculative alternating; the table shows median "
        "tok/s and flags prompts whose runs spread too far (default 3)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.set_defaults(func=run)


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
        # What the app does on a pair's first load on this machine: the controller starts from the curve.
        engine.calibrate()
        curve = ", ".join(
            f"{n}: {engine.costs.ratio(n) or 0:.2f}" for n in (2, 4, 8, 9, 16, 17, 32, 33, 48, 64)
        )
        print(f"verify cost t(n)/t(1): {curve}", file=sys.stderr)
        for prompt in prompts:
            result = bench_prompt(engine, prompt, params, rounds=max(1, args.repeat))
            results.append(result)
            print(
                f"  {prompt.id}: {result.speedup:.2f}×{' (timings disturbed)' if result.disturbed else ''}",
                file=sys.stderr,
            )
    if args.json:
        print(
            json.dumps({"model": str(config.model_path), "results": [r.to_json() for r in results]}, indent=2)
        )
    else:
        print(format_table(results))
        load = load_average()
        print(f"load average at the end: {load:.2f}" if load is not None else "load average: not known")
    return 0 if all(r.identical for r in results) else 1
