"""The verify cost curve t(n): robust per-size estimates, a monotone fit, interpolation, and the calibration
(synthetic timings; the calibration's decodes go to a fake context)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from engine.errors import KVRollbackError
from engine.inference.cost import WINDOW, CostCurve, calibrate, robust_mean

T1 = 0.010


def test_robust_mean_ignores_one_contended_timing() -> None:
    assert robust_mean([0.010, 0.011, 0.0105, 0.5]) == pytest.approx(0.0105)
    assert robust_mean([0.010, 0.010, 0.010]) == 0.010
    assert robust_mean([0.010, 0.5]) == 0.010  # two timings: the slower may be the outlier
    assert robust_mean([0.02]) == 0.02


def test_one_contended_step_cannot_poison_a_calibrated_size() -> None:
    """Issue 16's poisoned tables: SmolLM2's batch of 3 recorded at 2.27 s, Gemma's batch of 16 at 1.0 s
    next to 15 at 0.095 s, and the tiny pair's exact 0.0."""
    curve = CostCurve({1: [T1] * 3, 3: [0.015] * 3, 15: [0.095] * 3, 16: [0.097] * 3, 17: [0.11] * 3})
    curve.record(3, 2.27)
    curve.record(16, 1.0)
    curve.record(2, 0.0)  # a clock that did not tick
    assert curve.time(3) == pytest.approx(0.015)
    assert curve.time(16) == pytest.approx(0.097)
    assert curve.count(2) == 0 and curve.time(2) == pytest.approx((T1 + 0.015) / 2)


def test_a_size_with_one_wild_timing_is_pooled_with_its_neighbours() -> None:
    # 16 measured once, far too slow: the monotone fit values it with the bigger, better-known 17 and 24.
    curve = CostCurve({1: [T1] * 3, 8: [0.026] * 3, 17: [0.052] * 3, 24: [0.06] * 3})
    curve.record(16, 1.0)
    assert curve.time(16) == pytest.approx(0.052)
    assert curve.time(8) == pytest.approx(0.026)  # below the pool: untouched


def test_fit_is_monotone_and_keeps_real_steps() -> None:
    curve = CostCurve({1: [T1] * 3, 8: [0.026] * 3, 9: [0.035] * 3, 16: [0.044] * 3, 17: [0.052] * 3})
    measured = curve.measured()
    assert list(measured.values()) == sorted(measured.values())
    assert curve.ratio(9) == pytest.approx(3.5)  # the step after a full tile is kept, not smoothed away
    assert curve.ratio(8) == pytest.approx(2.6)
    # Noise that makes a bigger batch look cheaper than a smaller one is evened out.
    curve.seed({12: [0.05, 0.04]})
    assert curve.time(12) <= curve.time(16) and curve.time(9) <= curve.time(12)  # type: ignore[operator]


def test_unmeasured_sizes_are_interpolated_and_extrapolated() -> None:
    curve = CostCurve()
    assert curve.time(1) is None and curve.ratio(4) is None
    curve.record(1, 0.010)
    assert curve.time(3) == pytest.approx(0.010 * 2)  # only t(1): the prior's slope of half a token per row
    curve.record(5, 0.030)
    assert curve.time(3) == pytest.approx(0.020)
    assert curve.time(9) == pytest.approx(0.050)  # beyond the largest size: the mean slope so far
    assert curve.time(64) == pytest.approx(0.010 + 0.005 * 63)


def test_window_follows_the_machine() -> None:
    curve = CostCurve({1: [T1] * WINDOW})
    for _ in range(WINDOW):
        curve.record(1, 2 * T1)  # the machine got slower for good: the recent timings win
    assert curve.time(1) == pytest.approx(2 * T1)
    assert CostCurve(curve.samples()).samples() == curve.samples()


class FakeContext:
    """Records what a calibration decodes; can refuse to drop positions like a recurrent state."""

    def __init__(self, n_ctx: int = 512, n_batch: int = 64, refuse_after: int | None = None) -> None:
        self.n_ctx, self.n_batch = n_ctx, n_batch
        self.kv = 0
        self.decodes: list[tuple[int, int, str]] = []
        self.refuse_after = refuse_after
        self.cleared = False

    def decode(self, tokens: Sequence[int], pos0: int, logits: str = "last") -> None:
        assert pos0 == self.kv, "a calibration decodes right after what the context holds"
        self.decodes.append((len(tokens), pos0, logits))
        self.kv += len(tokens)

    def synchronize(self) -> None:
        pass

    def truncate(self, n_keep: int) -> None:
        if self.refuse_after is not None and len(self.decodes) > self.refuse_after:
            raise KVRollbackError("recurrent state")
        self.kv = min(self.kv, n_keep)

    def clear(self) -> None:
        self.kv = 0
        self.cleared = True


def test_calibration_times_every_size_each_round_at_a_fixed_position() -> None:
    ctx = FakeContext()
    timings = calibrate(ctx, [5, 6, 7], sizes=(1, 2, 8, 65, 100), rounds=3, position=100)
    assert sorted(timings) == [1, 2, 8]  # 65 and 100 do not fit a decode batch of 64
    assert all(len(ts) == 3 and all(t > 0 for t in ts) for ts in timings.values())
    prefix, *verifies = ctx.decodes
    assert prefix == (100, 0, "last")
    assert all(pos0 == 100 and logits == "all" for _, pos0, logits in verifies)
    # each timed single decode comes after an untimed one
    assert sorted(n for n, _, _ in verifies) == [1] * 6 + [2, 2, 2, 8, 8, 8]
    assert ctx.cleared and ctx.kv == 0


