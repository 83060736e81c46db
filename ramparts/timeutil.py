"""Timestamps: every format's spelling in, nanoseconds since the epoch (UTC) inside, RFC 3339 out.

Log lines arrive many per second with the same second in their timestamp, so the slow
part (calendar arithmetic) is cached per distinct second prefix; only the fraction is
parsed per line. All functions raise ``ValueError`` on impossible dates; callers turn that
into a dead-letter record.
"""

from __future__ import annotations

import calendar
from decimal import Decimal
import re
from datetime import datetime, timezone, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

NS = 1_000_000_000
# Timestamps outside this range are treated as impossible: they are either garbage or would
# overflow int64 nanoseconds (year 2262).
MIN_NS = 0  # 1970-01-01
MAX_NS = 7_258_118_400 * NS  # 2200-01-01

_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9})\d*)?\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


def check_range(ns: int) -> int:
    if not MIN_NS <= ns < MAX_NS:
        raise ValueError(f"timestamp out of range: {ns} ns since epoch")
    return ns


@lru_cache(maxsize=65536)
def _second_ns(y: int, mo: int, d: int, h: int, mi: int, s: int) -> int:
    # datetime validates the calendar (month 13, February 30 raise ValueError); leap
    # seconds (60) are clamped by datetime's rules, i.e. rejected, which we accept.
    return calendar.timegm(datetime(y, mo, d, h, mi, s).timetuple()) * NS


def _offset_ns(tz: str | None, default_tz: tzinfo | None, y, mo, d, h, mi, s) -> int:
    if tz is None or tz in ("Z", "z"):
        if tz is None and default_tz is not None:
            local = datetime(y, mo, d, h, mi, s, tzinfo=default_tz)
            off = local.utcoffset() or timedelta(0)
            return int(off.total_seconds()) * NS
        return 0
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * NS


def parse_iso(text: str, default_tz: tzinfo | None = None) -> int:
    """RFC 3339 / ISO 8601 text to epoch nanoseconds.

    ``default_tz`` applies when the text carries no offset (LiteLLM's ``startTime``);
    without it such text is read as UTC.

    >>> parse_iso("2019-04-08T16:16:55.931Z")
    1554740215931000000
    """
    # Fast path for the common UTC spelling, cached per second: 'YYYY-MM-DDTHH:MM:SS[.f]Z'
    # (Envoy's %START_TIME%, Falco, Kubernetes). Logs repeat each second many times.
    n = len(text)
    if n >= 20 and text[-1] == "Z" and text[10] == "T":
        head = text[:19]
        base = _UTC_SECONDS.get(head)
        if base is None:
            base = _utc_head_ns(head)
        if n == 20:
            return base
        frac = text[20:-1]
        if text[19] == "." and len(frac) <= 9 and frac.isdigit():
            return base + int(frac) * _FRAC_SCALE[len(frac)]
    m = _ISO_RE.match(text.strip())
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:60]!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    y, mo, d, h, mi, s = int(y), int(mo), int(d), int(h), int(mi), int(s)
    base = _second_ns(y, mo, d, h, mi, s)
    if frac:
        base += int(frac.ljust(9, "0"))
    return check_range(base - _offset_ns(tz, default_tz, y, mo, d, h, mi, s))


_FRAC_SCALE = [10 ** (9 - i) for i in range(10)]


_UTC_SECONDS: dict[str, int] = {}  # 'YYYY-MM-DDTHH:MM:SS' -> ns; cleared when full, so bounded
_UTC_SECONDS_MAX = 65536


def _utc_head_ns(head: str) -> int:
    m = _ISO_RE.match(head + "Z")
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {head[:60]!r}")
    ns = check_range(_second_ns(*(int(g) for g in m.groups()[:6])))
    if len(_UTC_SECONDS) >= _UTC_SECONDS_MAX:
        _UTC_SECONDS.clear()
    _UTC_SECONDS[head] = ns
    return ns


_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}


@lru_cache(maxsize=4096)
def parse_clf(text: str) -> int:
    """NGINX/Apache common log format time, ``08/Apr/2019:16:16:55 +0000``.

    Cached whole: NGINX logs at one-second resolution, so a busy log repeats each value.
    """
    try:
        day, mon, rest = text.split("/", 2)
        year, h, mi, rest = rest.split(":", 3)
        s, tz = rest.split(" ", 1)
        mo = _MONTHS[mon]
    except (ValueError, KeyError):
        raise ValueError(f"not a common-log-format time: {text[:40]!r}") from None
    y, d, hh, mm, ss = int(year), int(day), int(h), int(mi), int(s)
    return check_range(_second_ns(y, mo, d, hh, mm, ss) - _offset_ns(tz.strip(), None, y, mo, d, hh, mm, ss))


def from_epoch(value: float | int, unit: str) -> int:
    """Epoch number in ``s``, ``ms``, ``us`` or ``ns`` to epoch nanoseconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"epoch time must be a number, got {type(value).__name__}")
    scale = {"s": NS, "ms": 1_000_000, "us": 1_000, "ns": 1}[unit]
    if isinstance(value, int):
        return check_range(value * scale)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"epoch time is not finite: {value}")
    # Through the shortest decimal spelling of the float, so 1712344878.25 s is exactly
    # .250000000, not the .249999872 that binary multiplication gives.
    return check_range(int(Decimal(repr(value)) * scale))


@lru_cache(maxsize=64)
def zone(name: str | None) -> tzinfo | None:
    """A tz name from config: ``UTC``, ``local`` (this machine's zone) or an IANA name."""
    if name is None or name.upper() == "UTC":
        return timezone.utc
    if name == "local":
        return datetime.now().astimezone().tzinfo
    return ZoneInfo(name)


@lru_cache(maxsize=65536)
def _second_text(sec: int) -> str:
    return datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def format_rfc3339(ns: int) -> str:
    """Epoch nanoseconds to RFC 3339 UTC, with as many fraction digits as the value needs.

    >>> format_rfc3339(1554740215931000000)
    '2019-04-08T16:16:55.931Z'
    """
    sec, frac = divmod(int(ns), NS)
    head = _second_text(sec)
    if frac == 0:
        return head + "Z"
    if frac % 1_000_000 == 0:
        return f"{head}.{frac // 1_000_000:03d}Z"
    if frac % 1_000 == 0:
        return f"{head}.{frac // 1_000:06d}Z"
    return f"{head}.{frac:09d}Z"
