"""Runs `tandem chat` (engine.cli.main, in this process) on each model file named on stdin, one per line,
and prints one JSON line per file: exit code, what the CLI wrote to stdout and stderr, seconds, and any
exception that escaped the CLI (a traceback: a bug). "BEGIN <n>" before each file tells the parent test
which file a crash of this whole process belongs to. Used by tests/engine/test_corpus.py."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import traceback


def main() -> int:
    from engine.cli import main as tandem

    # One thread: two drivers share the CI machine's cores with the probe's children.
    args = ["--ctx", "256", "--threads", "1", "--max-tokens", "3", *sys.argv[1:], "Hi"]
    for n, line in enumerate(sys.stdin):
        path = line.rstrip("\n")
        if not path:
            continue
        print(f"BEGIN {n}", flush=True)
        out, err = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        escaped = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = tandem(["chat", "--model", path, *args])
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # noqa: BLE001 - the test reports it as a traceback
                rc = -1
                escaped = traceback.format_exc()
        result = {
            "n": n,
            "path": path,
            "rc": rc,
            "stdout": out.getvalue()[-4000:],
            "stderr": err.getvalue()[-4000:],
            "seconds": time.perf_counter() - started,
            "traceback": escaped,
        }
        print("END " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
