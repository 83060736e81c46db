"""The worker's and ship's producers compress lz4 at a fast level (streams/topics.py ``fast_lz4``)."""

from __future__ import annotations

import orjson

from ramparts.streams.topics import LZ4_LEVEL, fast_lz4


def test_record_batches_compress_at_the_fast_level_and_read_back():
    from aiokafka import codec
    from aiokafka.record import default_records
    from aiokafka.record.memory_records import MemoryRecords

    fast_lz4()
    fast_lz4()  # idempotent: wraps aiokafka's own function once
    payload = orjson.dumps([{"kind": "request", "ts": i, "path": "/v1/chat/completions"} for i in range(500)])
    encoded = default_records.lz4_encode(payload)
    assert encoded == codec.lz4_encode._ramparts_base(payload, LZ4_LEVEL)
    assert codec.lz4_decode(encoded) == payload

    # A whole record batch as the producer builds it (lz4 = codec 3) reads back unchanged.
    builder = default_records.DefaultRecordBatchBuilder(2, 3, 0, -1, -1, -1, 4 << 20)  # magic, codec, txn, pid, epoch, seq, size
    builder.append(0, 0, None, payload, [])
    records = MemoryRecords(bytes(builder.build()))
    batch = records.next_batch()
    assert [r.value for r in batch] == [payload]
