"""The engine's job model end to end: rerun from any output, events, previews, model sharing."""
import dataclasses
import gc
import json
import shutil
import weakref

import numpy as np
import pytest
from video_helpers import FOOTAGE, moving_square_clip

import app
from pipelines import engine
from pipelines.errors import KinetographError
from pipelines.events import Events, Preview, Progress
from pipelines.jobs import InterpolateJob
from pipelines.jobspec import JobSpec
from pipelines.results import job_from_output
from pipelines.video_io import iter_frames, read_metadata

SMALL = dict(frames=9, width=64, height=64, steps=2)


def decoded(path):
    return np.stack(list(iter_frames(path)))


def make_job(task, model, images, **extra):
    job = dict(task=task, model=model, prompt="a red fox", seed=5, **SMALL, **extra)
    if task in ("i2v", "keyframes"):
        job["image"] = images[0]
    if task == "keyframes":
        job["last_image"] = images[1]
    return JobSpec(**job)


@pytest.mark.parametrize("task, model", [("t2v", "tiny-ltx"), ("i2v", "tiny-ltx"), ("keyframes", "tiny-ltx"),
                                         ("t2v", "tiny-wan"), ("i2v", "tiny-wan"), ("keyframes", "tiny-wan")])
def test_rerun_recreates_a_generation_bit_identically(task, model, sample_images, tmp_path):
    first = engine.run(make_job(task, model, sample_images), output_dir=tmp_path)
    again = engine.rerun(first.path, out=str(tmp_path / "again.mp4"))
    assert again.path == tmp_path / "again.mp4"
    assert np.array_equal(decoded(first.path), decoded(again.path))
    meta = read_metadata(again.path)
    assert meta["kind"] == "generate"
    assert {**meta["job"], "out": None} == read_metadata(first.path)["job"]  # the same job, a new file
    if task != "t2v":
        assert meta["inputs"]["image"]["sha256"]


def test_rerun_through_the_cli_and_a_changed_input_is_refused(sample_images, tmp_path, capsys):
    first = engine.run(make_job("i2v", "tiny-ltx", sample_images), output_dir=tmp_path)
    assert app.main(["rerun", str(first.path), "--out", str(tmp_path / "cli.mp4"), "--quiet"]) == 0
    assert np.array_equal(decoded(first.path), decoded(tmp_path / "cli.mp4"))
    with open(sample_images[0], "ab") as image:  # the start image changes after the output was made
        image.write(b"\0")
    assert app.main(["rerun", str(first.path), "--out", str(tmp_path / "changed.mp4"), "--quiet"]) == 2
    assert "has changed since this output was made" in capsys.readouterr().err
    assert not (tmp_path / "changed.mp4").exists()


@pytest.mark.skipif(not (FOOTAGE / "carphone.mp4").is_file(), reason="shared footage not present")
def test_rerun_recreates_a_flow_interpolation_of_a_shared_clip(tmp_path):
    clip = tmp_path / "carphone.mp4"
    shutil.copy(FOOTAGE / "carphone.mp4", clip)
    first = engine.run(InterpolateJob(input=str(clip), factor=2, end=8, out=str(tmp_path / "x2.mp4")))
    meta = read_metadata(first.path)
    assert meta["kind"] == "interpolate" and meta["job"]["factor"] == 2 and meta["inputs"]["input"]["sha256"]
    again = engine.rerun(first.path, out=str(tmp_path / "again.mp4"))
    assert first.frame_count == again.frame_count == 15
    assert np.array_equal(decoded(first.path), decoded(again.path))


def test_rerun_recreates_a_generative_interpolation(tmp_path):
    moving_square_clip(tmp_path / "src.mp4", count=3, width=64, height=48)
    job = InterpolateJob(input=str(tmp_path / "src.mp4"), factor=2, method="generative", model="tiny-ltx", steps=1)
    first = engine.run(job)
    assert read_metadata(first.path)["job"]["seed"] == first.seed is not None  # drawn once, recorded
    assert read_metadata(first.path)["interpolation"]["frames_per_pair"]  # pairs were generated, not cut
    again = engine.rerun(first.path, out=str(tmp_path / "again.mp4"))
    assert np.array_equal(decoded(first.path), decoded(again.path))


def test_an_output_without_a_job_says_it_cannot_be_rerun(tmp_path):
    from pipelines.video_io import VideoWriter

    with VideoWriter(tmp_path / "old.mp4", 8, metadata={"task": "interpolate", "interpolation": {}}) as writer:
        writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(KinetographError, match="carries no job"):
        job_from_output(tmp_path / "old.mp4")


