import numpy as np
import orjson

from ramparts.events import KIND_FIELDS, EventBatch, check_event, to_json


def _req(i, **kw):
    e = {"kind": "request", "ts": 1_700_000_000_000_000_000 + i, "source": "test", **{f: None for f in KIND_FIELDS["request"]}}
    e.update(kw)
    return e


def test_columns_fill_missing_values():
    b = EventBatch([_req(0, latency_ms=5.0, status=200), _req(1, status=None), _req(2, latency_ms="x", status=404)])
    assert np.array_equal(b.column("latency_ms"), [5.0, np.nan, np.nan], equal_nan=True)
    assert b.column("status", np.int64).tolist() == [200, 0, 404]
    assert b.column("status", np.int64, missing=-1).tolist() == [200, -1, 404]
    assert b.column("source", object).tolist() == ["test"] * 3


def test_select_group_and_sort():
    b = EventBatch([_req(3, principal="a"), _req(1, principal="b"), _req(2, principal="a")])
    assert [e["ts"] % 10 for e in b.sorted_by_time()] == [1, 2, 3]
    groups = b.group_by("principal")
    assert groups["a"].tolist() == [0, 2] and groups["b"].tolist() == [1]
    only_a = b.select(b.column("principal", object) == "a")
    assert len(only_a) == 2 and all(e["principal"] == "a" for e in only_a)
    assert len(b.of_kind("gpu")) == 0 and b.kinds() == {"request": 3}


def test_json_writes_rfc3339_times_and_keeps_the_event_intact():
    e = _req(0)
    e["ts"] = 1554740215931000000
    assert orjson.loads(to_json(e))["ts"] == "2019-04-08T16:16:55.931Z"
    assert e["ts"] == 1554740215931000000


def test_check_event_finds_type_errors_and_missing_fields():
    assert check_event(_req(0, status=200, latency_ms=1.5, tokens_in=3)) == []
    problems = check_event(_req(0, status="200", latency_ms=float("nan"), tokens_in=True))
    assert len(problems) == 3
    e = _req(0)
    del e["model"]
    assert check_event(e) == ["missing field 'model'"]
    assert check_event({"kind": "nope"}) == ["unknown kind 'nope'"]


def test_indices_where_is_the_events_whose_field_equals_a_value_in_batch_order():
    events = [{"kind": "gpu", "source": "dcgm"}, {"kind": "request"}, {"kind": ["odd"]}, {},
              {"kind": "gpu", "source": {"not": "hashable"}}, {"kind": "runtime"}, {"kind": "request"}]
    b = EventBatch(events)
    for field in ("kind", "source"):
        for values in (("gpu",), ("request", "gpu"), ("runtime", "missing", "request"), (None,), ("nothing",)):
            want = [i for i, e in enumerate(events) if e.get(field) in values]
            assert b.indices_where(field, *values) == want, (field, values)
            assert b.where(field, *values) == [events[i] for i in want]
    assert b.kinds() == {"gpu": 2, "request": 2, None: 1, "runtime": 1}  # the unhashable kind is not counted
    b.append({"kind": "gpu"})  # the index follows the batch
    assert b.indices_where("kind", "gpu") == [0, 4, 7]
    b.extend([{"kind": "runtime"}])
    assert b.indices_where("kind", "runtime") == [5, 8]


def test_shared_builds_once_per_batch_and_again_after_a_change():
    b = EventBatch([{"kind": "request"}])
    calls = []

    def build(batch):
        calls.append(len(batch))
        return len(batch)

    assert b.shared("n", build) == 1 and b.shared("n", build) == 1
    b.append({"kind": "request"})
    assert b.shared("n", build) == 2
    assert calls == [1, 2]
