"""The interpolation task: raise a video's frame rate, by optical flow or a keyframes model.

* ``interpolate(job, events, cancel, manager)`` streams a video file through
  ``interpolation.interpolate_video`` and records the job like every other output, so the
  result can be re-run (``app.py rerun``) and read (``app.py info``).
* ``interpolate_in_memory(job, frames, src_fps, ...)`` does the same for frames already in
  memory (a ComfyUI IMAGE batch) and yields the output frames; nothing is written.

Both report "interpolate" progress in output frames; with the generative method each pair's
generation reports its stages (load, encode, denoise, decode) nested within it.
"""
from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..events import Events
from ..jobs import InterpolateJob
from ..jobspec import MAX_SEED
from ..models import ModelManager
from ..progress import CancelToken
from ..results import Result, base_metadata, file_record


def interpolate(job: InterpolateJob, events: Events, cancel: CancelToken, manager: ModelManager, *,
                overwrite: bool = False, device_facts=None) -> Result:
    """Interpolate ``job.input`` (a video file) and write the result.

    Args:
        job: the checked InterpolateJob (``engine.run`` checks it once).
        events: progress, and the finished file.
        cancel: checked between frames and at every denoising step.
        manager: the model cache (generative: the model loads once for every pair).
        overwrite: replace ``job.out`` if it exists.
    """
    from ..interpolation import interpolate_video
    from ..video_io import probe_video

    started = time.perf_counter()
    source_record = _input_record(job.input)
    job, backend, progress, model = _backend(job, events, cancel, manager, device_facts)
    metadata = base_metadata("interpolate", job, model=model, seed=job.seed, inputs={"input": source_record})
    made = interpolate_video(job.input, job.out, factor=job.factor, target_fps=job.fps, start_frame=job.start,
                             end_frame=job.end, slowmo=job.slowmo, backend=backend, progress=progress,
                             cancel=cancel, overwrite=overwrite, metadata=metadata)
    for note in made.notes:  # said aloud, as they are in the metadata
        events.note(note)
    events.partial(made.path, "video")
    info = probe_video(made.path)
    timings = {"total": time.perf_counter() - started}
    details = {"src_fps": made.src_fps, "frames_in": made.frames_in, "scene_cuts": made.scene_cuts,
               "duplicates": made.duplicates, "ms_per_frame": made.ms_per_frame}
    return Result(path=made.path, kind="interpolate", job=job, fps=made.out_fps, frame_count=made.frames_out,
                  width=info.width, height=info.height, seed=job.seed, timings=timings, notes=list(made.notes),
                  details=details)


def _input_record(path: str) -> dict[str, Any]:
    """The input video's record (path, size, hash), or a KinetographError that says what is wrong with it."""
    from pathlib import Path

    from ..errors import KinetographError

    where = Path(path).expanduser()
    if not where.exists():
        raise KinetographError(f"Input video {path} does not exist; check the path.", fields=("input",))
    if where.is_dir():
        raise KinetographError(f"Input {path} is a folder, not a video file; choose a video file.", fields=("input",))
    try:
        return file_record(where)
    except OSError as error:
        raise KinetographError(f"Input video {path} cannot be read: {error.strerror or error}. Choose a video file "
                               "you can read.", fields=("input",)) from None


def interpolate_in_memory(job: InterpolateJob, frames: Iterable, src_fps, events: Events | None = None,
                          cancel: CancelToken | None = None, manager: ModelManager | None = None,
                          frame_count: int | None = None):
    """Interpolate frames already in memory (RGB uint8 ``H×W×3``, or float 0..1).

    ``job.input`` is only a label here (e.g. "ComfyUI IMAGE batch"); ``job.start``/``job.end``
    do not apply. Returns ``(job as run, timing plan, iterator of output frames)``: the plan
    says the output fps and, with ``frame_count``, how many frames will come.
    """
    from ..engine import default_manager
    from ..interpolation import StreamInterpolator

    events = events if events is not None else Events()
    cancel = cancel or CancelToken()
    job.check()
    plan = job.timing_plan(src_fps)
    job, backend, progress, _model = _backend(job, events, cancel, manager or default_manager(), None)
    total = plan.frames_out(frame_count) if frame_count is not None else 0

    def report(done: int) -> None:
        progress("interpolate", done, total)

    stream: Iterator[Any] = StreamInterpolator(plan, backend).run(frames, cancel, report)
    return job, plan, stream


def _backend(job: InterpolateJob, events: Events, cancel: CancelToken, manager: ModelManager, device_facts):
    """(the job with its seed drawn, the backend, the "interpolate" progress function, the model record)."""
    from ..interpolation import get_backend

    position = {"done": 0, "total": 0}

    def progress(stage: str, done: int, total: int) -> None:
        position.update(done=done, total=total)
        events.progress(stage, done, total)

    if job.method != "generative":
        return job, get_backend("flow", quality=job.quality or "standard"), progress, None
    if job.seed is None:  # drawn once, recorded, used for every pair
        job = dataclasses.replace(job, seed=random.randint(0, MAX_SEED))

    def pair_events() -> Events:  # a generation's stages and previews, within the output frame it works towards
        return events.nested("interpolate", position["done"], max(1, position["total"]))

    backend = get_backend("generative", model=job.model, prompt=job.prompt or "", steps=job.steps, seed=job.seed,
                          manager=manager, cancel=cancel, events=pair_events, device_facts=device_facts)
    return job, backend, progress, backend.source.describe()
