"""Engine end to end on the built-in tiny models: every task, determinism, metadata, errors, cancel."""
import json

import numpy as np
import pytest

from pipelines import engine
from pipelines.errors import JobCancelled, KinetographError
from pipelines.jobspec import JobSpec
from pipelines.progress import CancelToken
from pipelines.tasks.generate import fit_images
from pipelines.video_io import iter_frames, probe_video, read_image, read_metadata

SMALL = dict(frames=9, width=64, height=64, steps=2)

CASES = [
    ("t2v", "tiny-ltx"),
    ("i2v", "tiny-ltx"),
    ("keyframes", "tiny-ltx"),
    ("t2v", "tiny-wan"),
    ("i2v", "tiny-wan"),
    ("keyframes", "tiny-wan"),
    ("t2v", "tiny-animatediff"),
    ("t2v", "tiny-skyreels-df"),
    ("i2v", "tiny-svd"),
]


def make_job(task, model, images, **overrides):
    kwargs = dict(task=task, model=model, prompt="a red fox", seed=3, **SMALL)
    if model in ("tiny-animatediff", "tiny-svd"):
        kwargs.update(width=32, height=32)  # UNet families are slow at 64 px on CPU
    if task in ("i2v", "keyframes"):
        kwargs["image"] = images[0]
    if task == "keyframes":
        kwargs["last_image"] = images[1]
    kwargs.update(overrides)
    return JobSpec(**kwargs)


def result_family(model):
    return {"tiny-ltx": "ltx", "tiny-wan": "wan", "tiny-animatediff": "animatediff",
            "tiny-skyreels-df": "skyreels-df", "tiny-svd": "svd"}[model]


def decoded(path):
    return np.stack(list(iter_frames(path)))


@pytest.mark.parametrize("task, model", CASES)
def test_every_task_runs_end_to_end_and_is_reproducible(task, model, sample_images, tmp_path):
    job = make_job(task, model, sample_images)
    steps = []
    first = engine.run(job, progress=lambda s, d, t: steps.append((s, d, t)), output_dir=tmp_path)

    info = probe_video(first.path)
    assert info.frame_count == first.frame_count == 9
    assert (info.width, info.height) == (job.width, job.height)
    meta = read_metadata(first.path)
    assert meta["job"]["prompt"] == "a red fox" and meta["seed"] == 3 and meta["job"]["task"] == task
    assert meta["model"]["family"] == result_family(model)
    assert {"load", "encode", "denoise", "decode", "write", "total"} <= set(meta["timings"])
    assert ("denoise", 2, 2) in steps  # progress reached the last step

    again = engine.run(job, output_dir=tmp_path)
    assert again.path != first.path  # never overwrites
    assert np.array_equal(decoded(first.path), decoded(again.path))

    other = engine.run(job.__class__(**{**job.to_dict(), "seed": 4, "adjustments": ()}), output_dir=tmp_path)
    assert not np.array_equal(decoded(first.path), decoded(other.path))


@pytest.mark.parametrize("task, model", [("t2v", "tiny-ltx"), ("i2v", "tiny-ltx"), ("keyframes", "tiny-ltx"),
                                         ("t2v", "tiny-wan"), ("keyframes", "tiny-wan"),
                                         ("t2v", "tiny-animatediff"), ("t2v", "tiny-skyreels-df"),
                                         ("i2v", "tiny-svd")])
def test_staged_run_matches_the_pipelines_own_call(task, model, sample_images):
    """encode / denoise / decode run separately must give the pipeline's own frames."""
    import torch

    from pipelines.models import load_pipeline, resolve_model

    job = make_job(task, model, sample_images)
    source = resolve_model(job.model, task)
    job = job.adapted_to(source.family)
    pipe = load_pipeline(source)
    adapter = source.family.adapter
    images, _ = fit_images(
        {k: read_image(getattr(job, k)) for k in ("image", "last_image") if getattr(job, k)},
        job.width, job.height)
    common = dict(**adapter.call_kwargs(job), **adapter.task_inputs(pipe, job, images))
    prompts = {} if source.family.id == "svd" else dict(prompt=job.prompt, negative_prompt=job.negative_prompt)
    reference = pipe(**prompts, generator=torch.Generator().manual_seed(7), output_type="np", **common).frames[0]
    generator = torch.Generator().manual_seed(7)
    embeds = adapter.encode_prompt(pipe, job, "cpu")
    latents = pipe(**embeds, generator=generator, output_type="latent", **common).frames
    staged = adapter.decode(pipe, latents, job, generator)
    assert staged.shape == reference.shape
    np.testing.assert_allclose(staged, reference, atol=1e-5)


