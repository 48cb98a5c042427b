"""The `timings` object of every response: llama-server's names (so clients written for llama-server read
Tandem's figures unchanged) plus Tandem's own, which llama-server does not report.

llama-server's meaning is kept (llama.cpp `tools/server/server-common.cpp`, `server_slot_stats::to_json`):
`prompt_n` counts prompt tokens evaluated (not the cached ones, which are `cache_n`), `predicted_ms` runs from
the end of the prompt to the last token, and `predicted_per_second` is `predicted_n` over that time.
"""

from __future__ import annotations

from typing import Any

from engine.stats import GenerationStats

# Tandem's additions (engine.remote.figures reads them back when one Tandem chats through another).
DRAFTER = "drafter"  # what drafted, e.g. "n-gram"; null when nothing did
SPECULATIVE = "speculative"  # whether the request ran with speculation on
DRAFT_STEPS = "draft_steps"  # verification steps that carried a draft
DRAFT_MEAN_ACCEPTED_LENGTH = "draft_mean_accepted_length"  # tokens per verification step (1 + accepted)
DRAFT_ACCEPTANCE_BY_POSITION = "draft_acceptance_by_position"  # accepted / drafted at depth 1, 2, ...
DRAFT_N_BY_POSITION = "draft_n_by_position"  # drafts that reached depth 1, 2, ...
DRAFT_N_ACCEPTED_BY_POSITION = "draft_n_accepted_by_position"  # of those, accepted
SPECULATION_OFF = "speculation_off"  # why speculation did not run (for most steps), else null
DECODE_PER_SECOND = "decode_per_second"  # Tandem's own speed figure: tokens after the first over their time


def timings(stats: GenerationStats, *, speculative: bool, off_reason: str | None = None) -> dict[str, Any]:
    """llama-server's timings plus Tandem's own for one finished generation. `off_reason`: why speculation
    was off for the whole request (asked off, no drafter), when it was."""
    predicted_s = max(0.0, stats.ttft_s - stats.prompt_s) + stats.decode_s
    out: dict[str, Any] = {
        "cache_n": stats.n_prompt_cached,
        "prompt_n": stats.n_prompt_evaluated,
        "prompt_ms": stats.prompt_s * 1000.0,
        "prompt_per_token_ms": _per_token_ms(stats.prompt_s, stats.n_prompt_evaluated),
        "prompt_per_second": stats.prompt_tps,
        "predicted_n": stats.n_generated,
        "predicted_ms": predicted_s * 1000.0,
        "predicted_per_token_ms": _per_token_ms(predicted_s, stats.n_generated),
        "predicted_per_second": stats.n_generated / predicted_s if predicted_s > 0 else 0.0,
    }
    spec = stats.spec
    out["draft_n"] = spec.drafted if spec else 0
    out["draft_n_accepted"] = spec.accepted if spec else 0
    out[DRAFTER] = spec.drafter if spec else None
    out[SPECULATIVE] = spec is not None
    out[DRAFT_STEPS] = spec.steps if spec else 0
    out[DRAFT_MEAN_ACCEPTED_LENGTH] = spec.mean_accepted_length if spec else 1.0
    by_pos = spec.drafted_by_position if spec else ()
    acc_pos = spec.accepted_by_position if spec else ()
    out[DRAFT_N_BY_POSITION] = list(by_pos)
    out[DRAFT_N_ACCEPTED_BY_POSITION] = list(acc_pos)
    out[DRAFT_ACCEPTANCE_BY_POSITION] = [a / d if d else 0.0 for a, d in zip(acc_pos, by_pos, strict=False)]
    if spec is None:
        out[SPECULATION_OFF] = off_reason or ("switched off for this request" if not speculative else None)
    elif not spec.steps:
        out[SPECULATION_OFF] = spec.main_reason or "nothing was drafted"
    else:
        out[SPECULATION_OFF] = None
    out[DECODE_PER_SECOND] = stats.decode_tps
    return out


def _per_token_ms(seconds: float, n: int) -> float:
    return seconds * 1000.0 / n if n > 0 else 0.0
