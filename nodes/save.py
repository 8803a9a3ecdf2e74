"""Kinetograph: Save Video and Kinetograph: Video Info.

Save Video writes an H.264 mp4 (plays in any browser) into ComfyUI's output folder with the engine's
VideoWriter, carrying two things: the Kinetograph job that made the frames (from a 'job' link), so
`python app.py rerun FILE.mp4` makes the same video, and ComfyUI's prompt and workflow as mp4 tags, as
ComfyUI's own SaveVideo stores them, so dropping the file onto ComfyUI restores the graph and
`python app.py workflow run FILE.mp4` runs it headless. It returns the file as the node's preview.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..pipelines.errors import KinetographError
from ..pipelines.results import base_metadata
from ..pipelines.video_io import MAX_FPS, VideoWriter
from . import _comfy

_VIDEO_INPUT = {"video": ("VIDEO", {"tooltip": "ComfyUI's VIDEO, instead of 'images' and 'fps'."})} \
    if _comfy.HAS_VIDEO else {}


class KinetographSaveVideo:
    """Save frames as an mp4 that carries its Kinetograph job and the ComfyUI workflow."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "fps": ("FLOAT", {"default": 24.0, "min": 0.001, "max": float(MAX_FPS), "step": 0.001,
                                  "tooltip": "Frame rate of the video: connect the fps output of the node that made "
                                             "the frames."}),
                "filename_prefix": ("STRING", {"default": "Kinetograph/video",
                                               "tooltip": "Name of the file in ComfyUI's output folder (a '/' makes "
                                                          "a subfolder); _00001_.mp4 and so on is added."}),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The frames to save."}),
                "job": (_comfy.JOB_TYPE, {"tooltip": "The job output of Generate Video or Extend Video: embedded so "
                                                     "`python app.py rerun FILE.mp4` makes the same video."}),
                **_VIDEO_INPUT,
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("Where the mp4 was written.",)
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = _comfy.CATEGORY
    DESCRIPTION = ("Saves an H.264 mp4 with the Kinetograph job and the ComfyUI workflow embedded (drop it onto "
                   "ComfyUI to get the graph back; `python app.py rerun` re-makes it).")

    @_comfy.comfy_errors({"out": "filename_prefix", "overwrite": "filename_prefix"})
    def save(self, fps, filename_prefix, images=None, job=None, video=None, prompt=None, extra_pnginfo=None):
        if video is not None:
            images, fps = _comfy.images_from_video(video)
        if images is None:
            raise KinetographError("Nothing to save: connect 'images' (and 'fps')"
                                   + (", or 'video'." if _comfy.HAS_VIDEO else "."))
        frames = _comfy.to_uint8(_comfy.check_image(images))
        folder, name, subfolder = _save_path(filename_prefix)
        metadata = _metadata(job, len(frames), fps)
        tags = {}
        if prompt is not None:
            tags["prompt"] = json.dumps(prompt)
        for key, value in (extra_pnginfo or {}).items():
            tags[str(key)] = json.dumps(value)
        with VideoWriter(folder / name, fps, metadata=metadata, tags=tags, rename_if_taken=True,
                         remedy="change 'filename_prefix'") as writer:
            writer.write(frames)
        path = writer.path
        return {"ui": {"images": [{"filename": path.name, "subfolder": subfolder, "type": "output"}],
                       "animated": (True,)},
                "result": (str(path),)}


