"""Video and image input/output for the engine.

Reading: any container PyAV (FFmpeg) opens; frames come out as RGB ``uint8`` ``H×W×3`` numpy
arrays, upright (a phone video's rotation tag is applied), streamed one at a time.

Writing: mp4, H.264 (libx264) yuv420p, BT.709, ``+faststart`` so browsers play it.
``VideoWriter`` works in two phases so that a result is never seen half-written:

1. ``write()`` encodes frames as they come into a hidden ``.<stem>.partial.mp4`` next to the
   output (video only; the writer keeps no frames, so memory stays bounded).
2. ``close()`` remuxes those packets (no re-encode) into ``.<stem>.muxing.mp4`` together with
   the audio track (AAC, interleaved by time) and the metadata JSON in the mp4 ``comment``
   tag, then renames it onto the final name and writes the ``<stem>.json`` sidecar.
   The remux is what lets metadata change until ``close()`` (FFmpeg fixes a file's tags when
   its header is written) and lets audio be interleaved properly with the video.

Every problem a user can cause raises ``KinetographError`` with a message saying what to do.
"""
from __future__ import annotations

import dataclasses
import heapq
import json
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from fractions import Fraction
from pathlib import Path, PurePath
from typing import Any

import av
import numpy as np

from .errors import KinetographError
from .output_paths import busy_with, check_output_path, new_token, remove_stale_temporaries, temporary_path

__all__ = [
    "VideoInfo",
    "probe_video",
    "frame_times",
    "iter_frames",
    "read_frames",
    "read_image",
    "check_input_file",
    "MAX_INPUT_BYTES",
    "MAX_INPUT_SECONDS",
    "unique_output_path",
    "VideoWriter",
    "write_video",
    "read_metadata",
    "as_uint8_frames",
]

# Where the metadata JSON lives inside the mp4: FFmpeg's mp4 muxer stores "comment" as the
# standard iTunes-style ``©cmt`` atom, which FFmpeg, ffprobe and most tools read back.
METADATA_TAG = "comment"

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)
# Sample rates FFmpeg's AAC encoder accepts; anything else is resampled to 48 kHz.
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
MAX_FPS = 1000
MIN_FPS = 0.001  # slower rounds to no frame rate at all (durations are kept in 1/1001 s steps)
# FFmpeg's AVCOL_SPC_BT709, AVCOL_PRI_BT709 and AVCOL_TRC_BT709 all have the value 1;
# AVCOL_RANGE_MPEG (limited "TV" range, what browsers expect) is 1 as well.
AVCOL_BT709 = 1
AVCOL_RANGE_MPEG = 1
X264_PARAMS = "mbtree=0"  # see VideoWriter._start_encoder: same frames, same bytes

# Inputs: generous limits that no real clip reaches and that stop a mistaken path (a disk image,
# a days-long recording) from being read for hours; probing FFmpeg gives up after PROBE_TIMEOUT_S.
MAX_INPUT_BYTES = 20 * 10**9
MAX_INPUT_SECONDS = 4 * 3600
PROBE_TIMEOUT_S = 30.0  # opening a file and finding its streams
READ_TIMEOUT_S = 30.0  # waiting for any one read while decoding
_SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")

_REEXPORT_HINT = (
    "Re-export it as mp4 (H.264), e.g. `ffmpeg -i <input> -c:v libx264 -pix_fmt yuv420p out.mp4`, "
    "or choose another file."
)


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns about a video. ``width``/``height`` are as displayed
    (after the rotation tag), i.e. the shape of the frames ``iter_frames`` yields."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    has_audio: bool
    codec: str


def _not_readable(path: Path | str, why: str) -> KinetographError:
    return KinetographError(f"{path} is not a readable video: {why}. {_REEXPORT_HINT}")


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def input_file_problem(path) -> tuple[str, str] | None:
    """Why ``path`` cannot be opened as an input file, as (what it is, what to do), or None for
    a regular, readable file within ``MAX_INPUT_BYTES``. Never opens the file: a named pipe or a
    device is recognised from ``os.stat`` alone, so it cannot hang the caller."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        return "is empty", "give the path of a file"
    try:
        info = os.stat(text)
    except FileNotFoundError:
        if os.path.lexists(text):
            return "is a link to a file that does not exist", "check the path"
        return "does not exist", "check the path"
    except NotADirectoryError:
        return "does not exist (a part of the path is a file, not a folder)", "check the path"
    except PermissionError:
        return "cannot be read (permission denied)", "choose a file you can read"
    except (OSError, ValueError) as error:  # name too long, a link loop, a NUL character
        return f"cannot be opened ({getattr(error, 'strerror', None) or error})", "check the path"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder", "choose a file inside it"
    for test, kind in _SPECIAL_KINDS:
        if test(info.st_mode):
            return f"is {kind}, not a regular file", "choose a file saved on disk"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file", "choose a file saved on disk"
    resolved = os.path.realpath(text)
    if any(resolved == folder or resolved.startswith(folder + "/") for folder in _SYSTEM_FOLDERS):
        return "is a system file, not a media file", "choose a file saved on disk"
    if info.st_size > MAX_INPUT_BYTES:
        return (f"is {info.st_size / 1e9:.1f} GB, more than the {MAX_INPUT_BYTES / 1e9:g} GB Kinetograph opens",
                "cut or re-encode it smaller")
    if not os.access(text, os.R_OK):
        return "cannot be read (permission denied)", "choose a file you can read"
    return None


def check_input_file(path, what: str = "Input") -> Path:
    """``path`` as a Path if it is a regular file that may be opened, else a KinetographError
    saying what it is ("does not exist", "is a folder", "is a named pipe (FIFO)") and what to do."""
    problem = input_file_problem(path)
    if problem is not None:
        raise KinetographError(f"{what} {path} {problem[0]}; {problem[1]}.")
    return Path(os.fsdecode(os.fspath(path)))


def _av_open_input(path: Path):
    """PyAV's open for reading, with time limits (a stalled read gives up instead of hanging)."""
    return av.open(_av_name(path), timeout=(PROBE_TIMEOUT_S, READ_TIMEOUT_S))


