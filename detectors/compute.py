"""Unauthorized GPU compute: GPU activity judged against the workload allowed to run there.

Three detectors read GPU samples (``gpu`` events from DCGM or nvidia-smi), the authorized
workloads (``workload`` events from a pod list or a job registry) and runtime events:

* :class:`UnauthorizedCompute` (``gpu.unauthorized``): a busy GPU with no authorized workload.
  A workload authorizes a GPU when it names the GPU's UUID; else when the sample names the pod
  (dcgm-exporter's pod labels, which come from the kubelet's device assignment) and that pod
  is authorized on the node; else by count: pods that hold ``gpu_count`` GPUs of a node
  without saying which cover that many of the node's busy GPUs, first busy first covered. A
  GPU is *busy* when its utilisation (or encoder utilisation) reaches ``busy_util_pct`` or
  processes other than ``ignore_processes`` hold it (nvidia-smi ``--query-compute-apps``).
  ``min_samples`` busy samples in a row without authorization open an incident, so a GPU
  taken over is caught at its second sample by default; processes on a GPU that nobody is
  authorized to use and a pod label naming an unauthorized pod are part of the evidence.
* :class:`MinerSignature` (``gpu.miner``): the shape of cryptocurrency mining, even inside an
  authorized pod: over ``window_samples`` samples after start-up, utilisation flat near 100 %,
  tensor pipes idle, little memory used and little memory traffic, near-zero PCIe, constant
  power. Also a known miner process on a GPU (nvidia-smi) or in a runtime event, and Falco's
  miner rules (Stratum URLs, the mining rules of the default rule set, MITRE T1496).
* :class:`GpuWindowModel` (``gpu.anomaly``, in ``compute_model.py``): a scikit-learn model of
  normal per-GPU telemetry windows, trained from history by ``ramparts train compute``.

Events of one node (or, without a node, of one GPU) share a partition (``streams.keys``), and
every state key here starts with that route key, so the worker that owns a node holds its
authorizations and its GPUs.

>>> from ramparts.detectors.base import DictState
>>> from ramparts.events import EventBatch
>>> d = UnauthorizedCompute()
>>> pods = [{"kind": "workload", "ts": 0, "source": "k8s_pods", "node": "n1", "gpu_uuid": None,
...          "namespace": "ml", "pod": "train-0", "start": 0, "end": None, "gpu_count": 1}]
>>> def sample(t, gpu):
...     return {"kind": "gpu", "ts": t * 10**9, "source": "dcgm", "node": "n1", "gpu_uuid": gpu,
...             "util_pct": 100.0, "mem_used_mib": 2000.0, "power_w": 300.0, "processes": None,
...             "namespace": None, "pod": None}
>>> batch = EventBatch(pods + [sample(t, g) for t in (15, 30) for g in ("GPU-a", "GPU-b")])
>>> [(a["detector"], a["entity"]["id"], a["event_count"]) for a in d.update(batch, DictState())]
[('gpu.unauthorized', 'GPU-b', 2)]
"""

from __future__ import annotations

import re
import zlib
import numpy as np
from pydantic import Field

from ramparts.events import EventBatch
from ramparts.streams.keys import entity_key

from .base import Detector, StateStore, make_alert
from .incident import IncidentRule, events_of_kinds, events_where, node_of

NS = 1_000_000_000
SEEN_IDS = 24
MAX_AUTH = 10  # authorizations kept per node: an 8-GPU node with one pod per GPU fits
MAX_NAME = 63

# Miners seen on GPUs in incident reports and in Falco's rules (the "Detect crypto miners"
# macros list pool ports and domains; these are the binaries).
MINER_PROCESS = re.compile(
    r"^(xmrig(-cuda|-nvidia)?|xmr-stak(-rx)?|t-?rex|nbminer|lolminer|gminer|miner|phoenixminer|teamredminer|"
    r"nanominer|ethminer|bminer|srbminer(-multi)?|kawpowminer|ccminer|cpuminer(-opt)?|claymore|excavator|"
    r"nheqminer|cgminer|bfgminer|ethdcrminer64|onezerominer|rigel|wildrig(-multi)?|z-enemy|cryptodredge)(\.exe)?$",
    re.I)