def test_metadata_reproduces_the_result(sample_images, tmp_path):
    first = engine.run(make_job("i2v", "tiny-wan", sample_images, seed=11), output_dir=tmp_path)
    settings = read_metadata(first.path)["job"]
    settings["out"] = None
    again = engine.run(JobSpec.from_dict(settings), output_dir=tmp_path)
    assert np.array_equal(decoded(first.path), decoded(again.path))
    sidecar = json.loads(first.path.with_suffix(".json").read_text())
    assert sidecar["job"] == read_metadata(first.path)["job"]


def test_adaptation_is_reported(tmp_path):
    result = engine.run(JobSpec(prompt="x", model="tiny-wan", frames=10, width=70, height=60, steps=1, seed=0),
                        output_dir=tmp_path)
    assert result.frame_count == 9 and (result.width, result.height) == (64, 64)
    assert any("frames 10 -> 9" in n for n in result.notes)
    assert any("70x60 -> 64x64" in n for n in read_metadata(result.path)["notes"])


def test_cancel_stops_between_steps_and_leaves_nothing(tmp_path):
    token = CancelToken()

    def cancel_at_first_step(stage, done, total):
        if stage == "denoise" and done >= 1:
            token.cancel()

    job = JobSpec(prompt="x", model="tiny-ltx", steps=4, seed=1, **{k: v for k, v in SMALL.items() if k != "steps"})
    with pytest.raises(JobCancelled):
        engine.run(job, progress=cancel_at_first_step, cancel=token, output_dir=tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("job_kwargs, words", [
    (dict(model="someone/not-a-real-model"), "hf download someone/not-a-real-model"),
    (dict(model="wan2.1-t2v-1.3b"), "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"),
    (dict(model="no-such-preset"), "not a preset"),
    (dict(model="tiny-animatediff", task="i2v", image="missing.png"), "cannot do the task .i2v."),
    (dict(frames=0), "frames = 0"),
    (dict(width=100000), "width"),
])
def test_bad_jobs_fail_clearly_and_leave_no_file(job_kwargs, words, tmp_path):
    base = dict(prompt="x", model="tiny-ltx", seed=1, **SMALL)
    base.update(job_kwargs)
    with pytest.raises(KinetographError, match=words):
        engine.run(JobSpec(**base), output_dir=tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_missing_offline_model_names_files_and_command(tmp_path):
    with pytest.raises(KinetographError) as info:
        engine.run(JobSpec(prompt="x", model="ltx-video", seed=1, **SMALL), output_dir=tmp_path)
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and ".venv/bin/hf download Lightricks/LTX-Video-0.9.5" in message
    assert "transformer/" in message and "vae/" in message


def test_unreadable_image_fails_before_loading(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(KinetographError, match="broken.png"):
        engine.run(JobSpec(task="i2v", prompt="x", model="tiny-ltx", image=str(bad), seed=1, **SMALL),
                   output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.mp4"))


def test_local_folder_is_a_model_reference(tmp_path):
    from pipelines.models import ensure_tiny_model

    folder = ensure_tiny_model("tiny-wan")
    result = engine.run(JobSpec(prompt="x", model=str(folder), seed=2, **SMALL), output_dir=tmp_path)
    assert read_metadata(result.path)["model"]["kind"] == "folder"
    with pytest.raises(KinetographError, match="model_index.json"):
        engine.run(JobSpec(prompt="x", model=str(tmp_path), seed=2, **SMALL), output_dir=tmp_path)


def test_pickled_single_files_are_refused(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"\x80\x04")
    with pytest.raises(KinetographError, match="safetensors only"):
        engine.run(JobSpec(prompt="x", model=str(ckpt), seed=2, **SMALL), output_dir=tmp_path / "o")


def test_a_plan_can_load_components_its_own_way():
    """Components named in plan.load_kwargs load separately (here device_map="cpu"; on a GPU "cuda" or a
    block map) and give the same pipeline as a plain load."""
    import types

    import torch

    from pipelines.models import ModelManager, load_pipeline, resolve_model

    source = resolve_model("tiny-wan", "t2v")
    plan = types.SimpleNamespace(load_kwargs={"transformer": {"device_map": "cpu"}})
    planned, plain = load_pipeline(source, plan), load_pipeline(source)
    for (name, a), b in zip(planned.transformer.state_dict().items(), plain.transformer.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    manager = ModelManager()
    assert manager.get(source, plan) is manager.get(source, plan)
    assert manager.get(source, plan) is not manager.get(source)  # a different load is a different entry


def test_single_file_transformer_replaces_the_denoiser(tmp_path):
    """--transformer FILE.safetensors: the denoiser's weights come from the file, the rest from --model."""
    import diffusers
    import torch
    from safetensors.torch import save_file

    from pipelines.models import ensure_tiny_model

    base = diffusers.WanTransformer3DModel.from_pretrained(ensure_tiny_model("tiny-wan"), subfolder="transformer")
    same, changed = tmp_path / "same.safetensors", tmp_path / "changed.safetensors"
    state = {k: v.contiguous() for k, v in base.state_dict().items()}
    save_file(state, same)
    save_file({k: (v * 1.5 if v.ndim == 2 else v) for k, v in state.items()}, changed)

    job = JobSpec(prompt="x", model="tiny-wan", seed=9, **SMALL)
    plain = decoded(engine.run(job, output_dir=tmp_path).path)
    with_same = engine.run(JobSpec(**{**job.to_dict(), "transformer": str(same), "adjustments": ()}),
                           output_dir=tmp_path)
    assert read_metadata(with_same.path)["model"]["denoiser_file"] == str(same.resolve())
    assert np.array_equal(plain, decoded(with_same.path))
    with_changed = engine.run(JobSpec(**{**job.to_dict(), "transformer": str(changed), "adjustments": ()}),
                              output_dir=tmp_path)
    assert not np.array_equal(plain, decoded(with_changed.path))
    assert torch.is_tensor(state["scale_shift_table"])  # the file really held diffusers-format keys

    with pytest.raises(KinetographError, match="--transformer"):
        engine.run(JobSpec(prompt="x", model=str(same), seed=1, **SMALL), output_dir=tmp_path / "o")
    with pytest.raises(KinetographError, match="does not exist"):
        engine.run(JobSpec(prompt="x", model="tiny-wan", transformer=str(tmp_path / "nope.safetensors"), seed=1,
                           **SMALL), output_dir=tmp_path / "o")


def test_out_of_memory_with_no_cheaper_plan_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    """On the CPU the ladder has one plan: a GPU OOM there ends the job with advice, not a traceback."""
    import torch

    from pipelines.families import ltx

    def decode_out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ltx.LTXAdapter, "decode", decode_out_of_memory)
    with pytest.raises(KinetographError, match="Out of GPU memory in the decode stage"):
        engine.run(JobSpec(prompt="x", model="tiny-ltx", seed=1, **SMALL), output_dir=tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_staged_load_encodes_with_the_encoders_alone_and_gives_the_same_frames(tmp_path, request):
    """A plan with staged_load (host RAM too small for encoders + denoiser at once): the encoders load
    alone, encode and are dropped; the denoiser's pipeline is loaded without them; same frames."""
    from pipelines import models

    job = JobSpec(prompt="a red fox", model="tiny-wan", seed=21, **SMALL)
    plain = decoded(engine.run(job, output_dir=tmp_path).path)

    loads = request.getfixturevalue("staged_loads")  # staged plans from here on
    staged = engine.run(job, manager=models.ModelManager(), output_dir=tmp_path)
    (skip0, pipe0), (skip1, pipe1) = loads
    assert (skip0, pipe0.text_encoder is None, getattr(pipe0, "transformer", None) is None) == \
        (models.HEAVY_COMPONENTS, False, True)  # encoders alone
    assert (skip1, pipe1.text_encoder is None, getattr(pipe1, "transformer", None) is None) == \
        (models.TEXT_ENCODERS, True, False)  # then everything but the encoders
    assert np.array_equal(plain, decoded(staged.path))
