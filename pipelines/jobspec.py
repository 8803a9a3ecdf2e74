"""JobSpec: the single, validated description of a generation job.

The same spec runs identically from the UI, a node, the CLI or a workflow file, and is
embedded in every output so a result can be reproduced. Validation happens in two
places, both here: ``check()`` rejects what no model could do (before anything is
loaded), and ``adapted_to()`` rounds frames and size to a model's rules and says what
it changed.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import KinetographError, field_error
from .families import TASKS, ModelFamily
from .output_paths import check_file_name, check_output_name

# Hard ceilings that hold for every model: beyond them a job is a typo, not a request.
MAX_FRAMES = 1000
MAX_SIDE = 4096
MAX_STEPS = 500
MAX_FPS = 240.0
MIN_FPS = 0.01  # slower than one frame in 100 s is a typo; and below 1/1001 a frame's duration is not representable
MAX_PROMPT_CHARS = 100_000
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class JobSpec:
    """A generation job (``jobs.GenerateJob``): t2v, i2v or keyframes."""

    kind: ClassVar[str] = "generate"
    task: str = "t2v"
    model: str = "tiny-ltx"
    prompt: str = ""
    negative_prompt: str | None = None  # None: the family's default negative prompt
    image: str | None = None  # start frame (i2v, keyframes)
    last_image: str | None = None  # end frame (keyframes)
    frames: int | None = None  # None: from seconds, else the family default
    seconds: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None  # None: a random seed, recorded in the result
    transformer: str | None = None  # single-file .safetensors replacing the model's denoiser (e.g. a fine-tune)
    out: str | None = None  # output path; None: outputs/<date>/<name>-<seed>.mp4
    name: str | None = None
    # What adapted_to() changed, in words; part of the spec so outputs record it.
    adjustments: tuple[str, ...] = field(default=())

    # ------------------------------------------------------------------ checks
    def check(self) -> JobSpec:
        """Reject what no model can do. Returns self so calls chain.

        Every number is checked for type, finiteness and range here, once, for every front door;
        an error names the setting as ``{field}`` (see ``KinetographError.worded``)."""
        if self.task not in TASKS:
            raise field_error("task", f"Unknown task {self.task!r} for {{task}}. Choose one of: {', '.join(TASKS)}.")
        if not isinstance(self.model, str) or not self.model.strip():
            raise field_error("model", "No model given. Pass {model} with a preset (see `python app.py models`), "
                                       "a hub repo id or a local folder.")
        if not isinstance(self.adjustments, tuple) or not all(isinstance(a, str) for a in self.adjustments):
            raise field_error("adjustments", "{adjustments} must be a list of notes (text); the stored job is damaged.")
        if not isinstance(self.prompt, str):
            raise field_error("prompt", f"{{prompt}} must be text, got {type(self.prompt).__name__}.")
        for name in ("negative_prompt", "image", "last_image", "transformer", "out", "name"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise field_error(name, f"{{{name}}} must be text, got {type(value).__name__}.")
        if len(self.prompt) > MAX_PROMPT_CHARS or len(self.negative_prompt or "") > MAX_PROMPT_CHARS:
            raise field_error("prompt", f"{{prompt}} is {max(len(self.prompt), len(self.negative_prompt or '')):,} "
                                        f"characters; use at most {MAX_PROMPT_CHARS:,} (text encoders read only the "
                                        "first few hundred words).", "negative_prompt")
        if self.out is not None and not self.out.strip():
            raise field_error("out", "{out} is empty: give a file name ending in .mp4, or leave {out} out for the "
                                     "default name.")
        if self.task == "t2v" and not self.prompt.strip():
            raise field_error("prompt", "Text-to-video needs a prompt: pass {prompt} \"what should happen\".")
        if self.task in ("i2v", "keyframes") and not self.image:
            raise field_error("image", f"The {self.task} task needs a start image: pass {{image}} PATH.")
        if self.task == "keyframes" and not self.last_image:
            raise field_error("last_image", "The keyframes task needs a last frame: pass {last_image} PATH.")
        if self.task == "t2v" and (self.image or self.last_image):
            raise field_error("task", "Text-to-video takes no images; use {task} i2v (start image) "
                                      "or {task} keyframes (first and last frame).")
        if self.task == "i2v" and self.last_image:
            raise field_error("last_image", "A last frame ({last_image}) needs {task} keyframes, not i2v.", "task")
        if self.frames is not None and self.seconds is not None:
            raise field_error("frames", "Give either {frames} or {seconds}, not both.", "seconds")
        if self.frames is not None:
            _check_int("frames", self.frames, 1, MAX_FRAMES)
        if self.seconds is not None:
            check_number("seconds", self.seconds, 0.01, MAX_FRAMES / 8,
                         advice=" (longer videos: generate in parts and join them)")
        if self.fps is not None:
            check_number("fps", self.fps, MIN_FPS, MAX_FPS)
        for side in ("width", "height"):
            value = getattr(self, side)
            if value is not None:
                _check_int(side, value, 16, MAX_SIDE)
        if self.steps is not None:
            _check_int("steps", self.steps, 1, MAX_STEPS)
        if self.guidance is not None:
            check_number("guidance", self.guidance, 0.0, 50.0,
                         advice=" (typical: 3 to 8; 1 or less turns classifier-free guidance off)")
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        if self.out is not None:
            check_output_name(self.out)  # the name alone; the folder is checked before the work (output_paths)
        if self.name is not None:
            check_file_name(self.name, "--name")  # a name, never a path out of the output folder
        return self

    # -------------------------------------------------------------- adaptation
    def adapted_to(self, family: ModelFamily, frame_multiple: int | None = None,
                   size_multiple: int | None = None) -> JobSpec:
        """Fill defaults from the family and round to the model's rules.

        ``frame_multiple``/``size_multiple`` override the family's when the loaded model
        says otherwise (the VAE's real compression ratios are read after loading).
        Every change is recorded in ``adjustments``. The job must be checked (``check``) first.
        """
        frame_multiple = frame_multiple or family.frame_multiple
        size_multiple = size_multiple or family.size_multiple
        notes = list(self.adjustments)

        fps = self.fps if self.fps is not None else family.default_fps
        if self.frames is not None:
            frames = self.frames
        elif self.seconds is not None:
            frames = max(1, round(self.seconds * fps))
        else:
            frames = family.default_frames
        if frames > family.max_frames:
            raise KinetographError(
                f"{frames} frames is more than {family.label} generates in one pass "
                f"(at most {family.max_frames}). Ask for fewer frames, or use the extend task for long videos."
            )
        rounded = _round_frames(frames, frame_multiple)
        if rounded != frames:
            notes.append(f"frames {frames} -> {rounded} ({family.label} needs {frame_multiple}k+1 frames)")

        width = self.width if self.width is not None else family.default_width
        height = self.height if self.height is not None else family.default_height
        new_w, new_h = (round_size(width, size_multiple), round_size(height, size_multiple))
        if (new_w, new_h) != (width, height):
            notes.append(f"size {width}x{height} -> {new_w}x{new_h} (multiples of {size_multiple})")

        seed = self.seed if self.seed is not None else random.randint(0, MAX_SEED)
        negative = self.negative_prompt if self.negative_prompt is not None else family.default_negative_prompt
        # Dedupe while keeping order: re-adapting a spec must not repeat notes.
        notes = list(dict.fromkeys(notes))
        return dataclasses.replace(
            self, frames=rounded, seconds=None, fps=fps, width=new_w, height=new_h,
            steps=self.steps if self.steps is not None else family.default_steps,
            guidance=self.guidance if self.guidance is not None else family.default_guidance,
            seed=seed, negative_prompt=negative, adjustments=tuple(notes),
        )

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["adjustments"] = list(self.adjustments)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise KinetographError(f"Unknown job settings: {', '.join(unknown)}. Known: {', '.join(sorted(names))}.")
        values = dict(data)
        if isinstance(values.get("adjustments"), list):  # JSON has no tuples; anything else is left to check()
            values["adjustments"] = tuple(values["adjustments"])
        elif values.get("adjustments") is None:
            values["adjustments"] = ()
        return cls(**values)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    """A whole number from ``low`` to ``high``, or a KinetographError about ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise field_error(name, f"{{{name}}} must be a whole number, got {value!r}.")
    if not (low <= value <= high):
        raise field_error(name, f"{{{name}}} = {value} is out of range: use {low} to {high}.")


def check_number(name: str, value: Any, low: float, high: float, *, advice: str = "") -> float:
    """A finite real number from ``low`` to ``high`` (NaN, infinities, bools and text refused), as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise field_error(name, f"{{{name}}} must be a number, got {value!r}.")
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        number = math.inf
    if not math.isfinite(number):
        raise field_error(name, f"{{{name}}} must be a finite number, got {value!r}.")
    if not (low <= number <= high):
        raise field_error(name, f"{{{name}}} = {value!r} is out of range: use {low:g} to {high:g}{advice}.")
    return number


def _round_frames(frames: int, multiple: int) -> int:
    """Nearest count of the form multiple*k + 1 (at least multiple + 1 for multiple > 1)."""
    if multiple <= 1:
        return frames
    k = max(1, round((frames - 1) / multiple))
    return multiple * k + 1


def round_size(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)
