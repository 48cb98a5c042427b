"""engine.gguf.metadata: good files are described correctly (cross-checked against gguf.GGUFReader), and every
broken file gives a ModelFileError naming the file and the problem: never another exception, never a hang."""

from __future__ import annotations

import contextlib
import os
import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from engine.errors import ModelFileError
from engine.gguf.metadata import GGUFInfo, read_gguf, validate_model_file
from engine.gguf.reader import ArrayRef
from tests.fixtures import broken, tiny_llama


@pytest.fixture(scope="module")
def corpus(tiny_llama_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, broken.BrokenCase]:
    cases = broken.make_corpus(tiny_llama_path, tmp_path_factory.mktemp("broken"))
    return {c.name: c for c in cases}


def _corpus_names() -> list[str]:
    # The names are fixed by make_corpus; listing them here gives one test id per case.
    return [
        "empty", "random_bytes", "random_after_magic", "wrong_magic", "html_page", "lfs_pointer",
        "version_1", "version_9", "big_endian", "absurd_tensor_count", "absurd_kv_count", "max_kv_count",
        "kv_count_too_high", "absurd_key_length", "key_past_eof", "bad_value_type", "absurd_array_length",
        "array_length_off", "trunc_in_magic", "trunc_in_header", "trunc_after_header", "trunc_in_first_key",
        "trunc_mid_metadata", "trunc_in_tokens", "trunc_end_of_metadata", "trunc_in_tensor_infos",
        "trunc_at_data_start", "trunc_in_data", "trunc_last_byte", "bad_tensor_type", "too_many_dims",
        "bad_tensor_offset", "absurd_tensor_name_length", "duplicate_tensor_name", "unknown_arch",
        "fork_gemma4_mtp", "fork_gemma4_assistant", "clip_projector", "no_vocab", "bad_alignment",
        "no_architecture", "directory", "missing", "fifo",
    ]  # fmt: skip


def test_corpus_names_are_complete(corpus: dict[str, broken.BrokenCase]) -> None:
    expected = set(_corpus_names()) - ({"fifo"} if not hasattr(os, "mkfifo") else set())
    assert set(corpus) == expected


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", _corpus_names())
def test_broken_file_gives_model_file_error(corpus: dict[str, broken.BrokenCase], name: str) -> None:
    if name not in corpus:
        pytest.skip(f"{name} cannot be made on this platform")
    case = corpus[name]
    if case.stage == "validate":
        read_gguf(case.path)  # structurally fine: only the semantic checks refuse it
    with pytest.raises(ModelFileError) as err:
        validate_model_file(case.path)
    assert err.value.path == case.path
    assert str(case.path) in str(err.value)
    assert case.expect.lower() in err.value.problem.lower(), err.value.problem
    assert len(err.value.problem) > 10


def test_truncated_file_says_how_many_bytes_are_missing(
    corpus: dict[str, broken.BrokenCase], tiny_llama_path: Path
) -> None:
    case = corpus["trunc_in_data"]
    with pytest.raises(ModelFileError) as err:
        read_gguf(case.path)
    missing = tiny_llama_path.stat().st_size - case.path.stat().st_size
    assert f"{missing} bytes missing" in err.value.problem
    with pytest.raises(ModelFileError, match="1 byte missing"):
        read_gguf(corpus["trunc_last_byte"].path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path, tiny_llama_path: Path) -> None:
    path = tmp_path / "locked.gguf"
    path.write_bytes(tiny_llama_path.read_bytes())
    path.chmod(0)
    with pytest.raises(ModelFileError, match="permission denied"):
        read_gguf(path)


