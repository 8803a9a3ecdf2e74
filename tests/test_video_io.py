"""Video/image I/O: round trips, metadata, atomic writes, audio, and clear errors on bad input.

All videos are made synthetically under tmp_path (tiny sizes, so the whole file runs in seconds).
"""
from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from video_helpers import FOOTAGE, write_variable_rate_video

from pipelines.errors import KinetographError
from pipelines.video_io import (
    VideoInfo,
    VideoWriter,
    frame_times,
    iter_frames,
    probe_video,
    read_frames,
    read_image,
    read_metadata,
    unique_output_path,
    write_video,
)

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def gradient_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth, slowly moving colour gradient: H.264 keeps it close to the input."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = [
        np.stack([x / width * 200 + 2 * t, y / height * 200, np.full_like(x, 60 + 4 * t)], axis=-1)
        for t in range(count)
    ]
    return np.clip(np.array(frames).reshape(count, height, width, 3), 0, 255).astype(np.uint8)


def numbered_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Flat grey frames whose brightness encodes their index (20 + 15 * index)."""
    levels = 20 + 15 * np.arange(count, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def frame_index_of(frame: np.ndarray) -> int:
    return round((float(frame.mean()) - 20) / 15)


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def make_audio_source(path: Path, seconds: float = 3.0, burst_s: tuple = (1.0, 1.2), sample_rate: int = 44100):
    """An mp4 with a small video track and a stereo AAC track that is silent except for a
    1 kHz tone during ``burst_s``: the tone's onset tells where the audio was cut."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=sample_rate, layout="stereo")
        total = int(seconds * sample_rate)
        t = np.arange(total) / sample_rate
        tone = np.where((t >= burst_s[0]) & (t < burst_s[1]), 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0)
        stereo = np.stack([tone, tone]).astype(np.float32)
        for start in range(0, total, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(stereo[:, start:start + 1024]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
        for index in range(int(seconds * 25)):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


def decoded_audio(path: Path) -> tuple[np.ndarray, int, float]:
    """(first channel samples, sample rate, time of the first sample) of a file's audio."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks, first_time = [], None
        for frame in container.decode(stream):
            if first_time is None:
                first_time = float(frame.time or 0.0)
            chunks.append(frame.to_ndarray()[0])  # planar float: row 0 is the left channel
        return np.concatenate(chunks), stream.codec_context.sample_rate, first_time


def write_plain_mp4(path: Path, frames: np.ndarray, fps: int = 24) -> Path:
    """An mp4 written without Kinetograph (no metadata tag, no sidecar)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_avi(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """An AVI (MPEG-4 part 2): its header states the frame count, as AVI headers do."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        container.start_encoding()  # a header even when there are no frames
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------


def test_round_trip_keeps_frames_count_and_fps(tmp_path):
    frames = gradient_frames(12)
    path = write_video(tmp_path / "clip.mp4", frames, fps=24)

    assert path == tmp_path / "clip.mp4"
    back = read_frames(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert mean_abs_error(back, frames) < 3.0
    info = probe_video(path)
    assert info == VideoInfo(
        path=str(path), width=64, height=48, fps=24.0, frame_count=12, duration_s=0.5,
        has_audio=False, codec="h264",
    )
    assert files_in(tmp_path) == ["clip.json", "clip.mp4"]  # temporary files are gone


@pytest.mark.parametrize(("fps", "exact"), [(29.97, Fraction(30000, 1001)), (23.976, Fraction(24000, 1001)),
                                            (12.5, Fraction(25, 2))])
def test_fractional_fps_gives_exact_timestamps(tmp_path, fps, exact):
    path = write_video(tmp_path / "clip.mp4", gradient_frames(10), fps=fps)

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == exact
        times = [frame.pts * stream.time_base for frame in container.decode(stream)]
    assert times == [index / exact for index in range(10)]  # exact, no drift
    assert probe_video(path).fps == pytest.approx(float(exact))
    assert read_metadata(path)["video"]["fps"] == pytest.approx(float(exact))


def test_odd_size_is_padded_by_repeating_the_edge(tmp_path):
    frames = gradient_frames(4, height=25, width=33)
    path = write_video(tmp_path / "odd.mp4", frames, fps=10)

    back = read_frames(path)
    assert back.shape == (4, 26, 34, 3)
    assert mean_abs_error(back[:, :25, :33], frames) < 3.0
    # the added row/column repeat the last real ones
    assert mean_abs_error(back[:, 25, :33], frames[:, 24]) < 4.0
    assert mean_abs_error(back[:, :25, 33], frames[:, :, 32]) < 4.0
    video = read_metadata(path)["video"]
    assert video == {"width": 33, "height": 25, "fps": 10.0, "frame_count": 4, "padded_to": [34, 26]}


def test_even_size_records_no_padding(tmp_path):
    path = write_video(tmp_path / "even.mp4", gradient_frames(2), fps=10)
    assert "padded_to" not in read_metadata(path)["video"]


def test_float_numpy_frames_are_scaled_from_0_1(tmp_path):
    frames = gradient_frames(6)
    as_float = frames.astype(np.float32) / 255.0
    as_float[0, :16, :16] = [1.7, -0.3, np.nan]  # out of range and NaN must clip, not wrap around
    expected = frames.copy()
    expected[0, :16, :16] = [255, 0, 0]

    path = write_video(tmp_path / "float.mp4", as_float, fps=8)

    back = read_frames(path)
    assert mean_abs_error(back, expected) < 3.0
    assert mean_abs_error(back[0, 2:14, 2:14], expected[0, 2:14, 2:14]) < 6.0


def test_torch_float_and_uint8_frames(tmp_path):
    torch = pytest.importorskip("torch")
    frames = gradient_frames(6)
    with VideoWriter(tmp_path / "torch.mp4", fps=8) as writer:
        writer.write(torch.from_numpy(frames[:3]).float() / 255.0)  # ComfyUI IMAGE convention
        writer.write(torch.from_numpy(frames[3]))  # a single uint8 frame
        writer.write(list(torch.from_numpy(frames[4:]).to(torch.bfloat16) / 255.0))
        assert writer.frames_written == 6

    back = read_frames(tmp_path / "torch.mp4")
    assert back.shape == frames.shape
    assert mean_abs_error(back, frames) < 3.5  # bfloat16 rounds a little


def test_frames_of_another_size_or_shape_are_refused(tmp_path):
    with VideoWriter(tmp_path / "clip.mp4", fps=8) as writer:
        writer.write(gradient_frames(1)[0])
        with pytest.raises(KinetographError, match="one size"):
            writer.write(gradient_frames(1, height=50)[0])
        with pytest.raises(KinetographError, match="RGB"):
            writer.write(np.zeros((48, 64, 4), np.uint8))
        with pytest.raises(KinetographError, match="dtype"):
            writer.write(np.zeros((48, 64, 3), np.int32))
    assert read_metadata(tmp_path / "clip.mp4")["video"]["frame_count"] == 1


def test_rotated_phone_video_is_read_upright(tmp_path):
    path = tmp_path / "portrait.mp4"
    frames = gradient_frames(3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)  # what a phone held upright records
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    info = probe_video(path)
    assert (info.width, info.height) == (48, 64)
    back = read_frames(path)
    assert back.shape == (3, 64, 48, 3)
    assert mean_abs_error(back, np.rot90(frames, 1, axes=(1, 2))) < 3.0


# --------------------------------------------------------------------------------------
# reading ranges
# --------------------------------------------------------------------------------------


def test_iter_frames_start_stop_step(tmp_path):
    path = write_video(tmp_path / "numbered.mp4", numbered_frames(12), fps=10)

    assert [frame_index_of(f) for f in iter_frames(path)] == list(range(12))
    assert [frame_index_of(f) for f in iter_frames(path, start=2, stop=9, step=3)] == [2, 5, 8]
    assert [frame_index_of(f) for f in iter_frames(path, start=10, stop=50)] == [10, 11]
    frames = list(iter_frames(path, start=1, stop=2))
    assert len(frames) == 1 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8


@pytest.mark.parametrize(("start", "stop", "step"), [(-1, None, 1), (5, 2, 1), (0, None, 0)])
def test_iter_frames_rejects_bad_ranges(tmp_path, start, stop, step):
    path = write_video(tmp_path / "clip.mp4", numbered_frames(3), fps=10)
    with pytest.raises(KinetographError):
        iter_frames(path, start=start, stop=stop, step=step)


def test_read_frames_range_and_max_frames(tmp_path):
    path = write_video(tmp_path / "numbered.mp4", numbered_frames(12), fps=10)

    part = read_frames(path, start=3, stop=7)
    assert [frame_index_of(f) for f in part] == [3, 4, 5, 6]
    assert read_frames(path, start=8, max_frames=4).shape[0] == 4  # exactly at the limit is fine
    with pytest.raises(KinetographError, match="max_frames=5"):
        read_frames(path, max_frames=5)
    with pytest.raises(KinetographError, match="select nothing"):
        read_frames(path, start=20)


# --------------------------------------------------------------------------------------
# bad inputs
# --------------------------------------------------------------------------------------


# Each bad input is named input.*, so an expected message can never match the file name.


def _missing(tmp_path):
    return tmp_path / "input.mp4"


def _empty(tmp_path):
    path = tmp_path / "input.mp4"
    path.write_bytes(b"")
    return path


def _text_renamed(tmp_path):
    path = tmp_path / "input.mp4"
    path.write_text("these are my notes, not a video\n" * 20)
    return path


def _truncated_mp4(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", gradient_frames(30), fps=10)
    path = tmp_path / "input.mp4"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    return path


def _truncated_avi(tmp_path):
    """Cut in the middle of the frame data: the header still promises 30 frames."""
    data = write_avi(tmp_path / "whole.avi", gradient_frames(30)).read_bytes()
    frames_start, index_start = data.find(b"movi"), data.find(b"idx1")
    path = tmp_path / "input.avi"
    path.write_bytes(data[: (frames_start + index_start) // 2])
    return path


def _zero_frames(tmp_path):
    return write_avi(tmp_path / "input.avi", gradient_frames(0))


def _folder(tmp_path):
    path = tmp_path / "input.mp4"
    path.mkdir()
    return path


BAD_VIDEOS = {
    "missing": (_missing, "does not exist"),
    "empty": (_empty, "empty"),
    "text renamed .mp4": (_text_renamed, "not a readable video"),
    "truncated mp4": (_truncated_mp4, "not a readable video"),
    "truncated avi": (_truncated_avi, "promises 30 frames; the file is truncated"),
    "zero frames": (_zero_frames, "no frames"),
    "folder": (_folder, "folder"),
}


@pytest.mark.parametrize("kind", BAD_VIDEOS)
def test_bad_video_inputs_raise_clear_errors(tmp_path, kind):
    make, message = BAD_VIDEOS[kind]
    path = make(tmp_path)

    with pytest.raises(KinetographError, match=message):
        # probe may already refuse; otherwise reading every frame must
        probe_video(path)
        read_frames(path)
    with pytest.raises(KinetographError, match=message):
        for _ in iter_frames(path):
            pass


def test_unreadable_video_error_says_what_to_do(tmp_path):
    with pytest.raises(KinetographError, match=r"Re-export it as mp4 \(H\.264\)"):
        probe_video(_text_renamed(tmp_path))


# --------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------


def test_metadata_is_embedded_in_the_mp4_itself(tmp_path):
    path = tmp_path / "result.mp4"
    with VideoWriter(path, fps=8, metadata={"seed": np.int64(7), "init": Path("/img/a.png")}) as writer:
        writer.write(gradient_frames(3))
        writer.metadata["timings"] = {"total_s": np.float32(1.5)}  # known only at the end
        writer.metadata["prompt"] = "a cat, 猫"
    expected = {
        "seed": 7, "init": "/img/a.png", "timings": {"total_s": 1.5}, "prompt": "a cat, 猫",
        "video": {"width": 64, "height": 48, "fps": 8.0, "frame_count": 3},
    }

    with av.open(str(path)) as container:  # really in the file, in the standard comment tag
        assert json.loads(container.metadata["comment"]) == expected
    path.with_suffix(".json").unlink()
    assert read_metadata(path) == expected


def test_metadata_sidecar_matches_and_is_the_fallback(tmp_path):
    written = write_video(tmp_path / "result.mp4", gradient_frames(2), fps=8, metadata={"job": "t2v"})
    sidecar = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert sidecar == read_metadata(written)

    plain = write_plain_mp4(tmp_path / "plain.mp4", gradient_frames(2))
    (tmp_path / "plain.json").write_text(json.dumps({"job": "from sidecar"}), encoding="utf-8")
    assert read_metadata(plain) == {"job": "from sidecar"}


def test_read_metadata_without_any_raises(tmp_path):
    plain = write_plain_mp4(tmp_path / "plain.mp4", gradient_frames(2))
    with pytest.raises(KinetographError, match="No Kinetograph metadata"):
        read_metadata(plain)
    with pytest.raises(KinetographError, match="No Kinetograph metadata"):
        read_metadata(tmp_path / "missing.mp4")


def test_metadata_that_is_not_json_fails_before_encoding(tmp_path):
    with pytest.raises(TypeError, match="object"):
        VideoWriter(tmp_path / "clip.mp4", fps=8, metadata={"bad": object()})
    assert files_in(tmp_path) == []


# --------------------------------------------------------------------------------------
# atomic writes, overwrite protection, names
# --------------------------------------------------------------------------------------


def test_exception_in_with_block_removes_partial_file(tmp_path):
    path = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="model crashed"):
        with VideoWriter(path, fps=8) as writer:
            writer.write(gradient_frames(5))
            assert writer.partial_path.parent == tmp_path
            assert writer.partial_path.name.startswith(f".clip.{os.getpid()}-")  # pid + random: one per writer
            assert writer.partial_path.name.endswith(".partial.mp4")
            assert writer.partial_path.exists()
            assert not path.exists()  # nothing under the final name until close()
            raise RuntimeError("model crashed")
    assert files_in(tmp_path) == []  # no partial file, no video, no sidecar


def test_abort_removes_everything(tmp_path):
    writer = VideoWriter(tmp_path / "clip.mp4", fps=8, metadata={"a": 1})
    writer.write(gradient_frames(5))
    assert files_in(tmp_path) == [writer.partial_path.name]
    writer.abort()
    assert files_in(tmp_path) == []
    with pytest.raises(RuntimeError):
        writer.write(gradient_frames(1))


def test_close_without_frames_raises_and_leaves_nothing(tmp_path):
    writer = VideoWriter(tmp_path / "clip.mp4", fps=8)
    with pytest.raises(KinetographError, match="No frames"):
        writer.close()
    assert files_in(tmp_path) == []


def test_refuses_to_overwrite_at_open(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"an earlier result")
    with pytest.raises(KinetographError, match="already exists"):
        VideoWriter(path, fps=8)
    assert path.read_bytes() == b"an earlier result"

    write_video(path, gradient_frames(2), fps=8, overwrite=True)
    assert read_frames(path).shape[0] == 2


def test_refuses_to_overwrite_a_sidecar(tmp_path):
    (tmp_path / "clip.json").write_text("{}")
    with pytest.raises(KinetographError, match="clip.json already exists"):
        VideoWriter(tmp_path / "clip.mp4", fps=8)


def test_refuses_to_overwrite_at_close(tmp_path):
    path = tmp_path / "clip.mp4"
    writer = VideoWriter(path, fps=8)
    writer.write(gradient_frames(3))
    path.write_bytes(b"another job finished first")

    with pytest.raises(KinetographError, match="already exists"):
        writer.close()
    assert path.read_bytes() == b"another job finished first"
    assert files_in(tmp_path) == ["clip.mp4"]  # our temporary files are gone, no sidecar


def test_unique_output_path(tmp_path):
    path = tmp_path / "cat-42.mp4"
    assert unique_output_path(path) == path
    path.write_bytes(b"x")
    assert unique_output_path(path) == tmp_path / "cat-42-1.mp4"
    (tmp_path / "cat-42-1.mp4").write_bytes(b"x")
    (tmp_path / "cat-42-2.json").write_text("{}")  # a left-over sidecar also takes the name
    assert unique_output_path(path) == tmp_path / "cat-42-3.mp4"
    (tmp_path / f".cat-42-3.{os.getpid()}-0123abcd.partial.mp4").write_bytes(b"")  # a live writer is busy with -3
    assert unique_output_path(path) == tmp_path / "cat-42-4.mp4"


def test_writer_creates_the_output_folder(tmp_path):
    path = write_video(tmp_path / "outputs" / "2024-01-01" / "a.mp4", gradient_frames(2), fps=8)
    assert path.exists()


@pytest.mark.parametrize("fps", [0, -5, float("nan"), float("inf"), "fast", None, 5000])
def test_bad_fps_is_refused(tmp_path, fps):
    with pytest.raises(KinetographError, match="fps"):
        VideoWriter(tmp_path / "clip.mp4", fps=fps)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"crf": 60}, "crf"), ({"preset": "turbo"}, "preset"), ({"audio_start_s": -1}, "audio_start_s"),
])
def test_bad_writer_options_are_refused(tmp_path, kwargs, message):
    with pytest.raises(KinetographError, match=message):
        VideoWriter(tmp_path / "clip.mp4", fps=8, **kwargs)


def test_non_mp4_name_is_refused(tmp_path):
    with pytest.raises(KinetographError, match="mp4"):
        VideoWriter(tmp_path / "clip.mov", fps=8)


def test_faststart_puts_moov_before_mdat(tmp_path):
    path = write_video(tmp_path / "clip.mp4", gradient_frames(20), fps=10)
    data = path.read_bytes()
    moov, mdat = data.find(b"moov"), data.find(b"mdat")
    assert moov != -1 and mdat != -1
    assert moov < mdat


# --------------------------------------------------------------------------------------
# audio
# --------------------------------------------------------------------------------------


def test_audio_is_kept_cut_and_in_sync(tmp_path):
    source = make_audio_source(tmp_path / "source.mp4", seconds=3.0, burst_s=(1.0, 1.2))
    path = write_video(
        tmp_path / "with_audio.mp4", gradient_frames(50), fps=25, audio_source=source, audio_start_s=0.5
    )

    info = probe_video(path)
    assert info.has_audio
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert float(audio.duration * audio.time_base) == pytest.approx(2.0, abs=0.05)  # video length
    samples, sample_rate, first_time = decoded_audio(path)
    assert first_time == pytest.approx(0.0, abs=1e-3)
    onset_s = first_time + np.argmax(np.abs(samples) > 0.1) / sample_rate
    assert onset_s == pytest.approx(0.5, abs=0.01)  # the tone at 1.0 s in the source, cut from 0.5 s
    assert len(samples) / sample_rate == pytest.approx(2.0, abs=0.05)


def test_audio_source_without_audio_gives_a_silent_video(tmp_path):
    silent_source = write_video(tmp_path / "silent.mp4", gradient_frames(5), fps=10)
    path = write_video(tmp_path / "out.mp4", gradient_frames(5), fps=10, audio_source=silent_source)
    assert not probe_video(path).has_audio


def test_missing_audio_source_is_refused_up_front(tmp_path):
    with pytest.raises(KinetographError, match="Audio source"):
        VideoWriter(tmp_path / "clip.mp4", fps=8, audio_source=tmp_path / "nowhere.wav")


# --------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------


def test_read_image_modes(tmp_path):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :5, 3] = 255  # left half opaque red, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (8, 10, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [200, 0, 0]
    assert image[0, 9].tolist() == [255, 255, 255]  # transparent -> white

    Image.fromarray(np.full((6, 4), 77, np.uint8), "L").save(tmp_path / "grey.png")
    assert read_image(tmp_path / "grey.png").tolist() == np.full((6, 4, 3), 77).tolist()

    Image.fromarray(np.full((5, 5), 65535, np.uint16)).save(tmp_path / "deep.png")  # 16-bit grey
    assert (read_image(tmp_path / "deep.png") == 255).all()


def test_read_image_applies_exif_orientation(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)

    image = read_image(tmp_path / "phone.jpg")
    assert image.shape == (40, 20, 3)
    assert image[:15].mean() > 200 and image[25:].mean() < 50  # the white half is now on top


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "folder"])
def test_read_image_errors(tmp_path, kind):
    path = tmp_path / "picture.png"
    if kind == "text":
        path.write_text("not an image")
    elif kind == "truncated":
        noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(path)  # noise: a big file, so half of it misses pixel data
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(KinetographError, match=str(path.name)):
        read_image(path)


# --------------------------------------------------------------------------------------
# real footage (optional: only where ../shared is present)
# --------------------------------------------------------------------------------------

@pytest.mark.skipif(not FOOTAGE.is_dir(), reason="shared footage not present")
@pytest.mark.parametrize(("name", "frames", "has_audio"), [
    ("vtest.avi", 795, False), ("cityCC0.mpg", 190, False), ("carphone.mp4", 120, False),
    ("phone_dog_1080p.mp4", 41, True),
])
def test_real_footage_probes_and_counts(name, frames, has_audio):
    info = probe_video(FOOTAGE / name)
    assert info.frame_count == frames and info.has_audio == has_audio
    first = next(iter_frames(FOOTAGE / name))
    assert first.shape == (info.height, info.width, 3)


def test_frame_times_follow_the_timestamps_of_a_variable_rate_video(tmp_path):
    frames = [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(5)]
    path = write_variable_rate_video(tmp_path / "vfr.mp4", frames, [0, 40, 80, 300, 340])
    assert frame_times(path) == [Fraction(ms, 1000) for ms in (0, 40, 80, 300, 340)]
    assert len(frame_times(write_video(tmp_path / "cfr.mp4", frames, 25))) == 5
    with pytest.raises(KinetographError, match="does not exist"):
        frame_times(tmp_path / "missing.mp4")


@pytest.mark.skipif(not (FOOTAGE / "phone_dog_1080p.mp4").is_file(), reason="shared footage not present")
def test_real_phone_video_frame_times():
    times = frame_times(FOOTAGE / "phone_dog_1080p.mp4")
    assert len(times) == 41 and abs(times[1] - Fraction(1846, 10000)) < Fraction(1, 1000)
    assert all(abs(b - a - Fraction(1, 30)) < Fraction(1, 1000) for a, b in zip(times[1:], times[2:], strict=False))


_ENCODE_SCRIPT = """
import hashlib, sys
import av, numpy as np
from pipelines.video_io import VideoWriter
with VideoWriter(sys.argv[2], 16) as writer:
    writer.write(np.load(sys.argv[1]))
digest = hashlib.sha1()
with av.open(sys.argv[2]) as container:
    for packet in container.demux(video=0):
        digest.update(bytes(packet))
print(digest.hexdigest())
"""


def test_same_frames_give_the_same_bitstream_whatever_the_heap_holds(tmp_path):
    """x264's mb-tree rate control read uninitialised heap memory: the bitstream (and the decoded
    frames, by up to 24 grey levels) depended on what earlier work left in freed memory. glibc's
    MALLOC_PERTURB_ fills new allocations with a pattern, so two patterns must give one bitstream.
    The frames are a tiny-wan generation: the low-contrast content that showed it (smooth
    synthetic patterns and plain noise did not)."""
    import os
    import subprocess
    import sys

    from pipelines import engine
    from pipelines.jobspec import JobSpec

    frames = engine.generate_frames(JobSpec(model="tiny-wan", prompt="a red fox", seed=3, frames=9, width=64,
                                            height=64, steps=2)).frames
    np.save(tmp_path / "frames.npy", frames)
    repo = Path(__file__).resolve().parents[1]
    digests = set()
    for fill in ("85", "170"):
        env = {**os.environ, "MALLOC_PERTURB_": fill, "PYTHONPATH": str(repo)}
        out = subprocess.run([sys.executable, "-c", _ENCODE_SCRIPT, str(tmp_path / "frames.npy"),
                              str(tmp_path / f"fill{fill}.mp4")], env=env, capture_output=True, text=True,
                             check=True, timeout=120)
        digests.add(out.stdout.strip())
    assert len(digests) == 1
