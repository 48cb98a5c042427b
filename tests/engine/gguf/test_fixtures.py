"""The tiny llama fixture is a real, working model for llama.cpp: it loads, tokenizes (byte fallback
included), decodes batches and generates varied text. Checked through llama-cpp-python's low-level API."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest

from engine.gguf.metadata import validate_model_file
from tests.fixtures import tiny_llama

L = pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def model(tiny_llama_path: Path) -> Iterator[Any]:
    L.llama_backend_init()
    params = L.llama_model_default_params()
    handle = L.llama_model_load_from_file(str(tiny_llama_path).encode(), params)
    assert handle, "llama.cpp refused to load the tiny llama"
    yield handle
    L.llama_model_free(handle)


@pytest.fixture()
def ctx(model: Any) -> Iterator[Any]:
    params = L.llama_context_default_params()
    params.n_ctx = 512
    params.n_batch = 512
    params.n_threads = 1
    params.n_threads_batch = 1
    handle = L.llama_init_from_model(model, params)
    assert handle
    yield handle
    L.llama_free(handle)


def _vocab(model: Any) -> Any:
    return L.llama_model_get_vocab(model)


def tokenize(model: Any, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
    data = text.encode("utf-8")
    buf = (L.llama_token * (len(data) + 8))()
    n = L.llama_tokenize(_vocab(model), data, len(data), buf, len(buf), add_special, parse_special)
    assert n >= 0, f"tokenize failed ({n})"
    return list(buf[:n])


def piece(model: Any, token: int) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = L.llama_token_to_piece(_vocab(model), token, buf, len(buf), 0, True)
    assert n >= 0
    return buf.raw[:n]


def decode_all_logits(ctx: Any, tokens: list[int], pos0: int, n_vocab: int) -> list[list[float]]:
    """Decode `tokens` at positions pos0.. in one batch, asking logits for every row."""
    batch = L.llama_batch_init(len(tokens), 0, 1)
    try:
        for i, tok in enumerate(tokens):
            batch.token[i] = tok
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = True
        batch.n_tokens = len(tokens)
        assert L.llama_decode(ctx, batch) == 0
        rows = []
        for i in range(len(tokens)):
            ptr = L.llama_get_logits_ith(ctx, i)
            rows.append([ptr[j] for j in range(n_vocab)])
        return rows
    finally:
        L.llama_batch_free(batch)


def greedy(ctx: Any, model: Any, prompt: str, n: int) -> list[int]:
    n_vocab = L.llama_vocab_n_tokens(_vocab(model))
    ids = tokenize(model, prompt, add_special=True, parse_special=True)
    last = decode_all_logits(ctx, ids, 0, n_vocab)[-1]
    out: list[int] = []
    for step in range(n):
        tok = max(range(n_vocab), key=last.__getitem__)
        out.append(tok)
        last = decode_all_logits(ctx, [tok], len(ids) + step, n_vocab)[0]
    return out


def test_tiny_llama_is_small_deterministic_and_valid(tmp_path: Path, tiny_llama_path: Path) -> None:
    rebuilt = tiny_llama.build_tiny_llama(tmp_path / "again.gguf")
    assert rebuilt.read_bytes() == tiny_llama_path.read_bytes()
    assert tiny_llama_path.stat().st_size < 1_000_000
    info = validate_model_file(tiny_llama_path)
    assert (info.architecture, info.kind, info.vocab_model) == ("llama", "plain", "llama")
    assert info.n_vocab == tiny_llama.n_vocab()
    assert 300 <= info.n_vocab <= 600
    assert info.block_count == 2 and info.context_length is not None and info.context_length >= 512
    assert (info.bos_token_id, info.eos_token_id, info.eot_token_id) == (1, 2, 4)


def test_loads_with_expected_vocab(model: Any) -> None:
    vocab = _vocab(model)
    assert L.llama_vocab_n_tokens(vocab) == tiny_llama.n_vocab()
    assert L.llama_vocab_bos(vocab) == tiny_llama.BOS_ID
    assert L.llama_vocab_eos(vocab) == tiny_llama.EOS_ID
    assert L.llama_vocab_eot(vocab) == tiny_llama.IM_END_ID
    for token in (tiny_llama.EOS_ID, tiny_llama.IM_END_ID):
        assert L.llama_vocab_is_eog(vocab, token)
    for token in (tiny_llama.IM_START_ID, tiny_llama.IM_END_ID):
        assert L.llama_vocab_is_control(vocab, token)
    assert L.llama_model_n_embd(model) == tiny_llama.SPEC.n_embd


def test_tokenizes_words_into_multi_char_pieces(model: Any) -> None:
    ids = tokenize(model, "Hello world")
    assert ids[0] == tiny_llama.BOS_ID  # add_bos is on
    assert [piece(model, t) for t in ids[1:]] == [b" Hello", b" world"]


@pytest.mark.parametrize("text", ["Hello world", "héllo 😀 日本語", "tab\there, new\nline", "¿Qué?"])
def test_round_trip_through_pieces(model: Any, text: str) -> None:
    ids = tokenize(model, text, add_special=False)
    assert b"".join(piece(model, t) for t in ids).decode("utf-8") == " " + text  # SPM space prefix


def test_emoji_and_cjk_fall_back_to_byte_tokens(model: Any) -> None:
    ids = tokenize(model, "😀", add_special=False)
    byte_ids = [t for t in ids if tiny_llama.BYTE_TOKENS_START <= t < tiny_llama.BYTE_TOKENS_START + 256]
    assert len(byte_ids) == 4  # the emoji's four UTF-8 bytes


def test_chat_template_renders_and_special_tokens_parse(model: Any) -> None:
    template = jinja2.Environment().from_string(tiny_llama.CHAT_TEMPLATE)
    text = template.render(messages=[{"role": "user", "content": "Hello"}], add_generation_prompt=True)
    assert text == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenize(model, text, add_special=True, parse_special=True)
    assert ids.count(tiny_llama.IM_START_ID) == 2 and ids.count(tiny_llama.IM_END_ID) == 1


def test_batch_decode_gives_logits_for_every_row(ctx: Any, model: Any) -> None:
    n_vocab = L.llama_vocab_n_tokens(_vocab(model))
    ids = tokenize(model, "the model is fast and the answer is")
    rows = decode_all_logits(ctx, ids, 0, n_vocab)
    assert len(rows) == len(ids)
    for row in rows:
        assert all(math.isfinite(x) for x in row)
        assert max(row) - min(row) > 1.0  # not flat: greedy has a clear choice
    assert rows[0] != rows[1]


def test_greedy_generation_is_varied_deterministic_and_does_not_stop_early(ctx: Any, model: Any) -> None:
    vocab = _vocab(model)
    prompts = [
        "Hello world",
        "<|im_start|>user\nWhat is the answer?<|im_end|>\n<|im_start|>assistant\n",
    ]
    for prompt in prompts:
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        out = greedy(ctx, model, prompt, 50)
        assert not any(L.llama_vocab_is_eog(vocab, t) for t in out), prompt
        assert len(set(out)) >= 10, (prompt, out)
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
        assert greedy(ctx, model, prompt, 50) == out
