"""nvidia-smi CSV queries: ``--query-gpu=... --format=csv`` and ``--query-compute-apps=... --format=csv``.

Two inputs are read:

* plain CSV, as written by ``nvidia-smi --query-gpu=timestamp,uuid,utilization.gpu,... --format=csv
  [-l N]``: a header line, then rows (a header may appear again when outputs are
  concatenated; each header starts a new table). ``--format=csv,noheader`` needs
  ``Options.columns`` (the query field list);
* captures in the layout of nvidia_gpu_exporter's ``internal/captures``: a header, then
  sections, each opened by a ``####`` banner with a title (``# load :: query-gpu ...``) and a
  command line (``# $ nvidia-smi --query-gpu=...``). Only the ``--query-gpu`` and
  ``--query-compute-apps`` CSV sections carry samples; every other section (help text, tables,
  pmon/dmon, ``-q``, accounted apps, retired pages) is skipped and counted in
  ``sections_skipped``.

There is no principal: the entity is the GPU (``gpu_uuid``).

Quirks handled
--------------
* Units in headers (``utilization.gpu [%]``, ``memory.used [MiB]``) and in values (``100 %``,
  ``19818 MiB``, ``631.95 W``, ``1980 MHz``); ``nounits`` output works the same.
* Anything in brackets (``[N/A]``, ``[Not Supported]``, ``[Requested functionality has been
  deprecated]``, ``[Unknown Error]``) and a bare ``N/A`` are missing values (None).
* ``, `` separators; a process name containing commas is re-joined (it is the only free text
  column); any other field-count mismatch is dead-lettered.
* Timestamps ``2026/07/14 08:12:53.353`` are in the local time of the machine that ran
  nvidia-smi, read in ``Options.timezone``. A table without a timestamp column is stamped
  with the time the parser was created (counted in ``rows_without_timestamp``).
* Column aliases nvidia-smi accepts (``uuid``/``gpu_uuid``, ``name``/``gpu_name``,
  ``clocks.current.sm``/``clocks.sm``, ``process_name``/``name``, ``used_gpu_memory``/
  ``used_memory``); ``pcie.link.gen.current`` is deprecated for ``pcie.link.gen.gpucurrent``,
  ``power.draw`` falls back to ``power.draw.instant``/``.average``.
* ``hostname`` is ``[N/A]`` on most systems: ``node`` then comes from ``Options.node``.

Events
------
A query-gpu row is one event: ``node``, ``gpu_uuid``, ``util_pct``, ``mem_used_mib``,
``power_w``, ``processes`` None, ``namespace``/``pod`` None, and extras ``gpu_name``,
``gpu_index`` (int), ``mem_total_mib``, ``mem_free_mib``, ``mem_copy_util_pct``
(``utilization.memory``: the same NVML counter as DCGM's MEM_COPY_UTIL), ``enc_util_pct``
(``utilization.encoder``), ``temp_c``, ``sm_clock_mhz``, ``pstate``, ``pcie_link_gen`` (int).
Numbers are floats except the two ints.

Query-compute-apps rows of one GPU and one timestamp (they arrive consecutively) are grouped
into one event whose ``processes`` is ``[{"pid": int, "name": str, "mem_mib": float|None}]``
and whose utilisation fields are None; ``node`` and ``gpu_index`` come from the latest
query-gpu row of that GPU when there was one. The group is emitted when the timestamp
changes, the table ends, or at ``finish()``.

An EMPTY compute-apps table (a header and no rows: nothing runs on any GPU) carries no GPU
and no time, yet "no processes" is what an unauthorized-compute detector most needs to
know. So, when ``Options.empty_apps_event`` is true (the default), it yields one event with
``processes: []`` for every GPU of the latest query-gpu table, at the timestamp of that
GPU's row (nvidia-smi captures and exporters run both queries back to back); if no
query-gpu table came before, nothing is emitted and ``empty_apps_without_gpus`` is counted.
"""

from __future__ import annotations

import re
import time

from pydantic import Field

from ramparts.errors import ParseError
from ramparts.redact import Hasher
from ramparts.timeutil import check_range, parse_iso, zone

from .base import DEFAULT_MAX_PENDING, Parser

_COLNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*(?: \[[^\]]*\])?")
_QUERY = re.compile(rb"--query-(gpu|compute-apps)=([^ \t]+)")

