"""A stand-in for `engine.inference.session.ChatEngine` with the same interface, for fast, deterministic GUI
tests.

It streams a scripted reply (Markdown, a code block, a link, raw HTML, emoji and CJK) token by token, varies
provenance the way a speculative loop does (accepted draft runs followed by the target's own token), sleeps a
configurable delay per token, honours the cancel token before every "decode step", and ends with a
`DoneEvent` carrying real `GenerationStats` / `SpecStats` (from `SpecRecorder.snapshot()`). It has the
parts of ChatEngine that engine.measure.ab's A/B run drives (fit_messages, reset, make_loop, controller,
model), so the app's A/B goes through the real engine.measure.ab code here too.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from engine.config import CancelToken, ChatMessage, GenerationParams, LoadConfig
from engine.errors import DecodeError, ModelFileError
from engine.events import DoneEvent, NoticeEvent, StopReason, TokenEvent
from engine.inference.api import EngineInfo
from engine.inference.controller import DraftLengthController
from engine.inference.cost import CostCurve
from engine.stats import GenerationStats, SpecRecorder

SCRIPT = """Here is a **quick answer** with a few things to render.

1. A numbered list item
2. Another one with `inline code`

| Drafter | Speed-up |
|---------|----------|
| MTP     | 2.1x     |
| n-gram  | 1.4x     |

```python
def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)
```

