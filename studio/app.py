"""The studio page: ``build(config)`` returns the ``gr.Blocks``; ``launch(...)`` serves it.

Tabs: Generate (t2v, i2v, first+last frame), Extend, Interpolate, Models, History. Every job goes
to the one worker (``studio.jobs.Runner``); the buttons' handlers are generators that poll the
job's ticket and stream its status, progress, live preview and, at the end, the video. Closing
the page never cancels a job (its result lands in the history); Cancel does.

Named API endpoints (``gradio_client``): ``/generate``, ``/extend``, ``/interpolate`` take their
settings by name and return (video file, metadata); ``/cancel``, ``/restore_settings``,
``/rerun``, ``/models``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.errors import JobCancelled, KinetographError

from . import jobs as J

log = logging.getLogger("kinetograph.studio")
POLL_S = 0.2


# ------------------------------------------------------------------ model choices
def model_choices(task: str | None = None) -> list[tuple[str, str]]:
    from pipelines.families import PRESETS, get_family

    rows = []
    for preset in PRESETS.values():
        family = get_family(preset.family)
        if task and task not in preset.repos and task not in family.pipelines:
            continue
        label = f"{preset.id} — noise: smoke tests" if preset.tiny else f"{preset.id} — {preset.description}"
        rows.append((label, preset.id))
    return rows


def extend_models() -> list[tuple[str, str]]:
    from pipelines.families import PRESETS, get_family

    return [(label, pid) for label, pid in model_choices() if get_family(PRESETS[pid].family).continue_with]


def keyframe_models() -> list[tuple[str, str]]:
    return model_choices("keyframes")


def form_rules(model: str) -> dict[str, Any]:
    """Slider settings for a model's family: frame steps (k*m+1), size steps, defaults."""
    from pipelines.families import PRESETS

    family = J.family_of(model)
    if family is None:  # a hub repo or a folder: generic limits, rounded by the engine
        return {"frames": dict(minimum=1, maximum=257, step=1, value=49), "width": dict(step=8, value=768),
                "height": dict(step=8, value=512), "steps": 30, "guidance": 5.0, "fps": 24,
                "info": "Not a preset: frames and size are rounded to the model's rules when it loads."}
    m = family.frame_multiple
    tiny = PRESETS[model].tiny
    frames = J.TINY_FORM["frames"] if tiny else family.default_frames
    info = (f"{family.label}: frames {m}k+1, sizes in steps of {family.size_multiple}, "
            f"{family.default_fps:g} fps by default.")
    if tiny:
        info += " Built-in tiny model with random weights: it makes noise (smoke tests)."
    return {"frames": dict(minimum=m + 1 if m > 1 else 1, maximum=family.max_frames, step=m, value=frames),
            "width": dict(step=family.size_multiple, value=J.TINY_FORM["width"] if tiny else family.default_width),
            "height": dict(step=family.size_multiple,
                           value=J.TINY_FORM["height"] if tiny else family.default_height),
            "steps": J.TINY_FORM["steps"] if tiny else family.default_steps, "guidance": family.default_guidance,
            "fps": family.default_fps, "info": info}


def models_table() -> list[list[str]]:
    from pipelines.catalog import model_catalog

    rows = []
    for p in model_catalog()["presets"]:
        note = "noise: smoke tests" if p["tiny"] else p["description"]
        rows.append([p["id"], p["family"], ", ".join(p["tasks"]), p["availability"], note])
    return rows


