"""`tandem app` (and `tandem` alone): open the desktop app.

The app's options are defined here, once: `app/main.py` parses its command line with `add_app_args` too, so
`tandem app --model X`, `tandem --model X` and `python -m app --model X` take the same options, spelled as in
every other subcommand. `tandem app` checks them, then runs `python -m app` with them in this interpreter, so
the engine package never imports Qt; an installed Tandem (a frozen program, its own interpreter) runs itself
as `tandem app ...`, which its launcher hands to the app (installers/launcher.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from engine.cli.common import add_model_args

THEMES = ("system", "light", "dark")


def add_app_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p, model_default=" (default: the last model used, else the embedded SmolLM2-135M)")
    g = p.add_argument_group("app")
    g.add_argument("--history", type=Path, help="chat history database (default: in the user data folder)")
    g.add_argument("--theme", choices=THEMES, help="colour theme (default: the last one chosen)")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "app",
        help="open the desktop app (the default)",
        description="Open the desktop app. `tandem` without a subcommand does the same and takes the same "
        "options.",
    )
    add_app_args(p)
    p.set_defaults(func=run)


def app_defaults() -> dict[str, Any]:
    parser = argparse.ArgumentParser(add_help=False)
    add_app_args(parser)
    return vars(parser.parse_args([]))


def app_argv(args: argparse.Namespace) -> list[str]:
    """The app options set in `args` as a command line `python -m app` parses back to the same values."""
    argv: list[str] = []
    for dest, default in app_defaults().items():
        value = getattr(args, dest, default)
        if value != default:
            argv += [f"--{dest.replace('_', '-')}", str(value)]
    return argv


def run(args: argparse.Namespace) -> int:
    if getattr(sys, "frozen", False):
        argv = [sys.executable, "app", *app_argv(args)]
    else:
        argv = [sys.executable, "-m", "app", *app_argv(args)]
    os.execv(sys.executable, argv)
    return 0  # not reached
