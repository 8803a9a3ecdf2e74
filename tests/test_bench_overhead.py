"""bench/overhead.py runs end to end: its --dry-run (one small pair) prints the ratio ours/plain."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_overhead_dry_run_prints_a_ratio():
    from pipelines.models import ensure_tiny_model

    ensure_tiny_model("tiny-wan")  # built once per test session, outside the time limit
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "overhead.py"), "--dry-run", "--threads", "1"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.perf_counter() - started < 60
    match = re.search(r"^ratio ours/plain: (\d+\.\d+)x \(min\), (\d+\.\d+)x \(median\)", proc.stdout, re.M)
    assert match, proc.stdout
    assert all(0.2 < float(value) < 5.0 for value in match.groups()), proc.stdout
    assert "wrote" not in proc.stdout  # a dry run leaves no results file
