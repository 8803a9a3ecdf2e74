"""Kinetograph: Extend Video and Kinetograph: Prompt Timeline.

Extend Video continues a video (an IMAGE batch) by some seconds, segment by segment, each segment
continuing from the last frames of what exists, or, with no frames connected, makes a long video from a
prompt or a timeline. The engine's extension task does the work (``tasks.extend.extend_in_memory``);
the node's bar moves with every segment's denoising steps and shows the frames as they form.
Prompt Timeline turns 'START-END: prompt' lines into the timeline Extend Video follows.
"""
from __future__ import annotations

from ..pipelines.errors import KinetographError
from ..pipelines.events import Events
from ..pipelines.extension.timeline import parse_timeline
from ..pipelines.jobs import MAX_EXTEND_SECONDS, ExtendJob
from ..pipelines.jobspec import MAX_FPS, MAX_FRAMES, MAX_SIDE
from ..pipelines.tasks.extend import extend_in_memory
from ..pipelines.tasks.generate import MemoryOptions
from . import _comfy
from .generate import generation_inputs

INPUT_NAMES = {"seconds": "seconds", "prompt": "prompt", "timeline": "timeline", "segment-frames": "segment_frames",
               "context-frames": "context_frames", "overlap": "overlap", "anchor": "anchor", "model": "model",
               "width": "width", "height": "height", "fps": "fps"}


