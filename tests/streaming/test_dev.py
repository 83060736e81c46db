"""`ramparts dev` (what `make run` runs) end to end: broker, worker, simulated attacks, summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_the_demo_prints_alerts_as_they_fire_and_a_summary_of_what_was_caught(tmp_path):
    env = {**os.environ, "RAMPARTS_HASH_KEY": "dev-demo-test-key-0123456789"}
    proc = subprocess.run([sys.executable, "-m", "ramparts.cli", "dev", "--dir", str(tmp_path / "dev"),
                           "--timeout-seconds", "150"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    assert "placeholder rules" not in out
    fired = re.findall(r"^ALERT\s+(\w+)\s+(\S+)\s+(\S+)=", out, re.M)
    assert {(d, t) for _, d, t in fired} == {("access.stuffing", "src_ip"), ("gpu.miner", "pod"),
                                            ("access.k8s_exec", "pod"), ("access.shell", "pod"),
                                            ("gpu.unauthorized", "gpu"), ("gpu.miner", "gpu")}
    assert "labelled attacks caught: 6/6" in out and "missed" not in out
    stored = re.search(r"stored\s+(.*)->", out).group(1)
    counts = {t: int(n.replace(",", "")) for t, n in re.findall(r"(\w+) ([\d,]+)", stored)}
    assert counts["alerts"] == 6 and counts["requests"] > 10_000 and counts["gpu"] > 0
    assert (tmp_path / "dev" / "store").is_dir() and (tmp_path / "dev" / "sim").is_dir()