MINER_TEXT = re.compile(r"stratum\+(tcp|ssl|tls)://|\bminer\b|\bmining\b|crypto ?min", re.I)


def _float(v) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def _text(v) -> str | None:
    return v if isinstance(v, str) and v else None


def _short(s: str) -> str:
    return s if len(s) <= MAX_NAME else s[:MAX_NAME]


def pod_of(e: dict) -> str | None:
    pod = _text(e.get("pod"))
    if pod is None:
        pod = _text(e.get("job"))
        if pod is None:
            return None
    ns = _text(e.get("namespace"))
    return _short(f"{ns}/{pod}" if ns else pod)


def process_names(e: dict) -> list[str]:
    """Basenames of the processes a sample lists (nvidia-smi compute apps), in order."""
    procs = e.get("processes")
    if not isinstance(procs, list):
        return []
    out = []
    for p in procs:
        name = p.get("name") if isinstance(p, dict) else None
        if isinstance(name, str) and name:
            out.append(name.rsplit("/", 1)[-1])
    return out


def _route(e: dict) -> str:
    # The same as streams.keys.entity_key for gpu and workload events (the partition's key).
    n = e.get("node")
    if isinstance(n, str) and n:
        return f"node:{n}"
    return f"gpu:{e.get('gpu_uuid')}"


def _seen_before(seen: list[int], e: dict) -> bool:
    """Whether a redelivered event (same position id) was counted already; remembers it if not."""
    eid = e.get("id")
    if not isinstance(eid, str):
        return False
    h = zlib.crc32(eid.encode())
    if h in seen:
        return True
    seen.append(h)
    del seen[:-SEEN_IDS]
    return False


