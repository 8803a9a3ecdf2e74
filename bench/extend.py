#!/usr/bin/env python
"""Long-video extension: memory and time against length, seams and colour drift with and without anchoring.

Each run extends the same short clip by 1x, 4x and 16x a base length, every run in a fresh process
(its own peak RSS: ``ru_maxrss``), on a tiny model on the CPU (a real-size model on a GPU when one is
lent: ``--model``). Reported per length:

* peak host RSS, and its ratio to the 1x run (target: 16x <= 1.15x: memory is bounded by a segment);
* seconds per output frame over the segments after the first (the first also loads the model), and
  its spread across lengths (target: within +-10%);
* the worst seam score (1 ~ an invisible join, >= 3 a visible cut);
* colour drift: CIE76 dE between the mean Lab colour of the first and the last second of the new
  material, with anchoring on (strength 1) and off (0) at the longest length (target: on <= 0.5x off).

    python bench/extend.py                    # tiny-ltx, base 2 s at 8 fps; writes bench/results/extend-cpu-<date>.md
    python bench/extend.py --dry-run          # base 0.5 s, 1x and 2x only; writes nothing (the test runs this)

Tiny models make noise, so their drift and seam figures describe the machinery (anchoring, crossfades)
on noise, not a real model's behaviour; the memory and time figures hold for any model.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from pipelines import engine
from pipelines.events import Events, Progress
from pipelines.extension.seams import colour_drift
from pipelines.jobs import ExtendJob
from pipelines.video_io import read_frames

clip, seconds, anchor, out, model, segment_frames, steps = sys.argv[1:8]
starts = []
def on_event(event):
    if isinstance(event, Progress) and event.stage == "segment" and not event.within:
        starts.append((event.done, time.perf_counter()))
t0 = time.perf_counter()
result = engine.run(ExtendJob(input=clip, model=model, seconds=float(seconds), prompt="the square keeps moving",
                              segment_frames=int(segment_frames), steps=int(steps), seed=7, anchor=float(anchor),
                              out=out), Events([on_event]))
total = time.perf_counter() - t0
fps, added = result.fps, result.frame_count - result.details["frames_in"]
frames = read_frames(out)[result.details["frames_in"]:]
second = max(1, int(round(fps)))
per_segment = [(b[1] - a[1]) for a, b in zip(starts, starts[1:]) if a[0] >= 1]
new_per_segment = int(segment_frames) - result.details["context"]
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "seconds": total,
                  "frames_added": added, "segments": result.details["segments"],
                  "seconds_per_frame": sum(per_segment) / len(per_segment) / new_per_segment if per_segment else None,
                  "worst_seam": result.details["worst_seam"],
                  "drift": colour_drift(frames[:second], frames[-second:])}))
"""


def moving_clip(path: Path, count: int = 12, fps: float = 8.0) -> Path:
    import numpy as np

    from pipelines.video_io import VideoWriter

    yy, xx = np.mgrid[0:64, 0:96]
    frames = []
    for k in range(count):
        frame = np.stack([xx * 2, yy * 3, np.full_like(xx, 90)], -1).astype(np.uint8)
        frame[20:36, 4 + 4 * k:20 + 4 * k] = (250, 60, 40)
        frames.append(frame)
    with VideoWriter(path, fps) as writer:
        writer.write(np.stack(frames))
    return path


