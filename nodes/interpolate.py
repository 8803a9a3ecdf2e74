"""Kinetograph: Interpolate Frames: a thin ComfyUI adapter over ``pipelines.interpolation``.

The engine does the work (checks, timing plan, motion or generation, scene cuts, repeated frames);
this node turns its widgets into an ``InterpolateJob``, the IMAGE batch into the engine's frame
stream, writes the output frames into one tensor of the known output length, subscribes ComfyUI's
progress bar to the engine's events (with "generative" it moves with each pair's denoising steps
and shows the frames as they form) and honours its interrupt.
``method`` picks the backend: "flow" (weight-free, fast) or "generative" (a first+last-frame
video model generates each pair's in-betweens; its options are the optional inputs).
"""
from __future__ import annotations

import logging

import torch

from ..pipelines.errors import KinetographError
from ..pipelines.events import Events, Note, Preview, Progress
from ..pipelines.families import presets_for_task
from ..pipelines.interpolation import MAX_FACTOR
from ..pipelines.interpolation.flow import QUALITY_SETTINGS
from ..pipelines.jobs import InterpolateJob
from ..pipelines.jobspec import MAX_SEED, MAX_STEPS
from ..pipelines.tasks.interpolate import interpolate_in_memory
from ..pipelines.video_io import MAX_FPS
from . import _comfy

__all__ = ["KinetographInterpolate"]

MODES = ["factor", "target fps"]
# generative: the progress bar counts hundredths of an output frame, so that it moves with each
# pair's denoising steps (a pair can take minutes) instead of standing still until its frames come
GENERATION_UNITS_PER_FRAME = 100
QUALITIES = list(QUALITY_SETTINGS)
METHODS = ["flow", "generative"]
KEYFRAME_MODELS = presets_for_task("keyframes")  # presets that generate between a first and a last frame


_ComfyCancel = _comfy.ComfyCancel


