"""A real NGINX on loopback for the playbooks' gateway actions: its own prefix, config, pid and
error log under a directory its owner chooses, started and stopped by that owner.

Used by ``ramparts bench playbooks`` and by the playbook tests (tests/playbooks/test_nginx.py):
one server configuration that answers 200, 403 for a principal on the deny list and 429 past
the rate limit, reading the map file the NGINX action maintains (``actions/nginx.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ramparts.playbooks.actions.nginx import render_map
from ramparts.streams.broker import free_port


CONF = """\
{user}
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {prefix}/ramparts/principals.map;
    limit_req_zone $ramparts_limit_key zone=ramparts_limit:1m rate=1r/m;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/html;
        location / {{
            if ($ramparts_deny) {{ return 403; }}
            limit_req zone=ramparts_limit nodelay;
            limit_req_status 429;
            try_files /index.html =404;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


class Nginx:
    """``Nginx(prefix).start()``; ``settings()`` is the NGINX action's configuration for it."""

    def __init__(self, prefix: Path):
        self.bin = nginx_binary()
        self.prefix = prefix
        self.port = free_port()
        self.conf = prefix / "nginx.conf"
        self.map_file = prefix / "ramparts" / "principals.map"
        self.proc = None

    def start(self) -> "Nginx":
        for d in ("tmp", "html", "ramparts"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        (self.prefix / "html" / "index.html").write_text("ok\n")
        self.map_file.write_text(render_map({"deny": {}, "limit": {}}, "$http_x_api_key"))
        # As root, NGINX's workers would switch to nobody, who cannot read a pytest temp dir.
        user = "user root root;" if os.geteuid() == 0 else ""
        self.conf.write_text(CONF.format(prefix=self.prefix, port=self.port, user=user))
        self.proc = subprocess.Popen([self.bin, "-p", str(self.prefix), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(100):  # bounded: up to ~10 s for the listener
            if self.status("nobody") != 0:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()}")
            time.sleep(0.1)
        raise RuntimeError("nginx did not start listening")

    def settings(self, **over) -> dict:
        return {"map_file": str(self.map_file), "nginx_bin": self.bin, "conf": str(self.conf),
                "prefix": str(self.prefix), **over}

    def status(self, key: str) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/", headers={"X-Api-Key": key})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def wait_status(self, key: str, want: int, tries: int = 100) -> int:
        """NGINX reloads asynchronously: ask until the answer is `want`, at most `tries` times."""
        got = 0
        for _ in range(tries):
            got = self.status(key)
            if got == want:
                return got
            time.sleep(0.1)
        return got

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc.stderr.close()
