"""What the rest of Tandem sees of a loaded engine, without loading llama.cpp: the `EngineInfo` the app
shows, and the `ChatEngineAPI` protocol that the worker, the A/B run and the tests' fake engine share.

Importing this module is cheap (no llama_cpp): the app types against it in the GUI thread at start-up, and
`engine.inference.session.ChatEngine` implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.config import CancelToken, ChatMessage, GenerationParams, LoadConfig
from engine.events import Event
from engine.inference.controller import DraftLengthController
from engine.inference.cost import CostCurve


@dataclass(frozen=True, slots=True)
class EngineInfo:
    model_name: str
    model_path: Path
    architecture: str
    n_ctx: int
    drafter: str | None  # "n-gram", "draft model: X", "MTP (Gemma 4 assistant)"
    drafter_note: str | None  # why the requested drafter is not in use
    device: str
    n_gpu_layers: int
    model_bytes: int
    drafter_bytes: int = 0  # memory the drafter adds (weights + its own KV)
    endpoint: str | None = None  # the server's URL when a remote server generates (engine.remote)
    server: str | None = None  # what kind of server that is ("llama-server", "vLLM", "Tandem")
    spec_per_request: bool = True  # whether one request can turn speculation off (a client's own A/B)


class Detokenizer(Protocol):
    def detokenize(self, tokens: Sequence[int]) -> str: ...


class GenerationRun(Protocol):
    """One prepared generation (engine.inference.generate.GenerationLoop)."""

    @property
    def generated(self) -> list[int]: ...  # emitted tokens so far

    @property
    def margins(self) -> list[float]: ...  # top-2 logit gap per generated token, when asked for

    def run(self, prompt: Sequence[int]) -> Iterator[Event]: ...


class ChatEngineAPI(Protocol):
    """A loaded target (+ drafter) serving chat requests; one thread owns it."""

    info: EngineInfo  # replaced (not mutated) by the app when it loads a target without its refused drafter

    @property
    def controller(self) -> DraftLengthController: ...

    @property
    def costs(self) -> CostCurve: ...  # the target's decode cost per batch size on this machine

    @property
    def model(self) -> Detokenizer: ...

    def fit_messages(
        self, messages: Sequence[ChatMessage], max_tokens: int
    ) -> tuple[list[int], list[str]]: ...

    def chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams, cancel: CancelToken | None = None
    ) -> Iterator[Event]: ...

    def complete(
        self, prompt: str, params: GenerationParams, cancel: CancelToken | None = None
    ) -> Iterator[Event]: ...

    def make_loop(
        self, params: GenerationParams, cancel: CancelToken | None = None, *, record_margins: bool = False
    ) -> GenerationRun: ...

    def new_controller(self, params: GenerationParams) -> None: ...

    def calibrate(self) -> dict[int, list[float]]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


# How the app's worker gets an engine: ChatEngine.load, or a fake in tests.
EngineFactory = Callable[[LoadConfig, Callable[[float], bool] | None], ChatEngineAPI]
