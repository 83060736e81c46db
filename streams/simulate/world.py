"""The simulated estate: who calls which model from where, which GPUs run which pods, and when.

A :class:`World` is built once per run from the seed and the time span. Benign generators
(``benign.py``) and attack injectors (``attacks/``) read it and append records to its
:class:`Output`; attacks run first, so they can also change what the benign generators will
produce (a GPU taken over by a miner is still scraped by the same DCGM exporter).

Every random choice comes from :meth:`World.rng` with a name, so adding a generator or an
attack does not shift the draws of the others, and one seed gives the same bytes on every
machine (``random.Random`` seeded with text is stable across Python runs and platforms).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from ramparts.redact import Hasher
from ramparts.timeutil import NS, format_rfc3339

FORMATS = ("envoy_json", "kserve", "dcgm", "falco", "k8s_audit", "k8s_pods")

# Envoy AI Gateway routes to these (vLLM backends); the last one is an embedding model.
CHAT_MODELS = ("llama-3-8b-instruct", "mistral-7b-instruct-v0.3", "qwen2.5-32b-instruct")
EMBED_MODEL = "bge-m3"
GATEWAY_MODELS = CHAT_MODELS + (EMBED_MODEL,)
# KServe predictors with payload logging on: (model, protocol, feature count, version).
KSERVE_MODELS = (("fraud-xgb", "v2", 8, "3"), ("churn-lgbm", "v1", 6, None))

USER_AGENTS = ("OpenAI/Python 1.54.4", "OpenAI/NodeJS 4.73.0", "langchain-openai/0.2.9 OpenAI/Python 1.54.4",
               "python-httpx/0.27.2", "LiteLLM/1.52.0", "curl/8.5.0")


@dataclass(slots=True)
class Principal:
    """An API client of the gateway: one key, a usual source, usual models, a share of the traffic."""

    name: str  # who it is (never written to the gateway log: Envoy logs the key)
    api_key: str
    src_ips: tuple[str, ...]
    user_agent: str
    models: tuple[str, ...]
    weight: float  # share of the gateway's request rate
    error_rate: float  # client errors (400/413/429) it tends to cause


@dataclass(slots=True)
class Gpu:
    node: str
    index: int
    uuid: str
    model_name: str
    pod: tuple[str, str, str] | None = None  # (namespace, pod, container) the exporter maps it to
    busy: float = 0.0  # typical utilisation of its authorized work (0 when idle)


@dataclass(slots=True)
class Workload:
    """A pod that holds GPUs (what ``kubectl get pods`` lists as authorized GPU work)."""

    namespace: str
    pod: str
    container: str
    image: str
    node: str
    gpus: tuple[str, ...]  # UUIDs
    serves: str | None  # the model it serves, for model-serving pods
    started_ns: int


@dataclass(frozen=True, slots=True)
class GpuLoad:
    """What DCGM reports for a GPU under one kind of work (values are centres; noise is added)."""

    util_pct: float
    fb_used_mib: float
    power_w: float
    tensor_active: float
    sm_active: float
    pcie_tx_bytes: float  # bytes per second
    pcie_rx_bytes: float
    mem_copy_pct: float | None = None  # memory-copy utilisation; None: derived from the load


@dataclass(slots=True)
class Label:
    """One labelled attack interval of the ground truth (times in ns)."""

    name: str
    detector: str  # the SPEC alert family expected to catch it
    entity_type: str
    entity_id: str
    start: int
    end: int
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "detector": self.detector,
                "entity": {"type": self.entity_type, "id": self.entity_id},
                "start": format_rfc3339(self.start), "end": format_rfc3339(self.end),
                "description": self.description}


class Output:
    """The records of one run, per format, each with its event time, written in time order.

    Records of the same instant keep the order they were added in, so a generator that
    writes a DCGM scrape metric by metric, or the stages of one audit request, keeps it.
    """

    def __init__(self) -> None:
        self._records: dict[str, list[tuple[int, int, bytes]]] = {f: [] for f in FORMATS if f != "k8s_pods"}
        self._seq = 0
        self.header: dict[str, bytes] = {}  # written once at the top (DCGM's HELP/TYPE lines)
        self.document: dict[str, tuple[bytes, int]] = {}  # one-document formats (the pod list): body, items

    def add(self, fmt: str, ts_ns: int, line: bytes) -> None:
        self._seq += 1
        self._records[fmt].append((ts_ns, self._seq, line))

    def count(self, fmt: str) -> int:
        """Records of a format: lines, or the items of a one-document format."""
        if fmt in self.document:
            return self.document[fmt][1]
        return len(self._records[fmt])

    def body(self, fmt: str) -> bytes:
        if fmt in self.document:
            return self.document[fmt][0]
        recs = sorted(self._records[fmt])
        return self.header.get(fmt, b"") + b"".join(line + b"\n" for _ts, _seq, line in recs)


@dataclass
class World:
    seed: int
    start: int  # ns
    end: int  # ns
    rate: float  # mean gateway requests per second
    principals: list[Principal] = field(default_factory=list)
    gpus: list[Gpu] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    # GPU UUID -> [(start ns, end ns, load)]: work the benign telemetry must show on that GPU
    # instead of its usual load (an attack's miner, say).
    gpu_overrides: dict[str, list[tuple[int, int, GpuLoad]]] = field(default_factory=dict)
    out: Output = field(default_factory=Output)
    hasher: Hasher = field(default_factory=Hasher)

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / NS

    def rng(self, name: str) -> random.Random:
        """An independent random stream for one generator or attack, fixed by seed and name."""
        return random.Random(f"ramparts-simulate:{self.seed}:{name}")

    def at(self, fraction: float) -> int:
        """The instant ``fraction`` of the way through the run (ns)."""
        return self.start + int((self.end - self.start) * fraction)

    def principal_id(self, api_key: str) -> str:
        """The principal id the gateway parsers give this key (its keyed hash).

        Under the same hash key as the pipeline: ``RAMPARTS_HASH_KEY`` when set, else the
        development key.
        """
        return self.hasher.principal(api_key)

    def serving_pods(self) -> list[Workload]:
        return [w for w in self.workloads if w.serves is not None]

    def override_gpu(self, uuid: str, start: int, end: int, load: GpuLoad) -> None:
        self.gpu_overrides.setdefault(uuid, []).append((start, end, load))

    def gpu(self, uuid: str) -> Gpu:
        for g in self.gpus:
            if g.uuid == uuid:
                return g
        raise KeyError(uuid)


# -- building the estate ----------------------------------------------------------------------
_FIRST = ("ana", "ben", "chen", "dara", "eli", "farah", "gus", "hana", "ivan", "jo", "kai", "lena",
          "mo", "nadia", "omar", "priya", "quinn", "ravi", "sara", "tomas", "uma", "vik", "wen", "yuki")
_TEAMS = ("search", "support-bot", "risk", "marketing-gen", "code-assist", "docs-qa", "sales-copilot",
          "data-eng", "legal-review", "hr-helpdesk")

H100 = "NVIDIA H100 80GB HBM3"
L40S = "NVIDIA L40S"


def uuid_text(r: random.Random) -> str:
    """A random (version 4) UUID drawn from ``r``: request ids, CloudEvent ids, audit ids, GPUs."""
    return str(uuid.UUID(int=r.getrandbits(128), version=4))


def api_key(r: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "sk-proj-" + "".join(r.choice(alphabet) for _ in range(32))


def build_world(seed: int, start: int, end: int, rate: float, n_principals: int = 36) -> World:
    """The estate every scenario shares: principals, GPU nodes and the pods authorized on them."""
    w = World(seed=seed, start=start, end=end, rate=rate)
    r = w.rng("world")

    # Principals: people and team services behind a few office NATs, plus in-cluster callers.
    nats = [f"198.51.100.{r.randrange(2, 250)}" for _ in range(4)] + [f"203.0.113.{r.randrange(2, 250)}" for _ in range(3)]
    for i in range(n_principals):
        if i % 3 == 0:
            name = f"svc-{_TEAMS[i // 3 % len(_TEAMS)]}"
            ips = (f"10.42.{r.randrange(0, 8)}.{r.randrange(2, 250)}",)
            ua = r.choice(("OpenAI/Python 1.54.4", "LiteLLM/1.52.0", "python-httpx/0.27.2"))
        else:
            name = f"{_FIRST[i % len(_FIRST)]}.{r.choice(_TEAMS)}"
            ips = tuple(r.sample(nats, 1 + (r.random() < 0.3)))
            ua = r.choice(USER_AGENTS)
        k = 1 + (r.random() < 0.4)
        models = tuple(r.sample(CHAT_MODELS, k)) + ((EMBED_MODEL,) if r.random() < 0.3 else ())
        w.principals.append(Principal(
            name=name, api_key=api_key(r), src_ips=ips, user_agent=ua, models=models,
            weight=r.lognormvariate(0.0, 0.9), error_rate=r.choice((0.005, 0.01, 0.02, 0.05))))
    total = sum(p.weight for p in w.principals)
    for p in w.principals:
        p.weight /= total

    # Three GPU nodes. gpu-node-1/2 serve models and fine-tune; gpu-node-3 has spare GPUs.
    layout = [("gpu-node-1", H100, 4), ("gpu-node-2", H100, 4), ("gpu-node-3", L40S, 4)]
    for node, model_name, n in layout:
        for idx in range(n):
            w.gpus.append(Gpu(node=node, index=idx, uuid="GPU-" + uuid_text(r), model_name=model_name))

    def place(namespace, pod, container, image, node, idxs, serves, busy, age_h):
        uuids = []
        for g in w.gpus:
            if g.node == node and g.index in idxs:
                g.pod = (namespace, pod, container)
                g.busy = busy
                uuids.append(g.uuid)
        w.workloads.append(Workload(namespace, pod, container, image, node, tuple(uuids), serves,
                                    start - int(age_h * 3600 * NS)))

    place("inference", "vllm-llama-3-8b-instruct-0", "vllm", "vllm/vllm-openai:v0.6.4", "gpu-node-1", (0,),
          "llama-3-8b-instruct", 55.0, 50.2)
    place("inference", "vllm-llama-3-8b-instruct-1", "vllm", "vllm/vllm-openai:v0.6.4", "gpu-node-1", (1,),
          "llama-3-8b-instruct", 50.0, 50.1)
    place("inference", "vllm-mistral-7b-instruct-0", "vllm", "vllm/vllm-openai:v0.6.4", "gpu-node-1", (2,),
          "mistral-7b-instruct-v0.3", 40.0, 120.5)
    place("inference", "vllm-qwen2-5-32b-instruct-0", "vllm", "vllm/vllm-openai:v0.6.4", "gpu-node-2", (0, 1),
          "qwen2.5-32b-instruct", 45.0, 30.0)
    place("inference", "tei-bge-m3-0", "tei", "ghcr.io/huggingface/text-embeddings-inference:1.5", "gpu-node-1",
          (3,), "bge-m3", 20.0, 200.0)
    place("models", "fraud-xgb-predictor-00003-deployment-7d9c8", "kserve-container",
          "kserve/xgbserver:v0.14.0", "gpu-node-3", (0,), "fraud-xgb", 12.0, 72.0)
    place("training", "llm-finetune-lora-0", "trainer", "nvcr.io/nvidia/pytorch:24.10-py3", "gpu-node-2", (2, 3),
          None, 96.0, 5.5)
    # gpu-node-3 GPUs 1-3 hold no pod: idle spare capacity (what a miner would take).
    return w