class KinetographPromptTimeline:
    """Prompts on a clock: one cue a line, 'START-END: prompt'; '[cut] START: prompt' starts a new shot."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"timeline": ("STRING", {
            "default": "0-2: a red fox wakes up in the snow\n2-4: the fox runs across the field",
            "multiline": True,
            "tooltip": "One cue a line: 'START-END: prompt' in seconds of the new part ('0-5: a fox wakes'); "
                       "'[cut] 12: ...' starts a new shot at 12 s. A JSON list of {start, prompt, cut} works too."})}}

    RETURN_TYPES = (_comfy.TIMELINE_TYPE,)
    RETURN_NAMES = ("timeline",)
    OUTPUT_TOOLTIPS = ("The cues: connect them to Extend Video's 'timeline'.",)
    FUNCTION = "parse"
    CATEGORY = _comfy.CATEGORY
    DESCRIPTION = "Prompts that change over time (and cuts) for Extend Video."

    @_comfy.comfy_errors(INPUT_NAMES)
    def parse(self, timeline):
        if not isinstance(timeline, str):
            raise KinetographError(f"'timeline' must be text, got {type(timeline).__name__}.")
        return (tuple(tuple(cue.to_list()) for cue in parse_timeline(timeline, "'timeline'")),)


class KinetographExtend:
    """Continue a video by some seconds (or make a long one from a prompt or timeline), segment by segment."""

    @classmethod
    def INPUT_TYPES(cls):
        shared = generation_inputs()
        return {
            "required": {
                "model": (_comfy.MODEL_TYPE, {"tooltip": "From Kinetograph: Load Video Model (a model that can "
                                                         "continue a video: LTX-Video, Wan, SkyReels-V2, AnimateDiff, SVD; "
                                                         "tiny-* for tests)."}),
                "seconds": ("FLOAT", {"default": 2.0, "min": 0.01, "max": MAX_EXTEND_SECONDS, "step": 0.1,
                                      "tooltip": "How many seconds to add (or the length of a video made from "
                                                 "nothing)."}),
                "prompt": shared["prompt"],
                "negative_prompt": shared["negative_prompt"],
                "fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_FPS, "step": 0.001,
                                  "tooltip": "With 'images': their frame rate (or connect 'source_fps'). Without: "
                                             "the new video's; 0: the model's."}),
                "segment_frames": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES, "step": 1,
                                           "tooltip": "Frames per generation; 0: the model's default length."}),
                "context_frames": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES, "step": 1,
                                           "tooltip": "Frames of what exists each segment continues from; 0: the "
                                                      "model's default."}),
                "overlap": ("INT", {"default": -1, "min": -1, "max": MAX_FRAMES, "step": 1,
                                    "tooltip": "Of those, how many are crossfaded with the new frames; -1: the "
                                               "model's default."}),
                "anchor": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                     "tooltip": "Colour anchoring to the frames the video continues from, 0 (off) to "
                                                "1, so colours do not creep from segment to segment."}),
                "steps": shared["steps"],
                "guidance": shared["guidance"],
                "seed": shared["seed"],
                "width": ("INT", {"default": 0, "min": 0, "max": MAX_SIDE, "step": 16,
                                  "tooltip": "Without 'images': the new video's width; 0: the model's default."}),
                "height": ("INT", {"default": 0, "min": 0, "max": MAX_SIDE, "step": 16,
                                   "tooltip": "Without 'images': the new video's height; 0: the model's default."}),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The video to continue; leave unconnected to make a new one."}),
                "source_fps": ("FLOAT", {"forceInput": True,
                                         "tooltip": "The frame rate of 'images' from the node that made them; "
                                                    "replaces 'fps'."}),
                "timeline": (_comfy.TIMELINE_TYPE, {"tooltip": "From Prompt Timeline: prompts that change over "
                                                               "time (replaces 'prompt')."}),
            },
        }

    RETURN_TYPES = ("IMAGE", "FLOAT", _comfy.JOB_TYPE)
    RETURN_NAMES = ("images", "fps", "job")
    OUTPUT_TOOLTIPS = ("The whole video: the input's frames, then the new ones.", "Its frame rate.",
                       "The job as run: connect it to Save Video (re-runnable when no 'images' are connected).")
    FUNCTION = "extend"
    CATEGORY = _comfy.CATEGORY
    DESCRIPTION = ("Long videos: continues the input (or a new video) segment by segment, each continuing from "
                   "the last frames, seams crossfaded and colours anchored.")

    @_comfy.comfy_errors(INPUT_NAMES)
    def extend(self, model, seconds, prompt, negative_prompt, fps, segment_frames, context_frames, overlap, anchor,
               steps, guidance, seed, width, height, images=None, source_fps=None, timeline=None):
        if not hasattr(model, "ref"):
            raise KinetographError("'model' must come from Kinetograph: Load Video Model.")
        frames = None
        if source_fps is not None:
            fps = source_fps
        if images is not None:
            frames = _comfy.to_uint8(_comfy.check_image(images))
            if not fps:
                raise KinetographError("'fps' is 0: give the frame rate of 'images', or connect the fps output of "
                                       "the node that made them to 'source_fps'.")
        job = ExtendJob(input=None, model=model.ref, seconds=seconds, prompt=prompt or "",
                        negative_prompt=negative_prompt or None, timeline=timeline,
                        segment_frames=segment_frames or None, context_frames=context_frames or None,
                        overlap=None if isinstance(overlap, int) and overlap < 0 else overlap, anchor=anchor,
                        steps=steps or None,
                        guidance=None if isinstance(guidance, (int, float)) and guidance < 0 else guidance, seed=seed,
                        width=None if frames is not None else (width or None),
                        height=None if frames is not None else (height or None),
                        fps=None if frames is not None else (fps or None))
        if frames is None:
            job.check()  # before ComfyUI is asked to free memory (with frames: checked with its input)
        _comfy.free_memory(model.budget_gb)
        bar = _comfy.StepBar()
        events = Events([bar], preview_every=1 if bar.shows_previews else 0)
        memory = MemoryOptions(budget_gb=model.budget_gb, ram_gb=model.ram_gb, mode=model.memory_mode,
                               dtype=model.dtype)
        result, out = extend_in_memory(job, frames, fps, events=events, cancel=_comfy.ComfyCancel(), memory=memory)
        bar.finish()
        run_job = _as_recorded(result.job, from_frames=frames is not None)
        record = _comfy.JobRecord(kind="extend", job=run_job, model=None, seed=result.seed, frame_count=len(out),
                                  fps=float(result.fps), rerunnable=frames is None, notes=list(result.notes))
        return (_comfy.to_image(out), float(result.fps), record)


def _as_recorded(job: ExtendJob, from_frames: bool) -> ExtendJob:
    """The job without its temporary paths: no output path (a re-run picks a name), and an input made of
    frames from the graph named for what it was."""
    import dataclasses

    return dataclasses.replace(job, out=None, **({"input": "ComfyUI IMAGE input 'images'"} if from_frames else {}))
