"""GPU scenarios: a miner inside an authorized pod, and the benign work that must not alarm.

* ``miner-in-pod``: a research notebook authorized on a spare GPU of gpu-node-3 (it asked for
  ``nvidia.com/gpu: 1`` and the pod list says so) runs a CUDA miner instead of its work. The
  authorization is real, so ``gpu.unauthorized`` stays silent; the telemetry shows the miner
  signature (flat 100 % load, tensor pipes idle, little memory, near-zero PCIe after the
  first samples, constant power). Expected: ``gpu.miner`` on the GPU.
* ``stress-test``: an authorized burn-in (``gpu_burn``) on a spare GPU: flat 100 % load,
  tensor pipes idle, like a miner, but with 90 % of memory and heavy memory traffic, as
  gpu_burn allocates by default. Benign: the ground truth lists it (detector ``none``).
* ``inference-burst``: a serving GPU in bursts: minutes near full load with busy tensor
  pipes, then lulls. Benign (detector ``none``).

The benign placements are labelled with detector ``none`` so that a benchmark can count any
alert on their GPU as a false alarm.
"""

from __future__ import annotations

from ramparts.timeutil import NS

from ..world import GpuLoad, Label, World, Workload
from . import Attack
from .miner import miner_load


def _spare(world: World, name: str):
    r = world.rng(name)
    spare = [g for g in world.gpus if g.pod is None and g.uuid not in world.gpu_overrides]
    return r, spare[r.randrange(len(spare))]


def _authorize(world: World, gpu, namespace: str, pod: str, container: str, image: str, started: int) -> None:
    gpu.pod = (namespace, pod, container)
    world.workloads.append(Workload(namespace, pod, container, image, gpu.node, (gpu.uuid,), None, started))


def inject_miner_in_pod(world: World, start: int, end: int) -> list[Label]:
    r, gpu = _spare(world, "attack:miner-in-pod")
    ns, pod = "research", "notebook-ravi-7f9c4d-0"
    _authorize(world, gpu, ns, pod, "notebook", "nvcr.io/nvidia/pytorch:24.10-py3", world.start - 3 * 3600 * NS)
    # Start-up: the miner copies its data set over PCIe, then settles.
    warm = min(30 * NS, (end - start) // 4)
    load = miner_load(r)
    world.override_gpu(gpu.uuid, start, start + warm, GpuLoad(100, load.fb_used_mib, 0, 0.000001, 0.99, 4.0e9, 6.5e9))
    world.override_gpu(gpu.uuid, start + warm, end, load)
    return [Label("miner-in-pod", "gpu.miner", "gpu", gpu.uuid, start, end,
                  f"{gpu.node} GPU {gpu.index}, authorized to {ns}/{pod}, runs a CUDA miner: flat 100% load, "
                  "tensor pipes idle, near-zero PCIe after start-up")]


def inject_stress_test(world: World, start: int, end: int) -> list[Label]:
    r, gpu = _spare(world, "benign:stress-test")
    ns, pod = "gpu-validation", "gpu-burn-node3-k8x2p"
    _authorize(world, gpu, ns, pod, "gpu-burn", "ghcr.io/example/gpu-burn:2024.10", start - 20 * NS)
    total = 81559 if "H100" in gpu.model_name else 46068
    world.override_gpu(gpu.uuid, start, end, GpuLoad(100, 0.9 * total, 0, 0.0, 0.99, 60_000, 90_000,
                                                     mem_copy_pct=r.uniform(38, 46)))
    return [Label("stress-test", "none", "gpu", gpu.uuid, start, end,
                  f"authorized gpu_burn on {gpu.node} GPU {gpu.index} ({ns}/{pod}): 100% load, 90% memory")]


def inject_inference_burst(world: World, start: int, end: int) -> list[Label]:
    r = world.rng("benign:inference-burst")
    gpu = next(g for g in world.gpus if g.pod is not None and g.pod[0] == "inference")
    t, high = start, True
    while t < end:
        span = int(r.uniform(60, 150) * NS)
        util = r.uniform(90, 99) if high else r.uniform(4, 12)
        total = 81559 if "H100" in gpu.model_name else 46068
        world.override_gpu(gpu.uuid, t, min(end, t + span),
                           GpuLoad(util, 0.9 * total, 0, util / 100 * 0.55, util / 100 * 0.9, util * 2.6e6, util * 5e6))
        t += span
        high = not high
    return [Label("inference-burst", "none", "gpu", gpu.uuid, start, end,
                  f"bursty inference on {gpu.node} GPU {gpu.index} ({'/'.join(gpu.pod[:2])})")]


MINER_IN_POD = Attack("miner-in-pod", "a CUDA miner inside a pod authorized on a GPU (the miner signature)",
                      inject_miner_in_pod)
STRESS_TEST = Attack("stress-test", "benign: an authorized gpu_burn stress test (busy, tensor idle, 90% memory)",
                     inject_stress_test)
INFERENCE_BURST = Attack("inference-burst", "benign: a serving GPU alternating bursts near full load and lulls",
                         inject_inference_burst)
ATTACKS = [MINER_IN_POD, STRESS_TEST, INFERENCE_BURST]
