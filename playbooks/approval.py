"""The approval endpoint: ``POST /runs/<id>/approve`` or ``/deny`` with ``Authorization: Bearer <token>``.

Also ``GET /runs?status=awaiting_approval`` (the same token). The token comes from
``playbooks.approval_token_env``; it is compared in constant time and never logged. The
approver's name is the ``by`` field of a JSON body (default: ``http``).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ramparts.errors import RampartsError

log = logging.getLogger("ramparts.playbooks.approval")
_PATH = re.compile(r"^/runs/(run-[0-9a-f]{16})/(approve|deny)$")


def make_server(engine, token: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    if not token:
        raise RampartsError("the approval endpoint needs a token (playbooks.approval_token_env names its variable)")
    expected = f"Bearer {token}".encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # the default logs to stderr, with the request line only
            log.info("approval %s %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            got = (self.headers.get("Authorization") or "").encode()
            if hmac.compare_digest(got, expected):
                return True
            self._send(401, {"error": "missing or wrong bearer token"})
            return False

        def do_GET(self):  # noqa: N802
            if not self._authorized():
                return
            u = urllib.parse.urlsplit(self.path)
            if u.path != "/runs":
                return self._send(404, {"error": "not found"})
            status = urllib.parse.parse_qs(u.query).get("status", [None])[0]
            self._send(200, {"runs": engine.state.runs(status)})

        def do_POST(self):  # noqa: N802
            if not self._authorized():
                return
            m = _PATH.match(urllib.parse.urlsplit(self.path).path)
            if not m:
                return self._send(404, {"error": "POST /runs/<run id>/approve or /deny"})
            n = int(self.headers.get("Content-Length") or 0)
            by = "http"
            if n:
                try:
                    by = str(json.loads(self.rfile.read(min(n, 65536))).get("by") or by)[:100]
                except (ValueError, AttributeError):
                    return self._send(400, {"error": "body must be a JSON object like {\"by\": \"name\"}"})
            try:
                fn = engine.approve if m.group(2) == "approve" else engine.deny
                run = fn(m.group(1), by)
            except RampartsError as e:
                return self._send(409 if "no playbook run" not in str(e) else 404, {"error": str(e)})
            self._send(200, {"run": {k: run[k] for k in ("id", "status", "approval", "approved_by")}})

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name="playbook-approval")
    t.start()
    return t
