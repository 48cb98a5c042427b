"""Per-pair learned acceptance and decode costs: keys, learning, the calibration on a pair's first load, the
predicted speedup (the controller's own model) outranked by a clean A/B, and the JSON store (atomic, reads
version 1, survives a corrupt file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import LoadConfig
from engine.inference.api import EngineInfo
from engine.inference.controller import DraftLengthController
from engine.inference.cost import CostCurve
from engine.measure.pair_profile import EVIDENCE_CAP, PairKey, PairProfile, ProfileStore, pair_key
from engine.stats import GenerationStats, SpecRecorder


def info(drafter: str | None = "n-gram", device: str = "CPU", gpu: int = 0) -> EngineInfo:
    return EngineInfo("m", Path("m.gguf"), "llama", 512, drafter, None, device, gpu, 1000)


def stats(steps: list[tuple[int, int]]) -> GenerationStats:
    """A generation whose speculative steps drafted/accepted as given."""
    rec = SpecRecorder(drafter="n-gram")
    for drafted, accepted in steps:
        rec.record_step(drafted, accepted)
        rec.k_history.append(drafted)
    return GenerationStats(10, 0, 0.01, 0.02, 50, 1.0, 1.1, spec=rec.snapshot())


PLAIN = GenerationStats(10, 0, 0.01, 0.02, 50, 1.0, 1.1, spec=None)
KEY = PairKey("k", "m + n-gram")


def test_pair_key_tells_pairs_apart(tmp_path: Path) -> None:
    target = tmp_path / "target.gguf"
    target.write_bytes(b"x" * 10)
    draft = tmp_path / "draft.gguf"
    draft.write_bytes(b"y" * 5)
    base = pair_key(LoadConfig(model_path=target), info())
    assert base.label == "target + n-gram" and "target.gguf:10" in base.key
    with_draft = pair_key(LoadConfig(model_path=target, draft_model_path=draft), info("draft model: d"))
    assert "draft.gguf:5" in with_draft.key
    on_gpu = pair_key(LoadConfig(model_path=target), info(device="GPU", gpu=99))
    one_thread = pair_key(LoadConfig(model_path=target, n_threads=1), info())  # another cost curve
    target.write_bytes(b"x" * 11)  # another quantisation saved under the same name
    resized = pair_key(LoadConfig(model_path=target), info())
    assert len({base.key, with_draft.key, on_gpu.key, one_thread.key, resized.key}) == 5


def test_no_prediction_without_evidence() -> None:
    empty = PairProfile("k", "l", (), (), (), None)
    assert empty.predict() is None
    few = empty.learn(stats([(3, 1)] * 3), {1: [0.01], 4: [0.015]}, None)
    assert few.predict() is None  # 3 drafts: not enough to say anything
    plain_only = empty.learn(PLAIN, {1: [0.01]}, None)
    assert plain_only.predict() is None and plain_only.decode_s == ((1, (0.01,)),)


def test_prediction_is_the_controller_model_on_learned_figures() -> None:
    # Depth 1 accepted 80 of 100 times; depth 2 reached 100 times, accepted 40 (so 50% given depth 1).
    steps = [(2, 2)] * 40 + [(2, 1)] * 40 + [(2, 0)] * 20
    profile = PairProfile("k", "l", (), (), (), None).learn(stats(steps), {1: [0.010], 3: [0.012]}, None)
    assert profile.drafted == (100, 100) and profile.accepted == (80, 40)
    assert profile.conditional_acceptance() == pytest.approx([0.8, 0.5])
    pred = profile.predict()
    assert pred is not None
    # k = 2: E = 1 + 0.8 + 0.8 * 0.5 = 2.2 tokens per step costing 0.012 s, against 1 token per 0.010 s.
    # (the controller adds its prior's 2 pseudo-observations to the 100 learned ones: within 1%)
    assert pred.k == 2 and pred.speedup == pytest.approx(2.2 / 1.2, rel=0.01)
    assert pred.acceptance == pytest.approx(0.8) and pred.verify_ratio == pytest.approx(1.2)
    assert pred.evidence == 100 and "≈1.8×" in pred.short() and "80%" in pred.detail()


def test_prediction_says_off_when_verifying_costs_too_much() -> None:
    steps = [(3, 0)] * 45 + [(3, 1)] * 5
    profile = PairProfile("k", "l", (), (), (), None).learn(stats(steps), {1: [0.010], 4: [0.030]}, 0.002)
    pred = profile.predict()
    assert pred is not None and pred.k == 0 and pred.speedup == pytest.approx(1.0)
    assert "would not pay" in pred.detail()


def test_learning_accumulates_caps_and_keeps_the_curves_timings() -> None:
    p = PairProfile("k", "l", (), (), (), None)
    p = p.learn(stats([(1, 1)] * 10), {1: [0.010], 2: [0.012]}, None)
    p = p.learn(stats([(1, 0)] * 10), {1: [0.010, 0.020, 0.0, 0.011]}, 0.001)
    assert p.drafted == (20,) and p.accepted == (10,) and p.generations == 2
    # The engine's curve replaces the sizes it has (it was seeded from here); a 0.0 timing is dropped.
    assert dict(p.decode_s) == {1: (0.010, 0.020, 0.011), 2: (0.012,)} and p.draft_s == 0.001
    assert p.curve().time(1) == pytest.approx(0.0105)  # robust: the slow 0.020 is left out
    p = p.learn(stats([(1, 1)] * int(EVIDENCE_CAP)), {}, None)
    assert p.drafted[0] == pytest.approx(EVIDENCE_CAP)
    assert p.accepted[0] / p.drafted[0] == pytest.approx((10 + EVIDENCE_CAP) / (20 + EVIDENCE_CAP))


def test_controller_from_estimates_reproduces_them() -> None:
    ctl = DraftLengthController.from_estimates([0.9, 0.6], CostCurve({1: [0.01], 3: [0.013]}), 0.001)
    assert ctl.k_max == 2
    # within the controller's prior (2 pseudo-observations against the estimates' 100)
    assert ctl.accept_prob(1) == pytest.approx(0.9, abs=0.01) and ctl.accept_prob(2) == pytest.approx(
        0.6, abs=0.01
    )
    assert ctl.decode_time(3) == pytest.approx(0.013) and ctl.draft_cost == 0.001
    k, speedup = ctl.best()
    assert speedup == pytest.approx(max(ctl.speedup(i) for i in range(3))) and speedup == pytest.approx(
        ctl.speedup(k)
    )


def test_store_round_trip_and_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    store = ProfileStore(path)
    ctl = DraftLengthController(3)
    ctl.record_decode(1, 0.01)
    ctl.record_decode(4, 0.014)
    store.learn_from(KEY, stats([(3, 2)] * 20), ctl)
    store.record_ab(KEY, 1.37)
    assert [p.name for p in tmp_path.iterdir()] == ["profiles.json"]  # no temporary file left
    again = ProfileStore(path).get(KEY)
    assert again == store.get(KEY)
    assert again is not None and again.last_ab == 1.37 and dict(again.decode_s) == {1: (0.01,), 4: (0.014,)}
    pred = again.predict()
    assert pred is not None and pred.last_ab == 1.37 and "1.37×" in pred.detail()
    # A clean A/B measured what the model predicts: the measurement is what the app shows.
    assert pred.short() == "measured 1.37× (A/B)" and f"≈{pred.speedup:.1f}×" in pred.detail()


def test_a_version_1_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    entry = {"label": "m", "drafted": [10.0], "accepted": [5.0], "decode_s": {"1": 0.01, "4": 0.02}}
    path.write_text(json.dumps({"version": 1, "pairs": {"k": {**entry, "draft_s": None}}}))
    profile = ProfileStore(path).get(KEY)
    assert profile is not None and dict(profile.decode_s) == {1: (0.01,), 4: (0.02,)}
    assert not profile.calibrated  # its next load calibrates


class FakeEngine:
    def __init__(self) -> None:
        self.costs = CostCurve()
        self.calibrations = 0

    def calibrate(self) -> dict[int, list[float]]:
        self.calibrations += 1
        timings = {1: [0.01, 0.011, 0.0], 8: [0.03, 0.029]}
        self.costs.seed(timings)
        return timings


def test_first_load_calibrates_once_later_loads_seed_from_the_profile(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    first = FakeEngine()
    profile = ProfileStore(path).prepare(KEY, first)
    assert first.calibrations == 1 and profile.calibrated
    assert dict(profile.decode_s) == {1: (0.01, 0.011), 8: (0.03, 0.029)}
    later = FakeEngine()
    ProfileStore(path).prepare(KEY, later)  # another session on the same machine
    assert later.calibrations == 0 and later.costs.samples() == dict(profile.decode_s)
    assert ProfileStore(path).get(PairKey("other", "x")) is None


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"version": 7, "pairs": {}}'])
def test_corrupt_file_is_set_aside(tmp_path: Path, content: str) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(content)
    store = ProfileStore(path)
    assert store.get(KEY) is None
    assert (tmp_path / "profiles.json.corrupt").read_text() == content  # kept for a look, not lost
    store.learn(KEY, stats([(1, 1)] * 10), {1: [0.01]}, None)
    assert ProfileStore(path).get(KEY) is not None


def test_malformed_entry_is_dropped_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    good = PairProfile("good", "g", (10.0,), (5.0,), ((1, (0.01,)),), None).to_dict()
    bad = {**good, "accepted": [50.0]}  # more accepted than drafted
    zero = {**good, "decode_s": {"1": [0.0]}}  # a clock that did not tick
    pairs = {"good": good, "bad": bad, "zero": zero, "worse": 3}
    path.write_text(json.dumps({"version": 2, "pairs": pairs}))
    store = ProfileStore(path)
    assert store.get(PairKey("good", "")) is not None
    assert store.get(PairKey("bad", "")) is None and store.get(PairKey("worse", "")) is None
    assert store.get(PairKey("zero", "")) is None


def test_unwritable_store_loses_only_the_profile(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = ProfileStore(blocker / "profiles.json")  # its folder is a file: every write fails
    profile = store.learn(KEY, stats([(1, 1)] * 10), {1: [0.01]}, None)
    assert profile.drafted == (10,) and store.get(KEY) == profile  # still known for this session
