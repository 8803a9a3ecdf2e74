"""Seams and colour drift in long-video extension (pure numpy + OpenCV, no torch).

Long-video extension generates a clip segment by segment, each segment conditioned on the
last frames of what already exists. Two artefacts follow: every window drifts a little in
colour/brightness (the drift compounds over many windows), and the joins between windows
can show as a jump. This module has the small tools to fix and to measure both:

* ``anchor_colours(frames, reference, strength)`` – pull a new segment's colour statistics
  (Lab mean and std per channel) back to those of reference frames, one transform per segment.
* ``crossfade(tail, head)`` – blend the overlap of two segments (the same moments rendered
  twice) linearly from the old segment to the new one.
* ``seam_score(before, after)`` – how big the jump at a join is, relative to ordinary motion
  (1.0 ≈ invisible, ≥ 3 a visible cut).
* ``colour_drift(a, b)`` – CIE76 ΔE between the mean Lab colours of two frame runs.

Frames are RGB uint8 arrays shaped (T, H, W, 3). Lab here is OpenCV's float Lab (from float32
RGB in 0..1): L in 0..100, a and b roughly -127..127, D65 white, sRGB gamma – the same scale
as CIE Lab, so 1 ΔE is about one just-noticeable difference. OpenCV's float conversion is an
approximation: within ~0.5 ΔE of the exact formula (typically ~0.15), and an RGB→Lab→RGB round
trip can move a pixel by about one grey level – which is why ``strength=0`` skips it entirely.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import KinetographError

__all__ = ["anchor_colours", "crossfade", "seam_score", "colour_drift"]

# Frames converted to Lab per chunk, so a long 720p segment never needs a float copy of itself.
_CHUNK_PIXELS = 8_000_000
# A Lab channel std below this (in Lab units) is "flat": no meaningful contrast to rescale.
_FLAT_STD = 1e-3
# Seam-score floor for the typical within-run difference, in grey levels (0..255).
_MIN_MOTION = 0.5
_LAB_LO = np.array([0.0, -127.0, -127.0], dtype=np.float32)
_LAB_HI = np.array([100.0, 127.0, 127.0], dtype=np.float32)


def _check_frames(frames, what: str, allow_empty: bool = False) -> np.ndarray:
    """``frames`` as a C-contiguous uint8 (T, H, W, 3) array, or a KinetographError."""
    if not isinstance(frames, np.ndarray):
        raise KinetographError(f"{what} must be a numpy array of RGB frames (T×H×W×3), got {type(frames).__name__}.")
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[1] < 1 or frames.shape[2] < 1:
        raise KinetographError(f"{what} must be RGB frames shaped T×H×W×3, got shape {frames.shape}.")
    if frames.dtype != np.uint8:
        raise KinetographError(f"{what} must be uint8 (0..255), got dtype {frames.dtype}.")
    if frames.shape[0] < 1 and not allow_empty:
        raise KinetographError(f"{what} has no frames; pass at least one.")
    return np.ascontiguousarray(frames)


def _chunks(frames: np.ndarray):
    """Slices of whole frames, each at most ~_CHUNK_PIXELS pixels (at least one frame)."""
    per = max(1, _CHUNK_PIXELS // (frames.shape[1] * frames.shape[2]))
    for start in range(0, frames.shape[0], per):
        yield slice(start, min(start + per, frames.shape[0]))


def _to_lab(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB (t, H, W, 3) -> float32 Lab of the same shape (L 0..100)."""
    t, h, w, _ = frames.shape
    rgb = frames.reshape(t * h, w, 3).astype(np.float32) / np.float32(255.0)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(t, h, w, 3)


def _from_lab(lab: np.ndarray) -> np.ndarray:
    """float32 Lab (t, H, W, 3) -> uint8 RGB, out-of-gamut values clipped, rounded (clips ``lab`` in place)."""
    t, h, w, _ = lab.shape
    lab = np.clip(lab, _LAB_LO, _LAB_HI, out=lab if lab.dtype == np.float32 else None).astype(np.float32, copy=False)
    rgb = cv2.cvtColor(lab.reshape(t * h, w, 3), cv2.COLOR_LAB2RGB).reshape(t, h, w, 3)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    rgb *= np.float32(255.0)
    return np.rint(rgb, out=rgb).astype(np.uint8)


