"""A bounds-checked reader for the GGUF container: header, metadata key/values and tensor infos.

Why not `gguf.GGUFReader`: it builds one numpy object per vocabulary string (2.9 s for SmolLM2's 49k tokens
+ 49k merges), and it trusts every count in the file, so a corrupt array length makes it loop for ever and
a truncated file surfaces as IndexError/ValueError from deep inside numpy. This reader checks every count
against the bytes that are left before using it, mirrors the rules of the pinned llama.cpp's
`gguf_init_from_file_impl` (ggml/src/gguf.cpp) so that what passes here also passes there, and leaves big
arrays (the vocabulary) in the file, to be decoded only when someone asks for them.

Raises `GGUFFormatError(problem)`; `engine.gguf.metadata` turns it into `ModelFileError(path, problem)`.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Union

import numpy as np

from engine.text import shown

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # llama.cpp rejects v1 (32-bit counts) and anything newer than 3
DEFAULT_ALIGNMENT = 32
HEADER_SIZE = 24  # magic u32, version u32, n_tensors u64, n_kv u64
MAX_STRING_LENGTH = 1024 * 1024 * 1024  # GGUF_MAX_STRING_LENGTH in ggml/src/gguf.cpp
# A key is a dotted name; real ones stay under 100 bytes. A longer one is a corrupt length field, refused
# before its bytes (possibly megabytes of tensor data) are decoded and quoted in an error.
MAX_KEY_LENGTH = 64 * 1024
MIN_ALIGNMENT = 8  # smaller powers of two pass gguf.cpp but leave tensor data unaligned for the backends
MAX_ARRAY_ELEMENTS = 1024 * 1024 * 1024  # GGUF_MAX_ARRAY_ELEMENTS in ggml/src/gguf.cpp
# Stepping over strings costs a Python iteration each; real vocabularies and merge lists stay far below
# this (the largest known: ~1M), so a longer string array is corruption, refused before a minutes-long scan.
MAX_STRING_ARRAY = 16 * 1024 * 1024
MAX_TENSOR_NAME = 64  # GGML_MAX_NAME: names must be shorter than this
MAX_DIMS = 4  # GGML_MAX_DIMS
# Smallest possible encodings, used to reject counts that cannot fit in the bytes left in the file.
MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, a 1-byte value (the key itself may not be empty: +1)
MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 4 + 8  # name length, 1-byte name, n_dims, type, offset
# Arrays at most this long are decoded while reading; longer ones stay in the file until asked for.
EAGER_ARRAY_LIMIT = 1024


class GGUFFormatError(Exception):
    """The bytes do not form a GGUF file the pinned llama.cpp would accept; the message says why."""


class ValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# fmt: off
_SCALAR_FORMATS: dict[int, str] = {
    ValueType.UINT8: "<B", ValueType.INT8: "<b", ValueType.UINT16: "<H", ValueType.INT16: "<h",
    ValueType.UINT32: "<I", ValueType.INT32: "<i", ValueType.FLOAT32: "<f", ValueType.BOOL: "<?",
    ValueType.UINT64: "<Q", ValueType.INT64: "<q", ValueType.FLOAT64: "<d",
}
# fmt: on
_SCALAR_STRUCTS = {t: struct.Struct(f) for t, f in _SCALAR_FORMATS.items()}
_NUMPY_DTYPES: dict[int, str] = {t: f.replace("?", "u1") for t, f in _SCALAR_FORMATS.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# ggml tensor types of the pinned llama.cpp: id -> (name, elements per block, bytes per block).
# Source: vendor/llama.cpp/ggml/include/ggml.h (enum ggml_type) and ggml/src/ggml.c (type_traits) of
# llama-cpp-python 0.3.36. Ids 4, 5 and 31-33, 36-38 were removed upstream and are invalid in files.
# fmt: off
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
    28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
    42: ("Q2_0", 64, 18),
}
# fmt: on


@dataclass(frozen=True, slots=True)
class ArrayRef:
    """A metadata array left in the file: `count` elements of `elem_type` starting at byte `offset`."""

    elem_type: ValueType
    count: int
    offset: int


Scalar = Union[int, float, bool, str]  # noqa: UP007 (a runtime alias: `|` needs Python 3.10 objects)
MetaValue = Union[Scalar, tuple[Scalar, ...], ArrayRef]  # noqa: UP007


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor as described in the file. `shape` is in ggml order (ne0 = row length first);
    `offset` is the absolute file offset of its data; `n_bytes` its exact (unpadded) data size."""

    name: str
    type_id: int
    type_name: str
    shape: tuple[int, ...]
    n_elements: int
    n_bytes: int
    offset: int


