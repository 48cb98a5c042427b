"""Replay the draft-length controller on a fixed cost curve: a noise-free check of a policy change.

Timings on a shared 2-core machine swing by 10-25 % from run to run, more than most controller changes move
the speedup. This replays the real loop (real model, real n-gram drafter, real verification) but freezes the
cost curve at a calibration, so the controller decides from the same t(n) every run, and prices each run's
steps on that curve: speedup = (tokens - 1) * t(1) / sum over steps of t(k + 1). Native llama.cpp's
ngram-simple policy (the most recent match of the last N tokens, drafting up to M) is priced the same way on
the plain reply, for comparison.

    python benchmarks/replay_controller.py --model smollm2 [--prompts code-rename,config-edit] [-v] \
        [--compare-deep-prior 0.7,0.8,0.9,0.97]

--compare-deep-prior replays every prompt a second time with other per-class priors for acceptance past the
first draft token (engine/inference/controller.py CLASS_PRIOR_DEEP), on the same curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from vs_llama_cpp import find_model  # noqa: E402

import engine.inference.controller as controller  # noqa: E402
from engine.config import GenerationParams, LoadConfig, SamplingParams, SpecParams  # noqa: E402
from engine.events import DoneEvent  # noqa: E402
from engine.inference.cost import CostCurve  # noqa: E402
from engine.inference.drafters.ngram import NGramDrafter  # noqa: E402
from engine.inference.session import ChatEngine  # noqa: E402
from engine.measure.ceiling import accepted_per_step, oracle_ceiling  # noqa: E402

NATIVE_SIMPLE = ((12, 48), (4, 16), (8, 64))  # (key length, draft max) of llama.cpp's ngram-simple settings


def native_simple(
    prompt: Sequence[int], reply: Sequence[int], key: int, most: int, t: Callable[[int], float]
) -> float:
    """ngram-simple priced on the curve: the most recent earlier occurrence of the last `key` tokens, and up
    to `most` tokens that followed it, drafted every step it exists (common/ngram-map.cpp)."""
    ctx, p, spent = [*prompt, reply[0]], 1, 0.0
    while p < len(reply):
        draft: list[int] = []
        end = len(ctx)
        if end > key:
            pattern = ctx[end - key :]
            for j in range(end - key - 1, -1, -1):
                if ctx[j : j + key] == pattern:
                    draft = ctx[j + key : min(j + key + most, end)]
                    break
        draft = draft[: max(0, len(reply) - p - 1)]
        a = 0
        while a < len(draft) and draft[a] == reply[p + a]:
            a += 1
        spent += t(len(draft) + 1)
        ctx += reply[p : p + a + 1]
        p += a + 1
    return (len(reply) - 1) * t(1) / spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gemma", help="gemma, smollm2 or a .gguf path")
    ap.add_argument("--prompts", help="comma-separated ids of benchmarks/native_prompts.jsonl (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-v", "--verbose", action="store_true", help="print each run's draft lengths")
    ap.add_argument(
        "--compare-deep-prior", help="four comma-separated priors to replay against the current ones"
    )
    args = ap.parse_args()
    prompts = [
        json.loads(line) for line in (ROOT / "benchmarks" / "native_prompts.jsonl").read_text().splitlines()
    ]
    if args.prompts:
        prompts = [p for p in prompts if p["id"] in args.prompts.split(",")]
    config = LoadConfig(
        model_path=find_model(args.model), drafter="ngram", n_ctx=2048, n_threads=args.threads
    )
    with ChatEngine.load(config) as engine:
        engine.calibrate()
        frozen = engine.costs.samples()
        curve = CostCurve(frozen)
        ratios = ", ".join(f"{n}:{curve.ratio(n) or 0:.2f}" for n in (2, 4, 8, 9, 16, 17, 32, 33, 48, 64))
        print(f"curve t(n)/t(1): {ratios}")

        def t(n: int) -> float:
            return curve.time(n) or 0.0

        for prompt in prompts:
            tokens = engine.model.tokenize(prompt["text"], add_special=True, parse_special=True)
            policies: dict[str, tuple[float, ...] | None] = {
                "plain": None,
                "Tandem": controller.CLASS_PRIOR_DEEP,
            }
            if args.compare_deep_prior:
                policies["compared"] = tuple(float(x) for x in args.compare_deep_prior.split(","))
            runs = {}
            current = controller.CLASS_PRIOR_DEEP
            for name, deep in policies.items():
                speculative = deep is not None
                controller.CLASS_PRIOR_DEEP = deep or current
                params = GenerationParams(
                    sampling=SamplingParams(temperature=0.0, seed=1),
                    max_tokens=prompt["max_tokens"],
                    spec=SpecParams(enabled=speculative),
                )
                engine.reset()
                engine.costs = CostCurve(frozen)
                engine.costs.record = lambda n, s: None  # type: ignore[method-assign]  # frozen: same decisions
                engine.new_controller(params)
                loop = engine.make_loop(params)
                done = next(e for e in loop.run(tokens) if isinstance(e, DoneEvent))
                runs[name] = (list(loop.generated), done.stats.spec)
            controller.CLASS_PRIOR_DEEP = current
            plain = runs.pop("plain")[0]
            oracle = oracle_ceiling(NGramDrafter().draft, tokens, plain, t, 64)
            native = " ".join(f"simple {key}/{most} {native_simple(tokens, plain, key, most, t):.2f}x"
                              for key, most in NATIVE_SIMPLE)  # fmt: skip
            print(f"{prompt['id']:14} {len(plain):3} tokens  oracle {oracle:.2f}x | {native}")
            for name, (reply, spec) in runs.items():
                assert spec is not None
                ks = spec.k_history
                speedup = (len(reply) - 1) * t(1) / sum(t(k + 1) for k in ks) if ks else 1.0
                same = "same as plain" if reply == plain else "differs from plain"
                print(
                    f"    {name:9} {speedup:.2f}x  acceptance {spec.acceptance_rate:.2f}, "
                    f"{len(reply)} tokens, {same}"
                )
                if args.verbose:
                    print("      drafted ", ks)
                    print("      accepted", accepted_per_step(spec.provenance))
    return 0


if __name__ == "__main__":
    sys.exit(main())
