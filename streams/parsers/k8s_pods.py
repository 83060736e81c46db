"""Kubernetes pods that hold GPUs (``kubectl get pods -o json``): the authorized GPU workloads.

Accepted documents: a ``List``/``PodList`` (``{"kind": "List", "items": [...]}``, what
``kubectl get pods -A -o json`` prints), a single ``Pod``, a JSON array of pods, watch events
(``{"type": "ADDED", "object": {Pod}}``, ``kubectl get pods -w -o json --output-watch-events``),
and JSON lines of any of these (``kubectl ... | jq -c '.items[]'``). The whole input is one
record (framing "document"); each pod is an item, so a malformed pod is dead-lettered alone
(``item`` = its index) and the others are kept.

A pod is a GPU workload when any container asks for a GPU resource in ``resources.limits``
(or ``requests``): ``nvidia.com/gpu``, ``amd.com/gpu``, any ``<vendor>/gpu``, NVIDIA MIG
slices (``nvidia.com/mig-1g.5gb``), renamed shared GPUs (``nvidia.com/gpu.shared``), Intel's
``gpu.intel.com/*``, plus ``Options.gpu_resources``. ``gpu_count`` follows the scheduler's
rule: the larger of the sum over containers and the largest init container. Pods without a
GPU are skipped and counted in ``pods_without_gpu``; other kinds in a List in ``non_pod_items``.

There is no principal; the entity is the GPU. The pod spec does not carry GPU UUIDs (the
device plugin picks them at admission), so ``gpu_uuid`` is None unless the UUIDs are visible:
in the annotation named by ``Options.gpu_uuid_annotation`` or in a container's literal
``NVIDIA_VISIBLE_DEVICES`` env (``GPU-...``/``MIG-...`` ids; ``all`` or indices say nothing).
A pod with known UUIDs yields one event per UUID (the entity of workload events is
``gpu_uuid``); otherwise one event with ``gpu_uuid`` None.

Times: ``start`` = ``status.startTime``, else ``metadata.creationTimestamp`` (a pending pod);
``end`` = the earlier of ``metadata.deletionTimestamp`` and, for a ``Succeeded``/``Failed``
pod, the latest ``containerStatuses[].state.terminated.finishedAt`` (a finished pod ended
when its last container did, however long it lingers before deletion); None while it runs.
``ts`` = ``start``.

Extra fields: ``gpu_count`` (int), ``gpu_resources`` (sorted resource names), ``phase``,
``images`` (init containers then containers, without repeats), ``service_account``,
``privileged`` (any container with ``securityContext.privileged: true``), ``pod_uid``.
"""

from __future__ import annotations

import re

import orjson
from pydantic import Field

from ramparts.errors import ParseError
from ramparts.timeutil import parse_iso

from .base import Parser, as_object, as_str, describe, dig, dump_item

_KUBECTL_HEAD = re.compile(
    rb'^\s*\{\s*"(?:apiVersion"\s*:\s*"v1"\s*,\s*"(?:items"\s*:\s*\[|kind"\s*:\s*"Pod")'
    rb'|kind"\s*:\s*"(?:Pod|PodList)")')
_POD_KIND = re.compile(rb'"kind"\s*:\s*"Pod"')
_UUID_SPLIT = re.compile(r"[\s,;]+")
_TERMINAL = ("Succeeded", "Failed")


def _is_gpu_resource(name: str) -> bool:
    domain, sep, res = name.partition("/")
    if not sep:
        return False
    return (res == "gpu" or res.startswith(("gpu.", "gpu-", "mig-"))
            or domain.startswith("gpu.") or domain.endswith(".gpu"))


def _quantity(v, what: str) -> int:
    if isinstance(v, bool):
        raise ParseError(f"{what}: expected a GPU count, got a boolean")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and v.strip().isdigit():
        n = int(v)
    else:
        raise ParseError(f"{what}: expected a whole number of GPUs, got {str(v)[:40]!r}")
    if n < 0:
        raise ParseError(f"{what}: negative GPU count {n}")
    return n


def _time(v, what: str) -> int | None:
    s = as_str(v, what)
    if s is None:
        return None
    try:
        return parse_iso(s)
    except ValueError as e:
        raise ParseError(f"{what}: {e}") from None


