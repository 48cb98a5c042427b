"""`tandem` command line. Each subcommand lives in its own module exposing `register(subparsers)`; the
module sets `func` on its parser, which takes the parsed args and returns an exit code."""

from __future__ import annotations

import argparse
import importlib
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(with_command(sys.argv[1:] if argv is None else argv))
    try:
        code: int = args.func(args)
    except TandemError as exc:
        print(f"tandem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
