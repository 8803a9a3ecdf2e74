"""Output timing of an interpolated video: which output frame comes from which input pair at
which ``t``. Exact arithmetic (``Fraction``), so 23.976 → 60 fps never drifts.

Input frame ``i`` sits at position ``i`` (in input frames). Output frame ``j`` sits at
position ``p_j = j · step``:

* ``factor=N``: ``step = 1/N``; output fps = src fps × N (slow motion: src fps, N× the frames).
* ``target_fps=F``: ``step = src_fps / F``; output fps = F (slow motion: src fps, F/src × the frames).

Output frame ``j`` is input frame ``p_j`` when ``p_j`` is a whole number, otherwise the pair
``k = floor(p_j)``, ``k+1`` at ``t = p_j - k``. Outputs run from position 0 to the last input
frame: ``frames_out = floor((n_in - 1) / step) + 1``.

Variable-rate videos (phones, screen recordings) do not show frame ``i`` at ``i / fps``: a
phone may hold its first frame for 0.18 s and then run at 30 fps. ``frame_clock`` gives such
a video's frames their true positions (time × typical rate), and the stream places output
frames between the input frames that bracket them in time, so picture and sound stay
together. Evenly spaced videos keep whole-number positions.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from ..errors import KinetographError
from ..video_io import fps_as_fraction

__all__ = ["MAX_FACTOR", "Sample", "TimingPlan", "FrameClock", "make_plan", "as_fps", "frame_clock"]

MAX_FACTOR = 16  # more in-betweens than this per input frame is a mistake, not a job


def as_fps(fps, what: str = "fps") -> Fraction:
    """A frame rate as an exact Fraction (29.97 -> 30000/1001), or a KinetographError about the
    setting ``what`` (named ``{what}`` in the message, see ``KinetographError.worded``)."""
    if isinstance(fps, bool):
        raise KinetographError(f"{{{what}}} must be a number such as 24 or 29.97, got {fps!r}.", fields=(what,))
    try:
        return fps_as_fraction(fps)
    except KinetographError as error:
        raise KinetographError(str(error).replace("fps must", f"{{{what}}} must", 1), fields=(what,)) from None


@dataclass(frozen=True)
class Sample:
    """Output frame ``index`` is input frame ``pair`` (t == 0) or lies between input frames
    ``pair`` and ``pair + 1`` at ``t`` (0 < t < 1)."""

    index: int
    position: Fraction  # in input frames
    pair: int
    t: float


@dataclass(frozen=True)
class TimingPlan:
    src_fps: Fraction
    out_fps: Fraction
    step: Fraction            # input frames per output frame
    factor: int | None
    target_fps: Fraction | None
    slowmo: bool

    def frames_out(self, n_in: int) -> int:
        """Output frames for ``n_in`` input frames (positions 0 .. n_in-1 inclusive)."""
        if n_in < 1:
            return 0
        return self.frames_until(n_in - 1)

    def frames_until(self, last_position) -> int:
        """Output frames from position 0 to ``last_position`` (the last input frame's) inclusive."""
        return math.floor(Fraction(last_position) / self.step) + 1

    def sample(self, index: int) -> Sample:
        position = index * self.step
        pair = math.floor(position)
        return Sample(index, position, pair, float(position - pair))

    def samples_between(self, start: Fraction | int, stop: Fraction | int) -> list[Sample]:
        """Samples with start <= position < stop, in order."""
        first = math.ceil(Fraction(start) / self.step)
        last = math.ceil(Fraction(stop) / self.step)  # exclusive
        return [self.sample(j) for j in range(max(first, 0), last)]

    def timestamp(self, index: int) -> Fraction:
        """Presentation time of output frame ``index`` in seconds."""
        return Fraction(index) / self.out_fps

    def describe(self) -> dict:
        return {
            "src_fps": float(self.src_fps),
            "out_fps": float(self.out_fps),
            "factor": self.factor,
            "target_fps": None if self.target_fps is None else float(self.target_fps),
            "slowmo": self.slowmo,
            "step": f"{self.step.numerator}/{self.step.denominator}",
        }


def make_plan(src_fps, factor=None, target_fps=None, slowmo: bool = False) -> TimingPlan:
    """Validate the request and return the plan. Exactly one of ``factor`` / ``target_fps``."""
    src = as_fps(src_fps, "src_fps")
    if (factor is None) == (target_fps is None):
        raise KinetographError(
            "Give exactly one of {factor} (e.g. 2 for twice the frames) or {target_fps} (e.g. 60).",
            fields=("factor", "target_fps"))
    if factor is not None:
        if (isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor)
                or factor != int(factor)):
            raise KinetographError(f"{{factor}} must be a whole number from 2 to {MAX_FACTOR}, got {factor!r}.",
                                   fields=("factor",))
        factor = int(factor)
        if not 2 <= factor <= MAX_FACTOR:
            raise KinetographError(
                f"{{factor}} must be from 2 to {MAX_FACTOR} (2 doubles the frame rate), got {factor}.",
                fields=("factor",))
        step = Fraction(1, factor)
        out = src if slowmo else src * factor
        target = None
    else:
        target = as_fps(target_fps, "target_fps")
        step = src / target
        if step < Fraction(1, MAX_FACTOR):
            raise KinetographError(
                f"{{target_fps}} {float(target):g} is more than {MAX_FACTOR}× the source's {float(src):g} fps; "
                f"choose at most {float(src) * MAX_FACTOR:g} fps.", fields=("target_fps",))
        if slowmo and step >= 1:
            raise KinetographError(
                f"Slow motion needs {{target_fps}} above the source's {float(src):g} fps (it plays the extra "
                "frames at the source rate); raise {target_fps} or turn slow motion off.", fields=("target_fps",))
        out = src if slowmo else target
    return TimingPlan(src_fps=src, out_fps=out, step=step, factor=factor, target_fps=target, slowmo=slowmo)


