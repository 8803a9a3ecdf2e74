"""Long-video extension end to end on tiny models: lengths, originals kept, timelines, resume, memory, errors."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from video_helpers import FOOTAGE, moving_square_clip

import app
from pipelines import engine
from pipelines.errors import KinetographError
from pipelines.jobs import ExtendJob
from pipelines.jobspec import JobSpec
from pipelines.video_io import VideoWriter, probe_video, read_frames, read_metadata

REPO = Path(__file__).resolve().parents[1]
FAST = dict(steps=2, seed=2)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.skipif(not (FOOTAGE / "carphone.mp4").is_file(), reason="shared footage not present")
@pytest.mark.parametrize("model, segment_frames", [("tiny-ltx", 17), ("tiny-wan", 13), ("tiny-animatediff", 20)])
def test_extend_a_shared_clip_through_the_cli(model, segment_frames, tmp_path):
    clip = tmp_path / "carphone.mp4"
    shutil.copy(FOOTAGE / "carphone.mp4", clip)
    before = sha(clip)
    out = tmp_path / "longer.mp4"
    code = app.main(["extend", str(clip), "--model", model, "--seconds", "0.8", "--prompt", "the man keeps talking",
                     "--segment-frames", str(segment_frames), "--steps", "1", "--seed", "1", "--out", str(out),
                     "--quiet"])
    assert code == 0
    source, result = probe_video(clip), probe_video(out)
    added = round(0.8 * source.fps)
    assert result.frame_count == source.frame_count + added
    assert (result.width, result.height) == (source.width, source.height) and result.fps == pytest.approx(source.fps)
    original, extended = read_frames(clip), read_frames(out)
    overlap = read_metadata(out)["layout"]["overlap"]
    kept = source.frame_count - overlap  # the last `overlap` input frames are crossfaded into the extension
    assert psnr(original[:kept], extended[:kept]) > 33  # the originals, re-encoded once (crf 18)
    assert psnr(original[1:kept], extended[:kept - 1]) < psnr(original[:kept], extended[:kept]) - 3  # in place
    assert sha(clip) == before and not list(tmp_path.glob(".*segments*"))


def test_extend_a_generated_clip_and_rerun_it(tmp_path):
    made = engine.run(JobSpec(model="tiny-ltx", prompt="a fox", frames=9, width=64, height=64, **FAST),
                      output_dir=tmp_path)
    job = ExtendJob(input=str(made.path), model="tiny-ltx", seconds=1.0, prompt="it runs", segment_frames=17,
                    out=str(tmp_path / "ext.mp4"), **FAST)
    first = engine.run(job)
    fps = made.fps
    assert first.frame_count == 9 + round(1.0 * fps) and first.details["segments"] == 3  # 8 new frames each
    meta = read_metadata(first.path)
    assert meta["kind"] == "extend" and meta["inputs"]["input"]["sha256"] == sha(made.path)
    assert all(s["seam_score"] is not None for s in meta["segments"])
    again = engine.rerun(first.path, out=str(tmp_path / "again.mp4"))
    assert np.array_equal(read_frames(first.path), read_frames(again.path))


def test_timeline_prompts_reach_their_segments_and_a_cut_starts_fresh(tmp_path):
    timeline = tmp_path / "t.txt"
    timeline.write_text("0-1: a fox wakes\n1: it runs into the snow\n[cut] 2.5: an owl watches\n")
    out = tmp_path / "long.mp4"
    code = app.main(["generate", "--task", "long", "--model", "tiny-ltx", "--timeline", str(timeline), "--seconds", "3",
                     "--width", "64", "--height", "64", "--fps", "8", "--segment-frames", "17", "--steps", "2",
                     "--seed", "5", "--out", str(out), "--quiet"])
    assert code == 0
    assert probe_video(out).frame_count == 24
    segments = read_metadata(out)["segments"]
    starts = [s["segment"] for s in segments]
    prompts = [s["prompt"] for s in segments]
    assert prompts[0] == "a fox wakes" and "it runs into the snow" in prompts and prompts[-1] == "an owl watches"
    cut = next(s for s in segments if s["prompt"] == "an owl watches")
    assert cut["new_shot"] and cut["task"] == "t2v" and cut["seam_score"] is None
    assert all(s["task"] == "keyframes" for s in segments[1:] if s["prompt"] != "an owl watches")
    assert starts == list(range(len(segments)))


def _extend_command(clip, out):
    return [sys.executable, str(REPO / "app.py"), "extend", str(clip), "--model", "tiny-ltx", "--seconds", "3",
            "--prompt", "onwards", "--segment-frames", "17", "--steps", "2", "--seed", "4", "--out", str(out), "--quiet"]


def test_a_killed_extension_resumes_and_ends_with_the_uninterrupted_video(tmp_path):
    clip = moving_square_clip(tmp_path / "clip.mp4")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    straight = tmp_path / "straight.mp4"
    subprocess.run(_extend_command(clip, straight), env=env, check=True, timeout=300, capture_output=True)

    killed = tmp_path / "killed.mp4"
    manifest = tmp_path / ".killed.segments" / "manifest.json"
    process = subprocess.Popen(_extend_command(clip, killed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if manifest.is_file() and len(json.loads(manifest.read_text() or "{}").get("segments", [])) >= 1:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not killed.exists()

    # The same command again (a process like the uninterrupted one: same torch threads, same float sums)
    subprocess.run(_extend_command(clip, killed), env=env, check=True, timeout=300, capture_output=True)
    assert any("resumed after segment" in n for n in read_metadata(killed)["notes"])
    assert np.array_equal(read_frames(straight), read_frames(killed))
    assert not manifest.parent.exists()  # the store is removed once the video is complete


_RSS_SCRIPT = """
import resource, sys
from pipelines import engine
from pipelines.jobs import ExtendJob
engine.run(ExtendJob(input=sys.argv[1], model="tiny-ltx", seconds=float(sys.argv[2]), prompt="on", segment_frames=17,
                     steps=1, seed=1, out=sys.argv[3]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_a_four_times_longer_extension_needs_no_more_memory(tmp_path):
    clip = moving_square_clip(tmp_path / "clip.mp4")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    peaks = []
    for seconds in (2.0, 8.0):
        done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(clip), str(seconds),
                               str(tmp_path / f"x{seconds}.mp4")], env=env, check=True, timeout=600,
                              capture_output=True, text=True)
        peaks.append(int(done.stdout.strip().splitlines()[-1]))
    assert probe_video(tmp_path / "x8.0.mp4").frame_count == 12 + 64
    assert peaks[1] <= 1.15 * peaks[0], f"peak RSS {peaks[0]} KiB at 1x, {peaks[1]} KiB at 4x"


