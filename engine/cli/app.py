"""`tandem app`: open the desktop app. Runs `python -m app` in this interpreter so the engine package never
imports Qt."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("app", help="open the desktop app (the default)", description="Open the desktop app.")
    p.add_argument("app_args", nargs=argparse.REMAINDER, help="arguments for the app (e.g. --model PATH)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    argv = [sys.executable, "-m", "app", *args.app_args]
    os.execv(sys.executable, argv)
    return 0  # not reached