def _metadata(record, frame_count: int, fps: float) -> dict:
    """The job when the frames are exactly what it made (so `rerun` re-makes them), else a note."""
    from ..pipelines.results import METADATA_FORMAT, __version__

    if record is None:
        return {"kinetograph": {"version": __version__, "format": METADATA_FORMAT}, "kind": None,
                "notes": ["saved from a ComfyUI graph without a Kinetograph job: re-make it with "
                          "`python app.py workflow run` on this file, or in ComfyUI"]}
    if not hasattr(record, "job"):
        raise KinetographError("'job' must come from the job output of Generate Video or Extend Video.")
    same = record.rerunnable and record.frame_count == frame_count and abs(record.fps - float(fps)) < 1e-6
    if same:
        metadata = base_metadata(record.kind, record.job, model=record.model, seed=record.seed, inputs=record.inputs)
        metadata["notes"] = list(record.notes)
        return metadata
    why = ("its inputs were frames from the graph, which no file holds" if not record.rerunnable else
           "the frames were changed after it (another frame count or rate)")
    return {"kinetograph": base_metadata(record.kind, record.job)["kinetograph"], "kind": None,
            "source_job": {"kind": record.kind, "job": record.job.to_dict(), "seed": record.seed},
            "notes": [f"not re-runnable with `python app.py rerun`: {why}; re-make it with "
                      "`python app.py workflow run` on this file, or in ComfyUI"]}


_COUNTER = re.compile(r"_(\d{5})_\.mp4$")


def _save_path(prefix: str) -> tuple[Path, str, str]:
    """(folder, file name, subfolder relative to the output folder) for ``prefix``, as ComfyUI names
    saved files (``<prefix>_00001_.mp4``, the next free counter), never outside the output folder."""
    if not isinstance(prefix, str) or not prefix.strip():
        raise KinetographError("'filename_prefix' is empty: give a name such as Kinetograph/video.")
    root = _comfy.output_directory().resolve()
    parts = Path(prefix.strip().replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts:
        raise KinetographError(f"'filename_prefix' {prefix!r} must stay inside the output folder: no absolute "
                               f"path and no '..'.")
    folder = (root / parts).parent
    base = parts.name
    if not base:
        raise KinetographError(f"'filename_prefix' {prefix!r} has no file name after its folder.")
    folder.mkdir(parents=True, exist_ok=True)
    used = [int(m.group(1)) for p in folder.glob(f"{base}_*_.mp4") if (m := _COUNTER.search(p.name))
            and p.name[:-len(m.group(0))] == base]
    name = f"{base}_{max(used, default=0) + 1:05d}_.mp4"
    subfolder = folder.relative_to(root).as_posix()
    return folder, name, "" if subfolder == "." else subfolder


class KinetographVideoInfo:
    """Frame count, size, frame rate and duration of a batch of frames (or a VIDEO)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "fps": ("FLOAT", {"default": 24.0, "min": 0.001, "max": float(MAX_FPS), "step": 0.001,
                                  "tooltip": "Frame rate of 'images' (connect the fps output that goes with them); "
                                             "a VIDEO carries its own."}),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The frames to describe."}),
                **_VIDEO_INPUT,
            },
        }

    RETURN_TYPES = ("INT", "INT", "INT", "FLOAT", "FLOAT", "STRING")
    RETURN_NAMES = ("frames", "width", "height", "fps", "seconds", "text")
    OUTPUT_TOOLTIPS = ("Number of frames.", "Width in pixels.", "Height in pixels.", "Frames per second.",
                       "Duration in seconds (frames / fps).", "All of it in words.")
    FUNCTION = "info"
    OUTPUT_NODE = True
    CATEGORY = _comfy.CATEGORY
    DESCRIPTION = "Frame count, size, frame rate and duration of a video."

    @_comfy.comfy_errors()
    def info(self, fps, images=None, video=None):
        if video is not None:
            images, fps = _comfy.images_from_video(video)
        if images is None:
            raise KinetographError("Nothing to describe: connect 'images'" + (" or 'video'." if _comfy.HAS_VIDEO
                                                                                 else "."))
        images = _comfy.check_image(images)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= MAX_FPS:
            raise KinetographError(f"'fps' must be above 0 and at most {MAX_FPS}, got {fps!r}.")
        count, height, width = (int(n) for n in images.shape[:3])
        seconds = count / float(fps)
        text = f"{count} frames, {width}x{height}, {float(fps):g} fps, {seconds:.3f} s"
        return {"ui": {"text": [text]}, "result": (count, width, height, float(fps), seconds, text)}
