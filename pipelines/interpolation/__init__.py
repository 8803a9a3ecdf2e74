"""Frame interpolation: weight-free motion-compensated in-betweens, streamed over any length.

Public entry points (front doors: CLI ``interpolate``, the Gradio tab, the ComfyUI node):

* ``interpolate_pair(frame0, frame1, t)`` – one in-between of two RGB uint8 frames.
* ``interpolate_frames(frames, src_fps, factor=|target_fps=, slowmo=)`` – a stream of frames.
* ``interpolate_video(src, dst, factor=|target_fps=, start_frame=, end_frame=, slowmo=)`` – a file.
* ``get_backend`` / ``register_backend`` – the pluggable backend registry: "flow" (weight-free
  motion compensation, the default) and "generative" (``GenerativeBackend``: a first+last-frame
  video model generates each pair's in-betweens; slow, invents content).
* ``make_plan`` – the fps/timing arithmetic (output fps, frame counts, timestamps).
"""
from .backends import InterpolationBackend, available_backends, get_backend, register_backend
from .flow import FlowBackend, FlowConfig, interpolate_pair
from .generative import GenerativeBackend, choose_frame_count
from .stream import (
    InterpolationResult,
    ShotDetector,
    StreamInterpolator,
    interpolate_frames,
    interpolate_video,
)
from .timing import MAX_FACTOR, Sample, TimingPlan, make_plan

__all__ = [
    "interpolate_pair",
    "interpolate_frames",
    "interpolate_video",
    "InterpolationResult",
    "InterpolationBackend",
    "FlowBackend",
    "FlowConfig",
    "GenerativeBackend",
    "choose_frame_count",
    "available_backends",
    "get_backend",
    "register_backend",
    "make_plan",
    "TimingPlan",
    "Sample",
    "MAX_FACTOR",
    "ShotDetector",
    "StreamInterpolator",
]
