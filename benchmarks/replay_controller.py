"""Replay the draft-length controller on a fixed cost curve and a fixed reply: a noise-free check of a policy.

Timings on a shared 2-core machine swing by 10-25 % from run to run, more than most controller changes move
the speedup. This decodes each prompt plainly once (the reply every lossless policy must write), calibrates
the cost curve once, and then prices policies on that reply and curve alone, with no model in the loop:
Tandem's controller and n-gram drafter step by step as the generation loop drives them (proposal, choice,
the accepted prefix of the draft, the shadow check of a declined proposal), and llama.cpp's ngram-simple
(the most recent match of the last N tokens, drafting up to M), ngram-map-k 4/16 (which remembers, per key,
how much of its last draft was accepted) and ngram-mod 24/48-64 (a table of 24-token n-grams followed token by
token, drafting only when 48 or more follow). Speedup = (tokens - 1) * t(1) / the summed
t(k + 1) of the steps. A policy change compared so is compared on exactly the same text and costs: the
result is deterministic for a given calibration.

    python benchmarks/replay_controller.py --model smollm2 [--prompts code-rename,config-edit] [-v] \
        [--compare "PRIOR_WEIGHT=1 MIN_GAIN=1.0"] [--save replies.json | --load replies.json]

--compare prices the controller again with some of its constants (engine/inference/controller.py) set to
other values, beside the current ones, and prints each policy's geometric mean over the prompts. --save keeps
the replies and the calibrated curve, --load replays them without the model (and without timing anything, so
it may run while the machine is busy). --load also takes what `benchmarks/vs_llama_cpp.py --json` wrote: the
replies native llama.cpp's n-gram runs wrote there, each on the curve that run priced it on (its "T / N on
N's reply" column).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
from engine.measure.ceiling import oracle_ceiling, priced_policy  # noqa: E402

NATIVE_SIMPLE = ((12, 48), (4, 16), (8, 64))  # (key length, draft max) of llama.cpp's ngram-simple settings


Propose = Callable[[list[int]], list[int]]  # the context so far -> a draft
Learn = Callable[[list[int], int], None]  # a verified draft and how many of its tokens were accepted


def _price(
    prompt: Sequence[int],
    reply: Sequence[int],
    t: Callable[[int], float],
    propose: Propose,
    learn: Learn | None = None,
) -> float:
    """A drafter that proposes from the context alone, priced on `reply` and the curve `t`: each step verifies
    its draft (trimmed to the tokens left), keeps the accepted prefix and the target's next token."""
    ctx, p, spent = [*prompt, reply[0]], 1, 0.0
    while p < len(reply):
        draft = propose(ctx)[: max(0, len(reply) - p - 1)]
        a = 0
        while a < len(draft) and draft[a] == reply[p + a]:
            a += 1
        if learn is not None and draft:
            learn(ctx, a)
        spent += t(len(draft) + 1)
        ctx += reply[p : p + a + 1]
        p += a + 1
    return (len(reply) - 1) * t(1) / spent


def native_simple(
    prompt: Sequence[int], reply: Sequence[int], key: int, most: int, t: Callable[[int], float]
) -> float:
    """ngram-simple priced on the curve: the most recent earlier occurrence of the last `key` tokens, and up
    to `most` tokens that followed it, drafted every step it exists (common/ngram-map.cpp)."""

    def propose(ctx: list[int]) -> list[int]:
        end = len(ctx)
        if end > key:
            pattern = ctx[end - key :]
            for j in range(end - key - 1, -1, -1):
                if ctx[j : j + key] == pattern:
                    return ctx[j + key : min(j + key + most, end)]
        return []

    return _price(prompt, reply, t, propose)


