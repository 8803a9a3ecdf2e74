"""JobSpec: checks that need no model, and adaptation to family rules."""
import pytest

from pipelines.errors import KinetographError
from pipelines.families import FAMILIES
from pipelines.jobspec import JobSpec

LTX, WAN, ANIMATEDIFF = FAMILIES["ltx"], FAMILIES["wan"], FAMILIES["animatediff"]


def test_frames_round_to_family_rule_and_say_so():
    ltx = JobSpec(prompt="x", frames=10, width=64, height=64, seed=1).adapted_to(LTX)
    assert ltx.frames == 9 and any("frames 10 -> 9" in n for n in ltx.adjustments)
    wan = JobSpec(prompt="x", frames=10, width=64, height=64, seed=1).adapted_to(WAN)
    assert wan.frames == 9
    wan = JobSpec(prompt="x", frames=12, width=64, height=64, seed=1).adapted_to(WAN)
    assert wan.frames == 13
    assert JobSpec(prompt="x", frames=7, seed=1).adapted_to(ANIMATEDIFF).frames == 7


def test_sizes_round_to_multiples_and_loaded_model_rules_win():
    job = JobSpec(prompt="x", frames=9, width=70, height=50, seed=1).adapted_to(LTX)
    assert (job.width, job.height) == (64, 64)
    assert any("size 70x50 -> 64x64" in n for n in job.adjustments)
    job = JobSpec(prompt="x", frames=9, width=70, height=50, seed=1).adapted_to(LTX, frame_multiple=4, size_multiple=8)
    assert (job.width, job.height) == (72, 48)


def test_defaults_come_from_the_family():
    job = JobSpec(prompt="x").adapted_to(WAN)
    assert (job.width, job.height, job.frames, job.fps) == (832, 480, 81, 16)
    assert job.steps == WAN.default_steps and job.guidance == WAN.default_guidance
    assert job.negative_prompt == WAN.default_negative_prompt
    assert 0 <= job.seed < 2**32


def test_seconds_become_frames_at_the_job_fps():
    job = JobSpec(prompt="x", seconds=2.0, fps=8, seed=0).adapted_to(WAN)
    assert job.frames == 17 and job.seconds is None


def test_adapting_twice_does_not_duplicate_notes():
    job = JobSpec(prompt="x", frames=10, seed=1).adapted_to(LTX)
    assert job.adapted_to(LTX).adjustments == job.adjustments


@pytest.mark.parametrize("kwargs, words", [
    (dict(frames=0), "frames = 0"),
    (dict(frames=-3), "frames = -3"),
    (dict(frames=10**6), "out of range"),
    (dict(width=100000), "width"),
    (dict(height=4), "height"),
    (dict(steps=0), "steps"),
    (dict(fps=0), "fps"),
    (dict(fps=float("nan")), "fps"),
    (dict(guidance=-1.0), "guidance"),
    (dict(seed=-1), "seed"),
    (dict(frames=9, seconds=1.0), "not both"),
    (dict(task="dance"), "Unknown task"),
    (dict(prompt=""), "needs a prompt"),
    (dict(image="a.png"), "takes no images"),
])
def test_bad_values_are_rejected_with_a_clear_message(kwargs, words):
    base = dict(task="t2v", prompt="a fox")
    base.update(kwargs)
    with pytest.raises(KinetographError, match=words):
        JobSpec(**base).check()


def test_image_tasks_need_their_images():
    with pytest.raises(KinetographError, match="start image"):
        JobSpec(task="i2v", prompt="x").check()
    with pytest.raises(KinetographError, match="last frame"):
        JobSpec(task="keyframes", prompt="x", image="a.png").check()


def test_more_frames_than_the_family_makes_in_one_pass_is_refused():
    with pytest.raises(KinetographError, match="extend task"):
        JobSpec(prompt="x", frames=500).adapted_to(WAN)


def test_round_trip_through_dict():
    job = JobSpec(prompt="x", frames=10, seed=5).adapted_to(LTX)
    assert JobSpec.from_dict(job.to_dict()) == job
    with pytest.raises(KinetographError, match="Unknown job settings"):
        JobSpec.from_dict({"prompt": "x", "colour": "red"})
