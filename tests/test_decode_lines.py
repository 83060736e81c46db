"""``decode.iter_lines``: the lines and chunks of any bytes, read in blocks, against a plain split."""

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.streams import decode
from ramparts.streams.parsers.base import LineBlock


def reference(data: bytes, chunk_lines: int) -> list[tuple[int, list[bytes]]]:
    """What ``iter_lines`` yields, from the whole input: split at ``\\n``, no empty piece after a final
    ``\\n``, one ``\\r`` removed from each line's end, ``chunk_lines`` lines a chunk."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return [(1 + at, lines[at:at + chunk_lines]) for at in range(0, len(lines), chunk_lines)]


# Bytes where line ends, carriage returns (alone, doubled, inside a line) and blank lines are common.
pieces = st.sampled_from([b"\n", b"\r", b"\r\n", b"\r\r\n", b"x", b"{\"a\":1}", b" ", b"\xff", b"ab\rc"])
inputs = st.lists(pieces, max_size=60).map(b"".join)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(data=inputs, read_bytes=st.integers(1, 16), chunk_lines=st.integers(1, 5))
def test_the_lines_and_chunks_are_those_of_a_plain_split(data, read_bytes, chunk_lines):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode, "READ_BYTES", read_bytes)  # many blocks: lines cut across them, \r first seen late
        got = list(decode.iter_lines(io.BytesIO(data), chunk_lines))
    assert got == reference(data, chunk_lines)


def test_a_carriage_return_first_read_in_a_later_block_is_still_removed():
    data = b"a\nb\nc\r\nd\r\n"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode, "READ_BYTES", 4)  # the first block, b"a\nb\n", has no \r
        got = list(decode.iter_lines(io.BytesIO(data), 16))
    assert got == [(1, [b"a", b"b", b"c", b"d"])]


def _block_lines(chunks) -> list[tuple[int, list[bytes]]]:
    """``iter_blocks``' chunks as lists: every line cut once from the whole, and each again alone by index."""
    out = []
    for first, block in chunks:
        assert isinstance(block, LineBlock)
        whole = list(block)
        assert [block[i] for i in range(len(block))] == whole == block[:] and len(whole) == len(block)
        out.append((first, whole))
    return out


@settings(derandomize=True, max_examples=400, deadline=None)
@given(data=inputs, read_bytes=st.integers(1, 16), chunk_lines=st.integers(1, 5))
def test_the_blocks_hold_the_lines_and_chunks_of_a_plain_split(data, read_bytes, chunk_lines):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode, "READ_BYTES", read_bytes)  # lines cut across blocks, blocks with no newline, \r late
        got = _block_lines(decode.iter_blocks(io.BytesIO(data), chunk_lines))
    assert got == reference(data, chunk_lines)


def test_a_block_cuts_its_lines_only_when_asked_and_one_line_alone():
    data = b"one\ntwo\nthree\nfour"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode, "READ_BYTES", 5)
        [(first, block)] = list(decode.iter_blocks(io.BytesIO(data), 16))
    assert first == 1 and len(block) == 4 and block._lines is None
    assert (block[2], block[-1]) == (b"three", b"four") and block._lines is None
    with pytest.raises(IndexError):
        block[4]
    assert list(block) == [b"one", b"two", b"three", b"four"]
