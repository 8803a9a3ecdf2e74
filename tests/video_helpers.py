"""Helpers shared by the video tests: where the shared footage is, and a writer for
variable-rate videos (frames at chosen times, as phones record them)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# ../shared/footage beside the checkout: real clips; tests that need them skip where it is absent
FOOTAGE = Path(__file__).resolve().parents[2] / "shared" / "footage"


def write_variable_rate_video(path: Path, frames: list[np.ndarray], times_ms: list[int]) -> Path:
    """An H.264 mp4 whose frame ``i`` is shown at ``times_ms[i]`` (a 1 ms time base)."""
    millisecond = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1000)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.time_base = stream.codec_context.time_base = millisecond
        stream.options = {"crf": "10", "preset": "ultrafast"}
        for frame, time_ms in zip(frames, times_ms, strict=True):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts, picture.time_base = time_ms, millisecond
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return path


def moving_square_clip(path: Path, count: int = 12, width: int = 96, height: int = 64, fps: float = 8.0) -> Path:
    """A short clip of a square moving 4 px a frame over a gradient: motion with no scene cut, for the
    tasks that continue or fill in a video (extension, generative in-betweening)."""
    from pipelines.video_io import VideoWriter

    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for k in range(count):
        frame = np.stack([xx * 2, yy * 3, np.full_like(xx, 90)], -1).astype(np.uint8)
        frame[20:36, 4 + 4 * k:20 + 4 * k] = (250, 60, 40)
        frames.append(frame)
    with VideoWriter(path, fps) as writer:
        writer.write(np.stack(frames))
    return Path(path)
