"""``ramparts playbook list|run|approve|deny|revert|audit|tick|serve`` (docs/playbooks.md)."""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager

from ramparts.errors import RampartsError


def add_arguments(sub) -> None:
    p = sub.add_parser("playbook", help="response playbooks: list, run, approve, deny, revert, audit",
                       description="Response playbooks (docs/playbooks.md).")
    psub = p.add_subparsers(dest="playbook_command", required=True,
                            metavar="list|run|approve|deny|revert|audit|tick|serve")

    def common(q, store=True):
        q.add_argument("--config", metavar="FILE", default=None, help="config file (default: ./ramparts.yaml if present)")
        if store:
            q.add_argument("--store", metavar="DSN", default=None,
                           help="store of the audit log (default: store.dsn)")
            q.add_argument("--state-dir", metavar="DIR", default=None, help="engine state (default: playbooks.state_dir)")

    q = psub.add_parser("list", help="the playbooks (validated), or the runs with --runs")
    common(q, store=False)
    q.add_argument("--runs", action="store_true", help="list runs from the engine's state instead")
    q.add_argument("--status", default=None, help="with --runs: only runs in this status (awaiting_approval ...)")
    q.add_argument("--state-dir", metavar="DIR", default=None)
    q.set_defaults(func=_cmd_list)

    q = psub.add_parser("run", help="run playbooks on incidents (JSON object or JSON lines, e.g. replay --alerts-out)")
    common(q)
    q.add_argument("name", nargs="?", default=None, help="this playbook, trigger or not (default: every matching one)")
    q.add_argument("--incident", metavar="FILE", required=True, help="incidents file, - for stdin")
    q.set_defaults(func=_cmd_run)

    for verb in ("approve", "deny"):
        q = psub.add_parser(verb, help=f"{verb} a run waiting for approval")
        common(q)
        q.add_argument("id", help="run id (run-...)")
        q.add_argument("--by", default=None, help="who decides (default: the login name)")
        q.set_defaults(func=_cmd_decide, verb=verb)

    q = psub.add_parser("revert", help="undo a run's done steps, last first")
    common(q)
    q.add_argument("id", help="run id")
    q.add_argument("--by", default=None)
    q.set_defaults(func=_cmd_revert)

    q = psub.add_parser("audit", help="the audit log; --verify checks its hash chain")
    common(q)
    q.add_argument("--run", default=None, help="only this run's records")
    q.add_argument("--verify", action="store_true", help="check the chain; exit 1 if a record was edited or deleted")
    q.add_argument("--json", action="store_true", help="JSON lines")
    q.set_defaults(func=_cmd_audit)

    q = psub.add_parser("tick", help="run the reverts that are due now")
    common(q)
    q.set_defaults(func=_cmd_tick)

    q = psub.add_parser("serve", help="the approval HTTP endpoint, and revert timers, until Ctrl-C/SIGTERM")
    common(q)
    q.add_argument("--listen", default=None, help="host:port (default: playbooks.approval_listen)")
    q.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    q.add_argument("--kafka", action="store_true",
                   help="also consume incidents from the workers' alerts topic (<kafka.topic_prefix>.alerts)")
    q.add_argument("--bootstrap", metavar="HOST:PORT", default=None, help="Kafka brokers (default: kafka.bootstrap)")
    q.set_defaults(func=_cmd_serve)


@contextmanager
def _engine(args, **kw):
    """``with _engine(args) as (config, engine):`` the engine of ``args``' config, closed on exit."""
    from ramparts.config import load_config

    from .runtime import close_engine, open_engine

    config = load_config(args.config)
    engine = open_engine(config, store=getattr(args, "store", None), state_dir=getattr(args, "state_dir", None), **kw)
    try:
        yield config, engine
    finally:
        close_engine(engine)


def _cmd_list(args) -> int:
    from ramparts.config import load_config

    from .actions import action_params
    from .model import load_playbooks

    config = load_config(args.config)
    if args.runs:
        from .state import State

        st = State(args.state_dir or config.playbooks.state_dir)
        try:
            for r in st.runs(args.status):
                print(f"{r['id']}  {r['status']:<18} {r['playbook']:<28} incident {r['incident_id']}"
                      + (f"  ({r['approval']} by {r['approved_by']})" if r["approval"] else ""))
        finally:
            st.close()
        return 0
    for pb in load_playbooks(config.playbooks.dir, action_params()):
        t = pb.trigger
        steps = ", ".join(s.action + (f"[{s.when.min_severity}+]" if s.when.min_severity != "info" else "")
                          for s in pb.steps)
        revert = f" revert_after={pb.revert_after:g}s" if pb.revert_after else ""
        print(f"{pb.name:<28} {pb.mode:<8} {'|'.join(t.detectors)} >= {t.min_severity}"
              f"{' on ' + '|'.join(t.entity_types) if t.entity_types else ''}: {steps}{revert}"
              + ("" if pb.enabled else "  (disabled)"))
    return 0