def _av_name(path: Path) -> str:
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise KinetographError(f"{name.encode('utf-8', 'backslashreplace').decode()} has a name that is not valid "
                               "UTF-8, which FFmpeg cannot open: rename it using UTF-8 characters only.") from None
    return name


def _open_video(path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` for decoding its first video stream, or raise a KinetographError."""
    path = check_input_file(path, "Video")
    if path.stat().st_size == 0:
        raise _not_readable(path, "the file is empty (0 bytes)")
    try:
        container = _av_open_input(path)
    except av.error.ExitError as error:
        raise _not_readable(path, f"FFmpeg did not finish opening it within {PROBE_TIMEOUT_S:g} s") from error
    except (av.error.FFmpegError, OSError) as error:
        raise _not_readable(path, f"FFmpeg cannot open it ({_ffmpeg_reason(error)})") from error
    if container.duration is not None and container.duration / av.time_base > MAX_INPUT_SECONDS:
        seconds = container.duration / av.time_base
        container.close()
        raise KinetographError(f"{path} lasts {seconds / 3600:.1f} hours, more than the "
                               f"{MAX_INPUT_SECONDS / 3600:g} hours Kinetograph reads: cut the part you need, "
                               "e.g. `ffmpeg -ss START -t SECONDS -i <input> -c copy part.mp4`.")
    if not container.streams.video:
        container.close()
        raise _not_readable(path, "it has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: several times faster decoding
    return container, stream


def _ffmpeg_reason(error: Exception) -> str:
    """FFmpeg's own words without PyAV's errno/filename decoration."""
    return getattr(error, "strerror", None) or str(error)


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _stream_duration_s(stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _trusted_declared_frame_count(stream) -> int | None:
    """The frame count the container's header states, when it can be believed.

    mp4/mov headers count every sample, including ones an edit list hides (a clip trimmed
    without re-encoding keeps its cut frames); those headers then disagree with the
    stream's duration × rate, and we count packets instead.
    """
    declared = stream.frames
    if declared <= 0:
        return None
    fps, duration = _stream_fps(stream), _stream_duration_s(stream)
    if fps and duration:
        if abs(duration * fps - declared) > max(1.0, 0.005 * declared):
            return None
    return declared


def _presented_packets(container, stream) -> Iterator:
    """The packets of frames that are shown (demuxing, no decoding): one per frame, without the
    ones an edit list marks as discarded and the empty flush packet at the end."""
    return (packet for packet in container.demux(stream) if packet.size > 0 and not packet.is_discard)


def _count_presented_packets(container, stream) -> int:
    return sum(1 for _ in _presented_packets(container, stream))


def _display_rotation_quarter_turns(frame) -> int:
    """How many 90° counter-clockwise turns make this frame upright (phone videos)."""
    return round((frame.rotation or 0) / 90) % 4


def _frame_to_rgb(frame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    turns = _display_rotation_quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def probe_video(path) -> VideoInfo:
    """Describe a video without decoding it (only its first frame, to prove it decodes).

    ``frame_count`` is the container's own count when it is consistent, otherwise it is
    counted by demuxing packets. ``fps`` is the average rate (variable-rate phone videos
    get their mean). Raises KinetographError for anything that is not a readable video.
    """
    container, stream = _open_video(path)
    with container:
        try:
            first_frame = next(container.decode(stream), None)
        except av.error.FFmpegError as error:
            raise _not_readable(path, f"its first frame does not decode ({_ffmpeg_reason(error)})") from error
        if first_frame is None:
            raise _not_readable(path, "it contains no frames")
        frame_count = _trusted_declared_frame_count(stream)
        if frame_count is None:
            with _av_open_input(Path(path)) as fresh:  # from the top: seeking back is not exact in every format
                frame_count = _count_presented_packets(fresh, fresh.streams.video[0])
        fps = _stream_fps(stream)
        if not fps:
            duration = _stream_duration_s(stream)
            fps = frame_count / duration if duration else 0.0
        if fps and frame_count / fps > MAX_INPUT_SECONDS:
            raise KinetographError(f"{path} lasts {frame_count / fps / 3600:.1f} hours, more than the "
                                   f"{MAX_INPUT_SECONDS / 3600:g} hours Kinetograph reads: cut the part you need.")
        width, height = first_frame.width, first_frame.height
        if _display_rotation_quarter_turns(first_frame) % 2:
            width, height = height, width
        return VideoInfo(
            path=str(path),
            width=width,
            height=height,
            fps=fps,
            frame_count=frame_count,
            duration_s=frame_count / fps if fps else 0.0,
            has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name,
        )


def frame_times(path) -> list[Fraction] | None:
    """When each frame is shown: seconds from the first frame, in the order ``iter_frames``
    yields frames, read from the packet timestamps (demuxing only, no decoding). Phone and
    screen recordings are variable-rate: their frames are not ``1 / fps`` apart. None where the
    container stores no usable timestamps (some AVI files), so the frames' spacing is unknown."""
    container, stream = _open_video(path)
    with container:
        if stream.time_base is None:
            return None
        stamps = []
        try:
            for packet in _presented_packets(container, stream):
                if packet.pts is None:
                    return None
                stamps.append(packet.pts)
        except av.error.FFmpegError as error:
            raise _not_readable(path, f"its packets cannot be read ({_ffmpeg_reason(error)})") from error
        if not stamps:
            return None
        stamps.sort()  # decode order -> presentation order (B-frames)
        first, base = stamps[0], Fraction(stream.time_base)
        return [(stamp - first) * base for stamp in stamps]


def _check_frame_range(start, stop, step) -> None:
    if not isinstance(start, (int, np.integer)) or start < 0:
        raise KinetographError(f"start must be a frame index >= 0, got {start!r}.")
    if stop is not None and (not isinstance(stop, (int, np.integer)) or stop < start):
        raise KinetographError(f"stop must be None or a frame index >= start ({start}), got {stop!r}.")
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise KinetographError(f"step must be an integer >= 1, got {step!r}.")


def iter_frames(path, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[np.ndarray]:
    """Yield frames ``start, start+step, ...`` (before ``stop``) as RGB uint8 ``H×W×3``.

    Frames are counted in presentation order from 0, exactly (frames are decoded and
    skipped, not seeked to, so variable-rate videos index correctly). Only one frame is held
    at a time. The file is opened now, so a missing or unreadable file raises here; a
    decode error or truncation found later raises KinetographError naming the frame.
    """
    _check_frame_range(start, stop, step)
    container, stream = _open_video(path)
    return _decode_frames(Path(path), container, stream, start, stop, step)


def _decode_frames(path: Path, container, stream, start: int, stop: int | None, step: int):
    declared_count = stream.frames  # what the header promises; used to detect truncation
    packets_read = 0
    index = 0  # index of the next frame to come out of the decoder
    with container:
        try:
            for packet in container.demux(stream):
                if packet.size > 0 or packet.dts is not None:
                    packets_read += 1  # the last, empty packet only flushes the decoder
                for frame in stream.decode(packet):
                    if stop is not None and index >= stop:
                        return
                    if index >= start and (index - start) % step == 0:
                        yield _frame_to_rgb(frame)
                    index += 1
        except av.error.FFmpegError as error:
            raise _not_readable(
                path, f"decoding failed at frame {index} ({_ffmpeg_reason(error)}); the file is truncated or damaged"
            ) from error
    if index == 0:
        raise _not_readable(path, "it contains no frames")
    if 0 < packets_read < declared_count:
        raise _not_readable(
            path,
            f"it ends after frame {index - 1} but its header promises {declared_count} frames; "
            "the file is truncated",
        )


def read_frames(path, start: int = 0, stop: int | None = None, max_frames: int | None = None) -> np.ndarray:
    """Frames ``start`` to ``stop`` (exclusive) as one ``T×H×W×3`` uint8 array.

    ``max_frames`` guards memory: if the range holds more frames, nothing is decoded and a
    KinetographError says how many there are. Use ``iter_frames`` to stream long videos.
    """
    _check_frame_range(start, stop, 1)
    info = probe_video(path)
    end = info.frame_count if stop is None else min(stop, info.frame_count)
    expected = max(0, end - start)
    if expected == 0:
        raise KinetographError(
            f"Frames {start}..{stop} select nothing from {path}, which has {info.frame_count} frames; "
            "choose start/stop inside the video."
        )
    if max_frames is not None and expected > max_frames:
        raise KinetographError(
            f"{path} has {expected} frames in the requested range, more than max_frames={max_frames} "
            f"({expected * info.width * info.height * 3 / 2**30:.1f} GiB as RGB). "
            "Choose a shorter range with start/stop, or raise max_frames."
        )
    # Fill a preallocated array (no list + stack, which would need twice the memory).
    frames = np.empty((expected, info.height, info.width, 3), dtype=np.uint8)
    count = 0
    for frame in iter_frames(path, start, stop):
        if count == len(frames):  # the header undercounted: grow, still within max_frames
            if max_frames is not None and count >= max_frames:
                raise KinetographError(
                    f"{path} has more than max_frames={max_frames} frames in the requested range; "
                    "choose a shorter range with start/stop, or raise max_frames."
                )
            frames = np.concatenate([frames, np.empty_like(frames[: max(1, count // 4)])])
        if frame.shape != frames.shape[1:]:
            raise _not_readable(path, f"frame {start + count} is {frame.shape[1]}x{frame.shape[0]}, "
                                      f"the first was {frames.shape[2]}x{frames.shape[1]} (size changes mid-video)")
        frames[count] = frame
        count += 1
    return frames[:count]


def read_image(path, notes: list[str] | None = None) -> np.ndarray:
    """An image file as RGB uint8 ``H×W×3``, upright (EXIF orientation applied).

    Every common mode is converted, never blacked out: greyscale and 1-bit are expanded to RGB;
    16-bit images are scaled (not clipped) to 8 bits; 32-bit float images (mode "F", e.g. a
    float TIFF) are scaled from 0..1 when they lie within it, else from their own range;
    palette, CMYK and YCbCr images are converted to RGB; transparent areas (RGBA, LA, a
    palette's transparent colour) are composited onto white. What was changed on the way is
    appended to ``notes`` (when given) as one sentence each. A mode that cannot be converted
    (LAB, multi-channel float) is refused with the reason. Only regular files are opened.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = check_input_file(path, "Image")
    said: list[str] = []
    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            image.load()
            rgb = _image_to_rgb(ImageOps.exif_transpose(image), said)
            if frames > 1:
                said.append(f"it has {frames} frames (an animation or a multi-page file); the first was used")
    except KinetographError as error:  # a mode we do not convert: the reason, with the file's name
        raise KinetographError(f"Image {path} cannot be used: {error}.") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as error:
        raise KinetographError(
            f"{path} is not a readable image: {error}. Save it as PNG or JPEG and try again."
        ) from error
    if notes is not None:
        notes.extend(f"image {path.name}: {text}" for text in said)
    return rgb


def _scaled_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)


def _high_depth_grey_to_uint8(image, notes: list[str]) -> np.ndarray:
    """Modes "F" (32-bit float), "I" (32-bit int) and "I;16*" (16-bit) as 8-bit grey."""
    grey = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(grey)
    if not finite.any():
        raise KinetographError("the image has no finite pixel values (all NaN or infinite); save it again")
    if not finite.all():
        notes.append(f"{int((~finite).sum())} pixels that are NaN or infinite were made black")
        grey = np.where(finite, grey, 0.0)
    low, high = float(grey[finite].min()), float(grey[finite].max())
    if image.mode == "F":
        if low >= 0.0 and high <= 1.0:
            return _scaled_to_uint8(grey, 0.0, 1.0)  # the usual float convention
        notes.append(f"its 32-bit float values ({low:g} to {high:g}) were scaled to 0..255")
        return _scaled_to_uint8(grey, low, high) if high > low else np.full(grey.shape, 128, np.uint8)
    if image.mode.startswith("I;16"):
        return _scaled_to_uint8(grey, 0.0, 65535.0)
    # "I" (32-bit int): 8-bit or 16-bit data stored wide, else its own range
    if low >= 0 and high <= 255:
        return grey.astype(np.uint8)
    if low >= 0 and high <= 65535:
        return _scaled_to_uint8(grey, 0.0, 65535.0)
    notes.append(f"its 32-bit integer values ({low:g} to {high:g}) were scaled to 0..255")
    return _scaled_to_uint8(grey, low, high)


def _image_to_rgb(image, notes: list[str] | None = None) -> np.ndarray:
    from PIL import Image

    notes = notes if notes is not None else []
    mode = image.mode
    if mode == "F" or mode == "I" or mode.startswith("I;16"):
        grey = _high_depth_grey_to_uint8(image, notes)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        if int(np.asarray(rgba.getchannel("A")).min()) < 255:
            notes.append("it has transparent areas; they were composited onto a white background")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    elif mode not in ("RGB", "L", "1", "P", "CMYK", "YCbCr", "RGBX", "HSV"):
        raise KinetographError(f"its colour mode {mode} is not supported (only RGB, greyscale, palette, CMYK, "
                               "16-bit and float images are); save it as an 8-bit RGB PNG")
    try:
        return np.array(image.convert("RGB"), dtype=np.uint8)
    except ValueError as error:
        raise KinetographError(f"its colour mode {mode} cannot be converted to RGB ({error}); "
                               "save it as an 8-bit RGB PNG") from None


# --------------------------------------------------------------------------------------
# Output paths and metadata
# --------------------------------------------------------------------------------------


def _sidecar_path(video_path: Path) -> Path:
    return video_path.with_suffix(".json")


def _is_taken(video_path: Path) -> bool:
    """A name is taken if the video or its metadata sidecar exists (we overwrite neither),
    or a live writer is busy with it (a temporary file of a process that exists)."""
    return any(p.exists() for p in (video_path, _sidecar_path(video_path))) or busy_with(video_path)


def unique_output_path(path) -> Path:
    """``path`` if it is free, else ``name-1.mp4``, ``name-2.mp4``, ...: the first free one.
    Taken means: the video, its ``.json`` sidecar exists, or a live writer's temporary file
    (the leftovers of dead processes do not count). Free now: two jobs racing for one name are
    caught by the writer at close, which takes the next free name or refuses, never overwrites."""
    path = Path(path)
    candidate, number = path, 0
    while _is_taken(candidate):
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def _json_default(value: Any) -> Any:
    """Convert the non-JSON values engine metadata commonly holds."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Fraction):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist") and hasattr(value, "detach"):  # torch tensor, without importing torch
        return value.detach().cpu().tolist()
    raise TypeError(
        f"Metadata value {value!r} of type {type(value).__name__} cannot be stored as JSON; "
        "convert it to a str, number, list or dict first."
    )


def _metadata_to_json(metadata: dict, **dumps_kwargs) -> str:
    return json.dumps(metadata, default=_json_default, **dumps_kwargs)


def read_metadata(path) -> dict:
    """The metadata dict a ``VideoWriter`` stored with a video: from the mp4's comment tag,
    else from the ``<stem>.json`` sidecar. KinetographError if neither has it."""
    problem = input_file_problem(path)
    if problem is not None and problem[0] != "does not exist":  # a folder, a pipe, a device: never opened
        raise KinetographError(f"{path} {problem[0]}; {problem[1]} (a Kinetograph output .mp4 or its .json sidecar).")
    path = Path(path)
    problems = []
    if problem is None:
        try:
            with _av_open_input(path) as container:
                comment = container.metadata.get(METADATA_TAG)
            if comment:
                metadata = json.loads(comment)
                if isinstance(metadata, dict):
                    return metadata
            problems.append("the video carries no Kinetograph metadata")
        except (av.error.FFmpegError, OSError, json.JSONDecodeError) as error:
            problems.append(f"its metadata could not be read ({error})")
    else:
        problems.append("the video does not exist")
    sidecar = _sidecar_path(path)
    sidecar_problem = input_file_problem(sidecar)
    if sidecar_problem is not None and sidecar_problem[0] != "does not exist":
        problems.append(f"{sidecar.name} {sidecar_problem[0]}")
    elif sidecar_problem is None:
        try:
            metadata = json.loads(sidecar.read_text(encoding="utf-8"))
            if isinstance(metadata, dict):
                return metadata
            problems.append(f"{sidecar.name} does not hold a JSON object")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(f"{sidecar.name} could not be read ({error})")
    else:
        problems.append(f"there is no sidecar {sidecar.name}")
    raise KinetographError(
        f"No Kinetograph metadata for {path}: {'; '.join(problems)}. "
        "Only videos written by Kinetograph carry their settings; choose one of those."
    )


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def fps_as_fraction(fps) -> Fraction:
    """An exact frame rate. NTSC rates given as decimals (29.97, 23.976, 59.94) become
    their true values (30000/1001, ...), so timestamps never drift."""
    try:
        rate = Fraction(fps) if isinstance(fps, (str, Fraction)) else None
        value = float(rate if rate is not None else fps)
    except (TypeError, ValueError, ZeroDivisionError):
        raise KinetographError(f"fps must be a number such as 24 or 29.97, got {fps!r}.") from None
    if not math.isfinite(value) or not MIN_FPS <= value <= MAX_FPS:
        raise KinetographError(f"fps must be from {MIN_FPS:g} to {MAX_FPS} (e.g. 24 or 29.97), got {fps!r}.")
    if rate is not None:
        return rate
    ntsc_base = round(value * 1.001)
    if ntsc_base >= 1 and abs(value - ntsc_base * 1000 / 1001) < 0.002:
        return Fraction(ntsc_base * 1000, 1001)
    return Fraction(value).limit_denominator(1001)


def _iter_uint8_frames(frames) -> Iterator[np.ndarray]:
    """Yield each frame of ``frames`` as a C-contiguous RGB uint8 ``H×W×3`` array.

    Accepts one frame (H×W×3) or a batch (T×H×W×3); uint8, or float in 0..1; numpy or torch
    (converted one frame at a time, so a big float batch never doubles in memory)."""
    if isinstance(frames, (list, tuple)):
        for item in frames:
            yield from _iter_uint8_frames(item)
        return
    is_torch = type(frames).__module__.split(".")[0] == "torch"
    if not is_torch:
        frames = np.asarray(frames)
    shape = tuple(frames.shape)
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise KinetographError(
            f"Frames must be RGB, shaped H×W×3 or T×H×W×3; got shape {shape}. "
            "Convert greyscale/RGBA images to RGB first."
        )
    batch = frames if len(shape) == 4 else frames[None]
    for frame in batch:
        yield _torch_frame_to_uint8(frame) if is_torch else _numpy_frame_to_uint8(frame)


def as_uint8_frames(frames) -> np.ndarray:
    """Frames (one ``H×W×3`` or a ``T×H×W×3`` batch; float 0..1 or uint8; numpy or torch) as one
    uint8 ``T×H×W×3`` numpy array, converted frame by frame exactly as ``VideoWriter.write`` does."""
    shape = tuple(getattr(frames, "shape", ()))
    if len(shape) != 4:
        return np.stack(list(_iter_uint8_frames(frames)))
    out = np.empty((*shape[:3], 3), np.uint8)
    for index, frame in enumerate(_iter_uint8_frames(frames)):
        out[index] = frame
    return out


def float_frame_to_uint8(frame: np.ndarray) -> np.ndarray:
    """A float 0..1 frame as uint8: the one conversion every part of Kinetograph uses (NaN -> 0,
    out-of-range values clipped, rounded to nearest)."""
    scaled = np.clip(np.nan_to_num(frame.astype(np.float32)), 0.0, 1.0) * 255.0
    return np.rint(scaled).astype(np.uint8)


def _numpy_frame_to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    if np.issubdtype(frame.dtype, np.floating):
        return float_frame_to_uint8(frame)
    raise KinetographError(f"Frames must be uint8 (0..255) or float (0..1); got dtype {frame.dtype}.")


def _torch_frame_to_uint8(frame) -> np.ndarray:
    import torch

    frame = frame.detach()
    if frame.dtype == torch.uint8:
        return np.ascontiguousarray(frame.cpu().numpy())
    if frame.is_floating_point():
        # Quantise on the frame's own device: a quarter of the bytes cross to the host.
        frame = torch.nan_to_num(frame.float()).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
        return np.ascontiguousarray(frame.cpu().numpy())
    raise KinetographError(f"Frames must be uint8 (0..255) or float (0..1); got dtype {frame.dtype}.")


@dataclass(frozen=True)
class _AudioSource:
    path: Path
    duration_s: float  # seconds of audio after the sync origin
    origin_s: float  # source time of "0 s": its first video frame (or its audio start)


def _inspect_audio_source(path) -> _AudioSource | None:
    """The audio to mux from ``path``, or None if it has no audio stream."""
    path = check_input_file(path, "Audio source")
    try:
        with _av_open_input(path) as container:
            if not container.streams.audio:
                return None
            audio = container.streams.audio[0]
            origin_s = _sync_origin_s(container)
            audio_start_s = float(audio.start_time * audio.time_base) if audio.start_time is not None else 0.0
            if audio.duration:
                end_s = audio_start_s + float(audio.duration * audio.time_base)
            elif container.duration:
                end_s = container.duration / av.time_base
            else:
                end_s = math.inf  # unknown: decode until the audio runs out
            return _AudioSource(path, end_s - origin_s, origin_s)
    except (av.error.FFmpegError, OSError) as error:
        raise KinetographError(
            f"Audio source {path} cannot be opened ({_ffmpeg_reason(error)}); "
            "choose a video or audio file FFmpeg reads, or pass audio_source=None."
        ) from error


def _sync_origin_s(container) -> float:
    """Source time that ``audio_start_s=0`` refers to: the first video frame, so that
    ``audio_start_s = k / fps`` lines up with frame ``k`` of the source video."""
    for stream in list(container.streams.video) + list(container.streams.audio):
        if stream.start_time is not None:
            return float(stream.start_time * stream.time_base)
    return 0.0


def _packet_time_s(packet) -> Fraction:
    timestamp = packet.dts if packet.dts is not None else packet.pts
    return timestamp * packet.time_base if timestamp is not None else Fraction(0)


class VideoWriter:
    """Write frames to an mp4 (H.264, yuv420p) that appears under ``path`` only when complete.

    Use as a context manager: leaving the block normally calls ``close()``; an exception
    calls ``abort()`` (the partial file is deleted, no sidecar is written).

    ``metadata`` (JSON-serialisable; numpy values, Paths and dataclasses are converted) may
    be updated until ``close()``; it is stored in the mp4's ``comment`` tag and in a
    ``<stem>.json`` sidecar. The writer adds one key, ``"video"``: ``width``/``height`` of the
    frames, ``fps``, ``frame_count`` and, when an odd size had to be padded to even by
    repeating the edge pixels, ``padded_to: [w, h]``.

    ``audio_source``: a file whose first audio stream is copied (re-encoded as AAC) from
    ``audio_start_s`` (seconds after the source's first video frame) for the length of the
    video. A file without audio is accepted and gives a silent video.

    ``crf``: 0..51, lower is better (18 is visually lossless; 0 is lossless but not playable
    in browsers). ``preset``: x264 speed/size trade-off.

    ``tags``: extra text tags for the mp4 (the ComfyUI node pack stores ComfyUI's ``prompt`` and
    ``workflow`` there, so the video can be dropped onto ComfyUI); none by default.
    """

    def __init__(
        self,
        path,
        fps,
        metadata: dict | None = None,
        audio_source=None,
        audio_start_s: float = 0.0,
        crf: int = 18,
        preset: str = "medium",
        overwrite: bool = False,
        rename_if_taken: bool = False,
        remedy: str = "choose another --out",
        tags: dict[str, str] | None = None,
    ):
        self._remedy = remedy
        # Extra container tags (e.g. ComfyUI's "prompt" and "workflow" JSON), written as mp4 metadata
        # keys beside the comment tag, as ComfyUI's own SaveVideo writes them (movflags use_metadata_tags).
        self._tags = {str(k): str(v) for k, v in (tags or {}).items() if str(k) != METADATA_TAG}
        self.path = check_output_path(path, overwrite, remedy)  # folder made and writable, name valid
        self._rate = fps_as_fraction(fps)
        self.fps = float(self._rate)
        if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
            raise KinetographError(f"crf must be an integer from 0 to 51 (18 is a good default), got {crf!r}.")
        if preset not in X264_PRESETS:
            raise KinetographError(f"preset must be one of {', '.join(X264_PRESETS)}; got {preset!r}.")
        self._crf, self._preset = int(crf), preset
        self.metadata: dict = dict(metadata or {})
        _metadata_to_json(self.metadata)  # fail now, not after the whole video is encoded
        self.overwrite = overwrite
        self.rename_if_taken = rename_if_taken and not overwrite
        if not self.rename_if_taken:
            self._refuse_if_taken()
            if not overwrite and busy_with(self.path):  # another job is writing this very name now
                raise KinetographError(f"{self.path} is being written by another job right now: {remedy}.")
        try:
            audio_start_s = float(audio_start_s)
        except (TypeError, ValueError):
            audio_start_s = math.nan
        if not math.isfinite(audio_start_s) or audio_start_s < 0:
            raise KinetographError(f"audio_start_s must be a number of seconds >= 0, got {audio_start_s!r}.")
        self._audio_start_s = audio_start_s
        self._audio = _inspect_audio_source(audio_source) if audio_source is not None else None

        remove_stale_temporaries(self.path.parent)  # left by writers that died (killed, power cut)
        # Temporary names unique to this writer (pid + random), so two writers never share one.
        token = new_token()
        self.partial_path = temporary_path(self.path, "partial.mp4", token)  # video packets, as encoded
        self._muxing_path = temporary_path(self.path, "muxing.mp4", token)  # final mux, moved onto self.path
        self._sidecar_tmp_path = temporary_path(self.path, "json.partial", token)

        self.frames_written = 0
        self._frame_size: tuple[int, int] | None = None  # (height, width) of incoming frames
        self._encoded_size: tuple[int, int] | None = None  # (height, width), even
        self._container = None
        self._stream = None
        self._state = "open"  # -> "closed" | "aborted"

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- writing ---------------------------------------------------------------------

    def write(self, frames) -> None:
        """Encode one frame (H×W×3) or a batch (T×H×W×3): uint8, or float 0..1, numpy or torch."""
        if self._state != "open":
            raise RuntimeError(f"VideoWriter for {self.path} is already {self._state}.")
        for frame in _iter_uint8_frames(frames):
            if self._container is None:
                self._start_encoder(frame.shape[0], frame.shape[1])
            if frame.shape[:2] != self._frame_size:
                raise KinetographError(
                    f"Frame {self.frames_written} is {frame.shape[1]}x{frame.shape[0]} but this video is "
                    f"{self._frame_size[1]}x{self._frame_size[0]}; all frames of a video must have one size."
                )
            try:
                self._encode(frame)
            except OSError as error:  # the encoder's packets could not be written
                self.abort()
                raise _write_error(error, self.path) from None

    def _start_encoder(self, height: int, width: int) -> None:
        self._frame_size = (height, width)
        self._encoded_size = (height + height % 2, width + width % 2)  # yuv420p needs even sizes
        self._container = av.open(str(self.partial_path), "w", format="mp4")
        stream = self._container.add_stream("libx264", rate=self._rate, options={
            "crf": str(self._crf), "preset": self._preset,
            # x264's macroblock-tree rate control (in the x264 that PyAV bundles) reads uninitialised
            # heap memory: the same frames encoded twice in one process differed by up to 24 grey
            # levels, and by MALLOC_PERTURB_ across processes. Without it the bitstream is repeatable.
            "x264-params": X264_PARAMS,
        })
        stream.width, stream.height = self._encoded_size[1], self._encoded_size[0]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / self._rate
        stream.codec_context.thread_type = "FRAME"  # x264's own default; scales better than slices
        # Tag BT.709 (limited range) and convert with that matrix, so players show the colours we meant.
        codec = stream.codec_context
        codec.colorspace = codec.color_primaries = codec.color_trc = AVCOL_BT709
        codec.color_range = AVCOL_RANGE_MPEG
        self._stream = stream
        self._container.start_encoding()  # create the file now: a bad folder fails at the first frame

    def _encode(self, frame: np.ndarray) -> None:
        pad_h = self._encoded_size[0] - frame.shape[0]
        pad_w = self._encoded_size[1] - frame.shape[1]
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
            format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
        )
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self._rate
        self._container.mux(self._stream.encode(video_frame))
        self.frames_written += 1

    # -- finishing -------------------------------------------------------------------

    def close(self) -> Path:
        """Finish the file, add audio and metadata, move it onto ``path``; return ``path``.

        On any failure (including finding ``path`` taken with ``overwrite=False``) the
        temporary files are removed and the error is raised."""
        if self._state == "closed":
            return self.path
        if self._state == "aborted":
            raise RuntimeError(f"VideoWriter for {self.path} was aborted; nothing to close.")
        try:
            if self.frames_written == 0:
                raise KinetographError(f"No frames were written to {self.path}; the job produced no video.")
            self._container.mux(self._stream.encode(None))  # flush the encoder's delayed frames
            self._container.close()
            self._container = None
            metadata = self._final_metadata()
            embedded_json = _metadata_to_json(metadata)  # ASCII: safe in any tag reader
            self._mux_final(embedded_json)
            self._sidecar_tmp_path.write_text(
                _metadata_to_json(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            self._move_into_place()
            self.partial_path.unlink(missing_ok=True)
        except OSError as error:  # av.error.OSError too: a full disk, a file-size limit, a vanished folder
            self.abort()
            raise _write_error(error, self.path) from None
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        return self.path

    def abort(self) -> None:
        """Stop and delete everything written so far; the final path is never touched."""
        if self._state == "closed":
            return
        self._state = "aborted"
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError):
                pass  # the file is deleted next anyway
            self._container = None
        for temporary in (self.partial_path, self._muxing_path, self._sidecar_tmp_path):
            temporary.unlink(missing_ok=True)

    def _move_into_place(self) -> None:
        """Move the finished mp4 and sidecar onto their names. Without ``overwrite`` a name that
        appeared meanwhile (another process finished first) is never replaced: the video is linked
        onto its name only if that name is free (atomic), else this writer takes the next free name
        (``rename_if_taken``) or fails with a clear message."""
        if self.overwrite:
            os.replace(self._muxing_path, self.path)
            os.replace(self._sidecar_tmp_path, _sidecar_path(self.path))
            return
        wanted = self.path
        for _attempt in range(1000):
            taken = self.path.exists() or _sidecar_path(self.path).exists()
            if taken and self.rename_if_taken:
                self.path = unique_output_path(wanted)  # our own temporaries keep `wanted` busy: skipped
            self._refuse_if_taken()
            try:
                os.link(self._muxing_path, self.path)  # fails if the name exists: no overwrite, no race
            except FileExistsError:
                if not self.rename_if_taken:
                    self._refuse_if_taken()
                    raise
                continue
            except OSError:  # a filesystem without hard links: check, then rename
                self._refuse_if_taken()
                os.replace(self._muxing_path, self.path)
            else:
                self._muxing_path.unlink()
            os.replace(self._sidecar_tmp_path, _sidecar_path(self.path))
            return
        raise KinetographError(f"No free name was found beside {wanted}; {self._remedy}.")

    def _refuse_if_taken(self) -> None:
        if self.overwrite:
            return
        for existing in (self.path, _sidecar_path(self.path)):
            if existing.exists():
                raise KinetographError(f"{existing} already exists and would be overwritten: {self._remedy}.")

    def _final_metadata(self) -> dict:
        video = {
            "width": self._frame_size[1],
            "height": self._frame_size[0],
            "fps": self.fps,
            "frame_count": self.frames_written,
        }
        if self._encoded_size != self._frame_size:
            video["padded_to"] = [self._encoded_size[1], self._encoded_size[0]]
        return {**self.metadata, "video": video}

    def _mux_final(self, embedded_json: str) -> None:
        """Copy the encoded video, plus audio and metadata, into the faststart mp4."""
        duration_s = self.frames_written / self._rate
        movflags = "+faststart+use_metadata_tags" if self._tags else "+faststart"
        with av.open(str(self.partial_path)) as video_in, av.open(
            str(self._muxing_path), "w", format="mp4", container_options={"movflags": movflags}
        ) as output:
            output.metadata[METADATA_TAG] = embedded_json
            for key, value in self._tags.items():
                output.metadata[key] = value
            video_in_stream = video_in.streams.video[0]
            video_out_stream = output.add_stream_from_template(video_in_stream)
            packet_streams = [_retargeted(video_in.demux(video_in_stream), video_out_stream)]
            if self._audio is not None and self._audio_start_s < self._audio.duration_s:
                packet_streams.append(
                    _encode_audio(self._audio, output, self._audio_start_s, float(duration_s))
                )
            # Interleave by time so players never wait on one stream while the other buffers.
            for packet in heapq.merge(*packet_streams, key=_packet_time_s):
                output.mux(packet)


def _write_error(error: OSError, path: Path) -> KinetographError:
    """Writing failed on the way (the temporary files are already removed): say why in the user's terms."""
    import errno

    reasons = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file grew past this system's file-size limit",
               errno.EDQUOT: "your disk quota is used up", errno.EROFS: "the filesystem is read-only",
               errno.EIO: "the disk reported an input/output error"}
    why = reasons.get(getattr(error, "errno", None), getattr(error, "strerror", None) or str(error))
    return KinetographError(f"Could not finish writing {path}: {why}. Nothing was left behind; free some space or "
                            f"choose another --out on another disk, then run it again.")


def _retargeted(packets, stream) -> Iterator:
    for packet in packets:
        if packet.size == 0:  # demux's end-of-stream flush packet
            continue
        packet.stream = stream
        yield packet


def _encode_audio(source: _AudioSource, output, start_s: float, duration_s: float) -> Iterator:
    """Add an AAC stream to ``output`` and yield its packets: ``duration_s`` seconds of the
    source from ``start_s``. Samples are placed by their timestamps, so gaps become silence
    and the sound stays in sync with the picture."""
    container = _av_open_input(source.path)
    audio_in = container.streams.audio[0]
    channels = 1 if audio_in.codec_context.channels == 1 else 2
    layout = "mono" if channels == 1 else "stereo"
    rate = audio_in.codec_context.sample_rate if audio_in.codec_context.sample_rate in AAC_SAMPLE_RATES else 48000
    audio_out = output.add_stream("aac", rate=rate, layout=layout)
    audio_out.bit_rate = 96_000 * channels
    return _audio_packets(container, audio_in, audio_out, source, start_s, duration_s)


def _audio_packets(container, audio_in, audio_out, source: _AudioSource, start_s: float, duration_s: float):
    rate = audio_out.codec_context.sample_rate
    layout = audio_out.codec_context.layout.name
    first_sample = round(start_s * rate)  # in source samples after the sync origin
    end_sample = first_sample + round(duration_s * rate)
    time_base = Fraction(1, rate)
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    written = 0  # samples emitted; output sample i is source sample first_sample + i

    def emit(samples: np.ndarray):
        nonlocal written
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, written, time_base
        written += samples.shape[1]
        yield from audio_out.encode(frame)

    with container:
        if start_s > 0:
            seek_s = source.origin_s + start_s
            try:
                container.seek(int(seek_s / audio_in.time_base), stream=audio_in)  # lands at or before
            except av.error.FFmpegError:
                container.seek(0)
        cursor = None  # source sample index (after the origin) of the next resampled sample
        try:
            for packet in container.demux(audio_in):
                decoded = list(packet.decode())
                if packet.size == 0:
                    decoded.append(None)  # end of stream: flush the resampler too
                for source_frame in decoded:
                    if cursor is None:
                        if source_frame is None:
                            continue
                        cursor = (
                            round((float(source_frame.time) - source.origin_s) * rate)
                            if source_frame.time is not None else first_sample
                        )
                    for chunk in resampler.resample(source_frame):
                        samples = chunk.to_ndarray()
                        chunk_start, cursor = cursor, cursor + samples.shape[1]
                        # Silence for any gap before this chunk (audio starting after the video).
                        while first_sample + written < min(chunk_start, end_sample):
                            gap = min(chunk_start, end_sample) - (first_sample + written)
                            yield from emit(np.zeros((samples.shape[0], min(gap, rate)), np.float32))
                        keep_from = max(first_sample + written, chunk_start) - chunk_start
                        keep_to = min(end_sample, cursor) - chunk_start
                        if keep_to > keep_from:
                            yield from emit(samples[:, keep_from:keep_to])
                        if first_sample + written >= end_sample:
                            break
                if cursor is not None and cursor >= end_sample:
                    break
        except av.error.FFmpegError as error:
            raise KinetographError(
                f"The audio of {source.path} could not be decoded ({_ffmpeg_reason(error)}); "
                "re-export it, or pass audio_source=None for a silent video."
            ) from error
    yield from audio_out.encode(None)  # flush the encoder's buffered samples


def write_video(path, frames, fps, metadata: dict | None = None, **writer_kwargs) -> Path:
    """Write ``frames`` (T×H×W×3 uint8/float, numpy/torch, or an iterable of frames) to an
    mp4 in one call; returns the final path. See ``VideoWriter`` for the options."""
    with VideoWriter(path, fps, metadata=metadata, **writer_kwargs) as writer:
        if isinstance(frames, (np.ndarray, list, tuple)) or hasattr(frames, "shape"):
            writer.write(frames)
        else:  # a generator of frames or batches: stream it
            for batch in frames:
                writer.write(batch)
    return writer.path
