"""Form fields -> engine jobs, engine events -> what the page shows. No gradio here.

Everything the page and the API endpoints do with the engine goes through ``Runner``: one
``pipelines.worker.Worker`` (one GPU job at a time, first in first out), a ``Feed`` subscriber per
job that keeps the latest progress, preview, notes and partial files for the page to poll, and a
record per browser session (its tickets, its last result) so Cancel and "the last result" work.

Values from a form or an API call are untrusted: ``as_int``/``as_float``/``as_text`` turn them
into what a job takes or raise ``KinetographError`` with a message in the user's words; the jobs'
own ``check`` does the rest (the studio never validates what the engine validates). Uploaded files
are copied into the uploads folder (size and duration limits checked) before a job names them, and
every output path the studio chooses lies in the outputs folder.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import random
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import KinetographError
from pipelines.events import Note, Partial, Preview, Progress

MAX_SEED = 2**32 - 1
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
TASK_CHOICES = (("Text to video", "t2v"), ("Image to video (start frame)", "i2v"),
                ("First + last frame", "keyframes"))
EXTEND_SOURCES = ("upload", "last result", "none")  # none: a long video made from the prompt alone
TINY_FORM = {"frames": 9, "width": 64, "height": 64, "steps": 2}  # tiny models: seconds on a CPU


@dataclass(frozen=True)
class StudioConfig:
    """Where the studio writes and reads, and how much it accepts from an upload."""

    outputs: Path
    uploads: Path
    max_upload_bytes: int = 500 * 10**6
    max_upload_seconds: float = 600.0
    preview_every: int = 1  # denoising steps between previews
    gpu_jobs: int = 1  # jobs run at once (one worker each, each with its own model cache); 1 on one GPU

    @classmethod
    def from_env(cls, outputs: str | Path | None = None, uploads: str | Path | None = None) -> StudioConfig:
        out = Path(outputs or os.environ.get("KINETOGRAPH_OUTPUTS") or "outputs").expanduser().resolve()
        up = Path(uploads or os.environ.get("KINETOGRAPH_UPLOADS") or out.parent / "uploads").expanduser().resolve()
        return cls(outputs=out, uploads=up,
                   max_upload_bytes=int(float(os.environ.get("KINETOGRAPH_MAX_UPLOAD_MB", "500")) * 10**6),
                   max_upload_seconds=float(os.environ.get("KINETOGRAPH_MAX_UPLOAD_SECONDS", "600")),
                   gpu_jobs=gpu_jobs_setting(os.environ.get("KINETOGRAPH_GPU_JOBS", "1")))

    def prepare(self) -> StudioConfig:
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)
        return self


def gpu_jobs_setting(value: Any) -> int:
    """Jobs run at once: a whole number from 1 to 16 (more than one needs the memory of each)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if not 1 <= number <= 16:
        raise KinetographError(f"The number of jobs run at once (--gpu-jobs / KINETOGRAPH_GPU_JOBS) must be a whole "
                               f"number from 1 to 16, got {value!r}.")
    return number


# ------------------------------------------------------------------ untrusted values
def as_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int | None:
    """A whole number from a form/API value (None or "" -> None), else a clear error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise KinetographError(f"{name} must be a whole number, got {value!r}.")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise KinetographError(f"{name} must be a whole number, got {value!r}.") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise KinetographError(f"{name} must be a finite whole number, got {value!r}.")
        if value != int(value):
            raise KinetographError(f"{name} must be a whole number, got {value!r}.")
        value = int(value)
    if not isinstance(value, int):
        raise KinetographError(f"{name} must be a whole number, got {type(value).__name__}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise KinetographError(f"{name} = {value} is out of range: use {low} to {high}.")
    return value


def as_float(value: Any, name: str) -> float | None:
    """A finite number from a form/API value (None or "" -> None), else a clear error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise KinetographError(f"{name} must be a number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise KinetographError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise KinetographError(f"{name} must be a finite number, got {value!r}.")
    return number


def as_text(value: Any, name: str, *, max_chars: int = 20000) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise KinetographError(f"{name} must be text, got {type(value).__name__}.")
    if len(value) > max_chars:
        raise KinetographError(f"{name} is {len(value)} characters long; at most {max_chars} are accepted.")
    if "\x00" in value:
        raise KinetographError(f"{name} contains a NUL character; remove it.")
    return value


def seed_value(seed: Any, randomise: bool = False) -> int | None:
    """None (the engine draws one and records it) when randomising or blank, else a checked seed."""
    if randomise:
        return None
    value = as_int(seed, "seed")
    if value is None or value < 0:  # -1 is the usual "random" in UIs
        return None
    return as_int(value, "seed", low=0, high=MAX_SEED)


def random_seed() -> int:
    return random.randint(0, MAX_SEED)


# ------------------------------------------------------------------ uploads
def _safe_name(name: str, fallback: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(name)).name).strip(".-")[:80]
    return stem or fallback


