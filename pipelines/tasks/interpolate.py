"""The interpolation task: raise a video file's frame rate, by optical flow or a keyframes model.

``interpolate(job, events, cancel, manager)`` streams the source through
``interpolation.interpolate_video`` and records the job like every other output, so the
result can be re-run (``app.py rerun``) and read (``app.py info``).
"""
from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

from ..events import Events
from ..jobs import InterpolateJob
from ..jobspec import MAX_SEED
from ..models import ModelManager
from ..progress import CancelToken
from ..results import Result, base_metadata, file_record


def interpolate(job: InterpolateJob, events: Events, cancel: CancelToken, manager: ModelManager, *,
                overwrite: bool = False, device_facts=None) -> Result:
    """Interpolate ``job.input`` and write the result.

    Args:
        job: the checked InterpolateJob (``engine.run`` checks it once).
        events: "interpolate" progress in output frames; with the generative method each pair's
            generation reports its stages nested within it.
        cancel: checked between frames and at every denoising step.
        manager: the model cache (generative: the model loads once for every pair).
        overwrite: replace ``job.out`` if it exists.
    """
    from ..interpolation import get_backend, interpolate_video
    from ..video_io import probe_video

    started = time.perf_counter()
    source_record = file_record(job.input)  # also fails clearly when the input is missing
    position = {"done": 0, "total": 0}

    def progress(stage: str, done: int, total: int) -> None:
        position.update(done=done, total=total)
        events.progress(stage, done, total)

    if job.method == "generative":
        if job.seed is None:  # drawn once, recorded, used for every pair
            job = dataclasses.replace(job, seed=random.randint(0, MAX_SEED))

        def generation_progress(stage: str, done: int, total: int) -> None:
            events.nested("interpolate", position["done"], max(1, position["total"])).progress(stage, done, total)

        backend = get_backend("generative", model=job.model, prompt=job.prompt or "", steps=job.steps,
                              seed=job.seed, manager=manager, cancel=cancel, progress=generation_progress,
                              device_facts=device_facts)
        model: dict[str, Any] | None = backend.source.describe()
    else:
        backend = get_backend("flow", quality=job.quality or "standard")
        model = None
    metadata = base_metadata("interpolate", job, model=model, seed=job.seed, inputs={"input": source_record})
    made = interpolate_video(job.input, job.out, factor=job.factor, target_fps=job.fps, start_frame=job.start,
                             end_frame=job.end, slowmo=job.slowmo, backend=backend, progress=progress,
                             cancel=cancel, overwrite=overwrite, metadata=metadata)
    events.partial(made.path, "video")
    info = probe_video(made.path)
    timings = {"total": time.perf_counter() - started}
    details = {"src_fps": made.src_fps, "frames_in": made.frames_in, "scene_cuts": made.scene_cuts,
               "duplicates": made.duplicates, "ms_per_frame": made.ms_per_frame}
    return Result(path=made.path, kind="interpolate", job=job, fps=made.out_fps, frame_count=made.frames_out,
                  width=info.width, height=info.height, seed=job.seed, timings=timings, details=details)
