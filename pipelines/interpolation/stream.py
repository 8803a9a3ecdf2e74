"""Streaming video interpolation: any length, memory bounded by a few frames.

Frames are read one at a time; the interpolator keeps the last distinct input frame (the
"anchor") and the incoming one, asks the backend for the in-betweens of that pair (motion
is estimated once per pair) and hands every output frame on as soon as it exists.

* Scene cuts: a pair that straddles a cut is never blended; each in-between repeats the
  nearer input frame (t <= 0.5: the earlier one).
* Duplicated input frames (animation "on twos", frame-rate padding): up to ``MAX_DUP_RUN``
  repeats of a frame are treated as missing, and the motion to the next distinct frame is
  spread over the gap, so 12-drawings-per-second footage becomes smooth instead of
  stuttering. Longer runs are a held shot and stay still.
* Context: each pair is rendered once the next distinct frame has arrived, and a backend
  that ``accepts_context`` gets the frames before and after the pair (within the shot), so
  motion can follow a curve through four frames instead of a straight line between two.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import KinetographError
from ..progress import CancelToken
from .backends import InterpolationBackend, get_backend
from .flow_checks import check_frame
from .timing import TimingPlan, frame_clock, make_plan

__all__ = [
    "InterpolationResult",
    "ShotDetector",
    "interpolate_frames",
    "interpolate_video",
    "StreamInterpolator",
    "MAX_DUP_RUN",
]

OUTPUT_REMEDY = "choose another --out"  # the interpolate command has no --overwrite
MAX_DUP_RUN = 3           # at most this many repeats of a frame are bridged by interpolation
_TS_PER_CALL = 8          # in-betweens asked of a backend at once (bounds the frames held)


# --------------------------------------------------------------------------------------
# scene cuts and duplicated frames
# --------------------------------------------------------------------------------------


@dataclass
class _Thumb:
    grey: np.ndarray     # ~160 px wide, float32
    tiny: np.ndarray     # 24 px wide, zero-mean unit-norm (for a blurred structure correlation)
    hist: np.ndarray     # 3×32-bin colour histogram, normalised


class ShotDetector:
    """Classifies consecutive frames as ``"cut"``, ``"dup"`` or ``"motion"`` from thumbnails.

    A cut: the mean grey difference is far above the clip's recent typical difference (running
    median of the last ``window`` pairs: > max(``abs_min``, ``rel`` × median)) and either the
    colour histogram changed (correlation < ``hist_corr``) or the heavily blurred pictures no
    longer correlate (< ``struct_corr``); fast motion alone rarely does either.
    A duplicate: mean difference < ``dup_mean`` and no thumbnail pixel differs by more than
    ``dup_max`` (a small moving object is not a duplicate).
    """

    def __init__(self, window: int = 48, abs_min: float = 20.0, rel: float = 4.0, hist_corr: float = 0.9,
                 struct_corr: float = 0.5, dup_mean: float = 0.5, dup_max: float = 8.0):
        self.window, self.abs_min, self.rel = window, abs_min, rel
        self.hist_corr, self.struct_corr = hist_corr, struct_corr
        self.dup_mean, self.dup_max = dup_mean, dup_max
        self._recent: list[float] = []

    @staticmethod
    def thumb(frame: np.ndarray) -> _Thumb:
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (min(w, 160), max(1, round(min(w, 160) * h / w))), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        tiny = cv2.resize(grey, (24, max(1, round(24 * h / w))), interpolation=cv2.INTER_AREA)
        tiny = tiny - tiny.mean()
        tiny /= np.linalg.norm(tiny) + 1e-6
        hist = np.concatenate([cv2.calcHist([small], [c], None, [32], [0, 256]).ravel() for c in range(3)])
        return _Thumb(grey, tiny, (hist / (hist.sum() + 1e-9)).astype(np.float32))

    def classify(self, a: _Thumb, b: _Thumb) -> str:
        diff = cv2.absdiff(a.grey, b.grey)
        mad = float(diff.mean())
        if mad < self.dup_mean and float(diff.max()) <= self.dup_max:
            return "dup"
        typical = float(np.median(self._recent)) if self._recent else 0.0
        if mad > max(self.abs_min, self.rel * typical):
            hist = cv2.compareHist(a.hist, b.hist, cv2.HISTCMP_CORREL)
            structure = float((a.tiny * b.tiny).sum())
            if hist < self.hist_corr or structure < self.struct_corr:
                return "cut"  # not added to the typical motion
        self._recent.append(mad)
        if len(self._recent) > self.window:
            del self._recent[0]
        return "motion"


# --------------------------------------------------------------------------------------
# the streaming interpolator
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Span:
    """Two consecutive distinct input frames (``a`` at position ``ia``, ``b`` at ``ib``, in
    input frames: their indices, or their times for a variable-rate video)."""

    a: np.ndarray
    ia: Fraction | int
    b: np.ndarray
    ib: Fraction | int
    cut: bool                       # a scene cut lies between them: never blended
    previous: _Span | None = None   # the span before, when in the same shot


class StreamInterpolator:
    """Turns a stream of input frames into the output frames of ``plan``.

    ``positions``: where each input frame sits in time, in frames of the plan's source fps
    (``timing.frame_clock``); None: input frame ``i`` at ``i`` (a constant-rate video).

    Keeps statistics: ``frames_in``, ``frames_out``, ``scene_cuts`` (index of the first frame
    of each new shot, counted from the first input frame), ``duplicates`` (indices of input
    frames bridged as repeats)."""

    def __init__(self, plan: TimingPlan, backend: InterpolationBackend, dedup: bool = True,
                 detector: ShotDetector | None = None, positions: Sequence[Fraction] | None = None):
        self.plan = plan
        self.backend = backend
        self.dedup = dedup
        self.detector = detector or ShotDetector()
        self.positions = positions
        self.frames_in = 0
        self.frames_out = 0
        self.scene_cuts: list[int] = []
        self.duplicates: list[int] = []

    def run(self, frames: Iterable, cancel: CancelToken | None = None,
            on_frame: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
        anchor = anchor_thumb = None
        anchor_at = last_at = 0  # positions of the anchor and of the latest input frame
        run = 0  # repeats of the anchor seen since it
        # A span (pair of distinct frames) is rendered once the frame after it is known, so
        # that a backend that takes context sees both neighbours of the pair.
        pending: _Span | None = None
        for index, raw in enumerate(frames):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if anchor is None:
                anchor = check_frame(raw, "frame 0")
                anchor_thumb = self.detector.thumb(anchor)
                self.frames_in = 1
                continue
            frame = check_frame(raw, f"frame {index}")
            if frame.shape != anchor.shape:
                raise KinetographError(
                    f"Frame {index} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is "
                    f"{anchor.shape[1]}x{anchor.shape[0]}; all frames of a video must have one size."
                )
            self.frames_in += 1
            last_at = self._position(index)
            thumb = self.detector.thumb(frame)
            kind = self.detector.classify(anchor_thumb, thumb)
            if kind == "dup" and self.dedup and run < MAX_DUP_RUN:
                run += 1
                self.duplicates.append(index)
                continue
            if kind == "cut":
                self.scene_cuts.append(index)
            span = _Span(anchor, anchor_at, frame, last_at, kind == "cut")
            if pending is not None:
                yield from self._span(pending, cancel, on_frame, following=span)
                pending.previous = None  # keep one span back, not the whole chain
            span.previous = None if pending is None or pending.cut or span.cut else pending
            pending = span
            anchor, anchor_thumb, anchor_at, run = frame, thumb, last_at, 0
        if anchor is None:
            raise KinetographError("The video has no frames; choose a video (or frame range) with at least 2 frames.")
        if self.frames_in < 2:
            raise KinetographError("Interpolation needs at least 2 frames and the input has 1: give a video (or a "
                                   "batch of frames, e.g. a video model's decoded output) with 2 or more.")
        if pending is not None:
            yield from self._span(pending, cancel, on_frame, following=None)
        # the anchor and its trailing repeats: positions anchor_at .. the last input frame's
        for sample in self.plan.samples_between(anchor_at, last_at + 1):
            if sample.position > last_at:
                break
            if cancel is not None:
                cancel.raise_if_cancelled()
            yield self._emit(anchor.copy(), on_frame)

    def _position(self, index: int) -> Fraction | int:
        if self.positions is None:
            return index
        if index < len(self.positions):
            return self.positions[index]
        # more frames decoded than timestamps read: carry on at the typical rate
        return self.positions[-1] + index - len(self.positions) + 1

    def _span(self, span: _Span, cancel: CancelToken | None, on_frame,
              following: _Span | None) -> Iterator[np.ndarray]:
        """Output samples with position in [span.ia, span.ib): between its two frames."""
        a, b, ia, ib = span.a, span.b, span.ia, span.ib
        samples = self.plan.samples_between(ia, ib)
        length = ib - ia
        pending: list[float] = []
        for sample in samples:
            u = float((sample.position - ia) / length)
            if u == 0.0:
                yield self._emit(a.copy(), on_frame)
            elif span.cut:
                yield self._emit((a if u <= 0.5 else b).copy(), on_frame)
            else:
                pending.append(u)
        if not pending:
            return
        if cancel is not None:
            cancel.raise_if_cancelled()
        stream = getattr(self.backend, "interpolate_iter", None)
        if stream is not None:
            context = {}
            if getattr(self.backend, "accepts_context", False):
                # neighbours within the same shot only: motion does not continue across a cut
                if span.previous is not None:
                    context.update(previous=span.previous.a, span_before=float((ia - span.previous.ia) / length))
                if following is not None and not following.cut:
                    context.update(following=following.b, span_after=float((following.ib - ib) / length))
            for out in stream(a, b, pending, **context):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                yield self._emit(out, on_frame)
            return
        for start in range(0, len(pending), _TS_PER_CALL):
            for out in self.backend.interpolate(a, b, pending[start:start + _TS_PER_CALL]):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                yield self._emit(out, on_frame)

    def _emit(self, frame: np.ndarray, on_frame) -> np.ndarray:
        self.frames_out += 1
        if on_frame is not None:
            on_frame(self.frames_out)
        return frame


def _make_progress(progress, total: int, stage: str = "interpolate"):
    if progress is None:
        return None
    return lambda done: progress(stage, done, total)


def interpolate_frames(frames: Iterable, src_fps, factor=None, target_fps=None, slowmo: bool = False,
                       backend="flow", progress=None, cancel: CancelToken | None = None,
                       dedup: bool = True) -> Iterator[np.ndarray]:
    """Interpolate any iterable of RGB frames (uint8 H×W×3, or float 0..1 such as ComfyUI
    IMAGE frames; a T×H×W×3 batch iterates as frames), streaming: output frames (uint8) are
    yielded as they are made and only a few frames are held.

    Output fps (for the caller to write): ``make_plan(src_fps, factor, target_fps, slowmo).out_fps``.
    Arguments are checked now; frame problems raise while iterating.
    """
    plan = make_plan(src_fps, factor, target_fps, slowmo)
    engine = get_backend(backend)
    total = 0
    if hasattr(frames, "__len__"):
        total = plan.frames_out(len(frames))
    return StreamInterpolator(plan, engine, dedup=dedup).run(frames, cancel, _make_progress(progress, total))


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------


@dataclass
class InterpolationResult:
    path: Path
    src_fps: float
    out_fps: float
    frames_in: int
    frames_out: int
    scene_cuts: list = field(default_factory=list)   # source frame index where each new shot starts
    seconds: float = 0.0
    ms_per_frame: float = 0.0                          # wall time per output frame (decode+encode included)
    duplicates: list = field(default_factory=list)    # source frame indices bridged as repeats
    notes: list = field(default_factory=list)          # what was changed from the request, in words


def _check_range(start_frame, end_frame, frame_count: int, src) -> tuple[int, int]:
    if isinstance(start_frame, bool) or not isinstance(start_frame, (int, np.integer)) or start_frame < 0:
        raise KinetographError(f"start_frame must be a frame index >= 0, got {start_frame!r}.")
    end = frame_count if end_frame is None else end_frame
    if isinstance(end, bool) or not isinstance(end, (int, np.integer)):
        raise KinetographError(f"end_frame must be a frame index or None (to the end), got {end_frame!r}.")
    if end > frame_count or start_frame >= frame_count:
        raise KinetographError(
            f"Frames {start_frame}..{end} are outside {src}, which has {frame_count} frames (0..{frame_count - 1}); "
            f"choose start_frame/end_frame within it."
        )
    if end - start_frame < 2:
        raise KinetographError(
            f"The range {start_frame}..{end} (end exclusive) holds {max(0, end - start_frame)} frame(s); "
            "interpolation needs at least 2: widen it."
        )
    return int(start_frame), int(end)


def _default_output(src: Path, plan: TimingPlan) -> Path:
    if plan.factor is not None:
        tag = f"x{plan.factor}"
    else:
        tag = f"{float(plan.target_fps):.3f}".rstrip("0").rstrip(".") + "fps"
    if plan.slowmo:
        tag += "-slowmo"
    return src.with_name(f"{src.stem}-{tag}.mp4")


def _source_rate(src: Path, start: int, end: int, info) -> tuple[Fraction | float, tuple | None, Fraction | None]:
    """(rate, positions, when frame ``start`` is shown or None) for frames ``start``..``end``: their
    typical rate from the timestamps and, for a variable-rate range, each frame's position
    (None: evenly spaced). An evenly spaced range keeps the container's exact rate where the
    timestamps agree with it; a phone's file-wide average (27 fps for a 30 fps clip with a
    held first frame) is not the rate of its frames. Only the range's positions are kept."""
    from ..video_io import frame_times

    times = frame_times(src)
    if times is None or len(times) != info.frame_count:  # no timestamps, or not one per frame
        return info.fps, None, None
    clock = frame_clock(times[start:end])
    if clock is None or (clock.positions is None and abs(clock.fps - Fraction(info.fps)) <= clock.fps / 200):
        return info.fps, None, times[start]
    return clock.fps, clock.positions, times[start]