class UnauthorizedCompute(Detector):
    """A busy GPU that no authorized workload covers (see the module doc for the join)."""

    name = "gpu.unauthorized"
    kinds = ("gpu", "workload")
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("enc_util_pct", "end", "gpu_count", "gpu_uuid", "hostname", "id", "job", "kind", "mem_used_mib",
                    "namespace", "node", "pod", "power_w", "processes", "source", "start", "ts", "util_pct")
    description = "GPU busy (utilisation or processes) with no authorized pod or registry job on it"

    class Options(Detector.Options):
        busy_util_pct: float = Field(default=10.0, ge=0, le=100,
                                     description="Utilisation (GPU or encoder, %) from which a GPU counts as busy.")
        min_samples: int = Field(default=2, ge=1, description="Busy unauthorized samples in a row that open an incident.")
        gap_seconds: float = Field(default=300.0, gt=0,
                                   description="An incident closes after this long without a busy unauthorized sample.")
        grace_seconds: float = Field(default=60.0, ge=0,
                                     description="A workload still covers its GPUs this long after its end (drain).")
        ignore_processes: tuple[str, ...] = Field(
            default=("Xorg", "gnome-shell", "nvidia-persistenced", "nv-hostengine", "dcgm-exporter", "dcgmi"),
            description="Processes whose presence alone does not make a GPU busy (display servers, monitoring).")

    def __init__(self, options=None):
        super().__init__(options)
        self._ignore = frozenset(p.lower() for p in self.options.ignore_processes)

    # -- state ---------------------------------------------------------------------------
    def _auth_key(self, route: str) -> str:
        return f"{self.name}/{route}/auth"

    def _gpu_key(self, route: str, gpu: str) -> str:
        return f"{self.name}/{route}/gpu/{gpu}"

    def _add_workload(self, auth: dict, e: dict) -> None:
        start = e.get("start") if isinstance(e.get("start"), int) else e["ts"]
        end = e.get("end") if isinstance(e.get("end"), int) and not isinstance(e.get("end"), bool) else None
        if isinstance(start, bool):
            start = e["ts"]
        gpu = _text(e.get("gpu_uuid"))
        n = e.get("gpu_count")
        n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        pod = pod_of(e) or "?"
        entries = [w for w in auth["w"] if not (w[0] == pod and w[1] == gpu)]
        grace = int(self.options.grace_seconds * NS)
        entries = [w for w in entries if w[4] is None or w[4] + grace >= e["ts"]]  # ended ones go
        entries.append([pod, gpu, 1 if gpu else n, start, end])
        if len(entries) > MAX_AUTH:  # the earliest to end (then the oldest) make room
            entries.sort(key=lambda w: (w[4] is None, w[4] or 0, w[3]))
            entries = entries[len(entries) - MAX_AUTH:]
        entries.sort(key=lambda w: (w[3], w[0], w[1] or ""))
        auth["w"] = entries

    def _busy(self, e: dict) -> tuple[bool | None, list[str]]:
        """(busy, the processes that count); None when the sample says nothing either way."""
        procs = [p for p in process_names(e) if p.lower() not in self._ignore]
        util = _float(e.get("util_pct"))
        enc = _float(e.get("enc_util_pct"))
        level = max((v for v in (util, enc) if v is not None), default=None)
        if procs:
            return True, procs
        if level is not None:
            return level >= self.options.busy_util_pct, procs
        if isinstance(e.get("processes"), list):
            return False, procs  # an empty compute-apps list: nothing runs
        return None, procs

    def _authorized(self, auth: dict, claims: dict, gpu: str, pod: str | None, t: int,
                    busy: bool) -> tuple[str | None, str]:
        """(the workload that covers this GPU at ``t`` or None, the reason in words)."""
        grace = int(self.options.grace_seconds * NS)
        live = [w for w in auth["w"] if w[3] <= t and (w[4] is None or t <= w[4] + grace)]
        for w in live:
            if w[1] == gpu:
                return w[0], f"{w[0]} is authorized on this GPU"
        if pod is not None:
            for w in live:
                if w[1] is None and w[0] == pod:
                    return w[0], f"the exporter maps the GPU to {pod}, authorized on the node"
            if not any(w[0] == pod for w in live):
                return None, f"the exporter maps the GPU to pod {pod}, which holds no authorization here"
        pooled = [w for w in live if w[1] is None and (pod is None or w[0] != pod)]
        capacity = sum(w[2] for w in pooled)
        if not live:
            return None, "no workload is authorized on this GPU or its node"
        if capacity == 0:
            return None, "no authorized workload names this GPU"
        if busy:
            claims.setdefault(gpu, t)
        if gpu in claims:
            rank = sorted(claims.items(), key=lambda kv: (kv[1], kv[0])).index((gpu, claims[gpu]))
            if rank < capacity:
                return pooled[0][0] if len(pooled) == 1 else "+".join(w[0] for w in pooled[:3]), \
                    f"covered by the node's {capacity} authorized GPU(s) without a named UUID"
            return None, (f"{len(claims)} GPUs of the node are busy and its authorized pods hold "
                          f"{capacity} GPU(s) without naming them; this one became busy last")
        return "idle", "idle"

    # -- the detector ----------------------------------------------------------------------
    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        # The samples' dicts are shared with gpu.miner (events_where); workloads are a few.
        idx = sorted(batch.indices_where("kind", "gpu") + batch.indices_where("kind", "workload"))
        made = dict(zip(*events_where(batch, "kind", "gpu")))
        made.update(zip(*events_where(batch, "kind", "workload")))
        events = [e for e in map(made.__getitem__, idx) if isinstance(e.get("ts"), int)]
        if not events:
            return []
        o = self.options
        gap = int(o.gap_seconds * NS)
        auths: dict[str, dict] = {}
        gpus: dict[str, dict] = {}
        alerts: dict[tuple, dict] = {}
        for e in events:
            route = _route(e)
            akey = self._auth_key(route)
            auth = auths.get(akey)
            if auth is None:
                auth = auths[akey] = state.get(akey) or {"w": [], "claims": {}}
                auth = auths[akey] = {"w": [list(w) for w in auth["w"]], "claims": dict(auth.get("claims") or {})}
                auth["_dirty"] = False
            if e["kind"] == "workload":
                self._add_workload(auth, e)
                auth["_dirty"] = True
                continue
            gpu = _text(e.get("gpu_uuid"))
            if gpu is None:
                continue
            busy, procs = self._busy(e)
            if busy is None:
                continue
            gkey = self._gpu_key(route, gpu)
            g = gpus.get(gkey)
            if g is None:
                g = gpus[gkey] = dict(state.get(gkey) or {"run": 0, "inc": None, "seen": []})
                g["seen"] = list(g["seen"])
            if _seen_before(g["seen"], e):
                continue
            t = e["ts"]
            pod = pod_of(e)
            before = dict(auth["claims"])
            who, why = self._authorized(auth, auth["claims"], gpu, pod, t, busy)
            if not busy:
                auth["claims"].pop(gpu, None)
            if auth["claims"] != before:
                auth["_dirty"] = True
            inc = g["inc"]
            if inc is not None and t - inc["last"] > gap:
                inc = None
            if busy and who is None:
                if g["run"] and t - g.get("at", t) > gap:
                    # Samples stopped for longer than the gap (an exporter down): the run, like the
                    # incident, starts again here, so the next incident gets a new start and id.
                    g["run"] = 0
                    g.pop("since", None)
                g["run"] += 1
                g["at"] = t
                if inc is not None:
                    inc = {**inc, "last": t, "count": inc["count"] + 1}
                elif g["run"] >= o.min_samples:
                    inc = {"first": g.get("since", t), "last": t, "count": g["run"]}
                if g["run"] == 1:
                    g["since"] = t
            else:
                g["run"] = 0
                g.pop("since", None)
                g.pop("at", None)
            g["inc"] = inc
            if inc is not None and inc["last"] == t:
                alerts[(gkey, inc["first"])] = self._alert(e, gpu, route, inc, why, procs, auth)
        for k, a in auths.items():
            if a.pop("_dirty"):
                state.set(k, a)
        for k, g in gpus.items():
            state.set(k, g)
        return list(alerts.values())

    def _alert(self, e: dict, gpu: str, route: str, inc: dict, why: str, procs: list[str], auth: dict) -> dict:
        util = _float(e.get("util_pct"))
        node = _text(e.get("node"))
        what = f"{util:.0f}% utilisation" if util is not None else "in use"
        if procs:
            what += f", processes {', '.join(procs[:3])}"
        where = f" on {node}" if node else ""
        evidence = {
            "node": node, "gpu_uuid": gpu, "util_pct": util, "enc_util_pct": _float(e.get("enc_util_pct")),
            "mem_used_mib": _float(e.get("mem_used_mib")), "power_w": _float(e.get("power_w")),
            "processes": procs[:8], "pod_label": pod_of(e), "reason": why,
            "busy_samples": inc["count"], "min_samples": self.options.min_samples,
            "authorized_on_node": [w[0] for w in auth["w"]][:6], "source": e.get("source"),
        }
        return make_alert(self.name, "high", ("gpu", gpu), score=float(inc["count"]),
                          summary=f"GPU {gpu}{where} busy ({what}) with no authorized workload: {why}",
                          evidence=evidence, first_ts=inc["first"], last_ts=inc["last"], count=inc["count"])


