"""Prompt-lookup drafting: if the last n tokens occurred earlier (in the prompt or the reply so far), propose
what followed them then. Free to run, so it only costs when the target rejects its proposals.

Among the earlier occurrences of the longest matching n-gram, the one whose match runs furthest back wins
(ties: the most recent): in code that repeats short phrases, `return self.` occurs many times, but only one
occurrence is the line being copied. The match length goes with the proposal (`Draft.match_len`): the
controller trusts a 16-token match far more than a 2-token one, which is why llama.cpp's ngram-simple looks up
12-token keys and then drafts 48 tokens (common/ngram-map.cpp).

Copies of structured text repeat everything but a value: `age: 20`, `age: 21`, ... Other occurrences that
matched about as far back as the chosen one (rivals) show where: the first proposed token on which a rival
went on differently is reported as disputed (`Draft.disputed_at`), and the controller prices that guess on
its own record instead of the copy's, so a draft stops short of it when such guesses fail (the verify step's
own token then writes the value).
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.config import NGRAM_K_MAX, SpecParams
from engine.inference.drafters.base import Draft

MAX_CANDIDATES = 16  # earlier occurrences of one n-gram compared per draft (the most recent ones)
RIVAL_LEN = 8  # an occurrence matched this far back (or as far as the best) is a rival
MATCH_CAP = 32  # how far back a match is followed: beyond the longest match class it changes nothing


class NGramDrafter:
    name = "n-gram"
    cheap = True  # drafting costs nothing next to a decode: propose first, let the controller trim
    default_k_max = NGRAM_K_MAX

    def __init__(self, n_min: int = 2, n_max: int = 4) -> None:
        self.n_min = self.n_max = 0
        self._tokens: list[int] = []
        # For each n: n-gram -> end indices (exclusive) of its occurrences that have a continuation, oldest
        # first.
        self._index: dict[int, dict[tuple[int, ...], list[int]]] = {}
        self._set_sizes(n_min, n_max)

    def configure(self, spec: SpecParams) -> None:
        if (spec.ngram_min, spec.ngram_max) != (self.n_min, self.n_max):
            self._set_sizes(spec.ngram_min, spec.ngram_max)

    def _set_sizes(self, n_min: int, n_max: int) -> None:
        if not 1 <= n_min <= n_max:
            raise ValueError(f"n-gram sizes must satisfy 1 <= min <= max (got {n_min}..{n_max})")
        self.n_min, self.n_max = n_min, n_max
        self.reset()  # the index is per size: rebuilt from the context at the next draft

    def draft(self, context: Sequence[int], k: int) -> Draft:
        self._sync(context)
        for n in range(self.n_max, self.n_min - 1, -1):
            if len(context) <= n:
                continue
            ends = self._index[n].get(tuple(context[-n:]))
            if ends:
                end, length, rivals = self._best_match(context, ends, n)
                tokens = self._continue(context, end, k)
                agreed = _agreed_depth(context, end, rivals, len(tokens))
                return Draft(tokens, match_len=length, disputed_at=agreed if agreed < len(tokens) else None)
        return Draft((), "drafter has no match")

    @staticmethod
    def _best_match(context: Sequence[int], ends: Sequence[int], n: int) -> tuple[int, int, list[int]]:
        """The occurrence whose match with the context's end runs furthest back, that length, and the other
        occurrences matched about as far back (rivals: what they went on with is evidence too)."""
        last = len(context) - 1
        best_end, best_len = ends[-1], -1
        found: list[tuple[int, int]] = []
        for end in reversed(ends[-MAX_CANDIDATES:]):
            length = n
            while (
                length < MATCH_CAP
                and end - 1 - length >= 0
                and context[end - 1 - length] == context[last - length]
            ):
                length += 1
            found.append((end, length))
            if length > best_len:
                best_end, best_len = end, length
        near = min(best_len, RIVAL_LEN)
        return best_end, best_len, [end for end, length in found if length >= near and end != best_end]

    @staticmethod
    def _continue(context: Sequence[int], end: int, k: int) -> tuple[int, ...]:
        """What followed the match, k tokens long. A recent match (text repeating with a short period)
        runs into the end of the context: the copy then continues from its own proposal, as the
        repetition would, instead of stopping at a few tokens."""
        out = list(context[end : end + k])
        period = len(context) - end  # the proposal's token i repeats the one `period` tokens earlier
        while len(out) < k:
            out.append(out[len(out) - period])
        return tuple(out)

    def observe(self, batch: Sequence[int], pos0: int, n_kept: int) -> None:
        # The index holds the context up to its last token, which each step's batch decodes first (at
        # pos0 = len - 1): only a batch starting before it means the target went back (a new prompt, an
        # edit), and the index is rebuilt from the next context. Rebuilding every step would cost a pass
        # over the whole context per token.
        if pos0 < len(self._tokens) - 1:
            self.reset()

    def reset(self) -> None:
        self._tokens = []
        self._index = {n: {} for n in range(self.n_min, self.n_max + 1)}

    def close(self) -> None:
        pass

    def _sync(self, context: Sequence[int]) -> None:
        """Index the n-grams of tokens added since the last call. The context only grows between resets:
        observe() resets whenever the target rewinds past what was indexed."""
        known = len(self._tokens)
        if known > len(context) or (known and context[known - 1] != self._tokens[-1]):
            self.reset()
            known = 0
        self._tokens.extend(context[known:])
        toks = self._tokens
        # An n-gram ending at index `end` is usable once a token follows it, i.e. end < len(toks).
        for end in range(max(known, 1), len(toks)):
            for n in range(self.n_min, min(self.n_max, end) + 1):
                ends = self._index[n].setdefault(tuple(toks[end - n : end]), [])
                ends.append(end)
                if len(ends) > 2 * MAX_CANDIDATES:
                    del ends[:MAX_CANDIDATES]


def _agreed_depth(context: Sequence[int], end: int, rivals: Sequence[int], k: int) -> int:
    """How many of the k tokens after `end` every rival occurrence went on with too, as far as the context
    shows. A counter or a column of values (`age: 20`, `age: 21`, ...) is copied word for word except
    where its occurrences differ, and that token is a guess."""
    agreed = k
    n = len(context)
    for rival in rivals:
        span = min(agreed, n - max(end, rival))
        if span <= 0 or context[end : end + span] == context[rival : rival + span]:
            continue
        i = 0
        while context[end + i] == context[rival + i]:
            i += 1
        agreed = i
    return agreed
