"""Where the app's log goes: a file in the data folder (Help ▸ Open log), llama.cpp's messages included, so
the terminal stays quiet. Only warnings and errors of Tandem's own reach stderr."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from engine.paths import data_dir

LOG_BYTES = 2 * 1024 * 1024
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_path() -> Path:
    folder = data_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "tandem.log"


class _NotLlama(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("tandem.llama")


def setup_logging() -> Path:
    """Everything at INFO and above, and llama.cpp's log whole, to the log file (two files of LOG_BYTES,
    rotated); Tandem's own warnings to stderr as well. llama.cpp's messages, warnings included, go to the
    file only."""
    path = log_path()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "tandem", False)]:  # the app started again (tests)
        root.removeHandler(old)
        old.close()
    root.setLevel(logging.INFO)
    # llama.cpp's own INFO lines (the model's metadata, buffer sizes) arrive as DEBUG: keep them in the file.
    logging.getLogger("tandem.llama").setLevel(logging.DEBUG)
    to_file = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=1, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    to_stderr = logging.StreamHandler()
    to_stderr.setLevel(logging.WARNING)
    to_stderr.addFilter(_NotLlama())
    to_stderr.setFormatter(logging.Formatter("tandem: %(levelname)s %(name)s: %(message)s"))
    for handler in (to_file, to_stderr):
        setattr(handler, "tandem", True)  # noqa: B010 - marks the handlers a restart replaces
        root.addHandler(handler)
    logging.captureWarnings(True)
    return path
