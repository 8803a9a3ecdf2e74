"""Frame interpolation: synthetic motion with known answers, timing arithmetic, streaming,
scene cuts, duplicated frames, files (audio, range, metadata), errors and cancellation."""
from __future__ import annotations

import math
import tracemalloc
import wave
from fractions import Fraction

import cv2
import numpy as np
import pytest
from video_helpers import FOOTAGE, write_variable_rate_video

from pipelines.errors import JobCancelled, KinetographError
from pipelines.interpolation import (
    FlowBackend,
    StreamInterpolator,
    available_backends,
    fusion,
    get_backend,
    interpolate_frames,
    interpolate_pair,
    interpolate_video,
    make_plan,
    register_backend,
)
from pipelines.interpolation import backends as backends_module
from pipelines.interpolation.flow import (
    FlowConfig,
    PairMotion,
    _motion_blur,
    _render_torch,
    _sample_validity,
    estimate_motion,
    estimate_motions,
    flow_at,
    render,
    with_acceleration,
)
from pipelines.interpolation.timing import frame_clock
from pipelines.progress import CancelToken
from pipelines.video_io import VideoWriter, probe_video, read_frames, read_metadata

# --------------------------------------------------------------------------------------
# synthetic scenes with an exact answer
# --------------------------------------------------------------------------------------


