"""A registry of authorized GPU jobs, as CSV or JSON: which job may use which GPU, and when.

Each entry says that ``pod`` (or ``job``) of ``namespace`` may use GPU ``gpu_uuid`` on
``node`` from ``start`` until ``end`` (empty or null: still running), optionally with the
``owner`` (or ``user``) who asked for it. Column or key names are matched without regard to
case; ``node_name``/``host``, ``uuid``, ``job_name``, ``start_time``/``started_at`` and
``end_time``/``ended_at``/``finished_at`` are accepted as aliases.

Framing is "document": the whole file is one record, read as

* CSV when it does not start with ``[`` or ``{``: a header line, then one job per row
  (quoted fields allowed; lines starting with ``#`` are comments; tab-separated when the
  header has tabs and no commas);
* a JSON array of job objects (pretty-printed or not), or an object holding one under
  ``jobs`` or ``items``;
* JSON lines, one job object per line (or a single JSON object).

A bad entry is dead-lettered alone (``item``: the 0-based line index for CSV and JSON lines,
so the line number is ``item + 1``; the element index for an array) and the others are kept.

Times are RFC 3339 (a time without an offset is read in ``Options.timezone``, UTC by default)
or epoch seconds (a number, or digits in a CSV cell). An entry needs a ``start``, a ``node``
or a ``gpu_uuid``, and an ``end`` not before its ``start``. Several GPUs in one entry
(``"GPU-a;GPU-b"``, a quoted comma list, or a JSON list) give one event per GPU, since the
entity of workload events is the GPU.

Event: ``node``, ``gpu_uuid``, ``namespace``, ``pod``, ``start``, ``end``, ``ts`` = ``start``;
extras ``owner`` and ``job`` (the job column when there is one; ``pod`` falls back to it).
There is no secret in a registry: owners are kept as written.
"""

from __future__ import annotations

import csv
import io
import re

import orjson
from pydantic import Field

from ramparts.errors import ParseError
from ramparts.timeutil import from_epoch, parse_iso, zone

from .base import Parser, as_object, as_str, describe

_ALIASES = {
    "node": ("node", "node_name", "nodename", "host", "hostname"),
    "gpu_uuid": ("gpu_uuid", "uuid", "gpu_uuids"),
    "namespace": ("namespace",),
    "pod": ("pod", "pod_name"),
    "job": ("job", "job_name", "job_id"),
    "start": ("start", "start_time", "started_at"),
    "end": ("end", "end_time", "ended_at", "finished_at"),
    "owner": ("owner", "user"),
}
_FIELD_OF = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
_EPOCH = re.compile(r"-?\d+(?:\.\d+)?")
_SPLIT = re.compile(r"[\s,;|]+")
_JSON_HEAD = re.compile(rb'"(?:start|start_time|started_at)"\s*:')
_JSON_KEY = re.compile(rb'"(?:gpu_uuid|node)"\s*:')


def _csv_names(line: str) -> list[str]:
    delim = "\t" if "\t" in line and "," not in line else ","
    return [c.strip().strip('"').strip().lower() for c in line.split(delim)]


