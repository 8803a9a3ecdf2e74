"""Kinetograph: Generate Video: text, a start image, or a first and a last frame to a video.

A thin subscriber of the engine: its widgets become a GenerateJob, IMAGE inputs the job's images
(in memory, labelled), ``engine.generate_frames`` does the work; ComfyUI's ProgressBar moves with
each denoising step and shows the frames as they form, its Cancel stops within a step.
"""
from __future__ import annotations

from ..pipelines import engine
from ..pipelines.errors import KinetographError
from ..pipelines.events import Events
from ..pipelines.jobs import GenerateJob
from ..pipelines.jobspec import MAX_FPS, MAX_FRAMES, MAX_SEED, MAX_SIDE, MAX_STEPS
from . import _comfy

TASK_CHOICES = ["t2v", "i2v", "keyframes"]
IMAGE_LABELS = {"image": "ComfyUI IMAGE input 'image'", "last_image": "ComfyUI IMAGE input 'last_image'"}
# the engine's command-line words -> this node's inputs
INPUT_NAMES = {"image": "image", "last-image": "last_image", "frames": "frames", "seconds": "frames",
               "model": "model", "prompt": "prompt", "task": "task", "transformer": "model"}


def generation_inputs() -> dict:
    """The widgets Generate Video and Extend Video share (0 / -1: the model's default)."""
    return {
        "prompt": ("STRING", {"default": "", "multiline": True, "tooltip": "What should happen in the video."}),
        "negative_prompt": ("STRING", {"default": "", "multiline": True,
                                       "tooltip": "What to avoid; empty: the model's default negative prompt."}),
        "steps": ("INT", {"default": 0, "min": 0, "max": MAX_STEPS, "step": 1,
                          "tooltip": "Denoising steps; 0: the model's default."}),
        "guidance": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 50.0, "step": 0.1,
                               "tooltip": "Classifier-free guidance; -1: the model's default; 1 or less turns it "
                                          "off (faster)."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "step": 1, "control_after_generate": True,
                         "tooltip": "The same seed and settings give the same video."}),
    }


class KinetographGenerate:
    """Make a video from a prompt (t2v), a start image (i2v) or a first and a last frame (keyframes)."""

    @classmethod
    def INPUT_TYPES(cls):
        shared = generation_inputs()
        return {
            "required": {
                "model": (_comfy.MODEL_TYPE, {"tooltip": "From Kinetograph: Load Video Model."}),
                "task": (TASK_CHOICES, {"default": "t2v",
                                        "tooltip": "t2v: text to video. i2v: from the 'image' start frame. "
                                                   "keyframes: from 'image' (first frame) to 'last_image'."}),
                "prompt": shared["prompt"],
                "negative_prompt": shared["negative_prompt"],
                "frames": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES, "step": 1,
                                   "tooltip": "Frames to make; 0: the model's default. Rounded to the model's rule "
                                              "(LTX 8k+1, Wan 4k+1) with a note."}),
                "width": ("INT", {"default": 0, "min": 0, "max": MAX_SIDE, "step": 16,
                                  "tooltip": "0: the model's default; rounded to the model's size multiple."}),
                "height": ("INT", {"default": 0, "min": 0, "max": MAX_SIDE, "step": 16,
                                   "tooltip": "0: the model's default; rounded to the model's size multiple."}),
                "fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_FPS, "step": 0.001,
                                  "tooltip": "Frame rate of the video; 0: the model's (LTX 24, Wan 16)."}),
                "steps": shared["steps"],
                "guidance": shared["guidance"],
                "seed": shared["seed"],
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "i2v / keyframes: the start frame (the first image of the batch)."}),
                "last_image": ("IMAGE", {"tooltip": "keyframes: the last frame (the first image of the batch)."}),
            },
        }

    RETURN_TYPES = ("IMAGE", "FLOAT", _comfy.JOB_TYPE, *(("VIDEO",) if _comfy.HAS_VIDEO else ()))
    RETURN_NAMES = ("images", "fps", "job", *(("video",) if _comfy.HAS_VIDEO else ()))
    OUTPUT_TOOLTIPS = ("The video's frames.", "Its frame rate: connect it to Save Video or Interpolate Frames.",
                       "The job as run (seed, rounded sizes): connect it to Save Video so the file can be re-made "
                       "with `python app.py rerun`.",
                       *(("The same video as ComfyUI's VIDEO.",) if _comfy.HAS_VIDEO else ()))
    FUNCTION = "generate"
    CATEGORY = _comfy.CATEGORY
    DESCRIPTION = "Text, a start image, or a first and a last frame to a video, with any Kinetograph model."

    @_comfy.comfy_errors(INPUT_NAMES)
    def generate(self, model, task, prompt, negative_prompt, frames, width, height, fps, steps, guidance, seed,
                 image=None, last_image=None):
        if not hasattr(model, "ref"):
            raise KinetographError("'model' must come from Kinetograph: Load Video Model.")
        arrays, labels = {}, {}
        for key, value in (("image", image), ("last_image", last_image)):
            if value is not None:
                arrays[key] = _comfy.to_uint8(_comfy.check_image(value, key)[:1])[0]
                labels[key] = IMAGE_LABELS[key]
        if task == "t2v":  # images left connected from another task are not the job's
            arrays, labels = {}, {}
        elif task == "i2v":
            arrays.pop("last_image", None)
            labels.pop("last_image", None)
        job = GenerateJob(task=task, model=model.ref, prompt=prompt if isinstance(prompt, str) else prompt,
                          negative_prompt=negative_prompt or None, image=labels.get("image"),
                          last_image=labels.get("last_image"), frames=frames or None, fps=fps or None,
                          width=width or None, height=height or None, steps=steps or None,
                          guidance=None if isinstance(guidance, (int, float)) and guidance < 0 else guidance,
                          seed=seed)
        job.check()  # before ComfyUI is asked to free memory
        _comfy.free_memory(model.budget_gb)
        bar = _comfy.StepBar()
        events = Events([bar], preview_every=1 if bar.shows_previews else 0)
        made = engine.generate_frames(job, images=arrays or None, events=events, cancel=_comfy.ComfyCancel(),
                                      dtype=model.dtype, **model.memory_options())
        bar.finish()
        images = _comfy.to_image(made.frames)
        record = _comfy.JobRecord(kind="generate", job=made.job, model=made.model, seed=made.job.seed,
                                  frame_count=len(made.frames), fps=float(made.job.fps), rerunnable=not arrays,
                                  notes=list(made.notes), inputs={})
        outputs = (images, float(made.job.fps), record)
        if _comfy.HAS_VIDEO:
            outputs += (_comfy.video_from_images(images, made.job.fps),)
        return outputs
