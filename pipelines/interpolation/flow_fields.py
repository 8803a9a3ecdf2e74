"""Array helpers shared by motion estimation (``motion.py``) and rendering (``render.py``):
pixel grids, sample points, the backward warp, the pull-push hole fill and flips."""
from __future__ import annotations

import cv2
import numpy as np

_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


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


def _warp(img: np.ndarray, flow: np.ndarray, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
    """Backward warp: out(x) = img(x + flow(x))."""
    gx, gy = _grid(*flow.shape[:2])
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], interpolation, borderMode=cv2.BORDER_REPLICATE)


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
