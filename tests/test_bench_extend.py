"""bench/extend.py runs end to end (--dry-run: two short lengths, nothing written)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_extend_benchmark_dry_run_prints_its_ratios():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "extend.py"), "--dry-run"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "peak RSS 2x / 1x:" in done.stdout and "colour drift at 2x" in done.stdout
