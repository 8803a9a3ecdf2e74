"""The extension task: continue a video (or make a long one from a prompt timeline) segment by segment.

Each segment is one generation continuing from the last ``K`` frames of what exists (the family's
``continue_with`` pipeline: LTX's condition pipeline, Wan VACE, SkyReels-V2 diffusion forcing, AnimateDiff
with FreeNoise, else image-to-video from the last frame). A family whose adapter ``carries_latents``
(AnimateDiff) gets the context as the latents the last segment ended with, not as pixels to encode again.
Its first ``K`` frames repeat the context: the last ``overlap`` of those are crossfaded with
the frames they repeat, the rest dropped; the new frames follow. Colours are anchored to the
reference (the frames the video continues from, or a new shot's first segment) so they do not
creep from window to window. Every join gets a seam score.

Streaming and crash safety: a finished segment goes to disk (``extension.store``) before the next
starts, and is announced as a partial-file event; the output is muxed from the input and the
segments at the end, one frame at a time. Host memory holds one segment plus its context. The
same job started again after a crash resumes after the last finished segment and ends with the
same video an uninterrupted run gives.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import KinetographError
from ..events import Events
from ..extension.seams import anchor_colours, crossfade, seam_score
from ..extension.store import SegmentStore, frames_hash
from ..extension.timeline import Cue, cue_at
from ..jobs import ExtendJob
from ..jobspec import MAX_SEED, JobSpec, round_size
from ..models import ModelManager, resolve_model
from ..progress import CancelToken
from ..results import Result, base_metadata, file_record

SEGMENT_CRF = 0  # segments are kept lossless (of the yuv420p frames): the output is encoded once from them


@dataclass(frozen=True)
class Segment:
    index: int
    task: str  # the pipeline's task: t2v (a new shot) or the family's continuation task
    new_frames: int  # frames this segment adds
    start_s: float  # output time of its first new frame
    prompt: str
    seed: int
    new_shot: bool


@dataclass(frozen=True)
class Layout:
    """How the job is cut into segments (decided before any work)."""

    fps: float
    width: int  # output size
    height: int
    gen_width: int  # generation size (the model's rules; scaled back to the output size)
    gen_height: int
    segment_frames: int  # frames per generation
    context: int  # K: frames of what exists each continuation sees
    repeats_context: bool  # a continuation's first K frames repeat them (else it returns the new frames only)
    overlap: int
    existing: int  # frames of the input (0: made from nothing)
    segments: tuple[Segment, ...]


def extend(job: ExtendJob, events: Events, cancel: CancelToken, manager: ModelManager, *,
           output_dir: str | Path | None = None, overwrite: bool = False, memory=None, crf: int = 18) -> Result:
    """Extend ``job.input`` by ``job.seconds`` (or make a video of that length) and write it.

    Args:
        job: the checked ExtendJob (``engine.run`` checks it once).
        events: "segment" progress (i of n), each generation's stages nested within it, a
            partial-file event per finished segment, notes.
        cancel: checked at every denoising step; finished segments stay on disk for a re-run.
        manager: the model cache (the model loads once for every segment).
        output_dir: folder for default names of a video made from nothing (an extension goes beside its input).
        overwrite: replace ``job.out`` if it exists.
        memory: ``jobs.MemoryOptions`` for every generation (budget, RAM, mode).
        crf: the output's x264 quality (``extend_in_memory`` asks for 0, lossless, as it reads the frames back).
    """
    from ..jobs import MemoryOptions
    from ..output_paths import check_output_path
    from ..video_io import VideoWriter, iter_frames, probe_video, read_frames, unique_output_path

    started = time.perf_counter()
    memory = memory or MemoryOptions()
    # ---- checks and the plan, before any work
    info = probe_video(job.input) if job.input is not None else None
    source_record = file_record(job.input) if job.input is not None else None
    # No seed given: one derived from the job, so the same command run again resumes its segments.
    seed = job.seed if job.seed is not None else int(_job_key(job, source_record)[:8], 16) % (MAX_SEED + 1)
    job = dataclasses.replace(job, seed=seed)
    family, continuation = _continuation(job)
    layout = _layout(job, info, family, continuation)
    if info is not None and info.frame_count < layout.context:
        raise KinetographError(f"{job.input} has {info.frame_count} frames; extending it with this model needs at "
                               f"least {layout.context} (the frames each segment continues from). Use a longer video.")
    out = check_output_path(_output_path(job, seed, output_dir), overwrite,
                            "pass --overwrite or choose another --out")  # before any work
    if out.exists() and not overwrite:
        free = unique_output_path(out)
        events.note(f"{out} already exists, so this result is {free}")
        out = free
    store = SegmentStore(out.parent / f".{out.stem}.segments", _job_key(job, source_record)).open()
    notes: list[str] = []
    if store.resumed:
        notes.append(f"resumed after segment {store.resumed} of {len(layout.segments)} (found on disk)")
        events.note(notes[-1])
    if info is not None and info.has_audio:
        notes.append("the input's sound is kept for its own length; the extension is silent")
        events.note(notes[-1])
    if (layout.gen_width, layout.gen_height) != (layout.width, layout.height):
        notes.append(f"generated at {layout.gen_width}x{layout.gen_height} and scaled to {layout.width}x{layout.height}")

    # ---- the state the loop carries: the frames to continue from, the ones still to crossfade
    if info is not None:
        context = read_frames(job.input, start=info.frame_count - layout.context)
        if context.shape[1:3] != (layout.height, layout.width):
            raise KinetographError(f"{job.input} changes size inside the video; extend a video of one size.")
    else:
        context = np.zeros((0, layout.height, layout.width, 3), np.uint8)
    held = context[len(context) - layout.overlap:] if layout.overlap else context[:0]
    reference = context if len(context) else None
    # The context's latents, for a family that carries them from segment to segment (no VAE round trip).
    carries = family.adapter.carries_latents
    carried = None
    seams: list[float] = []
    n = len(layout.segments)
    try:
        for segment in layout.segments:
            events.progress("segment", segment.index, n)
            if segment.index < store.resumed:  # finished before a crash: its state is on disk
                state = store.load_state(segment.index)
                context, held = state["context"], state["held"]
                reference = state["reference"] if state["reference"].size else None
                carried = _tensor(state["latents"]) if state.get("latents") is not None and state["latents"].size \
                    else None
                seams.append(store.segments[segment.index].get("seam_score"))
                continue
            cancel.raise_if_cancelled()
            conditioned = segment.task != "t2v"
            made = _generate(job, layout, segment, context if conditioned else None,
                             carried if conditioned else None, events.nested("segment", segment.index, n), cancel,
                             manager, memory, keep_latents=carries)
            frames = _to_size(made.frames, layout.width, layout.height)
            used = layout.context if conditioned and layout.repeats_context else 0
            if carries:  # the next context is the last K frames made: their latents, when all are this segment's
                end = used + segment.new_frames
                carried = family.adapter.latent_frames(made.latents, end - layout.context, end) \
                    if end >= layout.context else None
            repeated, new = frames[:used], frames[used:used + segment.new_frames]
            if len(new) < segment.new_frames:
                raise KinetographError(f"The model made {len(frames)} frames where {used + segment.new_frames} were "
                                       f"planned; choose --segment-frames the model supports.")
            if reference is None or segment.new_shot:
                reference = new  # a new shot: its own first segment is what later segments keep to
            elif job.anchor > 0:
                repeated = anchor_colours(repeated, reference, job.anchor) if len(repeated) else repeated
                new = anchor_colours(new, reference, job.anchor)
            held_before = held
            if conditioned and len(held):
                blended = crossfade(held, repeated[len(repeated) - len(held):])
            else:
                blended = held  # a cut (or nothing held): the earlier frames stay as they are
            before = np.concatenate([context[:len(context) - len(held)], blended])[-4:]
            seam = seam_score(before, new[:4]) if conditioned and len(before) >= 2 and len(new) >= 2 else None
            seams.append(seam)
            last = segment.index == n - 1
            keep = 0 if last else min(layout.overlap, len(new))
            finished = np.concatenate([blended, new[:len(new) - keep]])
            held = new[len(new) - keep:]
            context = np.concatenate([context[:len(context) - len(held_before)], blended, new])[-layout.context:]
            with VideoWriter(store.video_path(segment.index), layout.fps, crf=SEGMENT_CRF, preset="ultrafast",
                             overwrite=True) as writer:
                writer.write(finished)
            store.add(segment.index, {"seed": segment.seed, "prompt": segment.prompt, "task": segment.task,
                                      "new_shot": segment.new_shot, "frames": len(finished), "seam_score": seam,
                                      "context_sha256": frames_hash(context)},
                      {"context": context, "held": held, "reference": reference if reference is not None else
                       np.zeros((0,), np.uint8),
                       "latents": carried.float().numpy() if carried is not None else np.zeros((0,), np.float32)})
            events.partial(store.video_path(segment.index), f"segment {segment.index + 1} of {n}")
            del made, frames, repeated, new, finished
    except BaseException:
        if not store.segments:  # nothing finished: nothing to resume from
            store.remove()
        raise
    events.progress("segment", n, n)

    # ---- the output: the input's frames, then each segment's, then what is still held
    cancel.raise_if_cancelled()
    model = resolve_model(job.model, continuation, prefer_cuda=False).describe()
    metadata = base_metadata("extend", job, model=model, seed=seed,
                             inputs={"input": source_record} if source_record else {})
    joins = [{"segment": s.index, "prompt": s.prompt, "seed": s.seed, "task": s.task, "new_shot": s.new_shot,
              "seam_score": seams[s.index]} for s in layout.segments]
    metadata.update(notes=notes, segments=joins, layout={k: v for k, v in dataclasses.asdict(layout).items()
                                                         if k != "segments"})
    total = layout.existing - (len_held_input := _held_at_start(layout)) + sum(
        seg["frames"] for seg in store.segments) + len(held)
    written = 0
    events.progress("write", 0, total)
    keep_audio = info is not None and info.has_audio  # the original part keeps its sound; the new part is silent
    with VideoWriter(out, layout.fps, metadata=metadata, overwrite=overwrite, crf=crf,
                     audio_source=job.input if keep_audio else None) as writer:
        if info is not None:
            for frame in iter_frames(job.input, 0, info.frame_count - len_held_input):
                writer.write(frame)
                written += 1
                events.progress("write", written, total)
        for segment in layout.segments:
            for frame in iter_frames(store.video_path(segment.index)):
                cancel.raise_if_cancelled()
                writer.write(frame[:layout.height, :layout.width])  # an odd size was padded to even in the segment
                written += 1
                events.progress("write", written, total)
        if len(held):
            writer.write(held)
            written += len(held)
        writer.metadata["timings"] = {"total": time.perf_counter() - started}
    store.remove()
    events.partial(writer.path, "video")
    valid = [s for s in seams if s is not None]
    return Result(path=writer.path, kind="extend", job=job, fps=layout.fps, frame_count=written, width=layout.width,
                  height=layout.height, seed=seed, timings={"total": time.perf_counter() - started}, notes=notes,
                  details={"segments": n, "seam_scores": seams, "worst_seam": max(valid) if valid else None,
                           "frames_in": layout.existing, "context": layout.context, "overlap": layout.overlap})


# ------------------------------------------------------------------------ planning
def _continuation(job: ExtendJob):
    """(the model's family, its continuation task: the first of the family's ``continue_with`` tasks the
    model has). A video made from nothing also needs text to video for its first segment."""
    family = (resolve_model(job.model, "t2v") if job.input is None else _any_source(job.model)).family
    for task in family.continue_with:
        try:
            resolve_model(job.model, task)
        except KinetographError:
            continue
        return family, task
    can = ", ".join(f.label for f in _families_that_extend())
    raise KinetographError(f"{job.model} ({family.label}) cannot continue a video in this version. Models that can: "
                           f"{can} (e.g. --model ltx-video, wan2.1-14b, or tiny-ltx / tiny-wan for a smoke test).")


def _any_source(model: str):
    for task in ("t2v", "i2v", "keyframes", "vace"):
        try:
            return resolve_model(model, task)
        except KinetographError:
            continue
    return resolve_model(model, "t2v")  # raises the model's own error


def _families_that_extend():
    from ..families import FAMILIES

    return [f for f in FAMILIES.values() if f.continue_with]


def _layout(job: ExtendJob, info, family, continuation: str) -> Layout:
    context = 1 if continuation == "i2v" else (job.context_frames or family.extend_context)
    repeats = family.continuation_repeats_context
    overlap = 0 if continuation == "i2v" or not repeats else min(
        job.overlap if job.overlap is not None else family.extend_overlap, context)
    if info is not None:
        fps, width, height, existing = info.fps, info.width, info.height, info.frame_count
        cap = max(family.default_width, family.default_height)
        scale = min(1.0, cap / max(width, height))
        gen_width = round_size(width * scale, family.size_multiple)
        gen_height = round_size(height * scale, family.size_multiple)
    else:
        fps = job.fps or family.default_fps
        width = round_size(job.width or family.default_width, family.size_multiple)
        height = round_size(job.height or family.default_height, family.size_multiple)
        gen_width, gen_height, existing = width, height, 0
    segment_frames = _rule(job.segment_frames or family.extend_segment_frames or family.default_frames,
                           family.frame_multiple)
    segment_frames = min(segment_frames, _rule(family.max_frames, family.frame_multiple))
    if repeats and segment_frames <= context:
        raise KinetographError(f"--segment-frames {segment_frames} leaves no new frames after the {context} frames "
                               f"each segment continues from; use more than {context}.")
    total_new = max(1, round(job.seconds * fps))
    cues = tuple(Cue(*c) for c in job.timeline) if job.timeline else (Cue(0.0, job.prompt),)
    # Timeline times are seconds of the new material: of the whole video when made from nothing.
    cut_frames = sorted(round(c.start_s * fps) for c in cues if c.new_shot)
    segments, made, previous = [], 0, None
    while made < total_new:
        cue = cue_at(cues, made / fps)
        first = not segments
        fresh = (first and info is None) or (cue.new_shot and cue is not previous)
        task = "t2v" if fresh else continuation
        count = min(segment_frames - (0 if fresh or not repeats else context), total_new - made)
        next_cut = next((f for f in cut_frames if f > made), None)
        if next_cut is not None:
            count = min(count, next_cut - made)  # a new shot starts on time, not at the next segment boundary
        segments.append(Segment(len(segments), task, count, (existing + made) / fps, cue.prompt,
                                (job.seed + len(segments)) % (MAX_SEED + 1), fresh and not (first and info is None)))
        made += count
        previous = cue
    return Layout(fps=float(fps), width=width, height=height, gen_width=gen_width, gen_height=gen_height,
                  segment_frames=segment_frames, context=context, repeats_context=repeats, overlap=overlap,
                  existing=existing,
                  segments=tuple(segments))


def _rule(frames: int, multiple: int) -> int:
    if multiple <= 1:
        return frames
    return multiple * max(1, round((frames - 1) / multiple)) + 1


def _held_at_start(layout: Layout) -> int:
    """The input's last frames held for the first segment's crossfade (written with that segment)."""
    return layout.overlap if layout.existing else 0


def _generate(job: ExtendJob, layout: Layout, segment: Segment, context, carried, events: Events,
              cancel: CancelToken, manager: ModelManager, memory, keep_latents: bool):
    """One segment's frames (at the generation size); ``carried``: the context's latents (or None)."""
    from .generate import _frames

    # The context goes in as ``continuation`` frames, not as image files: the spec names no images.
    spec = JobSpec(task=segment.task, model=job.model, prompt=segment.prompt, negative_prompt=job.negative_prompt,
                   frames=layout.segment_frames, fps=layout.fps, width=layout.gen_width, height=layout.gen_height,
                   steps=job.steps, guidance=job.guidance, seed=segment.seed, name="segment")
    return _frames(spec, None, events, cancel, manager, memory, None,
                   continuation=None if context is None else list(context), carried=carried,
                   keep_latents=keep_latents)


def _tensor(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


def _to_size(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames
    import cv2

    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def _output_path(job: ExtendJob, seed: int, output_dir) -> Path:
    if job.out:
        return Path(job.out).expanduser()
    if job.name is not None:
        from ..output_paths import check_file_name

        check_file_name(job.name)
    if job.input is not None:
        source = Path(job.input)
        return source.with_name(f"{source.stem}-extended.mp4")
    stem = job.name or re.sub(r"[^a-z0-9]+", "-", (job.prompt or "long").lower()).strip("-")[:40] or "long"
    return Path(output_dir or "outputs") / _dt.date.today().isoformat() / f"{stem}-{seed}.mp4"


def _job_key(job: ExtendJob, source_record: dict[str, Any] | None) -> str:
    """What a store's segments depend on: the whole job (seed drawn) and the input's content."""
    data = json.dumps({"job": {k: v for k, v in job.to_dict().items() if k != "out"},
                       "input": source_record and source_record["sha256"]}, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()




# ------------------------------------------------------------------ frames in memory
def extend_in_memory(job: ExtendJob, frames, src_fps, events: Events | None = None, cancel: CancelToken | None = None,
                     manager: ModelManager | None = None, memory=None) -> tuple[Result, np.ndarray]:
    """``extend`` for frames already in memory (a ComfyUI IMAGE batch): returns ``(result, frames)``,
    the extended video as RGB uint8 ``T×H×W×3``, nothing left on disk.

    ``frames``: RGB uint8 (or float 0..1) ``T×H×W×3`` at ``src_fps``, or None to make a video from the
    prompt or timeline alone. The loop above is unchanged: the frames go to a lossless temporary
    file (the same yuv420p frames a video file would hold) that is the job's input, the output is
    written beside it losslessly (``crf=0``) and read back, and the folder is removed. ``job.input``/``job.out`` are ignored;
    the returned result's job names the temporary input, so it is no re-runnable record.
    """
    import tempfile

    from ..engine import default_manager
    from ..video_io import VideoWriter, read_frames

    events = events if events is not None else Events()
    cancel = cancel or CancelToken()
    with tempfile.TemporaryDirectory(prefix="kinetograph-extend-") as folder:
        source = None
        if frames is not None:
            source = Path(folder) / "input.mp4"
            with VideoWriter(source, src_fps, crf=0, preset="ultrafast") as writer:
                writer.write(frames)
        job = dataclasses.replace(job, input=None if source is None else str(source),
                                  out=str(Path(folder) / "extended.mp4"))
        job.check()
        result = extend(job, events, cancel, manager or default_manager(), memory=memory, crf=0)
        return result, read_frames(result.path)