@dataclass(frozen=True, slots=True)
class ParsedGGUF:
    version: int
    alignment: int
    data_offset: int  # absolute offset where tensor data starts
    data_end: int  # the file must be at least this long to hold every tensor's data
    metadata: dict[str, MetaValue]
    tensors: tuple[TensorInfo, ...]


def describe_bytes(head: bytes) -> str:
    """Say what the first bytes of a non-GGUF file look like, recognising the usual wrong downloads."""
    known = [
        (b"version https://git-lfs", "a Git LFS pointer file (the pointer was downloaded, not the model)"),
        (b"<!DOCTYPE", "an HTML page (probably an error page saved instead of the model)"),
        (b"<html", "an HTML page (probably an error page saved instead of the model)"),
        (b"PK\x03\x04", "a ZIP archive (PyTorch checkpoint or a zipped model?)"),
        (b"tjgg", "an old GGJT-format model (pre-GGUF llama.cpp; needs reconverting)"),
        (b"lmgg", "an old GGML-format model (pre-GGUF llama.cpp; needs reconverting)"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"{", "a JSON file"),
    ]
    for prefix, what in known:
        if head.lstrip().startswith(prefix):
            return what
    if len(head) >= 10 and head[8:10] == b'{"':
        return "a safetensors file (convert it to GGUF first)"
    shown = head[:16]
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in shown)
    return f"bytes {shown.hex(' ')} ({text!r})"


