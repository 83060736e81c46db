"""`ramparts parse` as a user runs it: a real process, real files, stdout, stderr, exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import orjson

NGINX = (b'203.0.113.9 - team-a [08/Apr/2019:16:16:55 +0000] "POST /v1/chat/completions HTTP/1.1" 200 1532 '
         b'"-" "OpenAI/Python 1.40.0"\n')


def ramparts(*args, stdin=None, cwd=None, env_extra=None):
    env = {**os.environ, "RAMPARTS_HASH_KEY": "test-key", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "ramparts.cli", *args], input=stdin, capture_output=True,
                          cwd=cwd, env=env, timeout=120)


def test_parse_prints_events_and_dead_letters_with_a_summary(tmp_path):
    log = tmp_path / "access.log"
    log.write_bytes(NGINX + b"\x00\xffgarbage Bearer sk-live-abcdefghijklmnopqrstuv\n" + NGINX)
    dead = tmp_path / "dead.jsonl"
    r = ramparts("parse", str(log), "--dead-letter", str(dead))
    assert r.returncode == 0, r.stderr
    events = [orjson.loads(l) for l in r.stdout.splitlines()]
    assert len(events) == 2 and events[0]["ts"] == "2019-04-08T16:16:55Z" and events[0]["principal"] == "team-a"
    letters = [orjson.loads(l) for l in dead.read_bytes().splitlines()]
    assert len(letters) == 1
    d = letters[0]
    assert (d["source"], d["file"], d["line"]) == ("nginx_combined", str(log), 2) and d["reason"]
    # The raw bytes are kept (base64) but a credential in them never reaches the file.
    assert b"sk-live-abcdefghijklmnopqrstuv" not in dead.read_bytes()
    assert "garbage" in d["raw"]
    stderr = r.stderr.decode()
    assert "nginx_combined" in stderr and "dead-lettered" in stderr and str(dead) in stderr


def test_format_override_stdin_and_unknown_format(tmp_path):
    r = ramparts("parse", "-", "--format", "nginx_combined", stdin=NGINX)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
    r = ramparts("parse", "-", "--format", "nginx", stdin=NGINX)
    assert r.returncode == 2 and b"invalid choice" in r.stderr


def test_unrecognised_file_is_dead_lettered_whole_and_fails_the_run(tmp_path):
    odd = tmp_path / "odd.bin"
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\nsecond line\n"
    odd.write_bytes(data)
    good = tmp_path / "good.log"
    good.write_bytes(NGINX)
    r = ramparts("parse", str(odd), str(good), "--dead-letter", str(tmp_path / "d.jsonl"))
    assert r.returncode == 1
    assert len(r.stdout.splitlines()) == 1  # the good file still parsed
    letters = [orjson.loads(l) for l in (tmp_path / "d.jsonl").read_bytes().splitlines()]
    assert {l["reason"] for l in letters} == {"format not recognised"}
    assert len(letters) == sum(1 for line in data.split(b"\n") if line.strip())
    assert b"cannot tell the format" in r.stderr


def test_missing_file_and_bad_config_are_clear_errors(tmp_path):
    r = ramparts("parse", str(tmp_path / "nope.log"))
    assert r.returncode == 1 and b"No such file" in r.stderr
    cfg = tmp_path / "ramparts.yaml"
    cfg.write_text("parsers:\n  nginx_combined:\n    principal_feld: x\n")
    r = ramparts("parse", "-", "--config", str(cfg), stdin=NGINX)
    assert r.returncode == 1 and b"did you mean 'principal_field'" in r.stderr and b"Traceback" not in r.stderr


def test_every_upstream_sample_parses(samples, tmp_path):
    files = sorted(str(p) for p in samples.rglob("*") if p.is_file() and p.suffix in (".txt", ".log"))
    dead = tmp_path / "dead.jsonl"
    r = ramparts("parse", *files, "--dead-letter", str(dead), env_extra={"RAMPARTS_PARSERS__NVIDIA_SMI__TIMEZONE": "UTC"})
    assert r.returncode == 0, r.stderr.decode()
    events = [orjson.loads(l) for l in r.stdout.splitlines()]
    kinds = {(e["source"], e["kind"]) for e in events}
    assert {("dcgm", "gpu"), ("k8s_audit", "runtime"), ("nvidia_smi", "gpu")} <= kinds
    assert not dead.exists(), dead.read_text() if dead.exists() else ""
    for e in events:
        assert e["ts"].endswith("Z")


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Raw credentials planted in the bundled examples (Envoy's x-api-key, KServe's logged
# X-Api-Key header, Kong's apikey header); none may reach the parsed output.
PLANTED_SECRETS = [b"sk-proj-7Hq2Lw9Xz4Rt1Yb8Nc3Vm6Kd", b"sk-live-4f9a2b7c1d8e3f6a0b5c",
                   b"kong-secret-key-1234567890", b"sk-guess-000000000000000001"]


def test_bundled_examples_parse_cleanly_and_leak_no_secret(tmp_path):
    files = sorted(str(p) for p in EXAMPLES.iterdir())
    raw = b"".join(Path(f).read_bytes() for f in files)
    assert all(s in raw for s in PLANTED_SECRETS)  # the test means something only if they are there
    dead = tmp_path / "dead.jsonl"
    r = ramparts("parse", *files, "--dead-letter", str(dead))
    assert r.returncode == 0, r.stderr.decode()
    assert not dead.exists()
    events = [orjson.loads(l) for l in r.stdout.splitlines()]
    assert {e["kind"] for e in events} == {"request", "prediction", "runtime", "gpu", "workload"}
    for secret in PLANTED_SECRETS:
        assert secret not in r.stdout and secret not in r.stderr
    hashed = {e["principal"] for e in events if e["source"] in ("envoy_json", "kserve") and e.get("principal")}
    assert hashed and all(p.startswith("key:") for p in hashed - {"team-support"})
