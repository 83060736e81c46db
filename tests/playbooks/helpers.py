"""Loopback HTTP receivers and an engine factory for the playbook tests.

``Api`` is a real HTTP server on 127.0.0.1 whose routes are plain functions; the LiteLLM and
Kong stand-ins below are built from those products' documented admin API shapes (LiteLLM
``POST /key/block`` / ``/key/unblock`` with the master key as a bearer token; Kong
``POST /consumers/{c}/acls`` and ``DELETE /consumers/{c}/acls/{group}``), because neither
product can run here. They are stand-ins, not the products.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from ramparts.config import load_config
from ramparts.playbooks.runtime import close_engine, open_engine


class Api:
    """``route(method, path, headers, body) -> (status, json)``; every request is recorded."""

    def __init__(self, route=None):
        self.route = route or (lambda m, p, h, b: (200, {"ok": True}))
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.requests.append({"method": self.command, "path": self.path, "headers": headers, "body": body})
                    status, payload = outer.route(self.command, self.path, headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _any

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def incident(detector="extraction.prada", severity="medium", etype="principal", eid="key-alice", iid="inc-1", **kw):
    return {"id": iid, "ts": "2026-11-23T03:00:00Z", "detector": detector, "severity": severity,
            "entity": {"type": etype, "id": eid}, "score": 0.97, "summary": f"{detector} on {eid}",
            "evidence": {"rate": 12.5}, "window": {"start": "2026-11-23T02:50:00Z", "end": "2026-11-23T03:00:00Z"},
            "first_event_ts": "2026-11-23T02:50:00Z", "event_count": 40, **kw}


class Harness:
    """Playbook files, config and an engine (opened and closed by the test; the store is chdb)."""

    def __init__(self, tmp: Path, clock: FakeClock | None = None):
        self.tmp = tmp
        self.dir = tmp / "playbooks"
        self.dir.mkdir(exist_ok=True)
        self.clock = clock or FakeClock()
        self.settings: dict = {}
        self.outputs: list = []
        self.extra: dict = {}
        self.env: dict = {}
        self.engine = None

    def playbook(self, name: str, text: str) -> None:
        (self.dir / f"{name}.yaml").write_text(text)

    def config(self):
        cfg = {"store": {"dsn": str(self.tmp / "store")},
               "playbooks": {"dir": str(self.dir), "state_dir": str(self.tmp / "state"), "actions": self.settings,
                             **self.extra},
               "outputs": self.outputs}
        path = self.tmp / "ramparts.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return load_config(path, env={})

    def open(self):
        self.engine = open_engine(self.config(), clock=self.clock, env=self.env)
        return self.engine

    def close(self):
        if self.engine is not None:
            close_engine(self.engine)
            self.engine = None
