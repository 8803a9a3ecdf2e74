"""Fusing several renderings of one in-between frame into one picture.

Each motion estimate gives two renderings of the frame at time t: frame 0 warped forward and
frame 1 warped back. Where they agree the picture is certain and their weighted mean is kept
as it is. Where they disagree (non-linear motion, motion blur, an occlusion the flow got
wrong) the mean shows two half-strength copies of the detail: the fine detail there is
uncertain, and a sharp wrong guess costs more than a soft one. So the mean is split into
Laplacian bands and each band is shrunk by how much the renderings disagree in it, relative
to its own energy (spectral subtraction, as in Wiener denoising):

    band_k ← band_k · max(0, 1 − strength · var_k / energy_k)

on luma, the same change then added to R, G and B. var_k is the weighted variance of the
renderings' luma in band k, energy_k the mean's luma energy in band k, both averaged over a
window of about ``window`` full-size pixels. The coarsest level is kept as it is.

Between motion estimates (an ensemble) the mean also favours, per pixel, the estimate
whose two renderings match better: weight exp(-(cost - min cost) / temperature), cost =
box-filtered |frame-0 rendering - frame-1 rendering|.

Measured variants: ``bench/notes/interpolation.md``.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["fuse", "agreement_weights", "Workspace"]


class Workspace(threading.local):
    """Float32 work arrays that ``fuse`` reuses from call to call, one set per thread. Fresh
    arrays cost more than the arithmetic: a 720p fusion allocates about 200 MB of them, which
    the allocator hands back to the system and takes again, page by page (page faults), every
    frame. Reusing them: 55 → 28 ms per 720p frame, output bit-identical. The arrays stay
    allocated while the workspace lives (about 25 full-size float planes)."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        array = self.arrays.get(name)
        if array is None or array.shape != shape:
            array = self.arrays[name] = np.empty(shape, np.float32)
        return array


def _laplacian(image: np.ndarray, levels: int, workspace: Workspace, name: str) -> list[np.ndarray]:
    """Band-pass levels (finest first) and the low-pass residual last; the bands are
    ``workspace`` arrays named ``name`` + level."""
    bands = []
    current = image
    for k in range(levels):
        down = cv2.pyrDown(current)
        band = cv2.pyrUp(down, dst=workspace.get(f"{name}{k}", current.shape), dstsize=(current.shape[1], current.shape[0]))
        bands.append(np.subtract(current, band, out=band))
        current = down
    bands.append(current)
    return bands


