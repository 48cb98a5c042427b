"""What a target decode of n tokens costs on this machine, t(n), learned per batch size.

The verify cost is not a line. llama.cpp's CPU matmuls work on tiles of rows, so on a 2-core CPU a batch of 9
costs far more per row than a batch of 8, and a batch of 17 more than 16 (`llama-batched-bench` shows the
same steps). The draft-length controller therefore needs t(n) per size as measured, not a fitted slope.

Each size keeps its recent timings, a bigger batch as its cost relative to t(1) when it was timed: t(n) is
that ratio times t(1) as now measured, so a size timed rarely is not priced at the machine's speed of
minutes ago (see CostCurve). A size's estimate is the mean after dropping timings far from their median
(another process took the CPU for one step). The estimates are then made non-decreasing in n
(isotonic regression with each block valued at the weighted median of its sizes, so it is robust too):
one slow step cannot make a small batch look dearer than a big one, nor a big one cheaper. Monotone where
the data say so: a bigger batch that is cheaper in every one of at least three timings each is a real
kernel effect (SmolLM2 decodes 64 rows faster than 48 on a 2-core CPU) and is kept. Sizes never measured
are interpolated between measured neighbours, and beyond the largest by the mean slope.

A short calibration (`calibrate`, on a model's first load on this machine, kept in the pair profile)
seeds every size the controller is likely to pick, so it decides from the real curve from the first step.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from engine.errors import KVRollbackError

WINDOW = 9  # timings kept per batch size: recent ones follow the machine's load and the context's growth
REJECT_MADS = 3.0  # a timing further than this many scaled MADs from its size's median is an outlier
PRIOR_SLOPE = 0.5  # t(n) ~ t(1) * (1 + slope * (n - 1)) when only t(1) is known (a CPU-like guess)
REAL_DROP_SAMPLES = 3  # timings each of two sizes needs before "the bigger batch is cheaper" is believed
REFIT_CHANGE = 0.01  # a size's estimate must move by more than this share before the curve is fitted again

# Sizes a calibration times, most useful first: powers of two and the sizes just past them (where CPU tiles
# make a batch dear), every other size up to 17 (the draft lengths model drafters and short matches use),
# then the tile edges long n-gram drafts land on. A round costs about 120 single-token decodes on a 2-core
# CPU (2.5 s for Gemma 3 270M); the first round goes in this order so that a calibration cut short by its
# budget (a slow model, a busy machine) still has the sizes that matter most.
CALIBRATION_SIZES = (1, 2, 4, 8, 16, 9, 17, 3, 6, 12, 5, 7, 10, 11, 13, 14, 15, 24, 32, 25, 33, 48, 64, 49,
                     65)
CALIBRATION_ROUNDS = 3
CALIBRATION_POSITION = 256  # decode at this context length: a typical prompt's worth of KV before it
CALIBRATION_BUDGET_S = 6.0  # stop timing after this long; the controller keeps learning every size it uses


class CostCurve:
    """t(n) in seconds from timed decodes; shared by every controller of one engine (it is a property of
    the target on this machine, not of a request).

    A bigger batch is kept as its cost relative to t(1) when it was timed, and t(n) is that ratio times
    t(1) now. The machine's speed drifts: a fresh process on this VM decodes 10-20 % slower for its first
    seconds (when a calibration runs), a longer context slows every size, another program takes a core.
    t(1) is timed at nearly every plain step and follows; a batch of 64 may be timed once per reply. Kept in
    seconds, the big sizes would be priced at the speed of whenever they were last timed (SmolLM2: t(64)
    read as 30 t(1) instead of 24.5, and the controller drafted 15 tokens where 63 paid)."""

    def __init__(self, samples: Mapping[int, Iterable[float]] | None = None) -> None:
        self._samples: dict[int, deque[float]] = {}  # per size: recent timings in seconds
        self._t1_then: dict[int, deque[float | None]] = {}  # per size > 1: t(1)'s estimate at each timing
        self._t1: float | None = None  # robust_mean of t(1)'s timings (see _t1_now)
        self._t1_stale = False  # t(1) timed since _t1 was computed
        self._ratios: dict[int, float] = {}  # per size > 1: robust_mean of its timings over t(1) then
        self._fitted: dict[int, float] | None = None  # measured size -> monotone ratio to t(1)
        self._sizes: list[int] = []  # the fitted sizes, ascending
        self._memo: dict[int, float] = {}  # ratio(n) since the last fit (the controller asks every step)
        if samples:
            self.seed(samples)

    # --- learning -------------------------------------------------------------------------------------
    def record(self, n: int, seconds: float) -> None:
        """One timed decode of n tokens. Non-positive or non-finite timings (a clock that did not tick) are
        dropped: a zero would make that size look free."""
        self._record(n, seconds, self._t1_now() if n > 1 else None)

    def _record(self, n: int, seconds: float, t1_then: float | None) -> None:
        if n < 1 or not _valid(seconds):
            return
        window = self._samples.setdefault(n, deque(maxlen=WINDOW))
        window.append(seconds)
        if n == 1:
            # Plain decoding times t(1) every token and asks for it never: its estimate is made when read
            # (a sort of the window on cold caches right after a decode, ~30 us of a 9 ms SmolLM2 token).
            if self._t1 is None:
                self._t1 = robust_mean(window)
                self._refresh_ratios()  # sizes timed before any t(1) are relative to this one
            else:
                self._t1_stale = True
            return
        self._t1_then.setdefault(n, deque(maxlen=WINDOW)).append(t1_then)
        self._update_ratio(n)

    def _update_ratio(self, n: int) -> None:
        if self._t1 is None:
            return  # no t(1) yet: this size is priced once one is timed
        old, new = self._ratios.get(n), robust_mean(self._ratio_samples(n))
        self._ratios[n] = new
        # The fit runs when the controller next asks. A timing that moves its size's estimate by under 1%
        # changes no decision: most steps then cost no fit at all.
        if old is None or abs(new - old) > REFIT_CHANGE * old:
            self._fitted = None

    def _refresh_ratios(self) -> None:
        for n in self._t1_then:
            self._update_ratio(n)
        self._fitted = None

    def seed(self, samples: Mapping[int, Iterable[float]]) -> None:
        """Timings taken together (a calibration, a profile): every other size is relative to the t(1) timed
        with them, not to single decodes timed before (a warm-up at a short context is faster)."""
        timings = {int(n): [float(s) for s in values] for n, values in samples.items()}
        singles = [s for s in timings.pop(1, []) if _valid(s)]
        for seconds in singles:
            self._record(1, seconds, None)
        t1_then = robust_mean(singles) if singles else self._t1_now()
        for n, values in timings.items():
            for seconds in values:
                self._record(n, seconds, t1_then)

    def samples(self) -> dict[int, tuple[float, ...]]:
        """Every size's recent timings in seconds (what the pair profile keeps)."""
        return {n: tuple(xs) for n, xs in sorted(self._samples.items())}

    def count(self, n: int) -> int:
        return len(self._samples.get(n, ()))

    def copy(self) -> CostCurve:
        return CostCurve(self.samples())

    # --- estimates ------------------------------------------------------------------------------------
    def measured(self) -> dict[int, float]:
        """The monotone estimate in seconds at every measured size."""
        t1 = self._t1_now()
        return {} if t1 is None else {n: r * t1 for n, r in self._fit().items()}

    def _fit(self) -> dict[int, float]:
        if self._fitted is None:
            t1 = self._t1
            if t1 is None:
                self._fitted = {}
            else:
                ratios = {1: 1.0, **self._ratios}
                weights = {n: len(self._samples[n]) for n in ratios}
                self._fitted = _monotone(ratios, weights, self._ratio_samples)
            self._sizes = sorted(self._fitted)
            self._memo = {}
        return self._fitted

    def _t1_now(self) -> float | None:
        """t(1) as now measured (None before the first single-token timing)."""
        if self._t1_stale:
            self._t1 = robust_mean(self._samples[1])
            self._t1_stale = False
        return self._t1

    def _ratio_samples(self, n: int) -> list[float]:
        """n's timings over t(1) when each was taken (t(1) now for those taken before any t(1))."""
        t1 = self._t1_now() or 1.0
        if n == 1:
            return [s / t1 for s in self._samples[1]]
        return [s / (then or t1) for s, then in zip(self._samples[n], self._t1_then[n], strict=True)]

    def time(self, n: int) -> float | None:
        """Estimated seconds for a decode of n tokens (None: t(1) not measured yet)."""
        r = self.ratio(n)
        t1 = self._t1_now()
        return None if r is None or t1 is None else r * t1

    def ratio(self, n: int) -> float | None:
        """t(n) / t(1): what verifying n tokens at once costs in single-token decodes."""
        fitted = self._fit()
        if not fitted:
            return None
        r = self._memo.get(n)
        if r is None:
            r = self._memo[n] = _interpolate(fitted, self._sizes, n)
        return r


