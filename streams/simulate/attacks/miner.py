"""A crypto-miner on a spare GPU: a pod that asked for no GPU runs xmrig with CUDA on one.

The pod (privileged, ``NVIDIA_VISIBLE_DEVICES=all``) holds no ``nvidia.com/gpu``, so the
device plugin never assigned it one and the pod list shows no authorized work on that GPU;
dcgm-exporter, which maps GPUs to pods through the kubelet's pod-resources API, writes no
pod labels for it. DCGM shows the miner's signature: utilisation pinned at 100 %, tensor
pipes idle, little memory, near-zero PCIe after start-up. Falco catches the Stratum URL on
the command line about twenty seconds in.

Expected alerts: ``gpu.unauthorized`` on the GPU (within two samples), ``gpu.miner`` on the pod
(Falco's miner rule, xmrig) and on the GPU (the signature, a few minutes in).
"""

from __future__ import annotations

from ramparts.timeutil import NS

from .. import formats as fmt
from ..benign import SCRAPE_INTERVAL_S
from ..world import GpuLoad, Label, World
from . import Attack

SIGNATURE_SAMPLES = 11  # start-up (2) + window (8) + the sample that completes it
NAMESPACE, POD, CONTAINER = "ml-sandbox", "jupyter-dev-5f6c7d8b9-x2lkq", "notebook"
IMAGE_REPO, IMAGE_TAG = "jupyter/scipy-notebook", "2024-10-07"
CMDLINE = "xmrig -o stratum+tcp://xmr.pool.example.net:3333 -u 4AdUndXHHZ6cfufTMvppY6JwXNouMBzSkbLYfpAV5Usx -p x --cuda --no-cpu"


def miner_load(r) -> GpuLoad:
    return GpuLoad(util_pct=100, fb_used_mib=2_310 + r.uniform(-5, 5), power_w=0, tensor_active=0.000001,
                   sm_active=0.99, pcie_tx_bytes=21_000, pcie_rx_bytes=34_000)


def inject(world: World, start: int, end: int) -> list[Label]:
    r = world.rng("attack:crypto-miner")
    spare = [g for g in world.gpus if g.pod is None]
    gpu = spare[r.randrange(len(spare))]
    load = miner_load(r)
    world.override_gpu(gpu.uuid, start, end, load)

    at = start + int(min(r.uniform(12, 25), (end - start) / NS / 2) * NS)
    cid = f"{r.getrandbits(48):012x}"
    world.out.add("falco", at, fmt.falco_alert(
        ts=at, hostname=gpu.node, rule="Detect crypto miners using the Stratum protocol", priority="Critical",
        output=(f"Possible miner running (command={CMDLINE} pid={r.randrange(200, 4000)} "
                f"container={CONTAINER} (id={cid}) image={IMAGE_REPO} exe_flags=EXE_WRITABLE "
                f"k8s.ns={NAMESPACE} k8s.pod={POD})"),
        tags=["T1496", "container", "host", "maturity_sandbox", "mitre_impact", "process"],
        fields={"container.id": cid, "container.image.repository": IMAGE_REPO, "container.image.tag": IMAGE_TAG,
                "container.name": CONTAINER, "k8s.ns.name": NAMESPACE, "k8s.pod.name": POD,
                "proc.cmdline": CMDLINE, "proc.name": "xmrig", "proc.pname": "bash", "proc.aname[2]": "jupyter-lab",
                "user.name": "jovyan"}))
    labels = []
    # The signature needs a window of samples after start-up (gpu.miner's defaults: 2 + 8,
    # at the exporter's interval): a shorter run of the miner is caught by the rest only.
    if end - start >= SIGNATURE_SAMPLES * SCRAPE_INTERVAL_S * NS:
        labels.append(Label("crypto-miner", "gpu.miner", "gpu", gpu.uuid, start, end,
                            "the miner signature: flat 100% load, tensor pipes idle, near-zero PCIe, constant power"))
    return labels + [
        Label("crypto-miner", "gpu.unauthorized", "gpu", gpu.uuid, start, end,
              f"{gpu.node} GPU {gpu.index} at 100% utilisation, tensor pipes idle, with no authorized pod"),
        Label("crypto-miner", "gpu.miner", "pod", f"{NAMESPACE}/{POD}", at, end,
              "Falco 'Detect crypto miners using the Stratum protocol' (Critical): xmrig with a stratum+tcp pool"),
    ]


ATTACK = Attack("crypto-miner", "a GPU busy at 100% with no authorized pod, and Falco's Stratum miner alert",
                inject)
