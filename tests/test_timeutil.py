import pytest

from ramparts.timeutil import format_rfc3339, from_epoch, parse_clf, parse_iso, zone

NS = 1_000_000_000


@pytest.mark.parametrize("text, expected", [
    ("2019-04-08T16:16:55.931Z", 1554740215931000000),
    ("2019-04-08T16:16:55Z", 1554740215 * NS),
    ("2019-04-08T16:16:55.123456789Z", 1554740215123456789),
    ("2019-04-08T18:16:55.931+02:00", 1554740215931000000),
    ("2019-04-08T12:16:55.931-0400", 1554740215931000000),
    ("2019-04-08 16:16:55.931", 1554740215931000000),  # no zone: UTC unless told otherwise
])
def test_parse_iso(text, expected):
    assert parse_iso(text) == expected


def test_parse_iso_without_zone_uses_the_default_zone():
    # LiteLLM writes startTime without an offset; the operator says which zone it is.
    assert parse_iso("2024-07-01 12:00:00", zone("Europe/Berlin")) == parse_iso("2024-07-01T10:00:00Z")
    assert parse_iso("2024-01-01 12:00:00", zone("Europe/Berlin")) == parse_iso("2024-01-01T11:00:00Z")


@pytest.mark.parametrize("bad", [
    "2019-02-30T16:16:55Z", "2019-13-01T00:00:00Z", "2019-04-08T25:00:00Z", "yesterday", "",
    "2019-04-08T16:16:55.931", "1969-12-31T23:59:59Z", "2300-01-01T00:00:00Z",
])
def test_parse_iso_rejects_impossible_dates(bad):
    if bad == "2019-04-08T16:16:55.931":  # valid (zone-less), kept in the list to pin that
        assert parse_iso(bad) == 1554740215931000000
        return
    with pytest.raises(ValueError):
        parse_iso(bad)


def test_parse_clf():
    assert parse_clf("08/Apr/2019:16:16:55 +0000") == 1554740215 * NS
    assert parse_clf("08/Apr/2019:18:16:55 +0200") == 1554740215 * NS
    for bad in ("31/Feb/2019:16:16:55 +0000", "08/Foo/2019:16:16:55 +0000", "garbage"):
        with pytest.raises(ValueError):
            parse_clf(bad)


def test_epoch_units_and_big_nanoseconds():
    # Docker's timeNano exceeds 2**53: it must stay exact (ints, never floats).
    assert from_epoch(1712345678123456789, "ns") == 1712345678123456789
    assert from_epoch(1712345678123, "ms") == 1712345678123000000
    assert from_epoch(1712345678.5, "s") == 1712345678500000000
    for bad in (True, "1", float("nan"), -5):
        with pytest.raises(ValueError):
            from_epoch(bad, "s")


@pytest.mark.parametrize("ns, text", [
    (1554740215 * NS, "2019-04-08T16:16:55Z"),
    (1554740215931000000, "2019-04-08T16:16:55.931Z"),
    (1554740215931500000, "2019-04-08T16:16:55.931500Z"),
    (1554740215931500001, "2019-04-08T16:16:55.931500001Z"),
])
def test_format_rfc3339_round_trips(ns, text):
    assert format_rfc3339(ns) == text
    assert parse_iso(text) == ns