def texture(h: int, w: int, seed: int, cell: int = 6) -> np.ndarray:
    """Smooth random colour texture (band-limited, so sub-pixel resampling is accurate)."""
    rng = np.random.default_rng(seed)
    small = (rng.random((h // cell + 4, w // cell + 4, 3)) * 255).astype(np.float32)
    big = cv2.resize(small, ((w // cell + 4) * cell, (h // cell + 4) * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(big, 0, 255).astype(np.uint8)[:h, :w].copy()


H, W, SQ = 120, 160, 40
BACKGROUND = texture(H, W, 1)
SQUARE = texture(SQ, SQ, 2)


def square_scene(x: int, y: int, background: np.ndarray = BACKGROUND) -> np.ndarray:
    frame = background.copy()
    frame[y:y + SQ, x:x + SQ] = SQUARE
    return frame


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def moving_frames(n: int, h: int = 48, w: int = 64, step: int = 3, seed: int = 5, cell: int = 6) -> list[np.ndarray]:
    big = texture(h + 8, w + step * n + 8, seed, cell)
    return [np.ascontiguousarray(big[4:4 + h, step * i:step * i + w]) for i in range(n)]


def two_shots(n_a: int, n_b: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two shots of slow motion (a pan over soft shapes), the second in other colours."""
    a = moving_frames(n_a, step=1, seed=11, cell=16)
    b = [np.ascontiguousarray(255 - f[:, :, ::-1]) for f in moving_frames(n_b, step=1, seed=12, cell=16)]
    return a, b


# --------------------------------------------------------------------------------------
# interpolate_pair on known motion
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dx,dy", [(8, 4), (-6, 10)])
def test_textured_square_matches_the_analytic_midframe(dx, dy):
    x0, y0 = 50, 30
    f0, f1 = square_scene(x0, y0), square_scene(x0 + dx, y0 + dy)
    expected = square_scene(x0 + dx // 2, y0 + dy // 2)
    out = interpolate_pair(f0, f1, 0.5)
    assert out.dtype == np.uint8 and out.shape == f0.shape
    err = np.abs(out.astype(int) - expected).max(axis=2)
    # the square itself, away from its edges, lands where it must, sharp
    cx, cy = x0 + dx // 2, y0 + dy // 2
    assert err[cy + 4:cy + SQ - 4, cx + 4:cx + SQ - 4].mean() < 1.5
    # the background away from the square's path is untouched
    far = np.ones((H, W), bool)
    far[max(0, y0 - 14):y0 + SQ + abs(dy) + 14, max(0, x0 - 14):x0 + SQ + abs(dx) + 14] = False
    assert err[far].mean() < 1.0
    # overall far better than a cross-fade (which ghosts the square)
    fade = cv2.addWeighted(f0, 0.5, f1, 0.5, 0)
    assert psnr(out, expected) > psnr(fade, expected) + 6
    assert psnr(out, expected) > 27.5


def test_neighbouring_frames_bend_the_motion_of_a_braking_square():
    """x(τ) = 60 + 20τ - 8τ² at τ = -1, 0, 1, 2: at τ = 0.5 the square is at 68, not halfway (66).
    With the frames before and after the pair the interpolator draws it there."""
    positions = {-1: 32, 0: 60, 1: 72, 2: 68}
    frames = {tau: square_scene(x, 40) for tau, x in positions.items()}
    truth, halfway = square_scene(68, 40), square_scene(66, 40)
    backend = FlowBackend(device="cpu")
    pair_only = backend.interpolate(frames[0], frames[1], [0.5])[0]
    bent = list(backend.interpolate_iter(frames[0], frames[1], [0.5], previous=frames[-1], following=frames[2]))[0]
    assert psnr(bent, truth) > psnr(pair_only, truth) + 3
    assert psnr(bent, truth) > psnr(bent, halfway) + 1.5
    # the stream hands each pair its neighbours: the same picture
    out = list(interpolate_frames([frames[tau] for tau in (-1, 0, 1, 2)], 24, factor=2))
    assert len(out) == 7 and np.array_equal(out[3], bent)


def test_quarter_and_three_quarter_positions_share_one_motion_estimate():
    f0, f1 = square_scene(40, 40), square_scene(56, 40)  # 16 px to the right
    backend = FlowBackend(device="cpu")
    outs = backend.interpolate(f0, f1, [0.25, 0.5, 0.75])
    for t, out in zip((0.25, 0.5, 0.75), outs, strict=True):
        x = 40 + round(16 * t)
        expected = square_scene(x, 40)
        assert np.abs(out.astype(int) - expected)[44:76, x + 4:x + SQ - 4].mean() < 1.5
        assert np.array_equal(out, interpolate_pair(f0, f1, t))  # deterministic, same as one by one


def test_large_motion_is_found_and_the_uncovered_background_is_filled():
    """A square moving more than its own size (48 px) in a 160 px frame: coarse-to-fine flow
    alone loses it; the global-motion hypotheses find it; the strips it uncovers and covers
    come from the one frame that shows them."""
    f0, f1 = square_scene(20, 40), square_scene(68, 40)
    expected = square_scene(44, 40)
    out = interpolate_pair(f0, f1, 0.5)
    err = np.abs(out.astype(int) - expected).max(axis=2)
    assert err[46:74, 50:78].mean() < 4.0          # the square, in its middle position
    assert psnr(out, expected) > 23
    # the motion itself is sub-pixel exact: unfused and unblurred, the square's inside is sharp
    # (0.2); the default fusion and motion blur soften it a little (3.3), since the two
    # renderings disagree by a fraction of a pixel on this hard texture
    plain = FlowBackend(device="cpu", shrink=0.0, motion_blur=0.0).interpolate(f0, f1, [0.5])[0]
    assert np.abs(plain.astype(int) - expected).max(axis=2)[46:74, 50:78].mean() < 1.0
    assert psnr(out, expected) >= psnr(plain, expected)
    fade = cv2.addWeighted(f0, 0.5, f1, 0.5, 0)
    assert psnr(out, expected) > psnr(fade, expected) + 4


def _hole_motion(dominant=(0.0, 0.0), shift=-4, scale=1):
    """A pair whose local content moves ``shift`` px in x everywhere, but whose pixels in the
    middle block are unreliable (weight 0): at time t nothing lands there (a hole).
    ``scale`` multiplies the frame's and the hole's size."""
    h, w = 80 * scale, 120 * scale
    big = cv2.cvtColor(texture(h, w + 16, 41), cv2.COLOR_RGB2GRAY).astype(np.float32)
    g0 = np.ascontiguousarray(big[:, 8:8 + w])
    g1 = np.ascontiguousarray(big[:, 8 - shift:8 - shift + w])  # g1(x) = g0(x + shift)
    f01 = np.zeros((h, w, 2), np.float32)
    f01[..., 0] = shift
    f10 = -f01
    weight = np.ones((h, w), np.float32)
    weight[20 * scale:60 * scale, 40 * scale:80 * scale] = 0.0
    return PairMotion(1.0, f01, f10, weight, weight.copy(), [], dominant, grey0=g0, grey1=g1)


def test_a_hole_keeps_the_smooth_fill_where_the_dominant_motion_cannot_match():
    """Holes take the frame's dominant motion (the background) unless the smooth fill from
    around them matches clearly better: here the local content moves 4 px while the dominant
    motion says 0, and nothing reliable stands where the dominant motion samples."""
    motion = _hole_motion()
    hole = (slice(28, 52), slice(50, 70))
    u_dominant, _ = flow_at(motion, 0.5, FlowConfig(hole_fill="dominant"))
    assert np.abs(u_dominant[hole]).max() < 1e-6
    u, vis = flow_at(motion, 0.5, FlowConfig())  # "choose", the default
    assert np.abs(u[hole][..., 0] + 4.0).max() < 0.5 and np.abs(u[hole][..., 1]).max() < 0.5
    assert vis is not None and min(v[hole].min() for v in vis) > 0.99
    # the same hole where the dominant motion is right: it stays
    u_right, _ = flow_at(_hole_motion(dominant=(-4.0, 0.0)), 0.5, FlowConfig())
    assert np.abs(u_right[hole][..., 0] + 4.0).max() < 1e-6


def test_a_hole_wider_than_opencvs_remap_limit_keeps_the_smooth_fill():
    """Over 32767 pixels keep the smooth fill (OpenCV's remap refuses an image that many rows
    high): their validity is still evaluated, and equals a full evaluation."""
    motion = _hole_motion(scale=6)
    u, vis = flow_at(motion, 0.5, FlowConfig())
    hole = (slice(150, 330), slice(260, 460))
    assert np.abs(u[hole][..., 0] + 4.0).max() < 0.5
    assert (np.abs(u[..., 0] + 4.0) < 0.5).sum() > 40_000
    for part, whole in zip(vis, _sample_validity(motion, u, 0.5, FlowConfig()), strict=True):
        np.testing.assert_allclose(part, whole, rtol=0, atol=1e-6)


@pytest.mark.skipif(not (FOOTAGE / "vtest.avi").is_file(), reason="shared footage not present")
def test_chosen_hole_fill_reports_the_validity_of_the_field_it_returns():
    """flow_at re-evaluates validity only where it keeps the smooth fill; the result must equal
    a full evaluation on the field it returns (on a real pair where both fills are chosen)."""
    before, after = read_frames(FOOTAGE / "vtest.avi", start=352, stop=355)[::2]
    config = FlowConfig()
    motion = estimate_motion(before, after, config)
    u_dominant, _ = flow_at(motion, 0.5, FlowConfig(hole_fill="dominant"))
    u, vis = flow_at(motion, 0.5, config)
    kept_smooth = np.abs(u - u_dominant).max(axis=2) > 1e-3
    assert kept_smooth.sum() > 20
    full = _sample_validity(motion, u, 0.5, config)
    for part, whole in zip(vis, full, strict=True):
        np.testing.assert_allclose(part, whole, rtol=0, atol=1e-6)  # SIMD rounding only


@pytest.mark.skipif(not (FOOTAGE / "vtest.avi").is_file(), reason="shared footage not present")
def test_real_walker_behind_a_pole_is_not_cut_into_blocks():
    """vtest.avi frames 352 / 354 (a man walks behind a pole): filling the holes beside him with
    the dominant (still) motion cut him into blocks; the chosen fill gives frame 353 back
    better (measured 31.2 -> 31.8 dB when this was written)."""
    before, truth, after = read_frames(FOOTAGE / "vtest.avi", start=352, stop=355)
    # the holes are widest with the coarser flow this test was written with (640 px, DIS
    # stopping at half resolution): there the fill decides most
    coarse = {"flow_max_side": 640, "dis_finest_scale": None}
    chosen = FlowBackend(device="cpu", **coarse).interpolate(before, after, [0.5])[0]
    dominant = FlowBackend(device="cpu", hole_fill="dominant", **coarse).interpolate(before, after, [0.5])[0]
    assert psnr(chosen, truth) > psnr(dominant, truth) + 0.3
    # the default flow leaves narrower holes; the chosen fill still does better (31.96 vs 31.86)
    default = FlowBackend(device="cpu").interpolate(before, after, [0.5])[0]
    assert psnr(default, truth) > psnr(FlowBackend(device="cpu", hole_fill="dominant").interpolate(before, after, [0.5])[0], truth)
    assert psnr(default, truth) > 31.8


def test_whole_frame_pan_with_content_entering_at_the_border():
    big = texture(H + 40, W + 40, 3)
    f0, f1 = big[10:10 + H, 6:6 + W], big[16:16 + H, 18:18 + W]
    expected = big[13:13 + H, 12:12 + W]
    out = interpolate_pair(f0, f1, 0.5)
    err = np.abs(out.astype(int) - expected)
    assert err.mean() < 1.0
    # entering on the right: taken from frame 1 only, not smeared (without the border handling
    # 11.8; measured 4.0: the strip's flow is 0.3 px off, from the few weak splats that reach it)
    assert err[:, -6:].mean() < 4.5
    assert err[-3:, :].mean() < 4.5


def test_flow_of_content_entering_at_the_border_is_taken_from_its_neighbours():
    """Frame 1's right strip shows what frame 0 does not: DIS at full resolution gives it a
    noisy flow (-8 px instead of +12) that points inside, so the check for flow pointing
    outside missed it; its poor match gives it away."""
    big = texture(H + 40, W + 40, 3)
    f0, f1 = big[10:10 + H, 6:6 + W], big[16:16 + H, 18:18 + W]
    motion = estimate_motion(f0, f1, FlowConfig(dis_finest_scale=0))
    # mean error in the strip: 7.1 px when only flow pointing outside was replaced, now 2.7
    # (where the noisy flow happens to match, it stays)
    assert np.abs(motion.f10[8:-8, -12:] - (12, 6)).max(axis=2).mean() < 3.5


def test_identical_frames_return_the_frame_and_float_input_is_accepted():
    f = texture(40, 50, 7)
    assert np.array_equal(interpolate_pair(f, f, 0.3), f)
    out = interpolate_pair(f.astype(np.float32) / 255.0, f.astype(np.float32) / 255.0, 0.5)
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - f).max() <= 1


def test_tiny_frames_are_cross_faded():
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 200, np.uint8)
    assert np.all(interpolate_pair(a, b, 0.25) == 50)


@pytest.mark.parametrize("h,w", [(16, 128), (24, 400), (21, 1000), (1000, 21), (17, 31)])
def test_thin_and_odd_frames_work(h, w):
    """OpenCV's DIS crashes (segfault) on some thin shapes; the backend pads around that."""
    big = texture(h + 4, w + 4, 4)
    f0, f1 = big[:h, :w], big[2:2 + h, 2:2 + w]
    out = interpolate_pair(f0, f1, 0.5)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("t", [0, 1, -0.1, 1.5, float("nan"), "half"])
def test_t_outside_the_open_interval_is_refused(t):
    f = texture(32, 32, 1)
    with pytest.raises(KinetographError, match="t"):
        interpolate_pair(f, f, t)


@pytest.mark.parametrize(
    "a,b,match",
    [
        (np.zeros((32, 32, 3), np.uint8), np.zeros((32, 40, 3), np.uint8), "same size"),
        (np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8), "H×W×3"),
        (np.zeros((32, 32, 3), np.int16), np.zeros((32, 32, 3), np.int16), "dtype"),
        (np.full((32, 32, 3), 2.0), np.full((32, 32, 3), 2.0), "0..1"),
        ("frame.png", "frame.png", "array"),
    ],
)
def test_bad_frames_are_refused_with_a_clear_message(a, b, match):
    with pytest.raises(KinetographError, match=match):
        interpolate_pair(a, b, 0.5)


def test_torch_render_path_matches_the_opencv_path():
    """The GPU path (torch grid_sample) is exercised on the CPU: same picture as OpenCV's."""
    torch = pytest.importorskip("torch")
    f0, f1 = square_scene(40, 40), square_scene(52, 46)
    motion = estimate_motion(f0, f1)
    backend = FlowBackend(device="cpu", sharp_max_pixels=0)  # bicubic in both
    a = render(f0, f1, motion, 0.5, backend.config)
    b = _render_torch(f0, f1, motion, 0.5, backend.config, torch.device("cpu"))
    diff = np.abs(a.astype(int) - b)
    assert b.dtype == np.uint8 and b.shape == a.shape
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 8


def test_torch_render_path_matches_the_opencv_path_with_acceleration():
    torch = pytest.importorskip("torch")
    frames = [square_scene(x, 40) for x in (32, 60, 72, 68)]
    motion = with_acceleration(estimate_motion(frames[1], frames[2]), estimate_motion(frames[0], frames[1]),
                               estimate_motion(frames[2], frames[3]))
    assert motion.accel0 is not None and motion.accel1 is not None
    config = FlowBackend(device="cpu", sharp_max_pixels=0).config
    a = render(frames[1], frames[2], motion, 0.5, config)
    b = _render_torch(frames[1], frames[2], motion, 0.5, config, torch.device("cpu"))
    diff = np.abs(a.astype(int) - b)
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 8
    assert not np.array_equal(a, render(frames[1], frames[2], estimate_motion(frames[1], frames[2]), 0.5, config))


def test_torch_render_path_matches_the_opencv_path_with_an_ensemble():
    torch = pytest.importorskip("torch")
    f0, f1 = square_scene(40, 40), square_scene(52, 46)
    config = FlowBackend(device="cpu", sharp_max_pixels=0, ensemble=((128, "v"), (96, "h"))).config
    motions = estimate_motions(f0, f1, config)
    assert [m.flip for m in motions] == ["", "v", "h"]
    a = render(f0, f1, motions, 0.5, config)
    b = _render_torch(f0, f1, motions, 0.5, config, torch.device("cpu"))
    diff = np.abs(a.astype(int) - b)
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 8


def test_ensemble_members_see_the_same_motion_through_their_flip():
    """A member estimated on flipped, resized frames, once flipped back and rescaled, agrees
    with the main estimate on a whole-frame pan (dx=-6, dy=+4)."""
    big = texture(H + 40, W + 40, 7)
    f0, f1 = big[20:20 + H, 10:10 + W], big[16:16 + H, 16:16 + W]
    config = FlowConfig(ensemble=((120, "v"), (120, "h")))
    main, *members = estimate_motions(f0, f1, config)
    inner = np.s_[10:-10, 10:-10]
    assert np.allclose(np.median(main.f01[inner].reshape(-1, 2), axis=0), (-6, 4), atol=0.2)
    for member in members:
        seen = np.median(member.f01[inner].reshape(-1, 2), axis=0) / member.scale
        seen[1 if member.flip == "v" else 0] *= -1
        assert np.allclose(seen, (-6, 4), atol=0.3), member.flip
    out = FlowBackend(device="cpu", ensemble=((120, "v"),)).interpolate(f0, f1, [0.5])[0]
    assert np.abs(out.astype(int) - big[18:18 + H, 13:13 + W])[8:-8, 8:-8].mean() < 1.5


def test_fusion_keeps_agreement_and_shrinks_only_disagreement():
    rng = np.random.default_rng(0)
    sharp = texture(64, 96, 4, cell=3)
    ones = np.ones((64, 96), np.float32)
    # identical renderings: returned unchanged, whatever the weights
    assert np.array_equal(fusion.fuse([sharp, sharp], [ones, 3 * ones]), sharp)
    # weights: an estimate with (almost) no weight does not show
    other = rng.integers(0, 256, sharp.shape, dtype=np.uint8)
    assert np.abs(fusion.fuse([sharp, other], [ones, 1e-6 * ones]).astype(int) - sharp).max() <= 1
    # strength 0: the plain weighted mean
    mean = np.clip(np.rint(0.75 * sharp + 0.25 * other.astype(np.float32)), 0, 255)
    plain = fusion.fuse([sharp, other], [3 * ones, ones], strength=0.0)
    assert np.abs(plain.astype(int) - mean).max() <= 1
    # two renderings of the texture shifted 2 px apart on the right half only: detail (luma,
    # which the fusion shrinks) is softened there, the left half is untouched
    shifted = sharp.copy()
    shifted[:, 48:] = np.roll(sharp, 2, axis=1)[:, 48:]
    fused = fusion.fuse([sharp, shifted], [ones, ones])
    mean = fusion.fuse([sharp, shifted], [ones, ones], strength=0.0)
    assert np.abs(fused[:, :40].astype(int) - sharp[:, :40]).max() <= 1

    def detail(x):
        x = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(np.mean((x - cv2.GaussianBlur(x, (0, 0), 1.5)) ** 2))

    assert detail(fused[8:-8, 56:-8]) < 0.8 * detail(mean[8:-8, 56:-8])
    assert abs(float(fused[:, 56:].mean()) - float(mean[:, 56:].mean())) < 1.0  # brightness kept


def test_motion_blur_only_where_the_warped_frames_disagree_and_only_along_the_motion():
    frame = texture(48, 64, 5, cell=2)
    u = np.zeros((48, 64, 2), np.float32)
    u[..., 0] = 25.0                       # horizontal motion: the blur spans ±2 px along x
    config = FlowConfig(motion_blur=0.08, motion_blur_gate=16.0)
    agree = _motion_blur(frame, u, frame, frame, config)
    assert np.array_equal(agree, frame)    # the renderings agree: the frame stays sharp
    other = frame.copy()
    other[:, 32:] = np.roll(frame, 3, axis=1)[:, 32:]   # they disagree on the right half
    out = _motion_blur(frame, u, frame, other, config).astype(int)
    assert np.abs(out[:, :20] - frame[:, :20]).max() <= 1
    expected = (np.roll(frame, 2, axis=1).astype(int) + np.roll(frame, -2, axis=1) + frame) / 3
    assert np.abs(out[:, 44:60] - expected[:, 44:60]).mean() < 1.0  # averaged along x only
    flat_rows = np.repeat(frame[:1], 48, axis=0)          # constant along y: a vertical blur
    u[..., 0], u[..., 1] = 0.0, 25.0                      # would change nothing, a horizontal one would
    assert np.array_equal(_motion_blur(flat_rows, u, flat_rows, np.roll(flat_rows, 3, axis=1), config), flat_rows)
    assert np.array_equal(_motion_blur(frame, u, frame, other, FlowConfig(motion_blur=0.0)), frame)


def test_fusion_workspace_reused_across_calls_and_sizes_gives_the_same_frames():
    """The workspace's arrays are reused: results equal fresh ones, a returned frame is not
    overwritten by the next call, and a new frame size or estimate count gets new arrays."""
    rng = np.random.default_rng(1)
    workspace = fusion.Workspace()
    calls = []
    for h, w, n in ((64, 96, 2), (64, 96, 2), (40, 72, 4), (64, 96, 2)):
        estimates = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
        weights = [rng.uniform(0.1, 1.0, (h, w)).astype(np.float32) for _ in range(n)]
        out = fusion.fuse(estimates, weights, workspace=workspace)
        calls.append((out.copy(), out, estimates, weights))
    for kept, returned, estimates, weights in calls:
        assert np.array_equal(returned, kept)
        assert np.array_equal(kept, fusion.fuse(estimates, weights))
    assert all(not np.shares_memory(calls[-1][1], a) for a in workspace.arrays.values())


def test_quality_names_choose_the_ensemble_and_unknown_names_are_refused():
    assert FlowBackend(device="cpu").config.ensemble == ()
    best = FlowBackend(device="cpu", quality="best")
    assert best.config.ensemble and best.describe()["motion_estimates"] == 2
    assert FlowBackend(device="cpu", quality="best", ensemble=()).config.ensemble == ()  # fields win
    with pytest.raises(KinetographError, match="standard, best"):
        FlowBackend(quality="ultra")
    with pytest.raises(KinetographError, match="choose, dominant, pullpush"):
        FlowBackend(hole_fill="nearest")


def test_agreement_weights_prefer_the_estimate_whose_renderings_match():
    a = texture(32, 32, 1)
    b = np.roll(a, 3, axis=1)
    good, bad = fusion.agreement_weights([(a, a), (a, b)], temperature=20.0)
    assert np.allclose(good, 1.0)
    assert bad[8:-8, 8:-8].max() < 0.05
    (single,) = fusion.agreement_weights([(a, b)], temperature=20.0)
    assert np.allclose(single, 1.0)


# --------------------------------------------------------------------------------------
# timing arithmetic
# --------------------------------------------------------------------------------------


def test_factor_plan_counts_and_positions():
    plan = make_plan(24, factor=2)
    assert plan.out_fps == 48 and plan.frames_out(10) == 19
    assert [(s.pair, s.t) for s in plan.samples_between(0, 2)] == [(0, 0.0), (0, 0.5), (1, 0.0), (1, 0.5)]
    plan4 = make_plan(25, factor=4)
    assert plan4.out_fps == 100 and plan4.frames_out(3) == 9
    assert [s.t for s in plan4.samples_between(1, 2)] == [0.0, 0.25, 0.5, 0.75]


def test_ntsc_film_to_60_is_exact():
    plan = make_plan(23.976, target_fps=60)
    assert plan.src_fps == Fraction(24000, 1001) and plan.out_fps == 60
    assert plan.step == Fraction(400, 1001)
    assert plan.frames_out(1002) == 2506          # floor(1001 · 1001/400) + 1
    for j in range(0, 2506, 97):
        sample = plan.sample(j)
        assert sample.position / plan.src_fps == plan.timestamp(j) == Fraction(j, 60)  # no drift
        assert sample.pair == math.floor(sample.position) and 0 <= sample.t < 1


def test_24_to_60_pattern_and_counts():
    plan = make_plan(24, target_fps=60)
    samples = plan.samples_between(0, 2)
    assert [s.pair for s in samples] == [0, 0, 0, 1, 1]
    assert [round(s.t, 6) for s in samples] == [0.0, 0.4, 0.8, 0.2, 0.6]
    assert plan.frames_out(11) == 26


def test_slow_motion_keeps_the_fps_and_multiplies_the_frames():
    plan = make_plan(30, factor=4, slowmo=True)
    assert plan.out_fps == 30 and plan.frames_out(5) == 17
    plan = make_plan(30, target_fps=120, slowmo=True)
    assert plan.out_fps == 30 and plan.step == Fraction(1, 4)


def test_frame_clock_places_frames_by_their_timestamps():
    # a 1 ms time base stamps 29.97 fps frames 33 and 34 ms apart: that is still a constant rate
    ntsc = frame_clock([Fraction(round(i * 1001 / 30), 1000) for i in range(3000)])
    assert ntsc.fps == Fraction(30000, 1001) and ntsc.positions is None
    # a phone holds its first frame for 0.18 s, then records at 30 fps
    phone = frame_clock([Fraction(0)] + [Fraction(18, 100) + Fraction(i, 30) for i in range(40)])
    assert phone.fps == 30 and phone.positions[1] == Fraction(54, 10) and phone.positions[-1] == Fraction(54, 10) + 39
    # frames stamped with one time still move forward
    same = frame_clock([Fraction(k, 10) for k in (0, 1, 1, 5, 6)])
    assert same.fps == 10 and all(b > a for a, b in zip(same.positions, same.positions[1:], strict=False))
    assert frame_clock([Fraction(0)]) is None and frame_clock([Fraction(0), Fraction(0)]) is None


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(src_fps=24, factor=1), "factor"),
        (dict(src_fps=24, factor=17), "factor"),
        (dict(src_fps=24, factor=2.5), "factor"),
        (dict(src_fps=24, factor=True), "factor"),
        (dict(src_fps=24, target_fps=0), "target_fps"),
        (dict(src_fps=24, target_fps=-30), "target_fps"),
        (dict(src_fps=24, target_fps=float("nan")), "target_fps"),
        (dict(src_fps=24, target_fps=1000), "16"),
        (dict(src_fps=0, factor=2), "src_fps must be from"),
        (dict(src_fps=24), "exactly one"),
        (dict(src_fps=24, factor=2, target_fps=60), "exactly one"),
        (dict(src_fps=30, target_fps=24, slowmo=True), "Slow motion"),
    ],
)
def test_bad_timing_requests_are_refused(kwargs, match):
    with pytest.raises(KinetographError, match=match):
        make_plan(**kwargs)


# --------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------


def test_stream_counts_and_passes_input_frames_through():
    frames = moving_frames(7)
    out = list(interpolate_frames(frames, 24, factor=3))
    assert len(out) == make_plan(24, factor=3).frames_out(7) == 19
    for k, frame in enumerate(frames):
        assert np.array_equal(out[3 * k], frame)
    assert len(list(interpolate_frames(frames, 24, target_fps=60))) == make_plan(24, target_fps=60).frames_out(7)


def test_stream_accepts_a_float_batch_and_reports_progress():
    batch = np.stack(moving_frames(4)).astype(np.float32) / 255.0   # ComfyUI IMAGE layout T×H×W×3
    seen = []
    out = list(interpolate_frames(batch, 12, factor=2, progress=lambda s, d, t: seen.append((s, d, t))))
    assert len(out) == 7 and out[0].dtype == np.uint8
    assert seen[-1] == ("interpolate", 7, 7)


def test_scene_cut_is_never_blended():
    a, b = two_shots(4, 4)
    stream = interpolate_frames(a + b, 24, factor=4)
    out = list(stream)
    assert len(out) == 29
    # positions 3.25 / 3.5 repeat the last frame of shot A, 3.75 the first of shot B
    assert np.array_equal(out[13], a[3]) and np.array_equal(out[14], a[3])
    assert np.array_equal(out[15], b[0]) and np.array_equal(out[16], b[0])
    # elsewhere in-betweens are real interpolations, not copies
    assert not np.array_equal(out[1], a[0]) and not np.array_equal(out[1], a[1])


def test_scene_cut_indices_are_reported():

    a, b = two_shots(5, 3)
    engine = StreamInterpolator(make_plan(24, factor=2), get_backend("flow"))
    assert len(list(engine.run(a + b))) == 15
    assert engine.scene_cuts == [5] and engine.duplicates == []


def test_duplicated_frames_are_bridged_by_motion():
    """Animation on twos: A A B B C. The repeats carry no new picture; the motion from A to B
    is spread over the gap, so position 1 becomes a real in-between."""

    f0, f1, f2 = square_scene(40, 40), square_scene(48, 40), square_scene(56, 40)
    frames = [f0, f0.copy(), f1, f1.copy(), f2]
    engine = StreamInterpolator(make_plan(24, factor=2), get_backend("flow"))
    out = list(engine.run(frames))
    assert len(out) == 9 and engine.duplicates == [1, 3]
    middle = out[2]                                  # position 1: halfway from A to B
    expected = square_scene(44, 40)
    assert psnr(middle, expected) > psnr(f0, expected) + 6
    assert np.array_equal(out[4], f1) and np.array_equal(out[8], f2)
    # without de-duplication the repeat is passed through as it is
    plain = list(interpolate_frames(frames, 24, factor=2, dedup=False))
    assert np.array_equal(plain[2], f0) and np.array_equal(plain[1], f0)


class _ContextRecorder:
    """A backend that takes context and records what it was given (and cross-fades)."""

    name = "recorder"
    accepts_context = True

    def __init__(self):
        self.calls = []

    def interpolate(self, frame0, frame1, ts):
        return [cv2.addWeighted(frame0, 1 - t, frame1, t, 0) for t in ts]

    def interpolate_iter(self, frame0, frame1, ts, **context):
        self.calls.append((frame0, frame1, context))
        yield from self.interpolate(frame0, frame1, ts)


def test_stream_gives_each_pair_its_neighbours_within_the_shot_only():
    shot_a, shot_b = two_shots(4, 3)
    frames = shot_a + shot_b                           # a cut between frames 3 and 4
    recorder = _ContextRecorder()
    engine = StreamInterpolator(make_plan(24, factor=2), recorder)
    out = list(engine.run(frames))
    assert len(out) == 13 and engine.scene_cuts == [4]
    calls = [(next(i for i, f in enumerate(frames) if f is a), context) for a, _, context in recorder.calls]
    starts = [start for start, _ in calls]
    assert starts == [0, 1, 2, 4, 5]                   # the pair across the cut is not interpolated
    contexts = dict(calls)
    assert "previous" not in contexts[0] and contexts[0]["following"] is frames[2]
    assert contexts[1]["previous"] is frames[0] and contexts[1]["following"] is frames[3]
    assert contexts[2]["previous"] is frames[1] and "following" not in contexts[2]   # next pair is the cut
    assert "previous" not in contexts[4] and contexts[4]["following"] is frames[6]   # first pair of shot 2
    assert contexts[5]["previous"] is frames[4] and "following" not in contexts[5]   # last pair of the video
    assert all(c.get("span_before", 1.0) == 1.0 and c.get("span_after", 1.0) == 1.0 for c in contexts.values())


def test_stream_with_context_estimates_each_pairs_motion_once(monkeypatch):
    from pipelines.interpolation import flow

    pairs = []
    real = flow.estimate_motions

    def counting(frame0, frame1, config):
        pairs.append((frame0, frame1))
        return real(frame0, frame1, config)

    monkeypatch.setattr(flow, "estimate_motions", counting)
    frames = moving_frames(6, step=3)
    out = list(interpolate_frames(frames, 24, factor=3, backend=FlowBackend(device="cpu")))
    assert len(out) == 16
    assert len(pairs) == 5   # 5 pairs, each estimated once although each also serves its neighbours


def test_stream_context_spans_count_bridged_duplicates():
    f = moving_frames(4, step=3)
    frames = [f[0], f[1], f[1], f[2], f[3]]            # frame 2 repeats frame 1: the pair (1, 3) spans 2
    recorder = _ContextRecorder()
    list(StreamInterpolator(make_plan(24, factor=2), recorder).run(frames))
    spans = [(context.get("span_before"), context.get("span_after")) for _, _, context in recorder.calls]
    assert spans == [(None, 2.0), (0.5, 0.5), (2.0, None)]


def test_stream_is_lazy_and_memory_stays_flat_over_length():
    def run(n: int) -> tuple[int, int]:
        pulled = []
        first_output_after = None

        def source():
            for i, frame in enumerate(moving_frames_lazy(n)):
                pulled.append(i)
                yield frame

        tracemalloc.start()
        try:
            count = 0
            for _ in interpolate_frames(source(), 24, factor=2):
                if first_output_after is None:
                    first_output_after = len(pulled)
                count += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert count == 2 * n - 1
        assert first_output_after <= 3               # output starts after the first pair + one frame of context
        return peak

    def moving_frames_lazy(n: int):
        base = texture(56, 64 + 8, 9)
        for i in range(n):
            shift = (3 * i) % 8
            yield np.ascontiguousarray(np.roll(base, shift, axis=1)[4:52, 4:68])

    run(10)  # one-time allocations (grids, caches) out of the way
    short, long = run(30), run(300)
    frame_bytes = 48 * 64 * 3
    assert long <= 1.1 * short + 16 * frame_bytes, (short, long)
    assert long < 150 * frame_bytes, long        # keeping the 599 outputs would take 599 frames


def test_stream_errors():
    with pytest.raises(KinetographError, match="no frames"):
        list(interpolate_frames([], 24, factor=2))
    with pytest.raises(KinetographError, match="at least 2"):
        list(interpolate_frames([texture(32, 32, 1)], 24, factor=2))
    with pytest.raises(KinetographError, match="Frame 2 is 40x32"):
        list(interpolate_frames([texture(32, 32, 1), texture(32, 32, 2), texture(32, 40, 3)], 24, factor=2))
    with pytest.raises(KinetographError, match="factor"):
        interpolate_frames([texture(32, 32, 1)] * 2, 24, factor=0)   # checked at the call, not later


# --------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------


class CrossFade:
    name = "crossfade"

    def interpolate(self, frame0, frame1, ts):
        return [cv2.addWeighted(frame0, 1 - t, frame1, t, 0) for t in ts]


def test_backend_registry(monkeypatch):
    monkeypatch.setattr(backends_module, "_REGISTRY", dict(backends_module._REGISTRY))
    assert "flow" in available_backends()
    register_backend("crossfade", CrossFade)
    frames = moving_frames(3)
    out = list(interpolate_frames(frames, 24, factor=2, backend="crossfade"))
    assert np.array_equal(out[1], cv2.addWeighted(frames[0], 0.5, frames[1], 0.5, 0))
    instance = CrossFade()
    assert get_backend(instance) is instance
    with pytest.raises(KinetographError, match="already registered"):
        register_backend("crossfade", CrossFade)
    with pytest.raises(KinetographError, match="available: crossfade, flow"):
        get_backend("rife")
    register_backend("broken", lambda: object())
    with pytest.raises(KinetographError, match="interpolate"):
        get_backend("broken")
    with pytest.raises(KinetographError, match="Unknown flow backend option"):
        get_backend("flow", no_such_option=1)


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------


def write_wav(path, seconds: float, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())


@pytest.fixture
def source_video(tmp_path):
    """12 fps, 20 frames, 64×48, a moving texture with a hard cut at frame 12, and audio."""
    write_wav(tmp_path / "tone.wav", 2.0)
    a, b = two_shots(12, 8)
    path = tmp_path / "source.mp4"
    with VideoWriter(path, 12, audio_source=tmp_path / "tone.wav", crf=12, preset="ultrafast") as writer:
        for frame in a + b:
            writer.write(frame)
    return path


def test_interpolate_video_range_audio_metadata(source_video, tmp_path):
    seen = []
    result = interpolate_video(source_video, tmp_path / "out.mp4", factor=2, start_frame=4, end_frame=16,
                               progress=lambda s, d, t: seen.append((d, t)))
    assert result.frames_in == 12 and result.frames_out == 23
    assert result.src_fps == 12 and result.out_fps == 24
    assert result.scene_cuts == [12]
    assert result.ms_per_frame > 0 and seen[-1] == (23, 23)
    info = probe_video(result.path)
    assert info.frame_count == 23 and abs(info.fps - 24) < 1e-6 and info.has_audio
    meta = read_metadata(result.path)["interpolation"]
    assert meta["backend"] == "flow" and meta["factor"] == 2
    assert (meta["start_frame"], meta["end_frame"]) == (4, 16) and meta["scene_cuts"] == [12]
    # input frames come through at the even output positions (up to the codec)
    src = read_frames(source_video, 4, 16)
    out = read_frames(result.path)
    assert psnr(out[0], src[0]) > 30 and psnr(out[22], src[11]) > 30


def test_interpolate_video_to_a_target_fps_and_slow_motion(source_video, tmp_path):
    result = interpolate_video(source_video, tmp_path / "fps.mp4", target_fps=30, end_frame=8)
    assert result.out_fps == 30 and result.frames_out == make_plan(12, target_fps=30).frames_out(8) == 18
    slow = interpolate_video(source_video, tmp_path / "slow.mp4", factor=3, end_frame=5, slowmo=True)
    assert slow.out_fps == 12 and slow.frames_out == 13
    assert not probe_video(slow.path).has_audio   # audio cannot follow slow motion
    assert read_metadata(slow.path)["interpolation"]["audio"].startswith("dropped")


def test_interpolate_video_default_output_name(source_video):
    result = interpolate_video(source_video, factor=2, end_frame=3)
    assert result.path.name == "source-x2.mp4" and result.path.exists()
    again = interpolate_video(source_video, factor=2, end_frame=3)
    assert again.path != result.path and again.path.exists()   # never over an existing file


def _bright_centroid_x(frame: np.ndarray) -> float:
    bright = frame[..., 0].astype(np.float32) > 128
    return float(np.nonzero(bright)[1].mean())


def test_variable_rate_video_is_timed_by_its_timestamps(tmp_path):
    """A square moving at 40 px/s filmed with a 300 ms gap (a phone's dropped frames): every
    output frame shows it where the clock says, and the output lasts as long as the source."""
    times_ms = [0, 100, 200, 500, 600, 700, 800]
    frames = []
    for time_ms in times_ms:
        frame = np.full((64, 96, 3), 30, np.uint8)
        x = 10 + round(0.04 * time_ms)
        frame[26:38, x:x + 12] = (240, 220, 40)
        frames.append(frame)
    src = write_variable_rate_video(tmp_path / "phone.mp4", frames, times_ms)
    result = interpolate_video(src, tmp_path / "out.mp4", target_fps=20)
    assert result.src_fps == 10 and result.frames_out == 17   # 0, 50, ... 800 ms
    out = read_frames(result.path)
    assert len(out) == 17 and abs(probe_video(result.path).fps - 20) < 1e-6
    for j, frame in enumerate(out):
        expected = 10 + 0.04 * 50 * j + 5.5
        assert abs(_bright_centroid_x(frame) - expected) < 1.5, f"output frame {j}"
    assert read_metadata(result.path)["interpolation"]["timing"].startswith("timestamps")


@pytest.mark.skipif(not (FOOTAGE / "phone_dog_1080p.mp4").is_file(), reason="shared footage not present")
def test_real_phone_video_keeps_its_first_frames_long_hold(tmp_path):
    # the phone shows its first frame for 0.185 s, then records at 30 fps
    result = interpolate_video(FOOTAGE / "phone_dog_1080p.mp4", tmp_path / "dog.mp4", factor=2, end_frame=4)
    assert (result.src_fps, result.out_fps) == (30, 60)
    # its 4th frame is shown at 0.251 s: 16 frames at 60 fps, not 7 at twice its 27 fps average
    assert result.frames_out == 16
    info = probe_video(result.path)
    assert info.has_audio and abs(info.duration_s - 16 / 60) < 1e-6
    # frames 10..13 are evenly spaced: they keep 30 fps too, not the file's 27 fps average
    later = interpolate_video(FOOTAGE / "phone_dog_1080p.mp4", tmp_path / "later.mp4", factor=2, start_frame=10,
                              end_frame=13)
    assert (later.src_fps, later.out_fps, later.frames_out) == (30, 60, 5)
    assert read_metadata(later.path)["interpolation"]["timing"] == "constant frame rate"


def test_cancel_leaves_no_output(source_video, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    token = CancelToken()

    def progress(stage, done, total):
        if done >= 5:
            token.cancel()

    with pytest.raises(JobCancelled):
        interpolate_video(source_video, out_dir / "x.mp4", factor=2, progress=progress, cancel=token)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(factor=2, start_frame=25), "outside"),
        (dict(factor=2, end_frame=30), "outside"),
        (dict(factor=2, start_frame=5, end_frame=6), "at least 2"),
        (dict(factor=2, start_frame=-1), "start_frame"),
        (dict(factor=1), "factor"),
        (dict(target_fps=0), "target_fps"),
        (dict(factor=2, backend="nope"), "Unknown interpolation backend"),
    ],
)
def test_bad_video_requests_write_nothing(source_video, tmp_path, kwargs, match):
    with pytest.raises(KinetographError, match=match):
        interpolate_video(source_video, tmp_path / "bad.mp4", **kwargs)
    assert not (tmp_path / "bad.mp4").exists() and not (tmp_path / "bad.json").exists()


def test_empty_corrupt_and_missing_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8)
    for path in (empty, corrupt, tmp_path / "missing.mp4"):
        with pytest.raises(KinetographError):
            interpolate_video(path, tmp_path / "out.mp4", factor=2)
    assert not (tmp_path / "out.mp4").exists()