@pytest.mark.timeout(120)
def test_truncation_at_many_offsets(tiny_llama_path: Path, tmp_path: Path) -> None:
    """Every cut inside the metadata and tensor descriptions (sampled), and several in the data."""
    data = tiny_llama_path.read_bytes()
    layout = broken.layout_of(tiny_llama_path)
    cuts = set(range(0, layout.data_offset + 64, 7)) | {layout.kv_end - 1, layout.kv_end + 1}
    cuts |= {layout.data_offset + k * 4099 for k in range(0, (layout.size - layout.data_offset) // 4099)}
    path = tmp_path / "cut.gguf"
    for cut in sorted(cuts):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError) as err:
            read_gguf(path)
        problem = err.value.problem
        assert "truncated" in problem or "empty" in problem, (cut, problem)


@pytest.mark.timeout(120)
def test_random_corruption_never_escapes_as_another_exception(tiny_llama_path: Path, tmp_path: Path) -> None:
    """Random byte changes in the metadata, the tensor descriptions and the header: the reader returns or
    raises ModelFileError, nothing else."""
    data = tiny_llama_path.read_bytes()
    layout = broken.layout_of(tiny_llama_path)
    rng = np.random.default_rng(2024)
    path = tmp_path / "fuzz.gguf"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        raw = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, layout.data_offset))
            raw[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(raw))
        try:
            validate_model_file(path)
            outcomes["ok"] += 1
        except ModelFileError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["ok"] > 0, outcomes


