"""`ramparts bench playbooks` runs end to end (figures are the bench's job, not asserted here)."""

import shutil

import pytest

from ramparts.bench.playbooks import run_once


def test_bench_playbooks_http_acts_on_every_incident():
    r = run_once("http", rate=20, seconds=0.5)
    assert r["incidents"] == 10 and r["done"] == 10 and r["p99_ms"] >= r["p50_ms"] > 0


@pytest.mark.skipif(not (shutil.which("nginx") or shutil.os.path.exists("/usr/sbin/nginx")), reason="no nginx")
def test_bench_playbooks_nginx_enforces():
    r = run_once("nginx", rate=10, seconds=0.5)
    assert r["done"] == r["incidents"] == 5 and r["enforced"] is True, r
