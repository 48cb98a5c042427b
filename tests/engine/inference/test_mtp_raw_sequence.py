"""scripts/mtp_raw_sequence.py drives the MTP call sequence with nothing but llama-cpp-python's low-level
API. Run it (in a child process) on both fixtures, and check that the engine's MTPDrafter proposes exactly
what this independent implementation proposes for the same contexts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.compat.mtp import plan_mtp
from engine.gguf.metadata import read_gguf
from engine.inference.drafters.mtp import open_mtp_drafter
from engine.inference.llama import Context, Model
from tests import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "mtp_raw_sequence.py"


def _flavour(name: str, request: pytest.FixtureRequest) -> tuple[Path, Path | None]:
    if name == "gemma4-assistant":
        return request.getfixturevalue("tiny_gemma4_path"), request.getfixturevalue(
            "tiny_gemma4_assistant_path"
        )
    return request.getfixturevalue("tiny_nextn_path"), None


def _run_script(target: Path, assistant: Path | None, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(SCRIPT), "--model", str(target), "--tokens", "40", *extra]
    if assistant is not None:
        args += ["--assistant", str(assistant)]
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def _stats(stdout: str) -> dict[str, int]:
    line = stdout.strip().splitlines()[-1]
    assert line.startswith("identical=True"), line
    result: dict[str, int] = json.loads(line[line.index("{") :].replace("'", '"'))
    return result


@pytest.mark.subprocess
@pytest.mark.parametrize("flavour", ["gemma4-assistant", "nextn"])
def test_raw_sequence_matches_plain(flavour: str, request: pytest.FixtureRequest) -> None:
    target, assistant = _flavour(flavour, request)
    proc = _run_script(target, assistant)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    stats = _stats(proc.stdout)
    assert stats["drafted"] > 0 and stats["steps"] > 0


@pytest.mark.subprocess
@pytest.mark.parametrize("flavour", ["gemma4-assistant", "nextn"])
def test_engine_drafter_proposes_what_the_raw_sequence_proposes(
    flavour: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target, assistant = _flavour(flavour, request)
    dump = tmp_path / "proposals.json"
    proc = _run_script(target, assistant, "--oracle", "--dump-proposals", str(dump))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    stats = _stats(proc.stdout)
    assert stats["accepted"] > 0 and stats["rollbacks"] > 0  # the oracle made accepts and partial rejects
    data = json.loads(dump.read_text())
    sequence = [*data["prompt"], *data["plain"]]

    plan = plan_mtp(read_gguf(target), read_gguf(assistant) if assistant else None, k_max=3)
    with Model(target, load_mtp=plan.load_mtp) as model:
        assert (
            model.tokenize(
                "<start_of_turn>user\nHello world, what is the name of the model?<end_of_turn>\n"
                "<start_of_turn>model\n",
                add_special=True,
            )
            == data["prompt"]
        )
        checked = 0
        for n_context, proposed in data["proposals"][::4]:
            if not proposed:
                continue
            context = sequence[:n_context]
            with Context(model, n_ctx=512, n_batch=64, n_threads=1, n_rs_seq=plan.n_rs_seq) as ctx:
                drafter, why = open_mtp_drafter(plan, model, ctx, assistant_path=assistant)
                assert drafter is not None, why
                try:
                    for start in range(0, n_context - 1, ctx.n_batch):
                        chunk = context[start : min(start + ctx.n_batch, n_context - 1)]
                        ctx.decode(chunk, start, "last")
                        drafter.observe(chunk, start, len(chunk))
                    assert list(drafter.draft(context, len(proposed)).tokens) == proposed, n_context
                    checked += 1
                finally:
                    drafter.close()
        assert checked >= 3
