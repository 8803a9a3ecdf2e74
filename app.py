"""Kinetograph front door: `python app.py` (web UI) or `python app.py <subcommand>` (CLI).

Subcommands are thin: they turn arguments into engine calls and print what came back.
Errors a user can fix print one clear line (no traceback) and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from pipelines.errors import JobCancelled, KinetographError
from pipelines.families import TASKS


# ------------------------------------------------------------------ progress bar
class TerminalProgress:
    """An engine-event subscriber: a tqdm bar per top-level stage (load, encode, denoise, decode,
    write, interpolate); progress nested within a stage (a generation per pair while
    interpolating) shows after that stage's bar, which keeps its own count."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.stage: str | None = None
        self.bar = None
        self.notes: list[str] = []  # printed as they came; the summary does not repeat them

    def __call__(self, event) -> None:
        from pipelines.events import Note, Progress

        if not self.enabled:
            return
        if isinstance(event, Note):
            from tqdm import tqdm

            tqdm.write(f"note: {event.text}", file=sys.stderr)  # on its own line, above any bar
            self.notes.append(event.text)
        if not isinstance(event, Progress):
            return
        if event.within:  # inner work: shown after the enclosing bar
            if self.bar is not None:
                self.bar.set_postfix_str(f"{event.stage} {event.done}/{event.total}", refresh=True)
            return
        from tqdm import tqdm

        if event.stage != self.stage or self.bar is None or self.bar.total != event.total:
            self.close()
            self.stage = event.stage
            self.bar = tqdm(total=event.total, desc=f"{event.stage:>11}", unit="step" if event.stage == "denoise" else "",
                            leave=event.stage in ("denoise", "interpolate", "segment"), file=sys.stderr, dynamic_ncols=True)
        self.bar.n = event.done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PreviewWriter:
    """An engine-event subscriber that saves each preview as a numbered PNG strip of its frames."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.count = 0

    def __call__(self, event) -> None:
        from pipelines.events import Preview

        if not isinstance(event, Preview):
            return
        import numpy as np
        from PIL import Image

        self.folder.mkdir(parents=True, exist_ok=True)
        frames = event.frames[:: max(1, len(event.frames) // 8)][:8]  # at most 8 frames side by side
        self.count += 1
        name = self.folder / f"preview-{self.count:04d}-step{event.step:03d}.png"
        Image.fromarray(np.concatenate(list(frames), axis=1)).save(name)


def run_job(job, args: argparse.Namespace, preview_dir: str | None = None, **options):
    """Run ``job`` through the engine with the CLI's subscribers; print the result."""
    from pipelines import engine
    from pipelines.events import Events

    bar = TerminalProgress(enabled=not getattr(args, "quiet", False))
    events = Events([bar], preview_every=PREVIEW_EVERY if preview_dir else 0)
    if preview_dir:
        events.subscribe(PreviewWriter(preview_dir))
    try:
        result = engine.run(job, events, **options)
    finally:
        bar.close()
    if getattr(args, "json", False):
        print(json.dumps(result.to_dict(), default=str))
    else:
        print(result.summary(skip_notes=bar.notes))
    return result


PREVIEW_EVERY = 1  # denoising steps between previews written by --preview-dir


# --------------------------------------------------------------------- commands
def cmd_generate(args: argparse.Namespace) -> int:
    from pipelines.jobs import ExtendJob, GenerateJob

    if args.task == "long":  # a long video from a prompt or a timeline: the extension task from nothing
        if args.image or args.last_image or args.frames is not None or args.transformer:
            raise KinetographError("--task long takes --seconds, --prompt or --timeline, and no --image, --last-image, "
                                   "--frames or --transformer.")
        job = ExtendJob(input=None, model=args.model, seconds=args.seconds or 0.0, prompt=args.prompt or "",
                        negative_prompt=args.negative_prompt, timeline=_read_timeline(args.timeline),
                        segment_frames=args.segment_frames, steps=args.steps, guidance=args.guidance, seed=args.seed,
                        width=args.width, height=args.height, fps=args.fps, out=args.out, name=args.name)
        run_job(job, args, output_dir=args.output_dir, overwrite=args.overwrite, budget_gb=args.budget_gb,
                ram_gb=args.ram_gb, memory_mode=args.memory_mode)
        return 0
    if args.timeline or args.segment_frames is not None:
        raise KinetographError("--timeline and --segment-frames belong to --task long (or the extend command).")
    job = GenerateJob(task=args.task, model=args.model, prompt=args.prompt or "",
                      negative_prompt=args.negative_prompt, image=args.image, last_image=args.last_image,
                      frames=args.frames, seconds=args.seconds, fps=args.fps, width=args.width, height=args.height,
                      steps=args.steps, guidance=args.guidance, seed=args.seed, out=args.out, name=args.name,
                      transformer=args.transformer)
    run_job(job, args, preview_dir=args.preview_dir, output_dir=args.output_dir, overwrite=args.overwrite,
            budget_gb=args.budget_gb, ram_gb=args.ram_gb, memory_mode=args.memory_mode)
    return 0


