"""Plain-data settings shared by the CLI, the app and the engine."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DrafterKind = Literal["auto", "none", "ngram", "draft", "mtp"]
KVType = Literal["f16", "q8_0", "f32"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """temperature <= 0 means greedy. seed=None picks a random seed per request (recorded in stats)."""

    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True, slots=True)
class SpecParams:
    enabled: bool = True
    k_max: int | None = None  # longest draft verified per step; None: the drafter's default_k_max
    p_min: float | None = None  # drafter-side confidence cutoff (MTP / draft model); None: the drafter's own
    adaptive: bool = True  # let the controller pick k (including 0: off)
    ngram_min: int = 2  # n-gram lookup: shortest and longest suffix matched against the context
    ngram_max: int = 4


# Longest draft per step when the request does not say. Model drafters pay per drafted token and their
# acceptance falls with depth: llama-server's draft n-max. Prompt lookup is free to propose, so it offers
# long copies (llama.cpp's ngram-mod drafts up to 64) and the adaptive controller trims them to the length
# that pays on this machine's cost curve.
MODEL_DRAFT_K_MAX = 3
NGRAM_K_MAX = 64


@dataclass(frozen=True, slots=True)
class GenerationParams:
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    spec: SpecParams = field(default_factory=SpecParams)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


# The context window a model is loaded with unless the user asks for another: the CLI's --ctx, the app and
# the model manager's context slider all start here.
DEFAULT_N_CTX = 4096
DEFAULT_N_BATCH = 512


@dataclass(frozen=True, slots=True)
class LoadConfig:
    model_path: Path
    # auto: MTP if the pair/model has it, else the draft model if given, else n-gram.
    drafter: DrafterKind = "auto"
    draft_model_path: Path | None = None  # classic small draft model
    assistant_path: Path | None = None  # Gemma 4 -assistant MTP file
    n_ctx: int = DEFAULT_N_CTX
    n_gpu_layers: int = 0
    n_threads: int | None = None  # None: physical cores
    flash_attn: bool | None = None  # None: llama.cpp decides
    kv_type: KVType = "f16"
    n_batch: int = DEFAULT_N_BATCH


class CancelToken:
    """Thread-safe cancel flag; the generation loop checks it before every decode."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds for a cancel; True once cancelled (a watcher thread's wait)."""
        return self._event.wait(timeout)