def native_map_k(
    prompt: Sequence[int], reply: Sequence[int], key: int, most: int, t: Callable[[int], float]
) -> float:
    """ngram-map-k (key-only) priced on the curve: a match of the last `key` tokens, `most` tokens after it
    (in the prompt the latest such match, in the reply the earliest), drafting at most as many tokens as the
    last draft from the same key had accepted (common/ngram-map.cpp, common_ngram_map_draft / _accept)."""
    last_accepted: dict[tuple[int, ...], int] = {}

    def propose(ctx: list[int]) -> list[int]:
        end = len(ctx)
        pattern = tuple(ctx[end - key :])
        if end >= 2 * key + most:
            starts = [*range(len(prompt) - key - most - 1, 0, -1), *range(len(prompt), end - key - most)]
            start = next((j for j in starts if tuple(ctx[j : j + key]) == pattern), 0)
            if start:
                return ctx[start + key : start + key + min(most, last_accepted.get(pattern, most))]
        return []

    def learn(ctx: list[int], accepted: int) -> None:
        last_accepted[tuple(ctx[len(ctx) - key :])] = accepted

    return _price(prompt, reply, t, propose, learn)


def native_mod(
    prompt: Sequence[int], reply: Sequence[int], key: int, least: int, most: int, t: Callable[[int], float]
) -> float:
    """ngram-mod priced on the curve: a table from each `key`-token n-gram to the token that last followed
    it, filled from the prompt and then from the reply in chunks of 32 tokens; a draft follows the table
    token by token, up to `most`, and is dropped if it is shorter than `least` (common/ngram-mod.cpp,
    common/speculative.cpp). Its reset after five poor drafts is left out."""
    table: dict[tuple[int, ...], int] = {}
    for i in range(len(prompt) - key):
        table[tuple(prompt[i : i + key])] = prompt[i + key]
    added = len(prompt) - key

    def propose(ctx: list[int]) -> list[int]:
        nonlocal added
        if added + 32 < len(ctx):
            for i in range(added, len(ctx) - key):
                table[tuple(ctx[i : i + key])] = ctx[i + key]
            added = len(ctx) - key
        window = ctx[len(ctx) - key :]
        draft: list[int] = []
        while len(draft) < most and (nxt := table.get(tuple(window[len(window) - key :]))) is not None:
            draft.append(nxt)
            window.append(nxt)
        return draft if len(draft) >= least else []

    return _price(prompt, reply, t, propose)


