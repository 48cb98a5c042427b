"""TextStream: token bytes in, safe text deltas out (whole UTF-8 characters, stop strings held back)."""

from __future__ import annotations

import itertools

import pytest

from engine.inference.textstream import SETTLE_AT, TextStream


def feed_all(stream: TextStream, chunks: list[bytes]) -> list[str]:
    return [stream.feed(c) for c in chunks]


def split_every(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for n in itertools.cycle(sizes):
        if i >= len(data):
            return out
        out.append(data[i : i + n])
        i += n
    return out


@pytest.mark.parametrize(
    "text",
    ["😀", "日本語", "a😀b", "héllo wörld", "👩‍👩‍👧 family", "𝄞 clef", "mixed 中文 and emoji 🎉🎉"],
)
@pytest.mark.parametrize("sizes", [[1], [2], [3], [1, 2], [2, 3, 1], [5]])
def test_multibyte_characters_split_across_tokens_are_never_broken(text: str, sizes: list[int]) -> None:
    stream = TextStream()
    deltas = feed_all(stream, split_every(text.encode("utf-8"), sizes))
    deltas.append(stream.finish())
    assert "".join(deltas) == text
    for d in deltas:
        assert "\ufffd" not in d
        d.encode("utf-8")  # valid: no lone surrogates


def test_a_four_byte_character_appears_only_with_its_last_byte() -> None:
    stream = TextStream()
    data = "😀".encode()
    assert [stream.feed(data[i : i + 1]) for i in range(4)] == ["", "", "", "😀"]


def test_invalid_bytes_become_replacement_characters_not_exceptions() -> None:
    stream = TextStream()
    out = stream.feed(b"ok\xff") + stream.finish()
    assert out == "ok\ufffd"


def test_truncated_character_at_the_end_is_flushed_as_replacement() -> None:
    stream = TextStream()
    assert stream.feed("é".encode()[:1]) == ""
    assert stream.finish() == "\ufffd"


def test_stop_string_across_token_boundaries_is_held_back_then_cut() -> None:
    stream = TextStream(stop=("END",))
    assert stream.feed(b"abc E") == "abc "  # "E" might start END
    assert stream.feed(b"N") == ""
    assert not stream.stopped
    assert stream.feed(b"D and more") == ""
    assert stream.stopped
    assert stream.text == "abc "
    assert stream.feed(b"ignored") == ""
    assert stream.finish() == ""


def test_held_back_prefix_is_released_when_it_stops_matching() -> None:
    stream = TextStream(stop=("END",))
    assert stream.feed(b"xE") == "x"
    assert stream.feed(b"Nd") == "ENd"
    assert not stream.stopped


def test_stop_string_inside_one_token_cuts_the_rest_of_it() -> None:
    stream = TextStream(stop=("\n\n",))
    assert stream.feed(b"para one\n\npara two") == "para one"
    assert stream.stopped and stream.text == "para one"


def test_earliest_of_several_stop_strings_wins() -> None:
    stream = TextStream(stop=("world", "lo w"))
    deltas = feed_all(stream, [b"hel", b"lo", b" wor", b"ld"])
    assert "".join(deltas) == "hel"
    assert stream.text == "hel"


def test_finish_flushes_an_incomplete_stop_prefix_as_text() -> None:
    stream = TextStream(stop=("<|end|>",))
    assert stream.feed(b"answer <|en") == "answer "
    assert stream.finish() == "<|en"
    assert stream.text == "answer <|en"


def test_stop_string_made_of_multibyte_characters_split_mid_character() -> None:
    stream = TextStream(stop=("停止",))
    data = "好的停止后面".encode()
    deltas = feed_all(stream, split_every(data, [1]))
    deltas.append(stream.finish())
    assert "".join(deltas) == "好的"
    assert all("\ufffd" not in d for d in deltas)


def test_empty_stop_strings_are_ignored() -> None:
    stream = TextStream(stop=("",))
    assert stream.feed(b"text") == "text"
    assert not stream.stopped


@pytest.mark.parametrize("cut", range(1, 12))
def test_deltas_concatenate_to_the_final_text_for_every_split(cut: int) -> None:
    data = "say STOP now 😀".encode()
    stream = TextStream(stop=("STOP",))
    deltas = [stream.feed(data[:cut]), stream.feed(data[cut:]), stream.finish()]
    assert "".join(deltas) == stream.text == "say "


@pytest.mark.parametrize("offset", range(-8, 9))
def test_a_long_reply_finds_a_stop_string_across_the_settled_part(offset: int) -> None:
    """Past SETTLE_AT characters the stream keeps only a tail to search: a stop string that starts just
    before, at or after that point is still found, and the text and deltas are exactly the reply's."""
    stop = "<|end|>"
    reply = "x" * (SETTLE_AT + offset) + "é" * 3 + "y" * (SETTLE_AT * 2 + offset)
    stream = TextStream(stop=(stop, "never"))
    data = (reply + stop + "after").encode("utf-8")
    deltas = feed_all(stream, split_every(data, [3, 1, 4]))
    deltas.append(stream.finish())
    assert stream.stopped
    assert stream.text == reply and "".join(deltas) == reply


def test_a_long_reply_costs_the_same_per_token_at_its_end() -> None:
    """The working text stays bounded, so appending never copies the whole reply."""
    stream = TextStream(stop=("<|end|>",))
    for _ in range(20_000):
        stream.feed(b"word ")
        assert len(stream._buf) <= SETTLE_AT + len("<|end|>") + len("word ")
    assert stream.text == "word " * 20_000
