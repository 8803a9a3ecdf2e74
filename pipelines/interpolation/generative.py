"""The generative interpolation backend ("generative"): a video model between two frames.

Each pair of input frames becomes one first+last-frame ("keyframes") generation with the
engine (``engine.generate_frames``): the model makes a short video that starts at ``frame0``
and ends at ``frame1``, and the in-betweens are the generated frames nearest to each
requested time. Unlike the "flow" backend it invents content (what happens between two
distant frames), needs a video model (LTX-Video 0.9.5+, Wan 2.1 first-last-frame) and is
slow: one generation per pair. The built-in tiny models (``tiny-ltx``, ``tiny-wan``) run
anywhere but produce noise; they are for smoke tests.

How a pair is generated:

* Size: the input size scaled so that its long side is at most the family's default long
  side (768 for LTX, 832 for Wan; ``max_side`` overrides), then rounded to the family's size
  multiple; a 1080p video is generated at 768x448 (LTX) and scaled back. The two frames are
  resized to exactly that size (INTER_AREA down, INTER_CUBIC up), so nothing is cropped, and
  the chosen frames are resized back to the input size the same way.
* Frames: a count valid for the family (LTX 8k+1, Wan 4k+1). Generated frame ``i`` of ``N``
  sits at ``t = i / (N - 1)``; among the few smallest valid counts that leave room for every
  in-between, the one that places the nearest frames closest to the requested ``ts`` wins
  (the smaller on a tie): ``ts = [0.5]`` with LTX is frame 4 of 9, ``[1/3, 2/3]`` frames 8
  and 16 of 25 (``choose_frame_count``).
* Seed: the same for every pair (drawn once when not given), so a run is reproducible.
* Prompt: encoded once, by the first pair; later pairs reuse it (``EncodedPrompt``), so a
  large text encoder is neither run nor, under a staged memory plan, loaded again per pair.

The input frames themselves are never replaced: the streaming interpolator emits the
originals and asks the backend only for the times strictly between them.
"""
from __future__ import annotations

import inspect
import math
import random
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from ..errors import KinetographError
from ..jobspec import round_size
from .flow_checks import check_pair, check_ts

__all__ = ["GenerativeBackend", "choose_frame_count", "nearest_indices", "FRAME_COUNT_CHOICES"]

FRAME_COUNT_CHOICES = 3  # valid frame counts compared per pair (more frames: better timing, slower)


# --------------------------------------------------------------------------------------
# timing: which generated frames serve which t
# --------------------------------------------------------------------------------------


def nearest_indices(ts: Sequence[float], count: int) -> list[int]:
    """For each ``t``, the index of the nearest of ``count`` frames at ``t = i / (count - 1)``."""
    return [int(math.floor(t * (count - 1) + 0.5)) for t in ts]


def _valid_counts(minimum: int, frame_multiple: int) -> Iterator[int]:
    """Frame counts ``frame_multiple * k + 1`` (k >= 1) from the smallest one >= ``minimum``."""
    m = max(1, int(frame_multiple))
    if m == 1:
        count = minimum
        while True:
            yield count
            count += 1
    k = max(1, math.ceil((minimum - 1) / m))
    while True:
        yield m * k + 1
        k += 1


def choose_frame_count(ts: Sequence[float], frame_multiple: int, max_frames: int | None = None,
                       choices: int = FRAME_COUNT_CHOICES) -> tuple[int, list[int]]:
    """The frame count to generate for in-betweens at ``ts`` (0 < t < 1), and the frame index
    for each ``t``.

    Counts are ``frame_multiple * k + 1`` and at least ``len(ts) + 2`` (the first and last
    frames stand for the two inputs); the first ``choices`` of them (up to ``max_frames``) are
    compared and the one whose nearest frames have the smallest largest timing error
    ``|i / (N - 1) - t|`` wins, the smaller count on a tie. An index of 0 or ``N - 1`` means
    that ``t`` is nearest to an input frame itself (a ``t`` very close to 0 or 1).
    """
    ts = check_ts(ts)
    if not ts:
        raise KinetographError("No in-between times were asked for; pass at least one t between 0 and 1.")
    if isinstance(choices, bool) or not isinstance(choices, int) or choices < 1:
        raise KinetographError(f"choices must be a whole number >= 1, got {choices!r}.")
    best: tuple[float, int, list[int]] | None = None
    for compared, count in enumerate(_valid_counts(len(ts) + 2, frame_multiple)):
        if compared >= choices or (max_frames is not None and count > max_frames):
            break
        picks = nearest_indices(ts, count)
        error = max(abs(i / (count - 1) - t) for i, t in zip(picks, ts, strict=True))
        if best is None or error < best[0] - 1e-9:
            best = (error, count, picks)
        if error <= 1e-9:
            break
    if best is None:
        raise KinetographError(
            f"{len(ts)} in-betweens per pair need more frames than the model generates at once "
            f"(at most {max_frames}); use a smaller factor or target fps."
        )
    return best[1], best[2]