def _collapse(bands: list[np.ndarray], workspace: Workspace) -> np.ndarray:
    image = bands[-1]
    for k in reversed(range(len(bands) - 1)):
        band = bands[k]
        up = cv2.pyrUp(image, dst=workspace.get(f"collapse{k}", band.shape), dstsize=(band.shape[1], band.shape[0]))
        image = np.add(up, band, out=up)
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and saturate to uint8: negatives to 0 first, since convertScaleAbs takes |x|
    (two OpenCV calls are several times faster than numpy's clip and cast)."""
    return cv2.convertScaleAbs(cv2.threshold(image, 0.0, 0.0, cv2.THRESH_TOZERO)[1])


def agreement_weights(pairs: Sequence[tuple[np.ndarray, np.ndarray]], temperature: float,
                      window: int = 9) -> list[np.ndarray]:
    """Per motion estimate (its two renderings), a weight map favouring, pixel by pixel, the
    estimate whose renderings agree best. One estimate: a map of ones."""
    if len(pairs) < 2 or temperature <= 0:
        return [np.ones(pairs[0][0].shape[:2], np.float32) for _ in pairs]
    costs = []
    for warped0, warped1 in pairs:
        diff = cv2.absdiff(warped0, warped1).astype(np.float32)
        cost = cv2.transform(diff, np.ones((1, 3), np.float32))  # sum over RGB
        costs.append(cv2.blur(cost, (window, window)))
    lowest = np.minimum.reduce(costs)
    return [np.exp((lowest - cost) * (1.0 / temperature)) for cost in costs]


def fuse(estimates: Sequence[np.ndarray], weights: Sequence[np.ndarray], strength: float = 0.5,
         levels: int = 3, window: int = 9, workspace: Workspace | None = None) -> np.ndarray:
    """One RGB uint8 frame from renderings of it (``estimates``, uint8 H×W×3) and their
    per-pixel weights (float32 H×W, any positive scale): the weighted mean, with each Laplacian
    band shrunk where the renderings disagree (see the module doc). ``strength`` 0 gives the
    plain weighted mean. A ``workspace`` kept between calls saves allocating the work arrays."""
    ws = workspace if workspace is not None else Workspace()
    height, width = estimates[0].shape[:2]
    plane, image = (height, width), (height, width, 3)
    # weighted mean: blendLinear chained over the estimates (its two weights need not sum to one)
    mean, other, total = ws.get("mean", image), ws.get("other", image), ws.get("total", plane)
    np.copyto(mean, estimates[0])
    np.copyto(total, weights[0])
    for estimate, weight in zip(estimates[1:], weights[1:], strict=True):
        np.copyto(other, estimate)
        cv2.blendLinear(mean, other, total, weight, dst=mean)
        np.add(total, weight, out=total)
    levels = min(levels, max(0, int(np.log2(max(1, min(height, width)))) - 2))
    if strength <= 0 or len(estimates) < 2 or levels < 1:
        return _to_uint8(mean)
    inverse = ws.get("inverse", plane)
    np.divide(1.0, np.maximum(total, 1e-12, out=inverse), out=inverse)
    shares = [np.multiply(weight, inverse, out=ws.get(f"share{i}", plane)) for i, weight in enumerate(weights)]
    mean_luma = cv2.cvtColor(mean, cv2.COLOR_RGB2GRAY, dst=ws.get("mean_luma", plane))
    deviations, luma = [], ws.get("luma", plane)
    for i, estimate in enumerate(estimates):
        np.copyto(luma, cv2.cvtColor(estimate, cv2.COLOR_RGB2GRAY))
        deviations.append(_laplacian(np.subtract(luma, mean_luma, out=luma), levels, ws, f"deviation{i}_"))
    luma_bands = _laplacian(mean_luma, levels, ws, "band")
    # The shrinkage is computed and applied on luma only, the same change added to R, G and B:
    # a third of the pyramid work of shrinking each colour's bands (1080p: 90 ms less per
    # frame), for 0.02 / 0.03 dB less.
    changes = []
    for k in range(levels):
        # the window halves with each level so that it covers the same area of the picture:
        # disagreement at an object's edge must not soften its whole inside at coarse levels
        size = max(1, (window >> k) | 1)
        band = luma_bands[k]
        variance, square = ws.get(f"variance{k}", band.shape), ws.get(f"square{k}", band.shape)
        variance.fill(0.0)
        for deviation, share in zip(deviations, shares, strict=True):
            np.add(variance, np.multiply(share, np.square(deviation[k], out=square), out=square), out=variance)
        shrink = cv2.blur(variance, (size, size), dst=ws.get(f"shrink{k}", band.shape))
        energy = cv2.blur(np.square(band, out=square), (size, size), dst=variance)
        np.multiply(shrink, strength, out=shrink)
        np.minimum(shrink, energy, out=shrink)
        np.divide(shrink, np.add(energy, 1e-6, out=energy), out=shrink)           # 1 - gain
        changes.append(np.multiply(np.negative(shrink, out=shrink), band, out=shrink))
        if k + 1 < levels:
            shares = [cv2.pyrDown(share) for share in shares]
    changes.append(np.zeros_like(luma_bands[-1]))
    change = _collapse(changes, ws)
    cv2.add(mean, cv2.merge((change, change, change), dst=other), dst=mean)
    return _to_uint8(mean)
