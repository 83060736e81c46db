"""NVIDIA DCGM exporter metrics: Prometheus text exposition, one ``gpu`` event per GPU per scrape.

dcgm-exporter publishes one Prometheus sample per (DCGM field, GPU)::

    DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-20c5...",device="nvidia0",modelName="Tesla T4",
                         Hostname="node-1",container="trainer",namespace="ml",pod="train-0"} 87

The samples of one scrape that belong to one GPU are grouped into ONE event. There is no
principal in this format: the entity is the GPU (``gpu_uuid``); ``namespace``/``pod`` name the
workload the exporter's Kubernetes mapping assigned the GPU to.

Grouping and time
-----------------
* A sample may carry a millisecond timestamp (``metric{...} 87 1712345678123``, as written by
  Prometheus federation or a scraper that appends to a file). Such samples are grouped by
  (GPU, timestamp). A group closes when a later timestamp arrives; if the file turns out to be
  ordered series by series (the same series twice in a row with a later timestamp, as in a TSDB
  dump) nothing can be closed early, so groups are held until the end of the input or until
  ``max_pending`` is reached (the oldest is emitted first; counted in ``groups_flushed_at_limit``).
* Without timestamps (what dcgm-exporter itself serves) a scrape ends where a series (metric
  name and label set) repeats: every GPU group of the previous scrape is emitted then. The
  first scrape is stamped with ``Options.scrape_time`` (RFC 3339) or, by default, the time the
  parser was created; each later scrape in the same file is ``scrape_interval_s`` later
  (dcgm-exporter's default collection interval is 30 s). A scrape fetched over HTTP goes
  through :func:`parse_scrape` with the fetch time.
* What is still open at the end of the input is emitted by ``finish()``.

Quirks handled
--------------
* DCGM "blank" sentinels become ``None`` (``dcgm_structs.h``): integer values
  ``>= DCGM_INT64_BLANK`` (0x7ffffffffffffff0; e.g. 9223372036854775794 = NOT_SUPPORTED),
  integer values in ``[DCGM_INT32_BLANK, INT32_MAX]`` = [2147483632, 2147483647] (an int32 field
  cannot be larger; a wider window would eat real int64 counters such as energy in mJ), and
  decimal values ``>= DCGM_FP64_BLANK`` (2**47). Counted in ``blank_values``. NaN/Inf are
  missing values too.
* Label names vary across exporter versions and scrape setups: ``UUID``/``uuid``;
  ``Hostname``/``hostname`` (then the rest of ``Options.node_labels``, then ``Options.node``); the workload labels are
  ``exported_pod``/``exported_namespace``/``exported_container`` when Prometheus renamed them
  (``honor_labels: false``: then the plain ``pod``/``namespace`` name the exporter's own pod and
  are ignored), else ``pod``/``namespace``/``container``, else the pre-2.0
  ``pod_name``/``pod_namespace``/``container_name``. Labels absent on some lines are filled from
  the other lines of the same group.
* ``DCGM_FI_PROCESS_NAME`` is a label naming the exporter process itself
  (``/usr/bin/dcgm-exporter``), not a process on the GPU: it is ignored and ``processes`` is
  always ``None`` (DCGM exposes no per-process list).
* MIG: samples of MIG instances share the parent ``UUID`` and carry ``GPU_I_ID``; each
  instance is its own group (extras ``mig_instance``, ``mig_profile``).
* ``# HELP``/``# TYPE`` and other comments are skipped. Samples of non-``DCGM_FI_`` metrics
  (``DCGM_EXP_*``, ``up``, Go runtime) are skipped and counted in ``non_dcgm_samples``; samples
  with neither a UUID nor a ``gpu`` index label (NVSwitch, CPU entities) in
  ``samples_without_gpu``. A malformed line or a non-numeric value is dead-lettered.

Event fields
------------
``node``, ``gpu_uuid``, ``util_pct`` (DCGM_FI_DEV_GPU_UTIL), ``mem_used_mib``
(DCGM_FI_DEV_FB_USED), ``power_w`` (DCGM_FI_DEV_POWER_USAGE), ``processes`` (None),
``namespace``, ``pod``; extras (``None`` when absent): ``container``, ``gpu_index`` (int),
``gpu_model``, ``mig_instance``, ``mig_profile``, ``mem_free_mib`` (FB_FREE), ``sm_clock_mhz``
(SM_CLOCK), ``temp_c`` (GPU_TEMP), ``sm_active``, ``sm_occupancy``, ``tensor_active``
(PIPE_TENSOR_ACTIVE), ``dram_active``, ``pcie_tx_bytes``/``pcie_rx_bytes``
(DCGM_FI_PROF_PCIE_TX_BYTES/RX_BYTES, bytes per second), ``mem_copy_util_pct``
(MEM_COPY_UTIL), ``xid_errors`` (int, the last XID), and ``metrics``: every other
``DCGM_FI_*`` field by name, value as written (int or float, None for a blank), or ``None``
when there is none. The named fields are floats (the exporter writes some as integers and
some as decimals depending on the version), except ``xid_errors`` and ``gpu_index``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable

from pydantic import Field, field_validator

from ramparts.errors import ParseError
from ramparts.redact import Hasher
from ramparts.timeutil import NS, check_range, from_epoch, parse_iso

from .base import DEFAULT_MAX_PENDING, DeadLetter, Parser

# dcgm_structs.h, DCGM_BLANK_VALUES: each base value plus up to 15 codes (NOT_FOUND,
# NOT_SUPPORTED, NOT_PERMISSIONED, ...) mean "no value".
DCGM_INT32_BLANK = 0x7FFFFFF0
DCGM_INT64_BLANK = 0x7FFFFFFFFFFFFFF0
DCGM_FP64_BLANK = 140737488355328.0
_INT32_MAX = 0x7FFFFFFF

# `metric{labels} value [timestamp_ms]`. The label set is taken greedily up to the last `}`
# (label values may contain `}`), then checked label by label.
_SAMPLE = re.compile(
    rb"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?[ \t]+([^ \t]+)(?:[ \t]+(-?[0-9]+))?[ \t]*")
_LABEL = re.compile(rb'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*(?:,|$)')
_ESCAPE = re.compile(rb"\\(.)")
_DCGM_LINE = re.compile(rb"(?m)^DCGM_FI_[A-Za-z0-9_]*[{ \t]")

# DCGM field -> (event field, is an integer code)
_NAMED: dict[bytes, tuple[str, bool]] = {
    b"DCGM_FI_DEV_GPU_UTIL": ("util_pct", False),
    b"DCGM_FI_DEV_FB_USED": ("mem_used_mib", False),
    b"DCGM_FI_DEV_POWER_USAGE": ("power_w", False),
    b"DCGM_FI_DEV_FB_FREE": ("mem_free_mib", False),
    b"DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", False),
    b"DCGM_FI_DEV_GPU_TEMP": ("temp_c", False),
    b"DCGM_FI_PROF_SM_ACTIVE": ("sm_active", False),
    b"DCGM_FI_PROF_SM_OCCUPANCY": ("sm_occupancy", False),
    b"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": ("tensor_active", False),
    b"DCGM_FI_PROF_DRAM_ACTIVE": ("dram_active", False),
    b"DCGM_FI_PROF_PCIE_TX_BYTES": ("pcie_tx_bytes", False),
    b"DCGM_FI_PROF_PCIE_RX_BYTES": ("pcie_rx_bytes", False),
    b"DCGM_FI_DEV_MEM_COPY_UTIL": ("mem_copy_util_pct", False),
    b"DCGM_FI_DEV_XID_ERRORS": ("xid_errors", True),
}

# Renamed labels win: with honor_labels false, Prometheus moves the exporter's pod labels
# to exported_* and writes its own target labels (the exporter pod) under the plain names.
_NAMESPACE_LABELS = ("exported_namespace", "namespace", "pod_namespace")
_POD_LABELS = ("exported_pod", "pod", "pod_name")
_CONTAINER_LABELS = ("exported_container", "container", "container_name")

_LABEL_CACHE_MAX = 4096


# What the label set of a sample says about its GPU, cached per distinct label set: (key, uuid,
# node, gpu_index, model, namespace, pod, container, mig_instance, mig_profile).
_Identity = tuple


def _unescape(v: bytes) -> bytes:
    return _ESCAPE.sub(lambda m: b"\n" if m.group(1) == b"n" else m.group(1), v)


def parse_labels(body: bytes) -> dict[str, str]:
    """The labels of ``{a="1",b="x"}`` (braces included) as a dict; raises on a malformed set.

    >>> parse_labels(b'{gpu="0",modelName="Tesla \\\\"T4\\\\"",}')
    {'gpu': '0', 'modelName': 'Tesla "T4"'}
    """
    labels: dict[str, str] = {}
    inner = body[1:-1]
    pos, n = 0, len(inner)
    while pos < n:
        m = _LABEL.match(inner, pos)
        if m is None:
            if not inner[pos:].strip():
                break
            raise ParseError(f"malformed label set near {inner[pos:pos + 40]!r}")
        v = m.group(2)
        if b"\\" in v:
            v = _unescape(v)
        labels[m.group(1).decode("ascii")] = v.decode("utf-8")
        pos = m.end()
    return labels


def _first(labels: dict[str, str], names: Iterable[str]) -> str | None:
    for n in names:
        v = labels.get(n)
        if v:
            return v
    return None


class DcgmParser(Parser):
    name = "dcgm"
    kind = "gpu"
    description = "NVIDIA DCGM exporter Prometheus text (with or without sample timestamps)"

    class Options(Parser.Options):
        scrape_time: str | None = Field(
            default=None,
            description="RFC 3339 time of the first scrape in a file whose samples carry no "
                        "timestamp (default: the time the parser starts).")
        scrape_interval_s: float = Field(
            default=30.0, ge=0,
            description="Seconds between successive scrapes in a file without sample timestamps "
                        "(dcgm-exporter's default collection interval is 30 s).")
        node_labels: tuple[str, ...] = Field(
            default=("Hostname", "hostname", "kubernetes_node", "node"),
            description="Labels that name the node, tried in order.")
        node: str | None = Field(
            default=None, description="Node name for samples whose labels name none.")
        max_pending: int = Field(
            default=DEFAULT_MAX_PENDING, ge=1,
            description="Most GPU groups (and series of one scrape) held in memory at once.")

        @field_validator("scrape_time")
        @classmethod
        def _valid_time(cls, v: str | None) -> str | None:
            if v is not None:
                parse_iso(v)
            return v

    def __init__(self, options=None, hasher: Hasher | None = None, *, now_ns: int | None = None):
        super().__init__(options, hasher)
        o = self.options
        if o.scrape_time is not None:
            self._scrape_ts = parse_iso(o.scrape_time)
        else:
            self._scrape_ts = check_range(now_ns if now_ns is not None else time.time_ns())
        self._interval_ns = int(o.scrape_interval_s * NS)
        self._max = o.max_pending
        self._node_labels = o.node_labels
        # (gpu key, ts) -> [event, identity of the last sample merged into it]
        self._groups: dict[tuple, list] = {}
        self._seen: set[bytes] = set()  # series of the current timestamp-less scrape
        self._idents: dict[bytes, _Identity | None] = {}
        self._last_ts: int | None = None
        self._last_series: bytes | None = None
        self._hold = False

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        if not lines:
            return False
        first = lines[0]
        if not (first.startswith((b"# HELP ", b"# TYPE ")) or _SAMPLE.fullmatch(first)):
            return False
        return _DCGM_LINE.search(head) is not None

    # -- records ------------------------------------------------------------------------
    def parse_record(self, raw: bytes) -> list[dict] | None:
        if raw[:1] == b"#":
            return None
        m = _SAMPLE.fullmatch(raw)
        if m is None:
            if raw.lstrip()[:1] == b"#":
                return None
            raise ParseError("not a Prometheus sample line (metric{labels} value [timestamp_ms])")
        name, lbl, val, tsms = m.groups()
        value = self._value(val)
        if not name.startswith(b"DCGM_FI_"):
            self.note("non_dcgm_samples")
            return None
        ident = self._identity(lbl) if lbl is not None else None
        if ident is None:
            self.note("samples_without_gpu")
            return None
        series = raw[:m.end(2) if lbl is not None else m.end(1)]
        out: list[dict] = []
        if tsms is None:
            if series in self._seen or len(self._seen) >= self._max:
                # A series seen again: the previous scrape is complete.
                self._close(out, None)
                self._seen.clear()
                self._scrape_ts += self._interval_ns
            self._seen.add(series)
            ts = self._scrape_ts
        else:
            ts = from_epoch(int(tsms), "ms")
            last = self._last_ts
            if last is not None and ts > last and not self._hold:
                if series == self._last_series:
                    # Series-major order (one series over time, then the next): a group is
                    # complete only at the end of the input.
                    self._hold = True
                    self.note("series_major_order")
                else:
                    self._close(out, ts)
            self._last_ts = ts
            self._last_series = series

        key = (ident[0], ts)
        g = self._groups.get(key)
        if g is None:
            g = [self._new_event(ts, ident), ident]
            self._groups[key] = g
            if len(self._groups) > self._max:
                oldest = next(iter(self._groups))
                out.append(self._groups.pop(oldest)[0])
                self.note("groups_flushed_at_limit")
        elif g[1] is not ident:
            self._merge(g, ident)
        ev = g[0]
        named = _NAMED.get(name)
        if named is not None:
            field, is_code = named
            if value is None:
                ev[field] = None
            else:
                ev[field] = int(value) if is_code else float(value)
        else:
            metrics = ev["metrics"]
            if metrics is None:
                metrics = ev["metrics"] = {}
            metrics[name.decode("ascii")] = value
        return out

    def holds_state(self) -> bool:
        # Open GPU groups: a restart must read their first samples again, or it would emit
        # part of a group under the id the whole one has.
        return bool(self._groups)

    def id_suffix(self, event: dict, k: int) -> str:
        # The groups a record closes come out in the order they were opened, which depends
        # on where the parse started: name them by GPU and time instead.
        gpu = event["gpu_uuid"] or f"{event['node']}/{event['gpu_index']}"
        if event["mig_instance"] is not None:
            gpu = f"{gpu}/{event['mig_instance']}"
        return f"{gpu}@{event['ts']}"

    def finish(self) -> list[dict]:
        out: list[dict] = []
        self._close(out, None)
        self._seen.clear()
        return out

    # -- helpers ------------------------------------------------------------------------
    def _value(self, text: bytes) -> int | float | None:
        try:
            n = int(text)
        except ValueError:
            pass
        else:
            if n >= DCGM_INT64_BLANK or DCGM_INT32_BLANK <= n <= _INT32_MAX:
                self.note("blank_values")
                return None
            return n
        try:
            f = float(text)
        except ValueError:
            raise ParseError(f"sample value is not a number: {text[:40]!r}") from None
        if math.isnan(f) or math.isinf(f):
            return None
        if f >= DCGM_FP64_BLANK:
            self.note("blank_values")
            return None
        return f

    def _identity(self, body: bytes) -> _Identity | None:
        try:
            return self._idents[body]
        except KeyError:
            pass
        labels = parse_labels(body)
        uuid = labels.get("UUID") or labels.get("uuid")
        gpu = labels.get("gpu")
        node = _first(labels, self._node_labels) or self.options.node
        if uuid is None and gpu is None:
            ident = None
        else:
            try:
                index = int(gpu) if gpu is not None else None
            except ValueError:
                raise ParseError(f"label gpu is not an index: {gpu[:40]!r}") from None
            mig = labels.get("GPU_I_ID") or None
            key = (uuid if uuid else f"{node}/gpu{gpu}", mig)
            ident = (key, uuid, node, index, labels.get("modelName") or None,
                     _first(labels, _NAMESPACE_LABELS), _first(labels, _POD_LABELS),
                     _first(labels, _CONTAINER_LABELS), mig, labels.get("GPU_I_PROFILE") or None)
        if len(self._idents) >= _LABEL_CACHE_MAX:
            self._idents.clear()
        self._idents[body] = ident
        return ident

    @staticmethod
    def _new_event(ts: int, ident: _Identity) -> dict:
        _key, uuid, node, index, model, namespace, pod, container, mig, profile = ident
        return {
            "kind": "gpu", "ts": ts, "source": "dcgm",
            "node": node, "gpu_uuid": uuid, "util_pct": None, "mem_used_mib": None,
            "power_w": None, "processes": None, "namespace": namespace, "pod": pod,
            "container": container, "gpu_index": index, "gpu_model": model,
            "mig_instance": mig, "mig_profile": profile,
            "mem_free_mib": None, "sm_clock_mhz": None, "temp_c": None, "sm_active": None,
            "sm_occupancy": None, "tensor_active": None, "dram_active": None,
            "pcie_tx_bytes": None, "pcie_rx_bytes": None, "mem_copy_util_pct": None,
            "xid_errors": None, "metrics": None,
        }

    def _merge(self, g: list, ident: _Identity) -> None:
        ev = g[0]
        _key, uuid, node, index, model, namespace, pod, container, _mig, profile = ident
        for field, v in (("node", node), ("gpu_uuid", uuid), ("gpu_index", index),
                         ("gpu_model", model), ("namespace", namespace), ("pod", pod),
                         ("container", container), ("mig_profile", profile)):
            if v is None:
                continue
            if ev[field] is None:
                ev[field] = v
            elif field == "pod" and ev[field] != v:
                # A time-sliced GPU shared by several pods: the first one is kept.
                self.note("pod_label_conflicts")
        g[1] = ident

    def _close(self, out: list[dict], before: int | None) -> None:
        """Emit the groups older than ``before`` (all of them when None), oldest first."""
        groups = self._groups
        if before is None:
            out.extend(g[0] for g in groups.values())
            groups.clear()
            return
        done = [k for k in groups if k[1] < before]
        for k in done:
            out.append(groups.pop(k)[0])


def parse_scrape(body: bytes, ts_ns: int, options=None, hasher: Hasher | None = None,
                 origin: str = "<scrape>") -> tuple[list[dict], list[DeadLetter], DcgmParser]:
    """Parse one scrape of a dcgm-exporter ``/metrics`` endpoint fetched at ``ts_ns``.

    Samples that carry their own timestamp keep it (as Prometheus does by default); the
    others are stamped ``ts_ns``. Returns the events, the dead letters and the parser (stats).
    """
    parser = DcgmParser(options, hasher, now_ns=ts_ns)
    parser._scrape_ts = check_range(ts_ns)  # the fetch time wins over Options.scrape_time
    lines = body.split(b"\n")
    lines = [l[:-1] if l.endswith(b"\r") else l for l in lines]
    events: list[dict] = []
    dead: list[DeadLetter] = []
    parser.parse_chunk(lines, origin, 1, events, dead)
    parser.flush(events, dead)
    return events, dead, parser
