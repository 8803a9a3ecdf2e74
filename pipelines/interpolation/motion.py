"""Motion estimation, once per frame pair (steps 1-3 of ``flow.py``'s module doc): quick DIS,
global phase-correlation hypotheses adopted where they match clearly better, the accurate
DIS from that field, the flow of pixels leaving the frame, the visibility scores, the
ensemble's members and the acceleration from a video's neighbouring pairs."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .flow_config import FlowConfig
from .flow_fields import _fill_holes, _flipped, _flipped_flow, _grid, _sample_points, _warp

__all__ = ["PairMotion", "estimate_motion", "estimate_motions", "with_acceleration"]

_LOCAL = threading.local()


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


def estimate_motion(frame0: np.ndarray, frame1: np.ndarray, config: FlowConfig = FlowConfig()) -> PairMotion:  # noqa: B008 (frozen)
    """Bidirectional motion between two RGB uint8 frames of one size (see ``flow.py``'s module doc)."""
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


def estimate_motions(frame0: np.ndarray, frame1: np.ndarray, config: FlowConfig = FlowConfig()) -> list[PairMotion]:  # noqa: B008 (frozen)
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
