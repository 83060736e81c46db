"""Alerting in the real worker: Tansu broker, two workers in one group, a webhook receiver on loopback.

Failed-login storms from several addresses, shipped through Kafka and judged by workers that
split the partitions, reach the receiver as one signed ``firing`` notification per address,
each once or marked as a redelivery; the store holds the same incident ids.
"""

from __future__ import annotations

import time

import orjson
from standardwebhooks.webhooks import Webhook


from ..streaming.harness import Stack, open_store
from .receivers import Receiver
from .test_payloads import SECRET

ADDRESSES = [f"198.51.100.{i}" for i in range(1, 7)]


def storm_log(path) -> str:
    lines = []
    for sec in range(120):  # two minutes; every address fails 5 times a second (incidents open at 20 in 60 s)
        for ip in ADDRESSES:
            for k in range(5):
                lines.append(f'{ip} - - [02/Mar/2026:09:{sec // 60:02d}:{sec % 60:02d} +0000] '
                             f'"POST /v1/chat/completions HTTP/1.1" 401 12 "-" "stuffer/{k}"')
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_storms_through_two_workers_reach_the_receiver_as_one_signed_notification_per_incident(broker, tmp_path):
    with Receiver() as rx:
        outputs = [{"type": "webhook", "url": rx.url + "/hook", "secret_env": "TEST_HOOK_SECRET", "min_severity": "low"}]
        stack = Stack(broker.bootstrap, tmp_path, env={"RAMPARTS_OUTPUTS": orjson.dumps(outputs).decode(),
                                                        "TEST_HOOK_SECRET": SECRET})
        try:
            a = stack.worker("a").start()
            b = stack.worker("b").start()
            shipped = stack.ship([storm_log(tmp_path / "storm.log")])
            assert shipped.records == 120 * 6 * 5
            assert stack.wait_consumed(alive=lambda: a.alive() and b.alive()), a.log_tail() + b.log_tail()
            for _ in range(600):  # bounded: delivery runs beside the workers
                if len({r["headers"]["webhook-id"] for r in rx.requests}) >= len(ADDRESSES):
                    break
                time.sleep(0.05)
        finally:
            stack.stop_all()
    firing = {}
    for r in rx.requests:
        body = Webhook(SECRET).verify(r["body"], r["headers"])
        wid = r["headers"]["webhook-id"]
        assert wid not in firing or "ramparts-redelivery" in r["headers"], f"{wid} twice, unmarked"
        firing[wid] = body["data"]
    assert sorted(d["alert"]["entity"]["id"] for d in firing.values()) == ADDRESSES
    assert {d["event"] for d in firing.values()} == {"firing"}
    incident_ids = {d["incident_id"] for d in firing.values()}
    stored = set()
    for name in ("a", "b"):
        store = open_store(tmp_path / f"store-{name}")
        try:
            stored |= {r["id"] for r in store.query("SELECT id FROM ramparts.alerts FINAL")}
        finally:
            store.close()
    assert stored == incident_ids
