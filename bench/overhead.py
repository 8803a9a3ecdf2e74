#!/usr/bin/env python
"""Overhead of the engine: ``python app.py generate`` vs a plain diffusers script doing the same job.

Both sides run the same tiny pipeline (the built-in ``tiny-wan`` folder that
``pipelines.models.ensure_tiny_model`` builds under KINETOGRAPH_HOME) from disk, with the same
settings: t2v, 33 frames, 128x128, 8 steps, the same seed, and the guidance scale and negative
prompt that the engine's job adaptation fills in for the Wan family (read from
``JobSpec.adapted_to``, not copied). The plain script is what a diffusers user would write:
``WanPipeline.from_pretrained``, one ``__call__`` with a CPU generator, ``export_to_video``.

Each side is a whole process (``subprocess``; wall time from start to exit, imports included).
The runs alternate (ours, plain, ours, plain, ...) so that load on the machine hits both alike;
the report gives the min and the median of each side and the ratio ours/plain of both. Each
side also reports its stages (ours: the engine's own timings; plain: load, the call split at the
last denoising step's callback into denoise and decode, and write; "outside" = wall time minus
the timed stages: interpreter start, imports, argument parsing, exit).

    python bench/overhead.py                 # 5 pairs; writes bench/results/overhead-cpu-<date>.md
    python bench/overhead.py --pairs 9
    python bench/overhead.py --dry-run       # 9 frames, 64x64, 2 steps, 1 pair; writes nothing

Target (issue 15): ratio <= 1.03 on CPU.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = "tiny-wan"
TASK = "t2v"
PROMPT = "a red fox running through snow"
SEED = 3
FULL = {"frames": 33, "width": 128, "height": 128, "steps": 8, "pairs": 5}
DRY = {"frames": 9, "width": 64, "height": 64, "steps": 2, "pairs": 1}
TARGET_RATIO = 1.03

# The plain diffusers script: what a user of diffusers alone would write for this job.
# Its settings arrive as one JSON argument; it prints one JSON line with its stage times.
PLAIN_SCRIPT = r'''
import json, sys, time
t_start = time.perf_counter()
import torch
from diffusers import WanPipeline
from diffusers.utils import export_to_video

s = json.loads(sys.argv[1])
t_import = time.perf_counter()
pipe = WanPipeline.from_pretrained(s["folder"], dtype=torch.float32, use_safetensors=True, local_files_only=True)
pipe.set_progress_bar_config(disable=True)
t_load = time.perf_counter()
last_step = {}

def on_step(pipe_, step, timestep, kwargs):
    last_step["t"] = time.perf_counter()
    return kwargs

frames = pipe(prompt=s["prompt"], negative_prompt=s["negative_prompt"], height=s["height"], width=s["width"],
              num_frames=s["frames"], num_inference_steps=s["steps"], guidance_scale=s["guidance"],
              generator=torch.Generator("cpu").manual_seed(s["seed"]), callback_on_step_end=on_step).frames[0]
t_call = time.perf_counter()
export_to_video(frames, s["out"], fps=s["fps"])
t_write = time.perf_counter()
print(json.dumps({"import": t_import - t_start, "load": t_load - t_import,
                  "encode+denoise": last_step["t"] - t_load, "decode": t_call - last_step["t"],
                  "write": t_write - t_call, "total": t_write - t_import}))
'''


def job_settings(size: dict) -> dict:
    """The job as the engine adapts it (guidance, negative prompt, fps filled in from the family)."""
    from pipelines.families import adapter_for
    from pipelines.jobspec import JobSpec
    from pipelines.models import ensure_tiny_model, resolve_model

    source = resolve_model(MODEL, TASK, prefer_cuda=False)
    job = JobSpec(task=TASK, model=MODEL, prompt=PROMPT, frames=size["frames"], width=size["width"],
                  height=size["height"], steps=size["steps"], seed=SEED).adapted_to(source.family)
    if job.adjustments:
        raise SystemExit(f"benchmark settings are not legal as given: {job.adjustments}")
    call = adapter_for(source.family.adapter).call_kwargs(job)
    return {"folder": str(ensure_tiny_model(MODEL)), "prompt": job.prompt, "negative_prompt": job.negative_prompt,
            "height": call["height"], "width": call["width"], "frames": call["num_frames"],
            "steps": call["num_inference_steps"], "guidance": call["guidance_scale"], "seed": job.seed,
            "fps": int(round(job.fps))}


def run_ours(settings: dict, out: Path) -> tuple[float, dict]:
    cmd = [sys.executable, str(ROOT / "app.py"), "generate", "--task", TASK, "--model", MODEL,
           "--prompt", settings["prompt"], "--frames", str(settings["frames"]), "--width", str(settings["width"]),
           "--height", str(settings["height"]), "--steps", str(settings["steps"]), "--seed", str(settings["seed"]),
           "--out", str(out), "--overwrite", "--quiet", "--json"]
    wall, stdout = _timed(cmd)
    result = json.loads(stdout.strip().splitlines()[-1])
    stages = dict(result["timings"])
    stages["prepare"] = stages["total"] - sum(v for k, v in stages.items() if k != "total")
    return wall, stages


def run_plain(settings: dict, script: Path, out: Path) -> tuple[float, dict]:
    wall, stdout = _timed([sys.executable, str(script), json.dumps({**settings, "out": str(out)})])
    return wall, json.loads(stdout.strip().splitlines()[-1])


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
threads: int | None = None  # --threads: the same thread count for both sides (None: as a user runs them)


def _timed(cmd: list[str]) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env.update({name: str(threads) for name in THREAD_VARS})
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def summarise(walls: list[float]) -> dict:
    return {"min": min(walls), "median": statistics.median(walls)}


def stage_table(runs: list[dict]) -> dict:
    """Per stage, the min over runs (the least disturbed measurement)."""
    keys = list(dict.fromkeys(k for r in runs for k in r))
    return {k: min(r[k] for r in runs if k in r) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, help="alternating (ours, plain) pairs (default 5; 1 with --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="small and fast (9 frames, 64x64, 2 steps); no results file")
    parser.add_argument("--results", type=Path, help="markdown results file (default bench/results/overhead-cpu-<date>.md)")
    parser.add_argument("--threads", type=int, help="OMP/MKL threads for both sides (default: torch's own choice, "
                        "one per core); 1 gives steadier numbers on a small shared machine")
    args = parser.parse_args(argv)
    global threads
    threads = args.threads
    size = dict(DRY if args.dry_run else FULL)
    pairs = args.pairs or size["pairs"]
    settings = job_settings(size)  # builds the tiny model once, before anything is timed

    ours_walls, plain_walls, ours_stages, plain_stages = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="kinetograph-overhead-") as tmp:
        tmp_dir = Path(tmp)
        script = tmp_dir / "plain_diffusers.py"
        script.write_text(PLAIN_SCRIPT)
        for i in range(pairs):
            # Alternate which side goes first, so neither always follows the other.
            order = ("ours", "plain") if i % 2 == 0 else ("plain", "ours")
            for side in order:
                if side == "ours":
                    wall, stages = run_ours(settings, tmp_dir / "ours.mp4")
                    ours_walls.append(wall)
                    ours_stages.append({**stages, "outside": wall - stages["total"]})
                else:
                    wall, stages = run_plain(settings, script, tmp_dir / "plain.mp4")
                    plain_walls.append(wall)
                    plain_stages.append({**stages, "outside": wall - stages["total"]})
                print(f"pair {i + 1}/{pairs} {side:<5} {wall:6.2f} s  " +
                      ", ".join(f"{k} {v:.2f}" for k, v in stages.items()), flush=True)

    ours, plain = summarise(ours_walls), summarise(plain_walls)
    ratio_min, ratio_median = ours["min"] / plain["min"], ours["median"] / plain["median"]
    print(f"ours  (python app.py generate): min {ours['min']:.2f} s, median {ours['median']:.2f} s")
    print(f"plain (diffusers script):       min {plain['min']:.2f} s, median {plain['median']:.2f} s")
    print(f"ratio ours/plain: {ratio_min:.3f}x (min), {ratio_median:.3f}x (median); target <= {TARGET_RATIO}x")

    if not args.dry_run:
        path = args.results or ROOT / "bench" / "results" / f"overhead-cpu-{_dt.date.today().isoformat()}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_report(settings, pairs, ours, plain, ratio_min, ratio_median, ours_walls, plain_walls,
                                stage_table(ours_stages), stage_table(plain_stages)))
        print(f"wrote {path}")
    return 0


def _report(settings, pairs, ours, plain, ratio_min, ratio_median, ours_walls, plain_walls, ours_st, plain_st) -> str:
    import diffusers
    import torch

    shown = {k: v for k, v in settings.items() if k not in ("folder", "negative_prompt")}
    lines = [
        f"# Engine overhead on CPU ({_dt.date.today().isoformat()})",
        "",
        "`python app.py generate` vs a plain diffusers script (`bench/overhead.py`), whole processes, "
        f"{pairs} alternating pairs, "
        + (f"both sides with OMP_NUM_THREADS=MKL_NUM_THREADS={threads}." if threads else
           "threads as torch chooses them (one per core)."),
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, diffusers {diffusers.__version__}",
        f"- job: {MODEL} {TASK}, {json.dumps(shown)}, the engine's default negative prompt for Wan",
        "",
        "| side | min (s) | median (s) | runs (s) |",
        "|---|---|---|---|",
        f"| ours | {ours['min']:.2f} | {ours['median']:.2f} | {', '.join(f'{w:.2f}' for w in ours_walls)} |",
        f"| plain | {plain['min']:.2f} | {plain['median']:.2f} | {', '.join(f'{w:.2f}' for w in plain_walls)} |",
        "",
        f"**ratio ours/plain: {ratio_min:.3f}x (min), {ratio_median:.3f}x (median)**; target <= {TARGET_RATIO}x",
        "",
        "Stages (min over runs, seconds). Plain's `encode+denoise` is its call up to the last step's "
        "callback, `decode` the rest of the call (VAE decode + postprocess); `outside` is wall time "
        "minus the timed stages (interpreter, imports, exit).",
        "",
        "| side | " + " | ".join(ours_st) + " |",
        "|---|" + "---|" * len(ours_st),
        "| ours | " + " | ".join(f"{v:.2f}" for v in ours_st.values()) + " |",
        "",
        "| side | " + " | ".join(plain_st) + " |",
        "|---|" + "---|" * len(plain_st),
        "| plain | " + " | ".join(f"{v:.2f}" for v in plain_st.values()) + " |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
