"""A stolen API key used from a new network: a principal's key, well known to the gateway, now
also calls from an address its owner never used (a VPS range), for a model it never calls.

The owner keeps working as usual; the thief's requests succeed (the key is valid). Expected
alerts: ``access.new_source`` on the principal (and ``access.new_model`` when the thief's
model is outside the owner's set).
"""

from __future__ import annotations

from ramparts.timeutil import NS

from .. import formats as fmt
from ..benign import GATEWAY_HOST, request_id
from ..world import CHAT_MODELS, Label, World
from . import Attack

THIEF_IP = "185.220.101.34"


def inject(world: World, start: int, end: int) -> list[Label]:
    r = world.rng("attack:stolen-key")
    # The busiest person's key: its habits are learned long before the theft.
    victim = max((p for p in world.principals if not p.name.startswith("svc-")), key=lambda p: p.weight)
    other = [m for m in CHAT_MODELS if m not in victim.models]
    model = other[0] if other else CHAT_MODELS[-1]
    t, first, last, n = start + int(r.uniform(5, 30) * NS), None, None, 0
    stop = min(end, start + 240 * NS)
    while t < stop:
        tin, tout = r.randrange(200, 3000), r.randrange(100, 900)
        world.out.add("envoy_json", t, fmt.envoy_line(
            ts=t, method="POST", path="/v1/chat/completions", status=200, flags="-",
            bytes_in=tin * 4 + 300, bytes_out=tout * 4 + 400, duration_ms=400 + tout * 12, upstream_ms=395 + tout * 12,
            src_ip=THIEF_IP, user_agent="python-requests/2.31.0", request_id=request_id(r), authority=GATEWAY_HOST,
            upstream_host="10.42.2.11:8000", api_key=victim.api_key, model=model,
            backend="inference/vllm-qwen2-5-32b-instruct/route/0", tokens_in=tin, tokens_out=tout))
        first = first or t
        last, n = t, n + 1
        t += int(r.expovariate(0.5) * NS) + 1
    pid = world.principal_id(victim.api_key)
    labels = [Label("stolen-key", "access.new_source", "principal", pid, first, last,
                    f"{n} successful requests with {victim.name}'s key from {THIEF_IP}, a network it never used")]
    if model not in victim.models:
        labels.append(Label("stolen-key", "access.new_model", "principal", pid, first, last,
                            f"the stolen key calls {model}, outside its owner's models ({', '.join(victim.models)})"))
    return labels


ATTACK = Attack("stolen-key", "a principal's API key used from a new network (and for a model it never calls)",
                inject)