# Query-gpu field -> the names nvidia-smi accepts for it, preferred first.
_GPU_COLS = {
    "ts": ("timestamp",),
    "uuid": ("uuid", "gpu_uuid"),
    "name": ("name", "gpu_name"),
    "index": ("index",),
    "util": ("utilization.gpu",),
    "mem_used": ("memory.used",),
    "mem_total": ("memory.total",),
    "mem_free": ("memory.free",),
    "mem_util": ("utilization.memory",),
    "enc_util": ("utilization.encoder",),
    "power": ("power.draw", "power.draw.instant", "power.draw.average", "gpu.power.draw.average"),
    "temp": ("temperature.gpu",),
    "sm_clock": ("clocks.current.sm", "clocks.sm"),
    "pstate": ("pstate",),
    "pcie_gen": ("pcie.link.gen.gpucurrent", "pcie.link.gen.current"),
    "hostname": ("hostname",),
}
_APPS_COLS = {
    "ts": ("timestamp",),
    "uuid": ("gpu_uuid", "uuid"),
    "name": ("gpu_name",),
    "pid": ("pid",),
    "pname": ("process_name", "name"),
    "mem": ("used_gpu_memory", "used_memory"),
}
# Names that only nvidia-smi CSV headers use (for sniffing and header recognition).
_KNOWN = frozenset(n for cols in (_GPU_COLS, _APPS_COLS) for names in cols.values() for n in names) | {
    "driver_version", "count", "serial", "gpu_serial", "pci.bus_id", "gpu_bus_id", "fan.speed"}
_DISTINCT = frozenset(n for n in _KNOWN if "." in n) | {"used_gpu_memory", "process_name", "gpu_bus_id"}


def _norm(col: str) -> str:
    """``memory.used [MiB]`` -> ``memory.used``."""
    i = col.find(" [")
    return col[:i] if i > 0 else col


def _is_header(fields: list[str]) -> bool:
    if not fields or not fields[0][:1].isalpha():
        return False
    known = False
    for f in fields:
        if _COLNAME.fullmatch(f) is None:
            return False
        known = known or _norm(f) in _KNOWN
    return known


def _missing(v: str) -> bool:
    return not v or v[0] == "[" or v == "N/A"


def _num(v: str, what: str) -> float | None:
    if _missing(v):
        return None
    sp = v.rfind(" ")
    text = v[:sp] if sp > 0 else v  # "631.95 W", "19818 MiB", "100 %"
    try:
        f = float(text)
    except ValueError:
        raise ParseError(f"{what}: expected a number, got {v[:40]!r}") from None
    if f != f or f in (float("inf"), float("-inf")):
        raise ParseError(f"{what}: expected a finite number, got {v[:40]!r}")
    return f


def _int(v: str, what: str) -> int | None:
    if _missing(v):
        return None
    try:
        return int(v)
    except ValueError:
        raise ParseError(f"{what}: expected an integer, got {v[:40]!r}") from None


def _txt(v: str) -> str | None:
    return None if _missing(v) else v


