#!/usr/bin/env python
"""Long-video extension: memory and time against length, seams and colour drift with and without anchoring.

Each run extends the same short clip by 1x, 4x and 16x a base length, every run in a fresh process
(its own peak RSS: ``ru_maxrss``), on a tiny model on the CPU (a real-size model on a GPU when one is
lent: ``--model``). Reported per length:

* peak host RSS, and its ratio to the 1x run (target: 16x <= 1.15x: memory is bounded by a segment);
* seconds per output frame in steady state: the median time from one segment's start to the next, per new
  frame, over every whole segment after the ``--warmup-segments`` first (model load, cache warm-up) of as
  many runs as it takes to pool ``--min-intervals`` intervals at every length; and its spread across
  lengths (target: within +-10%). The end-to-end time per frame (model load and the final mux included)
  is reported beside it;
* the worst seam score (1 ~ an invisible join, >= 3 a visible cut);
* colour drift: CIE76 dE between the mean Lab colour of the first and the last second of the new
  material, with anchoring on (strength 1) and off (0) at the longest length (target: on <= 0.5x off).

Tiny models make noise whose colour barely moves from window to window (about 0.1 dE over 80 seconds), so
the drift they show measures nothing. ``--simulated-drift D`` adds the drift peers' users report, to test
the anchoring in the extension loop: every segment comes out with the mean colour of the frames it continues
from, moved by D dE (in L and b), as a model that inherits its context's colour and adds a little each window
would; without anchoring the next segment inherits the moved colour, so the drift compounds. It is a
benchmark-only wrapper around the segment generation (``_SIMULATED_DRIFT`` below), never part of the engine,
and its rows are labelled as simulated.

    python bench/extend.py                    # tiny-ltx, base 5 s at 8 fps; writes bench/results/extend-cpu-<date>.md
    python bench/extend.py --model tiny-animatediff --segment-frames 32   # writes extend-tiny-animatediff-cpu-<date>.md
    python bench/extend.py --dry-run          # base 1 s, 1x and 2x, one repeat; writes nothing (the test runs this)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A model that drifts: each segment comes out with the mean Lab colour of the context it was given, moved by
# D dE (in L and b). Without anchoring the next segment inherits that and moves again: the drift compounds.
_SIMULATED_DRIFT = r"""
import cv2
import pipelines.tasks.extend as extension

_real_generate = extension._generate

def _lab(frames):
    return np.stack([cv2.cvtColor(f.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB) for f in frames])

def _drifting_generate(job, layout, segment, context, *args, **kwargs):
    made = _real_generate(job, layout, segment, context, *args, **kwargs)
    lab = _lab(made.frames)
    step = np.array([1.0, 0.0, 1.0], np.float32) * np.float32(DRIFT / np.sqrt(2.0))
    if context is not None and len(context):
        lab += _lab(context).mean(axis=(0, 1, 2)) + step - lab.mean(axis=(0, 1, 2))
    made.frames = np.stack([np.clip(np.rint(cv2.cvtColor(f, cv2.COLOR_LAB2RGB) * 255.0), 0, 255) for f in lab]
                           ).astype(np.uint8)
    return made

extension._generate = _drifting_generate
"""

_CHILD = r"""
import json, resource, sys, time
import numpy as np
import torch
clip, seconds, anchor, out, model, segment_frames, steps, threads, drift, warmup = sys.argv[1:11]
torch.set_num_threads(int(threads))
DRIFT = float(drift)
if DRIFT:
    exec(SIMULATED_DRIFT)
from pipelines import engine
from pipelines.events import Events, Progress
from pipelines.extension.seams import colour_drift
from pipelines.jobs import ExtendJob
from pipelines.video_io import read_frames

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
new_per_segment = int(segment_frames) - result.details["context"]
# Whole segments after the warm-up ones only: the last may be shorter, and its interval ends with the mux.
intervals = [(b[1] - a[1]) for a, b in zip(starts, starts[1:])
             if a[0] >= int(warmup) and b[0] < result.details["segments"]]
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "seconds": total,
                  "frames_added": added, "segments": result.details["segments"],
                  "segment_seconds": intervals, "new_per_segment": new_per_segment,
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


