"""nginx.revoke / nginx.rate_limit against a real NGINX on loopback (Debian's package).

200 -> the playbook runs -> 403 -> revert -> 200; rate limiting gives 429 after the first
request; a change that fails `nginx -t` is rolled back and the running NGINX keeps its rules.
"""

import pytest

from ramparts.playbooks.actions.nginx import render_map

from .helpers import incident
from .nginx_server import Nginx, nginx_binary

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (apt-get install nginx)")


@pytest.fixture
def nginx(tmp_path):
    n = Nginx(tmp_path / "nginx").start()
    yield n
    n.stop()


STUFFING = """\
name: stuffing
trigger: {detectors: ["access.stuffing"], min_severity: medium, entity_types: [principal]}
mode: auto
steps:
  - action: nginx.revoke
    params: {principal: "${entity.id}"}
"""


def test_revoke_at_nginx_then_revert(harness, nginx):
    harness.playbook("stuffing", STUFFING)
    harness.settings = {"nginx": nginx.settings()}
    eng = harness.open()
    assert nginx.status("key-alice") == 200
    rid = eng.handle(incident(detector="access.stuffing", eid="key-alice"))[0]
    assert eng.state.run(rid)["status"] == "done"
    assert nginx.wait_status("key-alice", 403) == 403
    assert nginx.status("key-bob") == 200  # only the principal in the incident
    assert eng.handle(incident(detector="access.stuffing", eid="key-alice")) == [rid]  # redelivered: no second reload
    assert [r["decision"] for r in eng.audit.records(rid)].count("executed") == 1
    assert [r["status"] for r in eng.revert(rid, "oncall")] == ["reverted"]
    assert nginx.wait_status("key-alice", 200) == 200
    assert '"key-alice"' not in nginx.map_file.read_text()


def test_rate_limit_at_nginx(harness, nginx):
    harness.playbook("limit", STUFFING.replace("nginx.revoke", "nginx.rate_limit"))
    harness.settings = {"nginx": nginx.settings()}
    eng = harness.open()
    rid = eng.handle(incident(detector="access.stuffing", eid="key-carol"))[0]
    # 1 request a minute, no burst: after the reload, a second request inside the minute is refused.
    got = [nginx.status("key-carol") for _ in range(3)]
    for _ in range(50):
        if 429 in got:
            break
        got = [nginx.status("key-carol") for _ in range(3)]
    assert 429 in got
    assert all(nginx.status("key-dave") == 200 for _ in range(3))
    eng.revert(rid, "oncall")
    assert nginx.wait_status("key-carol", 200) == 200


def test_failed_nginx_check_restores_the_previous_file(harness, nginx):
    harness.playbook("stuffing", STUFFING)
    # An undefined variable: the rendered map fails `nginx -t`.
    harness.settings = {"nginx": nginx.settings(key_variable="$ramparts_no_such_variable")}
    before = nginx.map_file.read_text()
    eng = harness.open()
    rid = eng.handle(incident(detector="access.stuffing", eid="key-erin"))[0]
    st = eng.state.steps(rid)[0]
    assert st["status"] == "failed" and "nginx -t failed" in st["error"] and "restored" in st["error"]
    assert nginx.map_file.read_text() == before
    assert nginx.status("key-erin") == 200 and nginx.proc.poll() is None


def test_render_map_rejects_keys_that_could_break_out():
    from ramparts.errors import ActionError
    from ramparts.playbooks.actions.nginx import _check_key

    with pytest.raises(ActionError):
        _check_key('evil"; } include /etc/passwd; #')
    assert '"k" 1;' in render_map({"deny": {"k": "r"}, "limit": {}}, "$http_x_api_key")
