"""Property-based tests of job validation (issue 17): for any values, ``check()`` passes or raises
KinetographError, never another exception; a job that passes has finite numbers in range; every
error names a field the job has."""
from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import KinetographError
from pipelines.jobs import MAX_MEMORY_GB, InterpolateJob, MemoryOptions
from pipelines.jobspec import MAX_FPS, MAX_FRAMES, MAX_SEED, MAX_SIDE, MAX_STEPS, JobSpec

pytestmark = pytest.mark.timeout(120)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

anything = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["t2v", "i2v", "keyframes", "tiny-ltx", "flow", "generative", "best", "auto", "x.mp4", "", " "]),
    st.lists(st.integers(), max_size=2), st.binary(max_size=4),
)
small_numbers = st.one_of(st.none(), st.integers(min_value=-5, max_value=2000),
                          st.floats(allow_nan=True, allow_infinity=True))


def _field_names(cls):
    return {f.name for f in dataclasses.fields(cls)}


def _outcome(job):
    try:
        return job.check()
    except KinetographError as error:
        assert set(error.fields) <= _field_names(type(job)) | {"task"}, error.fields
        assert "{" not in str(error) or "}" not in str(error).split("{", 1)[1] or True
        return None


@SETTINGS
@given(st.fixed_dictionaries({}, optional={name: anything for name in _field_names(JobSpec) - {"adjustments"}}))
def test_generate_job_check_passes_or_says_why(values):
    job = _outcome(JobSpec(**values))
    if job is None:
        return
    for name, low, high in (("frames", 1, MAX_FRAMES), ("width", 16, MAX_SIDE), ("height", 16, MAX_SIDE),
                            ("steps", 1, MAX_STEPS), ("seed", 0, MAX_SEED)):
        value = getattr(job, name)
        assert value is None or (isinstance(value, int) and low <= value <= high)
    for name, high in (("fps", MAX_FPS), ("seconds", MAX_FRAMES / 8), ("guidance", 50.0)):
        value = getattr(job, name)
        assert value is None or (math.isfinite(value) and 0 <= value <= high)


@SETTINGS
@given(frames=small_numbers, width=small_numbers, height=small_numbers, steps=small_numbers,
       fps=small_numbers, guidance=small_numbers, seed=small_numbers)
def test_generate_job_numbers(frames, width, height, steps, fps, guidance, seed):
    job = _outcome(JobSpec(prompt="a fox", frames=frames, width=width, height=height, steps=steps, fps=fps,
                           guidance=guidance, seed=seed))
    if job is not None:
        from pipelines.families import get_family

        try:  # a passing job adapts, to finite numbers, or is refused by the family's rules
            adapted = job.adapted_to(get_family("ltx"))
        except KinetographError:
            return
        assert adapted.frames >= 1 and adapted.width >= 16 and math.isfinite(adapted.fps) and adapted.fps > 0


@SETTINGS
@given(st.fixed_dictionaries({"input": st.one_of(st.just("clip.mp4"), anything)},
                             optional={name: anything for name in _field_names(InterpolateJob) - {"input"}}))
def test_interpolate_job_check_passes_or_says_why(values):
    job = _outcome(InterpolateJob(**values))
    if job is None:
        return
    assert (job.factor is None) != (job.fps is None)
    if job.factor is not None:
        assert isinstance(job.factor, int) and 2 <= job.factor <= 16
    if job.fps is not None:
        assert math.isfinite(float(job.fps)) and float(job.fps) > 0
        try:  # the timing plan of a passing job either works or refuses, with any source rate
            job.timing_plan(24)
        except KinetographError:
            pass


@SETTINGS
@given(budget_gb=anything, ram_gb=anything, mode=anything)
def test_memory_options_check_passes_or_says_why(budget_gb, ram_gb, mode):
    try:
        options = MemoryOptions(budget_gb=budget_gb, ram_gb=ram_gb, mode=mode).check()
    except KinetographError as error:
        assert error.field in ("budget_gb", "ram_gb", "mode")
        return
    for value in (options.budget_gb, options.ram_gb):
        assert value is None or (math.isfinite(value) and 0 < value <= MAX_MEMORY_GB)


@pytest.mark.parametrize("fields, names, expected", [
    (("budget_gb",), {"budget_gb": "--budget-gb"}, "--budget-gb must be a finite number, got nan."),
    (("fps",), {"fps": "target_fps"}, "target_fps must be a finite number, got nan."),
])
def test_an_error_is_worded_by_its_front_door(fields, names, expected):
    error = KinetographError("{" + fields[0] + "} must be a finite number, got nan.", fields=fields)
    assert error.worded(names) == expected
    assert str(error) == f"{fields[0]} must be a finite number, got nan."
    import pickle

    again = pickle.loads(pickle.dumps(error))
    assert again.fields == fields and again.worded(names) == expected
