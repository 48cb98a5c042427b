"""Shared bits of the comparison benchmarks: model lookup, Tandem and llama-cpp-python runs on one prompt."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import ChatMessage, GenerationParams, LoadConfig, SamplingParams, SpecParams  # noqa: E402
from engine.events import DoneEvent  # noqa: E402
from engine.inference.session import ChatEngine  # noqa: E402


def default_model() -> Path:
    from engine.store.default_model import default_model_path

    path = default_model_path()
    if path is None:
        sys.exit(
            "no --model given and the embedded model is not installed "
            "(python -m engine.store.default_model)"
        )
    return path


def tandem_engine(model: Path, threads: int, n_ctx: int, drafter: str) -> ChatEngine:
    return ChatEngine.load(LoadConfig(model_path=model, drafter=drafter, n_ctx=n_ctx, n_threads=threads))  # type: ignore[arg-type]


def prompt_tokens(engine: ChatEngine, text: str) -> list[int]:
    tokens, _ = engine.fit_messages([ChatMessage("user", text)], 512)
    return tokens


def tandem_decode(
    engine: ChatEngine, tokens: list[int], n: int, spec: bool, k: int | None = None
) -> tuple[float, list[int]]:
    """Decode tok/s (after the first token) and the tokens."""
    engine.reset()
    params = GenerationParams(
        sampling=SamplingParams(temperature=0.0, seed=1),
        max_tokens=n,
        spec=SpecParams(enabled=spec, k_max=k),
    )
    loop = engine.make_loop(params)
    done = [ev for ev in loop.run(tokens) if isinstance(ev, DoneEvent)][0]
    return done.stats.decode_tps, loop.generated


def llama_decode(llm, tokens: list[int], n: int) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    """llama-cpp-python's high-level streaming completion, timed like Tandem: first token to last.
    Returns tok/s and the text."""
    llm.reset()
    out: list[str] = []
    t_first = t_last = 0.0
    for chunk in llm.create_completion(tokens, max_tokens=n, temperature=0.0, top_k=1, stream=True):
        now = time.perf_counter()
        t_first = t_first or now
        t_last = now
        out.append(chunk["choices"][0]["text"])
    n_tok = llm.n_tokens - len(tokens)
    return (n_tok - 1) / (t_last - t_first) if t_last > t_first else 0.0, "".join(out)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0
