"""What a server reports about speculation for one request, read into `ServerSpecStats`.

In order of preference (the client takes the first a response has):
- Tandem's own timings (engine.serve.timings): drafted, accepted, steps and acceptance per draft position;
- llama-server's `timings.draft_n` / `timings.draft_n_accepted` (llama.cpp `tools/server/server-common.cpp`;
  absent when nothing was drafted);
- vLLM's `metrics.speculative_decoding` (`--per-request-spec-decode-metrics summary`, vLLM 0.28 and later:
  num_draft_tokens, num_accepted_draft_tokens, num_spec_steps, acceptance_histogram ...);
- the difference of the server's Prometheus counters read before and after the request
  (`llamacpp:spec_decode_num_*_total` with `--metrics`, `vllm:spec_decode_num_*_total`): whole-server
  counters, so requests of other clients running meanwhile are counted too, which is said when it is seen.

Every value is untrusted: anything missing, negative or of the wrong type reads as "not reported".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from engine.serve import timings as tandem_keys
from engine.stats import ServerSpecStats

NONE_REPORTED = "this server reports no speculative figures"
MAX_METRICS_BYTES = 8 * 2**20
MAX_POSITIONS = 256

# Prometheus counter families, per server: (drafted, accepted, steps, accepted per position, tokens generated)
COUNTERS = {
    "llama-server": (
        "llamacpp:spec_decode_num_draft_tokens_total",
        "llamacpp:spec_decode_num_accepted_tokens_total",
        "llamacpp:spec_decode_num_drafts_total",
        "llamacpp:spec_decode_num_accepted_tokens_per_pos_total",
        "llamacpp:tokens_predicted_total",
    ),
    "vLLM": (
        "vllm:spec_decode_num_draft_tokens_total",
        "vllm:spec_decode_num_accepted_tokens_total",
        "vllm:spec_decode_num_drafts_total",
        "vllm:spec_decode_num_accepted_tokens_per_pos_total",
        "vllm:generation_tokens_total",
    ),
}


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)


def _rate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value) if value >= 0 else None


def _counts(values: Any) -> tuple[int, ...]:
    if not isinstance(values, list):
        return ()
    out = [_count(v) for v in values[:MAX_POSITIONS]]
    return tuple(v for v in out if v is not None) if None not in out else ()


def from_tandem(timings: Any) -> ServerSpecStats | None:
    """Tandem's timings (another Tandem's server): None when `timings` is not Tandem's."""
    if not isinstance(timings, dict) or tandem_keys.DRAFT_STEPS not in timings:
        return None
    drafter = timings.get(tandem_keys.DRAFTER)
    off = timings.get(tandem_keys.SPECULATION_OFF)
    return ServerSpecStats(
        source="Tandem timings",
        drafted=_count(timings.get("draft_n")),
        accepted=_count(timings.get("draft_n_accepted")),
        steps=_count(timings.get(tandem_keys.DRAFT_STEPS)),
        accepted_by_position=_counts(timings.get(tandem_keys.DRAFT_N_ACCEPTED_BY_POSITION)),
        drafter=drafter[:200] if isinstance(drafter, str) else None,
        # Tandem's own decode figure (first token to last): measured like the client's, so comparable.
        server_tps=_rate(timings.get(tandem_keys.DECODE_PER_SECOND, timings.get("predicted_per_second"))),
        caveat=f"speculation off: {off[:500]}" if isinstance(off, str) and off else None,
    )


def from_llama_timings(timings: Any, *, speculating: bool | None = None) -> ServerSpecStats | None:
    """llama-server's timings. It leaves draft_n out when nothing was drafted: with `speculating` (what the
    server's /props said) that reads as 0 drafted; unknown, it says so instead of guessing."""
    if not isinstance(timings, dict) or "predicted_n" not in timings:
        return None
    tps = _rate(timings.get("predicted_per_second"))
    if "draft_n" in timings:
        return ServerSpecStats(
            source="llama-server timings",
            drafted=_count(timings.get("draft_n")),
            accepted=_count(timings.get("draft_n_accepted")),
            server_tps=tps,
        )
    if speculating:
        return ServerSpecStats(
            source="llama-server timings",
            drafted=0,
            accepted=0,
            server_tps=tps,
            caveat="nothing was drafted for this request",
        )
    if speculating is False:
        return ServerSpecStats(
            source="llama-server timings", server_tps=tps, caveat="the server runs no drafter"
        )
    return None