def run_child(clip: Path, seconds: float, anchor: float, out: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(clip), str(seconds), str(anchor), str(out), args.model,
                           str(args.segment_frames), str(args.steps)], env=env, capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"extension run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-ltx")
    parser.add_argument("--base-seconds", type=float, default=2.0)
    parser.add_argument("--segment-frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true", help="base 0.5 s, 1x and 2x; writes no results")
    args = parser.parse_args(argv)
    lengths = (1, 2) if args.dry_run else (1, 4, 16)
    base = 0.5 if args.dry_run else args.base_seconds
    rows = []
    with tempfile.TemporaryDirectory(prefix="kinetograph-extend-bench-") as folder:
        clip = moving_clip(Path(folder) / "clip.mp4")
        for multiple in lengths:
            row = run_child(clip, base * multiple, 1.0, Path(folder) / f"x{multiple}.mp4", args)
            row["length"] = multiple
            rows.append(row)
            per_frame = _seconds_per_frame(row, args)
            print(f"{multiple:>3}x: {row['frames_added']:>4} frames in {row['segments']} segments, peak RSS "
                  f"{row['peak_rss_bytes'] / 1e6:.0f} MB, {per_frame if per_frame is None else round(per_frame, 3)} "
                  f"s per frame, worst seam {row['worst_seam']:.2f}, drift {row['drift']:.2f} dE", flush=True)
        off = run_child(clip, base * lengths[-1], 0.0, Path(folder) / "off.mp4", args)
    first, last = rows[0], rows[-1]
    rss_ratio = last["peak_rss_bytes"] / first["peak_rss_bytes"]
    speeds = [s for s in (_seconds_per_frame(r, args) for r in rows) if s is not None]
    spread = (max(speeds) / min(speeds) - 1) if len(speeds) >= 2 else None
    drift_ratio = last["drift"] / off["drift"] if off["drift"] > 0 else None
    lines = [
        f"peak RSS {lengths[-1]}x / 1x: {rss_ratio:.3f}x (target <= 1.15x)",
        "seconds per frame spread across lengths: " + (f"{100 * spread:.1f}% (target <= 10%)" if spread is not None
                                                        else "n/a (too few segments)"),
        f"colour drift at {lengths[-1]}x, anchoring on / off: {last['drift']:.2f} / {off['drift']:.2f} dE = "
        + (f"{drift_ratio:.2f}x (target <= 0.5x)" if drift_ratio is not None else "n/a (no drift without anchoring)"),
    ]
    print("\n".join(lines))
    if not args.dry_run:
        _write_results(args, rows, off, lines)
    return 0


def _seconds_per_frame(row: dict, args) -> float | None:
    """Seconds per new frame over the segments after the first (which also loads the model)."""
    return row["seconds_per_frame"]


def _write_results(args, rows, off, lines) -> None:
    day = _dt.date.today().isoformat()
    out = ROOT / "bench" / "results" / f"extend-cpu-{day}.md"
    table = ["| length | frames added | segments | peak RSS (MB) | s / frame | worst seam | drift (dE) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        per_frame = _seconds_per_frame(row, args)
        table.append(f"| {row['length']}x | {row['frames_added']} | {row['segments']} | "
                     f"{row['peak_rss_bytes'] / 1e6:.0f} | {per_frame:.3f} | {row['worst_seam']:.2f} | "
                     f"{row['drift']:.2f} |" if per_frame is not None else
                     f"| {row['length']}x | {row['frames_added']} | {row['segments']} | "
                     f"{row['peak_rss_bytes'] / 1e6:.0f} | n/a | {row['worst_seam']:.2f} | {row['drift']:.2f} |")
    text = [f"# Long-video extension ({day}, {platform.processor() or platform.machine()}, CPU)", "",
            f"`python bench/extend.py --model {args.model} --base-seconds {args.base_seconds} --segment-frames "
            f"{args.segment_frames} --steps {args.steps}`: a 12-frame 96x64 clip at 8 fps extended; each length in "
            "a fresh process.", "", *table, "", f"Anchoring off at the longest length: drift {off['drift']:.2f} dE, "
            f"worst seam {off['worst_seam']:.2f}.", "", *[f"- {line}" for line in lines], "",
            "Tiny models make noise: drift and seams describe the machinery on noise, not a real model."]
    out.write_text("\n".join(text) + "\n")
    (out.with_suffix(".json")).write_text(json.dumps({"rows": rows, "anchor_off": off}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
