"""Rendering, once per t (steps 4-6 of ``flow.py``'s module doc): the flow at time t (forward
splatting, hole fill, sample validity), the warps of both frames and their blend weights,
the fusion of the renderings and the motion blur; on the CPU (OpenCV, ``render``) or with the
full-size warps on a torch device (``_render_torch``)."""
from __future__ import annotations

import cv2
import numpy as np

from . import fusion
from .flow_config import FlowConfig
from .flow_fields import _fill_holes, _flipped, _flipped_flow, _grid, _sample_points
from .motion import PairMotion

__all__ = ["flow_at", "render"]

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


def flow_at(motion: PairMotion, t: float, config: FlowConfig = FlowConfig()):  # noqa: B008 (frozen)
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
           config: FlowConfig = FlowConfig(), workspace: fusion.Workspace | None = None) -> np.ndarray:  # noqa: B008 (frozen)
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