def from_vllm(metrics: Any) -> ServerSpecStats | None:
    """vLLM's per-request `metrics` object (its `speculative_decoding` member)."""
    sd = metrics.get("speculative_decoding") if isinstance(metrics, dict) else None
    if not isinstance(sd, dict):
        return None
    hist = _counts(sd.get("acceptance_histogram"))  # index n: steps that accepted exactly n drafts
    by_position = tuple(sum(hist[n] for n in range(i + 1, len(hist))) for i in range(max(0, len(hist) - 1)))
    return ServerSpecStats(
        source="vLLM metrics.speculative_decoding",
        drafted=_count(sd.get("num_draft_tokens")),
        accepted=_count(sd.get("num_accepted_draft_tokens")),
        steps=_count(sd.get("num_spec_steps")),
        accepted_by_position=by_position,
    )


# --- Prometheus ---------------------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_POSITION = re.compile(r'position="(\d+)"')


def parse_prometheus(text: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition: "name{labels}" -> value (comments and junk skipped)."""
    out: dict[str, float] = {}
    for line in text[:MAX_METRICS_BYTES].splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if math.isfinite(value):
            out[match.group(1) + (match.group(2) or "")] = value
    return out


def _family(samples: Mapping[str, float], name: str) -> float | None:
    """Sum of a counter over all its label sets (vLLM labels by model), None when absent."""
    values = [v for k, v in samples.items() if k == name or k.startswith(name + "{")]
    return sum(values) if values else None


def _by_position(samples: Mapping[str, float], name: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, value in samples.items():
        if key.startswith(name + "{"):
            match = _POSITION.search(key)
            if match and int(match.group(1)) < MAX_POSITIONS:
                out[int(match.group(1))] = out.get(int(match.group(1)), 0.0) + value
    return out


def counter_server(samples: Mapping[str, float]) -> str | None:
    """Which server's speculative counters these samples carry, if any."""
    for server, names in COUNTERS.items():
        if _family(samples, names[0]) is not None:
            return server
    return None


def from_counters(
    before: Mapping[str, float], after: Mapping[str, float], own_tokens: int
) -> ServerSpecStats | None:
    """The difference of the spec-decode counters around one request. `own_tokens`: what this request
    generated; when the server's generated-token counter grew by more, other clients were generating too."""
    server = counter_server(after)
    if server is None:
        return None
    drafted_k, accepted_k, steps_k, pos_k, tokens_k = COUNTERS[server]

    def delta(name: str) -> int | None:
        a, b = _family(before, name), _family(after, name)
        if a is None or b is None or b < a:
            return None  # missing, or the server restarted in between
        return round(b - a)

    drafted, accepted = delta(drafted_k), delta(accepted_k)
    if drafted is None or accepted is None:
        return None
    pos_a, pos_b = _by_position(before, pos_k), _by_position(after, pos_k)
    by_position = tuple(round(pos_b.get(i, 0.0) - pos_a.get(i, 0.0)) for i in range(len(pos_b)))
    generated = delta(tokens_k)
    caveat = None
    if generated is not None and generated > own_tokens:
        caveat = (
            f"the server generated {generated - own_tokens} tokens for other clients meanwhile: these "
            "whole-server counters include their requests"
        )
    elif generated is None:
        caveat = "whole-server counters: other clients' requests would be counted too"
    return ServerSpecStats(
        source=f"{server} /metrics counters, difference around this request",
        drafted=drafted,
        accepted=accepted,
        steps=delta(steps_k),
        accepted_by_position=by_position if all(v >= 0 for v in by_position) else (),
        caveat=caveat,
    )


def generated_delta(before: Mapping[str, float], after: Mapping[str, float]) -> int | None:
    """How many tokens the server counted as generated between two snapshots."""
    server = counter_server(after)
    if server is None:
        return None
    name = COUNTERS[server][4]
    a, b = _family(before, name), _family(after, name)
    return None if a is None or b is None else round(b - a)


def none_reported(reason: str | None = None) -> ServerSpecStats:
    return ServerSpecStats(source="none", caveat=reason or NONE_REPORTED)


def describe(f: ServerSpecStats) -> str:
    """The figures in one line, with where they came from (the terminal chat and the app's footer)."""
    if not f.reported:
        return f.caveat or NONE_REPORTED
    line = f"{f.source}: draft_n {f.drafted}, draft_n_accepted {f.accepted}"
    rate = f.acceptance_rate
    if rate is not None and f.drafted:
        line += f" ({rate:.0%})"
    if f.mean_accepted_length is not None:
        line += f", mean accepted length {f.mean_accepted_length:.2f} over {f.steps} steps"
    if f.server_tps:
        line += f", server decode {f.server_tps:.1f} tok/s"
    if f.caveat:
        line += f" ({f.caveat})"
    return line