def stage_upload(path: Any, what: str, config: StudioConfig, *, kind: str) -> str | None:
    """Copy an uploaded file into the uploads folder (content-addressed) and return its path.

    ``kind``: "video" or "image". Refuses what is not a regular file, too large, of an unknown type
    or (videos) longer than ``max_upload_seconds``. Files already in the outputs or uploads folder
    (a result being extended) are used where they are."""
    if path is None or (isinstance(path, str) and not path.strip()):
        return None
    if isinstance(path, dict):  # a FileData dict from an API client
        path = path.get("path")
    if not isinstance(path, (str, os.PathLike)):
        raise KinetographError(f"{what}: expected a file, got {type(path).__name__}.")
    source = Path(path)
    from pipelines.video_io import input_file_problem

    problem = input_file_problem(source)
    if problem is not None:
        raise KinetographError(f"{what} {source.name} {problem[0]}; upload the file again.")
    suffixes = VIDEO_SUFFIXES if kind == "video" else IMAGE_SUFFIXES
    if source.suffix.lower() not in suffixes:
        raise KinetographError(f"{what} {source.name!r} is not a {kind} file this studio takes: use "
                               f"{', '.join(suffixes)}.")
    size = source.stat().st_size
    if size > config.max_upload_bytes:
        raise KinetographError(f"{what} is {size / 1e6:.0f} MB; this studio takes uploads up to "
                               f"{config.max_upload_bytes / 1e6:.0f} MB. Cut or compress it first.")
    resolved = source.resolve()
    if not (_inside(resolved, config.outputs) or _inside(resolved, config.uploads)):
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        target = config.uploads / digest.hexdigest()[:16] / _safe_name(source.name, f"upload{source.suffix.lower()}")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
            shutil.copyfile(resolved, tmp)
            os.replace(tmp, target)
        resolved = target
    if kind == "video":
        from pipelines.video_io import probe_video

        info = probe_video(resolved)
        seconds = info.frame_count / info.fps if info.fps else 0.0
        if seconds > config.max_upload_seconds:
            raise KinetographError(f"{what} is {seconds:.0f} s long; this studio takes videos up to "
                                   f"{config.max_upload_seconds:.0f} s. Cut the part you need first.")
    return str(resolved)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def output_in(config: StudioConfig, stem: str, suffix: str) -> str:
    """A free path ``outputs/<date>/<stem><suffix>.mp4``: extensions and interpolations made in the
    studio go to the outputs folder, never beside their (uploaded) input."""
    from pipelines.video_io import unique_output_path

    folder = config.outputs / _dt.date.today().isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    return str(unique_output_path(folder / f"{_safe_name(stem, 'video')[:60]}{suffix}.mp4"))


# ------------------------------------------------------------------ jobs from forms
def family_of(model: str):
    """The model family of a preset id (None for a hub repo / folder not known before loading)."""
    from pipelines.families import PRESETS, get_family

    preset = PRESETS.get(model)
    return get_family(preset.family) if preset else None


