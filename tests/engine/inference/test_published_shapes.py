"""Pairs shaped like the published Gemma 4 GGUFs (tests/fixtures/published_shapes.py) through the whole MTP
path: read, checked, loaded, drafting, output identical to plain decoding; mismatched pairs refused with
their rule; a centroid-head assistant refused with its reason before llama.cpp sees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.compat.mtp import check_assistant_pair, mtp_capability
from engine.compat.options import local_drafter_options
from engine.config import ChatMessage, GenerationParams, LoadConfig, SpecParams
from engine.errors import IncompatibleDrafterError, ModelFileError
from engine.events import DoneEvent
from engine.gguf.metadata import read_gguf, validate_model_file
from engine.inference.session import ChatEngine
from tests import REPO_ROOT
from tests.fixtures.published_shapes import MISMATCHES, SHAPES

MESSAGES = [ChatMessage("user", "Hello world, what is the name of the model?")]
Paths = dict[str, tuple[Path, Path]]


def reply(engine: ChatEngine, spec: bool) -> DoneEvent:
    params = GenerationParams(max_tokens=24, spec=SpecParams(enabled=spec, adaptive=False))
    engine.reset()
    done = list(engine.chat(MESSAGES, params))[-1]
    assert isinstance(done, DoneEvent)
    return done


def test_files_carry_the_published_structure(published_shape_paths: Paths) -> None:
    e2b, e2b_assistant = (read_gguf(p) for p in published_shape_paths["e2b"])
    g12, g12_assistant = (read_gguf(p) for p in published_shape_paths["12b"])
    # per-layer arrays as the converter writes them, and head sizes that are not n_embd / n_head
    assert isinstance(g12.arch_get("attention.head_count_kv"), tuple) and g12.head_count_kv == 2
    assert g12_assistant.arch_get("attention.head_count_kv") == (2, 2, 2, 1)
    assert isinstance(e2b.arch_get("feed_forward_length"), tuple)
    assert e2b.arch_get("attention.sliding_window_pattern")[:5] == (True, True, True, True, False)
    assert (e2b.key_length, e2b.key_length_swa) == (64, 32) and e2b.embedding_length // 2 == 24
    assert e2b.arch_get("attention.shared_kv_layers") == 5
    # assistants: 4 MTP layers reading the target's cache, tied LM head, the target's width out
    assert e2b_assistant.block_count == e2b_assistant.nextn_predict_layers == 4
    assert e2b_assistant.embedding_length_out == e2b.embedding_length != e2b_assistant.embedding_length
    assert e2b_assistant.n_trunk_layers == 4 and e2b.n_trunk_layers == 10
    names = {t.name for t in e2b_assistant.tensors}
    assert "output.weight" not in names and not any(".attn_k." in n or ".attn_v." in n for n in names)
    # the 12B's full-attention layers: K and no V (K = V)
    full = [il for il, swa in enumerate(g12.arch_get("attention.sliding_window_pattern")) if not swa]
    assert all(
        g12.tensor(f"blk.{il}.attn_k.weight") and not g12.tensor(f"blk.{il}.attn_v.weight") for il in full
    )


@pytest.mark.parametrize("family", sorted(SHAPES))
def test_shaped_pair_runs_mtp_identical_to_plain(family: str, published_shape_paths: Paths) -> None:
    target, assistant = published_shape_paths[family]
    check_assistant_pair(read_gguf(target), read_gguf(assistant))
    config = LoadConfig(model_path=target, assistant_path=assistant, n_ctx=512, n_batch=64, n_threads=1)
    with ChatEngine.load(config) as engine:
        assert engine.info.drafter == "MTP (Gemma 4 assistant)"
        spec, plain = reply(engine, True), reply(engine, False)
    assert spec.stats.spec is not None and spec.stats.spec.drafted > 0
    assert spec.text == plain.text and spec.stats.n_generated == plain.stats.n_generated


@pytest.mark.parametrize(("target", "assistant"), sorted(MISMATCHES))
def test_mismatched_shapes_are_refused_with_their_rule(
    target: str, assistant: str, published_shape_paths: Paths
) -> None:
    t = read_gguf(published_shape_paths[target][0])
    a = read_gguf(published_shape_paths[assistant][1])
    with pytest.raises(IncompatibleDrafterError) as err:
        check_assistant_pair(t, a)
    assert err.value.rule == MISMATCHES[(target, assistant)]
    options = {o.path: o for o in local_drafter_options(t, [a])}
    assert options[a.path].rule == MISMATCHES[(target, assistant)]


LOAD_PAIRS = """
import sys
from pathlib import Path
from engine.config import LoadConfig
from engine.errors import IncompatibleDrafterError
from engine.inference.session import ChatEngine
for target, assistant in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        with ChatEngine.load(LoadConfig(model_path=Path(target), assistant_path=Path(assistant), n_ctx=256)):
            pass
    except IncompatibleDrafterError as exc:
        print("REFUSED", exc.rule)
    else:
        print("LOADED")
"""


@pytest.mark.subprocess
def test_engine_refuses_mismatched_shapes_without_crashing(published_shape_paths: Paths) -> None:
    args = []
    for target, assistant in sorted(MISMATCHES):
        args += [str(published_shape_paths[target][0]), str(published_shape_paths[assistant][1])]
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_PAIRS, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:-1] == [f"REFUSED {MISMATCHES[k]}" for k in sorted(MISMATCHES)]


RAW_LOAD = """
import sys, llama_cpp
llama_cpp.llama_backend_init()
model = llama_cpp.llama_model_load_from_file(sys.argv[1].encode(), llama_cpp.llama_model_default_params())
print("LOADED" if model else "REFUSED")
"""


@pytest.mark.subprocess
def test_centroid_head_assistant_is_refused_with_its_reason(published_shape_paths: Paths) -> None:
    """The pinned llama.cpp declines such a file (its loader asks for the centroid tensors with an empty shape
    and fails); Tandem says why before llama.cpp is asked, and the dense-head conversion runs (above)."""
    target, centroids = published_shape_paths["e2b-centroids"]
    dense = published_shape_paths["e2b"][1]
    raw = subprocess.run(
        [sys.executable, "-c", RAW_LOAD, str(centroids)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert raw.returncode == 0 and raw.stdout.split() == ["REFUSED"], raw.stderr[-2000:]
    info = read_gguf(centroids)
    assert info.has_centroid_head and not read_gguf(dense).has_centroid_head
    assert mtp_capability(info).reason is not None and "centroid" in mtp_capability(info).reason
    with pytest.raises(ModelFileError, match="centroid"):
        validate_model_file(centroids)
    with pytest.raises(IncompatibleDrafterError) as err:
        ChatEngine.load(LoadConfig(model_path=target, assistant_path=centroids, n_ctx=256))
    assert err.value.rule == "centroid-head" and "upstream llama.cpp" in err.value.detail