class GraphReuseContext(FakeContext):
    """llama.cpp's CUDA backend: a single decode right after a decode of another size rebuilds its graph
    (3 ms here), one right after another single decode reuses it (1 ms); a batch of n costs 2 + n/10 ms."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.last = 0

    def decode(self, tokens: Sequence[int], pos0: int, logits: str = "last") -> None:
        super().decode(tokens, pos0, logits)
        n = len(tokens)
        self.now += (0.001 if self.last == 1 else 0.003) if n == 1 else 0.002 + n / 10_000
        self.last = n


def test_a_single_decode_is_timed_as_the_loop_runs_it_after_another_single_decode() -> None:
    ctx = GraphReuseContext()
    timings = calibrate(ctx, [1], sizes=(1, 4, 16, 64), rounds=3, position=10, clock=lambda: ctx.now)
    assert timings[1] == pytest.approx([0.001] * 3)  # not 0.003: every round times it after a batch
    assert CostCurve(timings).ratio(64) == pytest.approx(0.0084 / 0.001)


def test_calibration_fits_a_small_context_and_stops_where_it_cannot_rewind() -> None:
    small = FakeContext(n_ctx=40, n_batch=64)
    calibrate(small, [1], sizes=(1, 16), rounds=1, position=256)
    assert small.decodes[0] == (40 - 16 - 1, 0, "last")
    recurrent = FakeContext(refuse_after=3)  # the prefix, then an untimed and a timed single decode
    timings = calibrate(recurrent, [1], sizes=(1, 2, 3), rounds=2)
    assert sum(len(ts) for ts in timings.values()) == 2 and recurrent.cleared


def test_calibration_stops_at_its_budget_with_the_first_sizes_timed() -> None:
    ctx = FakeContext()
    timings = calibrate(ctx, [1], sizes=(1, 4, 8), rounds=50, budget_s=0.0)
    assert list(timings) == [1] and len(timings[1]) == 1  # the most useful size first, then the budget
    assert CostCurve(timings).time(4) is not None and ctx.cleared
    shuffled = calibrate(FakeContext(), [1], sizes=(1, 4, 8), rounds=4)
    assert all(len(ts) == 4 for ts in shuffled.values())


def test_a_bigger_batch_that_is_cheaper_every_time_stays_cheaper() -> None:
    """Monotone where the data say so: SmolLM2 decodes 64 rows faster than 48 on a 2-core CPU."""
    curve = CostCurve({1: [T1] * 3, 48: [0.24, 0.25, 0.245], 64: [0.16, 0.17, 0.165]})
    assert curve.time(64) == pytest.approx(0.165) and curve.time(48) == pytest.approx(0.245)
    # Two timings of 64 are not enough to believe it: pooled as noise.
    noisy = CostCurve({1: [T1] * 3, 48: [0.24, 0.25, 0.245], 64: [0.16, 0.17]})
    assert noisy.time(48) == noisy.time(64)


def test_a_big_batch_follows_the_speed_of_single_decodes() -> None:
    """A calibration in a fresh process's slow first seconds: t(64) timed at 25 t(1) then; single decodes
    then run 25 % faster, and nothing times 64 again for a while. Its cost follows t(1), so it still reads
    as 25 t(1), not 33."""
    curve = CostCurve({1: [0.012] * 3, 16: [0.087] * 3, 64: [0.30] * 3})
    assert curve.ratio(64) == pytest.approx(25.0)
    for _ in range(WINDOW):
        curve.record(1, 0.009)
    assert curve.time(1) == pytest.approx(0.009)
    assert curve.ratio(64) == pytest.approx(25.0) and curve.time(64) == pytest.approx(0.225)
    curve.record(64, 0.225 * 1.2)  # timed again now: relative to t(1) now
    assert curve.ratio(64) == pytest.approx(25.0)  # one timing among four: the robust mean keeps its place
    assert curve.samples()[64] == (0.30, 0.30, 0.30, 0.27)  # the profile keeps seconds


def test_a_size_timed_before_any_single_decode_is_priced_once_one_is() -> None:
    curve = CostCurve()
    curve.record(8, 0.04)
    assert curve.time(8) is None and curve.ratio(8) is None
    curve.record(1, 0.01)
    assert curve.ratio(8) == pytest.approx(4.0) and curve.time(8) == pytest.approx(0.04)


def test_a_calibration_is_relative_to_its_own_single_decodes() -> None:
    """A warm-up at a short context times t(1) faster than the calibration does at 256 tokens: the
    calibration's sizes are priced against the calibration's t(1)."""
    curve = CostCurve()
    for _ in range(7):
        curve.record(1, 0.0084)  # warm-up
    curve.seed({1: [0.011, 0.011], 2: [0.0174] * 2, 64: [0.26] * 2})
    assert curve.ratio(2) == pytest.approx(0.0174 / 0.011) and curve.ratio(64) == pytest.approx(0.26 / 0.011)