def generate_job(s: dict[str, Any], config: StudioConfig):
    """A GenerateJob from the Generate form's (or /generate's) settings."""
    from pipelines.jobs import GenerateJob

    task = s.get("task") or "t2v"
    if task not in ("t2v", "i2v", "keyframes"):
        raise KinetographError(f"Unknown task {task!r}: use t2v, i2v or keyframes.")
    image = stage_upload(s.get("image"), "Start image", config, kind="image") if task != "t2v" else None
    last = stage_upload(s.get("last_image"), "Last image", config, kind="image") if task == "keyframes" else None
    name = as_text(s.get("name"), "name", max_chars=200)
    negative = as_text(s.get("negative_prompt"), "negative prompt")
    return GenerateJob(
        task=task, model=as_text(s.get("model"), "model", max_chars=500) or "",
        prompt=as_text(s.get("prompt"), "prompt") or "", negative_prompt=negative or None,
        image=image, last_image=last, frames=as_int(s.get("frames"), "frames"), fps=as_float(s.get("fps"), "fps"),
        width=as_int(s.get("width"), "width"), height=as_int(s.get("height"), "height"),
        steps=as_int(s.get("steps"), "steps"), guidance=as_float(s.get("guidance"), "guidance"),
        seed=seed_value(s.get("seed"), bool(s.get("randomise_seed"))), name=name.strip() if name else None,
    ).check()


def parse_timeline_text(text: str | None):
    """Timeline cues from the form's text ('0-5: a fox wakes' lines or JSON), or None when blank."""
    if text is None or not str(text).strip():
        return None
    from pipelines.extension.timeline import parse_timeline

    return tuple(cue.to_list() for cue in parse_timeline(as_text(text, "timeline"), "the timeline"))


def extend_job(s: dict[str, Any], config: StudioConfig, last_result: str | None):
    """An ExtendJob from the Extend form; its output always lies in the outputs folder."""
    from pipelines.jobs import ExtendJob

    source = s.get("source") or "upload"
    if source not in EXTEND_SOURCES:
        raise KinetographError(f"Unknown source {source!r}: use {', '.join(EXTEND_SOURCES)}.")
    if source == "upload":
        video = stage_upload(s.get("video"), "Video to extend", config, kind="video")
        if video is None:
            raise KinetographError("Extend: upload a video to continue, or choose 'last result' or 'none' "
                                   "(a long video from the prompt).")
    elif source == "last result":
        if not last_result or not Path(last_result).is_file():
            raise KinetographError("There is no last result in this session yet: generate a video first, or upload one.")
        video = last_result
    else:
        video = None
    name = as_text(s.get("name"), "name", max_chars=200)
    if name:
        from pipelines.output_paths import check_file_name

        check_file_name(name.strip(), "name")
    job = ExtendJob(
        input=video, model=as_text(s.get("model"), "model", max_chars=500) or "",
        seconds=as_float(s.get("seconds"), "seconds") or 0.0, prompt=as_text(s.get("prompt"), "prompt") or "",
        negative_prompt=as_text(s.get("negative_prompt"), "negative prompt") or None,
        timeline=parse_timeline_text(s.get("timeline")),
        segment_frames=as_int(s.get("segment_frames"), "segment frames"),
        context_frames=as_int(s.get("context_frames"), "context frames"), overlap=as_int(s.get("overlap"), "overlap"),
        anchor=1.0 if s.get("anchor") is None else as_float(s.get("anchor"), "anchor"),
        steps=as_int(s.get("steps"), "steps"), guidance=as_float(s.get("guidance"), "guidance"),
        seed=seed_value(s.get("seed"), bool(s.get("randomise_seed"))),
        width=as_int(s.get("width"), "width") if video is None else None,
        height=as_int(s.get("height"), "height") if video is None else None,
        fps=as_float(s.get("fps"), "fps") if video is None else None,
        name=name.strip() if (name and video is None) else None,
    ).check()
    if video is not None:
        job = dataclasses.replace(job, out=output_in(config, name.strip() if name else Path(video).stem, "-extended"))
    return job