def _read_timeline(path: str | None):
    """The cues of a --timeline file (see pipelines/extension/timeline.py for the format)."""
    if path is None:
        return None
    from pipelines.extension.timeline import parse_timeline

    file = Path(path)
    if not file.is_file():
        raise KinetographError(f"--timeline {path}: no such file. Write one cue a line, e.g. '0-5: a fox wakes'.")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KinetographError(f"--timeline {path} cannot be read as UTF-8 text ({exc}).") from None
    return tuple(cue.to_list() for cue in parse_timeline(text, f"--timeline {path}"))


def cmd_extend(args: argparse.Namespace) -> int:
    from pipelines.jobs import ExtendJob

    job = ExtendJob(input=args.input, model=args.model, seconds=args.seconds, prompt=args.prompt or "",
                    negative_prompt=args.negative_prompt, timeline=_read_timeline(args.timeline),
                    segment_frames=args.segment_frames, context_frames=args.context_frames, overlap=args.overlap,
                    anchor=args.anchor, steps=args.steps, guidance=args.guidance, seed=args.seed, out=args.out)
    run_job(job, args, overwrite=args.overwrite, budget_gb=args.budget_gb, ram_gb=args.ram_gb,
            memory_mode=args.memory_mode)
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    import dataclasses

    from pipelines.results import job_from_output

    if not args.output.strip():
        raise KinetographError("rerun needs the path of a Kinetograph output (.mp4 or its .json sidecar).")
    job, _meta = job_from_output(args.output)
    job = dataclasses.replace(job, out=args.out)  # None: a new name is chosen, never the original's
    run_job(job, args, overwrite=args.overwrite, output_dir=args.output_dir)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from pipelines.catalog import model_catalog

    rows = model_catalog()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for family in rows["families"]:
        print(f"{family['label']}  [{family['id']}]  tasks: {', '.join(family['tasks'])}; "
              f"frames {family['frame_rule']}, sizes multiple of {family['size_multiple']}, "
              f"default {family['default_size']} @ {family['default_fps']:g} fps")
        for preset in rows["presets"]:
            if preset["family"] == family["id"]:
                print(f"    {preset['id']:<22} {preset['availability']:<28} {preset['description']}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from pipelines import engine

    plan = engine.plan_for_model(args.model, task=args.task, frames=args.frames, width=args.width,
                                 height=args.height, steps=args.steps, guidance=args.guidance,
                                 budget_gb=args.budget_gb, ram_gb=args.ram_gb, mode=args.mode)
    print(json.dumps(plan.to_dict()) if args.json else plan.explain())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from pipelines.video_io import read_metadata

    if not args.path.strip():
        raise KinetographError("info needs the path of a Kinetograph output (.mp4 or its .json sidecar).")
    print(json.dumps(read_metadata(args.path), indent=2))
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from pipelines.jobs import InterpolateJob

    job = InterpolateJob(input=args.input, factor=args.factor, fps=args.fps, slowmo=args.slowmo, start=args.start,
                         end=args.end, method=args.method, quality=args.quality, model=args.model,
                         prompt=args.prompt, steps=args.steps, seed=args.seed, out=args.out)
    from pipelines import engine
    from pipelines.events import Events

    bar = TerminalProgress(enabled=not args.quiet)
    try:  # no --out: the engine names it beside the input (clip-x2.mp4, clip-60fps.mp4), never over a file
        result = engine.run(job, Events([bar]))
    finally:
        bar.close()
    made_by = f", {args.model} seed {result.seed}" if args.method == "generative" else ""
    d = result.details
    print(f"wrote {result.path}  ({d['frames_in']} -> {result.frame_count} frames, "
          f"{d['src_fps']:g} -> {result.fps:g} fps, {d['ms_per_frame']:.0f} ms per output frame{made_by}"
          + (f", scene cuts kept at input frames {d['scene_cuts']}" if d["scene_cuts"] else "") + ")")
    for note in result.notes:
        if note not in bar.notes:  # not shown as it came (--quiet)
            print(f"note: {note}")
    return 0


def cmd_workflow(args: argparse.Namespace) -> int:
    """`workflow run FILE` / `workflow validate FILE`: an API-format ComfyUI workflow of Kinetograph's nodes,
    without ComfyUI (pipelines/workflows/runner.py)."""
    from pipelines.workflows import runner

    prompt, ui = runner.load_workflow_file(args.file)
    if args.action == "validate":
        order = runner.validate(prompt)
        print(f"{args.file}: valid; {len(order)} of its {len(prompt)} nodes would run: "
              + ", ".join(f"{n} ({runner.display_name(prompt[n]['class_type'])})" for n in order))
        return 0
    bar = NodeProgress(enabled=not args.quiet)
    input_dirs = [*(args.input_dir or []), str(Path(args.file).resolve().parent),
                  str(Path(__file__).resolve().parent / "assets" / "samples")]
    try:
        result = runner.run_workflow(prompt, out_dir=args.out or "outputs", input_dirs=input_dirs, ui_workflow=ui,
                                     progress=bar)
    finally:
        bar.close()
    for path in result.files:
        print(f"wrote {path}")
    for node_id, ui_out in result.outputs.items():
        for text in (ui_out.get("text") or []) if isinstance(ui_out, dict) else []:
            print(f"node {node_id}: {text}")
    return 0


class NodeProgress:
    """Workflow progress: a line as each node starts, and a bar while it reports progress."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self.bar, self.node = enabled, None, None

    def __call__(self, node_id, class_type, index, count, value, total) -> None:
        if not self.enabled:
            return
        from pipelines.workflows.runner import display_name

        if value < 0:
            self.close()
            print(f"[{index + 1}/{count}] node {node_id}: {display_name(class_type)}", file=sys.stderr)
            return
        from tqdm import tqdm

        if self.bar is None or self.node != node_id or self.bar.total != total:
            self.close()
            self.node = node_id
            self.bar = tqdm(total=total, desc=f"node {node_id}", leave=False, file=sys.stderr, dynamic_ncols=True)
        self.bar.n = value
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_ui(args: argparse.Namespace) -> int:
    """The web studio (studio/): localhost unless --host or GRADIO_SERVER_NAME says otherwise."""
    from studio.app import launch  # gradio loads only here: `import app` and the CLI stay fast

    launch(host=getattr(args, "host", None), port=getattr(args, "port", None), outputs=getattr(args, "outputs", None),
           gpu_jobs=getattr(args, "gpu_jobs", None))
    return 0


# ----------------------------------------------------------------------- parser
def add_run_options(parser: argparse.ArgumentParser, memory: bool = True) -> None:
    """The options of every command that runs a job and writes it: --overwrite, the memory budget, --json, --quiet."""
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    if memory:
        parser.add_argument("--budget-gb", type=float, help="GPU memory to stay within (default: the GPU's free memory)")
        parser.add_argument("--ram-gb", type=float, help="host RAM to stay within (default: free RAM)")
        parser.add_argument("--memory-mode", help="force a memory mode instead of the planner's choice (see `plan`)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description=(
        "Kinetograph: video diffusion from the command line. With no subcommand, starts the web UI."))
    sub = parser.add_subparsers(dest="command")

    gen = sub.add_parser("generate", help="make a video from a prompt, a start image, or first+last frames")
    gen.add_argument("--task", choices=[*TASKS, "long"], default="t2v",
                     help="t2v, i2v, keyframes, or long: a video of --seconds made segment by segment (--timeline)")
    gen.add_argument("--timeline", help="long: a file of prompt cues, one a line: '0-5: a fox wakes' ('[cut] 12: ...' "
                                        "starts a new shot)")
    gen.add_argument("--segment-frames", type=int, help="long: frames per generation (default: the model's length)")
    gen.add_argument("--model", default="tiny-ltx", help="preset (see `models`), hub repo id, or local folder")
    gen.add_argument("--transformer", help="single-file .safetensors transformer to use instead of the model's own")
    gen.add_argument("--prompt", default="")
    gen.add_argument("--negative-prompt", default=None)
    gen.add_argument("--image", help="start frame (i2v, keyframes)")
    gen.add_argument("--last-image", help="last frame (keyframes)")
    length = gen.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int)
    length.add_argument("--seconds", type=float)
    gen.add_argument("--fps", type=float)
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--steps", type=int)
    gen.add_argument("--guidance", type=float)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--out", help="output .mp4 (default: outputs/<date>/<name>-<seed>.mp4)")
    gen.add_argument("--output-dir", help="folder for default output names (default: outputs)")
    gen.add_argument("--name", help="name for the output file")
    add_run_options(gen)
    gen.add_argument("--preview-dir", help="write a PNG preview of the frames as they form, every denoising step")
    gen.set_defaults(func=cmd_generate)

    models = sub.add_parser("models", help="list model families and presets, and which are available here")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    plan = sub.add_parser("plan", help="show the GPU memory plan for a job, without loading any weights")
    plan.add_argument("--model", required=True)
    plan.add_argument("--task", choices=list(TASKS), default="t2v")
    plan.add_argument("--frames", type=int)
    plan.add_argument("--width", type=int)
    plan.add_argument("--height", type=int)
    plan.add_argument("--steps", type=int)
    plan.add_argument("--guidance", type=float)
    plan.add_argument("--budget-gb", type=float, help="VRAM to plan for (default: this GPU's free memory)")
    plan.add_argument("--ram-gb", type=float, help="host RAM to plan for (default: free RAM)")
    plan.add_argument("--mode", help="force a memory mode (auto, or a tier name shown in the plan)")
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.set_defaults(func=cmd_plan)

    interp = sub.add_parser("interpolate", help="raise a video's frame rate (flow: no model weights needed; "
                                                "generative: a video model invents the in-betweens)")
    interp.add_argument("input", help="video file")
    rate = interp.add_mutually_exclusive_group(required=True)
    rate.add_argument("--factor", type=int, help="2, 3, 4...: that many output frames per input frame")
    rate.add_argument("--fps", type=float, help="target frame rate, e.g. 60 (24 -> 60 works)")
    interp.add_argument("--slowmo", action="store_true", help="keep the fps and multiply the frames (with --factor)")
    interp.add_argument("--start", type=int, default=0, help="first input frame")
    interp.add_argument("--end", type=int, default=None, help="input frame to stop before")
    # the engine's backend and QUALITY_SETTINGS names (tests keep them equal; importing it here slows every start)
    interp.add_argument("--method", choices=("flow", "generative"), default="flow",
                        help="flow (default): motion-compensated, fast, any machine. generative: a first+last-frame "
                             "video model generates each pair's in-betweens (needs --model; slow; invents content)")
    interp.add_argument("--quality", choices=("standard", "best"), default=None,
                        help="flow: best adds a second motion estimate, sharper where motion is hard, about 2x "
                             "slower (default: standard)")
    interp.add_argument("--model", help="generative: the video model (a preset that does keyframes, e.g. ltx-video, "
                                        "wan2.1-14b, tiny-ltx; a hub repo id or a local folder)")
    interp.add_argument("--prompt", help="generative: what happens between the frames (optional)")
    interp.add_argument("--steps", type=int, help="generative: denoising steps (default: the model's)")
    interp.add_argument("--seed", type=int, help="generative: seed, the same for every pair (default: random, "
                                                 "recorded with the result)")
    interp.add_argument("--out", help="output .mp4 (default: next to the input)")
    interp.add_argument("--quiet", action="store_true")
    interp.set_defaults(func=cmd_interpolate)

    ext = sub.add_parser("extend", help="continue a video by --seconds, segment by segment (resumes after a crash)")
    ext.add_argument("input", help="the video to continue (a Kinetograph output or your own)")
    ext.add_argument("--model", required=True, help="a model that can continue a video: ltx-video, wan2.1-14b, "
                                                    "wan2.1-t2v-1.3b (VACE), tiny-ltx / tiny-wan (noise, smoke tests)")
    ext.add_argument("--seconds", type=float, required=True, help="how much longer the video gets")
    ext.add_argument("--prompt", help="what happens next (or --timeline)")
    ext.add_argument("--timeline", help="a file of prompt cues, seconds into the new part: '0-5: it runs; [cut] 8: ...'")
    ext.add_argument("--negative-prompt", default=None)
    ext.add_argument("--segment-frames", type=int, help="frames per generation (default: the model's length)")
    ext.add_argument("--context-frames", type=int, help="frames of what exists each segment continues from "
                                                        "(default: the model's)")
    ext.add_argument("--overlap", type=int, help="of those, how many are crossfaded with the new frames")
    ext.add_argument("--anchor", type=float, default=1.0, help="colour anchoring to the frames the video continues "
                                                               "from, 0 (off) to 1 (default)")
    ext.add_argument("--steps", type=int)
    ext.add_argument("--guidance", type=float)
    ext.add_argument("--seed", type=int, help="segment i uses seed + i (default: one derived from the job)")
    ext.add_argument("--out", help="output .mp4 (default: <input>-extended.mp4 beside the input)")
    add_run_options(ext)
    ext.set_defaults(func=cmd_extend)

    rerun = sub.add_parser("rerun", help="make an output again from the job it carries (same seed, same frames)")
    rerun.add_argument("output", help="a Kinetograph output (.mp4, or its .json sidecar)")
    rerun.add_argument("--out", help="where the new video goes (default: a new name beside the usual outputs)")
    rerun.add_argument("--output-dir", help="folder for default output names (default: outputs)")
    add_run_options(rerun, memory=False)
    rerun.set_defaults(func=cmd_rerun)

    ui = sub.add_parser("ui", help="start the web studio (the same as no subcommand)")
    ui.add_argument("--host", help="address to serve on (default: GRADIO_SERVER_NAME, else 127.0.0.1)")
    ui.add_argument("--port", type=int, help="port (default: GRADIO_SERVER_PORT, else 7860)")
    ui.add_argument("--outputs", help="outputs folder the studio writes and lists (default: outputs)")
    ui.add_argument("--gpu-jobs", type=int, help="jobs run at once (default: KINETOGRAPH_GPU_JOBS, else 1; more "
                                                 "than one needs each job's memory, e.g. several GPUs)")
    ui.set_defaults(func=cmd_ui)

    flow = sub.add_parser("workflow", help="run or check an API-format ComfyUI workflow of Kinetograph's nodes "
                                           "without ComfyUI (e.g. example_workflows/*_api.json)")
    flow.add_argument("action", choices=("run", "validate"), help="run: execute it; validate: check it, run nothing")
    flow.add_argument("file", help="an API-format workflow .json (ComfyUI: Export (API)), or a video written by "
                                   "Kinetograph: Save Video (its workflow is inside)")
    flow.add_argument("--out", help="folder for the videos Save Video writes (default: outputs)")
    flow.add_argument("--input-dir", action="append", help="folder where LoadImage/LoadVideo file names are looked "
                                                          "up (default: the workflow's folder, then assets/samples)")
    flow.add_argument("--quiet", action="store_true", help="no progress")
    flow.set_defaults(func=cmd_workflow)

    info = sub.add_parser("info", help="print the settings embedded in a Kinetograph output")
    info.add_argument("path")
    info.set_defaults(func=cmd_info)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C so the same clean-up runs
    (the writer deletes its temporary files; nothing half-written is left)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_TERMINATING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _on_terminate(signum, _frame) -> None:
    for other in _TERMINATING_SIGNALS:  # once: a second signal must not interrupt the clean-up
        signal.signal(other, signal.SIG_IGN)
    raise Terminated(signum)


def _catch_termination() -> dict:
    """Install the handlers (main thread only); returns the previous ones, to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _on_terminate) for signum in _TERMINATING_SIGNALS}


