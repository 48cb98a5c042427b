"""MTP detection and Gemma 4 pair validation from metadata alone, and proof (in child processes) that a
mismatched pair is refused before llama.cpp is called, where llama.cpp itself would crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.compat.mtp import (
    RULE_TARGET_ARCH,
    check_assistant_pair,
    mtp_capability,
    mtp_memory,
    plan_mtp,
)
from engine.errors import IncompatibleDrafterError
from engine.gguf.metadata import read_gguf
from tests import REPO_ROOT
from tests.fixtures.tiny_gemma4 import MISMATCHED_ASSISTANTS


# --- detection --------------------------------------------------------------------------------------------
def test_detects_gemma4_assistant(tiny_gemma4_assistant_path: Path) -> None:
    info = read_gguf(tiny_gemma4_assistant_path)
    cap = mtp_capability(info)
    assert (info.kind, cap.kind, cap.available, cap.badge) == (
        "gemma4-assistant",
        "gemma4-assistant",
        True,
        "MTP",
    )
    assert cap.n_mtp_layers == 2


def test_detects_embedded_nextn(tiny_nextn_path: Path) -> None:
    cap = mtp_capability(read_gguf(tiny_nextn_path))
    assert (cap.kind, cap.reason, cap.n_mtp_layers, cap.badge) == ("nextn", None, 1, "MTP")


def test_gemma4_target_is_plain_but_accepts_an_assistant(tiny_gemma4_path: Path) -> None:
    cap = mtp_capability(read_gguf(tiny_gemma4_path))
    assert cap.kind == "plain" and cap.accepts_assistant and cap.badge is None
    assert "assistant" in (cap.reason or "")


def test_plain_model_has_no_mtp(tiny_llama_path: Path) -> None:
    cap = mtp_capability(read_gguf(tiny_llama_path))
    assert (cap.kind, cap.available, cap.accepts_assistant) == ("plain", False, False)
    assert cap.reason == "the model has no MTP layers"


def test_fork_conversion_is_detected_and_unavailable(mismatched_assistant_paths: dict[str, Path]) -> None:
    cap = mtp_capability(read_gguf(mismatched_assistant_paths["fork-format"]))
    assert cap.kind == "fork-mtp" and not cap.available and "fork" in (cap.reason or "")


# --- pair rules -------------------------------------------------------------------------------------------
def test_matching_pair_is_accepted(tiny_gemma4_path: Path, tiny_gemma4_assistant_path: Path) -> None:
    target, assistant = read_gguf(tiny_gemma4_path), read_gguf(tiny_gemma4_assistant_path)
    assert check_assistant_pair(target, assistant) is None
    plan = plan_mtp(target, assistant, k_max=3)
    assert (plan.kind, plan.reason, plan.load_mtp, plan.n_rs_seq) == ("gemma4-assistant", None, False, 0)


@pytest.mark.parametrize("rule", sorted(MISMATCHED_ASSISTANTS))
def test_each_mismatch_is_refused_with_its_rule(
    rule: str, tiny_gemma4_path: Path, mismatched_assistant_paths: dict[str, Path]
) -> None:
    target, assistant = read_gguf(tiny_gemma4_path), read_gguf(mismatched_assistant_paths[rule])
    with pytest.raises(IncompatibleDrafterError) as err:
        check_assistant_pair(target, assistant)
    assert err.value.rule == rule
    assert rule in str(err.value)


@pytest.mark.parametrize("target_fixture", ["tiny_llama_path", "tiny_nextn_path"])
def test_assistant_refused_for_a_non_gemma4_target(
    target_fixture: str, tiny_gemma4_assistant_path: Path, request: pytest.FixtureRequest
) -> None:
    target = read_gguf(request.getfixturevalue(target_fixture))
    with pytest.raises(IncompatibleDrafterError) as err:
        plan_mtp(target, read_gguf(tiny_gemma4_assistant_path), k_max=3)
    assert err.value.rule == RULE_TARGET_ARCH


# --- plans and memory -------------------------------------------------------------------------------------
def test_nextn_plan_asks_for_mtp_layers_and_rollback_snapshots(tiny_nextn_path: Path) -> None:
    plan = plan_mtp(read_gguf(tiny_nextn_path), None, k_max=4)
    assert (plan.kind, plan.load_mtp, plan.n_rs_seq, plan.reason) == ("nextn", True, 4, None)


def test_plain_model_plan_falls_back_with_reason(tiny_llama_path: Path, tiny_gemma4_path: Path) -> None:
    assert plan_mtp(read_gguf(tiny_llama_path), None, 3).reason == "the model has no MTP layers"
    gemma = plan_mtp(read_gguf(tiny_gemma4_path), None, 3)
    assert gemma.kind is None and "assistant" in (gemma.reason or "")


def test_drafter_memory(
    tiny_gemma4_path: Path, tiny_gemma4_assistant_path: Path, tiny_nextn_path: Path
) -> None:
    assistant = read_gguf(tiny_gemma4_assistant_path)
    mem = mtp_memory(read_gguf(tiny_gemma4_path), assistant, n_ctx=4096)
    assert mem.weights_bytes == assistant.tensor_bytes and mem.kv_bytes == 0  # it reads the target's KV

    nextn = read_gguf(tiny_nextn_path)
    mem = mtp_memory(nextn, None, n_ctx=4096, kv_type="f16")
    mtp_tensors = [t for t in nextn.tensors if t.name.startswith("blk.4.")]  # the one NextN block
    assert mtp_tensors and mem.weights_bytes == sum(t.n_bytes for t in mtp_tensors)
    # 1 layer x 4096 positions x 1 KV head x (32 + 32) dims x 2 bytes
    assert mem.kv_bytes == 4096 * 64 * 2


# --- crash proofs (child processes) ---------------------------------------------------------------------
# The engine's MTP setup: metadata plan first, llama.cpp only for a pair that passed.
ENGINE_FLOW = """
import sys
from pathlib import Path
from engine.errors import IncompatibleDrafterError
from engine.gguf.metadata import read_gguf
from engine.compat.mtp import plan_mtp
try:
    plan = plan_mtp(read_gguf(sys.argv[1]), read_gguf(sys.argv[2]), 3)