def interpolate_job(s: dict[str, Any], config: StudioConfig, last_result: str | None):
    """An InterpolateJob from the Interpolate form; its output lies in the outputs folder."""
    from pipelines.jobs import InterpolateJob

    if s.get("use_last_result"):
        if not last_result or not Path(last_result).is_file():
            raise KinetographError("There is no last result in this session yet: generate a video first, or upload one.")
        video = last_result
    else:
        video = stage_upload(s.get("video"), "Video to interpolate", config, kind="video")
        if video is None:
            raise KinetographError("Interpolate: upload a video (or tick 'use the last result').")
    by = s.get("by") or "factor"
    if by not in ("factor", "fps"):
        raise KinetographError(f"Unknown rate choice {by!r}: use factor or fps.")
    factor = as_int(s.get("factor"), "factor") if by == "factor" else None
    fps = as_float(s.get("fps"), "target fps") if by == "fps" else None
    method = s.get("method") or "flow"
    generative = method == "generative"
    job = InterpolateJob(
        input=video, factor=factor, fps=fps, slowmo=bool(s.get("slowmo")), method=method,
        quality=(s.get("quality") or None) if not generative else None,
        model=(as_text(s.get("model"), "model", max_chars=500) or None) if generative else None,
        prompt=(as_text(s.get("prompt"), "prompt") or None) if generative else None,
        steps=as_int(s.get("steps"), "steps") if generative else None,
        seed=seed_value(s.get("seed"), bool(s.get("randomise_seed"))) if generative else None,
    ).check()
    suffix = f"-x{factor}" if factor else f"-{fps:g}fps"
    return dataclasses.replace(job, out=output_in(config, Path(video).stem, suffix))


# ------------------------------------------------------------------ events -> page
def preview_strip(frames, height: int = 128, max_frames: int = 8) -> np.ndarray:
    """A Preview event's frames (uint8 T×h×w×3) side by side, scaled up to about ``height`` pixels."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    picked = frames[:: max(1, len(frames) // max_frames)][:max_frames]
    strip = np.concatenate(list(picked), axis=1)
    scale = max(1, height // max(1, strip.shape[0]))
    if scale > 1:
        strip = strip.repeat(scale, axis=0).repeat(scale, axis=1)
    return np.ascontiguousarray(strip.astype(np.uint8))


@dataclass
class Feed:
    """An engine-event subscriber that keeps what the page shows: the latest progress (with the
    segment it is in), the latest preview strip and a count of previews, notes, partial files."""

    progress: Progress | None = None
    preview: np.ndarray | None = None
    previews: int = 0
    notes: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    segment: tuple[int, int] | None = None
    started: float | None = None  # when the first progress event came (the job left the queue)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, event) -> None:
        with self._lock:
            if isinstance(event, Progress):
                if self.started is None:
                    self.started = time.monotonic()
                self.progress = event
                for stage, done, total in ((event.stage, event.done, event.total), *event.within):
                    if stage == "segment":
                        self.segment = (done, total)
            elif isinstance(event, Preview):
                self.preview = preview_strip(event.frames)
                self.previews += 1
            elif isinstance(event, Partial):
                self.partials.append(event.path)
            elif isinstance(event, Note):
                self.notes.append(event.text)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"progress": self.progress, "preview": self.preview, "previews": self.previews,
                    "notes": list(self.notes), "partials": list(self.partials), "segment": self.segment,
                    "started": self.started}


def describe(ticket, feed: Feed) -> tuple[str, float | None]:
    """One status line for a running or queued job, and the job's fraction done (None while queued)."""
    snap = feed.snapshot()
    position = ticket.position()
    if position is not None and position > 0:
        return (f"Waiting in the queue: position {position} ({position - 1} job(s) ahead of this one, one "
                f"GPU job runs at a time).", None)
    progress = snap["progress"]
    if progress is None:
        return "Starting…", 0.0
    fraction = progress.fraction
    parts = []
    if snap["segment"] is not None:
        done, total = snap["segment"]
        parts.append(f"segment {min(done + 1, total)} of {total}")
    parts.append(f"{progress.stage} {progress.done}/{progress.total}")
    text = "Running: " + " · ".join(parts) + f" — {fraction * 100:.0f}%"
    if snap["started"] is not None and fraction > 0.02:
        elapsed = time.monotonic() - snap["started"]
        text += f", about {elapsed * (1 - fraction) / fraction:.0f} s left"
    return text, fraction


# ------------------------------------------------------------------ the runner
@dataclass
class Session:
    tickets: list = field(default_factory=list)
    last_result: str | None = None


