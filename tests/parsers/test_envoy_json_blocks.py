"""The Envoy JSON parser reading a chunk as a ``LineBlock`` (regions of the blocks read, no bytes object per
line) against the same chunk as a list of lines.

``parse_batch`` decodes a slice of a block's lines with one ``decode_lines`` call only when every newline
inside it sits between ``}`` and ``{`` and the call gives one value per line; anything else (a blank line, a
``\\r``, a line cut in two, two objects on one line, a value over two lines, a line the decoder does not
take) sends the slice line by line. None of it may change an event, a type, a dead letter, a line number or
a count: every test here reads the same bytes through ``decode.iter_blocks`` and through
``decode.iter_lines`` and compares, and with ``envoy_json_reference`` (main e1d5517's module) over the lists.
"""

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.bench import corpus
from ramparts.redact import Hasher
from ramparts.streams import decode
from ramparts.streams.parsers import envoy_json
from ramparts.streams.parsers.base import LineBlock
from ramparts.streams.parsers.envoy_json import EnvoyJsonParser

from . import envoy_json_reference as reference
from .test_envoy_json_literals import _line, _line_shapes, _outcome

CORPUS = corpus.lines("envoy_json", 200)


def _chunks(data: bytes, chunk_lines: int, read_bytes: int, blocks: bool) -> list:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode, "READ_BYTES", read_bytes)
        it = decode.iter_blocks if blocks else decode.iter_lines
        return [lines for _, lines in it(io.BytesIO(data), chunk_lines)]


def _same(data: bytes, chunk_lines: int, read_bytes: int, slice_lines: int, stamp: bool = True,
          literal_max: int = 1024) -> tuple:
    as_blocks = _chunks(data, chunk_lines, read_bytes, True)
    as_lists = _chunks(data, chunk_lines, read_bytes, False)
    assert all(type(c) is LineBlock for c in as_blocks) and [list(c) for c in as_blocks] == as_lists
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(envoy_json, "_SLICE", slice_lines)  # slices within a part and across parts
        # A low limit makes the fields of many values (the request id) plain text soon: the later slices' lines
        # are then taken by the literal decoder, and read by blocks.
        mp.setattr(envoy_json, "_LITERAL_MAX", literal_max)
        got = _outcome(EnvoyJsonParser(None, hasher=Hasher(b"t")), as_blocks, stamp)
        lists = _outcome(EnvoyJsonParser(None, hasher=Hasher(b"t")), as_lists, stamp)
    old = _outcome(reference.EnvoyJsonParser(None, hasher=Hasher(b"t")), as_lists, stamp)
    assert got == lists == old
    return got


def _glue(a: bytes, b: bytes, how: str) -> bytes:
    return {"glued": a + b, "comma": a + b"," + b, "space": a + b" " + b, "tab": a + b"\t" + b}[how]