def _read_incidents(path: str) -> list[dict]:
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    text = text.strip()
    if not text:
        return []
    try:
        obj = json.loads(text)
        return obj if isinstance(obj, list) else [obj]
    except ValueError:
        pass
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise RampartsError(f"{path}:{n}: not a JSON incident ({e})") from None
    return out


def _cmd_run(args) -> int:
    incidents = _read_incidents(args.incident)
    with _engine(args) as (_, engine):
        for inc in incidents:
            rids = [engine.run_playbook(args.name, inc)] if args.name else engine.handle(inc)
            if not rids:
                print(f"incident {inc.get('id')}: no playbook matches")
            for rid in rids:
                _print_run(engine, rid)
    return 0


def _print_run(engine, rid: str) -> None:
    run = engine.state.run(rid)
    print(f"{rid}  {run['playbook']}  incident {run['incident_id']}: {run['status']}")
    for st in engine.state.steps(rid):
        extra = f"  ({st['error']})" if st.get("error") else ""
        print(f"    {st['name']:<28} {st['status']:<18} {st.get('target') or ''}{extra}")


def _cmd_decide(args) -> int:
    with _engine(args) as (_, engine):
        fn = engine.approve if args.verb == "approve" else engine.deny
        fn(args.id, args.by or getpass.getuser())
        _print_run(engine, args.id)
    return 0


def _cmd_revert(args) -> int:
    with _engine(args) as (_, engine):
        results = engine.revert(args.id, args.by or getpass.getuser())
        for r in results:
            print(f"{r['step']}: {r['status']}" + (f" ({r['error']})" if r.get("error") else ""))
        if not results:
            print(f"{args.id}: nothing to revert")
    return 1 if any(r["status"] != "reverted" for r in results) else 0


def _cmd_audit(args) -> int:
    with _engine(args, with_outputs=False) as (_, engine):
        if args.verify:
            problems = engine.audit.verify()
            n = engine.audit.head.audit_head()[0]
            if problems:
                for p in problems:
                    print(f"TAMPERED: {p}")
                return 1
            print(f"audit log intact: {n} records, hash chain verified")
            return 0
        for r in engine.audit.records(args.run):
            if args.json:
                print(json.dumps(r))
            else:
                from ramparts.timeutil import format_rfc3339
                print(f"{r['seq']:>6} {format_rfc3339(int(r['ts_ns']))} {r['decision']:<18} {r['playbook']:<26} "
                      f"{r['step'] or '-':<22} {r['target'] or '-':<24} {r['actor']:<12} {r['detail'][:160]}")
    return 0


def _cmd_tick(args) -> int:
    with _engine(args) as (_, engine):
        for r in engine.tick():
            print(f"{r['step']}: {r['status']}")
    return 0


def _cmd_serve(args) -> int:
    from .approval import make_server, serve_in_thread

    with _engine(args) as (config, engine):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        token = os.environ.get(config.playbooks.approval_token_env, "")
        host, _, port = (args.listen or config.playbooks.approval_listen).rpartition(":")
        server = make_server(engine, token, host or "127.0.0.1", int(port))
        serve_in_thread(server)
        print(f"approval endpoint on http://{server.server_address[0]}:{server.server_address[1]}", flush=True)
        import time
        deadline = None if args.max_seconds is None else time.monotonic() + args.max_seconds
        try:
            if args.kafka:
                import asyncio

                from ramparts.streams.topics import TopicNames

                from .consumer import consume

                async def main():
                    astop = asyncio.Event()
                    loop = asyncio.get_running_loop()
                    for sig in (signal.SIGTERM, signal.SIGINT):
                        loop.add_signal_handler(sig, astop.set)
                    k = config.kafka
                    return await consume(engine, args.bootstrap or k.bootstrap, TopicNames(k.topic_prefix).alerts,
                                         f"{k.group}-playbooks", astop, args.max_seconds, config.playbooks.tick_seconds)
                n = asyncio.run(main())
                print(f"{n} incidents handled", flush=True)
                return 0
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                for r in engine.tick():
                    print(f"revert {r['step']}: {r['status']}", flush=True)
                stop.wait(config.playbooks.tick_seconds)
        finally:
            server.shutdown()
            server.server_close()
    return 0
