"""Keys of an Envoy json_format that no role reads (``route_name``, ``upstream_cluster`` ...) hold any JSON value.

The fast structs read such a key as raw JSON and drop it. Before the tenth session its type was
``msgspec.Raw | None``, which msgspec reads as null alone: a line with any other value there failed the fast
struct and took the general path (orjson and a dict), every line of such a log. The events, their types, the
dead letters and the counts are those of ``envoy_json_reference`` (main e1d5517's module), and now the fast
decoder takes the lines.
"""

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.bench import corpus
from ramparts.redact import Hasher
from ramparts.streams.parsers.envoy_json import EnvoyJsonParser

from . import envoy_json_reference as reference
from .test_envoy_json_literals import _outcome

CORPUS = corpus.lines("envoy_json", 100)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                     st.sampled_from(["-", "", "}\n{", "default"]))
_json = st.recursive(_scalars,
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                     max_leaves=6)


def _with(line: bytes, extra: dict) -> bytes:
    return json.dumps({**orjson.loads(line), **extra}, separators=(",", ":")).encode()  # (integers past 64 bits)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(values=st.lists(st.tuples(st.integers(0, 99), _json, _json), min_size=1, max_size=40),
       chunk=st.sampled_from([1, 3, 1000]), stamp=st.booleans())
def test_lines_with_keys_no_role_reads_give_the_events_of_the_code_before(values, chunk, stamp):
    lines = [_with(CORPUS[i], {"route_name": a, "upstream_cluster": b}) for i, a, b in values]
    chunks = [lines[at:at + chunk] for at in range(0, len(lines), chunk)]
    new = _outcome(EnvoyJsonParser(None, hasher=Hasher(b"t")), chunks, stamp)
    old = _outcome(reference.EnvoyJsonParser(None, hasher=Hasher(b"t")), chunks, stamp)
    assert new == old


def test_the_fast_decoder_takes_lines_whose_unread_keys_hold_text_and_objects():
    lines = [_with(line, {"route_name": "httproute/default/backend/rule/0", "upstream_cluster": {"a": [1, None]}})
             for line in CORPUS]
    parser = EnvoyJsonParser(None, hasher=Hasher(b"t"))
    general = []
    real = parser._general
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parser, "_general", lambda raw: general.append(raw) or real(raw))
        batch = parser.parse_batch(lines, "f.log", 1, [])
    assert len(batch) == len(CORPUS) and len(general) == 1  # the first line, which builds the fast decoder
    old = reference.EnvoyJsonParser(None, hasher=Hasher(b"t")).parse_batch(lines, "f.log", 1, [])
    assert [list(e.items()) for e in batch.events] == [list(e.items()) for e in old.events]