# -- the miner signature ---------------------------------------------------------------------------
# Columns of a sample row, as kept in the state between batches (None -> NaN).
ROW = ("util", "power", "tensor", "pcie", "mem_frac", "mem_copy", "dram")


def sample_row(e: dict) -> list[float]:
    """One GPU sample as the signature's numbers (NaN where the source does not measure it)."""
    nan = float("nan")
    util = _float(e.get("util_pct"))
    power = _float(e.get("power_w"))
    tensor = _float(e.get("tensor_active"))
    tx, rx = _float(e.get("pcie_tx_bytes")), _float(e.get("pcie_rx_bytes"))
    pcie = (tx or 0.0) + (rx or 0.0) if (tx is not None or rx is not None) else None
    used, free = _float(e.get("mem_used_mib")), _float(e.get("mem_free_mib"))
    total = _float(e.get("mem_total_mib"))
    if total is None and used is not None and free is not None:
        total = used + free
    frac = used / total if used is not None and total else None
    copy = _float(e.get("mem_copy_util_pct"))
    dram = _float(e.get("dram_active"))
    return [nan if v is None else v for v in (util, power, tensor, pcie, frac, copy, dram)]


def signature_windows(rows: np.ndarray, window: int, o) -> np.ndarray:
    """For each window of ``window`` consecutive rows (ending at row ``window-1`` .. ``n-1``),
    whether it has the miner signature. Unmeasured columns (all NaN in a window) do not vote."""
    from numpy.lib.stride_tricks import sliding_window_view

    if len(rows) < window:
        return np.zeros(0, dtype=bool)
    w = sliding_window_view(rows, window, axis=0)  # (n - window + 1, columns, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        util = w[:, 0, :]
        ok = (np.nanmin(util, axis=1) >= o.min_util_pct) & (np.nanstd(util, axis=1) <= o.max_util_std)
        ok &= ~np.isnan(util).any(axis=1)

        def at_most(col: int, limit: float, reduce=np.nanmax) -> np.ndarray:
            x = w[:, col, :]
            known = ~np.isnan(x).all(axis=1)
            vals = reduce(np.where(np.isnan(x), -np.inf if reduce is np.nanmax else np.nan, x), axis=1)
            return ~known | (vals <= limit)

        ok &= at_most(2, o.max_tensor_active)
        ok &= at_most(3, o.max_pcie_bytes_per_s)
        ok &= at_most(4, o.max_mem_fraction)
        ok &= at_most(5, o.max_mem_copy_pct)
        ok &= at_most(6, o.max_dram_active)
        p = w[:, 1, :]
        known = ~np.isnan(p).all(axis=1)
        cv = np.nanstd(p, axis=1) / np.nanmean(p, axis=1)
        ok &= ~known | (cv <= o.max_power_cv)
    return ok


