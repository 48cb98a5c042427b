"""What the app remembers about loading models (QSettings; no widgets here): the last model it loaded, which
it opens with next time, and the performance settings (CPU threads, prompt batch size) every load uses."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from PySide6.QtCore import QSettings

from engine.config import DEFAULT_N_BATCH, DrafterKind, KVType, LoadConfig

LAST_MODEL_KEY = "models/last"
THREADS_KEY = "performance/threads"  # 0: Tandem's default (engine.threads.recommended_threads)
BATCH_KEY = "performance/batch"
BATCH_CHOICES = (64, 128, 256, 512, 1024, 2048)


@dataclass(frozen=True, slots=True)
class Performance:
    threads: int | None = None  # None: the physical cores, one fewer while the CPU is busy
    batch: int = DEFAULT_N_BATCH

    def apply(self, config: LoadConfig) -> LoadConfig:
        """`config` with these settings, unless it already asks for its own (a command-line option)."""
        threads = config.n_threads if config.n_threads is not None else self.threads
        batch = config.n_batch if config.n_batch != DEFAULT_N_BATCH else self.batch
        return dataclasses.replace(config, n_threads=threads, n_batch=batch)


def load_performance() -> Performance:
    settings = QSettings()
    threads = _int(settings.value(THREADS_KEY, 0))
    batch = _int(settings.value(BATCH_KEY, DEFAULT_N_BATCH))
    return Performance(threads if threads > 0 else None, batch if batch > 0 else DEFAULT_N_BATCH)


def save_performance(performance: Performance) -> None:
    settings = QSettings()
    settings.setValue(THREADS_KEY, performance.threads or 0)
    settings.setValue(BATCH_KEY, performance.batch)


# The LoadConfig fields remembered with the last model: which files and how they were paired. Threads and
# batch size are the performance settings, applied to every load.
_REMEMBERED = ("drafter", "n_ctx", "n_gpu_layers", "flash_attn", "kv_type")
_PATHS = ("model_path", "draft_model_path", "assistant_path")


def remember_model(config: LoadConfig) -> None:
    data: dict[str, Any] = {name: getattr(config, name) for name in _REMEMBERED}
    data |= {name: str(path) if (path := getattr(config, name)) else None for name in _PATHS}
    QSettings().setValue(LAST_MODEL_KEY, json.dumps(data))


def last_model() -> LoadConfig | None:
    """The model loaded last, if its files are still there."""
    raw = QSettings().value(LAST_MODEL_KEY)
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
        if not isinstance(data, dict):
            return None
        paths = {name: Path(data[name]) if data.get(name) else None for name in _PATHS}
        if any(path is not None and not path.is_file() for path in paths.values()):
            return None
        model = paths.pop("model_path")
        if model is None:
            return None
        config = LoadConfig(model, **paths)  # type: ignore[arg-type]
        values = {n: data[n] for n in _REMEMBERED if _valid(n, data.get(n), getattr(config, n))}
        return dataclasses.replace(config, **values)
    except (TypeError, ValueError, KeyError):  # written by another version, or edited by hand
        return None


_CHOICES: dict[str, tuple[str, ...]] = {"drafter": get_args(DrafterKind), "kv_type": get_args(KVType)}


def _valid(name: str, value: object, default: object) -> bool:
    if name in _CHOICES:
        return value in _CHOICES[name]
    if isinstance(default, bool) or default is None:  # flash_attn: True, False or None
        return value is None or isinstance(value, bool)
    return type(value) is type(default) and isinstance(value, int) and value >= -1


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return 0