# A frame further than this (in frames) from where a constant rate would put it makes the
# video variable-rate; closer is timestamp rounding.
_IRREGULAR_FRAMES = Fraction(1, 4)


@dataclass(frozen=True)
class FrameClock:
    """A video's typical frame rate and, for a variable-rate one, each frame's position (in
    frames of that rate); ``positions`` None: frame ``i`` is at ``i``."""

    fps: Fraction
    positions: tuple[Fraction, ...] | None


def _typical_rate(spacings: Sequence[Fraction]) -> Fraction:
    """The rate of the usual spacing between frames: the mean of the spacings within 25 % of
    the median (gaps left out; a 1 ms time base stamps 29.97 fps frames 33 and 34 ms apart),
    snapped to the nearest whole or NTSC rate within 1 % (phones stamp 30 fps give or take a tick)."""
    median = statistics.median(spacings)
    usual = [s for s in spacings if abs(s - median) <= median / 4]
    rate = len(usual) / sum(usual, Fraction(0))
    ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
    nearest = min((Fraction(round(rate)), ntsc), key=lambda standard: abs(rate - standard))
    if nearest > 0 and abs(rate - nearest) <= nearest / 100:
        return nearest
    return Fraction(rate).limit_denominator(1001)


def frame_clock(times: Sequence[Fraction]) -> FrameClock | None:
    """The clock of frames shown at ``times`` (seconds, from ``video_io.frame_times``): their
    typical rate (from the usual spacing) and, when they are not evenly spaced (a frame more
    than a quarter frame from ``i / rate``), every frame's position ``(time - first) × rate``;
    None with fewer than two distinct times. Positions always increase: frames stamped with
    one time are spread a hundredth of a frame apart."""
    origin = Fraction(times[0]) if times else Fraction(0)
    spacings = [Fraction(b) - Fraction(a) for a, b in zip(times, times[1:], strict=False) if b > a]
    if not spacings:
        return None
    rate = _typical_rate(spacings)
    positions = []
    for time in times:
        position = (Fraction(time) - origin) * rate
        if positions and position <= positions[-1]:
            position = positions[-1] + Fraction(1, 100)
        positions.append(position)
    if all(abs(position - i) <= _IRREGULAR_FRAMES for i, position in enumerate(positions)):
        return FrameClock(rate, None)
    return FrameClock(rate, tuple(positions))
