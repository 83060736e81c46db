"""A STAND-IN for a ClickHouse server, for tests: ClickHouse's HTTP interface over chdb.

There is no ClickHouse server on the test machines, so the server path of the store
(``ServerBackend``, clickhouse-connect over HTTP) is tested against this: a small HTTP server
on 127.0.0.1 (a free port, a daemon thread, the standard library's ``http.server``) that runs
every statement it receives in chdb, the same engine a server runs. It speaks the part of
ClickHouse's HTTP interface that clickhouse-connect uses:

* the statement in the ``query`` URL parameter and/or the POST body (an INSERT's data follows
  its statement in the body, on the statement's line, or the body is the data when ``query``
  holds the statement): the data go to the engine as the bytes they are, in the statement's
  ``FORMAT``, binary ones too (the Arrow streams of the store's event inserts);
* ClickHouse settings as URL parameters (applied with ``SET`` before the statement); the
  transport parameters (``query_id``, ``wait_end_of_query``, ``database``...) are accepted and
  ignored;
* the output format from a ``FORMAT`` clause, else ``default_format``, else TabSeparated;
* the ``X-ClickHouse-*`` response headers (format, timezone, query id, summary, server display
  name) and, on failure, an HTTP 500 with ``X-ClickHouse-Exception-Code`` and ClickHouse's
  error text in the body; ``GET /ping`` answers ``Ok.``;
* HTTP basic authentication when ``user``/``password`` are given (a wrong one gets code 516,
  AUTHENTICATION_FAILED), so tests can check that credentials are sent.

It is not a server: one chdb session, statements run one at a time, no compression, no
sessions, no ``database`` context (the store always names its database).
"""

from __future__ import annotations

import base64
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

# URL parameters that are part of the HTTP transport, not ClickHouse settings.
TRANSPORT_PARAMS = {"query", "query_id", "database", "default_format", "session_id", "session_timeout",
                    "session_check", "wait_end_of_query", "send_progress_in_http_headers",
                    "http_headers_progress_interval_ms", "client_protocol_version", "compress", "decompress",
                    "enable_http_compression", "cancel_http_readonly_queries_on_client_close", "user", "password"}

_FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
# An INSERT whose data follows its statement in the body: the statement is its first line.
_INSERT_HEAD_RE = re.compile(rb"\s*(INSERT\s[^\n]*?\bFORMAT\s+\w+)[ \t]*\r?\n", re.IGNORECASE)
_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CODE_RE = re.compile(r"Code: (\d+)")


class ChdbHttpServer:
    """A stand-in ClickHouse HTTP server over a chdb data directory (see the module docstring).

    Use as a context manager; ``url`` is where it listens, ``requests`` every
    (statement head, params) it served, for tests that check what a client sent.
    """

    def __init__(self, path: str, user: str | None = None, password: str | None = None):
        import chdb.session

        self.session = chdb.session.Session(path)
        self.user, self.password = user, password
        self.requests: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"stand_in": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="chdb-http-stand-in", daemon=True)

    def __enter__(self) -> "ChdbHttpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)
        self.session.close()

    def run(self, sql: str, params: dict[str, str], data: bytes | None = None) -> tuple[bytes, str]:
        """Run ``sql``; ``data``: the body of an INSERT whose statement (with its FORMAT) is ``sql``."""
        m = _FORMAT_RE.search(sql) if not sql.lstrip()[:6].upper() == "INSERT" else None
        fmt = m.group(1) if m else params.get("default_format", "TabSeparated")
        with self._lock:
            self.requests.append((sql[:200], dict(params)))
            for name, value in params.items():
                if name in TRANSPORT_PARAMS or not _SETTING_NAME_RE.match(name):
                    continue
                self.session.query(f"SET {name} = '{_quote(value)}'")
            if data is not None:
                m = _FORMAT_RE.search(sql)
                if not m:
                    raise ValueError("Code: 73. DB::Exception: an INSERT with data in the body needs a FORMAT. "
                                     "(UNKNOWN_FORMAT)")
                with self.session.send_insert(sql[:m.start()], m.group(1)) as ins:
                    ins.append(data)
                    ins.finish()
                return b"", fmt
            result = self.session.query(sql, fmt)
        return result.bytes(), fmt


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


class _Handler(BaseHTTPRequestHandler):
    stand_in: ChdbHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "chdb-http-stand-in"

    def log_message(self, format, *args):  # the test output is not an access log
        pass

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path.rstrip("/") in ("/ping", ""):
            if url.path.rstrip("/") == "/ping" or not url.query:
                self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
        self._serve(b"")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding") not in (None, "", "identity"):
            self._error(400, 1, f"the stand-in does not decompress {self.headers['Content-Encoding']} bodies")
            return
        self._serve(body)

    def _serve(self, body: bytes) -> None:
        stand_in = self.stand_in
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        if not self._authorized(params):
            self._error(401, 516, "Code: 516. DB::Exception: default: Authentication failed: password is incorrect, "
                                  "or there is no user with such name. (AUTHENTICATION_FAILED)")
            return
        query = params.get("query", "")
        data = None
        head = _INSERT_HEAD_RE.match(body) if not query else None
        if query.lstrip()[:6].upper() == "INSERT" and body:
            sql, data = query, body  # the body is the data, passed on as bytes
        elif head:
            sql, data = head.group(1).decode(), body[head.end():]
        else:
            text = body.decode("utf-8", "surrogateescape")
            sql = f"{query}\n{text}" if query and text else (query or text)
        if not sql.strip():
            self._error(400, 62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
            return
        try:
            out, fmt = stand_in.run(sql, params, data)
        except Exception as e:  # chdb's error text is ClickHouse's
            text = str(e)
            m = _CODE_RE.search(text)
            self._error(500, int(m.group(1)) if m else 1001, text)
            return
        self._reply(200, out, {
            "Content-Type": "text/plain; charset=UTF-8" if fmt.startswith("Tab") else "application/octet-stream",
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
            "X-ClickHouse-Server-Display-Name": "chdb-http-stand-in",
            "X-ClickHouse-Summary": '{"read_rows":"0","read_bytes":"0","written_rows":"0","written_bytes":"0"}',
        })

    def _authorized(self, params: dict[str, str]) -> bool:
        stand_in = self.stand_in
        if stand_in.user is None:
            return True
        user, password = params.get("user"), params.get("password")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        user = user or self.headers.get("X-ClickHouse-User")
        password = password if password is not None else self.headers.get("X-ClickHouse-Key")
        return user == stand_in.user and (password or "") == (stand_in.password or "")

    def _error(self, status: int, code: int, text: str) -> None:
        self._reply(status, (text.strip() + "\n").encode(), {
            "Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(code)})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