# A job's settings in the CLI's words, where they are not simply --field-name (engine errors name
# the setting at fault by its field; see KinetographError.worded).
CLI_WORDS = {
    "generate": {"mode": "--memory-mode"},
    "interpolate": {"input": "INPUT", "src_fps": "the input video's frame rate"},
    "rerun": {"mode": "--memory-mode"},
}


def cli_word(field: str, command: str | None) -> str:
    """How the CLI names a job's ``field`` in ``command``: its flag (``budget_gb`` -> ``--budget-gb``)."""
    return CLI_WORDS.get(command or "", {}).get(field) or "--" + field.replace("_", "-")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", cmd_ui)
    previous = _catch_termination()
    try:
        code = func(args)
        sys.stdout.flush()  # here, where a closed pipe is caught below, not at exit
        return code
    except JobCancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"cancelled: stopped by {signal.Signals(exc.signum).name}; no output was written.", file=sys.stderr)
        return 128 + exc.signum  # 143 for SIGTERM, 129 for SIGHUP, as the shell reports them
    except KeyboardInterrupt:
        print("cancelled: interrupted; no output was written.", file=sys.stderr)
        return 130
    except KinetographError as exc:
        print(f"error: {exc.worded({field: cli_word(field, args.command) for field in exc.fields})}",
              file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (``app.py info X | head``): stop quietly, as other tools do. What is
        # left to print goes nowhere, so that Python's flush at exit does not raise again (Python's own recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