# --------------------------------------------------------------------------------------
# the backend
# --------------------------------------------------------------------------------------


def _resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    shrink = width * height < w * h
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


class GenerativeBackend:
    """In-betweens generated by a first+last-frame video model (see the module docstring).

    ``model``: a preset (``ltx-video``, ``wan2.1-14b``, ``tiny-ltx``, ...), a hub repo id or a
    local diffusers folder, as ``generate --model``; it must do the keyframes task.
    ``prompt`` (may be empty: the keyframes task needs none), ``negative_prompt`` (None: the
    family's), ``steps`` / ``guidance`` (None: the family's defaults), ``seed`` (None: drawn
    once; every pair uses it), ``max_side`` (None: the family's default long side).
    ``manager``: the engine's model cache (default: the process-wide one, so the model loads
    once for all pairs); ``progress(stage, done, total)`` receives each generation's stages
    (load, encode, denoise, decode), or ``events()`` gives the ``Events`` each generation reports
    to (progress and previews; it wins over ``progress``); ``cancel`` (a CancelToken) is checked at every denoising
    step. The model is resolved now, so a wrong name fails before any frame is read.
    """

    name = "generative"
    accepts_context = False  # one generation per pair; the stream passes all of a pair's ts at once

    def __init__(self, model: str | None = None, prompt: str = "", negative_prompt: str | None = None,
                 steps: int | None = None, guidance: float | None = None, seed: int | None = None,
                 max_side: int | None = None, manager=None, progress=None, cancel=None, device_facts=None,
                 events=None):
        from ..families import PRESETS, presets_for_task
        from ..jobspec import MAX_SEED, JobSpec
        from ..memory import DeviceFacts
        from ..models import resolve_model

        supported = presets_for_task("keyframes")
        if model is None or not str(model).strip():
            raise KinetographError(
                "Generative in-betweening needs a video model that generates between a first and a last frame "
                f"(--model): one of the presets {', '.join(supported)}, or such a hub repo id or local folder. "
                "tiny-* models run anywhere but make noise (smoke tests)."
            )
        model = str(model).strip()
        if model in PRESETS and model not in supported:
            raise KinetographError(
                f"The model {model!r} cannot generate a video between a first and a last frame (it has no "
                f"keyframes pipeline). For generative in-betweening choose one that can: {', '.join(supported)} "
                "(or a hub repo id / local folder of an LTX-Video 0.9.5+ or Wan 2.1 first-last-frame model)."
            )
        if not isinstance(prompt, str):
            raise KinetographError(f"prompt must be text, got {type(prompt).__name__}.")
        if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 16):
            raise KinetographError(f"max_side must be a whole number of pixels >= 16, got {max_side!r}.")
        if seed is None:
            seed = random.randint(0, MAX_SEED)
        # The job's own checks give steps / guidance / seed their usual messages.
        JobSpec(task="keyframes", model=model, prompt=prompt, negative_prompt=negative_prompt, image="frame0",
                last_image="frame1", steps=steps, guidance=guidance, seed=seed).check()

        self.facts = device_facts or DeviceFacts.detect()
        self.source = resolve_model(model, "keyframes", prefer_cuda=self.facts.has_cuda)
        self.family = self.source.family
        self.model, self.prompt, self.negative_prompt = model, prompt, negative_prompt
        self.steps, self.guidance, self.seed = steps, guidance, seed
        multiple = self.family.size_multiple
        cap = max_side if max_side is not None else max(self.family.default_width, self.family.default_height)
        self.max_side = max(multiple, cap // multiple * multiple)
        self.manager, self.progress, self.cancel = manager, progress, cancel
        self.events = events  # None, or a function giving the Events of the pair about to be generated
        self.last_job = None  # the JobSpec of the latest generation (as run) and the frames used from it
        self.last_indices: list[int] = []
        self._sizes: list[str] = []
        self._counts: list[int] = []
        self._encoded_prompt = None  # the first pair's encoded prompt, reused by every later pair

    # ------------------------------------------------------------------ settings
    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) a ``width``×``height`` input is generated at: long side at most
        ``max_side``, both sides multiples of the family's size multiple."""
        multiple = self.family.size_multiple
        scale = min(1.0, self.max_side / max(width, height))
        return round_size(width * scale, multiple), round_size(height * scale, multiple)

    def describe(self) -> dict:
        """What to store with a result so that it can be made again (sizes and frame counts once
        a pair has been generated)."""
        family = self.family
        return {
            "model": self.model,
            "family": family.id,
            "prompt": self.prompt,
            **({"negative_prompt": self.negative_prompt} if self.negative_prompt is not None else {}),
            "steps": self.steps if self.steps is not None else family.default_steps,
            "guidance": self.guidance if self.guidance is not None else family.default_guidance,
            "seed": self.seed,
            "max_side": self.max_side,
            "generation_size": ", ".join(self._sizes) or None,
            "frames_per_pair": sorted(self._counts) or None,
            "frame_rule": f"{family.frame_multiple}k+1",
        }

    # ------------------------------------------------------------- interpolation
    def interpolate(self, frame0, frame1, ts: Sequence[float]) -> list[np.ndarray]:
        return list(self.interpolate_iter(frame0, frame1, ts))

    def interpolate_iter(self, frame0, frame1, ts: Sequence[float]) -> Iterator[np.ndarray]:
        """One generation for the pair (now), then its frames at ``ts`` at the input size."""
        a, b = check_pair(frame0, frame1)
        ts = check_ts(ts)
        if not ts:
            return iter(())
        if np.array_equal(a, b):  # a repeated frame: nothing to invent
            return (a.copy() for _ in ts)
        frames, picks, count = self._generate(a, b, ts)
        height, width = a.shape[:2]
        last = count - 1
        # index 0 / the last index: the nearest frame is an input frame itself
        return (a.copy() if i == 0 else b.copy() if i == last else _resize(frames[i], width, height) for i in picks)

    def _generate(self, a: np.ndarray, b: np.ndarray, ts: list[float]) -> tuple[np.ndarray | None, list[int], int]:
        """(generated frames, the index for each t, the frame count); no generation (None) when
        every t is nearest to one of the two inputs."""
        from ..engine import generate_frames
        from ..jobspec import JobSpec
        from ..progress import no_progress

        height, width = a.shape[:2]
        gen_w, gen_h = self.generation_size(width, height)
        count, picks = choose_frame_count(ts, self.family.frame_multiple, self.family.max_frames)
        if all(i in (0, count - 1) for i in picks):  # every t is nearest to an input frame
            return None, picks, count
        where = f"{width}x{height} array, in memory"
        job = JobSpec(task="keyframes", model=self.model, prompt=self.prompt, negative_prompt=self.negative_prompt,
                      image=f"first frame of the pair ({where})", last_image=f"last frame of the pair ({where})",
                      frames=count, width=gen_w, height=gen_h, steps=self.steps, guidance=self.guidance,
                      seed=self.seed, name="in-between")
        made = generate_frames(job, images={"image": _resize(a, gen_w, gen_h), "last_image": _resize(b, gen_w, gen_h)},
                               progress=self.progress or no_progress, cancel=self.cancel, manager=self.manager,
                               events=self.events() if self.events is not None else None,
                               device_facts=self.facts, encoded_prompt=self._encoded_prompt)
        self._encoded_prompt = made.encoded_prompt
        frames = made.frames
        if len(frames) != count:  # the loaded model's own frame rule differs from its family's
            count, picks = len(frames), nearest_indices(ts, len(frames))
        self.last_job, self.last_indices = made.job, picks
        size = f"{made.job.width}x{made.job.height}"
        if size not in self._sizes:
            self._sizes.append(size)
        if len(frames) not in self._counts:
            self._counts.append(len(frames))
        return frames, picks, count


def make_generative_backend(**options) -> GenerativeBackend:
    """The registry's factory: unknown options are a user error, not a TypeError."""
    try:
        inspect.signature(GenerativeBackend).bind(**options)
    except TypeError as error:
        raise KinetographError(f"Unknown generative backend option: {error}.") from None
    return GenerativeBackend(**options)
