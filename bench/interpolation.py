"""Frame-interpolation benchmark: Kinetograph's "flow" backend vs ffmpeg minterpolate.

Protocol (../shared/tools/vfi_bench.py, called here, not copied): on every clip of
../shared/footage, hide the middle frame of triplets at native spacing (t±1) and at skip-2
spacing (t±2), predict it from its neighbours, score PSNR and SSIM against the real frame and
time each call at the clip's own resolution. Both methods run in the same process, on the same
triplets, one after the other, so the ratios are measured under the same conditions.
minterpolate runs as ``mi_mode=mci:mc_mode=aobmc:me_mode=bidir`` with the imageio-ffmpeg binary.

Then a memory check: ``interpolate_video`` (2×) on a synthetic video and on one 10× longer,
each in a fresh process; the peak RSS of both is compared (flat = the long one ≤ 1.1×).

    .venv/bin/python bench/interpolation.py                 # full run (10 triplets per clip)
    .venv/bin/python bench/interpolation.py -n 3 --no-memory # quick look

Results: ``bench/results/interpolation-<date>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
HARNESS = SHARED / "tools" / "vfi_bench.py"
FOOTAGE = SHARED / "footage"
VIDEO_SUFFIXES = {".mp4", ".mpg", ".avi", ".mov", ".mkv", ".webm"}

# Targets of issue 4 (benchmark figures, not timed tests).
PSNR_MARGIN_DB = 1.5
SPEED_RATIO_MAX = 0.33
MEMORY_RATIO_MAX = 1.1


def load(quality: str = "standard"):
    """vfi_bench plug-in factory (``py:bench/interpolation.py:load()``): Kinetograph's
    ``interpolate_pair`` (or the flow backend at another quality), warmed up once."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import numpy as np

    from pipelines.interpolation import FlowBackend, interpolate_pair

    if quality == "standard":
        interpolate = interpolate_pair
    else:
        backend = FlowBackend(quality=quality)

        def interpolate(frame0, frame1, t):
            return backend.interpolate(frame0, frame1, [t])[0]

    frame = np.zeros((64, 64, 3), np.uint8)
    interpolate(frame, frame, 0.5)
    return interpolate


def load_best():
    """``load`` at quality "best" (vfi_bench factories take no arguments)."""
    return load("best")


# --------------------------------------------------------------------------------------
# quality / speed
# --------------------------------------------------------------------------------------


