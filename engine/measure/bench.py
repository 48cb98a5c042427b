"""Side-by-side measurement: each prompt decoded plainly and speculatively, alternating for several rounds
(engine.measure.ab, the same A/B the app runs), in one process with the same settings and seed. Reports the
median speeds and their spread, the speedup, and whether the outputs are token-identical (if not: where they
diverge and the target's top-2 logit margin there). Against the machine's measured cost curve it also
reports the ceiling for the acceptance the run achieved (engine.measure.ceiling) and how much of it the run
delivered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

from engine.config import ChatMessage, GenerationParams
from engine.errors import TandemError
from engine.inference.session import ChatEngine
from engine.measure.ab import DISTURBED_SPREAD, first_divergence, k_off_share, mean_k, run_ab
from engine.measure.ceiling import achieved_ceiling
from engine.stats import Divergence, GenerationStats

__all__ = ["BenchPrompt", "BenchResult", "bench_prompt", "first_divergence", "format_table", "load_prompts"]


@dataclass(frozen=True, slots=True)
class BenchPrompt:
    id: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class BenchResult:
    prompt_id: str
    n_prompt: int
    n_plain: int
    n_spec: int
    plain_tps: float  # median of the rounds
    spec_tps: float
    speedup: float
    plain_spread: float  # (fastest - slowest) / median of each side's runs
    spec_spread: float
    disturbed: bool  # a spread above engine.measure.ab.DISTURBED_SPREAD: the speedup is not trustworthy
    ceiling: float  # speedup if every step had verified exactly what it accepted (engine.measure.ceiling)
    load_average: float | None
    acceptance: float
    mean_accepted_length: float
    mean_k: float
    k_off_share: float  # share of steps where the controller chose k = 0
    identical: bool
    divergence: Divergence | None
    drafter: str | None
    off_reason: str | None
    spec_time_outside_decode: float  # share of the speculative loop spent outside llama_decode

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def load_prompts(path: Path | None) -> list[BenchPrompt]:
    """JSONL: {"id": ..., "prompt": "..."} or {"id": ..., "messages": [{"role", "content"}...]}."""
    if path is None:
        text = resources.files("resources").joinpath("bench_prompts.jsonl").read_text(encoding="utf-8")
        origin = "bundled prompts"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TandemError(f"{path}: cannot read prompts: {exc.strerror}") from exc
        origin = str(path)
    prompts: list[BenchPrompt] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if "messages" in obj:
                msgs = tuple(ChatMessage(m["role"], m["content"]) for m in obj["messages"])
            else:
                msgs = (ChatMessage("user", str(obj["prompt"])),)
            prompts.append(BenchPrompt(str(obj.get("id", f"prompt-{n}")), msgs, obj.get("max_tokens")))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TandemError(f"{origin}, line {n}: not a prompt object ({exc})") from exc
    if not prompts:
        raise TandemError(f"{origin}: no prompts")
    return prompts


def bench_prompt(
    engine: ChatEngine, prompt: BenchPrompt, params: GenerationParams, rounds: int = 3
) -> BenchResult:
    if prompt.max_tokens:
        params = replace(params, max_tokens=prompt.max_tokens)
    ab = run_ab(engine, prompt.messages, params, rounds=rounds)
    assert ab is not None  # nothing cancels a benchmark run
    report = ab.report()
    sp = ab.spec.stats.spec
    cost = engine.costs.time
    return BenchResult(
        prompt_id=prompt.id,
        n_prompt=ab.n_prompt,
        n_plain=len(ab.plain.tokens),
        n_spec=len(ab.spec.tokens),
        plain_tps=ab.plain_tps,
        spec_tps=ab.spec_tps,
        speedup=ab.speedup,
        plain_spread=report.plain_spread,
        spec_spread=report.spec_spread,
        disturbed=report.disturbed,
        ceiling=achieved_ceiling(sp.provenance, lambda n: cost(n) or 0.0) if sp else 1.0,
        load_average=ab.load_average,
        acceptance=sp.acceptance_rate if sp else 0.0,
        mean_accepted_length=sp.mean_accepted_length if sp else 1.0,
        mean_k=mean_k(sp),
        k_off_share=k_off_share(sp),
        identical=ab.identical,
        divergence=ab.divergence,
        drafter=sp.drafter if sp else None,
        off_reason=sp.main_reason if sp else None,
        spec_time_outside_decode=_outside_share(ab.spec.stats),
    )


def _outside_share(stats: GenerationStats) -> float:
    sp = stats.spec
    if sp is None:
        return 0.0
    loop = sp.draft_s + sp.verify_s + sp.plain_s + sp.other_s
    return sp.other_s / loop if loop else 0.0


def format_table(results: Sequence[BenchResult]) -> str:
    head = (
        f"{'prompt':<18} {'plain tok/s':>11} {'spec tok/s':>10} {'spread':>6} {'speedup':>7} {'ceiling':>7} "
        f"{'of it':>5} {'accept':>6} {'mean len':>8} {'mean k':>6} {'k=0':>5} {'outside':>7} {'load':>4}  "
        "identical"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        ident = (
            "yes"
            if r.identical
            else (
                f"NO at token {r.divergence.position} (top-2 margin {r.divergence.top2_margin:.3g})"
                if r.divergence
                else "NO"
            )
        )
        spread = max(r.plain_spread, r.spec_spread)
        load = f"{r.load_average:>4.1f}" if r.load_average is not None else "   ?"
        lines.append(
            f"{r.prompt_id[:18]:<18} {r.plain_tps:>11.1f} {r.spec_tps:>10.1f} {spread:>6.0%} "
            f"{r.speedup:>6.2f}{'×' if not r.disturbed else '?'} {r.ceiling:>6.2f}× "
            f"{r.speedup / r.ceiling if r.ceiling else 0:>5.0%} {r.acceptance:>6.0%} "
            f"{r.mean_accepted_length:>8.2f} {r.mean_k:>6.2f} {r.k_off_share:>5.0%} "
            f"{r.spec_time_outside_decode:>7.1%} {load}  {ident}"
        )
    if results:
        geo = 1.0
        for r in results:
            geo *= max(r.speedup, 1e-9)
        lines.append(f"geometric mean speedup: {geo ** (1 / len(results)):.2f}×")
        disturbed = [r.prompt_id for r in results if r.disturbed]
        if disturbed:
            lines.append(
                f"timings disturbed (a side's runs spread more than {DISTURBED_SPREAD:.0%}; marked ?): "
                f"{', '.join(disturbed)} — other programs were using the CPU"
            )
    return "\n".join(lines)
