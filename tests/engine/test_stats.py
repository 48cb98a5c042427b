"""GenerationStats.to_dict: the shape the history stores (asdict's), without asdict's per-element copies."""

from __future__ import annotations

import dataclasses
import json

from engine.stats import GenerationStats, ServerSpecStats, SpecStats


def _stats(n: int) -> GenerationStats:
    spec = SpecStats(
        drafter="n-gram",
        drafted_by_position=(5, 3),
        accepted_by_position=(4, 2),
        accepted_length_hist=(1, 2, 2),
        draft_s=0.01,
        verify_s=0.5,
        plain_s=0.2,
        other_s=0.03,
        k_history=tuple(i % 3 for i in range(n)),
        provenance=tuple(i % 2 for i in range(n)),
        reasons=(("controller chose k=0", 3),),
        n_rollback=2,
    )
    server = ServerSpecStats("llama-server timings", drafted=10, accepted=7, accepted_by_position=(5, 2))
    return GenerationStats(12, 4, 0.1, 0.2, n, 1.5, 1.8, spec=spec, server=server)


def test_to_dict_is_asdict_and_round_trips_through_json():
    stats = _stats(50)
    assert stats.to_dict() == dataclasses.asdict(stats)
    assert GenerationStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    plain = GenerationStats(3, 0, 0.1, 0.1, 5, 0.4, 0.5)
    assert plain.to_dict() == dataclasses.asdict(plain)
