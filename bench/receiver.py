"""A loopback HTTP receiver for the benchmarks: every POST read whole and answered 204."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def start_receiver(on_post: Callable[[BaseHTTPRequestHandler], None] | None = None) -> tuple[ThreadingHTTPServer, str]:
    """``(server, base URL)`` of a receiver on 127.0.0.1 serving in a daemon thread; ``on_post``
    sees each request's handler (its headers) before the answer. Stop it with ``stop_receiver``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if on_post is not None:
                on_post(self)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def stop_receiver(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()
