"""Credential stuffing against the gateway: one address tries many API keys in about a minute.

Every attempt is refused at the gateway (401 for an unknown key, now and then 403 for a key
that exists but may not use the model), answered in a few milliseconds with no upstream.
Expected alert: ``access.stuffing`` on the source address.
"""

from __future__ import annotations

from ramparts.timeutil import NS

from .. import formats as fmt
from ..benign import GATEWAY_HOST, request_id
from ..world import CHAT_MODELS, Label, World, api_key
from . import Attack

ATTACKER_IP = "192.0.2.77"


def inject(world: World, start: int, end: int) -> list[Label]:
    r = world.rng("attack:credential-stuffing")
    length = min(60 * NS, end - start)
    first = start + int(r.uniform(0, (end - start - length) / NS) * NS) if end - start > length else start
    stop = first + length
    t = first
    last, n = first, 0
    while t < stop:
        status = 401 if r.random() < 0.93 else 403
        world.out.add("envoy_json", t, fmt.envoy_line(
            ts=t, method="POST", path="/v1/chat/completions", status=status, flags="-",
            bytes_in=r.randrange(180, 260), bytes_out=61 if status == 401 else 58, duration_ms=r.randrange(0, 3),
            upstream_ms=None, src_ip=ATTACKER_IP, user_agent="python-requests/2.31.0",
            request_id=request_id(r), authority=GATEWAY_HOST, upstream_host=None, api_key=api_key(r),
            model=r.choice(CHAT_MODELS), backend=None, tokens_in=None, tokens_out=None))
        last, n = t, n + 1
        t += int(r.expovariate(12.0) * NS) + 1  # ~12 attempts a second, as a threaded script does
    return [Label("credential-stuffing", "access.stuffing", "src_ip", ATTACKER_IP, first, last,
                  f"{n} requests with distinct API keys from one address in {(last - first) / NS:.0f} s, "
                  "all refused with 401/403")]


ATTACK = Attack("credential-stuffing", "a burst of 401/403 from one address trying many API keys (~1 minute)",
                inject)
