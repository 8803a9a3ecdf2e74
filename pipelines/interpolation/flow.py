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

Measured variants (kept and not kept): ``bench/notes/interpolation.md``.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..errors import KinetographError
from . import fusion

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


HOLE_FILLS = ("choose", "dominant", "pullpush")


@dataclass(frozen=True)
class FlowConfig:
    """Settings of the flow backend (defaults are the measured best trade-off)."""

    flow_max_side: int = 512            # motion is estimated at most at this size (longer side)
    coarse_preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST     # pass 1 (before the global hypotheses)
    dis_preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM      # pass 2, started from pass 1
    dis_finest_scale: int | None = 0    # pass 2's finest pyramid level (None: the preset's, 1 for MEDIUM)
    dis_refinement: int | None = 0      # pass 2's variational refinement iterations (None: the preset's, 5)
    global_candidates: int = 6          # phase-correlation motion hypotheses (0 disables)
    candidate_side: int = 256           # size (longer side) the phase correlation runs at
    candidate_min_px: float = 2.0       # ignore hypotheses smaller than this (flow-size px)
    fusion_window: int = 7              # box filter of the per-pixel matching cost
    fusion_bias: float = 2.0            # a hypothesis must beat DIS by this much (luma |diff|, 0..255)
    splat_sharpness: float = 1.0        # splat weight exp(-s * (fb_err + photo_err / 8))
    splat_depth: float = 0.1            # and times exp(d * |motion - dominant motion|): in front wins
    fb_relative: bool = True            # fb_err relative to the motion (Sundaram et al.), else px²
    hole_fill: str = "choose"           # wide splat holes: "dominant" motion, "pullpush" (smooth fill from
                                        # around), or "choose": per pixel, the one whose samples match
    hole_choice_window: int = 7         # box filter of that matching cost
    hole_choice_bias: float = 2.0       # the smooth fill must beat the dominant motion by this (0..255)
    hole_min_width: int = 3             # holes narrower than this are filled smoothly
    validity: float = 1.0               # a sample landing on a reliable pixel whose motion differs by more
    validity_gain: float = 4.0          # than validity + |u|/4 px is dropped (0 disables)
    warp_interpolation: int = cv2.INTER_CUBIC
    sharp_max_pixels: int = 600_000     # frames up to this size are warped with Lanczos4 instead
    border_extrapolation: bool = True   # flow of pixels that leave the frame: from their neighbours
    ensemble: tuple = ()                # more motion estimates, e.g. ((512, "v"),): (flow size, flip "v"/"h"/"")
    ensemble_temperature: float = 20.0  # per-pixel preference for the estimate whose renderings agree
    shrink: float = 0.5                 # Laplacian shrinkage where renderings disagree (0: plain blend)
    shrink_levels: int = 3
    shrink_window: int = 9
    motion_blur: float = 0.08           # where the warped frames disagree, average over t ± this (0: off)
    motion_blur_gate: float = 16.0      # ... fully at this disagreement (grey levels, 9x9 mean)
    device: str = "auto"                # "auto" (CUDA when present), "cpu" or a torch device such as "cuda:0"


# --------------------------------------------------------------------------------------
# input checks (shared by every backend and by the streaming interpolator)
# --------------------------------------------------------------------------------------


def check_frame(frame, what: str = "frame") -> np.ndarray:
    """``frame`` as a C-contiguous RGB uint8 H×W×3 array (float input in 0..1 is converted),
    or a KinetographError saying what is wrong with it."""
    if hasattr(frame, "detach") and hasattr(frame, "cpu"):  # a torch tensor (ComfyUI IMAGE)
        frame = frame.detach().cpu().numpy()
    if not isinstance(frame, np.ndarray):
        raise KinetographError(f"{what} must be an RGB image array (H×W×3), got {type(frame).__name__}.")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise KinetographError(f"{what} must be an RGB image of shape H×W×3, got shape {frame.shape}.")
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    if np.issubdtype(frame.dtype, np.floating):
        if not np.isfinite(frame).all():
            raise KinetographError(f"{what} contains NaN or infinite values; pass a valid image.")
        if frame.min() < -1e-3 or frame.max() > 1 + 1e-3:
            raise KinetographError(
                f"{what} is a float image outside 0..1 (min {frame.min():.3g}, max {frame.max():.3g}); "
                "pass uint8 0..255 or float 0..1."
            )
        return np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
    raise KinetographError(f"{what} must be uint8 (0..255) or float (0..1), got dtype {frame.dtype}.")


def check_pair(frame0, frame1) -> tuple[np.ndarray, np.ndarray]:
    a, b = check_frame(frame0, "frame0"), check_frame(frame1, "frame1")
    if a.shape != b.shape:
        raise KinetographError(
            f"frame0 is {a.shape[1]}x{a.shape[0]} but frame1 is {b.shape[1]}x{b.shape[0]}; "
            "both frames must have the same size (resize one of them)."
        )
    return a, b


def check_ts(ts) -> list[float]:
    try:
        values = [float(t) for t in ts]
    except (TypeError, ValueError):
        raise KinetographError(f"t must be numbers strictly between 0 and 1, got {ts!r}.") from None
    for t in values:
        if not 0.0 < t < 1.0:  # also rejects NaN
            raise KinetographError(
                f"t={t} is outside (0, 1); t is the position between frame0 (0) and frame1 (1), "
                "e.g. 0.5 for the middle frame."
            )
    return values


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------

