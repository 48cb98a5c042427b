"""The crash corpus as a test: hundreds of corrupted GGUF files (tests/fixtures/corrupt_gguf.py) through
`tandem chat`, asserting 0 crashes, 0 tracebacks, 0 hangs, and errors of one bounded, escaped line.

Most files are refused from their metadata in milliseconds, so the CLI runs them all in two long-lived
driver processes (tests/engine/corpus_driver.py), one per core; only files that pass the metadata checks
reach the child-process probe and then llama.cpp in the driver itself. A driver that dies or goes quiet
is a crash or a hang of the file it was on, and a fresh driver carries on with the rest.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import REPO_ROOT
from tests.fixtures.corrupt_gguf import CRASH_MUTATIONS, write_corpus

PER_FILE_S = 90.0  # far above the slowest file (a probe, a load, 3 tokens); only a hang gets here
PROBE_TIMEOUT_S = "20"  # the probe's own hang limit in the drivers (the product's default is 60 s)
DRIVERS = 2
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ERROR_PREFIX = "tandem: error: "


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_llama_path: Path, tiny_gemma4_path: Path) -> list:
    out = tmp_path_factory.mktemp("corrupt-gguf")
    return write_corpus({"llama": tiny_llama_path, "gemma4": tiny_gemma4_path}, out)


def test_the_corpus_covers_every_kind_of_damage(corpus: list) -> None:
    families = collections.Counter(case.family for _base, case, _path in corpus)
    assert len(corpus) >= 200
    expected = {"truncation", "bit flip", "counts", "string lengths", "value types", "dims", "offsets"}
    expected |= {"alignment", "duplicates", "hyperparameters", "tensor types", "tokenizer", "hostile strings"}
    assert expected <= set(families), families
    names = {case.name for _b, case, _p in corpus}
    assert set(CRASH_MUTATIONS) <= names
    assert len({path for _b, _c, path in corpus}) == len(corpus)  # every file distinct


@dataclass
class Outcome:
    path: str
    kind: str  # "ok" (answered), "error" (a clean error), "crash", "hang", "traceback"
    detail: str
    seconds: float


def _pump(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)
    lines.put(None)


def _run_driver(paths: list[str], env: dict[str, str], results: list[Outcome]) -> None:
    """Feed `paths` to drivers until every file has an outcome (a new driver after a crash or a hang)."""
    todo = list(paths)
    while todo:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.engine.corpus_driver"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        proc.stdin.write("\n".join(todo) + "\n")
        proc.stdin.close()
        current: int | None = None
        started = time.monotonic()
        done = 0
        while True:
            try:
                line = lines.get(timeout=PER_FILE_S)
            except queue.Empty:
                line = "HANG"
            if line is None or line == "HANG":
                break
            if line.startswith("BEGIN "):
                current, started = int(line.split()[1]), time.monotonic()
            elif line.startswith("END "):
                r = json.loads(line[4:])
                results.append(_judge(r))
                done = r["n"] + 1
                current = None
        if line == "HANG" or current is not None:
            proc.kill()
            proc.wait()
            stuck = todo[current if current is not None else done]
            kind = "hang" if line == "HANG" else "crash"
            detail = f"driver rc {proc.returncode}: {(proc.stderr.read() if proc.stderr else '')[-800:]}"
            results.append(Outcome(stuck, kind, detail, time.monotonic() - started))
            todo = todo[(current if current is not None else done) + 1 :]
        else:
            proc.wait()
            todo = todo[done:]
            if todo:  # the driver ended early without a BEGIN: count it as a crash of the next file
                results.append(Outcome(todo[0], "crash", f"driver rc {proc.returncode}", 0.0))
                todo = todo[1:]


def _judge(r: dict) -> Outcome:
    path, out, err, rc = r["path"], r["stdout"], r["stderr"], r["rc"]
    if r["traceback"] or "Traceback" in out + err:
        return Outcome(path, "traceback", r["traceback"] or err, r["seconds"])
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        bad = len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX)
        message = lines[-1][len(ERROR_PREFIX) :] if lines else ""
        if bad or len(message) > 500 or CONTROL.search(message) or CONTROL.search(out):
            return Outcome(path, "bad error", repr(err[-800:]), r["seconds"])
        return Outcome(path, "error", message, r["seconds"])
    if rc == 0:
        if CONTROL.search(out) or CONTROL.search(err):
            return Outcome(path, "bad output", repr((out + err)[-800:]), r["seconds"])
        return Outcome(path, "ok", err.strip().splitlines()[0] if err.strip() else "", r["seconds"])
    return Outcome(path, f"rc {rc}", repr(err[-800:]), r["seconds"])


@pytest.mark.subprocess
def test_no_corrupt_file_crashes_hangs_or_prints_a_traceback(corpus: list, tmp_path: Path) -> None:
    paths = [str(path) for _b, _c, path in corpus]
    env = dict(os.environ, TANDEM_DATA_DIR=str(tmp_path / "data"), TANDEM_PROBE_TIMEOUT=PROBE_TIMEOUT_S)
    results: list[Outcome] = []
    started = time.monotonic()
    workers = [
        threading.Thread(target=_run_driver, args=(paths[i::DRIVERS], env, results)) for i in range(DRIVERS)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    kinds = collections.Counter(o.kind for o in results)
    isolated = sum(1 for o in results if o.kind == "error" and "crashed opening this file" in o.detail)
    summary = (
        f"{len(results)} files in {elapsed:.0f} s: {dict(kinds)}; {isolated} crashes caught by the probe"
    )
    print(summary)
    assert len(results) == len(paths), summary
    failures = [o for o in results if o.kind not in ("ok", "error")]
    assert not failures, summary + "\n" + "\n".join(f"{o.kind}: {o.path}: {o.detail}" for o in failures[:20])


def test_the_seven_crash_mutations_are_refused_from_metadata(corpus: list) -> None:
    """The aborts of issue 13 never reach llama.cpp: metadata names each problem."""
    from engine.errors import ModelFileError
    from engine.gguf.metadata import validate_model_file

    expect = {
        "hparam_block_count=0": "block_count is 0",
        "hparam_block_count=1000": "block_count is 1000",
        "hparam_block_count=4294967295": "block_count is 4294967295",
        "alignment=1_declared": "alignment is 1",
        "hparam_attention.layer_norm_rms_epsilon=nan": "not a finite number",
        "hparam_attention.layer_norm_rms_epsilon=-1e-05": "epsilon must be positive",
        "type_norm=I32": "has type I32",
    }
    seen = 0
    for _base, case, path in corpus:
        if case.name in expect:
            with pytest.raises(ModelFileError, match=re.escape(expect[case.name])):
                validate_model_file(path)
            seen += 1
    assert seen == 2 * len(CRASH_MUTATIONS)