def interpolate_video(src, dst=None, factor=None, target_fps=None, start_frame: int = 0, end_frame: int | None = None,
                      slowmo: bool = False, backend="flow", progress=None, cancel: CancelToken | None = None,
                      dedup: bool = True, overwrite: bool = False,
                      metadata: dict | None = None) -> InterpolationResult:
    """Interpolate a video file to ``dst`` (mp4), streaming frame by frame.

    ``factor`` N: N× the frames at N× the fps; ``target_fps`` F: output at F fps (any ratio,
    e.g. 23.976 → 60); ``slowmo``: keep the source fps and play the extra frames (N× or F/src×
    slower; the audio is dropped). ``start_frame``/``end_frame``: the range to use (end
    exclusive, None = to the end). The audio of that range is kept in sync; a variable-rate
    video (a phone's) is timed by its frames' timestamps, at its typical rate. ``dst=None``
    writes ``<src>-x2.mp4`` (or ``-60fps``) next to the source, never over an existing file.
    The settings, the backend and the scene cuts found are stored in the output's metadata,
    added to ``metadata`` (the engine's job record). A failed or cancelled run leaves no output behind.
    """
    from ..output_paths import check_output_path
    from ..video_io import VideoWriter, iter_frames, probe_video, unique_output_path

    started = time.perf_counter()
    src = Path(src)
    if dst is not None:  # before anything is read: a path that cannot be written fails now
        dst = check_output_path(dst, overwrite, remedy=OUTPUT_REMEDY)
    info = probe_video(src)
    start, end = _check_range(start_frame, end_frame, info.frame_count, src)
    src_fps, positions, range_start_s = _source_rate(src, start, end, info)
    plan = make_plan(src_fps, factor, target_fps, slowmo)
    engine = get_backend(backend)
    notes = []
    default_name = dst is None
    if default_name:  # beside the input; a name that is taken gets -1, -2 ...
        wanted = check_output_path(_default_output(src, plan), remedy=OUTPUT_REMEDY)
        dst = unique_output_path(wanted)
        if Path(dst) != wanted:
            notes.append(f"{wanted} already exists, so this result is {dst}")
    total = plan.frames_until(positions[-1]) if positions else plan.frames_out(end - start)
    keep_audio = info.has_audio and not slowmo
    settings = {
        "backend": getattr(engine, "name", str(backend)),
        **(engine.describe() if hasattr(engine, "describe") else {}),
        **plan.describe(),
        "start_frame": start,
        "end_frame": end,
        "dedup": dedup,
        "timing": "timestamps (variable frame rate)" if positions else "constant frame rate",
        "audio": "kept" if keep_audio else ("dropped (slow motion)" if info.has_audio else "none"),
    }
    if info.has_audio and slowmo:
        notes.append("audio dropped: slow motion plays the video slower than its sound")
    if positions:
        notes.append(f"variable frame rate: timed by the frames' timestamps at a typical {float(src_fps):g} fps")
    if info.width % 2 or info.height % 2:
        notes.append(f"size {info.width}x{info.height} padded to {info.width + info.width % 2}x"
                     f"{info.height + info.height % 2} by repeating the edge pixels (H.264 needs even sizes)")
    metadata = {**(metadata or {}), "task": "interpolate", "source": str(src), "interpolation": settings}
    metadata["notes"] = [*(metadata.get("notes") or []), *notes]
    audio_start_s = float(Fraction(start) / plan.src_fps if range_start_s is None else range_start_s)
    stream = StreamInterpolator(plan, engine, dedup=dedup, positions=positions)
    report = _make_progress(progress, total)
    if progress is not None:
        progress("interpolate", 0, total)
    with VideoWriter(dst, plan.out_fps, metadata=metadata, audio_source=src if keep_audio else None,
                     audio_start_s=audio_start_s, overwrite=overwrite, rename_if_taken=default_name,
                     remedy=OUTPUT_REMEDY) as writer:
        for frame in stream.run(iter_frames(src, start, end), cancel, report):
            writer.write(frame)
        if cancel is not None:
            cancel.raise_if_cancelled()
        if hasattr(engine, "describe"):  # again: a generative backend knows its sizes once it has run
            settings.update(engine.describe())
        settings["scene_cuts"] = [start + i for i in stream.scene_cuts]
        settings["duplicates"] = len(stream.duplicates)
        settings["frames_in"] = stream.frames_in
        seconds = time.perf_counter() - started
        settings["seconds"] = round(seconds, 3)
        writer.metadata["interpolation"] = settings
    seconds = time.perf_counter() - started
    return InterpolationResult(
        path=writer.path,
        src_fps=float(plan.src_fps),
        out_fps=float(plan.out_fps),
        frames_in=stream.frames_in,
        frames_out=stream.frames_out,
        scene_cuts=[start + i for i in stream.scene_cuts],
        seconds=seconds,
        ms_per_frame=1000.0 * seconds / max(1, stream.frames_out),
        duplicates=[start + i for i in stream.duplicates],
        notes=notes,
    )

