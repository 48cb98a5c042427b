"""`tandem` command line. Each subcommand lives in its own module exposing `register(subparsers)`; the
module sets `func` on its parser, which takes the parsed args and returns an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from engine import __version__
from engine.errors import TandemError

# Subcommand modules, in --help order.
COMMANDS: tuple[str, ...] = ("app", "chat", "serve", "bench", "models", "hw")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem",
        description="Tandem: local LLM chat with lossless speculative decoding (MTP assistants, NextN heads, "
        "draft models, n-gram lookup). Without a subcommand, opens the desktop app: `tandem --model X` is "
        "`tandem app --model X`.",
    )
    parser.add_argument("--version", action="version", version=f"tandem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"engine.cli.{name}").register(sub)
    return parser


def with_command(argv: Sequence[str]) -> list[str]:
    """`argv` with "app" in front when it names no subcommand (`tandem --model X` opens the app with X)."""
    argv = list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return ["app", *argv]
    return argv


# engine.inference.probe.CHILD_FLAG, spelled out: importing the probe loads llama.cpp
PROBE_CHILD_FLAG = "--tandem-probe-child"


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == [PROBE_CHILD_FLAG]:  # a frozen build running the crash-isolation probe
        from engine.inference.probe import child_main

        return child_main()
    # llama.cpp's log stays out of the terminal: an error's own message already quotes its last error line
    # (and a failing model can log hundreds of lines). Without this, Python's last-resort handler prints
    # every warning llama.cpp logs.
    logging.getLogger("tandem.llama").addHandler(logging.NullHandler())
    parser = build_parser()
    args = parser.parse_args(with_command(args_in))
    try:
        code: int = args.func(args)
    except TandemError as exc:
        print(f"tandem: error: {exc}", file=sys.stderr)  # one line, bounded, escaped (TandemError)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