def run_child(clip: Path, seconds: float, anchor: float, out: Path, args, drift: float = 0.0) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    code = _CHILD.replace("exec(SIMULATED_DRIFT)", "exec(" + repr(_SIMULATED_DRIFT) + ")")
    done = subprocess.run([sys.executable, "-c", code, str(clip), str(seconds), str(anchor), str(out), args.model,
                           str(args.segment_frames), str(args.steps), str(args.threads), str(drift),
                           str(args.warmup_segments)], env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"extension run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steady_seconds_per_frame(runs: list[dict]) -> float | None:
    """Median seconds from one whole segment to the next, over all repeats, per new frame."""
    intervals = [s for run in runs for s in run["segment_seconds"]]
    return statistics.median(intervals) / runs[0]["new_per_segment"] if intervals else None


def measure_length(clip: Path, folder: Path, multiple: int, base: float, args) -> dict:
    runs = [run_child(clip, base * multiple, 1.0, folder / f"x{multiple}-0.mp4", args)]
    # As many runs as it takes for every length to pool about the same number of intervals (at least
    # --min-intervals): a median of 9 intervals beside one of 230 compares noise, not lengths.
    per_run = max(1, len(runs[0]["segment_seconds"]))
    while len(runs) < max(args.repeats, math.ceil(args.min_intervals / per_run)):
        runs.append(run_child(clip, base * multiple, 1.0, folder / f"x{multiple}-{len(runs)}.mp4", args))
    return {"length": multiple, "frames_added": runs[0]["frames_added"], "segments": runs[0]["segments"],
            "peak_rss_bytes": min(r["peak_rss_bytes"] for r in runs),
            "seconds_per_frame": steady_seconds_per_frame(runs),
            "end_to_end_seconds_per_frame": min(r["seconds"] for r in runs) / runs[0]["frames_added"],
            "worst_seam": runs[0]["worst_seam"], "drift": runs[0]["drift"], "runs": runs,
            "intervals": sum(len(r["segment_seconds"]) for r in runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-ltx")
    parser.add_argument("--base-seconds", type=float, default=5.0, help="the 1x length (5 s: 5 segments with the "
                        "defaults, 2 whole steady intervals)")
    parser.add_argument("--segment-frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs per length at least (timings pooled, RSS: "
                        "the least)")
    parser.add_argument("--min-intervals", type=int, default=40, help="segment intervals pooled per length at least")
    parser.add_argument("--warmup-segments", type=int, default=2, help="first segments left out of the steady-state "
                        "time (the first loads the model; the next still warms allocator and kernel caches)")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of each run")
    parser.add_argument("--simulated-drift", type=float, default=0.5,
                        help="dE per segment of the simulated drifting model (0: skip that part)")
    parser.add_argument("--dry-run", action="store_true", help="base 1 s, 1x and 2x, one repeat; writes no results")
    args = parser.parse_args(argv)
    lengths = (1, 2) if args.dry_run else (1, 4, 16)
    base = 1.0 if args.dry_run else args.base_seconds
    if args.dry_run:
        args.repeats, args.min_intervals = 1, 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="kinetograph-extend-bench-") as tmp:
        folder = Path(tmp)
        clip = moving_clip(folder / "clip.mp4")
        for multiple in lengths:
            row = measure_length(clip, folder, multiple, base, args)
            rows.append(row)
            per_frame = row["seconds_per_frame"]
            print(f"{multiple:>3}x: {row['frames_added']:>4} frames in {row['segments']} segments, peak RSS "
                  f"{row['peak_rss_bytes'] / 1e6:.0f} MB, {per_frame if per_frame is None else round(per_frame, 4)} "
                  f"s per frame (steady), {row['end_to_end_seconds_per_frame']:.4f} end to end, worst seam "
                  f"{row['worst_seam']:.2f}, drift {row['drift']:.2f} dE", flush=True)
        longest = base * lengths[-1]
        off = run_child(clip, longest, 0.0, folder / "off.mp4", args)
        simulated = None
        if args.simulated_drift:
            simulated = {"on": run_child(clip, longest, 1.0, folder / "sim-on.mp4", args, args.simulated_drift),
                         "off": run_child(clip, longest, 0.0, folder / "sim-off.mp4", args, args.simulated_drift)}
    lines = summary(rows, off, simulated, lengths, args)
    print("\n".join(lines))
    if not args.dry_run:
        _write_results(args, base, rows, off, simulated, lines)
    return 0


def summary(rows, off, simulated, lengths, args) -> list[str]:
    first, last = rows[0], rows[-1]
    rss_ratio = last["peak_rss_bytes"] / first["peak_rss_bytes"]
    speeds = [r["seconds_per_frame"] for r in rows if r["seconds_per_frame"] is not None]
    spread = (max(speeds) / min(speeds) - 1) if len(speeds) >= 2 else None
    lines = [
        f"peak RSS {lengths[-1]}x / 1x: {rss_ratio:.3f}x (target <= 1.15x)",
        "steady seconds per frame, spread across lengths: " + (
            f"{100 * spread:.1f}% (target <= 10%)" if spread is not None else "n/a (too few whole segments)"),
        f"colour drift at {lengths[-1]}x on the tiny model, anchoring on / off: {last['drift']:.2f} / "
        f"{off['drift']:.2f} dE" + (f" = {last['drift'] / off['drift']:.2f}x" if off["drift"] > 0 else "")
        + " (the tiny model barely drifts: nothing to measure)",
    ]
    if simulated is not None:
        on_d, off_d = simulated["on"]["drift"], simulated["off"]["drift"]
        lines.append(f"colour drift at {lengths[-1]}x, SIMULATED drifting model ({args.simulated_drift} dE per segment), "
                     f"anchoring on / off: {on_d:.2f} / {off_d:.2f} dE = "
                     + (f"{on_d / off_d:.3f}x (target <= 0.5x)" if off_d > 0 else "n/a"))
    return lines


def _write_results(args, base, rows, off, simulated, lines) -> None:
    day = _dt.date.today().isoformat()
    model = "" if args.model == "tiny-ltx" else "-" + "".join(c if c.isalnum() or c in ".-" else "-" for c in args.model)
    out = ROOT / "bench" / "results" / f"extend{model}-cpu-{day}.md"  # another model: its own file
    table = ["| length | frames added | segments | runs | intervals | peak RSS (MB) | s / frame (steady) | "
             "s / frame (end to end) | worst seam | drift (dE) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        steady = "n/a" if row["seconds_per_frame"] is None else f"{row['seconds_per_frame']:.4f}"
        table.append(f"| {row['length']}x | {row['frames_added']} | {row['segments']} | {len(row['runs'])} | "
                     f"{row['intervals']} | "
                     f"{row['peak_rss_bytes'] / 1e6:.0f} | {steady} | {row['end_to_end_seconds_per_frame']:.4f} | "
                     f"{row['worst_seam']:.2f} | {row['drift']:.2f} |")
    text = [f"# Long-video extension ({day}, {platform.processor() or platform.machine()}, CPU)", "",
            f"`python bench/extend.py --model {args.model} --base-seconds {base} --segment-frames "
            f"{args.segment_frames} --steps {args.steps} --repeats {args.repeats} --min-intervals {args.min_intervals} "
            f"--warmup-segments {args.warmup_segments} --threads {args.threads} "
            f"--simulated-drift {args.simulated_drift}`: a 12-frame 96x64 clip at 8 fps extended; each run in a "
            "fresh process.", "", *table, "",
            f"Anchoring off at the longest length: drift {off['drift']:.2f} dE, worst seam {off['worst_seam']:.2f}.",
            "", *[f"- {line}" for line in lines], "",
            "Tiny models make noise: their drift and seams describe the machinery on noise, not a real model. The "
            "simulated rows wrap the segment generation in a benchmark-only colour shift (see the module docstring)."]
    out.write_text("\n".join(text) + "\n")
    (out.with_suffix(".json")).write_text(json.dumps({"rows": rows, "anchor_off": off, "simulated": simulated},
                                                     indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