class _Cursor:
    """Reads little-endian values from a buffer, raising GGUFFormatError instead of running off its end."""

    def __init__(self, buf: mmap.mmap | bytes, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0
        self.section = "header"

    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.left():
            raise GGUFFormatError(
                f"the file ends inside the {self.section} (reading {what} at byte {self.pos}, "
                f"{n} bytes needed, {self.left()} left): the file is truncated or corrupt"
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(v)

    def string(self, what: str, max_length: int = MAX_STRING_LENGTH) -> str:
        n = self.u64(f"the length of {what}")
        if n > MAX_STRING_LENGTH:
            raise GGUFFormatError(f"{what} claims an absurd length of {n} bytes (the file is corrupt)")
        self.need(n, what)
        if n > max_length:
            raise GGUFFormatError(f"{what} claims a length of {n} bytes, far too long (the file is corrupt)")
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int, what: str) -> None:
        """Step over `count` strings without decoding them (the vocabulary can hold 250k of them)."""
        buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
        for i in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, f"the length of string {i} of {what}")
            (n,) = unpack(buf, pos)
            pos += 8
            if n > MAX_STRING_LENGTH or pos + n > size:
                self.pos = pos
                if n > MAX_STRING_LENGTH:
                    raise GGUFFormatError(f"string {i} of {what} claims an absurd length of {n} bytes")
                self.need(n, f"string {i} of {what}")
            pos += n
        self.pos = pos

    def scalar(self, vtype: ValueType, what: str) -> Scalar:
        if vtype == ValueType.STRING:
            return self.string(what)
        st = _SCALAR_STRUCTS[vtype]
        self.need(st.size, what)
        (v,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return bool(v) if vtype == ValueType.BOOL else v


def _value_type(raw: int, key: str, in_array: bool) -> ValueType:
    if raw == ValueType.ARRAY and in_array:
        raise GGUFFormatError(
            f"metadata key '{shown(key, 80)}' is an array of arrays, which llama.cpp does not support"
        )
    try:
        return ValueType(raw)
    except ValueError:
        problem = f"metadata key '{shown(key, 80)}' has an invalid value type {raw} (the file is corrupt)"
        raise GGUFFormatError(problem) from None


def _read_value(cur: _Cursor, key: str) -> MetaValue:
    label = shown(key, 80)  # the key is the file's own bytes: quoted bounded and escaped
    vtype = _value_type(cur.u32(f"the type of '{label}'"), key, in_array=False)
    if vtype != ValueType.ARRAY:
        return cur.scalar(vtype, f"the value of '{label}'")
    etype = _value_type(cur.u32(f"the element type of '{label}'"), key, in_array=True)
    count = cur.u64(f"the length of '{label}'")
    min_size = 8 if etype == ValueType.STRING else _SCALAR_STRUCTS[etype].size
    if etype == ValueType.STRING and count > MAX_STRING_ARRAY:
        raise GGUFFormatError(
            f"metadata array '{label}' claims {count} strings, far more than any model has "
            "(the file is corrupt)"
        )
    if count > MAX_ARRAY_ELEMENTS or count * min_size > cur.left():
        raise GGUFFormatError(
            f"metadata array '{label}' claims {count} elements, more than the {cur.left()} bytes left in "
            "the file can hold (the file is truncated or corrupt)"
        )
    start = cur.pos
    if etype == ValueType.STRING:
        if count <= EAGER_ARRAY_LIMIT:
            return tuple(cur.string(f"element {i} of '{label}'") for i in range(count))
        cur.skip_strings(count, f"'{label}'")
        return ArrayRef(etype, count, start)
    cur.pos += count * min_size
    if count <= EAGER_ARRAY_LIMIT:
        return _decode_numbers(cur.buf, etype, count, start)
    return ArrayRef(etype, count, start)


def _decode_numbers(buf: mmap.mmap | bytes, etype: ValueType, count: int, start: int) -> tuple[Scalar, ...]:
    # Copy the bytes out: a numpy view would pin the mmap open.
    raw = bytes(buf[start : start + count * _SCALAR_STRUCTS[etype].size])
    values = np.frombuffer(raw, dtype=_NUMPY_DTYPES[etype]).tolist()
    if etype == ValueType.BOOL:
        values = [bool(v) for v in values]
    return tuple(values)


def read_array(buf: mmap.mmap | bytes, ref: ArrayRef) -> tuple[Scalar, ...]:
    """Decode an array that parse() left in the file. `buf` must be the same, unchanged file."""
    if ref.elem_type != ValueType.STRING:
        return _decode_numbers(buf, ref.elem_type, ref.count, ref.offset)
    cur = _Cursor(buf, len(buf))
    cur.pos = ref.offset
    cur.section = "metadata"
    return tuple(cur.string("an array element") for _ in range(ref.count))


def _read_tensor_info(cur: _Cursor, index: int) -> tuple[str, int, tuple[int, ...], int]:
    name = cur.string(f"the name of tensor {index}")
    label = shown(name, 80)
    if len(name.encode("utf-8")) >= MAX_TENSOR_NAME:
        raise GGUFFormatError(f"tensor {index} has a name of {len(name)} characters; llama.cpp allows 63")
    n_dims = cur.u32(f"the dimension count of tensor '{label}'")
    if n_dims > MAX_DIMS:
        raise GGUFFormatError(f"tensor '{label}' claims {n_dims} dimensions; llama.cpp allows at most 4")
    shape = tuple(cur.u64(f"dimension {j} of tensor '{label}'") for j in range(n_dims))
    type_id = cur.u32(f"the type of tensor '{label}'")
    offset = cur.u64(f"the data offset of tensor '{label}'")
    return name, type_id, shape, offset


def _tensor_size(name: str, type_id: int, shape: tuple[int, ...]) -> tuple[str, int, int]:
    if type_id not in GGML_TYPES:
        raise GGUFFormatError(f"tensor '{shown(name, 80)}' has an unknown ggml type {type_id}")
    type_name, block, type_size = GGML_TYPES[type_id]
    n_elements = 1
    for dim in shape:
        if dim >= 2**63:
            raise GGUFFormatError(
                f"tensor '{shown(name, 80)}' has a negative dimension (the file is corrupt)"
            )
        n_elements *= dim
    if n_elements >= 2**63:
        raise GGUFFormatError(
            f"tensor '{shown(name, 80)}' has the absurd shape {shape} (the file is corrupt)"
        )
    if shape and shape[0] % block != 0:
        raise GGUFFormatError(
            f"tensor '{shown(name, 80)}' of type {type_name} has rows of {shape[0]} elements, "
            f"not a multiple of its block size {block}"
        )
    return type_name, n_elements, n_elements // block * type_size


def parse(buf: mmap.mmap | bytes, size: int) -> ParsedGGUF:
    """Parse header, metadata and tensor infos of the GGUF in `buf` (its first `size` bytes)."""
    cur = _Cursor(buf, size)
    if size < 4 or bytes(buf[:4]) != GGUF_MAGIC:
        raise GGUFFormatError(f"not a GGUF file: it starts with {describe_bytes(bytes(buf[:64]))}")
    cur.pos = 4
    version = cur.u32("the GGUF version")
    if version & 0xFFFF == 0 and version != 0:
        raise GGUFFormatError(
            f"GGUF version field reads {version:#x}: the file was written for a big-endian machine"
        )
    if version not in SUPPORTED_VERSIONS:
        raise GGUFFormatError(
            f"unsupported GGUF version {version}: llama.cpp reads versions 2 and 3"
            + (" (version 1 files need reconverting)" if version == 1 else "")
        )
    n_tensors = cur.u64("the tensor count")
    n_kv = cur.u64("the metadata count")
    # Counts are checked against the bytes left before anything is allocated for them.
    if n_kv * MIN_KV_BYTES > cur.left():
        raise GGUFFormatError(
            f"the header claims {n_kv} metadata entries, but the {cur.left()} bytes after it can hold at "
            f"most {cur.left() // MIN_KV_BYTES} (the file is truncated or corrupt)"
        )
    if n_tensors * MIN_TENSOR_INFO_BYTES > cur.left():
        raise GGUFFormatError(
            f"the header claims {n_tensors} tensors, but the {cur.left()} bytes after it can hold at most "
            f"{cur.left() // MIN_TENSOR_INFO_BYTES} tensor descriptions (the file is truncated or corrupt)"
        )

    cur.section = "metadata"
    metadata: dict[str, MetaValue] = {}
    for i in range(n_kv):
        key = cur.string(f"the name of metadata entry {i}", MAX_KEY_LENGTH)
        if not key:
            raise GGUFFormatError(f"metadata entry {i} has an empty key (the file is corrupt)")
        if key in metadata:
            raise GGUFFormatError(f"metadata key '{shown(key, 80)}' appears twice (the file is corrupt)")
        metadata[key] = _read_value(cur, key)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (
        not isinstance(alignment, int)
        or isinstance(alignment, bool)
        or alignment < MIN_ALIGNMENT
        or alignment & (alignment - 1)
    ):
        raise GGUFFormatError(
            f"general.alignment is {shown(alignment, 40)}, not a power of two of at least {MIN_ALIGNMENT}"
        )

    cur.section = "tensor descriptions"
    raw_infos = []
    seen: set[str] = set()
    for i in range(n_tensors):
        raw_infos.append(_read_tensor_info(cur, i))
        name = raw_infos[-1][0]
        if name in seen:  # checked while reading: a zero-filled region would otherwise be read to its end
            raise GGUFFormatError(f"tensor '{shown(name, 80)}' appears twice (the file is corrupt)")
        seen.add(name)
    data_offset = cur.pos + (-cur.pos) % alignment if n_tensors else cur.pos

    tensors: list[TensorInfo] = []
    expected = 0  # llama.cpp requires tensors to be packed in order, each padded to the alignment
    data_end = data_offset
    for name, type_id, shape, offset in raw_infos:
        type_name, n_elements, n_bytes = _tensor_size(name, type_id, shape)
        if offset != expected:
            raise GGUFFormatError(
                f"tensor '{shown(name, 80)}' has data offset {offset}, expected {expected} "
                "(the file is corrupt)"
            )
        expected += n_bytes + (-n_bytes) % alignment
        data_end = data_offset + offset + n_bytes
        tensors.append(TensorInfo(name, type_id, type_name, shape, n_elements, n_bytes, data_offset + offset))
    if data_end > size:
        missing = data_end - size
        raise GGUFFormatError(
            f"the file is truncated: its tensor data needs {data_end} bytes but the file has {size}, "
            f"{missing} byte{'s' if missing > 1 else ''} missing (an incomplete download or copy?)"
        )
    return ParsedGGUF(version, alignment, data_offset, data_end, metadata, tuple(tensors))