class NvidiaSmiParser(Parser):
    name = "nvidia_smi"
    kind = "gpu"
    description = "nvidia-smi --query-gpu / --query-compute-apps CSV (plain, or nvidia_gpu_exporter captures)"

    class Options(Parser.Options):
        timezone: str = Field(
            default="local",
            description="Time zone of nvidia-smi's local timestamps: 'local', 'UTC' or an IANA name.")
        node: str | None = Field(
            default=None, description="Node name when the hostname column is absent or [N/A].")
        columns: str | None = Field(
            default=None,
            description="Comma-separated query fields of headerless output (--format=csv,noheader), "
                        "e.g. 'timestamp,uuid,utilization.gpu,memory.used,power.draw'.")
        empty_apps_event: bool = Field(
            default=True,
            description="For an empty compute-apps table, emit processes=[] for the GPUs of the "
                        "latest query-gpu table.")
        max_pending: int = Field(
            default=DEFAULT_MAX_PENDING, ge=1, description="Most GPUs and process groups kept in memory.")

    def __init__(self, options=None, hasher: Hasher | None = None, *, now_ns: int | None = None):
        super().__init__(options, hasher)
        o = self.options
        self._tz = zone(o.timezone)
        self._now = check_range(now_ns if now_ns is not None else time.time_ns())
        self._state = "csv"  # "csv" (rows carry samples), "title" (in a banner), "skip"
        self._cmd: bytes | None = None
        self._table: str | None = None  # "gpu", "apps", "other" or None before a header
        self._cols: dict[str, tuple[int, ...]] = {}
        self._ncols = 0
        self._apps: dict[tuple, dict] = {}  # (uuid, ts) -> event being filled
        self._apps_rows = 0
        self._gpus: dict[str, tuple] = {}  # uuid -> (ts, node, name, index) of the latest query-gpu table
        self._max = o.max_pending
        self._ts_cache: dict[str, int] = {}
        if o.columns:
            self._set_columns([c.strip() for c in o.columns.split(",") if c.strip()])

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        if head.startswith(b"#") and (b"# nvidia_gpu_exporter GPU capture" in head[:1024]
                                      or b"\n# $ nvidia-smi " in head):
            return True
        for line in lines:
            if line.startswith(b"#"):
                continue
            try:
                fields = [f.strip() for f in line.decode("utf-8").split(",")]
            except UnicodeDecodeError:
                return False
            return _is_header(fields) and any(_norm(f) in _DISTINCT for f in fields)
        return False

    # -- records ------------------------------------------------------------------------
    def parse_record(self, raw: bytes) -> list[dict] | dict | None:
        if raw.startswith(b"#####"):
            out = self._end_table()
            if self._state == "title":
                self._open_section()
            else:
                self._state, self._cmd = "title", None
            return out or None
        state = self._state
        if state == "title":
            if raw.startswith(b"# $ "):
                self._cmd = raw[4:]
                return None
            if raw[:1] == b"#":
                return None
            self._open_section()  # a section without its closing banner
            state = self._state
        if state == "skip" or raw[:1] == b"#":
            return None
        parts = raw.decode("utf-8").split(",")
        fields = [p.strip() for p in parts]
        if _is_header(fields):
            out = self._end_table()
            self._set_columns(fields)
            return out or None
        table = self._table
        if table == "gpu":
            return self._gpu_row(fields)
        if table == "apps":
            return self._apps_row(fields)
        if table == "other":
            self.note("rows_of_other_queries")
            return None
        raise ParseError("CSV row before any nvidia-smi header line "
                         "(for --format=csv,noheader set parsers.nvidia_smi.columns)")

    def holds_state(self) -> bool:
        return self._table is not None  # its header is needed by the rows that follow

    def finish(self) -> list[dict]:
        return self._end_table()

    # -- sections and tables ------------------------------------------------------------
    def _open_section(self) -> None:
        m = _QUERY.search(self._cmd) if self._cmd else None
        self._table, self._cols, self._ncols = None, {}, 0
        if m is None or b"--format=csv" not in self._cmd:
            self._state = "skip"
            self.note("sections_skipped")
            return
        self._state = "csv"
        if b"noheader" in self._cmd:
            # The command line names the columns the header would have named.
            self._set_columns([c.strip() for c in m.group(2).decode("utf-8", "replace").split(",")])

    def _set_columns(self, fields: list[str]) -> None:
        names = [_norm(f) for f in fields]
        pos: dict[str, int] = {}
        for i, n in enumerate(names):
            pos.setdefault(n, i)
        if "pid" in pos:
            # Accounted apps (max_memory_usage, time) include finished processes: not a sample.
            kind = "other" if "max_memory_usage" in pos or "gpu_utilization" in pos else "apps"
            spec = _APPS_COLS
        elif "retired_pages.address" in pos:  # --query-retired-pages
            kind, spec = "other", _GPU_COLS
        else:
            kind, spec = "gpu", _GPU_COLS
        self._table = kind
        self._ncols = len(names)
        self._cols = {k: tuple(pos[a] for a in aliases if a in pos) for k, aliases in spec.items()}
        self._apps_rows = 0
        if kind == "gpu":
            self._gpus = {}

    def _end_table(self) -> list[dict]:
        """Events still held by the table that ends here (a banner, a new header, the end)."""
        out = list(self._apps.values())
        self._apps.clear()
        if self._table == "apps" and self._apps_rows == 0 and self.options.empty_apps_event:
            if not self._gpus:
                self.note("empty_apps_without_gpus")
            for uuid, (ts, node, name, index) in self._gpus.items():
                out.append(self._apps_event(ts, uuid, node, name, index))
            self._apps_rows = -1  # once per table
        return out

    # -- rows -----------------------------------------------------------------------------
    def _get(self, fields: list[str], key: str) -> str:
        idx = self._cols.get(key)
        if not idx:
            return ""
        for i in idx:
            v = fields[i]
            if not _missing(v):
                return v
        return fields[idx[0]]

    def _ts(self, v: str) -> int:
        if _missing(v):
            self.note("rows_without_timestamp")
            return self._now
        if len(v) < 19 or v[4] != "/" or v[7] != "/" or v[10] != " ":
            try:  # not nvidia-smi's spelling: an RFC 3339 time written by some other tool
                return parse_iso(v, self._tz)
            except ValueError as e:
                raise ParseError(f"timestamp: {e}") from None
        cached = self._ts_cache.get(v[:19])
        if cached is None:
            head = v[:19]
            try:
                cached = parse_iso(f"{head[:4]}-{head[5:7]}-{head[8:10]}T{head[11:]}", self._tz)
            except ValueError as e:
                raise ParseError(f"timestamp: {e}") from None
            if len(self._ts_cache) >= 4096:
                self._ts_cache.clear()
            self._ts_cache[v[:19]] = cached
        frac = v[19:]
        if not frac:
            return cached
        if frac[0] != "." or not frac[1:].isdigit() or len(frac) > 10:
            raise ParseError(f"timestamp: not a nvidia-smi time: {v[:40]!r}")
        return cached + int(frac[1:].ljust(9, "0"))

    def _check_width(self, fields: list[str]) -> list[str]:
        n = len(fields)
        if n == self._ncols:
            return fields
        pname = self._cols.get("pname") if self._table == "apps" else None
        if n > self._ncols and pname:
            i, extra = pname[0], n - self._ncols
            return fields[:i] + [", ".join(fields[i:i + extra + 1])] + fields[i + extra + 1:]
        raise ParseError(f"row has {n} fields, the header has {self._ncols}")

    def _gpu_row(self, fields: list[str]) -> dict:
        fields = self._check_width(fields)
        g = self._get
        ts = self._ts(g(fields, "ts"))
        uuid = _txt(g(fields, "uuid"))
        node = _txt(g(fields, "hostname")) or self.options.node
        name = _txt(g(fields, "name"))
        index = _int(g(fields, "index"), "index")
        ev = {
            "kind": "gpu", "ts": ts, "source": "nvidia_smi",
            "node": node, "gpu_uuid": uuid,
            "util_pct": _num(g(fields, "util"), "utilization.gpu"),
            "mem_used_mib": _num(g(fields, "mem_used"), "memory.used"),
            "power_w": _num(g(fields, "power"), "power.draw"),
            "processes": None, "namespace": None, "pod": None,
            "gpu_name": name, "gpu_index": index,
            "mem_total_mib": _num(g(fields, "mem_total"), "memory.total"),
            "mem_free_mib": _num(g(fields, "mem_free"), "memory.free"),
            "mem_copy_util_pct": _num(g(fields, "mem_util"), "utilization.memory"),
            "enc_util_pct": _num(g(fields, "enc_util"), "utilization.encoder"),
            "temp_c": _num(g(fields, "temp"), "temperature.gpu"),
            "sm_clock_mhz": _num(g(fields, "sm_clock"), "clocks.current.sm"),
            "pstate": _txt(g(fields, "pstate")),
            "pcie_link_gen": _int(g(fields, "pcie_gen"), "pcie.link.gen.gpucurrent"),
        }
        if uuid is not None:
            gpus = self._gpus
            gpus.pop(uuid, None)
            gpus[uuid] = (ts, node, name, index)
            if len(gpus) > self._max:
                del gpus[next(iter(gpus))]
        return ev

    def _apps_event(self, ts: int, uuid: str | None, node: str | None, name: str | None,
                    index: int | None) -> dict:
        return {
            "kind": "gpu", "ts": ts, "source": "nvidia_smi",
            "node": node, "gpu_uuid": uuid, "util_pct": None, "mem_used_mib": None,
            "power_w": None, "processes": [], "namespace": None, "pod": None,
            "gpu_name": name, "gpu_index": index, "mem_total_mib": None, "mem_free_mib": None,
            "mem_copy_util_pct": None, "enc_util_pct": None, "temp_c": None,
            "sm_clock_mhz": None, "pstate": None, "pcie_link_gen": None,
        }

    def _apps_row(self, fields: list[str]) -> list[dict]:
        fields = self._check_width(fields)
        g = self._get
        ts = self._ts(g(fields, "ts"))
        uuid = _txt(g(fields, "uuid"))
        pid = _int(g(fields, "pid"), "pid")
        if pid is None:
            raise ParseError("pid: missing")
        proc = {"pid": pid, "name": _txt(g(fields, "pname")),
                "mem_mib": _num(g(fields, "mem"), "used_gpu_memory")}
        out: list[dict] = []
        groups = self._apps
        if groups and next(iter(groups))[1] != ts:
            out.extend(groups.values())
            groups.clear()
        key = (uuid, ts)
        ev = groups.get(key)
        if ev is None:
            known = self._gpus.get(uuid) if uuid is not None else None
            node = (known[1] if known else None) or self.options.node
            ev = self._apps_event(ts, uuid, node, _txt(g(fields, "name")), known[3] if known else None)
            groups[key] = ev
            if len(groups) > self._max:
                out.append(groups.pop(next(iter(groups))))
        ev["processes"].append(proc)
        self._apps_rows += 1
        return out
