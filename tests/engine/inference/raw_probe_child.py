"""A stand-in for the probe's child process that opens the file with llama.cpp directly, *without*
Tandem's metadata checks, so tests can make llama.cpp really abort (a corpus file with a norm weight
retyped to I32, say) and watch the parent turn the crash into an error. It speaks the probe's protocol:
the load settings as JSON on stdin, "STAGE" lines and a "RESULT" line on stdout, llama.cpp's log on
stderr. Used through `monkeypatch.setattr(probe, "probe_command", raw_probe_command)`."""

from __future__ import annotations

import json
import sys

from engine.inference import probe


def command() -> list[str]:
    return [sys.executable, "-m", "tests.engine.inference.raw_probe_child"]


def main() -> int:
    probe.log_to_stderr()
    from engine.inference.llama import Context, Model

    config = probe.config_from_json(json.loads(sys.stdin.read()))
    probe.report_stage("target")
    with Model(config.model_path) as model, Context(model, n_ctx=128, n_batch=64, n_threads=1) as ctx:
        probe.report_stage("decode")
        ctx.decode(model.tokenize("Hello world", add_special=True), 0, "last")
    probe.report_result({"ok": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
