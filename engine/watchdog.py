"""Stop Python work that runs past a deadline or is cancelled, wherever it is: for code that untrusted
input drives (a chat template, Markdown a model wrote) and that may loop long without returning.

While a `Watchdog` is active, Python calls it for every function call in this thread: Python functions
(sys.settrace), and with `c_calls=True` also built-in ones (sys.setprofile: a loop of list.append, as in
Python-Markdown's bracket matching). With `trace_lines_of`, every line of code compiled from that file
counts too (Jinja templates loop without calling anything). Every CHECK_EVERY events it looks at the clock
and the cancel flag and raises `Stop` into the running frame, but only into code of the watched library
(`stop_in`: file name prefixes): a garbage-collector callback that happens to run meanwhile would swallow
the exception (and Python would switch the watchdog off). `Stop` is a BaseException, so no
`except Exception` in the interrupted library swallows it. Time spent inside one C call (one regular
expression) is not interrupted: callers bound the size of what they pass.
"""

from __future__ import annotations

import sys
import time
from types import FrameType
from typing import Any, Protocol

CHECK_EVERY = 256  # events between two looks at the clock: a few hundred microseconds of Python


class Cancellable(Protocol):
    @property
    def cancelled(self) -> bool: ...


class Stop(BaseException):
    """Raised into the watched code; `Watchdog.reason` says why ("timeout" or "cancelled")."""


class Watchdog:
    def __init__(
        self,
        seconds: float,
        cancel: Cancellable | None = None,
        *,
        trace_lines_of: str | None = None,
        c_calls: bool = False,
        stop_in: tuple[str, ...] = (),
    ) -> None:
        self.seconds = seconds
        self.c_calls = c_calls
        self.stop_in = stop_in + ((trace_lines_of,) if trace_lines_of and stop_in else ())
        self.deadline = time.monotonic() + seconds
        self.cancel = cancel
        self.trace_lines_of = trace_lines_of  # co_filename whose every line counts (e.g. "<template>")
        self.events = 0
        self.reason: str | None = None
        self._previous: Any = None

    def __enter__(self) -> Watchdog:
        self.deadline = time.monotonic() + self.seconds
        if self.c_calls:
            self._previous = sys.getprofile()
            sys.setprofile(self._on_profile)
        else:
            self._previous = sys.gettrace()
            sys.settrace(self._on_call)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.c_calls:
            sys.setprofile(self._previous)
        else:
            sys.settrace(self._previous)

    def _tick(self, frame: FrameType) -> None:
        self.events += 1
        if self.reason is None:
            if self.events % CHECK_EVERY:
                return
            if self.cancel is not None and self.cancel.cancelled:
                self.reason = "cancelled"
            elif time.monotonic() > self.deadline:
                self.reason = "timeout"
            else:
                return
        if not self.stop_in or frame.f_code.co_filename.startswith(self.stop_in):
            raise Stop

    def _on_profile(self, frame: FrameType, event: str, arg: object) -> None:
        self._tick(frame)

    def _on_call(self, frame: FrameType, event: str, arg: object) -> Any:
        self._tick(frame)
        if self.trace_lines_of is not None and frame.f_code.co_filename == self.trace_lines_of:
            return self._on_line
        return None

    def _on_line(self, frame: FrameType, event: str, arg: object) -> Any:
        self._tick(frame)
        return self._on_line