def _valid(seconds: float) -> bool:
    return seconds > 0.0 and math.isfinite(seconds)


def robust_mean(values: Iterable[float]) -> float:
    """Mean of the values within REJECT_MADS scaled median absolute deviations of their median: one
    contended timing among a few does not move it, and a tight cluster keeps its precision."""
    ordered = sorted(values)
    if len(ordered) < 3:
        return ordered[0]  # one timing, or two: the slower one may be the outlier
    med = _median_sorted(ordered)
    mad = _median_sorted(sorted(abs(v - med) for v in ordered)) * 1.4826
    if mad == 0.0:
        return med
    kept = [v for v in ordered if abs(v - med) <= REJECT_MADS * mad]
    return sum(kept) / len(kept)


def _median_sorted(ordered: Sequence[float]) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _monotone(
    estimates: Mapping[int, float], weights: Mapping[int, int], samples: Callable[[int], Sequence[float]]
) -> dict[int, float]:
    """Non-decreasing in n: pool adjacent violators, each pool valued at the weighted median of its sizes'
    estimates (L1 isotonic regression: a single wild size cannot drag its neighbours with it), except where
    the timings of two sizes say the bigger one really is cheaper (`_real_drop`)."""
    blocks: list[list[tuple[float, int, int]]] = []  # per block: (estimate, weight, n)
    for n in sorted(estimates):
        blocks.append([(estimates[n], weights[n], n)])
        while (
            len(blocks) > 1
            and _block_value(blocks[-2]) > _block_value(blocks[-1])
            and not _real_drop(blocks[-2], blocks[-1], samples)
        ):
            last = blocks.pop()
            blocks[-1].extend(last)
    return {n: _block_value(block) for block in blocks for _, _, n in block}


