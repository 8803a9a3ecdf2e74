"""bench/extend.py runs end to end (--dry-run: two short lengths, nothing written)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_extend_benchmark_dry_run_prints_its_ratios():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "extend.py"), "--dry-run", "--simulated-drift", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "peak RSS 2x / 1x:" in done.stdout and "colour drift at 2x" in done.stdout
    # A drifting model (simulated, 3 dE per segment, compounding): the loop's anchoring takes most of the drift away.
    simulated = next(line for line in done.stdout.splitlines() if "SIMULATED" in line)
    on, off = (float(x) for x in re.search(r"on / off: ([\d.]+) / ([\d.]+) dE", simulated).groups())
    assert off > 1.5 and on < 0.5 * off, simulated
