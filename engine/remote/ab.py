"""A/B on a server: the same messages plain, then speculative, with one seed, compared by speed and text.

Only a server that lets one request switch speculation off can run this (Tandem's own, through its
`"speculative": false` extension); llama-server and vLLM set speculation for the whole server, and
`cannot_ab` says so instead of running two identical requests and calling the difference a speedup.
The server keeps its prompt cache between the two requests, so the second side may start sooner; the
decode speeds compared are unaffected by that.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

from engine.config import CancelToken, ChatMessage, GenerationParams
from engine.errors import TandemError
from engine.events import DoneEvent, StopReason, TokenEvent
from engine.measure.ab import CONTEXT_CHARS, ABReport, ABStep, Side
from engine.remote.client import RemoteClient, ServerProbe


def cannot_ab(probe: ServerProbe) -> str | None:
    """Why an A/B cannot run on this server, or None when it can."""
    if probe.spec_per_request:
        return None
    return (
        f"{probe.kind} turns speculation on or off for the whole server, not per request, so an A/B cannot "
        "run plain and speculative on it. Compare two servers instead: one started with its drafter, one "
        "without."
    )


def iter_remote_ab(
    client: RemoteClient,
    probe: ServerProbe,
    messages: Sequence[ChatMessage],
    params: GenerationParams,
    cancel: CancelToken | None = None,
) -> Iterator[ABStep | ABReport]:
    """Every event of both requests as ABSteps, then one ABReport; nothing more if cancelled."""
    reason = cannot_ab(probe)
    if reason is not None:
        raise TandemError(reason)
    seed = params.sampling.seed if params.sampling.seed is not None else random.randrange(2**31)
    params = replace(params, sampling=replace(params.sampling, seed=seed))
    sides: dict[Side, tuple[list[str], DoneEvent]] = {}
    for side in ("plain", "speculative"):
        side_params = replace(params, spec=replace(params.spec, enabled=side == "speculative"))
        pieces: list[str] = []
        done: DoneEvent | None = None
        for event in client.chat(messages, side_params, cancel):
            yield ABStep(side, event)
            if isinstance(event, TokenEvent):
                pieces.append(event.text)
            elif isinstance(event, DoneEvent):
                done = event
        if done is None or done.stop_reason is StopReason.CANCELLED:
            return
        sides[side] = (pieces, done)
    (plain_pieces, plain), (spec_pieces, spec) = sides["plain"], sides["speculative"]
    where = _first_difference(plain_pieces, spec_pieces)
    server = spec.stats.server
    yield ABReport(
        seed=seed,
        temperature=params.sampling.temperature,
        max_tokens=params.max_tokens,
        k_max=params.spec.k_max or 0,
        n_prompt=plain.stats.n_prompt,
        plain_runs_tps=(plain.stats.decode_tps,),  # one request per side: a server's timings are its own
        spec_runs_tps=(spec.stats.decode_tps,),
        load_average=None,
        plain_ttft_s=plain.stats.ttft_s,
        spec_ttft_s=spec.stats.ttft_s,
        n_plain=plain.stats.n_generated,
        n_spec=spec.stats.n_generated,
        plain_stop=plain.stop_reason.value,
        spec_stop=spec.stop_reason.value,
        drafter=(server.drafter if server else None) or probe.drafter,
        acceptance=(server.acceptance_rate if server else None) or 0.0,
        mean_accepted_length=(server.mean_accepted_length if server else None) or 1.0,
        mean_k=0.0,
        k_off_share=0.0,
        off_reason=server.caveat if server else None,
        identical=plain.text == spec.text,
        divergence_position=where,
        divergence_margin=None,
        context_before="".join(plain_pieces[:where])[-CONTEXT_CHARS:] if where is not None else "",
        plain_piece=_at(plain_pieces, where),
        spec_piece=_at(spec_pieces, where),
        created_at=time.time(),
        remote=probe.kind,
    )


def _first_difference(a: Sequence[str], b: Sequence[str]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _at(pieces: Sequence[str], index: int | None) -> str:
    return pieces[index] if index is not None and index < len(pieces) else ""