class JobRegistryParser(Parser):
    name = "job_registry"
    kind = "workload"
    framing = "document"
    description = "Registry of authorized GPU jobs (CSV, JSON array or JSON lines)"

    class Options(Parser.Options):
        timezone: str = Field(
            default="UTC", description="Zone of registry times written without an offset.")

    def __init__(self, options=None, hasher=None):
        super().__init__(options, hasher)
        self._tz = zone(self.options.timezone)

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        if not lines:
            return False
        first = lines[0].lstrip()
        if first[:1] in (b"[", b"{"):
            window = head[:4096]
            return (_JSON_HEAD.search(window) is not None and _JSON_KEY.search(window) is not None
                    and b'"apiVersion"' not in window)
        for line in lines:
            if line.startswith(b"#"):
                continue
            try:
                names = set(_csv_names(line.decode("utf-8")))
            except UnicodeDecodeError:
                return False
            fields = {_FIELD_OF.get(n) for n in names}
            return "start" in fields and ("gpu_uuid" in fields or "node" in fields) and (
                "pod" in fields or "job" in fields or "namespace" in fields or "end" in fields)
        return False

    # -- the document -------------------------------------------------------------------
    def parse_record(self, raw: bytes) -> list[dict]:
        lead = raw.lstrip()[:1]
        if lead == b"[":
            doc = orjson.loads(raw)
            return self._array(doc)
        if lead == b"{":
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return self._json_lines(raw)
            if isinstance(doc, dict):
                for key in ("jobs", "items"):
                    if isinstance(doc.get(key), list):
                        return self._array(doc[key])
            return self._array([doc])
        return self._csv(raw)

    def _array(self, items) -> list[dict]:
        if not isinstance(items, list):
            raise ParseError(f"expected a JSON array of jobs, got a JSON {type(items).__name__}")
        return self.each_item(items, lambda item: self._entry(as_object(item, "job")))

    def _json_lines(self, raw: bytes) -> list[dict]:
        lines = raw.split(b"\n")
        first = next((l for l in lines if l.strip()), b"")
        try:
            if not isinstance(orjson.loads(first), dict):
                raise ParseError("not JSON lines")
        except (orjson.JSONDecodeError, ParseError):
            raise ParseError("invalid JSON: neither one JSON document nor JSON lines of jobs") from None
        out: list[dict] = []
        for i, line in enumerate(lines):
            line = line.rstrip(b"\r")
            if not line.strip():
                continue
            try:
                out.extend(self._entry(as_object(orjson.loads(line), "job")))
            except Exception as e:
                self.reject(line, describe(e), item=i)
        return out

    def _csv(self, raw: bytes) -> list[dict]:
        # surrogateescape keeps undecodable bytes so that only their row is dead-lettered
        text = raw.decode("utf-8", "surrogateescape")
        if text.startswith("\ufeff"):
            text = text[1:]
        lines = text.splitlines(keepends=True)
        header: list[str] | None = None
        header_line = ""
        out: list[dict] = []
        i = 0
        n = len(lines)
        while i < n:
            first = i
            line = lines[i]
            i += 1
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if header is None:
                header_line = line
                header = _csv_names(line)
                fields = {_FIELD_OF.get(h) for h in header}
                if "start" not in fields or not ({"gpu_uuid", "node"} & fields):
                    raise ParseError("job registry CSV header needs a start column and a node or "
                                     f"gpu_uuid column, got {', '.join(header)[:200]!r}")
                continue
            # A quoted field may span lines: read until the quotes balance.
            while line.count('"') % 2 and i < n:
                line += lines[i]
                i += 1
            row_raw = line.rstrip("\r\n").encode("utf-8", "surrogateescape")
            try:
                row_raw.decode("utf-8")
                delim = "\t" if "\t" in header_line and "," not in header_line else ","
                row = next(csv.reader(io.StringIO(line), delimiter=delim, skipinitialspace=True))
                if len(row) != len(header):
                    raise ParseError(f"row has {len(row)} fields, the header has {len(header)}")
                out.extend(self._entry(dict(zip(header, row))))
            except Exception as e:
                self.reject(row_raw, describe(e), item=first)
        if header is None:
            raise ParseError("no job registry header line")
        return out

    # -- one entry ------------------------------------------------------------------------
    def _entry(self, entry: dict) -> list[dict]:
        vals: dict[str, object] = {}
        for k, v in entry.items():
            field = _FIELD_OF.get(k.strip().lower()) if isinstance(k, str) else None
            if field is not None and vals.get(field) in (None, ""):
                vals[field] = v
        start = self._time(vals.get("start"), "start")
        if start is None:
            raise ParseError("job without a start time")
        end = self._time(vals.get("end"), "end")
        if end is not None and end < start:
            raise ParseError("end is before start")
        node = as_str(_strip(vals.get("node")), "node")
        raw_uuid = vals.get("gpu_uuid")
        if isinstance(raw_uuid, list):
            uuids = [as_str(_strip(u), "gpu_uuid") for u in raw_uuid]
            uuids = [u for u in uuids if u]
        else:
            text = as_str(_strip(raw_uuid), "gpu_uuid")
            uuids = [u for u in _SPLIT.split(text) if u] if text else []
        if node is None and not uuids:
            raise ParseError("job names neither a node nor a gpu_uuid")
        job = as_str(_strip(vals.get("job")), "job")
        pod = as_str(_strip(vals.get("pod")), "pod") or job
        base = {
            "kind": "workload", "ts": start, "source": "job_registry",
            "node": node, "gpu_uuid": None,
            "namespace": as_str(_strip(vals.get("namespace")), "namespace"),
            "pod": pod, "start": start, "end": end,
            "owner": as_str(_strip(vals.get("owner")), "owner"), "job": job,
        }
        if not uuids:
            return [base]
        if len(uuids) == 1:
            base["gpu_uuid"] = uuids[0]
            return [base]
        return [dict(base, gpu_uuid=u) for u in dict.fromkeys(uuids)]

    def _time(self, v, what: str) -> int | None:
        if v is None:
            return None
        if isinstance(v, bool):
            raise ParseError(f"{what}: expected a time, got a boolean")
        try:
            if isinstance(v, (int, float)):
                return from_epoch(v, "s")
            if isinstance(v, str):
                t = v.strip()
                if not t:
                    return None
                if _EPOCH.fullmatch(t):
                    return from_epoch(float(t) if "." in t else int(t), "s")
                return parse_iso(t, self._tz)
        except (ValueError, OverflowError) as e:  # from_epoch(1e300) overflows int
            raise ParseError(f"{what}: {e}") from None
        raise ParseError(f"{what}: expected an RFC 3339 time or epoch seconds, got {type(v).__name__}")


def _strip(v):
    return v.strip() if isinstance(v, str) else v
