"""Frame interpolation with the neighbouring frames, as in a video: Kinetograph vs minterpolate.

``bench/interpolation.py`` scores the issue-4 protocol, where each method sees only the two
frames around the hidden one. In a video both methods also see the frames before and after
the pair: Kinetograph's stream bends each pixel's path through four frames (quadratic
motion), and minterpolate's motion search starts from the vectors of the previous frames.
This benchmark gives both that window: for each triplet (t-s, t, t+s) of
``vfi_bench.pick_triplets`` (same triplets as the other benchmark) it also loads t-3s and
t+3s, and scores on the hidden frame t:

- ``kinetograph pair``: ``FlowBackend().interpolate(f(t-s), f(t+s), [0.5])``
- ``kinetograph context``: the same with ``previous=f(t-3s)``, ``following=f(t+3s)``
- ``minterpolate pair``: the vfi_bench method (frames A, B, B)
- ``minterpolate context``: the four frames piped to ffmpeg at 1 fps, ``minterpolate=fps=2``,
  the output frame between the middle two

Triplets whose window reaches past the clip or across a scene cut are left out. Timing is not
reported: here the context call estimates three pairs' motion, where a stream reuses each
pair's (see ``test_stream_with_context_estimates_each_pairs_motion_once``).

    .venv/bin/python bench/interpolation_context.py            # results/interpolation-context-<date>.*
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from interpolation import HARNESS, _harness, add_clip_arguments, chosen_clips  # noqa: E402

METHODS = ("kinetograph pair", "kinetograph context", "minterpolate pair", "minterpolate context")


def minterpolate_window(ffmpeg: str, frames):
    """minterpolate on four frames at 1 fps resampled to 2 fps: the frame between the middle two."""
    import numpy as np

    h, w = frames[0].shape[:2]
    vf = "format=yuv444p,minterpolate=fps=2:mi_mode=mci:mc_mode=aobmc:me_mode=bidir,format=rgb24"
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", "1", "-i", "-", "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace"))
    out = np.frombuffer(proc.stdout, np.uint8).reshape(-1, h, w, 3)
    return out[3].copy()  # output times 0, .5, 1, 1.5, ...: 1.5 lies between inputs 1 and 2


def run(clips, n_triplets: int, skips, log) -> list[dict]:
    import cv2
    import imageio_ffmpeg
    import numpy as np

    from pipelines.interpolation import FlowBackend

    vb = _harness()
    cv2.setNumThreads(2)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    pair_mi = vb.FFmpegMinterpolate()
    rows = []
    for clip in clips:
        info = vb.scan_clip(str(clip))
        for skip in skips:
            triplets, _, _ = vb.pick_triplets(info, skip, n_triplets, None)
            windows = [(a - 2 * skip, a, m, b, b + 2 * skip) for a, m, b in triplets
                       if a - 2 * skip >= 0 and b + 2 * skip < info.n_frames
                       and not any(a - 2 * skip <= k < b + 2 * skip for k in info.cuts)]
            if not windows:
                continue
            frames = vb.load_frames(str(clip), {i for window in windows for i in window})
            scores = {method: [] for method in METHODS}
            backend = FlowBackend()
            for before, a, m, b, after in windows:
                f = [frames[i] for i in (before, a, b, after)]
                predictions = {
                    "kinetograph pair": backend.interpolate(f[1], f[2], [0.5])[0],
                    "kinetograph context": next(backend.interpolate_iter(f[1], f[2], [0.5], previous=f[0],
                                                                          following=f[3])),
                    "minterpolate pair": pair_mi(f[1], f[2], 0.5),
                    "minterpolate context": minterpolate_window(ffmpeg, f),
                }
                for method, prediction in predictions.items():
                    scores[method].append(vb.psnr(frames[m], np.asarray(prediction)))
            row = {"clip": info.name, "width": info.width, "height": info.height, "skip": skip, "n": len(windows),
                   **{method: float(np.mean(values)) for method, values in scores.items()}}
            rows.append(row)
            log(f"{info.name} skip {skip} (n={len(windows)}): " +
                ", ".join(f"{method} {row[method]:.2f}" for method in METHODS))
    return rows


def summarise(rows) -> dict:
    summary = {}
    for skip in sorted({r["skip"] for r in rows}):
        chosen = [r for r in rows if r["skip"] == skip]
        summary["native" if skip == 1 else f"skip{skip}"] = {
            "clips": len(chosen), **{method: sum(r[method] for r in chosen) / len(chosen) for method in METHODS}}
    return summary


def write_markdown(path: Path, command: str, rows, summary) -> None:
    header = "| setting | clips | " + " | ".join(METHODS) + " | context gain (ours) | ours vs minterpolate, both with context |"
    lines = [f"# Frame interpolation with neighbouring frames ({_dt.date.today().isoformat()})", "",
             f"Command: `{command}`", "", "PSNR (dB) on the hidden middle frame; see the script's docstring for the "
             "protocol.", "", "## Averages over clips", "", header, "|" + "---|" * (len(METHODS) + 4)]
    for setting, s in summary.items():
        lines.append(f"| {setting} | {s['clips']} | " + " | ".join(f"{s[m]:.2f}" for m in METHODS) +
                     f" | {s['kinetograph context'] - s['kinetograph pair']:+.2f} | "
                     f"{s['kinetograph context'] - s['minterpolate context']:+.2f} |")
    lines += ["", "## Per clip", "", "| clip | resolution | skip | n | " + " | ".join(METHODS) + " |",
              "|" + "---|" * (len(METHODS) + 4)]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['width']}x{r['height']} | {r['skip']} | {r['n']} | " +
                     " | ".join(f"{r[m]:.2f}" for m in METHODS) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_arguments(ap)
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    if not HARNESS.exists():
        print(f"The benchmark harness {HARNESS} is missing (it lives in the shared folder).", file=sys.stderr)
        return 2
    clips = chosen_clips(args)
    command = " ".join([".venv/bin/python", "bench/interpolation_context.py",
                        *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])
    rows = run(clips, args.n_triplets, [int(s) for s in args.skips.split(",")], lambda m: print(m, flush=True))
    summary = summarise(rows)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"interpolation-context-{_dt.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps({"command": command, "summary": summary, "rows": rows}, indent=1)
                                         + "\n", encoding="utf-8")
    write_markdown(stem.with_suffix(".md"), command, rows, summary)
    for setting, s in summary.items():
        print(f"{setting}: " + ", ".join(f"{m} {s[m]:.2f}" for m in METHODS), flush=True)
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
