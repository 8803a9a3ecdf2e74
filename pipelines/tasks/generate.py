"""The generation task: text, a start image, or first and last frames to a video.

``generate_frames(job, ...)`` runs one GenerateJob up to its decoded frames (in memory);
``generate(job, ...)`` is that plus the writer, and is what ``engine.run`` calls.

Stages (encode prompt, denoise to latents, decode latents) run separately so that an
out-of-memory failure retries only the failed stage under a cheaper memory plan; the latents
survive a failed decode. Progress is an event per denoising step, previews every
``events.preview_every`` steps, and the cancel token is checked at every step; a cancelled or
failed job leaves no file behind.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KinetographError
from ..events import Events
from ..families import uses_cfg
from ..jobs import MemoryOptions  # re-exported: how a run may use memory (checked in engine.run)
from ..jobspec import MAX_SEED, JobSpec
from ..memory import (
    DeviceFacts,
    JobShape,
    StageRunner,
    apply_plan,
    finish_stage,
    measure_components,
    plan_ladder,
)
from ..models import HEAVY_COMPONENTS, TEXT_ENCODERS, ModelManager, hub_offline, load_pipeline, resolve_model
from ..output_paths import check_file_name, check_output_path
from ..progress import CancelToken
from ..results import Result, base_metadata, file_record
from ..video_io import VideoWriter, as_uint8_frames, read_image, unique_output_path

IMAGE_KEYS = ("image", "last_image")


@dataclass(frozen=True)
class EncodedPrompt:
    """A job's encoded prompt (the text encoders' output), reusable by later jobs of the same
    model, prompt, negative prompt and guidance on/off: ``generate_frames(encoded_prompt=...)``
    then skips encoding (and, under a staged plan, loading the text encoders at all)."""

    key: tuple
    embeds: dict[str, Any]


@dataclass
class GeneratedFrames:
    """What ``generate_frames`` made: the video in memory and how it was made.

    ``frames`` is RGB uint8 ``T×H×W×3`` (converted once from the decoder's float 0..1 frames,
    exactly as the video writer converts them); ``job`` is the job as run (frames and size
    rounded to the model's rules, the seed drawn); ``inputs`` says for each of ``image`` /
    ``last_image`` whether it came from a file (``"file"``) or from an array the caller passed
    (``"array"``, the job's string then being only a label)."""

    frames: Any  # numpy uint8 T×H×W×3
    job: JobSpec
    source: Any  # models.ModelSource
    device: DeviceFacts
    memory: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # load, encode, denoise, decode (seconds)
    inputs: dict[str, str] = field(default_factory=dict)
    encoded_prompt: EncodedPrompt | None = None  # pass to the next generate_frames of the same prompt
    latents: Any = None  # the final latents (on the CPU), only when asked for (``keep_latents``: extension)

    @property
    def model(self) -> dict[str, Any]:
        """Where the model came from, as recorded in an output's metadata."""
        return self.source.describe()


# --------------------------------------------------------------------------- the task
def generate(job: JobSpec, events: Events, cancel: CancelToken, manager: ModelManager, *,
             output_dir: str | Path | None = None, overwrite: bool = False,
             memory: MemoryOptions | None = None) -> Result:
    """Run one generation job end to end and write its video.

    Args:
        job: the checked GenerateJob (``engine.run`` checks it once).
        events: progress (load, encode, denoise, decode, write), previews, the finished file.
        cancel: checked at every denoising step; a cancelled job writes nothing.
        manager: the model cache (pipelines load once and are shared across jobs).
        output_dir: folder for default names (``outputs/<date>/<name>-<seed>.mp4``); ignored with ``job.out``.
        overwrite: replace ``job.out`` if it exists (otherwise a free name is chosen and said).
        memory: VRAM/RAM budget and forced memory mode (the planner picks otherwise).
    """
    started = time.perf_counter()
    memory = memory or MemoryOptions()
    if job.seed is None:  # drawn now, so the output's name (which carries it) is known before the work
        job = dataclasses.replace(job, seed=random.randint(0, MAX_SEED))
    out_path, out_note = output_path(job, output_dir, overwrite)  # a bad output path fails before the work
    made = _frames(job, None, events, cancel, manager, memory, None)
    run_job, frames = made.job, made.frames
    notes = made.notes + ([out_note] if out_note else [])
    if run_job.width % 2 or run_job.height % 2:  # the writer pads to even sizes (H.264 yuv420p)
        notes.append(f"size {run_job.width}x{run_job.height} padded to {run_job.width + run_job.width % 2}x"
                     f"{run_job.height + run_job.height % 2} by repeating the edge pixels (H.264 needs even sizes)")
    for note in notes:  # every change to the request, said aloud (and stored in the metadata below)
        events.note(note)
    inputs = {key: file_record(getattr(run_job, key)) for key, origin in made.inputs.items() if origin == "file"}
    metadata = base_metadata("generate", run_job, model=made.model, seed=run_job.seed, inputs=inputs,
                             device=made.device.to_dict())
    metadata.update(memory=made.memory, attempts=made.attempts, notes=notes)
    timings = dict(made.timings)
    t = time.perf_counter()
    events.progress("write", 0, len(frames))
    with VideoWriter(out_path, run_job.fps, metadata=metadata, overwrite=overwrite, rename_if_taken=True,
                     remedy=OVERWRITE_REMEDY) as writer:
        for index, frame in enumerate(frames):
            writer.write(frame)
            events.progress("write", index + 1, len(frames))
        timings["write"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
        writer.metadata["timings"] = dict(timings)
    if writer.path != out_path:  # another process finished a video of that name while this one worked
        notes.append(f"{out_path} was written by another job meanwhile, so this result is {writer.path}")
    events.partial(writer.path, "video")
    return Result(path=writer.path, kind="generate", job=run_job, fps=run_job.fps, frame_count=len(frames),
                  width=run_job.width, height=run_job.height, seed=run_job.seed, timings=timings,
                  memory=made.memory, attempts=made.attempts, notes=notes)


def generate_frames(job: JobSpec, images: dict[str, Any] | None = None, events: Events | None = None,
                    cancel: CancelToken | None = None, manager: ModelManager | None = None,
                    memory: MemoryOptions | None = None,
                    encoded_prompt: EncodedPrompt | None = None) -> GeneratedFrames:
    """Run one generation job and return its frames in memory (nothing is written).

    ``images``: RGB uint8 ``H×W×3`` arrays for ``"image"`` and/or ``"last_image"``, used instead
    of reading files. The job must still name each of them (``JobSpec.check`` wants them for
    i2v / keyframes), but for a key given here that string is only a label (e.g. ``"frame 12 of
    clip.mp4"``): it is recorded with the job and never opened as a path.

    ``encoded_prompt``: the ``encoded_prompt`` of an earlier result; when its model, prompt,
    negative prompt and guidance on/off match this job's, the prompt is not encoded again.
    """
    from ..engine import default_manager

    job.check()
    memory = (memory or MemoryOptions()).check()
    return _frames(job, images, events if events is not None else Events(), cancel or CancelToken(),
                   manager or default_manager(), memory, encoded_prompt)


def _frames(job: JobSpec, images: dict[str, Any] | None, events: Events, cancel: CancelToken, manager: ModelManager,
            memory: MemoryOptions, encoded_prompt: EncodedPrompt | None, continuation=None, carried=None,
            keep_latents: bool = False) -> GeneratedFrames:
    """``generate_frames`` for a job already checked. ``continuation``: RGB uint8 frames (the last of a
    video) that the generation continues from, ``carried``: their latents where the family carries them
    (``FamilyAdapter.continuation``; extension). ``keep_latents``: return the final latents too."""
    import torch

    # ---- before anything is loaded: the model, the images, the family's rules
    facts = memory.device_facts or DeviceFacts.detect()
    source = resolve_model(job.model, job.task, prefer_cuda=facts.has_cuda, denoiser_file=job.transformer)
    if memory.dtype is not None:
        source = dataclasses.replace(source, dtype=memory.dtype, component_dtypes={})
    adapter = source.family.adapter
    read_notes: list[str] = []  # what reading the image files changed (transparency, bit depth)
    image_arrays, inputs = _input_images(job, images, read_notes)
    planned = job.adapted_to(source.family)  # the family's rules, and the seed drawn once
    job = dataclasses.replace(job, seed=planned.seed)
    cancel.raise_if_cancelled()
    timings: dict[str, float] = {}

    # Plan before loading (from the files or the preset's size profile), so the plan can say how
    # components are loaded: a big model must not pass through host RAM whole when RAM is short.
    def make_ladder(sizes, spec: JobSpec):
        shape = JobShape(frames=spec.frames, height=spec.height, width=spec.width, cfg=uses_cfg(spec),
                         steps=spec.steps)
        if facts.has_cuda:
            return shape, plan_ladder(sizes, shape, facts, budget_gb=memory.budget_gb, ram_gb=memory.ram_gb,
                                      mode=memory.mode)
        return shape, plan_ladder(sizes, shape, facts, ram_gb=memory.ram_gb)  # no VRAM budget without a GPU

    if source.kind == "hub" and hub_offline():
        local_folder(source)  # not downloaded and no network: say which files, before any plan about them
    sizes = sizes_before_loading(source)
    shape, ladder = make_ladder(sizes, planned) if sizes is not None else (None, None)

    # ---- load (or reuse) the pipeline; embeddings may be ready before it
    prompt_key = (source.cache_key, planned.prompt, planned.negative_prompt if uses_cfg(planned) else None,
                  uses_cfg(planned))
    staged = bool(ladder and ladder[0].staged_load)
    ready_embeds = encoded_prompt.embeds if encoded_prompt is not None and encoded_prompt.key == prompt_key else None
    if staged and ready_embeds is None:  # host RAM cannot hold the encoders and the denoiser at once
        ready_embeds = _encode_with_encoders_alone(source, adapter, planned, ladder[0], facts, events, timings)
    events.progress("load", 0, 1)
    t = time.perf_counter()
    pipe = manager.get(source, ladder[0] if ladder else None, skip=TEXT_ENCODERS if staged else ())
    timings["load"] = time.perf_counter() - t
    events.progress("load", 1, 1)

    job = job.adapted_to(source.family, *adapter.model_rules(pipe))  # the loaded model's real ratios
    adapter.check_model(pipe, job)  # what the loaded model cannot do (e.g. a step count its scheduler refuses)
    pil_images, image_notes = fit_images(image_arrays, job.width, job.height)
    continues = None
    if continuation is not None:
        context = [fit_images({"context": frame}, job.width, job.height)[0]["context"] for frame in continuation]
        continues = adapter.continuation(pipe, job, context, carried)
        task_inputs = continues.inputs
    else:
        task_inputs = adapter.task_inputs(pipe, job, pil_images)
    with contextlib.ExitStack() as cleanup:
        if continues is not None and continues.close is not None:
            cleanup.callback(continues.close)  # the pipeline as it was, however the call ends
        if ladder is None or (job.frames, job.height, job.width) != (shape.frames, shape.height, shape.width):
            shape, ladder = make_ladder(measure_components(pipe), job)
        runner = StageRunner(ladder, apply=lambda plan: apply_plan(pipe, plan, facts),
                             after_stage=lambda stage, plan: finish_stage(pipe, plan, stage),
                             stage_peaks=facts.has_cuda, facts=facts)  # per-stage peaks: what CUDA really held
        runner.start()
        generator = torch.Generator("cpu").manual_seed(job.seed)
        _reset_peaks(facts)

        def on_step(pipe_, step: int, timestep, callback_kwargs):
            cancel.raise_if_cancelled()  # raising here is diffusers' clean hard stop
            if continues is not None and continues.on_step is not None and "latents" in callback_kwargs:
                callback_kwargs["latents"] = continues.on_step(pipe_, step, timestep, callback_kwargs["latents"])
            total = pipe_.num_timesteps
            events.progress("denoise", step + 1, total)
            if events.wants_preview(step + 1) and "latents" in callback_kwargs:
                events.preview(adapter.preview(pipe_, callback_kwargs["latents"], job), step + 1, total)
            return callback_kwargs

        def encode():
            embeds = ready_embeds if ready_embeds is not None else adapter.encode_prompt(
                pipe, job, runner.plan.text_encode_device)
            # The plan may encode on the CPU; the denoiser wants its inputs where it runs.
            return {k: v.to(facts.execution_device) if isinstance(v, torch.Tensor) else v for k, v in embeds.items()}

        def denoise():
            with torch.inference_mode():
                return pipe(**embeds, **task_inputs, **adapter.call_kwargs(job),
                            generator=generator, output_type="latent", callback_on_step_end=on_step).frames

        def decode():  # adapters run their encode/decode under inference_mode themselves
            return adapter.decode(pipe, latents, job, generator, chunk=runner.plan.decode_chunk_size)

        # ---- the stages
        events.progress("encode", 0, 1)
        embeds = runner.run("encode", encode, generator=generator, timings=timings)
        events.progress("encode", 1, 1)
        cancel.raise_if_cancelled()
        latents = runner.run("denoise", denoise, generator=generator, timings=timings)
        cancel.raise_if_cancelled()
        events.progress("decode", 0, 1)
        decoded = runner.run("decode", decode, generator=generator, timings=timings)
        frames = as_uint8_frames(decoded)  # adapters decode to float 0..1; convert once, as the writer would
        del decoded
        events.progress("decode", 1, 1)
        cancel.raise_if_cancelled()

        measured = runner.memory_record() if facts.has_cuda else {}
        memory_record = {
            "plan": runner.plan.to_dict(),
            "explanation": runner.plan.explain(),
            "predicted_peak_vram_bytes": runner.plan.predicted_peak_vram_bytes,
            "predicted_peak_ram_bytes": runner.plan.predicted_peak_ram_bytes,
            "measured_peak_vram_bytes": (measured.get("job_peaks") or {}).get("max_allocated_bytes"),
            "measured_peak_ram_bytes": _peak_rss(),
            **measured,  # stage_peaks (allocated, reserved, device used, RSS per stage), job_peaks, budget kept
        }
        return GeneratedFrames(frames=frames, job=job, source=source, device=facts, memory=memory_record,
                               attempts=runner.attempts,
                               notes=[*job.adjustments, *read_notes, *image_notes, *_unused_memory_notes(memory, facts),
                                      *runner.notes],
                               timings=timings, inputs=dict(inputs), encoded_prompt=EncodedPrompt(prompt_key, embeds),
                               latents=latents.detach().to("cpu", copy=True) if keep_latents else None)


# ------------------------------------------------------------------------ helpers
def _unused_memory_notes(memory: MemoryOptions, facts: DeviceFacts) -> list[str]:
    """Said aloud: a VRAM budget or memory mode on a machine without CUDA changes nothing."""
    if facts.has_cuda or (memory.budget_gb is None and memory.mode in (None, "auto")):
        return []
    return ["no CUDA device: the VRAM budget and memory mode apply to a GPU and were not used "
            "(the whole pipeline ran on the CPU)"]


def _encode_with_encoders_alone(source, adapter, job: JobSpec, plan, facts, events: Events,
                                timings: dict[str, float]) -> dict[str, Any]:
    """Staged loading: load only the text encoders, encode the prompt, release them."""
    from ..memory.apply import place_text_encoders, release_memory

    events.progress("encode", 0, 1)
    t = time.perf_counter()
    encoder_pipe = load_pipeline(source, None, skip=HEAVY_COMPONENTS)
    place_text_encoders(encoder_pipe, plan, facts)  # as the plan says: whole, or layer by layer
    embeds = adapter.encode_prompt(encoder_pipe, job, plan.text_encode_device)
    del encoder_pipe
    release_memory()
    timings["encode"] = time.perf_counter() - t
    return embeds


def sizes_before_loading(source):
    """Component sizes without loading weights: a folder's safetensors headers, else the size profile
    of a known hub repo or preset, else a cached snapshot's files; None when nothing is on disk yet."""
    from ..memory import measure_folder, profile_sizes
    from ..memory.sizes import REPO_PROFILES

    if source.kind in ("tiny", "folder"):
        return measure_folder(source.location)
    if source.location in REPO_PROFILES:
        return profile_sizes(source.location)
    if source.preset is not None and source.preset.size_profile:
        return profile_sizes(source.preset.size_profile)
    try:
        return measure_folder(local_folder(source))
    except KinetographError:
        return None  # loading will say what is missing


def local_folder(source) -> Path:
    if source.kind in ("tiny", "folder"):
        return Path(source.location)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source.location, local_files_only=True))
    except Exception as exc:
        from ..models import missing_model_error

        raise missing_model_error(source.location, source.pipeline_class, exc) from None


OVERWRITE_REMEDY = "pass --overwrite to replace it, or choose another --out"


def output_path(job: JobSpec, output_dir: str | Path | None, overwrite: bool) -> tuple[Path, str | None]:
    """Where the result goes, checked before any work (``output_paths.check_output_path``: the
    folder is made and writable, the name valid); an existing file is never replaced unless
    asked. A default name stays inside ``output_dir``: ``job.name`` is a file name, not a path."""
    if job.out is not None:
        wanted = check_output_path(job.out, overwrite, remedy="choose another --out")
    else:
        root = Path(output_dir).expanduser() if output_dir else Path("outputs")
        stem = check_file_name(job.name, "--name") if job.name is not None else _slug(job.prompt) or job.task
        wanted = check_output_path(root / _dt.date.today().isoformat() / f"{stem}-{job.seed}.mp4", overwrite,
                                   remedy="choose a shorter --name or another --output-dir")
    if overwrite:
        return wanted, None
    free = unique_output_path(wanted)  # taken: the file, its sidecar, or a live writer's temporary file
    if free == wanted:
        return wanted, None
    return free, f"{wanted} already exists (or is being written), so this result is {free} (pass --overwrite to " \
                 "replace it)"


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def fit_images(images: dict[str, Any], width: int, height: int):
    """Cover-crop each image to the video's aspect ratio, then resize: never stretch a face."""
    from PIL import Image

    out, notes = {}, []
    for key, array in images.items():
        h, w = array.shape[:2]
        scale = max(width / w, height / h)
        crop_w, crop_h = min(w, round(width / scale)), min(h, round(height / scale))
        left, top = (w - crop_w) // 2, (h - crop_h) // 2
        img = Image.fromarray(array[top:top + crop_h, left:left + crop_w])
        if (crop_w, crop_h) != (w, h):
            notes.append(f"{key} {w}x{h} cropped to {crop_w}x{crop_h} to match the {width}x{height} video")
        out[key] = img.resize((width, height), Image.LANCZOS)
    return out, notes


def _input_images(job: JobSpec, given: dict[str, Any] | None,
                  notes: list[str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The job's images as RGB uint8 arrays: those the caller passed, else read from the job's paths."""
    import numpy as np

    given = dict(given or {})
    unknown = sorted(set(given) - set(IMAGE_KEYS))
    if unknown:
        raise KinetographError(f"images takes arrays for {' and '.join(IMAGE_KEYS)}; got {', '.join(map(repr, unknown))}.")
    images, inputs = {}, {}
    for key in IMAGE_KEYS:
        label = getattr(job, key)
        if key in given:
            if not label:
                raise KinetographError(
                    f"An array was passed for {key} but the job has no {key}: set the job's {key} to a label "
                    f"that says where the array came from (e.g. 'frame 12 of clip.mp4'); it is recorded, not read.")
            array = given[key]
            if (not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3
                    or array.shape[2] != 3 or min(array.shape[:2]) < 1):
                what = f"{array.dtype} array of shape {array.shape}" if isinstance(array, np.ndarray) else \
                    type(array).__name__
                raise KinetographError(f"The {key} array must be RGB uint8 H×W×3, got a {what}.")
            images[key], inputs[key] = np.ascontiguousarray(array), "array"
        elif label:
            images[key], inputs[key] = read_image(label, notes), "file"
    return images, inputs


def alpha_notes(job: JobSpec, inputs: dict[str, str]) -> list[str]:
    """Said aloud: the transparent areas of an image file were composited onto white (``read_image``)."""
    from PIL import Image

    notes = []
    for key, origin in inputs.items():
        if origin != "file":
            continue
        try:
            with Image.open(getattr(job, key)) as image:  # the header only; read_image read the file already
                transparent = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        except Exception:  # noqa: BLE001 - a note is never worth failing a job that read the image
            continue
        if transparent:
            notes.append(f"{key} {getattr(job, key)} has transparency: composited onto white")
    return notes


def _reset_peaks(facts: DeviceFacts) -> None:
    if facts.has_cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()


def _peak_rss() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # KiB on Linux
