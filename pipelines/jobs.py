"""Typed jobs: one kind per task, each validated once, in its ``check``.

* ``GenerateJob`` (``jobspec.JobSpec``): t2v, i2v, keyframes.
* ``InterpolateJob``: raise a video's frame rate, by optical flow or a keyframes model.

Front doors build a job and call ``engine.run(job, ...)``; they do no validation of their
own. Every output embeds its job (``to_dict``) under its kind, so ``job_from_dict`` turns a
result back into the job that made it (``app.py rerun``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import KinetographError, field_error
from .jobspec import MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS, JobSpec, _check_int, check_number
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
        """Reject what cannot run, with a message that says what to change. Returns self.

        Errors name the setting as ``{field}`` (``KinetographError.worded`` gives a front door's words)."""
        from .interpolation.timing import MAX_FACTOR, as_fps

        for name in ("input", "method", "quality", "model", "prompt", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise field_error(name, f"{{{name}}} must be text, got {type(value).__name__}.")
        if not self.input or not self.input.strip():
            raise field_error("input", "Interpolation needs an input video: give {input} (the path of a video file).")
        if self.method not in INTERPOLATION_METHODS:
            raise field_error("method", f"Unknown interpolation method {self.method!r}: set {{method}} to "
                                        f"{' or '.join(INTERPOLATION_METHODS)}.")
        if not isinstance(self.slowmo, bool):
            raise field_error("slowmo", f"{{slowmo}} must be true or false, got {self.slowmo!r}.")
        if (self.factor is None) == (self.fps is None):
            raise field_error("factor", "Give either {factor} (2, 3, 4 ...) or {fps} (a target frame rate), not both "
                                        "and not neither.", "fps")
        if self.factor is not None:
            _check_int("factor", self.factor, 2, MAX_FACTOR)
        if self.fps is not None:
            as_fps(self.fps, "fps")  # a number, finite, at least MIN_FPS, at most MAX_FPS
        _check_int("start", self.start, 0, 10**9)
        if self.end is not None:  # the range's frame count is checked against the video when it is read
            _check_int("end", self.end, 1, 10**9)
            if self.end <= self.start:
                raise field_error("end", f"{{end}} ({self.end}) must be after {{start}} ({self.start}): the range is "
                                         "start..end, end exclusive.", "start")
        if self.method == "generative":
            if not self.model or not self.model.strip():
                raise field_error(
                    "model",
                    "{method} generative needs {model}: a video model that generates between a first and a last "
                    "frame, e.g. ltx-video or wan2.1-14b (tiny-ltx runs anywhere but makes "
                    "noise). See `python app.py models`; or use {method} flow, which needs no model.", "method")
            if self.quality is not None:
                raise field_error("quality", "{quality} is a setting of {method} flow; leave it out with "
                                             "{method} generative.", "method")
            if self.steps is not None:
                _check_int("steps", self.steps, 1, MAX_STEPS)
            if self.seed is not None:
                _check_int("seed", self.seed, 0, MAX_SEED)
            if self.prompt is not None and len(self.prompt) > MAX_PROMPT_CHARS:
                raise field_error("prompt", f"{{prompt}} is {len(self.prompt):,} characters; use at most "
                                            f"{MAX_PROMPT_CHARS:,}.")
        else:
            given = [name for name in _GENERATIVE_ONLY if getattr(self, name) is not None]
            if given:
                raise KinetographError(
                    f"{', '.join('{' + name + '}' for name in given)} only apply to {{method}} generative; set "
                    "{method} generative to in-between with a video model, or leave them out.",
                    fields=(*given, "method"))
            if self.quality is not None and self.quality not in INTERPOLATION_QUALITIES:
                raise field_error("quality", f"Unknown quality {self.quality!r}: set {{quality}} to "
                                             f"{' or '.join(INTERPOLATION_QUALITIES)}.")
        if self.out is not None and not self.out.strip():
            raise field_error("out", "{out} is empty: give a file name ending in .mp4, or leave {out} out for a "
                                     "name beside the input.")
        if self.out is not None and not self.out.lower().endswith(".mp4"):
            raise field_error("out", f"Output {self.out!r} must end in .mp4 (Kinetograph writes H.264 mp4): "
                                     "change {out}.")
        if self.out is not None:
            check_output_name(self.out)  # the name alone; the folder is checked before the work (output_paths)
        return self

    def timing_plan(self, src_fps):
        """The timing arithmetic for a source at ``src_fps`` (output fps, counts, positions)."""
        from .interpolation.timing import make_plan

        try:
            return make_plan(src_fps, factor=self.factor, target_fps=self.fps, slowmo=self.slowmo)
        except KinetographError as error:  # make_plan's target_fps is this job's fps
            raise error.renamed({"target_fps": "fps"}) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InterpolateJob:
        return cls(**_known_fields(cls, data))


MAX_MEMORY_GB = 65536.0  # 64 TB: beyond it a budget is a typo, not a machine


@dataclass(frozen=True)
class MemoryOptions:
    """How a run may use memory; not part of the job (it never changes the frames).

    ``budget_gb``: GPU memory to stay within; ``ram_gb``: host RAM to stay within (None: what is
    free); ``mode``: a memory mode forced instead of the planner's choice (None or "auto": the
    planner picks; names and aliases as ``memory.planner.TIERS`` / ``MODE_ALIASES``).
    ``device_facts``: the device to plan for (None: detected). Checked like a job, in ``check``.
    """

    budget_gb: float | None = None
    ram_gb: float | None = None
    mode: str | None = None
    device_facts: Any = None  # memory.DeviceFacts
    dtype: str | None = None  # "float32" | "bfloat16" | "float16": the weights' dtype instead of the automatic one

    def check(self) -> MemoryOptions:
        """Finite, positive budgets of at most MAX_MEMORY_GB and a known mode, or a KinetographError. Returns self."""
        for name in ("budget_gb", "ram_gb"):
            value = getattr(self, name)
            if value is None:
                continue
            number = check_number(name, value, 0.0, MAX_MEMORY_GB, advice=" GB")
            if number <= 0:
                raise field_error(name, f"{{{name}}} must be more than 0 GB, got {value!r}.")
        if self.mode is not None:
            from .memory.planner import MODE_ALIASES, TIERS

            if not isinstance(self.mode, str):
                raise field_error("mode", f"{{mode}} must be text, got {type(self.mode).__name__}.")
            key = self.mode.strip().lower().replace("-", "_")
            if key not in MODE_ALIASES and key not in TIERS:
                raise field_error("mode", f"Unknown memory mode {self.mode!r} for {{mode}}. Choose one of: auto, "
                                          f"{', '.join(TIERS)}.")
        if self.dtype is not None and self.dtype not in ("float32", "bfloat16", "float16"):
            raise field_error("dtype", f"Unknown dtype {self.dtype!r} for {{dtype}}: use float32, bfloat16 or float16.")
        return self




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
        """Reject what cannot run, naming the setting at fault (``{seconds}``: each front door's word)."""
        from .extension.timeline import check_timeline
        from .jobspec import MAX_FPS, MAX_FRAMES, MAX_SIDE, MIN_FPS

        for name in ("input", "model", "prompt", "negative_prompt", "out", "name"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise field_error(name, f"{{{name}}} must be text, got {type(value).__name__}.")
        if self.input is not None and not self.input.strip():
            raise field_error("input", "Extension needs an input video: set {input} to the path of a video file.")
        if not self.model or not self.model.strip():
            raise field_error("model", "No model given: set {model} to a preset such as tiny-ltx or ltx-video, a hub "
                                       "repo id or a local folder (the models list names them).")
        seconds = check_number("seconds", self.seconds, 0.0, MAX_EXTEND_SECONDS, advice=" s")
        if seconds <= 0:
            raise field_error("seconds", f"{{seconds}} must be more than 0, got {self.seconds!r}.")
        if self.timeline is not None:
            try:
                check_timeline(self.timeline, "the timeline")
            except KinetographError as error:
                raise field_error("timeline", "{timeline}: " + str(error)) from None
        elif not self.prompt or not self.prompt.strip():
            raise field_error("prompt", "Extension needs a prompt (what happens next) in {prompt}, or a timeline.",
                              "timeline")
        for text in ("prompt", "negative_prompt"):
            if getattr(self, text) is not None and len(getattr(self, text)) > MAX_PROMPT_CHARS:
                raise field_error(text, f"{{{text}}} is longer than {MAX_PROMPT_CHARS} characters; shorten it.")
        for name, low in (("segment_frames", 2), ("context_frames", 1), ("overlap", 0)):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), low, MAX_FRAMES)
        check_number("anchor", self.anchor, 0.0, 1.0, advice=" (0: off, 1: full colour anchoring)")
        if self.steps is not None:
            _check_int("steps", self.steps, 1, MAX_STEPS)
        if self.guidance is not None:
            check_number("guidance", self.guidance, 0.0, 50.0)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        for side in ("width", "height"):
            if getattr(self, side) is not None:
                _check_int(side, getattr(self, side), 16, MAX_SIDE)
        if self.fps is not None:
            check_number("fps", self.fps, MIN_FPS, MAX_FPS)
        if self.input is not None:
            given = [name for name in ("width", "height", "fps") if getattr(self, name) is not None]
            if given:
                raise field_error(given[0], "{" + given[0] + "} is for a video made from a prompt; an extension keeps "
                                            "its input's size and frame rate.")
        if self.out is not None:
            check_output_name(self.out)
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
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise KinetographError(f"The stored {kind} job is not a set of named settings ({type(data).__name__}); "
                               "the output's metadata is damaged. Run the command again instead.")
    return cls.from_dict(data)


def _known_fields(cls, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KinetographError(f"Unknown job settings: {', '.join(unknown)}. Known: {', '.join(sorted(names))}.")
    return dict(data)
