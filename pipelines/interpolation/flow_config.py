"""Settings of the "flow" backend (``FlowConfig``); what each step does is described in
``flow.py``'s module doc."""
from __future__ import annotations

from dataclasses import dataclass

import cv2

__all__ = ["FlowConfig", "HOLE_FILLS"]

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