class Runner:
    """The studio's workers (``config.gpu_jobs``, one by default: one GPU job at a time) and its
    sessions. A job goes to the worker with the fewest jobs; each extra worker has its own model
    cache (two jobs never share a pipeline's hooks). ``run`` functions default to the engine's."""

    def __init__(self, config: StudioConfig, worker=None, workers=None) -> None:
        from pipelines.models import ModelManager
        from pipelines.worker import Worker

        self.config = config.prepare()
        if workers is None:
            workers = [worker] if worker is not None else [
                Worker(run=_gpu_run(), manager=ModelManager() if index else None)
                for index in range(config.gpu_jobs)]
        self.workers = list(workers)
        self.worker = self.workers[0]
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def session(self, key: str | None) -> Session:
        with self._lock:
            return self._sessions.setdefault(key or "anonymous", Session())

    def submit(self, job, session_key: str | None):
        """Queue ``job`` on the worker; returns (ticket, feed)."""
        from pipelines.jobs import job_kind

        feed = Feed()
        options: dict[str, Any] = {}
        if job_kind(job) in ("generate", "extend"):
            options["output_dir"] = str(self.config.outputs)
        with self._lock:  # the least busy worker (its running and waiting jobs)
            worker = min(self.workers, key=lambda w: len(w.queue_positions()))
        ticket = worker.submit(job, subscribers=[feed], preview_every=self.config.preview_every, **options)
        session = self.session(session_key)
        with self._lock:
            session.tickets = [t for t in session.tickets if not t.done()] + [ticket]
        return ticket, feed

    def finish(self, ticket, session_key: str | None):
        """The finished ticket's result (recorded as the session's last result) or its error raised."""
        result = ticket.result()
        self.session(session_key).last_result = str(result.path)
        return result

    def cancel(self, session_key: str | None) -> int:
        """Cancel every unfinished job of the session; how many were cancelled."""
        session = self.session(session_key)
        with self._lock:
            tickets = list(session.tickets)
        return sum(1 for t in tickets if not t.done() and t.cancel())

    def queue_text(self) -> str:
        positions = [p for w in self.workers for p in w.queue_positions().values()]
        if not positions:
            return "Queue: idle."
        running, waiting = positions.count(0), len([p for p in positions if p > 0])
        return f"Queue: {running} running, {waiting} waiting." if running else f"Queue: {waiting} waiting."


def _gpu_run():
    """The engine's run, inside the ``spaces`` GPU decorator when that package is present (a ZeroGPU
    Space); a plain ``engine.run`` everywhere else. ``spaces`` is never a dependency."""
    from pipelines import engine

    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return engine.run
    return spaces.GPU(duration=int(os.environ.get("KINETOGRAPH_GPU_SECONDS", "300")))(engine.run)


# ------------------------------------------------------------------ results, history, restore
def result_metadata(path: str | Path) -> dict[str, Any]:
    """An output's metadata (its sidecar, else the mp4's tag); {} when it has none."""
    from pipelines.video_io import read_metadata

    try:
        return read_metadata(path)
    except KinetographError:
        return {}


def settings_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of an output's metadata a person reads: kind, job, seed, size, timings, notes."""
    video = meta.get("video") or {}
    return {"kind": meta.get("kind"), "job": meta.get("job"), "seed": meta.get("seed"),
            "video": video, "timings": meta.get("timings"), "notes": meta.get("notes"),
            "memory_plan": (meta.get("memory") or {}).get("plan", {}).get("name")
            if isinstance(meta.get("memory"), dict) and isinstance(meta["memory"].get("plan"), dict) else None}


def history(config: StudioConfig, limit: int = 60) -> list[tuple[str, str]]:
    """The outputs folder's videos, newest first, as (path, caption)."""
    if not config.outputs.is_dir():
        return []
    videos = [p for p in config.outputs.rglob("*.mp4") if p.is_file() and not p.name.startswith(".")
              and not any(part.startswith(".") for part in p.relative_to(config.outputs).parts)]
    videos.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    rows = []
    for path in videos[:limit]:
        meta = result_metadata(path)
        job = meta.get("job") or {}
        caption = f"{meta.get('kind') or '?'} · {job.get('model') or job.get('method') or ''} · seed {meta.get('seed')}"
        rows.append((str(path), caption))
    return rows