@pytest.mark.timeout(60)
def test_corrupt_counts_over_zero_filled_data_fail_fast(tmp_path: Path) -> None:
    """Counts that fit the file size but describe zero bytes (a pre-allocated, never written download)
    must not make the reader walk the whole file."""
    zeros = bytes(64 * 1024 * 1024)
    header = b"GGUF" + struct.pack("<IQQ", 3, 2_000_000, 0)
    key = b"k"
    string_array = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + key
    cases = {
        "tensors": header + zeros,
        "strings": string_array + struct.pack("<IIQ", 9, 8, 8_000_000) + zeros,
        "too_many_strings": string_array + struct.pack("<IIQ", 9, 8, 2**25) + zeros,
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(content)
        start = time.perf_counter()
        with contextlib.suppress(ModelFileError):
            read_gguf(path)
        assert time.perf_counter() - start < 10.0, name
    with pytest.raises(ModelFileError, match="appears twice"):
        read_gguf(tmp_path / "tensors.gguf")
    with pytest.raises(ModelFileError, match="far more than any model"):
        read_gguf(tmp_path / "too_many_strings.gguf")


def _reader_value(field: gguf.ReaderField) -> object:
    value = field.contents()
    return tuple(value) if isinstance(value, list) else value


def _assert_matches_gguf_reader(info: GGUFInfo, path: Path) -> None:
    reader = gguf.GGUFReader(str(path))
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert list(info.keys()) == keys
    for key in keys:
        ours, theirs = info.get(key), _reader_value(reader.fields[key])
        if isinstance(theirs, float):
            assert ours == pytest.approx(theirs), key
        elif isinstance(theirs, tuple) and theirs and isinstance(theirs[0], float):
            assert np.allclose(np.array(ours), np.array(theirs)), key
        else:
            assert ours == theirs, key
    assert [t.name for t in info.tensors] == [t.name for t in reader.tensors]
    for ours_t, theirs_t in zip(info.tensors, reader.tensors, strict=True):
        assert ours_t.type_id == int(theirs_t.tensor_type)
        assert ours_t.shape == tuple(int(d) for d in theirs_t.shape)
        assert ours_t.n_bytes == theirs_t.n_bytes
        assert ours_t.offset == theirs_t.data_offset
    if info.tensors:  # with no tensors llama.cpp (and so this reader) does not pad; GGUFReader does
        assert info.data_offset == reader.data_offset


def test_tiny_llama_is_described_correctly(tiny_llama_path: Path) -> None:
    info = validate_model_file(tiny_llama_path)
    spec = tiny_llama.SPEC
    assert info.path == tiny_llama_path and info.file_size == tiny_llama_path.stat().st_size
    assert (info.version, info.architecture, info.kind) == (3, "llama", "plain")
    assert info.name == "tiny-llama (test fixture)"
    assert info.n_vocab == tiny_llama.n_vocab() and info.vocab_model == "llama"
    assert info.chat_template == tiny_llama.CHAT_TEMPLATE
    assert (info.block_count, info.embedding_length, info.context_length) == (2, 64, spec.n_ctx_train)
    assert (info.head_count, info.head_count_kv, info.key_length, info.value_length) == (4, 2, 16, 16)
    assert info.key_length_swa is None and info.sliding_window is None
    assert info.nextn_predict_layers == 0 and info.embedding_length_out is None
    assert info.n_tensors == 3 + 9 * spec.n_layer
    assert info.tensor_bytes == sum(t.n_elements * 4 for t in info.tensors)
    assert info.data_offset + info.tensor_bytes == info.file_size  # F32 rows of 64: no padding at all
    embd = info.tensor("token_embd.weight")
    assert embd is not None and embd.shape == (spec.n_embd, info.n_vocab) and embd.type_name == "F32"
    assert info.get("llama.attention.layer_norm_rms_epsilon") == pytest.approx(spec.rms_eps)
    assert info.arch_get("rope.dimension_count") == spec.head_dim
    assert info.get("no.such.key", "fallback") == "fallback"
    tokens = info.get("tokenizer.ggml.tokens")
    assert isinstance(tokens, tuple) and tokens[:3] == ("<unk>", "<s>", "</s>")
    _assert_matches_gguf_reader(info, tiny_llama_path)


def test_kind_detection(tmp_path: Path) -> None:
    nextn_key = {"llama.nextn_predict_layers": 1}
    nextn = tiny_llama.build_tiny_llama(tmp_path / "nextn.gguf", extra_uint32=nextn_key)
    assert validate_model_file(nextn).kind == "nextn"
    assert read_gguf(nextn).nextn_predict_layers == 1
    assistant = tiny_llama.build_tiny_llama(
        tmp_path / "assistant.gguf",
        arch="gemma4-assistant",
        extra_uint32={
            "gemma4-assistant.embedding_length_out": 128,
            "gemma4-assistant.nextn_predict_layers": 2,
        },
    )
    info = validate_model_file(assistant)
    assert (info.kind, info.embedding_length_out, info.nextn_predict_layers) == ("gemma4-assistant", 128, 2)
    fork = tiny_llama.build_tiny_llama(tmp_path / "fork.gguf", arch="gemma4_mtp")
    assert read_gguf(fork).kind == "fork-mtp"


def test_no_vocab_tokenizer_is_accepted(tmp_path: Path) -> None:
    """tokenizer.ggml.model 'none' is legal in llama.cpp: n_vocab then comes from <arch>.vocab_size."""
    path = tmp_path / "novocab.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    hparams = {"context_length": 64, "embedding_length": 32, "block_count": 1, "vocab_size": 77}
    for key, value in hparams.items():
        writer.add_uint32(f"llama.{key}", value)
    writer.add_tokenizer_model("none")
    writer.add_tensor("x.weight", np.zeros(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = validate_model_file(path)
    assert info.n_vocab == 77 and info.vocab_model == "none"


def test_long_arrays_are_read_on_demand(tiny_llama_path: Path) -> None:
    info = read_gguf(tiny_llama_path)
    assert isinstance(info._metadata["tokenizer.ggml.tokens"], tuple)  # 566 < the eager limit
    scores = info.get("tokenizer.ggml.scores")
    assert isinstance(scores, tuple) and len(scores) == info.n_vocab


@pytest.mark.real_model
def test_smollm2_is_described_correctly_and_fast(smollm2_path: Path) -> None:
    read_gguf(smollm2_path)  # warm the page cache: measure parsing, not the disk
    start = time.perf_counter()
    info = validate_model_file(smollm2_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"reading SmolLM2 metadata took {elapsed:.3f} s"
    assert (info.architecture, info.kind, info.vocab_model) == ("llama", "plain", "gpt2")
    assert info.n_vocab == 49152 and (info.bos_token_id, info.eos_token_id) == (1, 2)
    assert (info.block_count, info.embedding_length, info.head_count, info.head_count_kv) == (30, 576, 9, 3)
    assert info.n_tensors == 272 and info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.data_offset + info.tensor_bytes <= info.file_size
    assert isinstance(info._metadata["tokenizer.ggml.tokens"], ArrayRef)
    tokens = info.get("tokenizer.ggml.tokens")
    assert isinstance(tokens, tuple) and len(tokens) == 49152 and tokens[1] == "<|im_start|>"
    _assert_matches_gguf_reader(info, smollm2_path)


@pytest.mark.real_model
def test_gemma3_is_described_correctly(gemma3_path: Path) -> None:
    """262k-token vocabulary: still fast. (No GGUFReader cross-check here: it takes ~14 s on this file;
    the SmolLM2 test covers the same code paths.)"""
    read_gguf(gemma3_path)
    start = time.perf_counter()
    info = validate_model_file(gemma3_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"reading Gemma 3 metadata took {elapsed:.3f} s"
    assert (info.architecture, info.kind, info.vocab_model) == ("gemma3", "plain", "llama")
    assert (info.n_vocab, info.sliding_window, info.block_count) == (262144, 512, 18)
    assert (info.key_length, info.head_count_kv) == (256, 1)
    assert info.data_offset + info.tensor_bytes <= info.file_size
    tokens = info.get("tokenizer.ggml.tokens")
    assert isinstance(tokens, tuple) and len(tokens) == info.n_vocab


def test_every_value_type_round_trips(tmp_path: Path) -> None:
    """Scalars of each GGUF type, short arrays (decoded while reading) and long ones (read on demand)."""
    path = tmp_path / "types.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    scalars = {
        "t.u8": (gguf.GGUFValueType.UINT8, 200), "t.i8": (gguf.GGUFValueType.INT8, -100),
        "t.u16": (gguf.GGUFValueType.UINT16, 60000), "t.i16": (gguf.GGUFValueType.INT16, -30000),
        "t.u32": (gguf.GGUFValueType.UINT32, 4_000_000_000), "t.i32": (gguf.GGUFValueType.INT32, -(2**31)),
        "t.f32": (gguf.GGUFValueType.FLOAT32, 0.5), "t.bool": (gguf.GGUFValueType.BOOL, True),
        "t.str": (gguf.GGUFValueType.STRING, "héllo ✓"), "t.u64": (gguf.GGUFValueType.UINT64, 2**63 + 5),
        "t.i64": (gguf.GGUFValueType.INT64, -(2**62)), "t.f64": (gguf.GGUFValueType.FLOAT64, -1.25),
    }  # fmt: skip
    for key, (vtype, value) in scalars.items():
        writer.add_key_value(key, value, vtype)
    arrays: dict[str, list[object]] = {
        "a.bools": [True, False, True],
        "a.ints_long": list(range(5000)),
        "a.floats_long": [i / 4 for i in range(3000)],
        "a.strs": ["a", "", "ü"],
        "a.strs_long": [f"s{i}" for i in range(2000)],
    }
    for key, values in arrays.items():
        writer.add_array(key, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    info = read_gguf(path)
    for key, (_, value) in scalars.items():
        assert info.get(key) == value, key
        assert type(info.get(key)) is type(value), key
    for key, values in arrays.items():
        assert info.get(key) == tuple(values), key
    assert isinstance(info._metadata["a.ints_long"], ArrayRef)
    assert isinstance(info._metadata["a.strs_long"], ArrayRef)
    assert info.get("a.bools") == (True, False, True) and type(info.get("a.bools")[0]) is bool  # type: ignore[index]
    _assert_matches_gguf_reader(info, path)
