"""Replay the draft-length controller on a fixed cost curve and a fixed reply: a noise-free check of a policy.

Timings on a shared 2-core machine swing by 10-25 % from run to run, more than most controller changes move
the speedup. This decodes each prompt plainly once (the reply every lossless policy must write), calibrates
the cost curve once, and then prices policies on that reply and curve alone, with no model in the loop:
Tandem's controller and n-gram drafter step by step as the generation loop drives them (proposal, choice,
the accepted prefix of the draft, the shadow check of a declined proposal), and llama.cpp's ngram-simple
(the most recent match of the last N tokens, drafting up to M). Speedup = (tokens - 1) * t(1) / the summed
t(k + 1) of the steps. A policy change compared so is compared on exactly the same text and costs: the
result is deterministic for a given calibration.

    python benchmarks/replay_controller.py --model smollm2 [--prompts code-rename,config-edit] [-v] \
        [--compare-deep-prior 0.7,0.8,0.9,0.97]

--compare-deep-prior prices a second set of per-class priors for acceptance past the first draft token
(engine/inference/controller.py CLASS_PRIOR_DEEP) beside the current ones.
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
from engine.config import NGRAM_K_MAX, GenerationParams, LoadConfig, SamplingParams, SpecParams  # noqa: E402
from engine.events import DoneEvent  # noqa: E402
from engine.inference.controller import DraftLengthController, ShadowDraft  # noqa: E402
from engine.inference.cost import CostCurve  # noqa: E402
from engine.inference.drafters.ngram import NGramDrafter  # noqa: E402
from engine.inference.session import ChatEngine  # noqa: E402
from engine.measure.ceiling import oracle_ceiling  # noqa: E402
from engine.stats import StepResult  # noqa: E402

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


def tandem(
    prompt: Sequence[int],
    reply: Sequence[int],
    t: Callable[[int], float],
    curve: dict[int, tuple[float, ...]],
) -> tuple[float, list[int], list[int]]:
    """Tandem's controller and n-gram drafter priced on `reply`, as engine/inference/generate.py drives them
    (a free drafter proposes, the controller trims, a declined proposal is checked in the shadow). Returns
    the speedup and each step's draft length and accepted count."""
    costs = CostCurve(curve)
    costs.record = lambda n, s: None  # type: ignore[method-assign]  # frozen: every decision sees one curve
    ctl = DraftLengthController(NGRAM_K_MAX, costs=costs)
    drafter, shadow = NGramDrafter(), ShadowDraft()
    ctx, p, spent = [*prompt, reply[0]], 1, 0.0
    ks: list[int] = []
    accepted: list[int] = []
    while p < len(reply):
        room = len(reply) - p - 1
        draft: Sequence[int] = ()
        if room > 0:
            proposal = drafter.draft(ctx, min(ctl.k_max, room))
            if proposal.tokens:
                choice = ctl.choose(available=len(proposal.tokens), match_len=proposal.match_len)
                draft = proposal.tokens[: choice.k]
                if not draft:
                    shadow.watch(len(ctx), proposal.tokens, ctl.last_class)
        a = 0
        while a < len(draft) and draft[a] == reply[p + a]:
            a += 1
        emitted = tuple(reply[p : p + a + 1])
        spent += t(len(draft) + 1)
        ctl.record_step(StepResult(len(draft), a, emitted, 0.0, t(len(draft) + 1), a < len(draft)))
        drafter.observe([ctx[-1], *draft], len(ctx) - 1, a + 1)
        ctx += emitted
        p += len(emitted)
        settled = shadow.check(ctx)
        if settled is not None:
            ctl.record_result(*settled)
        ks.append(len(draft))
        accepted.append(a)
    return (len(reply) - 1) * t(1) / spent, ks, accepted


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
            params = GenerationParams(
                sampling=SamplingParams(temperature=0.0, seed=1),
                max_tokens=prompt["max_tokens"],
                spec=SpecParams(enabled=False),
            )
            engine.reset()
            loop = engine.make_loop(params)
            next(e for e in loop.run(tokens) if isinstance(e, DoneEvent))
            reply = list(loop.generated)
            if len(reply) < 2:
                print(f"{prompt['id']:14} {len(reply)} tokens: too short to price")
                continue
            oracle = oracle_ceiling(NGramDrafter().draft, tokens, reply, t, 64)
            native = " ".join(f"simple {key}/{most} {native_simple(tokens, reply, key, most, t):.2f}x"
                              for key, most in NATIVE_SIMPLE)  # fmt: skip
            print(f"{prompt['id']:14} {len(reply):3} tokens  oracle {oracle:.2f}x | {native}")
            policies = {"Tandem": controller.CLASS_PRIOR_DEEP}
            if args.compare_deep_prior:
                policies["compared"] = tuple(float(x) for x in args.compare_deep_prior.split(","))
            current = controller.CLASS_PRIOR_DEEP
            for name, deep in policies.items():
                controller.CLASS_PRIOR_DEEP = deep
                speedup, ks, accepted = tandem(tokens, reply, t, frozen)
                controller.CLASS_PRIOR_DEEP = current
                drafted = sum(ks)
                rate = sum(accepted) / drafted if drafted else 0.0
                print(f"    {name:9} {speedup:.2f}x  acceptance {rate:.2f}, {sum(1 for k in ks if k)} drafts")
                if args.verbose:
                    print("      drafted ", ks)
                    print("      accepted", accepted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
