"""Input checks shared by every interpolation backend and by the streaming interpolator:
frames as C-contiguous RGB uint8 H×W×3 arrays, two frames of one size, times strictly
between 0 and 1. Each failure is a KinetographError that says what is wrong."""
from __future__ import annotations

import numpy as np

from ..errors import KinetographError
from ..video_io import float_frame_to_uint8

__all__ = ["check_frame", "check_pair", "check_ts"]


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
        return float_frame_to_uint8(frame)
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
