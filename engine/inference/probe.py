"""Crash isolation for model files: a load Tandem has not seen succeed is first tried in a short-lived child
process, so a llama.cpp abort (GGML_ASSERT, a segfault) ends the child, not the app or the CLI.

Metadata checks (engine.gguf) catch every abort class known so far before any process opens a file; the
child is the net for the rest. It runs the same `ChatEngine.load` as the caller, with a small context, then
decodes a short prompt, one plain token and one speculative step, so the pair, the drafter's context and
the batched kernels have all run once. Its verdict is kept per file identity (engine.store.probe_verdicts):
the probe runs once per file and set of load settings, then a load costs nothing extra.

A crash becomes `ModelCrashError` naming the file and llama.cpp's last error line; a hang (no verdict
within the time limit) and a cancel end the child. Run as `python -m engine.inference.probe` (the child
side) with the load settings as JSON on stdin.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import IO, Any

import llama_cpp as L

from engine.config import GenerationParams, LoadConfig, SpecParams
from engine.errors import ModelCrashError, ModelLoadError, TandemError, bounded_details
from engine.inference.llama import log_reason
from engine.store.probe_verdicts import Verdict, VerdictStore, file_identity
from engine.text import shown

log = logging.getLogger(__name__)

PROBE_CTX = 256  # context of the child's load: crashes do not depend on its size, memory does
PROBE_PROMPT = "Hello, world. 1 2 3"
TIMEOUT_BASE_S = 60.0
TIMEOUT_BYTES_PER_S = 50e6  # the child's first decode reads every weight once, from a possibly slow disk
POLL_S = 0.05
LOG_TAIL_BYTES = 64 * 1024
# A crash of llama.cpp itself (a verdict worth keeping); SIGKILL (the OOM killer, a user) is not cached.
# POSIX: the child dies of a signal (returncode -N); Windows: abort() exits with 3, faults with NTSTATUS.
CRASH_SIGNALS = {
    getattr(signal, name): what
    for name, what in (
        ("SIGABRT", "aborted"),
        ("SIGSEGV", "segmentation fault"),
        ("SIGBUS", "bus error"),
        ("SIGFPE", "arithmetic error"),
        ("SIGILL", "illegal instruction"),
    )
    if hasattr(signal, name)
}
WINDOWS_CRASHES = {
    3: "aborted",
    0xC0000005: "access violation",
    0xC0000409: "fail-fast abort",
    0xC000001D: "illegal instruction",
    0xC0000094: "division by zero",
}
REFUSED_EXIT = 4  # the child's exit status when llama.cpp (or a check) refused the files cleanly


def crash_kind(returncode: int) -> str | None:
    """What a child's exit status says about a crash, or None when it did not crash."""
    if returncode < 0:
        return CRASH_SIGNALS.get(-returncode)
    if os.name == "nt":
        return WINDOWS_CRASHES.get(returncode & 0xFFFFFFFF)
    return None


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """How a probe went: `ran` is False when a cached verdict answered."""

    ran: bool
    seconds: float


def plan_files(config: LoadConfig) -> dict[str, Path]:
    """The files a load of `config` opens, by role: 'target', and 'drafter' when one is named and used."""
    files = {"target": config.model_path}
    if config.drafter in ("auto", "draft") and config.draft_model_path is not None:
        files["drafter"] = config.draft_model_path
    elif config.drafter in ("auto", "mtp") and config.assistant_path is not None:
        files["drafter"] = config.assistant_path
    return files


def verdict_key(config: LoadConfig) -> str:
    """What decides whether a load may crash: the files (by identity), the drafter, and the settings that
    change which kernels and buffers llama.cpp uses. Not the context size, threads or batch."""
    parts = [f"llama-cpp-python {L.__version__}", f"drafter {config.drafter}"]
    for role, path in plan_files(config).items():
        parts.append(f"{role} {file_identity(path)}")
    parts.append(f"gpu {config.n_gpu_layers != 0} kv {config.kv_type} fa {config.flash_attn}")
    return " | ".join(parts)


