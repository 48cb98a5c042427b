"""A test drafter that knows the target's continuation and makes deliberate mistakes on a schedule.

Random-weight fixtures never agree with a real drafter, so accept / partial reject / full reject / bonus
paths are exercised by proposing a known greedy continuation with planted errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import cycle

from engine.config import SpecParams
from engine.inference.drafters.base import Draft


class OracleDrafter:
    name = "oracle"
    cheap = True  # drafting costs nothing next to a decode: propose first, let the controller trim

    def __init__(
        self, expected: Sequence[int], n_vocab: int, first_wrong: Sequence[int | None] = (None,)
    ) -> None:
        """`expected`: the full token sequence the target will produce (prompt + continuation).
        `first_wrong`: cycled per draft; each entry is the 0-based draft index of the first planted mistake
        (None: the whole draft is right)."""
        self.expected = list(expected)
        self.n_vocab = n_vocab
        self._schedule = list(first_wrong)
        self._pattern = cycle(self._schedule)
        self.drafts: list[tuple[int, ...]] = []
        self.accepted: list[int] = []

    def configure(self, spec: SpecParams) -> None:
        pass

    def begin(self, prompt: Sequence[int]) -> None:
        self._pattern = cycle(self._schedule)

    def draft(self, context: Sequence[int], k: int) -> Draft:
        start = len(context)
        if list(context) != self.expected[:start]:
            return Draft((), "oracle: context left the expected sequence")
        proposal = list(self.expected[start : start + k])
        wrong = next(self._pattern)
        if wrong is not None and wrong < len(proposal):
            proposal[wrong] = (proposal[wrong] + 1) % self.n_vocab
        self.drafts.append(tuple(proposal))
        return Draft(tuple(proposal), None if proposal else "oracle: nothing left to propose")

    def observe(self, batch: Sequence[int], pos0: int, n_kept: int) -> None:
        pass

    def accept(self, n_accepted: int) -> None:
        self.accepted.append(n_accepted)

    def reset(self) -> None:
        self.drafts.clear()
        self.accepted.clear()

    def close(self) -> None:
        pass
