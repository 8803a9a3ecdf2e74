"""The default, weight-free interpolation backend ("flow") and ``interpolate_pair``.

How a frame at time ``t`` between ``frame0`` (t=0) and ``frame1`` (t=1) is made:

1. Motion, once per pair, on frames downscaled so the longer side is at most
   ``flow_max_side`` (512): for each direction (0→1 and 1→0, the second on a worker thread)
   a quick DIS optical flow (FAST preset), then
2. large motion: DIS is coarse-to-fine and loses thin, fast objects whose motion exceeds their
   size (a cyclist moving 35 px/frame). Phase correlation of the whole frame (256 px) gives up
   to 6 global translations; each pixel takes one where it matches clearly better than the
   quick flow (box-filtered colour difference, +2 bias), and
3. the accurate DIS (MEDIUM, refined down to full flow resolution, no variational refinement)
   runs from that fused field: it keeps the large motion and puts the sub-pixel detail and
   the smoothness back. Flow that points outside the other frame (content leaving at a
   border, which DIS extrapolates), or that matches poorly where its neighbours' points
   outside, takes its neighbours'.
4. Flow at time t: both flow fields are forward-splatted to time t (each pixel travels t of its
   motion), weighted by a visibility score exp(-(fb + photo/8)) from the forward-backward
   consistency error (relative to the motion, Sundaram et al.) and the photometric error;
   where two surfaces land on one place, the one consistent in both frames wins, and of two
   consistent ones the one moving unlike the background (it is in front). Holes that
   nothing reliable reaches are what one frame hides: they take the dominant (background)
   motion, unless the smooth fill from around them matches clearly better in both frames
   while the dominant motion's samples land on no other surface (the local background moves
   otherwise, as in a scene with depth); narrow holes are filled smoothly.
5. Occlusion-aware blend: both frames are backward-warped at full size (bicubic, Lanczos4 up
   to 0.6 MP; BORDER_REPLICATE) and blended (1-t)/t, except that a frame's sample is dropped
   where it lands on a reliable pixel that moves differently (it shows another surface), or
   outside the frame (content entering at a border).
6. Fusion (``fusion.py``): where the two warped frames disagree, the blend's detail is
   uncertain; each Laplacian band of the blend is shrunk by the local disagreement relative
   to its energy, and the frame is averaged over t ± 0.08 along the motion in proportion to
   that disagreement (where along its path a thing is at t is uncertain; ``_motion_blur``).
   Optionally (``ensemble``) more motion estimates, on resized and flipped frames, add their
   own pair of warped frames to the fusion.
7. In a video (``interpolate_iter`` with ``previous`` / ``following``), the motion of the
   neighbouring pairs gives each pixel an acceleration, and the sample points follow a
   parabola through four frames instead of a straight line (``with_acceleration``).

Where the code is: steps 1-3 in ``motion.py``, 4-5 and the motion blur in ``render.py``, the
fusion in ``fusion.py``, the settings in ``flow_config.py`` (``FlowConfig``), the input checks
in ``flow_checks.py``; this module is the backend (``FlowBackend``) and ``interpolate_pair``.
Measured variants (kept and not kept): ``bench/notes/interpolation.md``.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace

import cv2
import numpy as np

from ..errors import KinetographError
from . import fusion
from .flow_checks import check_frame, check_pair, check_ts
from .flow_config import HOLE_FILLS, FlowConfig
from .motion import PairMotion, estimate_motion, estimate_motions, with_acceleration
from .render import _motion_blur as _motion_blur  # noqa: F401  (re-exported for the tests)
from .render import _render_torch, flow_at, render
from .render import _sample_validity as _sample_validity  # noqa: F401  (re-exported for the tests)

__all__ = [
    "FlowConfig",
    "FlowBackend",
    "QUALITY_SETTINGS",
    "PairMotion",
    "estimate_motion",
    "estimate_motions",
    "with_acceleration",
    "flow_at",
    "render",
    "interpolate_pair",
    "check_frame",
    "check_pair",
    "check_ts",
]

# Frames smaller than this on a side are cross-faded: optical flow needs some area.
MIN_FLOW_SIDE = 16


# --------------------------------------------------------------------------------------
# the backend
# --------------------------------------------------------------------------------------


def _resolve_device(device: str):
    """None for the OpenCV CPU path, else a torch device."""
    if device == "cpu":
        return None
    if device == "auto":
        # Importing torch costs seconds and ~300 MB; skip it where no NVIDIA driver is present.
        if "torch" not in sys.modules and not os.path.exists("/dev/nvidiactl"):
            return None
        try:
            import torch
        except ImportError:
            return None
        return torch.device("cuda") if torch.cuda.is_available() else None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise KinetographError(f"device {device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'.") from error
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KinetographError("device='cuda' was asked for but no CUDA GPU is available; use device='auto'.")
    return dev


def _fingerprint(frame: np.ndarray) -> int:
    return hash(frame[::31, ::29].tobytes())


def _crossfade(frame0: np.ndarray, frame1: np.ndarray, t: float) -> np.ndarray:
    return cv2.addWeighted(frame0, 1.0 - t, frame1, t, 0.0)


# Named settings for the front doors. "best" adds a second motion estimate to the fusion:
# +0.07 / +0.06 dB on the benchmark footage for about 2x the time per frame (bench/interpolation.py --quality best).
QUALITY_SETTINGS = {
    "standard": {},
    "best": {"ensemble": ((512, "v"),)},
}


class FlowBackend:
    """Weight-free motion-compensated interpolation (DIS flow + global hypotheses + splatting,
    fused renderings).

    ``interpolate(frame0, frame1, ts)`` estimates motion once and renders every ``t``.
    ``quality``: a name from ``QUALITY_SETTINGS``; other keyword arguments set single
    ``FlowConfig`` fields over it.
    """

    name = "flow"

    def __init__(self, config: FlowConfig | None = None, quality: str = "standard", **overrides):
        if quality not in QUALITY_SETTINGS:
            raise KinetographError(f"Unknown interpolation quality {quality!r}; use one of: "
                                   f"{', '.join(QUALITY_SETTINGS)}.")
        config = config or FlowConfig()
        overrides = {**QUALITY_SETTINGS[quality], **overrides}
        if overrides:
            try:
                config = replace(config, **overrides)
            except TypeError as error:
                raise KinetographError(f"Unknown flow backend option: {error}.") from None
        if config.hole_fill not in HOLE_FILLS:
            raise KinetographError(f"Unknown hole_fill {config.hole_fill!r}; use one of: {', '.join(HOLE_FILLS)}.")
        self.config = config
        self.quality = quality
        self._device = _resolve_device(config.device)
        self._motion_cache: list = []  # (frame0, frame1, fingerprints, motions) of the last pairs
        self._workspace = fusion.Workspace()  # the fusion's work arrays, reused frame after frame

    @property
    def device(self) -> str:
        return "cpu" if self._device is None else str(self._device)

    def describe(self) -> dict:
        """What to store with a result so that it can be made again."""
        return {"quality": self.quality, "device": self.device,
                "motion_estimates": 1 + len(self.config.ensemble)}

    def motion(self, frame0: np.ndarray, frame1: np.ndarray) -> list[PairMotion]:
        return estimate_motions(frame0, frame1, self.config)

    def interpolate(self, frame0, frame1, ts: Sequence[float]) -> list[np.ndarray]:
        return list(self.interpolate_iter(frame0, frame1, ts))

    # interpolate_iter takes a video's neighbouring frames (previous / following)
    accepts_context = True

    def interpolate_iter(self, frame0, frame1, ts: Sequence[float], previous=None, following=None,
                         span_before: float = 1.0, span_after: float = 1.0) -> Iterator[np.ndarray]:
        """Like ``interpolate`` but yields the frames one by one (motion is estimated once,
        on the first ``next``), so many in-betweens never sit in memory together.

        In a video, ``previous`` (the frame before ``frame0``) and ``following`` (the one after
        ``frame1``) bend the motion along each pixel's path through the four frames
        (``with_acceleration``); ``span_before`` / ``span_after`` are their distances in units
        of this pair's. Motion estimates are kept for the last few pairs, keyed by the frame
        objects, so a stream that passes the same arrays estimates each pair's motion once."""
        a, b = check_pair(frame0, frame1)
        ts = check_ts(ts)
        before = None if previous is None else check_frame(previous, "previous frame")
        after = None if following is None else check_frame(following, "following frame")
        context = (None if before is None or before.shape != a.shape else (before, a),
                   None if after is None or after.shape != a.shape else (b, after))
        return self._frames(a, b, ts, context, float(span_before), float(span_after))

    def _motions(self, a: np.ndarray, b: np.ndarray, remember: bool) -> list[PairMotion]:
        """``estimate_motions(a, b)``; with ``remember``, kept for the last three pairs of frame
        objects (a video's pairs serve as context twice). A sparse pixel sample guards against
        a caller that refills the same array with another frame."""
        if not remember:
            return estimate_motions(a, b, self.config)
        key = (_fingerprint(a), _fingerprint(b))
        for first, second, known, motions in self._motion_cache:
            if first is a and second is b and known == key:
                return motions
        motions = estimate_motions(a, b, self.config)
        self._motion_cache.append((a, b, key, motions))
        del self._motion_cache[:-3]
        return motions

    def _frames(self, a: np.ndarray, b: np.ndarray, ts: list[float], context=(None, None),
                span_before: float = 1.0, span_after: float = 1.0) -> Iterator[np.ndarray]:
        if not ts:
            return
        if min(a.shape[:2]) < MIN_FLOW_SIDE:
            for t in ts:
                yield _crossfade(a, b, t)
            return
        if np.array_equal(a, b):  # a repeated frame: nothing moves
            for _ in ts:
                yield a.copy()
            return
        remember = context != (None, None)
        motion = list(self._motions(a, b, remember))
        neighbours = [None if pair is None or np.array_equal(*pair) else self._motions(*pair, remember)[0]
                      for pair in context]
        if neighbours != [None, None]:
            motion[0] = with_acceleration(motion[0], neighbours[0], neighbours[1], span_before, span_after)
        for t in ts:
            if self._device is not None:
                yield _render_torch(a, b, motion, t, self.config, self._device, self._workspace)
            else:
                yield render(a, b, motion, t, self.config, self._workspace)


_DEFAULT: FlowBackend | None = None


def interpolate_pair(frame0, frame1, t: float) -> np.ndarray:
    """The frame at time ``t`` (0 < t < 1) between two RGB frames (uint8 H×W×3 in and out).

    Uses the default "flow" backend (CUDA for the full-size warps when present)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = FlowBackend()
    return _DEFAULT.interpolate(frame0, frame1, [t])[0]
