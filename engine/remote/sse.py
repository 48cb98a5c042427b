"""Server-sent events (the `text/event-stream` format OpenAI-compatible servers stream in), read from raw
bytes with a bound on line length: a server is untrusted input, and an endless line must not eat memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

MAX_LINE_BYTES = 4 * 2**20


class StreamFormatError(ValueError):
    """The stream is not a well-formed event stream (or breaks a bound)."""


def iter_lines(chunks: Iterable[bytes], max_line: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Lines of a byte stream (CRLF, LF or CR ends), decoded as UTF-8."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while True:
            cut = _line_end(buffer)
            if cut is None:
                break
            end, skip = cut
            yield buffer[:end].decode("utf-8", errors="replace")
            buffer = buffer[end + skip :]
        if len(buffer) > max_line:
            raise StreamFormatError(f"a line of the event stream is longer than {max_line} bytes")
    if buffer:
        yield buffer.rstrip(b"\r").decode("utf-8", errors="replace")


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
    if cr == -1 and lf == -1:
        return None
    if cr != -1 and (lf == -1 or cr < lf):
        if cr == len(buffer) - 1:
            return None  # a CR at the end may be the first half of CRLF: wait for the next byte
        return cr, 2 if buffer[cr + 1 : cr + 2] == b"\n" else 1
    return lf, 1


def iter_data(lines: Iterable[str]) -> Iterator[str]:
    """The `data` of each event (multi-line data joined with newlines); comments and other fields skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
