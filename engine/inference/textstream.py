"""Turns token bytes into text deltas that are safe to show: never half a UTF-8 character, never the start
of a stop string that might still complete."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextStream:
    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self._stop), default=0)
        self.text = ""  # everything decoded so far (up to a stop string, once one is hit)
        self._shown = 0  # how much of self.text has been handed out
        self.stopped = False

    def feed(self, data: bytes) -> str:
        """Add a token's bytes; return the new text that can be shown now."""
        if self.stopped:
            return ""
        start = max(0, len(self.text) - self._hold)
        self.text += self._decoder.decode(data)
        if self._stop:
            hits = [i for s in self._stop if (i := self.text.find(s, start)) >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
                return self._release(len(self.text))
        return self._release(len(self.text) - self._pending_stop_prefix())

    def finish(self) -> str:
        """End of generation: flush whatever was held back (an incomplete stop string is just text)."""
        if not self.stopped:
            self.text += self._decoder.decode(b"", final=True)
        return self._release(len(self.text))

    def _pending_stop_prefix(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of some stop string."""
        best = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(self.text)), best, -1):
                if self.text.endswith(s[:n]):
                    best = n
                    break
        return best

    def _release(self, upto: int) -> str:
        upto = max(upto, self._shown)
        delta = self.text[self._shown : upto]
        self._shown = upto
        return delta