def output_file(path: Any, config: StudioConfig) -> Path:
    """An output named by the page or an API client: a file in the outputs folder (or an uploaded
    Kinetograph output / sidecar), never anything else on the machine."""
    if isinstance(path, dict):
        path = path.get("path")
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise KinetographError("Choose an output first (click one in the history, or drop an mp4 / .json).")
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = config.outputs / candidate
    resolved = candidate.resolve()
    import tempfile

    allowed = [config.outputs, config.uploads, Path(tempfile.gettempdir()).resolve(),
               Path(os.environ.get("GRADIO_TEMP_DIR", tempfile.gettempdir())).resolve()]
    if not any(_inside(resolved, folder) for folder in allowed):
        raise KinetographError(f"{Path(str(path)).name} is not in the outputs folder; pick an output from the history "
                               "or upload the file.")
    if resolved.suffix.lower() not in (".mp4", ".json") or not resolved.is_file():
        raise KinetographError(f"{resolved.name} is not a Kinetograph output: drop its .mp4 or its .json sidecar.")
    return resolved


def job_in_output(path: Path):
    """(kind, job) stored in an output, without checking its inputs (restoring settings needs none)."""
    from pipelines.jobs import job_from_dict

    meta = result_metadata(path)
    kind = meta.get("kind") or ("generate" if "job" in meta else None)
    if kind is None or not isinstance(meta.get("job"), dict):
        raise KinetographError(f"{path.name} carries no Kinetograph settings (made by another program, or an old "
                               "interpolation); nothing to restore.")
    return kind, job_from_dict(kind, meta["job"]), meta


def export_workflow(path: Any, config: StudioConfig) -> list[str]:
    """Write the ComfyUI workflow (API and UI format) that makes an output again with the pack's nodes,
    beside it in the outputs folder; returns the two files."""
    import json

    from pipelines.workflows.export import workflow_for_job

    output = output_file(path, config)
    _kind, job, _meta = job_in_output(output)
    api, ui = workflow_for_job(job)
    folder = config.outputs / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for suffix, data in (("comfyui_api", api), ("comfyui", ui)):
        target = folder / f"{output.stem}.{suffix}.json"
        temporary = target.with_name(f".{target.name}.partial")
        temporary.write_text(json.dumps(data, indent=1))
        os.replace(temporary, target)
        files.append(str(target))
    return files


def rerun_job(path: Any, config: StudioConfig, vary_seed: bool = False):
    """The job an output carries, ready to run again (the engine's ``rerun`` rules: inputs checked
    against their hashes, a new output name) — with a new seed for "vary seed"."""
    from pipelines.jobs import job_kind
    from pipelines.results import job_from_output

    job, _meta = job_from_output(output_file(path, config))
    changes: dict[str, Any] = {"out": None}
    if vary_seed:
        if not hasattr(job, "seed") or (job_kind(job) == "interpolate" and job.method != "generative"):
            raise KinetographError("This output was made without a seed (flow interpolation); use 'run again'.")
        changes["seed"] = random_seed()
    job = dataclasses.replace(job, **changes)
    kind = job_kind(job)
    if kind == "generate":
        job = dataclasses.replace(job, adjustments=())
    elif kind == "extend" and job.input is not None:
        job = dataclasses.replace(job, out=output_in(config, Path(job.input).stem, "-extended"))
    elif kind == "interpolate":
        suffix = f"-x{job.factor}" if job.factor else f"-{job.fps:g}fps"
        job = dataclasses.replace(job, out=output_in(config, Path(job.input).stem, suffix))
    return job


def result_summary(result) -> dict[str, Any]:
    """What an API call returns beside the video: the result and the settings stored with it."""
    meta = result_metadata(result.path)
    summary = json.loads(json.dumps(result.to_dict(), default=str))
    # "output", not "path": API clients take any {"path": ...} object for a file to download.
    summary["output"] = summary.pop("path")
    summary["job"] = meta.get("job")
    return summary