@pytest.mark.parametrize("args, message", [
    (["--seconds", "0"], "--seconds must be more than 0"),
    (["--seconds", "1", "--context-frames", "40"], "needs at\\s+least 40"),
    (["--seconds", "nan"], "seconds must be a finite number"),
    (["--seconds", "1", "--timeline", "TIMELINE"], "overlap or are out of order"),
    (["--seconds", "1", "--anchor", "2"], "--anchor = 2.0 is out of range"),
])
def test_bad_extension_requests_are_refused_and_leave_the_input_alone(args, message, tmp_path, capsys):
    clip = moving_square_clip(tmp_path / "clip.mp4")
    before = sha(clip)
    timeline = tmp_path / "bad.txt"
    timeline.write_text("0: a\n3: b\n2: c\n")
    args = [str(timeline) if a == "TIMELINE" else a for a in args]
    code = app.main(["extend", str(clip), "--model", "tiny-ltx", "--prompt", "x", "--steps", "1", *args, "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    import re

    assert re.search(message, err), err
    assert sha(clip) == before and sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "clip.json", "clip.mp4"]


def test_an_unreadable_input_and_a_negative_timeline_are_refused(tmp_path, capsys):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    assert app.main(["extend", str(junk), "--model", "tiny-ltx", "--seconds", "1", "--prompt", "x"]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(KinetographError, match="must start at 0 s|0 s or more"):
        ExtendJob(input=str(junk), model="tiny-ltx", seconds=1, timeline=((-1, "a", False),)).check()


def test_a_cancelled_extension_keeps_finished_segments_and_nothing_else(tmp_path):
    from pipelines.errors import JobCancelled
    from pipelines.events import Events, Progress

    clip = moving_square_clip(tmp_path / "clip.mp4")
    job = ExtendJob(input=str(clip), model="tiny-ltx", seconds=3, prompt="on", segment_frames=17,
                    out=str(tmp_path / "out.mp4"), **FAST)

    def stop_at(segment):
        def subscriber(event):
            if isinstance(event, Progress) and event.stage == "segment" and event.done == segment and not event.within:
                raise JobCancelled("stopped")
        return Events([subscriber])

    with pytest.raises(JobCancelled):
        engine.run(job, stop_at(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.mp4"]  # nothing to resume: no store
    with pytest.raises(JobCancelled):
        engine.run(job, stop_at(1))
    store = tmp_path / ".out.segments"
    assert json.loads((store / "manifest.json").read_text())["segments"][0]["index"] == 0
    assert not (tmp_path / "out.mp4").exists()
    done = engine.run(job)
    assert any("resumed after segment 1" in n for n in done.notes) and not store.exists()


@pytest.mark.skipif(not (FOOTAGE / "bigbuckbunny.mp4").is_file(), reason="shared footage not present")
def test_an_extended_video_keeps_the_inputs_sound_for_its_own_length(tmp_path):
    import av

    from pipelines.video_io import iter_frames

    clip = tmp_path / "with-sound.mp4"
    with VideoWriter(clip, 25, audio_source=FOOTAGE / "bigbuckbunny.mp4") as writer:
        for frame in iter_frames(FOOTAGE / "bigbuckbunny.mp4", 0, 25):
            writer.write(frame[::10, ::10][:64, :96])
    result = engine.run(ExtendJob(input=str(clip), model="tiny-ltx", seconds=0.5, prompt="on", segment_frames=17,
                                  out=str(tmp_path / "ext.mp4"), **FAST))
    with av.open(str(result.path)) as container:
        kinds = {s.type: float(s.duration * s.time_base) for s in container.streams if s.duration}
    assert kinds["audio"] == pytest.approx(1.0, abs=0.1) and kinds["video"] == pytest.approx(1.5, abs=0.05)
    assert any("sound is kept" in n for n in result.notes)


def test_skyreels_extends_in_its_own_diffusion_forcing_mode(tmp_path):
    """SkyReels-V2 continues through its video-to-video pipeline (what exists is history, the call returns only
    the frames after it): the frame count is exact and the input's frames come first."""
    clip = moving_square_clip(tmp_path / "clip.mp4")
    result = engine.run(ExtendJob(input=str(clip), model="tiny-skyreels-df", seconds=2, prompt="on", segment_frames=9,
                                  context_frames=5, out=str(tmp_path / "ext.mp4"), **FAST))
    assert result.frame_count == 12 + 16 and result.details["overlap"] == 0
    meta = read_metadata(result.path)
    assert {s["task"] for s in meta["segments"]} == {"v2v"} and len(meta["segments"]) == 2
    assert psnr(read_frames(clip), read_frames(result.path)[:12]) > 33


# ------------------------------------------------------------------------------- AnimateDiff (FreeNoise)
def _motion_blocks(pipe):
    unet = pipe.unet
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    return [b for block in blocks for m in getattr(block, "motion_modules", []) for b in m.transformer_blocks]


def test_animatediff_continues_from_the_latents_it_ended_with_and_runs_freenoise_for_long_segments(tmp_path):
    """A continuation's known frames come back exactly as the latents they were given (no VAE round trip);
    a segment longer than the motion window runs FreeNoise's windowed blocks, and the pipeline is plain again
    after: a text-to-video made after it equals one made before, frame for frame."""
    from diffusers.models.attention import BasicTransformerBlock, FreeNoiseTransformerBlock

    from pipelines.events import Events, Progress
    from pipelines.jobs import MemoryOptions
    from pipelines.models import ModelManager, resolve_model
    from pipelines.tasks.generate import _frames, generate_frames

    manager = ModelManager()
    t2v = JobSpec(model="tiny-animatediff", prompt="a fox", frames=8, width=64, height=64, **FAST)
    before = generate_frames(t2v, manager=manager).frames
    pipe = manager.get(resolve_model("tiny-animatediff", "continue"), None)
    seen = []

    def watch(event):
        if isinstance(event, Progress) and event.stage == "denoise":
            seen.append({type(b) for b in _motion_blocks(pipe)})

    context = read_frames(moving_square_clip(tmp_path / "clip.mp4"))[-4:]
    job = JobSpec(task="continue", model="tiny-animatediff", prompt="on", frames=24, width=64, height=64, **FAST)
    first = _frames(job, None, Events([watch]), _cancel(), manager, MemoryOptions(), None,
                    continuation=list(context), keep_latents=True)
    assert seen and all(kinds == {FreeNoiseTransformerBlock} for kinds in seen)
    assert {type(b) for b in _motion_blocks(pipe)} == {BasicTransformerBlock}
    carried = first.latents[:, :, -4:].clone()
    second = _frames(job, None, Events(), _cancel(), manager, MemoryOptions(), None, continuation=list(first.frames[-4:]),
                     carried=carried, keep_latents=True)
    assert torch_equal(second.latents[:, :, :4], carried)  # exactly: put back at the last step
    # The same latents decode to the same frames, up to a grey level: the VAE decodes them in other batches.
    assert np.abs(second.frames[:4].astype(int) - first.frames[-4:]).max() <= 1
    assert np.array_equal(generate_frames(t2v, manager=manager).frames, before)


def _cancel():
    from pipelines.progress import CancelToken

    return CancelToken()


def torch_equal(a, b):
    import torch

    return bool(torch.equal(a, b))


def test_a_cancelled_animatediff_extension_resumes_to_the_uninterrupted_video(tmp_path):
    """The carried latents are part of a finished segment's saved state: stopping after the first segment and
    running again gives the same frames as a run that never stopped."""
    from pipelines.errors import JobCancelled
    from pipelines.events import Events, Progress

    clip = moving_square_clip(tmp_path / "clip.mp4")

    def job(name):
        return ExtendJob(input=str(clip), model="tiny-animatediff", seconds=4, prompt="on", segment_frames=16,
                         context_frames=4, overlap=2, out=str(tmp_path / name), **FAST)

    whole = engine.run(job("whole.mp4"))

    def stop_after_first(event):
        if isinstance(event, Progress) and event.stage == "segment" and event.done == 1 and not event.within:
            raise JobCancelled("stopped")

    with pytest.raises(JobCancelled):
        engine.run(job("resumed.mp4"), Events([stop_after_first]))
    resumed = engine.run(job("resumed.mp4"))
    assert any("resumed after segment 1" in n for n in resumed.notes)
    assert whole.details["segments"] >= 3 and resumed.frame_count == whole.frame_count == 12 + 32
    assert np.array_equal(read_frames(resumed.path), read_frames(whole.path))