def decode_replies(model: str, threads: int, prompts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Calibrate the cost curve once and decode each prompt plainly: what every lossless policy writes."""
    config = LoadConfig(model_path=find_model(model), drafter="ngram", n_ctx=2048, n_threads=threads)
    replies = []
    with ChatEngine.load(config) as engine:
        engine.calibrate()
        curve = engine.costs.samples()
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
            replies.append({"id": prompt["id"], "prompt": list(tokens), "reply": list(loop.generated)})
    return {"curve": curve, "replies": replies}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gemma", help="gemma, smollm2 or a .gguf path")
    ap.add_argument(
        "--prompt-file",
        type=Path,
        default=ROOT / "benchmarks" / "native_prompts.jsonl",
        help="JSON lines of prompts (default: benchmarks/native_prompts.jsonl; "
        "benchmarks/heldout_prompts.jsonl holds prompts no controller constant was tuned on)",
    )
    ap.add_argument("--prompts", help="comma-separated ids of the prompt file's prompts (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-v", "--verbose", action="store_true", help="print each run's draft lengths")
    ap.add_argument(
        "--compare",
        help='controller constants to price beside the current ones, e.g. "MIN_GAIN=1.0 PRIOR_WEIGHT=1"',
    )
    ap.add_argument("--save", type=Path, help="keep the replies and the curve in this JSON file")
    ap.add_argument(
        "--load",
        type=Path,
        help="replay a file --save wrote (no model needed), or a benchmarks/vs_llama_cpp.py --json file: "
        "native n-gram's replies for --model, each on the curve that benchmark run priced it on",
    )
    args = ap.parse_args()
    prompts = [json.loads(line) for line in args.prompt_file.read_text().splitlines() if line.strip()]
    if args.prompts:
        prompts = [p for p in prompts if p["id"] in args.prompts.split(",")]
    if args.load:
        data = json.loads(args.load.read_text())
        if isinstance(data, list):
            data = bench_replies(data, args.model)
        data["curve"] = {int(n): tuple(v) for n, v in data["curve"].items()}
        if args.prompts:
            data["replies"] = [r for r in data["replies"] if r["id"] in args.prompts.split(",")]
    else:
        data = decode_replies(args.model, args.threads, prompts)
        if args.save:
            args.save.write_text(json.dumps(data))
    print(f"curve t(n)/t(1): {curve_ratios(data['curve'])}")
    policies: dict[str, dict[str, Any]] = {"Tandem": {}}
    if args.compare:
        policies["compared"] = parse_constants(args.compare)
    logs: dict[str, list[float]] = {name: [] for name in policies}
    for item in data["replies"]:
        tokens, reply = item["prompt"], item["reply"]
        frozen: dict[int, tuple[float, ...]] = item.get("curve", data["curve"])
        curve = CostCurve(frozen)
        t = lambda n, curve=curve: curve.time(n) or 0.0  # noqa: E731
        if "curve" in item:
            print(f"{item['id']:14} curve t(n)/t(1): {curve_ratios(frozen)}")
        if len(reply) < 2:
            print(f"{item['id']:14} {len(reply)} tokens: too short to price")
            continue
        oracle = oracle_ceiling(NGramDrafter().draft, tokens, reply, t, 64)
        native = " ".join(f"simple {key}/{most} {native_simple(tokens, reply, key, most, t):.2f}x"
                          for key, most in NATIVE_SIMPLE)  # fmt: skip
        native += f" map-k 4/16 {native_map_k(tokens, reply, 4, 16, t):.2f}x"
        native += f" mod 24/48-64 {native_mod(tokens, reply, 24, 48, 64, t):.2f}x"
        print(f"{item['id']:14} {len(reply):3} tokens  oracle {oracle:.2f}x | {native}")
        for name, constants in policies.items():
            current = {key: getattr(controller, key) for key in constants}
            vars(controller).update(constants)
            try:
                speedup, ks, accepted = priced_policy(tokens, reply, frozen)
            finally:
                vars(controller).update(current)
            logs[name].append(math.log(speedup))
            drafted = sum(ks)
            rate = sum(accepted) / drafted if drafted else 0.0
            print(f"    {name:9} {speedup:.2f}x  acceptance {rate:.2f}, {sum(1 for k in ks if k)} drafts")
            if args.verbose:
                print("      drafted ", ks)
                print("      accepted", accepted)
    for name, values in logs.items():
        if values:
            mean = math.exp(sum(values) / len(values))
            print(f"{name}: geometric mean {mean:.4f}x over {len(values)} replies")
    return 0


def curve_ratios(samples: dict[int, tuple[float, ...]]) -> str:
    curve = CostCurve(samples)
    return ", ".join(f"{n}:{curve.ratio(n) or 0:.2f}" for n in (2, 4, 8, 9, 16, 17, 32, 33, 48, 64))


def bench_replies(rows: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The replies native's n-gram runs wrote in a `benchmarks/vs_llama_cpp.py --json` file, for `model`,
    each with the cost curve the benchmark priced it on (its "priced on N's reply" column)."""
    mine = [r for r in rows if r["model"] == model and r.get("native_reply")]
    if not mine:
        raise SystemExit(f"--load: no {model} rows with native replies (from an older vs_llama_cpp.py?)")
    replies = [
        {
            "id": r["prompt"],
            "prompt": r["prompt_tokens"],
            "reply": r["native_reply"],
            "curve": {int(n): tuple(v) for n, v in r["curve"].items()},
        }
        for r in mine
    ]
    return {"curve": mine[-1]["curve"], "replies": replies}


def parse_constants(text: str) -> dict[str, Any]:
    """ "NAME=VALUE ..." -> {NAME: VALUE}: VALUE a Python literal, NAME a constant of the controller."""
    out: dict[str, Any] = {}
    for item in text.split():
        name, _, value = item.partition("=")
        if not hasattr(controller, name) or not name.isupper():
            raise SystemExit(f"--compare: {name!r} is not a constant of engine/inference/controller.py")
        out[name] = ast.literal_eval(value)
    return out


if __name__ == "__main__":
    sys.exit(main())