_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
_LOCAL = threading.local()


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    key = (h, w)
    grid = _GRIDS.get(key)
    if grid is None:
        if len(_GRIDS) > 8:
            _GRIDS.clear()
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        grid = _GRIDS[key] = (gx, gy)
    return grid


def _sample_points(u: np.ndarray, step: float, gx: np.ndarray, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remap maps (x + step·u_x, y + step·u_y): where a frame ``step`` of the motion ``u`` away
    is sampled (-t for frame 0, 1-t for frame 1)."""
    return cv2.scaleAdd(u[..., 0], step, gx), cv2.scaleAdd(u[..., 1], step, gy)


def _dis(preset: int, shape: tuple[int, int], seeded: bool, finest_scale: int | None = None,
         refinement: int | None = None) -> cv2.DISOpticalFlow:
    """One DIS instance per thread, size, use, finest pyramid level and number of variational
    refinement iterations (None: the preset's). OpenCV 5.0 crashes (segfault) when an instance
    that was given an initial flow is later called on another frame size without one."""
    cache = getattr(_LOCAL, "dis", None)
    if cache is None:
        cache = _LOCAL.dis = {}
    key = (preset, shape, seeded, finest_scale, refinement)
    dis = cache.get(key)
    if dis is None:
        if len(cache) > 8:
            cache.clear()
        dis = cache[key] = cv2.DISOpticalFlow_create(preset)
        if finest_scale is not None:
            dis.setFinestScale(finest_scale)
        if refinement is not None:
            dis.setVariationalRefinementIterations(refinement)
    return dis


def _accurate_dis(config: FlowConfig, shape: tuple[int, int]) -> cv2.DISOpticalFlow:
    """Pass 2 (and the ensemble members): the accurate DIS, started from a given flow."""
    return _dis(config.dis_preset, shape, seeded=True, finest_scale=config.dis_finest_scale,
                refinement=config.dis_refinement)


def _warp(img: np.ndarray, flow: np.ndarray, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
    """Backward warp: out(x) = img(x + flow(x))."""
    gx, gy = _grid(*flow.shape[:2])
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)


def _phase_peaks(a: np.ndarray, b: np.ndarray, k: int, suppress: int = 3) -> list[tuple[float, float]]:
    """The ``k`` strongest translations d with b(x) ≈ a(x - d), sub-pixel (parabolic fit)."""
    h, w = a.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    fa = np.fft.rfft2((a - a.mean()) * window)
    fb = np.fft.rfft2((b - b.mean()) * window)
    cross = fb * np.conj(fa)
    cross /= np.abs(cross) + 1e-3 * np.abs(cross).max() + 1e-12
    surface = np.fft.fftshift(np.fft.irfft2(cross, s=(h, w)))
    search = surface.copy()
    peaks = []
    for _ in range(k):
        y, x = np.unravel_index(int(np.argmax(search)), search.shape)
        dx = dy = 0.0
        if 0 < x < w - 1:
            left, mid, right = surface[y, x - 1], surface[y, x], surface[y, x + 1]
            den = left - 2 * mid + right
            dx = 0.5 * (left - right) / den if den < 0 else 0.0
        if 0 < y < h - 1:
            up, mid, down = surface[y - 1, x], surface[y, x], surface[y + 1, x]
            den = up - 2 * mid + down
            dy = 0.5 * (up - down) / den if den < 0 else 0.0
        peaks.append((x - w // 2 + dx, y - h // 2 + dy))
        search[max(0, y - suppress):y + suppress + 1, max(0, x - suppress):x + suppress + 1] = -np.inf
    return peaks


def _match_cost(a: np.ndarray, b_warped: np.ndarray, window: int) -> np.ndarray:
    """Box-filtered colour difference |a - b_warped| (luma-weighted sum of RGB, 0..255)."""
    diff = cv2.cvtColor(cv2.absdiff(a, b_warped), cv2.COLOR_RGB2GRAY)
    return cv2.boxFilter(diff, cv2.CV_32F, (window, window))


def _adopt_global_hypotheses(a: np.ndarray, b: np.ndarray, flow: np.ndarray, hypotheses, window: int,
                             bias: float) -> np.ndarray:
    """Give each pixel of ``flow`` (a→b) the global hypothesis that matches clearly better
    (the motion-estimation step that ``FlowConfig.fusion_window`` / ``fusion_bias`` set; not
    the fusion of renderings, ``_fuse_renderings``)."""
    best_cost = _match_cost(a, _warp(b, flow), window)
    fused = flow.copy()
    h, w = flow.shape[:2]
    for dx, dy in hypotheses:
        shifted = cv2.warpAffine(b, np.float32([[1, 0, -dx], [0, 1, -dy]]), (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)  # b(x + d)
        cost = _match_cost(a, shifted, window)
        cost += bias
        better = cost < best_cost
        fused[better] = (dx, dy)
        np.copyto(best_cost, cost, where=better)
    return fused


def _splat_nearest(flow: np.ndarray, tt: float, weight: np.ndarray, out_num: np.ndarray, out_den: np.ndarray) -> None:
    """Forward-splat ``flow`` (carried by each pixel, moved by tt·flow) onto the nearest pixel,
    accumulating weight·flow and weight."""
    h, w = flow.shape[:2]
    gx, gy = _grid(h, w)
    tx = np.rint(gx + tt * flow[..., 0]).astype(np.int32)
    ty = np.rint(gy + tt * flow[..., 1]).astype(np.int32)
    inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    index = np.where(inside, ty * w + tx, h * w).ravel()  # outside -> one spill bin
    wt = weight.ravel()
    n = h * w + 1
    out_den += np.bincount(index, wt, n)[:-1].reshape(h, w)
    out_num[..., 0] += np.bincount(index, wt * flow[..., 0].ravel(), n)[:-1].reshape(h, w)
    out_num[..., 1] += np.bincount(index, wt * flow[..., 1].ravel(), n)[:-1].reshape(h, w)


def _extrapolate_outside(flow: np.ndarray, a: np.ndarray | None = None, b: np.ndarray | None = None,
                         coarse: int = 8, poor_match: float = 12.0) -> np.ndarray:
    """Pixels whose flow points outside the other frame cannot be matched (DIS extrapolates
    them, with a bias at coarse scales and as noise at full resolution); give them the flow of
    the matched pixels next to them instead (a smooth fill computed at 1/``coarse`` size: these
    are strips along the border). With the grey frames ``a`` and ``b``, a pixel whose flow
    points inside but matches poorly (box-filtered |a - b(x + flow)| over ``poor_match``) is
    treated the same where its matched neighbours' flow points outside: content entering the
    frame, which DIS at full resolution gives a noisy flow that happens to point inside."""
    h, w = flow.shape[:2]
    gx, gy = _grid(h, w)

    def lands_inside(field):  # 255 where x + field(x) lies in the frame
        return cv2.inRange(gx + field[..., 0], 0.0, w - 1.0) & cv2.inRange(gy + field[..., 1], 0.0, h - 1.0)

    inside = matched = lands_inside(flow)
    check_match = a is not None
    if check_match:
        mx, my = _sample_points(flow, 1.0, gx, gy)
        error = cv2.absdiff(a, cv2.remap(b, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        matched = inside & cv2.compare(cv2.blur(error, (5, 5)), poor_match, cv2.CMP_LE)
    n_matched = cv2.countNonZero(matched)
    if n_matched in (0, h * w):  # all matched: all inside, nothing to replace
        return flow
    weight = matched.astype(np.float32) * (1.0 / 255.0)
    size = (max(1, w // coarse), max(1, h // coarse))
    num = cv2.resize(flow * weight[..., None], size, interpolation=cv2.INTER_AREA)
    den = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    filled = cv2.resize(_fill_holes(num, den), (w, h), interpolation=cv2.INTER_LINEAR)
    replace = inside == 0
    if check_match:
        replace |= (matched == 0) & (lands_inside(filled) == 0)
    if not replace.any():
        return flow
    flow = flow.copy()
    flow[replace] = filled[replace]
    return flow


def _fill_holes(num: np.ndarray, den: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """num/den where den > 0; holes filled from coarser levels (pull-push)."""
    levels = []
    n, d = num, den
    while min(d.shape) > 2 and not (d > eps).all():
        levels.append((n, d))
        size = (max(1, d.shape[1] // 2), max(1, d.shape[0] // 2))
        n = cv2.resize(n, size, interpolation=cv2.INTER_AREA)
        d = cv2.resize(d, size, interpolation=cv2.INTER_AREA)
    value = n / np.maximum(d, eps)[..., None]
    for n, d in reversed(levels):
        up = cv2.resize(value, (d.shape[1], d.shape[0]), interpolation=cv2.INTER_LINEAR)
        value = np.where((d > eps)[..., None], n / np.maximum(d, eps)[..., None], up)
    return value.astype(np.float32)


_POOL: ThreadPoolExecutor | None = None


def _worker() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kinetograph-flow")
    return _POOL


def _one_way(ca: np.ndarray, cb: np.ndarray, ga: np.ndarray, gb: np.ndarray, hypotheses, config) -> np.ndarray:
    """Flow a→b: quick DIS, global hypotheses fused in where they match clearly better, then
    the accurate DIS started from that (keeps the large motion, refines the rest)."""
    shape = ga.shape
    flow = _dis(config.coarse_preset, shape, seeded=False).calc(ga, gb, None)
    if hypotheses:
        flow = _adopt_global_hypotheses(ca, cb, flow, hypotheses, config.fusion_window, config.fusion_bias)
    flow = _accurate_dis(config, shape).calc(ga, gb, flow)
    if config.border_extrapolation:
        flow = _extrapolate_outside(flow, ga, gb)
    return flow


# --------------------------------------------------------------------------------------
# motion estimation (once per pair) and synthesis (once per t)
# --------------------------------------------------------------------------------------


@dataclass
class PairMotion:
    """Motion between two frames at flow resolution (``scale`` = flow size / frame size)."""

    scale: float
    f01: np.ndarray          # h×w×2, flow-size pixels
    f10: np.ndarray
    weight0: np.ndarray      # h×w visibility score of frame 0's pixels (splat weight)
    weight1: np.ndarray
    hypotheses: list         # global motions offered to the flow (0→1, flow-size pixels)
    dominant: tuple = (0.0, 0.0)  # median 0→1 motion: what most of the frame (the background) does
    flip: str = ""           # "v" / "h": estimated on flipped frames (an ensemble member)
    accel0: np.ndarray | None = None  # h×w×2 acceleration of frame 0's pixels (``with_acceleration``)
    accel1: np.ndarray | None = None  # of frame 1's pixels (its motion measured towards frame 0)
    grey0: np.ndarray | None = None   # h×w float32 grey frames at flow size (in the flipped orientation
    grey1: np.ndarray | None = None   # for a member): the matching cost that decides how holes are filled


def _downscaled_pair(frame0: np.ndarray, frame1: np.ndarray, side: int):
    """(scale, frame0, frame1) with the longer side at most ``side`` (INTER_AREA)."""
    H, W = frame0.shape[:2]
    scale = min(1.0, side / max(H, W))
    if scale == 1.0:
        return scale, frame0, frame1
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    return (scale, cv2.resize(frame0, size, interpolation=cv2.INTER_AREA),
            cv2.resize(frame1, size, interpolation=cv2.INTER_AREA))


def estimate_motion(frame0: np.ndarray, frame1: np.ndarray, config: FlowConfig = FlowConfig()) -> PairMotion:
    """Bidirectional motion between two RGB uint8 frames of one size (see the module doc)."""
    scale, c0, c1 = _downscaled_pair(frame0, frame1, config.flow_max_side)
    h, w = c0.shape[:2]
    # OpenCV's DIS crashes on thin images (e.g. 16×256 with the FAST preset): pad to a safe shape
    pad_h, pad_w = max(0, 32 - h, -(-w // 4) - h), max(0, 32 - w, -(-h // 4) - w)
    if pad_h or pad_w:
        c0 = cv2.copyMakeBorder(c0, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        c1 = cv2.copyMakeBorder(c1, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
    g0 = cv2.cvtColor(c0, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(c1, cv2.COLOR_RGB2GRAY)
    # large motion: global translation hypotheses from phase correlation
    hypotheses = []
    if config.global_candidates > 0:
        ps = min(1.0, config.candidate_side / max(h, w))
        a = cv2.resize(g0, None, fx=ps, fy=ps, interpolation=cv2.INTER_AREA).astype(np.float32)
        b = cv2.resize(g1, None, fx=ps, fy=ps, interpolation=cv2.INTER_AREA).astype(np.float32)
        if min(a.shape) >= 8:
            hypotheses = [(dx / ps, dy / ps) for dx, dy in _phase_peaks(a, b, config.global_candidates)]
            hypotheses = [d for d in hypotheses if np.hypot(*d) >= config.candidate_min_px]
    # the two directions are independent until the consistency check: one runs on a worker thread
    backward = _worker().submit(_one_way, c1, c0, g1, g0, [(-x, -y) for x, y in hypotheses], config)
    f01 = _one_way(c0, c1, g0, g1, hypotheses, config)
    f10 = backward.result()
    if pad_h or pad_w:
        c0, c1, g0, g1 = (x[:h, :w] for x in (c0, c1, g0, g1))
        f01, f10 = np.ascontiguousarray(f01[:h, :w]), np.ascontiguousarray(f10[:h, :w])
    sub = f01[::4, ::4].reshape(-1, 2)
    dominant = (float(np.median(sub[:, 0])), float(np.median(sub[:, 1])))  # most of the frame: background
    weight0, weight1 = _visibility(f01, f10, g0, g1, config)
    return PairMotion(scale, f01, f10, weight0, weight1, hypotheses, dominant,
                      grey0=g0.astype(np.float32), grey1=g1.astype(np.float32))


def _visibility(f01: np.ndarray, f10: np.ndarray, g0: np.ndarray, g1: np.ndarray, config: FlowConfig):
    """Visibility score of each source pixel (the splat weight): forward-backward consistency
    and photometric match."""
    back01 = _warp(f10, f01)
    back10 = _warp(f01, f10)
    fb0 = (f01[..., 0] + back01[..., 0]) ** 2 + (f01[..., 1] + back01[..., 1]) ** 2
    fb1 = (f10[..., 0] + back10[..., 0]) ** 2 + (f10[..., 1] + back10[..., 1]) ** 2
    photo0 = cv2.absdiff(g0, _warp(g1, f01)).astype(np.float32)
    photo1 = cv2.absdiff(g1, _warp(g0, f10)).astype(np.float32)
    s = config.splat_sharpness
    if config.fb_relative:
        fb0 = fb0 / (0.01 * (f01[..., 0] ** 2 + f01[..., 1] ** 2 + back01[..., 0] ** 2 + back01[..., 1] ** 2) + 0.5)
        fb1 = fb1 / (0.01 * (f10[..., 0] ** 2 + f10[..., 1] ** 2 + back10[..., 0] ** 2 + back10[..., 1] ** 2) + 0.5)
    return np.exp(-s * (fb0 + photo0 / 8.0)), np.exp(-s * (fb1 + photo1 / 8.0))


_FLIP_CODES = {"v": 0, "h": 1}


def _flipped(image: np.ndarray, flip: str) -> np.ndarray:
    return cv2.flip(image, _FLIP_CODES[flip]) if flip else image


def _flipped_flow(flow: np.ndarray, flip: str) -> np.ndarray:
    """A flow field as seen in flipped frames (positions mirrored, one component negated)."""
    if not flip:
        return flow
    mirrored = cv2.flip(flow, _FLIP_CODES[flip])
    mirrored[..., 1 if flip == "v" else 0] *= -1.0
    return mirrored


def _member_motion(frame0: np.ndarray, frame1: np.ndarray, main: PairMotion, side: int, flip: str,
                   config: FlowConfig) -> PairMotion | None:
    """One more motion estimate for the ensemble: the accurate DIS pass alone, on frames resized
    to ``side`` and flipped, started from the main estimate's flow (so it keeps the large motion
    found there). It samples DIS's patch grid and pyramid differently, so its errors are partly
    independent of the main estimate's; ``fusion`` averages them out. None where the frames are
    too small or thin for DIS at that size."""
    scale, c0, c1 = _downscaled_pair(frame0, frame1, side)
    h, w = c0.shape[:2]
    if min(h, w) < 32 or max(h, w) > 4 * min(h, w):
        return None
    g0 = _flipped(cv2.cvtColor(c0, cv2.COLOR_RGB2GRAY), flip)
    g1 = _flipped(cv2.cvtColor(c1, cv2.COLOR_RGB2GRAY), flip)
    ratio = scale / main.scale
    seeds = []
    for flow in (main.f01, main.f10):
        seed = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) if flow.shape[:2] != (h, w) else flow.copy()
        seed *= ratio
        seeds.append(np.ascontiguousarray(_flipped_flow(seed, flip)))

    def refine(a, b, seed):
        flow = _accurate_dis(config, (h, w)).calc(a, b, seed)
        return _extrapolate_outside(flow, a, b) if config.border_extrapolation else flow

    backward = _worker().submit(refine, g1, g0, seeds[1])
    f01 = refine(g0, g1, seeds[0])
    f10 = backward.result()
    weight0, weight1 = _visibility(f01, f10, g0, g1, config)
    dx, dy = main.dominant[0] * ratio, main.dominant[1] * ratio
    dominant = (-dx, dy) if flip == "h" else (dx, -dy) if flip == "v" else (dx, dy)
    return PairMotion(scale, f01, f10, weight0, weight1, [], dominant, flip,
                      grey0=g0.astype(np.float32), grey1=g1.astype(np.float32))


def estimate_motions(frame0: np.ndarray, frame1: np.ndarray, config: FlowConfig = FlowConfig()) -> list[PairMotion]:
    """The main motion estimate and the ensemble members of ``config.ensemble``."""
    main = estimate_motion(frame0, frame1, config)
    motions = [main]
    for side, flip in config.ensemble:
        member = _member_motion(frame0, frame1, main, side, flip, config)
        if member is not None:
            motions.append(member)
    return motions


def _acceleration(flow_ahead: np.ndarray, flow_behind: np.ndarray, weight_ahead: np.ndarray,
                  weight_behind: np.ndarray, span: float, window: int) -> np.ndarray:
    """Per-pixel acceleration (flow-size px per span²) of a frame's pixels from their flow to
    the frame ahead (1 span away) and to the frame behind (``span`` spans away), for
    d(τ) = v·τ + a·τ²/2: a = 2·(behind + span·ahead) / (span·(1 + span)). Where either flow is
    unreliable the sum is noise, so it is averaged over a window weighted by both visibility
    scores, and faded out where little reliable flow is near."""
    accel = (flow_behind + span * flow_ahead) * (2.0 / (span * (1.0 + span)))
    weight = (weight_ahead * weight_behind).astype(np.float32)
    num = cv2.blur(accel * weight[..., None], (window, window))
    den = cv2.blur(weight, (window, window))
    return num * (np.minimum(4.0 * den, 1.0) / (den + 1e-3))[..., None]


def with_acceleration(motion: PairMotion, before: PairMotion | None, after: PairMotion | None,
                      span_before: float = 1.0, span_after: float = 1.0, window: int = 9) -> PairMotion:
    """``motion`` (frame 0 → frame 1) bent by the neighbouring pairs of a video: ``before`` is
    the motion of (previous frame, frame 0), ``after`` of (frame 1, next frame); the spans are
    their lengths in units of this pair's. Each frame's pixels then follow a parabola through
    three frames instead of a straight line (quadratic interpolation, Xu et al. 2019): a ball
    that slows down is drawn where it is at t, not halfway. Neighbours of another size or
    flow scale are ignored; with neither, ``motion`` is returned as it is."""
    def usable(other):
        return other is not None and other.f01.shape == motion.f01.shape and not other.flip and not motion.flip

    accel0 = accel1 = None
    if usable(before):  # frame 0's pixels: 1 span to frame 1, span_before back to the previous frame
        accel0 = _acceleration(motion.f01, before.f10, motion.weight0, before.weight1, span_before, window)
    if usable(after):   # frame 1's pixels, time reversed: 1 span to frame 0, span_after on to the next
        accel1 = _acceleration(motion.f10, after.f01, motion.weight1, after.weight0, span_after, window)
    if accel0 is None and accel1 is None:
        return motion
    return replace(motion, accel0=accel0, accel1=accel1)


def _bend(motion: PairMotion, u_small: np.ndarray, t: float):
    """Shifts (flow size) of frame 0's and frame 1's sample points for the motion's
    acceleration: a pixel of frame 0 reaches t·f01 - t(1-t)/2·a0 by time t, so what is at x
    comes from x - t·u + t(1-t)/2·a0 (a0 read where frame 0 is sampled); likewise for frame 1."""
    h, w = u_small.shape[:2]
    gx, gy = _grid(h, w)
    k = 0.5 * t * (1.0 - t)
    shifts = []
    for accel, step in ((motion.accel0, -t), (motion.accel1, 1.0 - t)):
        if accel is None:
            shifts.append(None)
            continue
        at = cv2.remap(accel, *_sample_points(u_small, step, gx, gy), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        shifts.append(at * k)
    return shifts


def _pair_cost(motion: PairMotion, u: np.ndarray, t: float, window: int) -> np.ndarray:
    """Box-filtered |frame 0 at x - t·u  -  frame 1 at x + (1-t)·u| (grey, flow size): how well
    the two samples that a time-t flow ``u`` takes agree."""
    h, w = u.shape[:2]
    gx, gy = _grid(h, w)
    sample0 = cv2.remap(motion.grey0, *_sample_points(u, -t, gx, gy), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    sample1 = cv2.remap(motion.grey1, *_sample_points(u, 1.0 - t, gx, gy), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    return cv2.boxFilter(cv2.absdiff(sample0, sample1), -1, (window, window))


def _as_image(values: np.ndarray, width: int = 1024) -> np.ndarray:
    """N values (N×... array) laid out as an image ``width`` wide, the last row padded with the
    last value: OpenCV's remap takes images under 32767 pixels on a side, not N×1 columns."""
    n = len(values)
    width = min(n, width)
    rows = -(-n // width)
    padded = np.concatenate([values, np.repeat(values[-1:], rows * width - n, axis=0)])
    return np.ascontiguousarray(padded.reshape(rows, width, *values.shape[1:]))


def _sample_validity(motion: PairMotion, u: np.ndarray, t: float, config: FlowConfig, at=None):
    """For each frame, 1 where the sample that the time-t flow ``u`` takes from it is valid, down
    to 0 where it lands on a reliable pixel that moves differently (another surface); None when
    ``config.validity`` is 0. Each pixel's value depends only on its own position and ``u``
    there, so ``at`` = (xs, ys) evaluates it at those positions alone (``u`` of their shape)."""
    if config.validity <= 0:
        return None
    gx, gy = at if at is not None else _grid(*u.shape[:2])
    thr = config.validity + 0.25 * cv2.magnitude(u[..., 0], u[..., 1])
    vis = []
    for k, flow, weight, sign in ((-t, motion.f01, motion.weight0, 1.0), (1.0 - t, motion.f10, motion.weight1, -1.0)):
        mx, my = _sample_points(u, k, gx, gy)
        there = cv2.remap(flow, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE) * sign
        reliable = cv2.remap(weight.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        d = cv2.magnitude(there[..., 0] - u[..., 0], there[..., 1] - u[..., 1])
        bad = np.minimum(config.validity_gain * reliable, 1.0) * np.clip((d - thr) / thr, 0.0, 1.0)
        vis.append(1.0 - bad)
    return vis


def _depth_weight(dx: np.ndarray, dy: np.ndarray, depth: float) -> np.ndarray:
    """exp(depth · |(dx, dy)|), the exponent capped at 20 so that weights stay finite."""
    return np.exp(np.minimum(depth * cv2.magnitude(dx, dy), 20.0))


def flow_at(motion: PairMotion, t: float, config: FlowConfig = FlowConfig()):
    """u(x) at flow size: the 0→1 motion of what is at x at time t (frame 0 is sampled at
    x - t·u, frame 1 at x + (1-t)·u), and the visibility of each frame's sample (h×w, 0..1)
    or None."""
    h, w = motion.f01.shape[:2]
    num = np.zeros((h, w, 2), np.float64)
    den = np.zeros((h, w), np.float64)
    w0, w1 = motion.weight0, motion.weight1
    if config.splat_depth > 0:
        # Where a pixel of each of two surfaces lands, the average of their motions belongs to
        # neither; the one moving unlike the background is taken to be in front (an object that
        # moves more than its own size hides background that both frames show)
        dx, dy = motion.dominant
        w0 = w0 * _depth_weight(motion.f01[..., 0] - dx, motion.f01[..., 1] - dy, config.splat_depth)
        w1 = w1 * _depth_weight(motion.f10[..., 0] + dx, motion.f10[..., 1] + dy, config.splat_depth)
    _splat_nearest(motion.f01, t, w0, num, den)
    _splat_nearest(-motion.f10, -(1.0 - t), w1, num, den)  # frame-1 pixels move back
    u = _fill_holes(num.astype(np.float32), den.astype(np.float32))  # holes filled smoothly (pull-push)
    if config.hole_fill != "pullpush":
        # Where no reliable pixel lands, x shows what one frame hides: mostly the background,
        # which moves with most of the frame (a smooth fill would smear the foreground's motion
        # in). But where the scene has depth, the local background moves otherwise: "choose"
        # keeps the smooth fill where its two samples match clearly better.
        hole = (den < 1e-3).astype(np.uint8)
        k = config.hole_min_width
        wide = cv2.erode(hole, np.ones((k, k), np.uint8)).astype(bool) if k > 1 else hole.astype(bool)
        if wide.any():
            if config.hole_fill == "choose" and motion.grey0 is not None:
                return _choose_hole_fill(motion, u, wide, t, config)
            u[wide] = motion.dominant
    return u, _sample_validity(motion, u, t, config)


def _choose_hole_fill(motion: PairMotion, smooth: np.ndarray, wide: np.ndarray, t: float, config: FlowConfig):
    """``flow_at`` for hole fill "choose": the ``wide`` holes of the smoothly filled time-t flow
    take the dominant motion, except where the smooth fill's two samples match clearly better
    and the dominant motion's samples are both valid. Returns (u, validity) like ``flow_at``."""
    dominant = smooth.copy()
    dominant[wide] = motion.dominant
    # In a true disocclusion one of the dominant motion's samples lands on the occluder and the
    # pair cannot match; there it stays (validity says so).
    smooth_cost = _pair_cost(motion, smooth, t, config.hole_choice_window) + config.hole_choice_bias
    smooth_better = smooth_cost < _pair_cost(motion, dominant, t, config.hole_choice_window)
    valid = _sample_validity(motion, dominant, t, config)
    if valid is not None:
        smooth_better &= np.minimum(valid[0], valid[1]) > 0.5
    # u is the dominant field except where the smooth fill is kept: only those pixels need their
    # validity evaluated again (saves a full pass, ~8 ms at 720p)
    ys, xs = np.nonzero(wide & smooth_better)
    u = dominant
    u[ys, xs] = kept_u = smooth[ys, xs]
    if valid is not None and len(ys):
        kept = _sample_validity(motion, _as_image(kept_u), t, config,
                                at=(_as_image(xs.astype(np.float32)), _as_image(ys.astype(np.float32))))
        for full, part in zip(valid, kept, strict=True):
            full[ys, xs] = part.reshape(-1)[:len(ys)]
    return u, valid


def _blend_weights(u_small: np.ndarray, t: float, scale: float, size: tuple[int, int], vis=None):
    """Per-frame blend weights (at flow size): (1-t) and t, times the visibility ``vis`` of
    each frame, dropped to 0 where the sample point lies outside that frame; None when that
    is the plain (1-t)/t everywhere."""
    h, w = u_small.shape[:2]
    gx, gy = _grid(h, w)
    W, H = size
    inv = 1.0 / scale
    weights = []
    outside = False
    for i, (k, base) in enumerate(((-t, 1.0 - t), (1.0 - t, t))):
        # sample position in full-size pixels (flow pixel centres map to (x + 0.5)/scale - 0.5)
        px = (gx + 0.5 + k * u_small[..., 0]) * inv - 0.5
        py = (gy + 0.5 + k * u_small[..., 1]) * inv - 0.5
        margin = np.minimum(np.minimum(px, W - 1 - px), np.minimum(py, H - 1 - py))
        weight = np.clip(margin + 1.0, 0.0, 1.0)
        if vis is not None:
            weight *= vis[i]
        outside |= bool((weight < 1.0).any())
        weights.append(base * weight + 1e-3 * base)  # tiny floor: both 0 -> plain blend
    return weights if outside else None


def _full_size_weights(blend, t: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    W, H = size
    if blend is None:
        return np.full((H, W), 1.0 - t, np.float32), np.full((H, W), t, np.float32)
    return tuple(cv2.resize(a, (W, H), interpolation=cv2.INTER_LINEAR) if a.shape != (H, W) else a for a in blend)


def _full_size_flow(u: np.ndarray, scale: float, size: tuple[int, int]) -> np.ndarray:
    if scale == 1.0:
        return u
    u = cv2.resize(u, size, interpolation=cv2.INTER_LINEAR)
    u *= 1.0 / scale
    return u


def _fields_at(motion: PairMotion, t: float, config: FlowConfig, size: tuple[int, int]):
    """One motion estimate at time t, in the frames' own orientation: the time-t flow (flow
    size), the per-frame blend weights (``_blend_weights``) and the acceleration shifts
    (``_bend``). A flipped member's fields are flipped back here, at flow size: cheaper than
    flipping the full-size frames and renderings."""
    u_small, vis = flow_at(motion, t, config)
    blend = _blend_weights(u_small, t, motion.scale, size, vis)
    shifts = _bend(motion, u_small, t)  # (None, None) for flipped members: they carry no acceleration
    if motion.flip:
        u_small = _flipped_flow(u_small, motion.flip)
        blend = blend and [_flipped(a, motion.flip) for a in blend]
    return u_small, blend, shifts


def _warps_cv(frame0: np.ndarray, frame1: np.ndarray, motion: PairMotion, t: float, config: FlowConfig,
              interpolation: int):
    """Frame 0 and frame 1 warped to time t along one motion estimate, their blend weights and
    the time-t flow (full size, in the frames' own orientation)."""
    H, W = frame0.shape[:2]
    u_small, blend, shifts = _fields_at(motion, t, config, (W, H))
    u = _full_size_flow(u_small, motion.scale, (W, H))
    gx, gy = _grid(H, W)
    maps = []
    for step, shift in ((-t, shifts[0]), (1.0 - t, shifts[1])):
        mx, my = _sample_points(u, step, gx, gy)
        if shift is not None:
            shift = _full_size_flow(shift, motion.scale, (W, H))
            mx += shift[..., 0]
            my += shift[..., 1]
        maps.append((mx, my))
    w0 = cv2.remap(frame0, *maps[0], interpolation, borderMode=cv2.BORDER_REPLICATE)
    w1 = cv2.remap(frame1, *maps[1], interpolation, borderMode=cv2.BORDER_REPLICATE)
    a0, a1 = _full_size_weights(blend, t, (W, H))
    return w0, w1, a0, a1, u


def _fuse_renderings(warps, config: FlowConfig, workspace: fusion.Workspace | None = None) -> np.ndarray:
    """One frame from each estimate's (warped 0, warped 1, weight 0, weight 1, time-t flow):
    ``fusion.fuse`` of all the warped frames, then blurred along the main estimate's motion
    where its two warped frames disagree (``_motion_blur``)."""
    estimates = [warped for w0, w1, *_ in warps for warped in (w0, w1)]
    weights = [weight for _, _, a0, a1, _ in warps for weight in (a0, a1)]
    if len(warps) > 1:
        agreement = fusion.agreement_weights([(w0, w1) for w0, w1, *_ in warps], config.ensemble_temperature)
        weights = [weight * agreement[i // 2] for i, weight in enumerate(weights)]
    frame = fusion.fuse(estimates, weights, config.shrink, config.shrink_levels, config.shrink_window, workspace)
    w0, w1, _, _, u = warps[0]
    return _motion_blur(frame, u, w0, w1, config)


def _motion_blur(frame: np.ndarray, u: np.ndarray, warped0: np.ndarray, warped1: np.ndarray,
                 config: FlowConfig) -> np.ndarray:
    """Where the two warped frames disagree, where along its path a thing is at time t is
    uncertain (the motion is not uniform: a ball slowing down, a swinging leg); the frame to
    expect is then the rendering averaged along the motion, over t - b, t and t + b
    (b = ``motion_blur``; the rendering shifted by ±b·u). It is mixed in in proportion to the
    disagreement (9×9 mean of |warped 0 - warped 1| luma, full at ``motion_blur_gate`` grey
    levels); where the two agree (a steady pan, a still background) the frame stays sharp."""
    if config.motion_blur <= 0:
        return frame
    disagreement = cv2.boxFilter(cv2.cvtColor(cv2.absdiff(warped0, warped1), cv2.COLOR_RGB2GRAY), cv2.CV_32F, (9, 9))
    gate = np.minimum(disagreement * (1.0 / config.motion_blur_gate), 1.0)
    H, W = frame.shape[:2]
    gx, gy = _grid(H, W)
    ahead, behind = (cv2.remap(frame, *_sample_points(u, step, gx, gy), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                     for step in (config.motion_blur, -config.motion_blur))
    averaged = cv2.addWeighted(cv2.addWeighted(ahead, 0.5, behind, 0.5, 0.0), 2.0 / 3.0, frame, 1.0 / 3.0, 0.0)
    return cv2.blendLinear(averaged, frame, gate, 1.0 - gate)


def render(frame0: np.ndarray, frame1: np.ndarray, motions, t: float,
           config: FlowConfig = FlowConfig(), workspace: fusion.Workspace | None = None) -> np.ndarray:
    """The frame at time t (CPU, OpenCV) from one motion estimate or a list of them; a
    ``workspace`` kept between calls saves the fusion's allocations."""
    motions = [motions] if isinstance(motions, PairMotion) else motions
    H, W = frame0.shape[:2]
    interpolation = cv2.INTER_LANCZOS4 if H * W <= config.sharp_max_pixels else config.warp_interpolation
    warps = [_warps_cv(frame0, frame1, m, t, config, interpolation) for m in motions]
    return _fuse_renderings(warps, config, workspace)


def _render_torch(frame0: np.ndarray, frame1: np.ndarray, motions, t: float, config: FlowConfig,
                  device, workspace: fusion.Workspace | None = None) -> np.ndarray:
    """``render`` with the full-size warps, which are most of the per-frame work at 1080p and
    above, on a torch device (bicubic ``grid_sample``); the fusion runs on the CPU."""
    import torch
    import torch.nn.functional as F

    motions = [motions] if isinstance(motions, PairMotion) else motions
    H, W = frame0.shape[:2]
    warps = []
    with torch.no_grad():
        frames = torch.from_numpy(np.stack([frame0, frame1])).to(device).permute(0, 3, 1, 2).float()
        ys = torch.arange(H, device=device, dtype=torch.float32).view(1, H, 1)
        xs = torch.arange(W, device=device, dtype=torch.float32).view(1, 1, W)
        for motion in motions:
            u_small, blend, shifts = _fields_at(motion, t, config, (W, H))

            def full_size(field, scale=motion.scale):
                field = torch.from_numpy(np.ascontiguousarray(field)).to(device).permute(2, 0, 1)[None]  # 1×2×h×w
                if scale != 1.0:
                    field = F.interpolate(field, size=(H, W), mode="bilinear", align_corners=False) / scale
                return field

            uu = full_size(u_small)
            grids = []
            for k, shift in ((-t, shifts[0]), (1.0 - t, shifts[1])):
                px, py = xs + k * uu[:, 0], ys + k * uu[:, 1]
                if shift is not None:
                    bent = full_size(shift)
                    px, py = px + bent[:, 0], py + bent[:, 1]
                gx = px * (2.0 / max(W - 1, 1)) - 1.0
                gy = py * (2.0 / max(H - 1, 1)) - 1.0
                grids.append(torch.stack([gx, gy], dim=-1))
            warped = F.grid_sample(frames, torch.cat(grids), mode="bicubic", padding_mode="border",
                                   align_corners=True).clamp_(0, 255).round_().to(torch.uint8)
            w0, w1 = warped.permute(0, 2, 3, 1).contiguous().cpu().numpy()
            # the main estimate's time-t flow, which the motion blur follows
            u = uu[0].permute(1, 2, 0).contiguous().cpu().numpy() if not warps and config.motion_blur > 0 else None
            warps.append((w0, w1, *_full_size_weights(blend, t, (W, H)), u))
    return _fuse_renderings(warps, config, workspace)


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
