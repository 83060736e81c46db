"""Which entity an event belongs to, and so which partition (and which worker) owns it.

A detector keeps state per entity; the worker that owns the entity's partition holds that
state in its Faust table. Events are keyed so that everything one detector needs about an
entity lands on one partition:

* requests by principal; a request that failed authentication (HTTP 401) by its source
  address instead, because the key it presented identifies nobody and the source is what a
  credential-stuffing detector follows;
* predictions by source address (by principal when none is known): the extraction detector
  keeps each principal's statistics and, beside them, the pooled statistics of all principals
  of one source, which is how a Sybil split (one attack over many keys) shows;
* GPU samples and workloads by node (by GPU UUID when the node is not known), so that the
  authorization of a GPU sits beside its samples: a pod list names the node a pod runs on
  and how many GPUs it holds, rarely which ones (the device plugin picks them), so the
  node is the key both sides share. A GPU is on one node, so all its samples still land on
  one partition;
* runtime events by namespace/pod (by node, then by source, when there is no pod).

Detectors that judge a model as a whole (drift per model version, a model's latency and error
rate) need every request and prediction of one model on one partition instead. A detector
names the key its state follows in ``Detector.route``; :func:`route_key` gives an event's key
for a route: its entity for ``"entity"``, ``model:<model>`` for ``"model"``. An event with no
model (a runtime event, a GPU sample, a request whose gateway logged none) has no model key
(``None``): it is not routed to model detectors at all. The worker sends an event with a model
key a second time, to ``events.model`` (streams/app.py); replay needs no routing (one process
owns every key).

>>> entity_key({"kind": "request", "principal": "alice", "status": 200})
'principal:alice'
>>> entity_key({"kind": "request", "principal": "key:ab12", "status": 401, "src_ip": "192.0.2.7"})
'src_ip:192.0.2.7'
>>> entity_key({"kind": "prediction", "principal": "svc-a", "src_ip": "10.42.3.14"})
'src_ip:10.42.3.14'
>>> entity_key({"kind": "runtime", "namespace": "inference", "pod": "vllm-0"})
'pod:inference/vllm-0'
>>> partition_for("pod:inference/vllm-0", 4)
0
>>> route_key({"kind": "prediction", "principal": "svc-a", "src_ip": "10.42.3.14", "model": "digits"}, "model")
'model:digits'
>>> route_key({"kind": "prediction", "principal": "svc-a", "src_ip": "10.42.3.14", "model": "digits"}, "entity")
'src_ip:10.42.3.14'
>>> entity_key({"kind": "gpu", "gpu_uuid": "GPU-1", "node": "gpu-node-3"})
'node:gpu-node-3'
>>> route_key({"kind": "gpu", "gpu_uuid": "GPU-1", "node": "n1"}, "model") is None
True
"""

from __future__ import annotations

import zlib


def entity_key(event: dict) -> str:
    kind = event.get("kind")
    if kind == "prediction":
        ip = event.get("src_ip")
        return f"src_ip:{ip}" if ip else f"principal:{event.get('principal')}"
    if kind == "request":
        p = event.get("principal")
        if p is None or event.get("status") == 401:
            return f"src_ip:{event.get('src_ip')}"
        return f"principal:{p}"
    if kind == "gpu" or kind == "workload":
        n = event.get("node")
        if n:
            return f"node:{n}"
        return f"gpu:{event.get('gpu_uuid')}"
    if kind == "runtime":
        pod = event.get("pod")
        if pod:
            ns = event.get("namespace")
            return f"pod:{ns}/{pod}" if ns else f"pod:{pod}"
        node = event.get("node") or event.get("hostname")
        return f"node:{node}" if node else f"source:{event.get('source')}"
    return f"kind:{kind}"


ROUTES = ("entity", "model")
MODEL_KINDS = ("request", "prediction")


def route_key(event: dict, route: str) -> str | None:
    """The key an event is routed by for detectors of ``route`` (``Detector.route``).

    ``"entity"``: :func:`entity_key`. ``"model"``: ``model:<model>`` for a request or
    prediction that names a model, else ``None`` (the event does not reach model detectors).
    """
    if route == "entity":
        return entity_key(event)
    if route == "model":
        if event.get("kind") in MODEL_KINDS:
            m = event.get("model")
            if m:
                return f"model:{m}"
        return None
    raise ValueError(f"unknown route {route!r}; known: {', '.join(ROUTES)}")


def partition_for(key: str, partitions: int) -> int:
    """A stable partition for a key (CRC-32: the same in every process and every run)."""
    return zlib.crc32(key.encode()) % partitions
