"""Entry point of the desktop app: `python -m app [--model PATH [--draft-model PATH | --assistant PATH]]`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from app import render, theme
from app.context import AppContext
from app.main_window import MainWindow
from app.worker import WorkerClient
from engine.config import DrafterKind, LoadConfig
from engine.inference.api import EngineFactory
from engine.measure.pair_profile import ProfileStore

ORGANISATION = "Tandem"
APPLICATION = "Tandem"

NO_MODEL_TEXT = (
    "Tandem did not find a model to load.\n\n"
    "Install the bundled small model (SmolLM2-135M) with\n    python -m engine.store.default_model\n"
    "or start Tandem with a GGUF file of your own:\n    tandem app --model path/to/model.gguf\n\n"
    "Or choose a model pair that fits this computer, download and load it in File ▸ Models… (Ctrl+M).\n"
    "A GGUF file you already have opens with File ▸ Load model…"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem-app", description="Tandem desktop app")
    parser.add_argument("--model", type=Path, help="target model (GGUF); default: the installed SmolLM2")
    drafter = parser.add_mutually_exclusive_group()
    drafter.add_argument("--draft-model", type=Path, help="a small draft model of the same family")
    drafter.add_argument("--assistant", type=Path, help="a Gemma 4 -assistant MTP file for the target")
    parser.add_argument("--no-speculation", action="store_true", help="load without any drafter")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context window in tokens (default 4096)")
    parser.add_argument("--gpu-layers", type=int, default=0, help="layers to offload to the GPU (-1: all)")
    parser.add_argument("--history", type=Path, help="chat history database (default: user data folder)")
    parser.add_argument("--theme", choices=theme.MODES, help="colour theme (default: the last one chosen)")
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
    """The model the app opens with, or None when there is none to open."""
    model = args.model
    if model is None:
        from engine.store.default_model import default_model_path

        model = default_model_path()
        if model is None:
            return None
    drafter: DrafterKind = "none" if args.no_speculation else "auto"
    return LoadConfig(
        model_path=model,
        drafter=drafter,
        draft_model_path=args.draft_model,
        assistant_path=args.assistant,
        n_ctx=args.n_ctx,
        n_gpu_layers=args.gpu_layers,
    )


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
    args = build_parser().parse_args(args_in)
    problem = qt_binding_problem()
    if problem is not None:
        print(f"tandem-app: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "tandem-app"])
    assert isinstance(app, QApplication)
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    if args.theme:
        theme.save_mode(args.theme)
    colors = theme.apply(app, theme.saved_mode())
    render.warm_up()
    if store is None:
        store = open_store(args.history)
    # What the real engine learns about a pair is kept per machine; a stand-in engine's figures never are.
    profiles = ProfileStore() if engine_factory is None else None
    client = WorkerClient(engine_factory, profiles=profiles)
    context = AppContext(store, client, colors)
    theme.follow_system(app, context.set_colors)
    window = MainWindow(context)
    window.show()
    config = load_config(args)
    if config is None:
        QMessageBox.information(window, "No model installed", NO_MODEL_TEXT)
    else:
        client.load(config)
    try:
        return app.exec()
    finally:
        shutdown(context)
        QSettings().sync()


def shutdown(context: AppContext) -> None:
    """Stop generating, let the sessions record what was written, then close the history."""
    context.shutdown()
    QApplication.processEvents()  # deliver the worker's last queued events: replies are saved as stopped
    context.store.close()


if __name__ == "__main__":
    sys.exit(main())