except IncompatibleDrafterError as exc:
    # engine/__init__.py loads llama.cpp's library (before numpy); no code that opens a model may have run
    assert "engine.inference.llama" not in sys.modules, "the model loader ran before the pair was refused"
    print("REFUSED", exc.rule)
    sys.exit(0)
from engine.inference.drafters.mtp import open_mtp_drafter
from engine.inference.llama import Context, Model
model = Model(Path(sys.argv[1]), load_mtp=plan.load_mtp)
ctx = Context(model, n_ctx=256, n_batch=64, n_threads=1)
drafter, why = open_mtp_drafter(plan, model, ctx, assistant_path=Path(sys.argv[2]))
print("ACCEPTED", why)
sys.exit(3)
"""


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def _pairs(
    mismatched: dict[str, Path], target: Path, llama: Path, nextn: Path, good: Path
) -> dict[str, tuple[Path, Path]]:
    pairs = {rule: (target, path) for rule, path in mismatched.items()}
    pairs["target-architecture (llama)"] = (llama, good)
    pairs["target-architecture (qwen35)"] = (nextn, good)
    return pairs


@pytest.mark.subprocess
def test_engine_refuses_every_mismatched_pair_before_llama_cpp(
    tiny_gemma4_path: Path,
    tiny_gemma4_assistant_path: Path,
    mismatched_assistant_paths: dict[str, Path],
    tiny_llama_path: Path,
    tiny_nextn_path: Path,
) -> None:
    pairs = _pairs(
        mismatched_assistant_paths,
        tiny_gemma4_path,
        tiny_llama_path,
        tiny_nextn_path,
        tiny_gemma4_assistant_path,
    )
    for name, (target, assistant) in pairs.items():
        proc = _run(["-c", ENGINE_FLOW, str(target), str(assistant)])
        expected_rule = name.split(" ")[0]
        assert proc.returncode == 0, f"{name}: rc {proc.returncode}\n{proc.stdout}{proc.stderr[-2000:]}"
        assert proc.stdout.split() == ["REFUSED", expected_rule], name


@pytest.mark.subprocess
def test_matching_pair_passes_the_same_engine_flow(
    tiny_gemma4_path: Path, tiny_gemma4_assistant_path: Path
) -> None:
    proc = _run(["-c", ENGINE_FLOW, str(tiny_gemma4_path), str(tiny_gemma4_assistant_path)])
    assert proc.returncode == 3 and proc.stdout.split() == ["ACCEPTED", "None"], proc.stderr[-2000:]


# Without the metadata check, llama.cpp 0.3.36 kills the process on these pairs: this is what pairing
# prevents. (If a llama.cpp update stops crashing here, the rule can stay: the pair still cannot work.)
CRASHING_WITHOUT_PAIRING = [
    "hidden-size",
    "kv-heads",
    "target-architecture (llama)",
    "target-architecture (qwen35)",
]


@pytest.mark.subprocess
def test_llama_cpp_crashes_on_those_pairs_without_the_check(
    tiny_gemma4_path: Path,
    tiny_gemma4_assistant_path: Path,
    mismatched_assistant_paths: dict[str, Path],
    tiny_llama_path: Path,
    tiny_nextn_path: Path,
) -> None:
    pairs = _pairs(
        mismatched_assistant_paths,
        tiny_gemma4_path,
        tiny_llama_path,
        tiny_nextn_path,
        tiny_gemma4_assistant_path,
    )
    for name in CRASHING_WITHOUT_PAIRING:
        target, assistant = pairs[name]
        proc = _run(
            [
                "scripts/mtp_raw_sequence.py",
                "--model",
                str(target),
                "--assistant",
                str(assistant),
                "--tokens",
                "6",
            ]
        )
        assert proc.returncode < 0, f"{name}: expected a crash (signal), got rc {proc.returncode}"


@pytest.mark.parametrize(
    ("pattern", "shared_kv"),
    [
        ((True, False) * 3, 5),  # fewer than 2 layers with their own KV: llama.cpp asserts
        (
            (False, True, False, True, True, False),
            2,
        ),  # layers 4/5 reuse 2/3, whose attention types are swapped
        ((True, False, True, False, False, True), 0),  # last layer sliding-window
    ],
)
def test_target_layout_the_assistant_cannot_read_is_refused(
    pattern: tuple[bool, ...], shared_kv: int, tiny_gemma4_assistant_path: Path, tmp_path: Path
) -> None:
    from tests.fixtures.tiny_gemma4 import Gemma4Shape, build_gemma4_target

    target = build_gemma4_target(
        tmp_path / "t.gguf", shape=Gemma4Shape(n_layer=6, swa_pattern=pattern, shared_kv_layers=shared_kv)
    )
    with pytest.raises(IncompatibleDrafterError) as err:
        check_assistant_pair(read_gguf(target), read_gguf(tiny_gemma4_assistant_path))
    assert err.value.rule == "target-layout"