def _lab_stats(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel Lab mean and (population) std over every pixel of every frame, float64."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for sl in _chunks(frames):
        lab = _to_lab(frames[sl])
        n = lab.shape[0] * lab.shape[1] * lab.shape[2]
        mean, std = cv2.meanStdDev(lab.reshape(-1, lab.shape[2], 3))  # double accumulation, fast
        mean, std = mean.ravel(), std.ravel()
        total += mean * n
        total_sq += (np.square(std) + np.square(mean)) * n
        count += n
    mean = total / count
    var = np.maximum(total_sq / count - np.square(mean), 0.0)
    return mean, np.sqrt(var)


def anchor_colours(frames: np.ndarray, reference: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Match a segment's colour statistics to reference frames, to stop per-window drift.

    What: in Lab, every pixel of the segment is mapped ``(x - mean_seg) * std_ref / std_seg +
    mean_ref`` per channel (Reinhard-style transfer), where ``mean_ref``/``std_ref`` are taken once
    over all pixels of all ``reference`` frames and ``mean_seg``/``std_seg`` over all pixels of all
    ``frames``. The result is blended with the input by ``strength`` (done in Lab, i.e. the scale
    and offset are interpolated), clipped to the Lab range, converted back and rounded to uint8.

    Why one transform per segment: real brightness changes *within* a segment (a light turning
    on, a camera pan into shade) survive; only the segment's overall offset is removed, and the
    correction cannot flicker from frame to frame. The reference is typically the frames the
    segment was conditioned on (or the first segment of the video), so every window is pulled
    back to the same look instead of drifting further each time.

    Units: uint8 RGB in and out; ``strength`` in 0..1 (0 leaves the frames unchanged – a copy of
    the input, bit for bit – 1 matches the reference's mean and std fully; 0.5 removes about
    half of the drift). A channel whose std is ~0 in the segment or the reference (a flat frame,
    a fade to black) gets scale 1: only its mean is moved, never divided by zero or squashed flat.
    """
    frames = _check_frames(frames, "frames")
    reference = _check_frames(reference, "reference")
    strength = float(strength)
    if not np.isfinite(strength) or not 0.0 <= strength <= 1.0:
        raise KinetographError(f"strength must be between 0 and 1, got {strength}.")
    if strength == 0.0:
        return frames.copy()

    mean_ref, std_ref = _lab_stats(reference)
    mean_seg, std_seg = _lab_stats(frames)
    flat = (std_seg < _FLAT_STD) | (std_ref < _FLAT_STD)
    scale = np.where(flat, 1.0, std_ref / np.where(flat, 1.0, std_seg))
    # Blend the affine maps: x + s * (full(x) - x) = x * (1 + s*(scale-1)) + s*(mean_ref - scale*mean_seg).
    gain = (1.0 + strength * (scale - 1.0)).astype(np.float32)
    offset = (strength * (mean_ref - scale * mean_seg)).astype(np.float32)

    out = np.empty_like(frames)
    for sl in _chunks(frames):
        lab = _to_lab(frames[sl])
        lab *= gain
        lab += offset
        out[sl] = _from_lab(lab)
    return out


def crossfade(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Blend the overlap of two segments into one run of frames, hiding the join.

    What: ``tail`` is the previous segment's last ``n`` frames and ``head`` the new segment's first
    ``n`` frames, both depicting the same ``n`` moments. Frame ``i`` of the result is
    ``(1 - w_i) * tail[i] + w_i * head[i]`` with ``w_i = (i + 1) / (n + 1)``: the first frame is
    mostly the old segment, the last mostly the new one, and the weight steps evenly, so a frame
    just before the overlap (pure tail, w=0) and just after (pure head, w=1) continue the ramp.
    Computed in float, rounded to uint8.

    Why: regenerated frames of the same moment never match exactly; a linear hand-over spreads
    their difference over ``n`` frames instead of one visible jump.

    Units: uint8 RGB (n, H, W, 3) in and out, same shapes; ``n = 0`` gives an empty (0, H, W, 3)
    array.
    """
    tail = _check_frames(tail, "tail", allow_empty=True)
    head = _check_frames(head, "head", allow_empty=True)
    if tail.shape != head.shape:
        raise KinetographError(
            f"crossfade needs tail and head of the same shape (same frame count and size), "
            f"got {tail.shape} and {head.shape}."
        )
    n = tail.shape[0]
    out = np.empty_like(tail)
    for i in range(n):
        w = (i + 1) / (n + 1)
        mixed = (1.0 - w) * tail[i].astype(np.float64) + w * head[i].astype(np.float64)
        out[i] = np.rint(mixed).astype(np.uint8)
    return out


def _frame_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames, in grey levels (0..255)."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def seam_score(before: np.ndarray, after: np.ndarray) -> float:
    """How visible the join between two frame runs is, relative to their ordinary motion.

    What: the mean absolute difference between the last frame of ``before`` and the first of
    ``after`` (the step across the join), divided by the median of the consecutive-frame
    differences inside ``before`` and inside ``after`` (all pooled, the join excluded). The median
    is floored at 0.5 grey levels so a static shot does not divide by ~0.

    Why: a join is visible when its step is larger than the steps the viewer has just been
    seeing; normalising by the local motion makes the score comparable between a fast pan and a
    still shot. Use it to measure a crossfade/anchoring fix, or to flag bad windows.

    Units: a dimensionless ratio. ~1.0 is an invisible join (the step is a typical frame step);
    below 1 is smoother than the surrounding motion; ≥ 3 reads as a visible cut or pop.
    Needs at least two frames on one side (one within-run difference).
    """
    before = _check_frames(before, "before")
    after = _check_frames(after, "after")
    if before.shape[1:] != after.shape[1:]:
        raise KinetographError(
            f"before and after must have the same frame size, got {before.shape[1:3]} and {after.shape[1:3]}."
        )
    within = [_frame_diff(run[i], run[i + 1]) for run in (before, after) for i in range(run.shape[0] - 1)]
    if not within:
        raise KinetographError("seam_score needs at least two frames in before or after to measure ordinary motion.")
    join = _frame_diff(before[-1], after[0])
    return join / max(float(np.median(within)), _MIN_MOTION)


def colour_drift(frames_start: np.ndarray, frames_end: np.ndarray) -> float:
    """Colour drift between two frame runs, as CIE76 ΔE of their mean Lab colours.

    What: each run's mean Lab colour (the mean over every pixel of every frame, of the per-pixel
    Lab values) and the Euclidean distance between the two means.

    Why: long extension drifts in exposure and tint window by window; comparing, say, the first
    second with the last second of a video (or a segment with the frames it was conditioned on)
    gives one number to track that drift and to check ``anchor_colours``.

    Units: ΔE (CIE76, Lab units; L in 0..100). 0 for identical runs; ~1 is barely noticeable,
    ~2–3 noticeable side by side, > 5 a clearly different look. The runs may differ in frame count
    and size.
    """
    frames_start = _check_frames(frames_start, "frames_start")
    frames_end = _check_frames(frames_end, "frames_end")
    mean_a, _ = _lab_stats(frames_start)
    mean_b, _ = _lab_stats(frames_end)
    return float(np.sqrt(np.square(mean_a - mean_b).sum()))