def test_a_format_1_generation_output_is_read_as_a_generate_job(tmp_path, sample_images):
    result = engine.run(make_job("t2v", "tiny-ltx", sample_images), output_dir=tmp_path)
    sidecar = result.path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    old = {k: v for k, v in meta.items() if k not in ("kind", "inputs")}
    old["kinetograph"]["format"] = 1
    result.path.unlink()
    sidecar.write_text(json.dumps(old))  # the sidecar is the fallback where the mp4 is gone
    job, _ = job_from_output(sidecar.with_suffix(".mp4"))
    assert job == dataclasses.replace(result.job)


def test_events_progress_never_goes_backwards_and_previews_arrive(tmp_path, sample_images):
    seen = []
    events = Events([seen.append], preview_every=1)
    engine.run(make_job("t2v", "tiny-wan", sample_images), events, output_dir=tmp_path)
    progress = [e for e in seen if isinstance(e, Progress)]
    previews = [e for e in seen if isinstance(e, Preview)]
    by_stage = {}
    for event in progress:
        assert event.done >= by_stage.get(event.stage, 0), f"{event.stage} went backwards"
        by_stage[event.stage] = event.done
    assert [s for s in dict.fromkeys(e.stage for e in progress)] == ["load", "encode", "denoise", "decode", "write"]
    assert len(previews) == 2 and previews[0].frames.dtype == np.uint8 and previews[0].frames.ndim == 4


def test_nested_progress_gives_one_overall_fraction():
    seen = []
    events = Events([seen.append])
    events.nested("interpolate", 3, 4).progress("denoise", 1, 2)
    assert seen[0].within == (("interpolate", 3, 4),) and seen[0].fraction == pytest.approx(0.875)


def test_generate_preview_dir_leaves_pngs(tmp_path):
    code = app.main(["generate", "--model", "tiny-ltx", "--prompt", "x", "--frames", "9", "--width", "64",
                     "--height", "64", "--steps", "3", "--seed", "1", "--out", str(tmp_path / "p.mp4"),
                     "--preview-dir", str(tmp_path / "previews"), "--quiet"])
    assert code == 0
    pngs = sorted((tmp_path / "previews").glob("preview-*.png"))
    assert len(pngs) == 3


def test_t2v_then_keyframes_on_one_checkpoint_loads_the_weights_once(monkeypatch, sample_images, tmp_path):
    from pipelines import models
    from pipelines.models import ModelManager, resolve_model

    loads = []
    real = models.load_pipeline
    monkeypatch.setattr(models, "load_pipeline", lambda source, *a, **k: loads.append(source.pipeline_class)
                        or real(source, *a, **k))
    manager = ModelManager()
    engine.run(make_job("t2v", "tiny-ltx", sample_images), manager=manager, output_dir=tmp_path)
    engine.run(make_job("keyframes", "tiny-ltx", sample_images), manager=manager, output_dir=tmp_path)
    assert loads == ["LTXPipeline"]
    t2v = manager.get(resolve_model("tiny-ltx", "t2v"))
    alive = weakref.ref(t2v.transformer)
    del t2v
    manager.release(resolve_model("tiny-ltx", "keyframes"))  # one model: every pipeline made from its weights
    gc.collect()
    assert len(manager.cache) == 0 and alive() is None


def test_generative_interpolation_reports_each_generation_within_its_output_frame(tmp_path):
    moving_square_clip(tmp_path / "src.mp4", count=3, width=64, height=48)
    seen = []
    job = InterpolateJob(input=str(tmp_path / "src.mp4"), factor=2, method="generative", model="tiny-ltx", steps=2,
                         seed=1)
    engine.run(job, Events([seen.append], preview_every=1))
    nested = [e for e in seen if isinstance(e, Progress) and e.within]
    assert {e.within[0][0] for e in nested} == {"interpolate"} and {"load", "denoise", "decode"} <= {e.stage for e in nested}
    fractions = [e.fraction for e in seen if isinstance(e, Progress) and (e.within or e.stage == "interpolate")
                 and e.stage in ("interpolate", "denoise")]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sum(1 for e in seen if isinstance(e, Preview) and e.within) == 2 * 2  # two pairs, two steps each


def test_a_job_is_checked_once_per_run(monkeypatch, sample_images, tmp_path):
    calls = []
    real = JobSpec.check
    monkeypatch.setattr(JobSpec, "check", lambda self: calls.append(self) or real(self))
    engine.run(make_job("t2v", "tiny-ltx", sample_images), output_dir=tmp_path)
    assert len(calls) == 1


def test_loading_a_hub_model_that_is_not_cached_offline_says_which_files(monkeypatch):
    """load_pipeline tells a missing model by huggingface_hub's error types in the chain, not by message text."""
    from pipelines.models import load_pipeline, resolve_model

    source = resolve_model("ltx-video", "t2v")
    with pytest.raises(KinetographError, match="(?s)not in the local Hugging Face cache.*hf download Lightricks/LTX-Video"):
        load_pipeline(source)
