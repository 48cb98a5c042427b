"""Crash isolation (engine.inference.probe): a verdict per file identity, real llama.cpp aborts and hangs
in the child turned into bounded errors naming the file, cancel, and the blame for a drafter's crash."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from engine.config import LoadConfig
from engine.errors import ModelCrashError, ModelLoadError
from engine.inference import probe
from engine.inference.llama import log_reason
from engine.store.probe_verdicts import VerdictStore
from tests.engine.inference import raw_probe_child
from tests.fixtures.corrupt_gguf import take_apart

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path / "data"))


def norm_as_i32(base: Path, out: Path) -> Path:
    """The issue's "norm tensor retyped F32 -> I32": same size, so only the type says it is wrong, and
    llama.cpp aborts ("unsupported types") at the first decode."""
    parts = take_apart(base)
    norm = next(t for t in parts.tensors if t.name.endswith(b"attn_norm.weight"))
    norm.ttype = 26  # GGML_TYPE_I32
    out.write_bytes(parts.to_bytes())
    return out


def test_a_probed_file_is_not_probed_again_until_it_changes(tiny_llama_path: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_llama_path.read_bytes())
    config = LoadConfig(model_path=model)
    assert probe.check_opens(config).ran
    assert not probe.check_opens(config).ran  # the verdict answers
    assert VerdictStore().get(probe.verdict_key(config)).outcome == "ok"  # type: ignore[union-attr]
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: another file as far as we know
    assert probe.check_opens(config).ran
    other = LoadConfig(model_path=model, drafter="none")  # another drafter: another load to try
    assert probe.check_opens(other).ran


@pytest.mark.subprocess
def test_a_real_llama_cpp_abort_becomes_an_error_naming_the_file(
    tiny_llama_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = norm_as_i32(tiny_llama_path, tmp_path / "norm\x1b[2J-i32.gguf")
    monkeypatch.setattr(probe, "probe_command", raw_probe_child.command)  # no metadata checks in the child
    with pytest.raises(ModelCrashError) as err:
        probe.check_opens(LoadConfig(model_path=bad))
    message = str(err.value)
    assert err.value.path == bad
    assert "crashed" in message and "norm\\e[2J-i32.gguf" in message
    assert "unsupported types" in message or "GGML" in message  # llama.cpp's own last line
    assert len(message) <= 500 and not CONTROL.search(message)
    assert "unsupported types" in (err.value.details or "")  # the log tail, for the app's Details
    print(f"\nprobe crash message ({len(message)} chars): {message}")
    # The crash verdict is kept: the next load of the same file fails at once, without a child.
    monkeypatch.setattr(probe.subprocess, "Popen", None)
    started = time.perf_counter()
    with pytest.raises(ModelCrashError, match="crashed"):
        probe.check_opens(LoadConfig(model_path=bad))
    assert time.perf_counter() - started < 1.0


@pytest.mark.subprocess
def test_a_hanging_child_is_stopped(tiny_llama_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import time; print('STAGE target', flush=True); time.sleep(60)"
    monkeypatch.setattr(probe, "probe_command", lambda: [sys.executable, "-c", code])
    monkeypatch.setenv("TANDEM_PROBE_TIMEOUT", "2")
    started = time.perf_counter()
    with pytest.raises(ModelCrashError, match="did not finish opening the file within 2 s"):
        probe.check_opens(LoadConfig(model_path=tiny_llama_path))
    assert time.perf_counter() - started < 6
    assert VerdictStore().get(probe.verdict_key(LoadConfig(model_path=tiny_llama_path))) is None  # not kept


@pytest.mark.subprocess
def test_cancel_stops_the_child(tiny_llama_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "probe_command", lambda: [sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match="cancelled"):
        probe.check_opens(LoadConfig(model_path=tiny_llama_path), progress=lambda _f: False)
    assert time.perf_counter() - started < 5


@pytest.mark.subprocess
def test_a_crash_while_the_drafter_loads_blames_the_drafter(
    tiny_llama_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    draft = tmp_path / "draft.gguf"
    draft.write_bytes(tiny_llama_path.read_bytes())
    code = "import os; print('STAGE target'); print('STAGE drafter', flush=True); os.abort()"
    monkeypatch.setattr(probe, "probe_command", lambda: [sys.executable, "-c", code])
    config = LoadConfig(model_path=tiny_llama_path, drafter="draft", draft_model_path=draft)
    with pytest.raises(ModelCrashError) as err:
        probe.check_opens(config)
    assert err.value.path == draft and str(err.value).startswith("draft.gguf: llama.cpp crashed")


def test_a_clean_refusal_in_the_child_is_llama_cpps_reason(tiny_llama_path: Path, tmp_path: Path) -> None:
    parts = take_apart(tiny_llama_path)
    parts.set("llama.feed_forward_length", 4, 3)  # wrong for the ffn tensors: llama.cpp refuses the shapes
    bad = tmp_path / "ffn.gguf"
    bad.write_bytes(parts.to_bytes())
    with pytest.raises(ModelLoadError) as err:
        probe.check_opens(LoadConfig(model_path=bad))
    assert not isinstance(err.value, ModelCrashError)
    assert "wrong shape" in str(err.value) and err.value.path == bad


def test_log_reason_prefers_the_telling_line() -> None:
    lines = [
        "llama_model_loader: loaded meta data",
        "llama_model_load: error loading model: check_tensor_dims: tensor 'x' has wrong shape",
        "llama_model_load_from_file_impl: failed to load model",
    ]
    assert log_reason(lines).startswith("llama_model_load: error loading model: check_tensor_dims")
    assert log_reason(["/a/b/ggml-cpu/ops.cpp:4026: GGML_ASSERT(eps >= 0.0f) failed", "x"]) == (
        "ops.cpp: GGML_ASSERT(eps >= 0.0f) failed"
    )
    assert log_reason([]) == "llama.cpp logged no reason"


@pytest.mark.subprocess
@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for the frozen executable")
def test_a_frozen_build_runs_the_child_through_its_own_entry_point(
    tiny_llama_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a frozen build sys.executable is Tandem itself, not Python: the probe passes its flag to it."""
    app = tmp_path / "tandem"
    app.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m engine.cli "$@"\n')
    app.chmod(0o755)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(app))
    assert probe.probe_command() == [str(app), probe.CHILD_FLAG]
    assert probe.check_opens(LoadConfig(model_path=tiny_llama_path)).ran
