"""Seam and colour-drift tools for long-video extension (pipelines/extension/seams.py).

Colour checks use scikit-image's Lab (an implementation independent of the module's OpenCV one).
"""
import numpy as np
import pytest
from skimage.color import lab2rgb, rgb2lab

from pipelines.errors import KinetographError
from pipelines.extension.seams import anchor_colours, colour_drift, crossfade, seam_score

H, W = 48, 64


def textured_video(t=8, seed=0):
    """A moving, textured clip kept in mid-range so brightening/tinting does not clip much."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    noise = rng.normal(0.0, 6.0, (H, W, 3))
    frames = []
    for i in range(t):
        r = 120 + 45 * np.sin(xx / 9.0 + 0.3 * i)
        g = 110 + 40 * np.cos(yy / 7.0 - 0.2 * i)
        b = 100 + 35 * np.sin((xx + yy) / 11.0 + 0.1 * i)
        frames.append(np.stack([r, g, b], axis=-1) + noise)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def moving_gradient(t, start=0, speed=0.5, period=64.0, offset=0.0):
    """A smooth horizontal sine gradient sliding ``speed`` px per frame (frames start..start+t-1)."""
    xx = np.arange(W, dtype=np.float64)
    frames = []
    for i in range(start, start + t):
        row = 128 + 90 * np.sin(2 * np.pi * (xx - speed * i) / period) + offset
        img = np.broadcast_to(row[None, :, None], (H, W, 3)).copy()
        img[..., 1] *= 0.8
        frames.append(img)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def mean_lab(frames):
    return rgb2lab(frames.reshape(-1, frames.shape[2], 3)).reshape(-1, 3).mean(axis=0)


def delta_e(a, b):
    return float(np.linalg.norm(mean_lab(a) - mean_lab(b)))


def drifted(frames, gain=1.12, shift=(12.0, 0.0, -10.0)):
    """A brightened, warm-tinted copy (what a drifting extension window looks like)."""
    out = frames.astype(np.float64) * gain + np.array(shift)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --- anchor_colours ---------------------------------------------------------------------------


def test_anchor_full_strength_restores_reference_colour():
    reference = textured_video(8, seed=1)
    segment = drifted(textured_video(8, seed=2))
    before = delta_e(segment, reference)
    assert before > 5.0, before  # the drift is real and visible
    anchored = anchor_colours(segment, reference, strength=1.0)
    assert anchored.dtype == np.uint8 and anchored.shape == segment.shape
    assert delta_e(anchored, reference) < 1.0
    # the std per channel is matched too (Reinhard transfer), within a fraction of a Lab unit
    std_ref = rgb2lab(reference.reshape(-1, W, 3)).reshape(-1, 3).std(axis=0)
    std_out = rgb2lab(anchored.reshape(-1, W, 3)).reshape(-1, 3).std(axis=0)
    np.testing.assert_allclose(std_out, std_ref, atol=0.5)


def test_anchor_strength_zero_is_identity_bit_for_bit():
    reference = textured_video(4, seed=1)
    segment = drifted(textured_video(5, seed=2))
    out = anchor_colours(segment, reference, strength=0.0)
    assert out.dtype == np.uint8 and np.array_equal(out, segment)
    assert out is not segment  # a copy: editing the result never edits the caller's frames


def test_anchor_half_strength_halves_the_drift():
    reference = textured_video(8, seed=1)
    segment = drifted(textured_video(8, seed=2))
    full_drift = delta_e(segment, reference)
    half_drift = delta_e(anchor_colours(segment, reference, strength=0.5), reference)
    assert 0.4 * full_drift < half_drift < 0.6 * full_drift, (full_drift, half_drift)


def test_anchor_reference_against_itself_is_near_identity():
    clip = textured_video(6)
    out = anchor_colours(clip, clip, strength=1.0)
    err = np.abs(out.astype(int) - clip.astype(int))
    assert err.max() <= 2 and err.mean() < 0.5  # OpenCV's float Lab round trip + rounding only


def test_anchor_is_one_transform_per_segment_so_real_ramps_survive():
    """A brightness ramp inside the segment is kept (per-frame matching would flatten it)."""
    reference = textured_video(4, seed=1)
    base = textured_video(6, seed=2)
    ramp = np.clip(base.astype(int) + (np.arange(6) * 8)[:, None, None, None] + 10, 0, 255).astype(np.uint8)
    out = anchor_colours(ramp, reference, strength=1.0)
    lum_in = [mean_lab(f[None])[0] for f in ramp]
    lum_out = [mean_lab(f[None])[0] for f in out]
    assert np.all(np.diff(lum_out) > 1.0)  # still brightening frame over frame
    np.testing.assert_allclose(np.diff(lum_out), np.diff(lum_in), rtol=0.35)
    # identical frames get identical output (the same map applies to every frame)
    still = np.repeat(drifted(reference[:1]), 3, axis=0)
    out_still = anchor_colours(still, reference)
    assert np.array_equal(out_still[0], out_still[1]) and np.array_equal(out_still[0], out_still[2])


def test_anchor_flat_frames_do_not_blow_up():
    grey = np.full((3, H, W, 3), 100, np.uint8)
    ref_grey = np.full((2, H, W, 3), 150, np.uint8)
    with np.errstate(all="raise"):
        out = anchor_colours(grey, ref_grey)
    assert np.abs(out.astype(int) - 150).max() <= 1  # the mean moves, nothing is divided by 0
    # a flat reference (a fade to black) must not squash a textured segment to a flat colour
    clip = textured_video(3)
    out = anchor_colours(clip, np.zeros((1, H, W, 3), np.uint8))
    assert out.std() > 5.0


def test_anchor_rejects_bad_input():
    clip = textured_video(2)
    with pytest.raises(KinetographError):
        anchor_colours(clip, clip, strength=1.5)
    with pytest.raises(KinetographError):
        anchor_colours(clip.astype(np.float32), clip)
    with pytest.raises(KinetographError):
        anchor_colours(clip[0], clip)
    with pytest.raises(KinetographError):
        anchor_colours(clip, clip[:0])


# --- crossfade --------------------------------------------------------------------------------


def test_crossfade_weights_go_linearly_from_tail_to_head():
    n = 5
    tail = np.zeros((n, H, W, 3), np.uint8)
    head = np.full((n, H, W, 3), 255, np.uint8)
    out = crossfade(tail, head)
    assert out.shape == tail.shape and out.dtype == np.uint8
    weights = out.reshape(n, -1).mean(axis=1) / 255.0
    np.testing.assert_allclose(weights, (np.arange(n) + 1) / (n + 1), atol=0.5 / 255 + 1e-9)
    assert np.all(np.diff(weights) > 0)
    assert weights[0] < 0.5 < weights[-1]  # starts mostly tail, ends mostly head


def test_crossfade_endpoints_and_identity():
    tail = textured_video(4, seed=1)
    head = textured_video(4, seed=2)
    out = crossfade(tail, head)
    # first frame is nearer the tail, last nearer the head
    d = lambda a, b: np.abs(a.astype(int) - b.astype(int)).mean()  # noqa: E731
    assert d(out[0], tail[0]) < d(out[0], head[0])
    assert d(out[-1], head[-1]) < d(out[-1], tail[-1])
    # exact float blend, rounded
    w = 1 / 5
    expected = np.rint((1 - w) * tail[0].astype(float) + w * head[0].astype(float))
    assert np.array_equal(out[0], expected.astype(np.uint8))
    # equal runs come back unchanged; a single-frame overlap is the midpoint
    assert np.array_equal(crossfade(tail, tail), tail)
    mid = crossfade(np.zeros((1, H, W, 3), np.uint8), np.full((1, H, W, 3), 200, np.uint8))
    assert np.all(mid == 100)


def test_crossfade_empty_and_mismatch():
    empty = np.zeros((0, H, W, 3), np.uint8)
    out = crossfade(empty, empty)
    assert out.shape == (0, H, W, 3) and out.dtype == np.uint8
    with pytest.raises(KinetographError):
        crossfade(textured_video(3), textured_video(4))


# --- seam_score -------------------------------------------------------------------------------


def test_seam_score_continuous_motion_is_about_one():
    clip = moving_gradient(16)
    score = seam_score(clip[:8], clip[8:])
    assert 0.7 < score < 1.5, score


def test_seam_score_hard_cut_is_visible():
    before = moving_gradient(8)
    other = textured_video(8, seed=3)  # a different shot
    assert seam_score(before, other) >= 3.0
    # a brightness pop on an otherwise continuous clip also reads as a seam
    popped = moving_gradient(8, start=8, offset=15.0)
    assert seam_score(before, popped) >= 3.0


def test_seam_score_static_scene_has_no_division_by_zero():
    still = np.full((4, H, W, 3), 90, np.uint8)
    assert seam_score(still, still) == 0.0
    jumped = np.full((4, H, W, 3), 92, np.uint8)
    assert seam_score(still, jumped) == pytest.approx(2.0 / 0.5)  # median floored at 0.5 grey levels
    with pytest.raises(KinetographError):
        seam_score(still[:1], still[:1])


def test_crossfade_hides_a_drifted_overlap():
    """Old segment covers moments 0..11, the new one re-renders 8..19 a bit brighter (n=4 overlap)."""
    old = moving_gradient(12, start=0)
    new = moving_gradient(12, start=8, offset=15.0)
    naive = seam_score(old, new[4:])
    assert naive >= 3.0
    joined = np.concatenate([old[:8], crossfade(old[8:], new[:4]), new[4:]])
    steps = [seam_score(joined[:k], joined[k:]) for k in range(2, len(joined) - 1)]
    assert max(steps) < 2.5, steps


# --- colour_drift -----------------------------------------------------------------------------


def test_colour_drift_identical_runs_is_zero():
    clip = textured_video(5)
    assert colour_drift(clip, clip) == 0.0
    assert colour_drift(clip, clip.copy()) == 0.0


def test_colour_drift_known_flat_shift():
    a = np.full((2, H, W, 3), (120, 120, 120), np.uint8)
    b = np.full((3, H, W, 3), (140, 120, 100), np.uint8)
    expected = float(np.linalg.norm(rgb2lab(np.array([[[140, 120, 100]]]) / 255.0) - rgb2lab(np.array([[[120, 120, 120]]]) / 255.0)))
    # OpenCV's float Lab is an approximation (within ~0.5 ΔE of the exact CIE formula; here 0.12)
    assert colour_drift(a, b) == pytest.approx(expected, abs=0.3)
    assert colour_drift(b, a) == pytest.approx(colour_drift(a, b))


def test_colour_drift_known_lab_shift_on_texture():
    clip = textured_video(4)
    lab = rgb2lab(clip.reshape(-1, W, 3))
    lab[..., 0] += 5.0
    lab[..., 1] += 3.0
    shifted = np.rint(np.clip(lab2rgb(lab), 0, 1) * 255).astype(np.uint8).reshape(clip.shape)
    assert colour_drift(clip, shifted) == pytest.approx(np.sqrt(5.0**2 + 3.0**2), abs=0.3)
    # different frame counts and sizes are fine: it compares mean colours
    assert colour_drift(clip[:1], shifted[:, ::2, ::2]) == pytest.approx(np.sqrt(34.0), abs=0.5)
