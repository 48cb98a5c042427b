"""`tandem app` and `tandem` alone take the app's options (issue 16: `tandem app --model X` was refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine.cli as cli
from engine.cli import app as app_cli
from engine.cli.app import add_app_args, app_argv, app_defaults
from engine.config import DEFAULT_N_CTX
from engine.threads import recommended_threads


def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> list[str]:
    """The command line `tandem argv` would exec the app with."""
    execs: list[list[str]] = []
    monkeypatch.setattr(app_cli.os, "execv", lambda _exe, args: execs.append(list(args)))
    assert cli.main(argv) == 0
    (args,) = execs
    assert args[1:3] == ["-m", "app"]
    return args[3:]


@pytest.mark.parametrize("prefix", [["app"], []])
def test_app_options_work_through_tandem_app_and_tandem(monkeypatch, prefix):
    argv = ["--model", "m.gguf", "--assistant", "a.gguf", "--ctx", "2048", "--threads", "3"]
    argv += ["--theme", "dark"]
    assert run_cli(monkeypatch, [*prefix, *argv]) == argv


def test_tandem_alone_opens_the_app_with_its_defaults(monkeypatch):
    assert run_cli(monkeypatch, []) == []


def test_bad_app_option_is_refused_before_the_app_starts(monkeypatch, capsys):
    monkeypatch.setattr(app_cli.os, "execv", lambda *_: pytest.fail("the app must not start"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["app", "--ctx", "many"])
    assert exit_info.value.code == 2
    assert "--ctx" in capsys.readouterr().err


def test_app_argv_round_trips_every_option():
    import argparse

    parser = argparse.ArgumentParser()
    add_app_args(parser)
    given = [
        "--model", "m.gguf", "--draft-model", "d.gguf", "--assistant", "a.gguf", "--drafter", "ngram",
        "--ctx", "1024", "--gpu-layers", "-1", "--threads", "2", "--batch", "256", "--flash-attn", "on",
        "--kv-type", "q8_0", "--history", "h.sqlite3", "--theme", "light",
    ]  # fmt: skip
    args = parser.parse_args(given)
    assert {k for k, v in vars(args).items() if v != app_defaults()[k]} == set(app_defaults())  # all set
    assert vars(parser.parse_args(app_argv(args))) == vars(args)
    assert args.model == Path("m.gguf") and args.ctx == 1024


def test_one_spelling_for_the_context_size():
    import argparse

    from engine.cli import build_parser

    parser = argparse.ArgumentParser()
    add_app_args(parser)
    assert parser.parse_args([]).ctx == DEFAULT_N_CTX
    with pytest.raises(SystemExit):
        parser.parse_args(["--n-ctx", "2048"])
    chat = build_parser().parse_args(["chat", "--ctx", "2048", "hi"])
    assert chat.ctx == 2048


def test_threads_leave_a_core_free_only_when_the_cpu_is_busy():
    assert recommended_threads(physical=8, load=0.3, logical=16) == 8  # llama.cpp's own: physical cores
    assert recommended_threads(physical=8, load=9.0, logical=16) == 7
    assert recommended_threads(physical=1, load=9.0, logical=1) == 1
