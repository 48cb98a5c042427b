"""Fixtures of the history tests: a store on a fresh file, and statistics of a speculative reply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.history.store import HistoryStore
from engine.stats import GenerationStats, SpecRecorder


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "history.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Any:
    s = HistoryStore(db_path)
    yield s
    s.close()


def generation_stats() -> GenerationStats:
    rec = SpecRecorder(drafter="mtp")
    for drafted, accepted in [(3, 3), (3, 1), (3, 0), (2, 2)]:
        rec.record_step(drafted, accepted)
    rec.record_reason("context_full")
    rec.k_history = [3, 3, 3, 2]
    rec.provenance = [0, 1, 2, 3, 0, 1, 0, 0, 1, 2]
    return GenerationStats(
        n_prompt=40, n_prompt_cached=8, prompt_s=0.25, ttft_s=0.3, n_generated=10, decode_s=0.45,
        total_s=0.8, spec=rec.snapshot(),
    )  # fmt: skip