See [the docs](https://example.com/docs) for more. Raw HTML stays text: <b>bold?</b> <script>alert(1)</script>

Emoji and CJK: 🚀 速度 テスト ✅
"""

FAKE_DECODE_S = 0.02  # the "measured" seconds of a one-token target decode
GATE_TIMEOUT_S = 30.0  # a gate nobody opens fails the test instead of hanging it

_PIECE = re.compile(r"\s*\S{1,4}|\s+")


def split_tokens(text: str) -> list[str]:
    """Cut text into token-sized pieces (a few characters, leading whitespace attached)."""
    return _PIECE.findall(text)


@dataclass
class FakeOptions:
    script: str = SCRIPT
    token_delay: float = 0.0  # seconds slept per emitted token
    first_token_delay: float = 0.0
    load_delay: float = 0.0
    load_error: Exception | None = None
    fail_after: int | None = None  # raise DecodeError after this many tokens
    echo_user: bool = True  # start the reply by quoting the last user message
    notice: str | None = None  # emitted before the first token
    gate: threading.Event | None = None  # every generation waits until it is set before its first token
    # Decode tok/s each generation reports, in order (then the measured speed): an A/B with steady or
    # disturbed timings without depending on the machine's load.
    scripted_tps: list[float] = field(default_factory=list)
    calibrations: list[str] = field(default_factory=list)  # the model of every calibrate() call
    calls: list[list[ChatMessage]] = field(default_factory=list)  # the messages of every chat() call


class FakeChatEngine:
    def __init__(self, config: LoadConfig, options: FakeOptions) -> None:
        self.config = config
        self.options = options
        self.closed = False
        self.costs = CostCurve()
        self.controller = DraftLengthController(3, costs=self.costs)
        self.model = _FakeModel()
        self._messages: list[ChatMessage] = []
        drafter = None if config.drafter == "none" else "MTP (fake assistant)"
        self.info = EngineInfo(
            model_name=config.model_path.stem,
            model_path=config.model_path,
            architecture="llama",
            n_ctx=config.n_ctx,
            drafter=drafter,
            drafter_note=None if drafter else "speculation disabled",
            device="CPU",
            n_gpu_layers=0,
            model_bytes=123_456_789,
        )

    @classmethod
    def load(
        cls,
        config: LoadConfig,
        progress: Callable[[float], bool] | None = None,
        *,
        isolate: bool = True,
        on_stage: Callable[[str], None] | None = None,
        options: FakeOptions | None = None,
    ) -> FakeChatEngine:
        options = options or FakeOptions()
        for i in range(5):
            if progress is not None and not progress(i / 4):
                raise ModelFileError(config.model_path, "loading was cancelled")
            time.sleep(options.load_delay / 5)
        if options.load_error is not None:
            raise options.load_error
        return cls(config, options)

    # --- the ChatEngine interface the worker and engine.measure.ab use -------------------------------------
    def fit_messages(self, messages: Sequence[ChatMessage], max_tokens: int) -> tuple[list[int], list[str]]:
        """Fake prompt tokens; the messages are remembered to script the reply of the next loop."""
        self._messages = list(messages)
        n_prompt = sum(len(split_tokens(m.content)) for m in messages) + 4 * len(messages)
        return list(range(n_prompt)), []

    def reset(self) -> None:
        pass

    def new_controller(self, params: GenerationParams) -> None:
        self.controller = DraftLengthController(
            params.spec.k_max or 3, adaptive=params.spec.adaptive, costs=self.costs
        )

    def calibrate(self) -> dict[int, list[float]]:
        """Synthetic timings of the CPU-like curve the fake loop reports."""
        self.options.calibrations.append(self.config.model_path.name)
        timings = {n: [FAKE_DECODE_S * (1 + 0.2 * (n - 1))] * 3 for n in range(1, 5)}
        self.costs.seed(timings)
        return timings

    def make_loop(
        self, params: GenerationParams, cancel: CancelToken | None = None, *, record_margins: bool = False
    ) -> FakeLoop:
        if self.closed:
            raise RuntimeError("engine closed")
        return FakeLoop(self, params, cancel, record_margins)

    def chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams, cancel: CancelToken | None = None
    ) -> Iterator[TokenEvent | NoticeEvent | DoneEvent]:
        if self.closed:
            raise RuntimeError("engine closed")
        self.options.calls.append(list(messages))
        tokens, _ = self.fit_messages(messages, params.max_tokens)
        yield from self.make_loop(params, cancel).run(tokens)

    def complete(
        self, prompt: str, params: GenerationParams, cancel: CancelToken | None = None
    ) -> Iterator[TokenEvent | NoticeEvent | DoneEvent]:
        """Raw text is scripted like a chat whose one user message is the prompt."""
        yield from self.chat([ChatMessage("user", prompt)], params, cancel)

    def close(self) -> None:
        self.closed = True


class FakeLoop:
    """One scripted generation, shaped like engine.inference.generate.GenerationLoop (run, generated,
    margins)."""

    def __init__(
        self, engine: FakeChatEngine, params: GenerationParams, cancel: CancelToken | None, margins: bool
    ) -> None:
        self.engine = engine
        self.params = params
        self.cancel = cancel
        self.record_margins = margins
        self.generated: list[int] = []
        self.margins: list[float] = []

    def run(self, prompt: Sequence[int]) -> Iterator[TokenEvent | NoticeEvent | DoneEvent]:
        engine, opts, params, cancel = self.engine, self.engine.options, self.params, self.cancel
        messages = engine._messages
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        text = (f"You said: {last_user}\n\n" if opts.echo_user else "") + opts.script
        pieces = split_tokens(text)
        spec = params.spec.enabled and engine.info.drafter is not None
        rng = random.Random(params.sampling.seed or 0)
        recorder = SpecRecorder(drafter=engine.info.drafter or "none")
        n_prompt = len(prompt)
        start = time.perf_counter()
        if opts.gate is not None:
            opts.gate.wait(timeout=GATE_TIMEOUT_S)
        if opts.notice:
            yield NoticeEvent(opts.notice)
        time.sleep(opts.first_token_delay)
        emitted: list[str] = []
        first_at: float | None = None
        stop = StopReason.EOG
        i = 0
        while i < len(pieces):
            if cancel is not None and cancel.cancelled:
                stop = StopReason.CANCELLED
                break
            # One "verify step": with speculation, 0..3 accepted drafts followed by the target's own token.
            k = 3 if spec else 0
            accepted = rng.randint(0, k) if k else 0
            depths = [*range(1, accepted + 1), 0]
            if spec:
                recorder.record_step(k, accepted)
                recorder.k_history.append(k)
            # What a CPU target decode of k+1 tokens might cost: the worker learns the pair's profile from it.
            engine.controller.record_decode(k + 1, FAKE_DECODE_S * (1 + 0.2 * k))
            for depth in depths:
                if i >= len(pieces) or len(emitted) >= params.max_tokens:
                    break
                if opts.fail_after is not None and len(emitted) >= opts.fail_after:
                    raise DecodeError("llama_decode returned -1 (fake failure)")
                time.sleep(opts.token_delay)
                now = time.perf_counter() - start
                first_at = now if first_at is None else first_at
                recorder.provenance.append(depth)
                emitted.append(pieces[i])
                self.generated.append(1000 + i)
                if self.record_margins:
                    self.margins.append(1.0)
                yield TokenEvent(
                    token=1000 + i,
                    text=pieces[i],
                    position=n_prompt + i,
                    draft_depth=depth,
                    elapsed_s=now,
                )
                i += 1
            if len(emitted) >= params.max_tokens and i < len(pieces):
                stop = StopReason.MAX_TOKENS
                break
        total = time.perf_counter() - start
        decode_s = total - (first_at or total)
        if opts.scripted_tps and len(emitted) > 1:
            decode_s = (len(emitted) - 1) / opts.scripted_tps.pop(0)
        stats = GenerationStats(
            n_prompt=n_prompt,
            n_prompt_cached=0,
            prompt_s=min(first_at or total, 0.001),
            ttft_s=first_at or total,
            n_generated=len(emitted),
            decode_s=decode_s,
            total_s=total,
            spec=recorder.snapshot() if spec else None,
        )
        yield DoneEvent(text="".join(emitted), stop_reason=stop, stats=stats)


class _FakeModel:
    @staticmethod
    def detokenize(tokens: Sequence[int]) -> str:
        return "".join(f"<{t}>" for t in tokens)


def fake_factory(options: FakeOptions | None = None) -> Callable[..., FakeChatEngine]:
    """An engine factory for the app: `factory(config, progress) -> engine`."""
    opts = options or FakeOptions()

    def factory(config: LoadConfig, progress: Callable[[float], bool] | None = None) -> FakeChatEngine:
        return FakeChatEngine.load(config, progress, options=opts)

    return factory