# Lines as the bytes between newlines: the literals tests' shapes, and shapes a block decode could
# mistake (one object over two lines, two on one line, space or \r around a newline, "}\n{" as an escape).
_block_shapes = st.one_of(
    _line_shapes.map(lambda s: [_line(*s)]),
    st.sampled_from(CORPUS).map(lambda line: [line]),
    st.sampled_from(CORPUS).map(lambda line: [line[:len(line) // 2], line[len(line) // 2:]]),  # cut in two
    st.sampled_from(CORPUS).map(lambda line: [line[:line.find(b',"') + 1], line[line.find(b',"') + 1:]]),
    st.tuples(st.sampled_from(CORPUS), st.sampled_from(CORPUS), st.sampled_from(["glued", "comma", "space", "tab"]))
      .map(lambda t: [_glue(*t)]),
    st.sampled_from(CORPUS).map(lambda line: [line[:-1] + b',"x":[{"a":1}', b'{"b":2}]}']),  # a value over two
    st.sampled_from(CORPUS).map(lambda line: [line.replace(b'"-"', b'"}\\n{"', 1)]),
    st.sampled_from(CORPUS).map(lambda line: [line + b" "]),
    st.sampled_from(CORPUS).map(lambda line: [b" " + line]),
    st.sampled_from(CORPUS).map(lambda line: [line + b"\r"]),
    st.sampled_from(CORPUS).map(lambda line: [line.replace(b'"-"', b'"\xff"', 1)]),
    st.sampled_from([[b""], [b"   "], [b"{}"], [b"[]"], [b"42"], [b"{} {}"], [b'{"a":1}']]),
)


@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(shapes=st.lists(st.one_of(st.sampled_from(CORPUS).map(lambda line: [line]), _block_shapes), min_size=1,
                       max_size=60),
       end=st.sampled_from([b"", b"\n", b"\n\n"]), chunk_lines=st.sampled_from([1, 3, 16, 16384]),
       read_bytes=st.sampled_from([300, 1000, 4096, 1 << 20]), slice_lines=st.sampled_from([1, 2, 7, 1024]),
       stamp=st.booleans(), lead=st.sampled_from([0, 5, 30, 200]), literal_max=st.sampled_from([2, 1024]))
def test_blocks_and_lists_give_the_same_events_and_dead_letters(shapes, end, chunk_lines, read_bytes, slice_lines,
                                                                 stamp, lead, literal_max):
    # `lead` lines of the corpus first: the decoders of its key set are built, so later slices go by blocks.
    data = b"\n".join(CORPUS[:lead] + [line for shape in shapes for line in shape]) + end
    _same(data, chunk_lines, read_bytes, slice_lines, stamp, literal_max)


def test_the_corpus_is_read_by_blocks_and_agrees():
    data = b"\n".join(corpus.lines("envoy_json", 3000)) + b"\n"
    calls = {"whole": 0, "not": 0}
    real = envoy_json._one_per_line

    def counted(*args):
        got = real(*args)
        calls["whole" if got is not None else "not"] += 1
        return got

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(envoy_json, "_one_per_line", counted)
        events, dead, counts, _ = _same(data, 1000, 64 * 1024, 256)
    assert (len(events), dead, counts[0]) == (3000, [], 3000)
    assert calls["whole"] >= 8  # most slices were read at once (the first ones learn the key set and its values)


# A line spread over two: cut between two keys (a "," before the newline, a '"' after), or with the value of a key
# no role reads (kept as raw JSON) spread over them: a "}" before the newline but a "," after, or a "[" before
# and a "{" after. Each decodes as one object where the newline is only whitespace.
ROUTED = [line[:-1] + b',"route_name":[{"x":1}]}' for line in CORPUS]
_SPREAD = {
    "between two keys": (CORPUS, lambda line: [line[:line.find(b',"') + 1], line[line.find(b',"') + 1:]]),
    "after a }": (ROUTED, lambda line: [line[:-1] + b',"route_name":{"x":{"y":1}', b',"z":2}}']),
    "before a {": (ROUTED, lambda line: [line[:-1] + b',"route_name":[', b'{"x":1}]}']),
}


@pytest.mark.parametrize("spread", sorted(_SPREAD))
def test_a_value_over_two_lines_made_up_by_two_on_one_line_goes_line_by_line(spread):
    """As many values as lines, but not one per line: the newline test sends the slice line by line."""
    lead, cut = _SPREAD[spread]
    lines = lead[:20] + [lead[1], *cut(CORPUS[0]), lead[2] + b" " + lead[2], lead[1]]
    data = b"\n".join(lines) + b"\n"
    events, dead, counts, _ = _same(data, 16384, 1 << 20, 20, literal_max=2)  # the first slice builds the decoders
    assert [d[2] for d in dead] == [22, 23, 24] and len(events) == 22


def test_a_block_with_a_carriage_return_is_read_as_iter_lines_reads_it():
    data = b"\r\n".join(CORPUS[:50]) + b"\r\n"
    events, dead, counts, _ = _same(data, 16, 1000, 8)
    assert (len(events), dead) == (50, [])


def test_a_dead_letter_of_a_block_slice_keeps_its_line_and_raw_bytes():
    bad = CORPUS[5].replace(b'"start_time":"', b'"start_time":"x', 1)
    data = b"\n".join(CORPUS[:5] + [bad] + CORPUS[6:40]) + b"\n"
    events, dead, counts, _ = _same(data, 16384, 1 << 20, 1024)
    assert [(d[2], d[4]) for d in dead] == [(6, bad)] and len(events) == 39


def _worker(messages: list[bytes], blocks: bool, parts: bool) -> tuple:
    """The worker's raw stage (``RawDecoder``) over packed Envoy messages, the parser reading blocks or lists."""
    from ramparts.config import load_config
    from ramparts.streams.app import EventParts, RawDecoder
    from ramparts.streams.topics import HEADER_FORMAT

    decoder = RawDecoder(load_config(None, env={"RAMPARTS_HASH_KEY": "k" * 32}), Hasher(b"t"))
    events = EventParts() if parts else []
    dead: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(EnvoyJsonParser, "reads_blocks", blocks)
        for offset, value in enumerate(messages):
            decoder.decode("raw", 0, offset, value, {HEADER_FORMAT: b"envoy_json"}, events, dead)
    got = events.batch().events if parts else events
    return [_typed_items(e) for e in got], [(d.source, d.file, d.line, d.reason, d.raw, d.item) for d in dead]


def _typed_items(event: dict) -> list:
    return [(k, type(v).__name__, v) for k, v in event.items()]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(shapes=st.lists(st.lists(st.one_of(st.sampled_from(CORPUS).map(lambda line: [line]), _block_shapes),
                                min_size=0, max_size=30), min_size=1, max_size=4),
       end=st.sampled_from([b"", b"\n", b"\r\n"]), parts=st.booleans())
def test_the_worker_reads_a_packed_message_as_a_block_with_the_same_outcome(shapes, end, parts):
    messages = [b"\n".join(CORPUS[:30] + [line for shape in message for line in shape]) + end for message in shapes]
    assert _worker(messages, True, parts) == _worker(messages, False, parts)
