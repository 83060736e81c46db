"""``ramparts alerts list|show|ack|deliver``: the incidents and notifications of the outbox."""

from __future__ import annotations

import getpass
import sys
import time

import orjson

from ramparts.detectors.base import SEVERITIES


def add_arguments(sub) -> None:
    p = sub.add_parser(
        "alerts", help="list, show and acknowledge incidents; deliver the outbox",
        description="Incidents and their notifications, from the outbox the worker writes "
                    "(alerting.outbox_dir). See docs/alerting.md.")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="list|show|ack|deliver")

    def common(q):
        q.add_argument("--config", metavar="FILE", default=None,
                       help="config file (default: ./ramparts.yaml if present)")
        q.add_argument("--outbox", metavar="DIR", default=None, help="outbox directory (default: alerting.outbox_dir)")

    q = asub.add_parser("list", help="incidents, most recently updated first")
    common(q)
    q.add_argument("--status", choices=["open", "resolved", "acked"], default=None)
    q.add_argument("--severity", choices=SEVERITIES, default=None, help="this severity or worse")
    q.add_argument("--detector", default=None, help="detector name or glob (extraction.*)")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    q.set_defaults(func=_cmd_list)

    q = asub.add_parser("show", help="one incident: its last alert and every notification's delivery")
    common(q)
    q.add_argument("id", help="incident id")
    q.set_defaults(func=_cmd_show)

    q = asub.add_parser("ack", help="acknowledge an incident (PagerDuty and webhooks are told; no re-notifying)")
    common(q)
    q.add_argument("id", help="incident id")
    q.add_argument("--by", default=None, help="who acknowledges (default: the login name)")
    q.set_defaults(func=_cmd_ack)

    q = asub.add_parser("deliver", help="deliver what the outbox holds (the worker does this itself)")
    common(q)
    q.add_argument("--until-empty", action="store_true",
                   help="stop once nothing is pending or retrying (else run until Ctrl-C)")
    q.add_argument("--max-seconds", type=float, default=None, help="stop after this long in any case")
    q.set_defaults(func=_cmd_deliver)


def _open(args):
    from ramparts.config import load_config

    from .outbox import Outbox

    from pathlib import Path

    from ramparts.errors import RampartsError

    from .outbox import FILENAME

    config = load_config(args.config)
    where = Path(args.outbox or config.alerting.outbox_dir)
    if not (where / FILENAME).is_file():
        raise RampartsError(f"no outbox in {where} (alerting.outbox_dir, or --outbox DIR): the worker creates it "
                            "when it starts")
    return config, Outbox(where)


def _fmt_ns(ns) -> str:
    from ramparts.timeutil import format_rfc3339

    return format_rfc3339(ns) if isinstance(ns, int) else "-"


def _cmd_list(args) -> int:
    _, box = _open(args)
    rows = box.incidents(status=args.status, severity=args.severity, detector=args.detector, limit=args.limit)
    out = sys.stdout
    if args.json:
        for r in rows:
            out.write(orjson.dumps(_public(r)).decode() + "\n")
        return 0
    if not rows:
        print("no incidents", file=sys.stderr)
        return 0
    out.write(f"{'ID':24}  {'SEVERITY':8}  {'STATUS':8}  {'EVENTS':>7}  {'LAST EVENT':30}  {'DETECTOR':20}  ENTITY\n")
    for r in rows:
        status = "acked" if r["acked_at"] is not None and r["status"] == "open" else r["status"]
        out.write(f"{r['id']:24}  {r['severity']:8}  {status:8}  {r['event_count']:>7}  {_fmt_ns(r['last_ts']):30}  "
                  f"{r['detector']:20}  {r['entity_type']}:{r['entity_id']}\n")
    return 0


def _public(r: dict) -> dict:
    from ramparts.streams.pipeline import alert_to_wire

    return {"id": r["id"], "status": r["status"], "severity": r["severity"], "detector": r["detector"],
            "entity": {"type": r["entity_type"], "id": r["entity_id"]}, "event_count": r["event_count"],
            "acked_by": r["acked_by"], "acked_at": r["acked_at"], "alert": alert_to_wire(r["alert"])}


def _cmd_show(args) -> int:
    from ramparts.errors import RampartsError

    _, box = _open(args)
    r = box.incident(args.id)
    if r is None:
        raise RampartsError(f"no incident {args.id!r} in {box.path}; `ramparts alerts list` shows the ids")
    doc = _public(r)
    doc["notifications"] = [
        {"id": n["id"], "output": n["output"], "event": n["event"], "status": n["status"], "attempts": n["attempts"],
         "last_status": n["last_status"], "last_error": n["last_error"]} for n in box.notifications(args.id)]
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _cmd_ack(args) -> int:
    from ramparts.errors import RampartsError
    from ramparts.sinks.outputs import build_outputs

    config, box = _open(args)
    by = args.by or getpass.getuser()
    r = box.ack(args.id, by, build_outputs(config, resolve=False))
    if r is None:
        raise RampartsError(f"no incident {args.id!r} in {box.path}; `ramparts alerts list` shows the ids")
    print(f"incident {args.id} acknowledged by {by}", file=sys.stderr)
    return 0


def _cmd_deliver(args) -> int:
    from ramparts.sinks.outputs import build_outputs

    from .delivery import Deliverer

    config, box = _open(args)
    outputs = build_outputs(config)
    if not outputs:
        print("no outputs configured (outputs: in the config)", file=sys.stderr)
        return 0
    d = Deliverer.from_config(config, box, outputs)
    start = time.monotonic()
    d.start()
    try:
        while True:
            time.sleep(0.1)
            if args.max_seconds is not None and time.monotonic() - start > args.max_seconds:
                break
            if args.until_empty and d.pending() == 0:
                break
    except KeyboardInterrupt:
        pass
    finally:
        d.stop()
    for name, s in d.stats().items():
        print(f"{name}: delivered {s['delivered_total']}, retried {s['retried_total']}, failed {s['failed_total']}, "
              f"pending {s['queue_depth']}", file=sys.stderr)
    return 0