def _real_drop(
    left: Sequence[tuple[float, int, int]],
    right: Sequence[tuple[float, int, int]],
    samples: Callable[[int], Sequence[float]],
) -> bool:
    """Two single sizes, each timed at least REAL_DROP_SAMPLES times, the bigger one faster every time."""
    if len(left) != 1 or len(right) != 1:
        return False
    small, big = samples(left[0][2]), samples(right[0][2])
    return min(len(small), len(big)) >= REAL_DROP_SAMPLES and max(big) < min(small)


def _block_value(block: Sequence[tuple[float, int, int]]) -> float:
    ordered = sorted(block)
    half = sum(w for _, w, _ in ordered) / 2
    seen = 0
    for value, weight, _ in ordered:
        seen += weight
        if seen >= half:
            return value
    return ordered[-1][0]


def _interpolate(fitted: Mapping[int, float], sizes: Sequence[int], n: int) -> float:
    """t(n) from the fitted sizes (`sizes`: their keys, ascending)."""
    if n in fitted:
        return fitted[n]
    i = bisect.bisect_left(sizes, n)
    lo = sizes[i - 1] if i > 0 else None
    hi = sizes[i] if i < len(sizes) else None
    if lo is not None and hi is not None:
        return fitted[lo] + (fitted[hi] - fitted[lo]) * (n - lo) / (hi - lo)
    if lo is None:
        assert hi is not None  # n is below every measured size: scale the smallest down by the prior
        return fitted[hi] * (1 + PRIOR_SLOPE * (n - 1)) / (1 + PRIOR_SLOPE * (hi - 1))
    first = sizes[0]
    if lo == first:  # one size measured: the prior's slope from it
        return fitted[lo] * (1 + PRIOR_SLOPE * (n - 1)) / (1 + PRIOR_SLOPE * (lo - 1))
    slope = (fitted[lo] - fitted[first]) / (lo - first)  # beyond the largest: the mean slope so far
    return fitted[lo] + slope * (n - lo)


class Decoder(Protocol):
    """What a calibration needs of a context (engine.inference.llama.Context)."""

    n_ctx: int
    n_batch: int

    def decode(self, tokens: Sequence[int], pos0: int, logits: str = "last") -> None: ...

    def synchronize(self) -> None: ...

    def truncate(self, n_keep: int) -> None: ...

    def clear(self) -> None: ...


def calibrate(
    ctx: Decoder,
    filler: Sequence[int],
    sizes: Sequence[int] = CALIBRATION_SIZES,
    *,
    rounds: int = CALIBRATION_ROUNDS,
    position: int = CALIBRATION_POSITION,
    budget_s: float = CALIBRATION_BUDGET_S,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[int, list[float]]:
    """Time verify decodes (logits for every row) of each size in `sizes`, `rounds` times: the first round
    in the given order, later ones shuffled so a burst of load elsewhere spreads over sizes instead of
    hitting one. Stops once `budget_s` is spent. The context must be empty; it is left empty. `filler`: valid
    tokens to decode (their values do not change the cost). A context that cannot drop positions (recurrent
    state) ends the calibration early with what was timed. A single decode is timed after an untimed one, as
    the loop runs it: right after a bigger batch, llama.cpp's CUDA backend rebuilds the graph that
    consecutive single decodes reuse (on an H200, Gemma 3 270M: 2.9 ms timed so against 1.1–1.3 ms a token
    in the loop), and every other size's ratio is relative to it."""
    sizes = [n for n in sizes if 1 <= n <= ctx.n_batch and n < ctx.n_ctx]
    if not filler or not sizes:
        return {}
    longest = max(sizes)
    position = max(0, min(position, ctx.n_ctx - longest - 1))
    tokens = [filler[i % len(filler)] for i in range(position + longest)]
    timings: dict[int, list[float]] = {n: [] for n in sizes}
    rng = random.Random(seed)
    start = clock()
    try:
        if position:
            ctx.decode(tokens[:position], 0, "last")  # the context a verify batch sees in a short chat
        for done in range(rounds):
            order = list(sizes)
            if done:
                rng.shuffle(order)
            for n in order:
                if clock() - start > budget_s and any(timings.values()):
                    return {n: ts for n, ts in timings.items() if ts}
                if n == 1:
                    ctx.decode(tokens[position : position + 1], position, "all")
                    ctx.truncate(position)
                t0 = clock()
                ctx.decode(tokens[position : position + n], position, "all")
                ctx.synchronize()
                timings[n].append(clock() - t0)
                ctx.truncate(position)
    except KVRollbackError:
        pass
    finally:
        ctx.clear()
    return {n: ts for n, ts in timings.items() if ts}