def check_opens(config: LoadConfig, progress: Callable[[float], bool] | None = None) -> ProbeReport:
    """Make sure loading `config` cannot crash this process: a cached verdict, else a child-process probe.
    Raises ModelCrashError (a crash or hang, naming the file), ModelLoadError (llama.cpp refused it in the
    child: the same refusal the caller would get) or ModelLoadError("cancelled") when progress() says so."""
    started = time.perf_counter()
    try:
        key = verdict_key(config)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot read {shown(str(config.model_path), 200)}: {exc.strerror or exc}"
        ) from None
    store = _verdicts()
    verdict = store.get(key) if store is not None else None
    if verdict is not None and verdict.outcome == "ok":
        return ProbeReport(False, time.perf_counter() - started)
    if verdict is not None:
        raise ModelCrashError(verdict.path or config.model_path, verdict.message, details=verdict.details)
    verdict = run_probe(config, progress)
    if store is not None and verdict is not None:
        store.put(key, verdict)
    if verdict is not None and verdict.outcome == "crash":
        raise ModelCrashError(verdict.path, verdict.message, details=verdict.details)
    return ProbeReport(True, time.perf_counter() - started)


def _verdicts() -> VerdictStore | None:
    try:
        return VerdictStore()
    except OSError as exc:  # no writable data dir: probe every time rather than fail the load
        log.warning("no probe verdict cache: %s", exc)
        return None


CHILD_FLAG = "--tandem-probe-child"  # how a frozen build (no `python -m`) starts the child: see probe_command


def probe_command() -> list[str]:
    """The child's command line. A frozen build's executable is the app itself: its entry points
    (engine.cli.main, app.main.main) hand CHILD_FLAG to child_main before anything else."""
    if getattr(sys, "frozen", False):
        return [sys.executable, CHILD_FLAG]
    return [sys.executable, "-m", "engine.inference.probe"]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GGML_NO_BACKTRACE"] = "1"  # ggml would otherwise attach gdb to print a backtrace: slow, noisy
    root = str(Path(__file__).resolve().parents[2])  # the folder holding `engine`, for source checkouts
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_probe(config: LoadConfig, progress: Callable[[float], bool] | None = None) -> Verdict | None:
    """Load `config` in a child process. Returns its verdict ("ok" or "crash"), or None when the child
    says llama.cpp refused the files cleanly (raised here as ModelLoadError with llama.cpp's reason) —
    no verdict is kept for a refusal, which may depend on free memory."""
    files = plan_files(config)
    size = sum(_size(p) for p in files.values())
    timeout = _timeout_base() + size / TIMEOUT_BYTES_PER_S
    payload = json.dumps(config_to_json(config))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            probe_command(), stdin=subprocess.PIPE, stdout=out, stderr=err, env=_child_env()
        )
        assert proc.stdin is not None
        try:
            proc.stdin.write(payload.encode())
            proc.stdin.close()
        except OSError:
            pass  # the child died at once: its exit status tells why
        deadline = time.monotonic() + timeout
        hung = cancelled = False
        while proc.poll() is None:
            if progress is not None and not progress(0.0):
                cancelled = True
            elif time.monotonic() > deadline:
                hung = True
            if cancelled or hung:
                proc.kill()
                proc.wait()
                break
            time.sleep(POLL_S)
        stdout = _read_all(out)
        log_tail = _read_tail(err)
    if cancelled:
        raise ModelLoadError("loading was cancelled")
    stages, result = _parse_stdout(stdout)
    path = _blamed_file(files, stages)
    name = shown(path.name, 120)
    reason = last_reason(log_tail)
    details = bounded_details(log_tail)
    if hung:
        raise ModelCrashError(
            path,
            f"{name}: llama.cpp did not finish opening the file within {timeout:.0f} s and was stopped "
            f"(last log line: {shown(reason, 200)}); the model already loaded keeps working",
            details=details,
        )
    rc = proc.returncode
    if rc == 0 and result is not None and result.get("ok"):
        return Verdict("ok", checked_at=time.time())
    if result is not None and not result.get("ok") and rc == REFUSED_EXIT:
        # llama.cpp (or Tandem's checks) refused the file cleanly in the child: the caller would get the
        # same error, so it is raised here without loading the file in this process at all.
        error = str(result.get("error", "llama.cpp refused the model"))
        raise ModelLoadError(error, path=path, details=details)
    what = crash_kind(rc)
    if what is not None:
        message = (
            f"{name}: llama.cpp crashed opening this file ({what}: {shown(reason, 240)}). Tandem tried it in "
            "a separate process, so nothing else was affected; the file is corrupt or not supported"
        )
        return Verdict("crash", str(path), message, details, time.time())
    how = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
    raise ModelCrashError(
        path,
        f"{name}: the process that tried the file ended unexpectedly ({how}: {shown(reason, 200)}); "
        "if memory is short, close other programs or choose a smaller model",
        details=details,
    )