class MinerSignature(IncidentRule):
    """Cryptocurrency mining on a GPU: its telemetry signature, its process names, Falco's rules."""

    name = "gpu.miner"
    kinds = ("gpu", "runtime")
    # What update reads of an event (the worker's events topic carries no other field of its kinds).
    event_fields = ("cmdline", "dram_active", "gpu_uuid", "hostname", "id", "image", "job", "kind", "mem_copy_util_pct",
                    "mem_free_mib", "mem_total_mib", "mem_used_mib", "namespace", "node", "pcie_rx_bytes",
                    "pcie_tx_bytes", "pod", "power_w", "process", "processes", "rule", "source", "tags",
                    "tensor_active", "ts", "util_pct")
    entity_type = "gpu"
    severity = "critical"
    description = ("miner signature (flat full SM load, tensor pipes idle, little memory and PCIe, constant power), "
                   "miner processes, Falco miner alerts")

    class Options(IncidentRule.Options):
        window_samples: int = Field(default=8, ge=3, le=60, description="Samples a signature window spans.")
        startup_samples: int = Field(default=2, ge=0,
                                     description="Busy samples after a GPU starts work that the signature skips "
                                                 "(a miner copies its data set over PCIe first).")
        min_util_pct: float = Field(default=95.0, ge=0, le=100, description="Lowest utilisation in a signature window.")
        max_util_std: float = Field(default=2.0, ge=0, description="Largest utilisation spread (std, points).")
        max_tensor_active: float = Field(default=0.02, ge=0, description="Tensor pipe activity (ratio) a miner leaves idle.")
        max_pcie_bytes_per_s: float = Field(default=2e6, ge=0, description="PCIe traffic (tx+rx) counted as near zero.")
        max_mem_fraction: float = Field(default=0.3, ge=0, le=1, description="Largest share of GPU memory in use.")
        max_mem_copy_pct: float = Field(default=10.0, ge=0, description="Largest memory-copy utilisation (%).")
        max_dram_active: float = Field(default=0.15, ge=0, description="Largest DRAM activity (ratio).")
        max_power_cv: float = Field(default=0.03, ge=0, description="Largest power variation (std / mean).")

    # -- events that are miners by name: processes and Falco rules (incident rule path) ------------
    def _event_match(self, e: dict) -> str | None:
        kind = e.get("kind")
        if kind == "gpu":
            for p in process_names(e):
                if MINER_PROCESS.match(p):
                    return f"miner process {p} on the GPU"
            return None
        if kind != "runtime":
            return None
        proc = _text(e.get("process"))
        if proc and MINER_PROCESS.match(proc.rsplit("/", 1)[-1]):
            return f"miner process {proc}"
        if e.get("source") == "falco":
            tags = e.get("tags")
            rule = _text(e.get("rule")) or ""
            if MINER_TEXT.search(rule) or (isinstance(tags, list) and "T1496" in tags):
                return f"Falco: {rule}"
            cmd = _text(e.get("cmdline"))
            if cmd and "stratum+" in cmd:
                return f"a Stratum mining pool on the command line ({proc or 'a process'})"
        return None

    def matches(self, batch: EventBatch) -> list[int]:
        # The GPU samples' dicts are shared with the signature and gpu.unauthorized (events_where).
        hits = [i for kind in ("gpu", "runtime") for i, e in zip(*events_where(batch, "kind", kind))
                if self._event_match(e) is not None]
        return sorted(hits)

    def entity_of(self, event: dict) -> str | None:
        if event.get("kind") == "gpu":
            return _text(event.get("gpu_uuid"))
        return pod_of(event) or _text(event.get("node")) or _text(event.get("hostname"))

    def entity_type_of(self, event: dict) -> str:
        if event.get("kind") == "gpu":
            return "gpu"
        return "pod" if pod_of(event) else "node"

    def state_key(self, etype: str, entity: str, event: dict) -> str:
        # Beside the partition key of the event (a GPU's node, a pod), apart from the signature's.
        return f"{self.name}/{entity_key(event)}/ev/{etype}:{entity}"

    def describe(self, entity: str, count: int, event: dict) -> str:
        return f"cryptocurrency miner on {entity}: {self._event_match(event)}"

    def evidence(self, inc: dict, event: dict) -> dict:
        return {"matched": self._event_match(event), "matching_events": inc["count"], "rule": event.get("rule"),
                "process": event.get("process"), "processes": process_names(event)[:8] or None,
                "cmdline": event.get("cmdline"), "node": node_of(event),
                "pod": pod_of(event), "image": event.get("image")}

    # -- the telemetry signature --------------------------------------------------------------
    def update(self, batch: EventBatch, state: StateStore) -> list[dict]:
        alerts = super().update(batch, state)
        return alerts + self._signature(batch, state)

    def _signature(self, batch: EventBatch, state: StateStore) -> list[dict]:
        o = self.options
        per_gpu: dict[tuple[str, str], list[dict]] = {}
        for e in events_of_kinds(batch, "gpu"):
            if _float(e.get("util_pct")) is not None:
                g = _text(e.get("gpu_uuid"))
                if g is not None and isinstance(e.get("ts"), int):
                    per_gpu.setdefault((_route(e), g), []).append(e)
        alerts = []
        W, gap = o.window_samples, int(o.gap_seconds * NS)
        for (route, gpu), events in per_gpu.items():
            key = f"{self.name}/{route}/sig/{gpu}"
            st = state.get(key) or {"rows": [], "run": 0, "inc": None, "seen": []}
            seen = list(st["seen"])
            events = [e for e in events if not _seen_before(seen, e)]
            if not events:
                continue
            prev = [[float("nan") if v is None else v for v in r] for r in st["rows"]]
            new = [sample_row(e) for e in events]
            rows = np.asarray(prev + new, dtype=np.float64).reshape(-1, len(ROW))
            # Busy-run length at each new sample (utilisation >= min_util_pct counts as on).
            on = rows[len(prev):, 0] >= o.min_util_pct
            run = st["run"]
            runs = np.empty(len(new), dtype=np.int64)
            for i, b in enumerate(on.tolist()):
                run = run + 1 if b else 0
                runs[i] = run
            # A hit needs a busy run of W + startup samples: without one in the new rows, no window
            # can make one, and the windows are not judged.
            sig = signature_windows(rows, W, o) if runs.max() >= W + o.startup_samples else None
            # sig[j] judges the window ending at row j + W - 1; new row i is row len(prev) + i.
            hits = np.zeros(len(new), dtype=bool)
            for i in range(len(new)):
                j = len(prev) + i - (W - 1)
                if j >= 0 and runs[i] >= W + o.startup_samples and sig[j]:
                    hits[i] = True
            inc = st["inc"]
            last_hits: dict[int, tuple[int, dict]] = {}  # incident -> (its last hit here, its state)
            for i in np.flatnonzero(hits).tolist():
                t = events[i]["ts"]
                if inc is not None and t - inc["last"] > gap:
                    inc = None
                if inc is None:
                    inc = {"first": t, "last": t, "count": 1}
                else:
                    inc = {**inc, "last": t, "count": inc["count"] + 1}
                last_hits[inc["first"]] = (i, inc)
            keep = rows[-(W - 1):] if W > 1 else rows[:0]
            st = {"rows": [[None if v != v else round(float(v), 6) for v in r] for r in keep.tolist()],
                  "run": int(runs[-1]), "inc": inc, "seen": seen}
            state.set(key, st)
            for last_hit, inc_then in last_hits.values():
                win = rows[len(prev) + last_hit - W + 1: len(prev) + last_hit + 1]
                alerts.append(self._signature_alert(events[last_hit], gpu, inc_then, win))
        return alerts

    def _signature_alert(self, e: dict, gpu: str, inc: dict, win: np.ndarray) -> dict:
        def stat(col: int, f) -> float | None:
            x = win[:, col]
            x = x[~np.isnan(x)]
            return round(float(f(x)), 6) if len(x) else None

        ev = {"signature": "flat full load, tensor pipes idle, little memory and PCIe, constant power",
              "window_samples": len(win), "util_min": stat(0, np.min), "util_std": stat(0, np.std),
              "tensor_active_max": stat(2, np.max), "pcie_bytes_per_s_max": stat(3, np.max),
              "mem_fraction_max": stat(4, np.max), "mem_copy_pct_max": stat(5, np.max),
              "power_w_mean": stat(1, np.mean),
              "power_cv": (stat(1, np.std) / stat(1, np.mean)) if stat(1, np.mean) else None,
              "node": _text(e.get("node")), "pod_label": pod_of(e), "samples_matching": inc["count"]}
        profiled = ev["tensor_active_max"] is not None or ev["pcie_bytes_per_s_max"] is not None
        pod = f" inside pod {ev['pod_label']}" if ev["pod_label"] else ""
        # Say only what this source measured: nvidia-smi has no tensor or PCIe counters.
        seen = [f"utilisation flat at {ev['util_min']:.0f}% or more"]
        if ev["tensor_active_max"] is not None:
            seen.append("tensor pipes idle")
        if ev["pcie_bytes_per_s_max"] is not None:
            seen.append("near-zero PCIe")
        if ev["mem_fraction_max"] is not None:
            seen.append("little memory")
        seen.append("constant power")
        return make_alert(self.name, "critical" if profiled else "high", ("gpu", gpu), score=float(inc["count"]),
                          summary=f"GPU {gpu}{pod} shows the miner signature: {', '.join(seen)}",
                          evidence=ev, first_ts=inc["first"], last_ts=inc["last"], count=inc["count"])

