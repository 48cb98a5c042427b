"""Where Tandem keeps its data: one place for every module. `TANDEM_DATA_DIR` relocates everything
(tests, portable installs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir(create: bool = True) -> Path:
    """The data folder, created unless `create` is False (to name it in an error about creating it)."""
    env = os.environ.get("TANDEM_DATA_DIR")
    path = Path(env) if env else Path(platformdirs.user_data_dir("tandem", appauthor=False))
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def history_path() -> Path:
    return data_dir() / "history.sqlite3"
