"""`tandem app`: open the desktop app. Runs `python -m app` in this interpreter so the engine package never
imports Qt; an installed Tandem (a frozen program, its own interpreter) runs itself as `tandem app ...`,
which its launcher hands to the app (installers/launcher.py)."""

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
    if getattr(sys, "frozen", False):
        argv = [sys.executable, "app", *args.app_args]
    else:
        argv = [sys.executable, "-m", "app", *args.app_args]
    os.execv(sys.executable, argv)
    return 0  # not reached
