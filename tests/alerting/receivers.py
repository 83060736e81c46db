"""Real HTTP receivers on loopback for the alerting tests (http.server in a thread).

``Receiver`` answers each request with what ``respond(n, request)`` returns (status, headers),
n counting from 0, and records every request (path, headers, body) that arrived whole. It can be started on a
port chosen before it listens, to play a receiver that is down and comes back.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ramparts.streams.broker import free_port


class Receiver:
    def __init__(self, respond=None, port: int | None = None, delay: float = 0.0):
        self.respond = respond or (lambda n, req: (200, {}))
        self.port = port or free_port()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.delay = delay
        self.server = None
        self.thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Receiver":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-body: a real server drops it unanswered
                    self.close_connection = True
                    return
                req = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                if outer.delay:
                    threading.Event().wait(outer.delay)
                with outer.lock:
                    n = len(outer.requests)
                    outer.requests.append(req)
                status, headers = outer.respond(n, req)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                payload = b'{"ok": true}' if status < 300 else b'{"message": "nope"}'
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class FakeClock:
    """A clock the test moves (delivery schedules retries on it; nothing sleeps)."""

    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