def download_model(model: str) -> str:
    """Download a preset's repos into the HF cache, or say why not and what to run instead."""
    import os

    from pipelines.families import PRESETS

    preset = PRESETS.get(model)
    if preset is None:
        return f"{model!r} is not a preset; a hub repo or local folder is used as it is."
    if preset.tiny:
        return f"{model} is built in (random weights, noise): nothing to download."
    repos = sorted(set(preset.repos.values()) | set(preset.extra_repos.values()))
    commands = "\n".join(f"    hf download {r}" for r in repos)
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return (f"This studio is offline (HF_HUB_OFFLINE is set), so {model} cannot be downloaded here. Where there "
                f"is network, run:\n{commands}\nthen restart the studio (or point --model at the folder).")
    try:
        from huggingface_hub import snapshot_download

        for repo in repos:
            snapshot_download(repo, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
    except Exception as exc:  # no network, no access, no disk: say so plainly
        return (f"Could not download {model} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
                f"Without network access, download elsewhere with:\n{commands}")
    return f"{model} downloaded."


# ------------------------------------------------------------------ streaming a job
def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def _fail(exc: BaseException) -> gr.Error:
    if isinstance(exc, KinetographError):
        return gr.Error(str(exc), print_exception=False)
    log.exception("studio job failed")
    return gr.Error(f"The job failed ({type(exc).__name__}: {exc}). The studio keeps running; try other settings.",
                    print_exception=False)


def follow(runner: J.Runner, build, request, progress, *, with_seed: bool = False):
    """Generator: build the job, queue it, stream (status, preview, video, settings[, seed]) until done."""
    skip = gr.skip()
    extra = (skip,) if with_seed else ()
    session = _session(request)
    try:
        job = build(runner.session(session))
        ticket, feed = runner.submit(job, session)
    except Exception as exc:
        error = _fail(exc)
        yield (f"⚠️ {error.message}", skip, skip, skip, *extra)
        raise error from None
    last_text, seen = None, 0
    while not ticket.done():
        text, fraction = J.describe(ticket, feed)
        if fraction is not None:
            progress(fraction, desc=text)
        snap = feed.snapshot()
        image = snap["preview"] if snap["previews"] != seen else skip
        seen = snap["previews"]
        if text != last_text or image is not skip:
            yield (text, image, skip, skip, *extra)
            last_text = text
        time.sleep(POLL_S)
    try:
        result = runner.finish(ticket, session)
    except JobCancelled:
        yield ("Cancelled: no output was written (finished segments of an extension are kept for a re-run).",
               skip, skip, skip, *extra)
        return
    except BaseException as exc:  # noqa: BLE001 - shown inline and as a message, never a traceback
        error = _fail(exc)
        yield (f"⚠️ {error.message}", skip, skip, skip, *extra)
        raise error from None
    snap = feed.snapshot()
    notes = "".join(f"\n- {n}" for n in snap["notes"] if not n.startswith("queued at"))
    text = (f"Done: `{result.path.name}` — {result.frame_count} frames, {result.width}×{result.height}, "
            f"{result.fps:g} fps" + (f", seed {result.seed}" if result.seed is not None else "") + notes)
    seed = (str(result.path),) if with_seed else ()  # the History tab's "selected output": this result
    yield (text, snap["preview"] if snap["previews"] != seen else skip, str(result.path),
           J.settings_of(J.result_metadata(result.path)), *seed)


def run_blocking(runner: J.Runner, build, request) -> tuple[str, dict]:
    """For the API: build, queue, wait; (video path, metadata) or a clear gr.Error."""
    session = _session(request)
    try:
        ticket, _feed = runner.submit(build(runner.session(session)), session)
        result = runner.finish(ticket, session)
    except BaseException as exc:  # noqa: BLE001
        raise _fail(exc) from None
    return str(result.path), J.result_summary(result)


# ------------------------------------------------------------------ the page
def result_panel(preview_label: str, elem_prefix: str | None = None):
    """The column every task tab shows: (status, live preview, the video, its settings)."""
    def elem(name: str) -> dict[str, str]:
        return {"elem_id": f"{elem_prefix}-{name}"} if elem_prefix else {}

    return (gr.Markdown("Ready.", **elem("status")),
            gr.Image(label=preview_label, type="numpy", interactive=False, **elem("preview")),
            gr.Video(label="Result", interactive=False, **elem("video")),
            gr.JSON(label="Settings of this result"))


def build(config: J.StudioConfig | None = None, runner: J.Runner | None = None) -> gr.Blocks:
    config = config or J.StudioConfig.from_env()
    runner = runner or J.Runner(config)
    config = runner.config
    default_model = "tiny-ltx"
    rules = form_rules(default_model)
    job_events = dict(concurrency_limit=16, concurrency_id="jobs")  # all reach the worker; it runs one at a time

    with gr.Blocks(title="Kinetograph studio") as demo:
        gr.Markdown("# Kinetograph studio\nVideo diffusion on one GPU queue: generate, extend, interpolate. "
                    "Models marked *noise: smoke tests* are built in with random weights.")
        queue_md = gr.Markdown(runner.queue_text(), elem_id="queue")
        with gr.Tabs() as tabs:
            # ------------------------------------------------------------ Generate
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        g_model = gr.Dropdown(model_choices(), value=default_model, label="Model", allow_custom_value=True,
                                              info="A preset, a hub repo id (diffusers format) or a local folder",
                                              elem_id="g-model")
                        g_rules = gr.Markdown(rules["info"])
                        g_task = gr.Radio(list(J.TASK_CHOICES), value="t2v", label="Task")
                        g_prompt = gr.Textbox(label="Prompt", lines=3, elem_id="g-prompt",
                                              placeholder="a red fox running through snow, golden hour")
                        with gr.Row():
                            g_image = gr.Image(type="filepath", label="Start frame", visible=False)
                            g_last = gr.Image(type="filepath", label="Last frame", visible=False)
                        g_frames = gr.Slider(label="Frames", **rules["frames"])
                        with gr.Row():
                            g_width = gr.Slider(16, 2048, label="Width", **rules["width"])
                            g_height = gr.Slider(16, 2048, label="Height", **rules["height"])
                        with gr.Row():
                            g_seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)", minimum=-1,
                                               maximum=J.MAX_SEED)
                            g_random = gr.Checkbox(value=True, label="Randomise seed")
                            g_reuse = gr.Button("♻ Reuse last seed", size="sm")
                        with gr.Accordion("Advanced settings", open=False):
                            g_steps = gr.Slider(1, 100, step=1, value=rules["steps"], label="Steps")
                            g_guidance = gr.Slider(0, 20, step=0.1, value=rules["guidance"], label="Guidance")
                            g_negative = gr.Textbox(label="Negative prompt (blank: the model's default)")
                            g_fps = gr.Number(value=rules["fps"], label="fps")
                            g_name = gr.Textbox(label="Output name (a file name, not a path)")
                            g_plan_btn = gr.Button("Explain the memory plan", size="sm")
                            g_plan = gr.Markdown()
                        with gr.Row():
                            g_go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                            g_cancel = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
                    with gr.Column(scale=1):
                        g_status, g_preview, g_video, g_meta = result_panel("Live preview (frames as they form)",
                                                                            elem_prefix="g")
            # ------------------------------------------------------------ Extend
            with gr.Tab("Extend", id="extend"):
                with gr.Row():
                    with gr.Column():
                        e_source = gr.Radio([("Upload a video", "upload"), ("The last result", "last result"),
                                             ("Nothing: a long video from the prompt", "none")], value="upload",
                                            label="Continue from")
                        e_video = gr.File(label="Video to extend", file_types=list(J.VIDEO_SUFFIXES), type="filepath")
                        e_model = gr.Dropdown(extend_models(), value=default_model, label="Model",
                                              allow_custom_value=True)
                        e_seconds = gr.Number(value=1.0, label="Seconds to add", minimum=0)
                        e_prompt = gr.Textbox(label="Prompt (what happens next)", lines=2)
                        e_timeline = gr.Textbox(label="…or a timeline (one cue a line: '0-5: a fox wakes', "
                                                      "'[cut] 8: night')", lines=4)
                        with gr.Row():
                            e_seed = gr.Number(value=-1, precision=0, label="Seed (-1: derived from the job)")
                        with gr.Accordion("Advanced settings", open=False):
                            e_segment = gr.Number(value=None, precision=0, label="Frames per segment (blank: model's)")
                            e_context = gr.Number(value=None, precision=0, label="Context frames (blank: model's)")
                            e_overlap = gr.Number(value=None, precision=0, label="Overlap frames (blank: model's)")
                            e_anchor = gr.Slider(0, 1, value=1.0, step=0.05, label="Colour anchoring")
                            e_steps = gr.Number(value=2, precision=0, label="Steps (blank: model's)")
                            e_guidance = gr.Number(value=None, label="Guidance (blank: model's)")
                            with gr.Row():
                                e_width = gr.Number(value=64, precision=0, label="Width (from nothing)")
                                e_height = gr.Number(value=64, precision=0, label="Height (from nothing)")
                                e_fps = gr.Number(value=None, label="fps (from nothing)")
                        with gr.Row():
                            e_go = gr.Button("Extend", variant="primary")
                            e_cancel = gr.Button("Cancel", variant="stop")
                    with gr.Column():
                        e_status, e_preview, e_result, e_meta = result_panel("Live preview")
            # ------------------------------------------------------------ Interpolate
            with gr.Tab("Interpolate", id="interpolate"):
                with gr.Row():
                    with gr.Column():
                        i_video = gr.File(label="Video", file_types=list(J.VIDEO_SUFFIXES), type="filepath")
                        i_last = gr.Checkbox(value=False, label="Use the last result instead")
                        i_by = gr.Radio([("By a factor", "factor"), ("To a frame rate", "fps")], value="factor",
                                        label="Raise the frame rate")
                        with gr.Row():
                            i_factor = gr.Number(value=2, precision=0, label="Factor (2, 3, 4 …)")
                            i_fps = gr.Number(value=60, label="Target fps")
                        i_method = gr.Radio([("Flow (no model, fast)", "flow"),
                                             ("Generative (a keyframes model invents the in-betweens)", "generative")],
                                            value="flow", label="Method")
                        i_quality = gr.Radio(["standard", "best"], value="standard", label="Quality (flow)")
                        i_slowmo = gr.Checkbox(value=False, label="Slow motion (keep the fps, play the new frames)")
                        with gr.Accordion("Generative settings", open=False):
                            i_model = gr.Dropdown(keyframe_models(), value=default_model, label="Model",
                                                  allow_custom_value=True)
                            i_prompt = gr.Textbox(label="Prompt (optional)")
                            i_steps = gr.Number(value=2, precision=0, label="Steps")
                            i_seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                        with gr.Row():
                            i_go = gr.Button("Interpolate", variant="primary")
                            i_cancel = gr.Button("Cancel", variant="stop")
                    with gr.Column():
                        i_status, i_preview, i_result, i_meta = result_panel("Live preview (generative)")
            # ------------------------------------------------------------ Models
            with gr.Tab("Models", id="models"):
                gr.Markdown("Presets from the registry and whether they are on this machine. A hub repo id or a "
                            "local diffusers folder can be typed into any Model box.")
                m_table = gr.Dataframe(models_table(), headers=["model", "family", "tasks", "availability", "about"],
                                       interactive=False, wrap=True)
                with gr.Row():
                    m_pick = gr.Dropdown([pid for _, pid in model_choices()], label="Model to download")
                    m_download = gr.Button("Download")
                    m_refresh = gr.Button("Refresh")
                m_message = gr.Markdown()
            # ------------------------------------------------------------ History
            with gr.Tab("History", id="history"):
                with gr.Row():
                    h_refresh = gr.Button("Refresh")
                    h_restore = gr.Button("Restore settings")
                    h_again = gr.Button("Run again")
                    h_vary = gr.Button("Vary seed")
                    h_export = gr.Button("Export as ComfyUI workflow")
                with gr.Row():
                    with gr.Column(scale=2):
                        h_gallery = gr.Gallery(label="Outputs", columns=4, height="auto", allow_preview=False)
                    with gr.Column(scale=1):
                        h_drop = gr.File(label="Drop a Kinetograph mp4 or .json to restore its settings",
                                         file_types=[".mp4", ".json"], type="filepath")
                        h_selected = gr.Textbox(label="Selected output", interactive=False)
                        h_settings = gr.JSON(label="Its settings")
                        h_workflow = gr.File(label="ComfyUI workflow (API and UI format)", file_count="multiple",
                                             interactive=False)
                h_status = gr.Markdown()
                h_preview = gr.Image(label="Live preview", type="numpy", interactive=False)
                h_result = gr.Video(label="Result", interactive=False)
                h_paths = gr.State([])

        # ---------------------------------------------------------------- hidden API inputs/outputs
        with gr.Row(visible=False):
            api_text = {k: gr.Textbox(value=v) for k, v in (
                ("prompt", ""), ("model", default_model), ("task", "t2v"), ("negative_prompt", ""), ("name", ""),
                ("source", "upload"), ("timeline", ""), ("by", "factor"), ("method", "flow"),
                ("quality", "standard"))}
            api_num = {k: gr.Number(value=None) for k in (
                "frames", "width", "height", "steps", "guidance", "fps", "seed", "seconds", "segment_frames",
                "context_frames", "overlap", "anchor", "factor")}
            api_bool = {k: gr.Checkbox(value=False) for k in ("use_last_result", "slowmo", "vary_seed")}
            api_file = {k: gr.File(value=None, type="filepath") for k in ("image", "last_image", "video", "output")}
            api_output_name = gr.Textbox(value="")  # /rerun: an output's path in the outputs folder
            api_video = gr.File()
            api_meta = gr.JSON()
            api_btns = {k: gr.Button() for k in ("generate", "extend", "interpolate", "cancel", "restore", "rerun",
                                                  "models")}

        # ---------------------------------------------------------------- generate handlers
        def on_model(model):
            r = form_rules(model)
            return (gr.Slider(**r["frames"]), gr.Slider(**r["width"]), gr.Slider(**r["height"]),
                    gr.Slider(value=r["steps"]), gr.Slider(value=r["guidance"]), gr.Number(value=r["fps"]), r["info"])

        # .input (the user's choice) not .change: restoring settings sets the model and must keep its values
        g_model.input(on_model, g_model, [g_frames, g_width, g_height, g_steps, g_guidance, g_fps, g_rules],
                       api_visibility="private")
        g_task.change(lambda t: (gr.Image(visible=t != "t2v"), gr.Image(visible=t == "keyframes")), g_task,
                      [g_image, g_last], api_visibility="private")

        def ui_generate(model, task, prompt, image, last_image, frames, width, height, steps, guidance, negative,
                        fps, name, seed, randomise, request: gr.Request, progress=gr.Progress()):  # noqa: B008 - gradio injects it
            settings = dict(model=model, task=task, prompt=prompt, image=image, last_image=last_image, frames=frames,
                            width=width, height=height, steps=steps, guidance=guidance, negative_prompt=negative,
                            fps=fps, name=name, seed=seed, randomise_seed=randomise)
            yield from follow(runner, lambda _s: J.generate_job(settings, config), request, progress, with_seed=True)

        g_go.click(ui_generate, [g_model, g_task, g_prompt, g_image, g_last, g_frames, g_width, g_height, g_steps,
                                 g_guidance, g_negative, g_fps, g_name, g_seed, g_random],
                   [g_status, g_preview, g_video, g_meta, h_selected], show_progress_on=[g_status],
                   api_visibility="private", **job_events)
        g_reuse.click(lambda m: (m.get("seed") if isinstance(m, dict) and m.get("seed") is not None else -1, False),
                      g_meta, [g_seed, g_random], api_visibility="private")

        def ui_cancel(request: gr.Request):
            n = runner.cancel(_session(request))
            return f"Cancelling {n} job(s)…" if n else "Nothing to cancel."

        for button, status in ((g_cancel, g_status), (e_cancel, e_status), (i_cancel, i_status)):
            button.click(ui_cancel, None, status, api_visibility="private")  # queued: it needs the session

        def ui_plan(model, task, frames, width, height, steps):
            from pipelines import engine

            try:
                plan = engine.plan_for_model(model, task=task, frames=int(frames), width=int(width),
                                             height=int(height), steps=int(steps))
            except KinetographError as exc:
                return f"⚠️ {exc}"
            return "```\n" + plan.explain() + "\n```"

        g_plan_btn.click(ui_plan, [g_model, g_task, g_frames, g_width, g_height, g_steps], g_plan,
                         api_visibility="private")

        # ---------------------------------------------------------------- extend / interpolate handlers
        def ui_extend(source, video, model, seconds, prompt, timeline, seed, segment, context, overlap, anchor, steps,
                      guidance, width, height, fps, request: gr.Request, progress=gr.Progress()):  # noqa: B008 - gradio injects it
            settings = dict(source=source, video=video, model=model, seconds=seconds, prompt=prompt,
                            timeline=timeline, seed=seed, segment_frames=segment, context_frames=context,
                            overlap=overlap, anchor=anchor, steps=steps, guidance=guidance, width=width,
                            height=height, fps=fps)
            yield from follow(runner, lambda s: J.extend_job(settings, config, s.last_result), request, progress)

        e_go.click(ui_extend, [e_source, e_video, e_model, e_seconds, e_prompt, e_timeline, e_seed, e_segment,
                               e_context, e_overlap, e_anchor, e_steps, e_guidance, e_width, e_height, e_fps],
                   [e_status, e_preview, e_result, e_meta], show_progress_on=[e_status], api_visibility="private",
                   **job_events)

        def ui_interpolate(video, use_last, by, factor, fps, method, quality, slowmo, model, prompt, steps, seed,
                           request: gr.Request, progress=gr.Progress()):  # noqa: B008 - gradio injects it
            settings = dict(video=video, use_last_result=use_last, by=by, factor=factor, fps=fps, method=method,
                            quality=quality, slowmo=slowmo, model=model, prompt=prompt, steps=steps, seed=seed)
            yield from follow(runner, lambda s: J.interpolate_job(settings, config, s.last_result), request, progress)

        i_go.click(ui_interpolate, [i_video, i_last, i_by, i_factor, i_fps, i_method, i_quality, i_slowmo, i_model,
                                    i_prompt, i_steps, i_seed],
                   [i_status, i_preview, i_result, i_meta], show_progress_on=[i_status], api_visibility="private",
                   **job_events)

        # ---------------------------------------------------------------- models
        m_download.click(download_model, m_pick, m_message, api_visibility="private")
        m_refresh.click(models_table, None, m_table, api_visibility="private")

        # ---------------------------------------------------------------- history
        def ui_history():
            rows = J.history(config)
            return rows, [p for p, _ in rows]

        h_refresh.click(ui_history, None, [h_gallery, h_paths], api_visibility="private")
        demo.load(ui_history, None, [h_gallery, h_paths], api_visibility="private")

        def ui_select(paths, evt: gr.SelectData):
            if evt.index is None or evt.index >= len(paths):
                return gr.skip(), gr.skip()
            path = paths[evt.index]
            return path, J.settings_of(J.result_metadata(path))

        h_gallery.select(ui_select, h_paths, [h_selected, h_settings], api_visibility="private")

        def ui_drop(path):
            if not path:
                return gr.skip(), gr.skip()
            meta = J.result_metadata(path)
            if not meta:
                raise gr.Error(f"{Path(path).name} carries no Kinetograph settings.", print_exception=False)
            return path, J.settings_of(meta)

        h_drop.upload(ui_drop, h_drop, [h_selected, h_settings], api_visibility="private")

        form = {"generate": {"model": g_model, "task": g_task, "prompt": g_prompt, "negative_prompt": g_negative,
                             "frames": g_frames, "width": g_width, "height": g_height, "steps": g_steps,
                             "guidance": g_guidance, "fps": g_fps, "seed": g_seed, "name": g_name},
                "extend": {"model": e_model, "seconds": e_seconds, "prompt": e_prompt, "seed": e_seed,
                           "segment_frames": e_segment, "context_frames": e_context, "overlap": e_overlap,
                           "anchor": e_anchor, "steps": e_steps, "guidance": e_guidance},
                "interpolate": {"factor": i_factor, "fps": i_fps, "method": i_method, "quality": i_quality,
                                "slowmo": i_slowmo, "model": i_model, "prompt": i_prompt, "steps": i_steps,
                                "seed": i_seed}}
        restore_outputs = [tabs, g_random, e_timeline, i_by, h_status,
                           *[c for fields in form.values() for c in fields.values()]]

        def ui_restore(selected):
            try:
                kind, job, _meta = J.job_in_output(J.output_file(selected, config))
            except KinetographError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            values = job.to_dict()
            updates: dict = {tabs: gr.Tabs(selected=kind), h_status: f"Settings of {Path(selected).name} restored "
                             f"into the {kind.capitalize()} tab."}
            for key, component in form[kind].items():
                value = values.get(key)
                if key == "seed" and value is None:
                    value = -1
                if value is not None or key in ("negative_prompt", "name", "prompt"):
                    updates[component] = value if value is not None else ""
            if kind == "generate":
                updates[g_random] = False
            if kind == "extend" and values.get("timeline"):
                updates[e_timeline] = "\n".join(f"{c[0]}: {c[1]}" if len(c) < 3 or not c[2] else f"[cut] {c[0]}: {c[1]}"
                                                for c in values["timeline"])
            if kind == "interpolate":
                updates[i_by] = "factor" if values.get("factor") else "fps"
            return updates

        h_restore.click(ui_restore, h_selected, restore_outputs, api_visibility="private")

        def ui_again(selected, vary, request: gr.Request, progress=gr.Progress()):  # noqa: B008 - gradio injects it
            yield from follow(runner, lambda _s: J.rerun_job(selected, config, vary_seed=vary), request, progress)

        for button, vary in ((h_again, False), (h_vary, True)):
            button.click(ui_again, [h_selected, gr.State(vary)], [h_status, h_preview, h_result, h_settings],
                         show_progress_on=[h_status], api_visibility="private", **job_events)

        def export_workflow(output=None):
            """The ComfyUI workflow (API- and UI-format JSON) that makes an output again with the pack's nodes."""
            try:
                return J.export_workflow(output, config)
            except KinetographError as exc:
                raise gr.Error(str(exc), print_exception=False) from None

        h_export.click(export_workflow, h_selected, h_workflow, api_name="export_workflow")

        # ---------------------------------------------------------------- named API endpoints
        def generate(prompt=None, model=None, task=None, image=None, last_image=None, frames=None, width=None,
                     height=None, steps=None, guidance=None, negative_prompt=None, fps=None, seed=None, name=None,
                     request: gr.Request = None):
            """Make a video (t2v, i2v, keyframes). Returns the mp4 and its metadata (settings, seed, timings)."""
            settings = dict(prompt=prompt, model=model, task=task, image=image, last_image=last_image, frames=frames,
                            width=width, height=height, steps=steps, guidance=guidance,
                            negative_prompt=negative_prompt, fps=fps, seed=seed, name=name)
            return run_blocking(runner, lambda _s: J.generate_job(settings, config), request)

        api_btns["generate"].click(generate, [api_text["prompt"], api_text["model"], api_text["task"],
                                              api_file["image"], api_file["last_image"], api_num["frames"],
                                              api_num["width"], api_num["height"], api_num["steps"],
                                              api_num["guidance"], api_text["negative_prompt"], api_num["fps"],
                                              api_num["seed"], api_text["name"]],
                                   [api_video, api_meta], api_name="generate", **job_events)

        def extend(video=None, source=None, model=None, seconds=None, prompt=None, timeline=None, seed=None,
                   segment_frames=None, context_frames=None, overlap=None, anchor=None, steps=None, guidance=None,
                   width=None, height=None, fps=None, name=None, request: gr.Request = None):
            """Extend a video (source "upload": `video`; "last result": this client's last output; "none": a long
            video from the prompt) by `seconds`. Returns the mp4 and its metadata."""
            settings = dict(source=source, video=video, model=model, seconds=seconds, prompt=prompt,
                            timeline=timeline, seed=seed, segment_frames=segment_frames,
                            context_frames=context_frames, overlap=overlap, anchor=anchor, steps=steps,
                            guidance=guidance, width=width, height=height, fps=fps, name=name)
            return run_blocking(runner, lambda s: J.extend_job(settings, config, s.last_result), request)

        api_btns["extend"].click(extend, [api_file["video"], api_text["source"], api_text["model"], api_num["seconds"],
                                          api_text["prompt"], api_text["timeline"], api_num["seed"],
                                          api_num["segment_frames"], api_num["context_frames"], api_num["overlap"],
                                          api_num["anchor"], api_num["steps"], api_num["guidance"], api_num["width"],
                                          api_num["height"], api_num["fps"], api_text["name"]],
                                 [api_video, api_meta], api_name="extend", **job_events)

        def interpolate(video=None, use_last_result=None, by=None, factor=None, fps=None, method=None, quality=None,
                        slowmo=None, model=None, prompt=None, steps=None, seed=None, request: gr.Request = None):
            """Raise a video's frame rate by `factor` or to `fps` (by = "factor" | "fps"); method flow or
            generative. Returns the mp4 and its metadata."""
            settings = dict(video=video, use_last_result=use_last_result, by=by, factor=factor, fps=fps,
                            method=method, quality=quality, slowmo=slowmo, model=model, prompt=prompt, steps=steps,
                            seed=seed)
            return run_blocking(runner, lambda s: J.interpolate_job(settings, config, s.last_result), request)

        api_btns["interpolate"].click(interpolate, [api_file["video"], api_bool["use_last_result"], api_text["by"],
                                                    api_num["factor"], api_num["fps"], api_text["method"],
                                                    api_text["quality"], api_bool["slowmo"], api_text["model"],
                                                    api_text["prompt"], api_num["steps"], api_num["seed"]],
                                      [api_video, api_meta], api_name="interpolate", **job_events)

        def cancel(request: gr.Request) -> str:
            """Cancel this client's queued and running jobs."""
            return ui_cancel(request)

        api_btns["cancel"].click(cancel, None, api_text["prompt"], api_name="cancel")

        def restore_settings(output=None):
            """The settings (kind and job) an output carries: an mp4 or .json made by Kinetograph."""
            try:
                kind, job, meta = J.job_in_output(J.output_file(output, config))
            except KinetographError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            return {"kind": kind, "job": job.to_dict(), "seed": meta.get("seed")}

        api_btns["restore"].click(restore_settings, api_file["output"], api_meta, api_name="restore_settings")

        def rerun(output=None, vary_seed=None, request: gr.Request = None):
            """Run an output's job again (the same seed), or with a new seed (`vary_seed`)."""
            return run_blocking(runner, lambda _s: J.rerun_job(output, config, vary_seed=bool(vary_seed)), request)

        api_btns["rerun"].click(rerun, [api_output_name, api_bool["vary_seed"]], [api_video, api_meta],
                                api_name="rerun", **job_events)

        def models():
            """The model presets and whether each is on this machine."""
            from pipelines.catalog import model_catalog

            return model_catalog()

        api_btns["models"].click(models, None, api_meta, api_name="models")

        timer = gr.Timer(2.0)
        timer.tick(runner.queue_text, None, queue_md, api_visibility="private", queue=False, show_progress="hidden")
    demo.runner = runner  # for tests and launch()
    return demo


def launch(host: str | None = None, port: int | None = None, *, outputs: str | None = None,
           prevent_thread_lock: bool = False, share: bool = False, gpu_jobs: int | None = None, **kwargs):
    """Serve the studio (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT when host/port are not given;
    localhost by default). Files are served only from the outputs and uploads folders.
    ``gpu_jobs``: jobs run at once (default KINETOGRAPH_GPU_JOBS, else 1)."""
    import dataclasses

    config = J.StudioConfig.from_env(outputs=outputs)
    if gpu_jobs is not None:
        config = dataclasses.replace(config, gpu_jobs=J.gpu_jobs_setting(gpu_jobs))
    config = config.prepare()
    demo = build(config)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=prevent_thread_lock,
                allowed_paths=[str(config.outputs), str(config.uploads)],
                max_file_size=config.max_upload_bytes, show_error=True, **kwargs)
    return demo
