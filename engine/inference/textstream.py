"""Turns token bytes into text deltas that are safe to show: never half a UTF-8 character, never the start
of a stop string that might still complete."""

from __future__ import annotations

import codecs
from collections.abc import Sequence

SETTLE_AT = 4096  # characters of working text before the settled part of it moves to the list of parts


class TextStream:
    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self._stop), default=0)
        # The text so far is "".join(_parts) + _buf. Only _buf's tail can still hold (the start of) a stop
        # string, so appending a token touches _buf alone: one string grown per token would be copied whole
        # each time, 167 us a token by 200 000 tokens.
        self._parts: list[str] = []  # settled text: handed out, and too far back to be in a stop string
        self._buf = ""
        self._shown = 0  # how much of _buf has been handed out
        self.stopped = False

    @property
    def text(self) -> str:
        """Everything decoded so far (up to a stop string, once one is hit)."""
        return "".join(self._parts) + self._buf

    def feed(self, data: bytes) -> str:
        """Add a token's bytes; return the new text that can be shown now."""
        if self.stopped:
            return ""
        start = max(0, len(self._buf) - self._hold)
        self._buf += self._decoder.decode(data)
        if self._stop:
            hits = [i for s in self._stop if (i := self._buf.find(s, start)) >= 0]
            if hits:
                self._buf = self._buf[: min(hits)]
                self.stopped = True
                return self._release(len(self._buf))
        delta = self._release(len(self._buf) - self._pending_stop_prefix())
        if len(self._buf) > SETTLE_AT + self._hold:
            # What is left unshown is a possible stop string's start, shorter than _hold: it stays in _buf.
            cut = min(self._shown, len(self._buf) - self._hold)
            self._parts.append(self._buf[:cut])
            self._buf = self._buf[cut:]
            self._shown -= cut
        return delta

    def finish(self) -> str:
        """End of generation: flush whatever was held back (an incomplete stop string is just text)."""
        if not self.stopped:
            self._buf += self._decoder.decode(b"", final=True)
        return self._release(len(self._buf))

    def _pending_stop_prefix(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of some stop string."""
        best = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(self._buf)), best, -1):
                if self._buf.endswith(s[:n]):
                    best = n
                    break
        return best

    def _release(self, upto: int) -> str:
        upto = max(upto, self._shown)
        delta = self._buf[self._shown : upto]
        self._shown = upto
        return delta