class KinetographInterpolate:
    """Raise the frame rate of a batch of frames (a video) with motion-compensated in-betweens."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames, in order (at least 2)."}),
                "fps": ("FLOAT", {"default": 16.0, "min": 0.001, "max": float(MAX_FPS), "step": 0.001,
                                  "tooltip": "Frame rate of the input frames (e.g. 16 for Wan, 24 for LTX, "
                                             "23.976 for film). Ignored when 'source_fps' is connected: connect "
                                             "the fps output of the node that made the frames there."}),
                "mode": (MODES, {"default": "factor",
                                 "tooltip": "factor: the frame rate times the factor; N frames become "
                                            "(N-1)*factor+1 (each gap between two frames gets factor-1 new ones). "
                                            "target fps: any output frame rate at or above the input's "
                                            "(e.g. 23.976 -> 60)."}),
                "factor": ("INT", {"default": 2, "min": 2, "max": MAX_FACTOR, "step": 1,
                                   "tooltip": "Used when mode is 'factor': 2 doubles the frame rate; N input frames "
                                              "become (N-1)*factor+1."}),
                "target_fps": ("FLOAT", {"default": 60.0, "min": 0.001, "max": float(MAX_FPS), "step": 0.001,
                                         "tooltip": "Used when mode is 'target fps': the output frame rate, at least "
                                                    f"the input's and at most {MAX_FACTOR}x it (a lower rate would "
                                                    "drop frames and is refused)."}),
                "slowmo": ("BOOLEAN", {"default": False,
                                       "tooltip": "Slow motion: keep the input fps and play the extra frames "
                                                  "(the video gets longer) instead of raising the fps."}),
                "quality": (QUALITIES, {"default": "standard",
                                        "tooltip": "flow: best adds a second motion estimate, a little cleaner, "
                                                   "about 2x slower."}),
            },
            "optional": {
                "method": (METHODS, {"default": "flow",
                                     "tooltip": "flow: motion-compensated in-betweens, fast, no model. generative: "
                                                "a video model generates the frames between each pair (slow, "
                                                "invents content; uses the inputs below)."}),
                "model": (KEYFRAME_MODELS, {"default": "ltx-video" if "ltx-video" in KEYFRAME_MODELS
                                            else KEYFRAME_MODELS[0],
                                            "tooltip": "generative: a model that generates between a first and a "
                                                       "last frame (downloaded with `hf download`; tiny-* make "
                                                       "noise, for tests)."}),
                "model_path": ("STRING", {"default": "",
                                          "tooltip": "generative: a hub repo id or local diffusers folder to use "
                                                     "instead of model (leave empty to use model)."}),
                "prompt": ("STRING", {"default": "", "multiline": True,
                                      "tooltip": "generative: what happens between the frames (optional)."}),
                "steps": ("INT", {"default": 0, "min": 0, "max": MAX_STEPS, "step": 1,
                                  "tooltip": "generative: denoising steps; 0 uses the model's default."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "step": 1,
                                 "tooltip": "generative: the seed, the same for every pair of frames."}),
                "source_fps": ("FLOAT", {"forceInput": True,
                                        "tooltip": "The input frames' frame rate from the node that made them "
                                                   "(e.g. Generate Video's fps); when connected it replaces 'fps'."}),
            },
        }

    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    OUTPUT_TOOLTIPS = ("The interpolated frames (same size as the input).",
                       "Frame rate of the output frames: connect it to the video saver.")
    FUNCTION = "interpolate"
    CATEGORY = _comfy.CATEGORY
    DESCRIPTION = ("Frame interpolation. flow: motion-compensated, without model weights. generative: a "
                   "first+last-frame video model generates the in-betweens. Scene cuts are never blended; "
                   "repeated frames (animation on twos) are smoothed over.")

    @_comfy.comfy_errors({"fps": "target_fps", "factor": "factor", "model": "model"})
    def interpolate(self, images, fps, mode, factor, target_fps, slowmo, quality, method="flow", model="ltx-video",
                    model_path="", prompt="", steps=0, seed=0, source_fps=None):
        """The node's one call. Errors name this node's inputs (``target_fps``, not ``--fps``).

        What the engine changed on the way (it says so as note events) goes to ComfyUI's console log,
        since the node's outputs are only the frames and their fps."""
        try:
            return self._interpolate(images, fps, mode, factor, target_fps, slowmo, quality, method, model,
                                     model_path, prompt, steps, seed, source_fps)
        except KinetographError as error:
            raise type(error)(error.worded(NODE_WORDS)) from None

    def _interpolate(self, images, fps, mode, factor, target_fps, slowmo, quality, method, model, model_path,
                     prompt, steps, seed, source_fps):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
            raise KinetographError("images must be an IMAGE batch (frames × height × width × 3 channels); "
                                   "connect the frames of a video.")
        if not (images.is_floating_point() or images.dtype == torch.uint8):
            raise KinetographError(f"images must hold float (0..1) or 8-bit pixels, got {images.dtype}.")
        if images.is_floating_point() and images.dtype not in (torch.float32, torch.float64):
            images = images.float()  # bfloat16 / float16 batches (numpy has no bfloat16)
        if images.shape[-1] == 4:
            images = images[..., :3]  # RGBA batch: the colour channels (ComfyUI keeps alpha as a MASK)
        if source_fps is not None:  # the upstream node's own rate wins over the fps widget
            fps = source_fps
        count, height, width = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
        if mode not in MODES:
            raise KinetographError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
        by_factor = mode == "factor"
        if (not by_factor and not slowmo and isinstance(target_fps, (int, float)) and isinstance(fps, (int, float))
                and 0 < target_fps < fps):
            raise KinetographError(
                f"target_fps {target_fps:g} is below the input's {fps:g} fps: interpolation only adds frames, and "
                f"this would drop some. Set target_fps to {fps:g} or more (or check 'fps' / 'source_fps').")
        generative = method == "generative"  # the job refuses any other method but flow
        # The widgets as a job: only the settings of the chosen method (the job checks them, once).
        job = InterpolateJob(
            input="ComfyUI IMAGE batch", factor=factor if by_factor else None, fps=None if by_factor else target_fps,
            slowmo=bool(slowmo), method=method, quality=None if generative else quality,
            model=((model_path or "").strip() or model) if generative else None,
            prompt=prompt if generative else None, steps=(steps or None) if generative else None,
            seed=seed if generative else None)
        cancel = _ComfyCancel()
        bar = _ProgressBar(generative)
        events = Events([bar, _log_note], preview_every=1 if generative and bar.shows else 0)
        _job, plan, stream = interpolate_in_memory(job, images, fps, events=events, cancel=cancel,
                                                   frame_count=count)
        total = plan.frames_out(count)
        bar.start(total)
        device = _comfy.intermediate_device()
        out = torch.empty((total, height, width, 3), dtype=torch.float32, device=device)
        written = 0
        for frame in stream:
            if written >= total:
                raise RuntimeError(f"The interpolation engine made more than the {total} frames its plan predicts.")
            out[written].copy_(torch.from_numpy(frame)).div_(255.0)
            written += 1
        if written < total:
            out = out[:written]
        return (out, float(plan.out_fps))


# This node's words for the engine's settings, in its error messages (see KinetographError.worded).
NODE_WORDS = {"fps": "target_fps", "src_fps": "fps", "input": "images", "model": "model (or model_path)"}


def _log_note(event) -> None:
    """An engine-event subscriber: what the engine changed from the request, in ComfyUI's console log."""
    if isinstance(event, Note):
        logging.getLogger("kinetograph").info("Kinetograph: Interpolate Frames: %s", event.text)


class _ProgressBar(_comfy.StepBar):
    """The node's bar: output frames written; with the generative method, hundredths of a frame that
    move with each pair's denoising steps (never backwards), and the frames of the generation as they
    form as the bar's preview image. The bar starts once the output's length is known (``start``)."""

    def __init__(self, generative: bool) -> None:
        self.units = GENERATION_UNITS_PER_FRAME if generative else 1
        self.bar = None
        self.total = 0
        self.value = 0
        self.shows = self.shows_previews = _comfy.utils is not None

    def start(self, frames: int) -> None:
        self.total = frames * self.units
        self.bar = _comfy.progress_bar(self.total)

    def __call__(self, event) -> None:
        if self.bar is None:
            return
        if isinstance(event, Progress):
            if not event.within and event.stage == "interpolate":
                self._show(event.done * self.units)
            elif event.stage == "denoise":  # inside one pair's generation
                self._show(int(event.fraction * self.total))
        elif isinstance(event, Preview):
            self._show(self.value, _comfy.preview_image(event.frames))