def _harness():
    import importlib.util

    spec = importlib.util.spec_from_file_location("vfi_bench", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vfi_bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_quality(clips, n_triplets: int, skips: str, threads: int, minterpolate: bool, log, quality: str = "standard"):
    vb = _harness()
    import cv2

    cv2.setNumThreads(threads)
    factory = "load()" if quality == "standard" else f"load_{quality}()"
    methods = [vb.make_method(f"py:{Path(__file__).resolve()}:{factory}")]
    methods[0].name = "kinetograph"
    if minterpolate:
        mi = vb.make_method("minterpolate")
        methods.append(mi)
    results = vb.bench([str(c) for c in clips], methods, n_triplets, [int(s) for s in skips.split(",")],
                       None, 1, None, log)
    return vb.env_info(), results


def summarise(results) -> dict:
    ok = [r for r in results if "error" not in r]
    by = {}
    for r in ok:
        by.setdefault((r["skip"], r["method"]), []).append(r)
    summary = {"settings": {}, "speed": {}}
    for skip in sorted({r["skip"] for r in ok}):
        setting = "native" if skip == 1 else f"skip{skip}"
        row = {}
        for method in ("kinetograph", "minterpolate"):
            rs = by.get((skip, method), [])
            if rs:
                row[method] = {
                    "clips": len(rs),
                    "psnr": sum(r["psnr"] for r in rs) / len(rs),
                    "ssim": sum(r["ssim"] for r in rs) / len(rs),
                    "ms": sum(r["ms_mean"] for r in rs) / len(rs),
                }
        if "kinetograph" in row and "minterpolate" in row:
            row["psnr_gain_db"] = row["kinetograph"]["psnr"] - row["minterpolate"]["psnr"]
            row["psnr_target_met"] = row["psnr_gain_db"] >= PSNR_MARGIN_DB
        summary["settings"][setting] = row
    # speed per resolution class, over both settings
    for label, pred in (("720p", lambda r: r["height"] == 720), ("1080p", lambda r: r["height"] == 1080)):
        ours = [r["ms_mean"] for r in ok if pred(r) and r["method"] == "kinetograph"]
        theirs = [r["ms_mean"] for r in ok if pred(r) and r["method"] == "minterpolate"]
        if ours and theirs:
            ratio = (sum(ours) / len(ours)) / (sum(theirs) / len(theirs))
            summary["speed"][label] = {
                "kinetograph_ms": sum(ours) / len(ours),
                "minterpolate_ms": sum(theirs) / len(theirs),
                "ratio": ratio,
                "target_met": ratio <= SPEED_RATIO_MAX,
            }
    return summary


# --------------------------------------------------------------------------------------
# memory flatness
# --------------------------------------------------------------------------------------


def _synthetic_video(path: Path, frames: int, width: int, height: int, fps: int = 24) -> None:
    import numpy as np

    from pipelines.video_io import VideoWriter

    rng = np.random.default_rng(0)
    texture = (rng.random((height // 8 + 2, width // 8 + 2, 3)) * 255).astype(np.uint8)
    import cv2

    texture = cv2.resize(texture, (width * 2, height * 2), interpolation=cv2.INTER_CUBIC)
    with VideoWriter(path, fps, crf=23, preset="ultrafast", overwrite=True) as writer:
        for i in range(frames):
            x = (7 * i) % width
            y = (3 * i) % height
            writer.write(np.ascontiguousarray(texture[y:y + height, x:x + width]))


def _peak_rss_mib() -> float:
    """This process's peak resident memory. /proc's VmHWM belongs to the process image, while
    getrusage's ru_maxrss survives exec and would report the parent's size after a fork."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _memory_child(src: str, dst: str) -> None:
    """Run in a fresh process: interpolate ``src`` 2× and print the peak RSS (MiB)."""
    sys.path.insert(0, str(ROOT))
    from pipelines.interpolation import interpolate_video

    result = interpolate_video(src, dst, factor=2, overwrite=True)
    peak_mib = _peak_rss_mib()
    print(json.dumps({"peak_rss_mib": peak_mib, "frames_in": result.frames_in, "frames_out": result.frames_out,
                      "seconds": result.seconds}))


def run_memory(short_frames: int, width: int, height: int, log) -> dict:
    sys.path.insert(0, str(ROOT))
    out = {"width": width, "height": height, "runs": []}
    with tempfile.TemporaryDirectory(prefix="kg-interp-mem-") as tmp:
        for frames in (short_frames, 10 * short_frames):
            src = Path(tmp) / f"synthetic-{frames}.mp4"
            _synthetic_video(src, frames, width, height)
            proc = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(src), str(Path(tmp) / f"out-{frames}.mp4")],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"memory run failed: {proc.stderr[-2000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            run["frames"] = frames
            out["runs"].append(run)
            log(f"[memory] {frames} frames {width}x{height}: peak RSS {run['peak_rss_mib']:.0f} MiB, "
                f"{run['frames_out']} frames out in {run['seconds']:.1f} s")
    short, long = out["runs"]
    out["ratio"] = long["peak_rss_mib"] / short["peak_rss_mib"]
    out["target_met"] = out["ratio"] <= MEMORY_RATIO_MAX
    return out


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def write_markdown(path: Path, command: str, env: dict, results, summary: dict, memory: dict | None) -> None:
    ok = [r for r in results if "error" not in r]
    lines = [f"# Frame interpolation: Kinetograph vs ffmpeg minterpolate ({_dt.date.today().isoformat()})", "",
             f"Command: `{command}`", "",
             f"Machine: {env.get('cpu', '?')}, {env.get('cpu_count')} cores, OpenCV threads {env.get('cv2_threads')}, "
             f"{env.get('ffmpeg', '')}", "",
             "Protocol: `../shared/tools/vfi_bench.py` (hide the middle frame of triplets at t±1 / t±2, predict "
             "it, PSNR on RGB + SSIM), both methods in this one run. ms = wall time per predicted frame.", "",
             "## Averages over clips", "",
             "| setting | method | clips | PSNR (dB) | SSIM | ms/frame |", "|---|---|---|---|---|---|"]
    for setting, row in summary["settings"].items():
        for method in ("kinetograph", "minterpolate"):
            if method in row:
                m = row[method]
                lines.append(f"| {setting} | {method} | {m['clips']} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['ms']:.1f} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for setting, row in summary["settings"].items():
        if "psnr_gain_db" in row:
            lines.append(f"| PSNR ≥ minterpolate + {PSNR_MARGIN_DB} dB ({setting}) | {row['psnr_gain_db']:+.2f} dB | "
                         f"{'yes' if row['psnr_target_met'] else 'NO'} |")
    for label, s in summary["speed"].items():
        lines.append(f"| time ≤ {SPEED_RATIO_MAX}× minterpolate ({label}) | {s['kinetograph_ms']:.0f} / "
                     f"{s['minterpolate_ms']:.0f} ms = {s['ratio']:.2f}× | {'yes' if s['target_met'] else 'NO'} |")
    if memory:
        lines.append(f"| peak RSS, 10× longer video ≤ {MEMORY_RATIO_MAX}× | "
                     f"{memory['runs'][1]['peak_rss_mib']:.0f} / {memory['runs'][0]['peak_rss_mib']:.0f} MiB = "
                     f"{memory['ratio']:.3f}× | {'yes' if memory['target_met'] else 'NO'} |")
    if memory:
        lines += ["", f"Memory check (`{memory.get('command', command)}`): `interpolate_video` 2× on a synthetic "
                  f"{memory['width']}x{memory['height']} video of {memory['runs'][0]['frames']} and "
                  f"{memory['runs'][1]['frames']} frames, each in a fresh process; peak RSS = VmHWM."]
    lines += ["", "## Per clip", "",
              "| clip | resolution | setting | n | method | PSNR (dB) | SSIM | ms/frame |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(ok, key=lambda r: (r["clip"], r["skip"], r["method"])):
        setting = "native" if r["skip"] == 1 else f"skip {r['skip']}"
        lines.append(f"| {r['clip']} | {r['width']}x{r['height']} | {setting} | {r['n']} | {r['method']} | "
                     f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['ms_mean']:.1f} |")
    errors = [r for r in results if "error" in r]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {r['clip']} skip {r['skip']} {r['method']}: {r['error'][:300]}"
                                          for r in errors]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def add_clip_arguments(ap: argparse.ArgumentParser) -> None:
    """The footage options shared by the interpolation benchmarks."""
    ap.add_argument("clips", nargs="*", help=f"videos (default: every video in {FOOTAGE})")
    ap.add_argument("-n", "--n-triplets", type=int, default=10)
    ap.add_argument("--skips", default="1,2")


def chosen_clips(args) -> list[Path]:
    return [Path(c) for c in args.clips] or sorted(p for p in FOOTAGE.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_arguments(ap)
    ap.add_argument("--threads", type=int, default=2, help="OpenCV threads (the targets are for 2 cores)")
    ap.add_argument("--no-minterpolate", action="store_true", help="score Kinetograph alone (no ratios)")
    ap.add_argument("--quality", choices=("standard", "best"), default="standard",
                    help="the flow backend's quality setting (results of 'best' go to interpolation-<date>-best.*)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-frames", type=int, default=48, help="length of the short memory-check video")
    ap.add_argument("--memory-only", action="store_true", help="run only the memory check")
    ap.add_argument("--memory-size", default="640x360")
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        _memory_child(*args.memory_child)
        return 0
    if not HARNESS.exists():
        print(f"The benchmark harness {HARNESS} is missing (it lives in the shared folder).", file=sys.stderr)
        return 2
    clips = chosen_clips(args)
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, ROOT), "bench/interpolation.py",
                                                 *(argv if argv is not None else sys.argv[1:])])

    def log(message: str) -> None:
        print(message, flush=True)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"interpolation-{_dt.date.today().isoformat()}{'' if args.quality == 'standard' else '-' + args.quality}"
    if args.memory_only and stem.with_suffix(".json").exists():
        payload = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        payload["memory_command"] = command
    elif args.memory_only:
        payload = {"command": command, "env": {}, "summary": {"settings": {}, "speed": {}}, "results": []}
    else:
        env, results = run_quality(clips, args.n_triplets, args.skips, args.threads, not args.no_minterpolate, log,
                                   args.quality)
        env["machine"] = platform.machine()
        payload = {"command": command, "env": env, "summary": summarise(results), "memory": None, "results": results}
    if not args.no_memory:
        width, height = (int(v) for v in args.memory_size.lower().split("x"))
        payload["memory"] = run_memory(args.memory_frames, width, height, log)
        payload["memory"]["command"] = command
    summary, memory = payload["summary"], payload.get("memory")
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    write_markdown(stem.with_suffix(".md"), payload["command"], payload["env"], payload["results"], summary, memory)
    for setting, row in summary["settings"].items():
        if "psnr_gain_db" in row:
            log(f"{setting}: kinetograph {row['kinetograph']['psnr']:.2f} dB vs minterpolate "
                f"{row['minterpolate']['psnr']:.2f} dB ({row['psnr_gain_db']:+.2f})")
    for label, s in summary["speed"].items():
        log(f"speed {label}: {s['kinetograph_ms']:.0f} ms vs {s['minterpolate_ms']:.0f} ms ({s['ratio']:.2f}x)")
    if memory:
        log(f"memory: 10x longer video -> {memory['ratio']:.3f}x peak RSS")
    log(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
