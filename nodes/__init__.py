"""Kinetograph ComfyUI nodes: thin adapters over ``pipelines`` (V1 API, category "Kinetograph").

* Load Video Model (``KinetographLoadModel``): a preset, a diffusers folder in ComfyUI's
  models/diffusers, or a hub repo id; dtype and memory settings -> KINETOGRAPH_MODEL.
* Generate Video (``KinetographGenerate``): t2v, i2v, first/last frame -> IMAGE, fps, job (+ VIDEO).
* Extend Video (``KinetographExtend``) and Prompt Timeline (``KinetographPromptTimeline``).
* Interpolate Frames (``KinetographInterpolate``): flow or generative in-betweens.
* Save Video (``KinetographSaveVideo``): mp4 with the job and ComfyUI's workflow embedded.
* Video Info (``KinetographVideoInfo``).

ComfyUI's VIDEO type is accepted and produced only where the running ComfyUI has it (``_comfy.HAS_VIDEO``).
Only relative imports: the pack is imported by ComfyUI under an arbitrary package name,
and a top-level ``nodes`` module is ComfyUI's own.
"""
from .extend import KinetographExtend, KinetographPromptTimeline
from .generate import KinetographGenerate
from .interpolate import KinetographInterpolate
from .model import KinetographLoadModel
from .save import KinetographSaveVideo, KinetographVideoInfo

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "KinetographLoadModel": KinetographLoadModel,
    "KinetographGenerate": KinetographGenerate,
    "KinetographExtend": KinetographExtend,
    "KinetographPromptTimeline": KinetographPromptTimeline,
    "KinetographInterpolate": KinetographInterpolate,
    "KinetographSaveVideo": KinetographSaveVideo,
    "KinetographVideoInfo": KinetographVideoInfo,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "KinetographLoadModel": "Kinetograph: Load Video Model",
    "KinetographGenerate": "Kinetograph: Generate Video",
    "KinetographExtend": "Kinetograph: Extend Video",
    "KinetographPromptTimeline": "Kinetograph: Prompt Timeline",
    "KinetographInterpolate": "Kinetograph: Interpolate Frames",
    "KinetographSaveVideo": "Kinetograph: Save Video",
    "KinetographVideoInfo": "Kinetograph: Video Info",
}