def _list(v, what: str) -> list:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ParseError(f"{what}: expected a list, got {type(v).__name__}")
    return v


def _uuids(text: str | None) -> list[str]:
    if not text:
        return []
    return [t for t in _UUID_SPLIT.split(text) if t.startswith(("GPU-", "MIG-"))]


class K8sPodsParser(Parser):
    name = "k8s_pods"
    kind = "workload"
    framing = "document"
    description = "Kubernetes pod list (kubectl get pods -o json): pods holding GPUs"

    class Options(Parser.Options):
        gpu_uuid_annotation: str | None = Field(
            default=None,
            description="Pod annotation whose value lists the GPU UUIDs given to the pod "
                        "(comma or space separated), when a device plugin or webhook writes one.")
        gpu_resources: tuple[str, ...] = Field(
            default=(), description="More extended-resource names that count as GPUs.")

    @classmethod
    def sniff(cls, head: bytes, lines: list[bytes]) -> bool:
        try:
            if _KUBECTL_HEAD.match(head):
                return _POD_KIND.search(head) is not None or b'"items"' in head[:200]
            if not lines or lines[0][:1] not in (b"{", b"["):
                return False
            doc = None
            for text in ((head, lines[0]) if len(head) < 65536 else (lines[0],)):
                try:
                    doc = orjson.loads(text)  # the whole small file, else its first JSON line
                    break
                except orjson.JSONDecodeError:
                    continue
            if isinstance(doc, list):
                doc = doc[0] if doc else None
            if not isinstance(doc, dict):
                return False
            if isinstance(doc.get("object"), dict) and "type" in doc:
                doc = doc["object"]
            kind = doc.get("kind")
            if kind == "Pod":
                return True
            items = doc.get("items")
            return (kind in ("List", "PodList") and isinstance(items, list) and bool(items)
                    and isinstance(items[0], dict) and items[0].get("kind") == "Pod")
        except Exception:
            return False

    # -- the document -------------------------------------------------------------------
    def parse_record(self, raw: bytes) -> list[dict]:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            lines = [l for l in raw.split(b"\n") if l.strip()]
            if len(lines) < 2:
                raise
            try:
                first = orjson.loads(lines[0])
            except orjson.JSONDecodeError:
                raise ParseError("invalid JSON: neither one JSON document nor JSON lines") from None
            if not isinstance(first, dict):
                raise ParseError("invalid JSON: neither one JSON document nor JSON lines") from None
            return self._json_lines(lines)
        out: list[dict] = []
        self._document(doc, out, item_base=0)
        return out

    def _json_lines(self, lines: list[bytes]) -> list[dict]:
        out: list[dict] = []
        base = 0
        for i, line in enumerate(lines):
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                self.reject(line, describe(e), item=base)
                base += 1
                continue
            try:
                base += self._document(doc, out, item_base=base, raw=line)
            except ParseError as e:  # a line that is not a pod document at all
                self.reject(line, describe(e), item=base)
                base += 1
        return out

    def _document(self, doc, out: list[dict], item_base: int, raw: bytes | None = None) -> int:
        """Add the events of one JSON document; returns how many items it held."""
        if isinstance(doc, dict):
            if isinstance(doc.get("items"), list):
                items = doc["items"]
            elif isinstance(doc.get("object"), dict) and "type" in doc:
                items = [doc["object"]]
            elif doc.get("kind") == "Pod" or "spec" in doc:
                items = [doc]
            else:
                raise ParseError("not a Kubernetes Pod, pod List or watch event "
                                 f"(kind {str(doc.get('kind'))[:40]!r})")
        elif isinstance(doc, list):
            items = doc
        else:
            raise ParseError(f"expected a pod list or a pod, got a JSON {type(doc).__name__}")
        for i, item in enumerate(items):
            try:
                out.extend(self._pod(item))
            except Exception as e:  # one bad pod never costs the others
                body = raw if raw is not None and len(items) == 1 else dump_item(item)
                self.reject(body, describe(e), item=item_base + i)
        return len(items)

    # -- one pod --------------------------------------------------------------------------
    def _pod(self, pod) -> list[dict]:
        pod = as_object(pod, "item")
        kind = pod.get("kind")
        if kind is not None and kind != "Pod":
            self.note("non_pod_items")
            return []
        meta = as_object(pod.get("metadata"), "metadata")
        name = as_str(meta.get("name"), "metadata.name")
        if name is None:
            raise ParseError("pod without metadata.name")
        namespace = as_str(meta.get("namespace"), "metadata.namespace")
        spec = as_object(pod.get("spec"), "spec")
        status = pod.get("status") or {}
        status = as_object(status, "status")
        containers = _list(spec.get("containers"), "spec.containers")
        inits = _list(spec.get("initContainers"), "spec.initContainers")

        extra = self.options.gpu_resources
        resources: set[str] = set()
        images: list[str] = []
        privileged = False
        uuids: list[str] = []
        total = 0
        init_max = 0
        for where, group in (("spec.initContainers", inits), ("spec.containers", containers)):
            for j, c in enumerate(group):
                c = as_object(c, f"{where}[{j}]")
                n = 0
                res = c.get("resources") or {}
                res = as_object(res, f"{where}[{j}].resources")
                limits = as_object(res.get("limits") or {}, f"{where}[{j}].resources.limits")
                requests = as_object(res.get("requests") or {}, f"{where}[{j}].resources.requests")
                for rname in set(limits) | set(requests):
                    if _is_gpu_resource(rname) or rname in extra:
                        q = limits[rname] if rname in limits else requests[rname]
                        k = _quantity(q, f"{where}[{j}].resources {rname}")
                        if k:
                            n += k
                            resources.add(rname)
                if where == "spec.containers":
                    total += n
                else:
                    init_max = max(init_max, n)
                image = as_str(c.get("image"), f"{where}[{j}].image")
                if image is not None and image not in images:
                    images.append(image)
                sc = c.get("securityContext")
                if isinstance(sc, dict) and sc.get("privileged") is True:
                    privileged = True
                for env in _list(c.get("env"), f"{where}[{j}].env"):
                    if isinstance(env, dict) and env.get("name") == "NVIDIA_VISIBLE_DEVICES":
                        uuids.extend(_uuids(as_str(env.get("value"), "NVIDIA_VISIBLE_DEVICES")))
        gpu_count = max(total, init_max)
        if gpu_count == 0:
            self.note("pods_without_gpu")
            return []

        annotation = self.options.gpu_uuid_annotation
        if annotation:
            annotations = meta.get("annotations") or {}
            if isinstance(annotations, dict):
                uuids = _uuids(as_str(annotations.get(annotation), f"annotation {annotation}")) + uuids
        uuids = list(dict.fromkeys(uuids))

        phase = as_str(status.get("phase"), "status.phase")
        start = _time(status.get("startTime"), "status.startTime")
        if start is None:
            start = _time(meta.get("creationTimestamp"), "metadata.creationTimestamp")
        if start is None:
            raise ParseError("pod has neither status.startTime nor metadata.creationTimestamp")
        ends = []
        deleted = _time(meta.get("deletionTimestamp"), "metadata.deletionTimestamp")
        if deleted is not None:
            ends.append(deleted)
        if phase in _TERMINAL:
            finished = None
            for j, cs in enumerate(_list(status.get("containerStatuses"), "status.containerStatuses")):
                where = f"status.containerStatuses[{j}].state.terminated"
                term = dig(as_object(cs, f"status.containerStatuses[{j}]"), "state.terminated")
                if term is None:
                    continue
                t = _time(as_object(term, where).get("finishedAt"), where + ".finishedAt")
                if t is not None and (finished is None or t > finished):
                    finished = t
            if finished is not None:
                ends.append(finished)
        end = min(ends) if ends else None

        base = {
            "kind": "workload", "ts": start, "source": "k8s_pods",
            "node": as_str(spec.get("nodeName"), "spec.nodeName"), "gpu_uuid": None,
            "namespace": namespace, "pod": name, "start": start, "end": end,
            "gpu_count": gpu_count, "gpu_resources": sorted(resources), "phase": phase,
            "images": images,
            "service_account": as_str(spec.get("serviceAccountName") or spec.get("serviceAccount"),
                                      "spec.serviceAccountName"),
            "privileged": privileged, "pod_uid": as_str(meta.get("uid"), "metadata.uid"),
        }
        if not uuids:
            return [base]
        return [dict(base, gpu_uuid=u) for u in uuids]
