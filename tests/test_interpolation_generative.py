"""Generative in-betweening: engine.generate_frames (frames in memory) and the "generative"
interpolation backend over the built-in tiny first+last-frame models (CPU, offline, noise)."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import app
from pipelines import engine
from pipelines.errors import JobCancelled, KinetographError
from pipelines.interpolation import choose_frame_count, get_backend, interpolate_frames, make_plan
from pipelines.interpolation.generative import GenerativeBackend, nearest_indices
from pipelines.interpolation.generative import _resize as resized  # the backend's own resize
from pipelines.jobspec import JobSpec
from pipelines.progress import CancelToken
from pipelines.video_io import iter_frames, probe_video, read_image, read_metadata, write_video

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(frames=9, width=64, height=64, steps=2)


def keyframes_job(model, images, **overrides):
    return JobSpec(**{**dict(task="keyframes", model=model, prompt="a red fox", image=images[0],
                             last_image=images[1], seed=3, **SMALL), **overrides})


def moving_square(count=3, h=64, w=64, speed=4):
    """RGB uint8 frames: a bright square moving over a gradient (motion, not cuts or repeats)."""
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([xx * 3, yy * 3, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    frames = []
    for i in range(count):
        frame = background.copy()
        frame[20:36, 8 + speed * i:24 + speed * i] = (250, 200, 40)
        frames.append(frame)
    return frames


# ---------------------------------------------------------------- engine.generate_frames
@pytest.mark.parametrize("model", ["tiny-ltx", "tiny-wan"])
def test_generate_frames_returns_what_run_writes(model, sample_images, tmp_path):
    job = keyframes_job(model, sample_images)
    stages = []
    made = engine.generate_frames(job, progress=lambda s, d, t: stages.append(s))
    assert made.frames.dtype == np.uint8 and made.frames.shape == (9, 64, 64, 3)
    assert made.frames.std() > 0  # not a blank video
    assert made.job.seed == 3 and made.job.frames == 9 and made.inputs == {"image": "file", "last_image": "file"}
    assert made.model["family"] == {"tiny-ltx": "ltx", "tiny-wan": "wan"}[model]
    assert {"load", "encode", "denoise", "decode"} <= set(made.timings) and "write" not in stages
    assert made.memory["plan"]["name"]

    # run() writes exactly these frames: the same video as encoding them ourselves
    result = engine.run(job, output_dir=tmp_path)
    ours = write_video(tmp_path / "ours.mp4", made.frames, made.job.fps)
    assert np.array_equal(np.stack(list(iter_frames(result.path))), np.stack(list(iter_frames(ours))))
    meta = read_metadata(result.path)
    assert meta["job"] == made.job.to_dict() and meta["notes"] == made.notes
    assert list(result.timings) == [*made.timings, "write", "total"]


def test_generate_frames_takes_arrays_instead_of_paths(sample_images):
    job = keyframes_job("tiny-ltx", sample_images)
    from_files = engine.generate_frames(job)
    arrays = {"image": read_image(sample_images[0]), "last_image": read_image(sample_images[1])}
    labelled = JobSpec(**{**job.to_dict(), "image": "frame 12 of clip.mp4", "last_image": "frame 13 of clip.mp4",
                          "adjustments": ()})
    from_arrays = engine.generate_frames(labelled, images=arrays)
    assert np.array_equal(from_files.frames, from_arrays.frames)
    assert from_arrays.inputs == {"image": "array", "last_image": "array"}
    assert from_arrays.job.image == "frame 12 of clip.mp4"  # the label is recorded, never opened

    other = engine.generate_frames(labelled, images={**arrays, "last_image": arrays["image"]})
    assert not np.array_equal(from_arrays.frames, other.frames)  # the array really is the input


def counting_encodes(monkeypatch):
    """Count the adapters' prompt encodings (the text encoders' runs)."""
    from pipelines import families

    calls = []
    real = families.FamilyAdapter.encode_prompt

    def encode_prompt(self, pipe, job, device):
        calls.append(job.prompt)
        return real(self, pipe, job, device)

    monkeypatch.setattr(families.FamilyAdapter, "encode_prompt", encode_prompt)
    return calls


def test_a_reused_encoded_prompt_skips_encoding_and_gives_the_same_frames(sample_images, monkeypatch):
    encodes = counting_encodes(monkeypatch)
    job = keyframes_job("tiny-ltx", sample_images)
    first = engine.generate_frames(job)
    again = engine.generate_frames(job, encoded_prompt=first.encoded_prompt)
    assert encodes == ["a red fox"]  # the second job did not encode
    assert np.array_equal(first.frames, again.frames)

    # another prompt, or guidance switched off, does not match the encoding: it is encoded anew
    other = engine.generate_frames(dataclasses.replace(job, prompt="a blue whale"), encoded_prompt=first.encoded_prompt)
    assert encodes == ["a red fox", "a blue whale"] and not np.array_equal(first.frames, other.frames)
    engine.generate_frames(dataclasses.replace(job, guidance=1.0), encoded_prompt=first.encoded_prompt)
    assert len(encodes) == 3


def test_under_a_staged_plan_a_reused_prompt_loads_no_text_encoder_again(sample_images, staged_loads):
    from pipelines import models

    manager = models.ModelManager()
    job = keyframes_job("tiny-wan", sample_images)
    first = engine.generate_frames(job, manager=manager)
    skips = [models.HEAVY_COMPONENTS, models.TEXT_ENCODERS]  # encoders alone, then the rest
    assert [skip for skip, _ in staged_loads] == skips
    again = engine.generate_frames(job, manager=manager, encoded_prompt=first.encoded_prompt)
    assert [skip for skip, _ in staged_loads] == skips  # nothing loaded for the second job
    assert np.array_equal(first.frames, again.frames)


@pytest.mark.parametrize("images, job_changes, words", [
    ({"image": np.zeros((8, 8, 3), np.uint8)}, {"task": "t2v", "image": None, "last_image": None},
     "the job has no image"),
    ({"image": np.zeros((8, 8), np.uint8)}, {}, "RGB uint8"),
    ({"image": np.zeros((8, 8, 3), np.float32)}, {}, "RGB uint8"),
    ({"mask": np.zeros((8, 8, 3), np.uint8)}, {}, "'mask'"),
])
def test_generate_frames_refuses_bad_arrays(images, job_changes, words, sample_images):
    job = JobSpec(**{**keyframes_job("tiny-ltx", sample_images).to_dict(), **job_changes, "adjustments": ()})
    with pytest.raises(KinetographError, match=words):
        engine.generate_frames(job, images=images)


# ------------------------------------------------------------------- frame-count choice
@pytest.mark.parametrize("ts, multiple, expected", [
    ([0.5], 8, (9, [4])),                        # LTX: the middle of 9 frames
    ([0.5], 4, (5, [2])),                        # Wan
    ([1 / 3, 2 / 3], 8, (25, [8, 16])),          # 9 and 17 frames miss by 1/24 and 1/48; 25 is exact
    ([1 / 3, 2 / 3], 4, (13, [4, 8])),
    ([0.25, 0.5, 0.75], 4, (5, [1, 2, 3])),      # exact at the smallest count: no need to look further
    ([0.2, 0.6], 8, (25, [5, 14])),              # 24 -> 60 fps: best of 9, 17 and 25 frames
    ([0.001], 8, (9, [0])),                      # t next to an input frame: that frame is the nearest
])
def test_frame_count_places_frames_nearest_the_requested_times(ts, multiple, expected):
    assert choose_frame_count(ts, multiple) == expected


def test_frame_count_rules():
    count, picks = choose_frame_count([k / 16 for k in range(1, 16)], 8)
    assert count == 17 and picks == list(range(1, 16))  # at least len(ts) + 2 frames, of the form 8k+1
    assert choose_frame_count([0.3], 8, choices=1) == (9, [2])  # only the smallest count compared
    assert choose_frame_count([0.3], 8) == (25, [7])  # 7/24 is nearer 0.3 than 2/8 or 5/16
    assert nearest_indices([0.5, 0.0625], 9) == [4, 1]  # a tie rounds up, to the later frame
    with pytest.raises(KinetographError, match="more frames than the model generates"):
        choose_frame_count([0.5] * 20, 8, max_frames=17)
    with pytest.raises(KinetographError, match="outside"):
        choose_frame_count([1.5], 8)


# ------------------------------------------------------------------------------ backend
def test_backend_returns_one_frame_per_t_at_the_input_size():
    a, b = moving_square(count=2, h=48, w=100)
    backend = get_backend("generative", model="tiny-ltx", steps=2, seed=5)
    assert isinstance(backend, GenerativeBackend) and backend.name == "generative"
    assert backend.accepts_context is False
    out = backend.interpolate(a, b, [0.25, 0.5, 0.75])
    assert len(out) == 3 and all(f.shape == (48, 100, 3) and f.dtype == np.uint8 for f in out)
    # one 9-frame generation at the input size rounded to LTX's multiple of 32 (100x48 -> 96x64)
    assert backend.last_job.frames == 9 and (backend.last_job.width, backend.last_job.height) == (96, 64)
    assert backend.last_indices == [2, 4, 6]
    settings = backend.describe()
    assert settings["generation_size"] == "96x64" and settings["frames_per_pair"] == [9]
    assert (settings["model"], settings["steps"], settings["seed"], settings["max_side"]) == ("tiny-ltx", 2, 5, 768)

    # the frames returned are the generated frames at those indices, resized back to the input
    made = engine.generate_frames(backend.last_job, images={"image": resized(a, 96, 64),
                                                            "last_image": resized(b, 96, 64)})
    for frame, index in zip(out, backend.last_indices, strict=True):
        assert np.array_equal(frame, resized(made.frames[index], 100, 48))


def test_backend_is_reproducible_and_the_seed_matters():
    a, b = moving_square(count=2)
    first = get_backend("generative", model="tiny-wan", steps=2, seed=7).interpolate(a, b, [1 / 3, 2 / 3])
    again = get_backend("generative", model="tiny-wan", steps=2, seed=7).interpolate(a, b, [1 / 3, 2 / 3])
    other = get_backend("generative", model="tiny-wan", steps=2, seed=8).interpolate(a, b, [1 / 3, 2 / 3])
    assert len(first) == 2 and all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_backend_caps_the_generation_size():
    backend = GenerativeBackend(model="tiny-ltx", seed=0)
    assert backend.generation_size(1920, 1080) == (768, 448)  # LTX's default long side, multiples of 32
    assert backend.generation_size(1080, 1920) == (448, 768)
    assert backend.generation_size(64, 48) == (64, 64)
    assert GenerativeBackend(model="tiny-wan", seed=0).generation_size(1920, 1080) == (832, 464)
    assert GenerativeBackend(model="tiny-ltx", seed=0, max_side=100).generation_size(1920, 1080) == (96, 64)


def test_through_the_stream_the_input_frames_are_kept():
    frames = moving_square(count=3)
    backend = get_backend("generative", model="tiny-ltx", steps=2, seed=1)
    out = list(interpolate_frames(frames, 8.0, factor=2, backend=backend))
    assert len(out) == 5 == make_plan(8.0, factor=2).frames_out(3)
    for k in range(3):
        assert np.array_equal(out[2 * k], frames[k])
    for k in (1, 3):
        assert out[k].shape == (64, 64, 3) and out[k].dtype == np.uint8
        assert not np.array_equal(out[k], out[k - 1]) and not np.array_equal(out[k], out[k + 1])
    assert backend.describe()["frames_per_pair"] == [9]


def test_a_stream_encodes_its_prompt_once(monkeypatch):
    encodes = counting_encodes(monkeypatch)
    backend = get_backend("generative", model="tiny-ltx", prompt="a square slides", steps=2, seed=1)
    out = list(interpolate_frames(moving_square(count=4), 8.0, factor=2, backend=backend))
    assert len(out) == 7 and encodes == ["a square slides"]  # three generations, one encoding


def test_a_repeated_pair_needs_no_generation():
    a = moving_square(count=1)[0]
    backend = GenerativeBackend(model="tiny-ltx", seed=0)
    out = backend.interpolate(a, a.copy(), [0.5])
    assert np.array_equal(out[0], a) and backend.last_job is None


def test_cancel_stops_a_generation():
    a, b = moving_square(count=2)
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        GenerativeBackend(model="tiny-ltx", steps=2, seed=0, cancel=token).interpolate(a, b, [0.5])


@pytest.mark.parametrize("options, words", [
    (dict(model="tiny-svd"), "cannot generate a video between a first and a last frame.*tiny-ltx, tiny-wan"),
    (dict(model="wan2.1-t2v-1.3b"), "choose one that can: .*wan2.1-14b"),
    (dict(model="no-such-model"), "not a preset, an existing folder or a hub repo id"),
    (dict(), "needs a video model"),
    (dict(model="tiny-ltx", steps=0), "steps = 0 is out of range"),
    (dict(model="tiny-ltx", quality="best"), "Unknown generative backend option"),
])
def test_bad_backend_options_are_clear_errors(options, words):
    with pytest.raises(KinetographError, match=words):
        get_backend("generative", **options)


def test_registering_it_keeps_the_package_import_light():
    code = ("import sys, pipelines.interpolation as i; assert 'generative' in i.available_backends(); "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------- CLI
def test_cli_generative_writes_a_playable_video_with_its_settings(tmp_path, capsys):
    src = write_video(tmp_path / "clip.mp4", np.stack(moving_square(count=3, h=48, w=64)), 8.0)
    out = tmp_path / "gen.mp4"
    assert app.main(["interpolate", str(src), "--factor", "2", "--method", "generative", "--model", "tiny-ltx",
                     "--steps", "2", "--seed", "9", "--prompt", "a square slides", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "tiny-ltx seed 9" in printed.out
    assert "denoise 2/2" in printed.err  # each pair's generation shows its steps beside the frame count
    info = probe_video(out)
    assert info.frame_count == 5 and info.codec == "h264" and abs(info.fps - 16.0) < 1e-6
    settings = json.loads(out.with_suffix(".json").read_text())["interpolation"]
    assert settings["backend"] == "generative" and settings["model"] == "tiny-ltx"
    assert (settings["seed"], settings["steps"], settings["prompt"]) == (9, 2, "a square slides")
    assert settings["generation_size"] == "64x64" and settings["frames_per_pair"] == [9]


@pytest.mark.parametrize("extra, words", [
    (["--method", "generative"], "--method generative needs --model"),
    (["--method", "generative", "--model", "tiny-svd"], "cannot generate a video between"),
    (["--method", "generative", "--model", "tiny-ltx", "--quality", "best"], "--quality is a setting of --method flow"),
    (["--model", "tiny-ltx", "--seed", "1"], "--model, --seed only apply to --method generative"),
])
def test_cli_generative_mistakes_exit_2_with_one_line(extra, words, tmp_path, capsys):
    src = write_video(tmp_path / "clip.mp4", np.stack(moving_square(count=3)), 8.0)
    assert app.main(["interpolate", str(src), "--factor", "2", *extra, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert not list(tmp_path.glob("clip-x2*"))


def test_cli_method_choices_are_the_registered_backends():
    from pipelines.interpolation import available_backends

    interpolate = app.build_parser()._subparsers._group_actions[0].choices["interpolate"]
    method = next(action for action in interpolate._actions if action.dest == "method")
    assert list(method.choices) == ["flow", "generative"] and method.default == "flow"
    assert set(method.choices) <= set(available_backends())
