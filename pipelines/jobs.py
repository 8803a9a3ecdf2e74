"""Typed jobs: one kind per task, each validated once, in its ``check``.

* ``GenerateJob`` (``jobspec.JobSpec``): t2v, i2v, keyframes.
* ``InterpolateJob``: raise a video's frame rate, by optical flow or a keyframes model.

Front doors build a job and call ``engine.run(job, ...)``; they do no validation of their
own. Every output embeds its job (``to_dict``) under its kind, so ``job_from_dict`` turns a
result back into the job that made it (``app.py rerun``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import KinetographError
from .jobspec import MAX_SEED, MAX_STEPS, JobSpec, _check_int
from .output_paths import check_output_name

GenerateJob = JobSpec

INTERPOLATION_METHODS = ("flow", "generative")
INTERPOLATION_QUALITIES = ("standard", "best")  # the flow backend's QUALITY_SETTINGS (a test keeps them equal)
_GENERATIVE_ONLY = ("model", "prompt", "steps", "seed")


@dataclass(frozen=True)
class InterpolateJob:
    """Raise the frame rate of ``input`` (a video file) by ``factor`` or to ``fps``.

    ``method``: "flow" (motion-compensated, no weights; ``quality`` standard or best) or
    "generative" (a first+last-frame ``model`` makes each pair's in-betweens, with ``prompt``,
    ``steps`` and ``seed``; the seed is drawn once when not given and recorded).
    ``start``/``end``: the input frame range (end exclusive); ``slowmo``: keep the fps and play
    the extra frames. ``out``: the output mp4 (None: beside the input, ``clip-x2.mp4``).
    """

    input: str = ""
    factor: int | None = None
    fps: float | None = None
    slowmo: bool = False
    start: int = 0
    end: int | None = None
    method: str = "flow"
    quality: str | None = None  # None: standard (flow only)
    model: str | None = None
    prompt: str | None = None
    steps: int | None = None
    seed: int | None = None
    out: str | None = None

    kind = "interpolate"

    def check(self) -> InterpolateJob:
        """Reject what cannot run, with a message that says what to change. Returns self."""
        from .interpolation.timing import MAX_FACTOR, as_fps

        if not self.input or not str(self.input).strip():
            raise KinetographError("Interpolation needs an input video: give the path of a video file.")
        if self.method not in INTERPOLATION_METHODS:
            raise KinetographError(f"Unknown interpolation method {self.method!r}: use "
                                   f"{' or '.join(INTERPOLATION_METHODS)}.")
        if (self.factor is None) == (self.fps is None):
            raise KinetographError("Give either --factor (2, 3, 4 ...) or --fps (a target frame rate), not both "
                                   "and not neither.")
        if self.factor is not None:
            _check_int("factor", self.factor, 2, MAX_FACTOR)
        if self.fps is not None:
            as_fps(self.fps, "target fps")  # a number, finite, > 0, at most MAX_FPS
        _check_int("start", self.start, 0, 10**9)
        if self.end is not None:  # the range's frame count is checked against the video when it is read
            _check_int("end", self.end, 1, 10**9)
        if self.method == "generative":
            if not self.model or not str(self.model).strip():
                raise KinetographError(
                    "--method generative needs --model: a video model that generates between a first and a last "
                    "frame, e.g. --model ltx-video or --model wan2.1-14b (--model tiny-ltx runs anywhere but makes "
                    "noise). See `python app.py models`; or use --method flow, which needs no model.")
            if self.quality is not None:
                raise KinetographError("--quality is a setting of --method flow; leave it out with --method generative.")
            if self.steps is not None:
                _check_int("steps", self.steps, 1, MAX_STEPS)
            if self.seed is not None:
                _check_int("seed", self.seed, 0, MAX_SEED)
            if self.prompt is not None and not isinstance(self.prompt, str):
                raise KinetographError(f"prompt must be text, got {type(self.prompt).__name__}.")
        else:
            given = [f"--{name}" for name in _GENERATIVE_ONLY if getattr(self, name) is not None]
            if given:
                raise KinetographError(f"{', '.join(given)} only apply to --method generative; add "
                                       "--method generative to in-between with a video model, or leave them out.")
            if self.quality is not None and self.quality not in INTERPOLATION_QUALITIES:
                raise KinetographError(f"Unknown quality {self.quality!r}: use "
                                       f"{' or '.join(INTERPOLATION_QUALITIES)}.")
        if self.out is not None:
            check_output_name(self.out)  # the name alone; the folder is checked before the work (output_paths)
        return self

    def timing_plan(self, src_fps):
        """The timing arithmetic for a source at ``src_fps`` (output fps, counts, positions)."""
        from .interpolation.timing import make_plan

        return make_plan(src_fps, factor=self.factor, target_fps=self.fps, slowmo=self.slowmo)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InterpolateJob:
        return cls(**_known_fields(cls, data))


MAX_EXTEND_SECONDS = 3600.0  # an hour of video in one job: beyond it a job is a typo


@dataclass(frozen=True)
class ExtendJob:
    """Extend ``input`` (a video file) by ``seconds``, or (``input`` None) make a long video of
    ``seconds`` from a prompt or a ``timeline``, segment by segment.

    Each segment continues from the last ``context_frames`` of what exists (None: the family's
    default), its first ``overlap`` frames crossfaded with the frames they repeat; its colours are
    anchored to the reference frames with ``anchor`` strength (0: off). ``segment_frames``: frames
    per generation (None: the family's default length). ``timeline``: ``(start_s, prompt, new_shot)``
    cues; each segment takes the prompt active where it starts. ``seed``: segment i uses seed + i.
    ``width``/``height``/``fps`` apply to a video made from nothing (an input keeps its own).
    """

    input: str | None = None
    model: str = "tiny-ltx"
    seconds: float = 0.0
    prompt: str = ""
    negative_prompt: str | None = None
    timeline: tuple | None = None
    segment_frames: int | None = None
    context_frames: int | None = None
    overlap: int | None = None
    anchor: float = 1.0
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    out: str | None = None
    name: str | None = None

    kind = "extend"

    def __post_init__(self) -> None:
        # 3 and 3.0 seconds are one job (its key finds the segments of a crashed run).
        for name in ("seconds", "anchor", "guidance", "fps"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))

    def check(self) -> ExtendJob:
        from .extension.timeline import check_timeline
        from .jobspec import MAX_FPS, MAX_FRAMES, MAX_SIDE

        if self.input is not None and not str(self.input).strip():
            raise KinetographError("Extension needs an input video: give the path of a video file.")
        if not self.model or not str(self.model).strip():
            raise KinetographError("No model given: pass --model (a preset such as tiny-ltx or ltx-video, a hub repo "
                                   "id or a local folder; see `python app.py models`).")
        finite(self.seconds, "seconds")
        if not 0 < self.seconds <= MAX_EXTEND_SECONDS:
            raise KinetographError(f"--seconds {self.seconds:g} is out of range: use more than 0 and at most "
                                   f"{MAX_EXTEND_SECONDS:g}.")
        if self.timeline is not None:
            check_timeline(self.timeline, "--timeline")
        elif not isinstance(self.prompt, str) or not self.prompt.strip():
            raise KinetographError("Extension needs a prompt (--prompt \"what happens next\") or a --timeline FILE.")
        if self.segment_frames is not None:
            _check_int("segment frames", self.segment_frames, 2, MAX_FRAMES)
        if self.context_frames is not None:
            _check_int("context frames", self.context_frames, 1, MAX_FRAMES)
        if self.overlap is not None:
            _check_int("overlap", self.overlap, 0, MAX_FRAMES)
        finite(self.anchor, "anchor")
        if not 0.0 <= self.anchor <= 1.0:
            raise KinetographError(f"--anchor {self.anchor:g} is out of range: use 0 (off) to 1 (full colour anchoring).")
        if self.steps is not None:
            _check_int("steps", self.steps, 1, MAX_STEPS)
        if self.guidance is not None:
            finite(self.guidance, "guidance")
            if not 0.0 <= self.guidance <= 50.0:
                raise KinetographError(f"Guidance {self.guidance} is out of range: use 0 to 50.")
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        for side in ("width", "height"):
            if getattr(self, side) is not None:
                _check_int(side, getattr(self, side), 16, MAX_SIDE)
        if self.fps is not None:
            finite(self.fps, "fps")
            if not 0 < self.fps <= MAX_FPS:
                raise KinetographError(f"fps {self.fps} is out of range: use a value above 0 and at most {MAX_FPS:g}.")
        if self.input is not None and any(v is not None for v in (self.width, self.height, self.fps)):
            raise KinetographError("--width, --height and --fps are for a video made from a prompt; an extension keeps "
                                   "its input's size and frame rate.")
        if self.out is not None and not str(self.out).lower().endswith(".mp4"):
            raise KinetographError(f"Output {self.out} must end in .mp4 (Kinetograph writes H.264 mp4).")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["timeline"] = [list(c) for c in self.timeline] if self.timeline is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtendJob:
        values = _known_fields(cls, data)
        if values.get("timeline") is not None:
            values["timeline"] = tuple(tuple(c) for c in values["timeline"])
        return cls(**values)


JOB_KINDS: dict[str, type] = {"generate": JobSpec, "interpolate": InterpolateJob, "extend": ExtendJob}


def job_kind(job) -> str:
    for kind, cls in JOB_KINDS.items():
        if isinstance(job, cls):
            return kind
    raise KinetographError(f"{type(job).__name__} is not a Kinetograph job; build one of: "
                           f"{', '.join(cls.__name__ for cls in JOB_KINDS.values())}.")


def job_from_dict(kind: str, data: dict[str, Any]):
    """The job of ``kind`` described by ``data`` (as stored in an output's metadata)."""
    try:
        cls = JOB_KINDS[kind]
    except KeyError:
        raise KinetographError(f"Unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}.") from None
    return cls.from_dict(data)


def _known_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KinetographError(f"Unknown job settings: {', '.join(unknown)}. Known: {', '.join(sorted(names))}.")
    return dict(data)


def finite(value: float | None, name: str) -> None:
    """Reject NaN and infinities where a float is accepted."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise KinetographError(f"{name} must be a finite number, got {value!r}.")