def _timeout_base() -> float:
    """TIMEOUT_BASE_S, or TANDEM_PROBE_TIMEOUT (seconds) where a test or a slow machine sets it."""
    try:
        return max(1.0, float(os.environ.get("TANDEM_PROBE_TIMEOUT", TIMEOUT_BASE_S)))
    except ValueError:
        return TIMEOUT_BASE_S


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_all(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read(1024 * 1024).decode("utf-8", errors="replace")


def _read_tail(f: IO[bytes]) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - LOG_TAIL_BYTES))
    return f.read().decode("utf-8", errors="replace")


def _parse_stdout(text: str) -> tuple[list[str], dict[str, Any] | None]:
    stages: list[str] = []
    result: dict[str, Any] | None = None
    for line in text.splitlines():
        if line.startswith("STAGE "):
            stages.append(line[6:].strip())
        elif line.startswith("RESULT "):
            try:
                parsed = json.loads(line[7:])
            except ValueError:
                continue
            if isinstance(parsed, dict):
                result = parsed
    return stages, result


def _blamed_file(files: dict[str, Path], stages: list[str]) -> Path:
    """The file the child was busy with when it stopped: the drafter's while the drafter was loading or
    drafting, the target's otherwise."""
    last = stages[-1] if stages else "target"
    if last in ("drafter", "speculate") and "drafter" in files:
        return files["drafter"]
    return files["target"]


def last_reason(log_text: str) -> str:
    """llama.cpp's reason in the child's log (the same rule as a failure in this process)."""
    return log_reason(log_text.splitlines())


# --- serialisation -----------------------------------------------------------------------------------------
_PATH_FIELDS = ("model_path", "draft_model_path", "assistant_path")


def config_to_json(config: LoadConfig) -> dict[str, Any]:
    data = asdict(config)
    for name in _PATH_FIELDS:
        if data[name] is not None:
            data[name] = str(data[name])
    return data


def config_from_json(data: dict[str, Any]) -> LoadConfig:
    known = {f.name for f in fields(LoadConfig)}
    values = {k: v for k, v in data.items() if k in known}
    for name in _PATH_FIELDS:
        if values.get(name) is not None:
            values[name] = Path(values[name])
    return LoadConfig(**values)


# --- the child ---------------------------------------------------------------------------------------------
def report_stage(name: str) -> None:
    sys.stdout.write(f"STAGE {name}\n")
    sys.stdout.flush()


def report_result(data: dict[str, Any]) -> None:
    sys.stdout.write(f"RESULT {json.dumps(data)}\n")
    sys.stdout.flush()


def log_to_stderr() -> None:
    """llama.cpp's log, line by line, on stderr: the parent reads the last line written before a crash."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    llama_log = logging.getLogger("tandem.llama")
    llama_log.addHandler(handler)
    llama_log.setLevel(logging.DEBUG)
    llama_log.propagate = False


def child_main() -> int:
    """The child: load, decode, speculate once, report (stages on stdout, llama.cpp's log on stderr)."""
    log_to_stderr()
    from engine.inference.session import ChatEngine  # late: session imports this module

    try:
        config = config_from_json(json.loads(sys.stdin.read()))
        # Small and single-threaded: crashes depend on neither, and several busy-waiting threads on a
        # loaded machine turned a 0.1 s decode into seconds.
        small = min(config.n_ctx, PROBE_CTX)
        config = replace(config, n_ctx=small, n_batch=min(config.n_batch, small), n_threads=1)
        with ChatEngine.load(config, isolate=False, on_stage=report_stage) as engine:
            prompt = engine.model.tokenize(PROBE_PROMPT, add_special=True)
            report_stage("decode")
            plain = GenerationParams(max_tokens=2, spec=SpecParams(enabled=False))
            for _ in engine.generate(prompt, plain):
                pass
            if engine.drafter is not None:
                report_stage("speculate")
                engine.reset()
                spec = GenerationParams(max_tokens=4, spec=SpecParams(k_max=2, adaptive=False))
                for _ in engine.generate(prompt, spec):
                    pass
    except TandemError as exc:
        report_result({"ok": False, "error": str(exc)})
        return REFUSED_EXIT
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which shows it as a load failure
        report_result(
            {"ok": False, "error": f"unexpected {type(exc).__name__} in the probe: {shown(str(exc), 200)}"}
        )
        return REFUSED_EXIT
    report_result({"ok": True})
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
