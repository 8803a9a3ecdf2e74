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


JOB_KINDS: dict[str, type] = {"generate": JobSpec, "interpolate": InterpolateJob}


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
