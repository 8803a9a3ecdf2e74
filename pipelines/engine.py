"""engine.run(job): JobSpec -> model -> stages -> mp4 with metadata -> Result.

``generate_frames(job, images=...)`` does the same up to the decoded frames and returns them
in memory (uint8) instead of writing a file; ``run`` is ``generate_frames`` plus the writer.

Stages (encode prompt, denoise to latents, decode latents) run separately so that an
out-of-memory failure retries only the failed stage under a cheaper memory plan; the
latents survive a failed decode. Progress is reported per denoising step and the cancel
token is checked at every step; a cancelled or failed job leaves no file behind.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .adapters import adapter_for, uses_cfg
from .errors import KinetographError
from .jobspec import JobSpec
from .memory import (
    DeviceFacts,
    JobShape,
    StageRunner,
    apply_plan,
    finish_stage,
    measure_components,
    plan_ladder,
)
from .models import HEAVY_COMPONENTS, TEXT_ENCODERS, ModelManager, load_pipeline, resolve_model
from .progress import CancelToken, ProgressCallback, no_progress
from .video_io import VideoWriter, as_uint8_frames, read_image, unique_output_path

__version__ = "0.1.0"
METADATA_FORMAT = 1


@dataclass
class Result:
    path: Path
    fps: float
    frame_count: int
    width: int
    height: int
    seed: int
    job: JobSpec
    timings: dict[str, float]
    memory: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        mem = self.memory
        lines = [
            f"wrote {self.path}  ({self.frame_count} frames, {self.width}x{self.height}, {self.fps:g} fps, "
            f"seed {self.seed})",
            "time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()),
            f"memory plan: {mem.get('plan', {}).get('name', '?')}; VRAM predicted "
            f"{_gb(mem.get('predicted_peak_vram_bytes'))} measured {_gb(mem.get('measured_peak_vram_bytes'))}; "
            f"RAM predicted {_gb(mem.get('predicted_peak_ram_bytes'))} measured "
            f"{_gb(mem.get('measured_peak_ram_bytes'))}",
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _gb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f} GB"


_default_manager: ModelManager | None = None


def default_manager() -> ModelManager:
    """One model cache per process, shared by every front door."""
    global _default_manager
    if _default_manager is None:
        _default_manager = ModelManager()
    return _default_manager


@dataclass(frozen=True)
class EncodedPrompt:
    """A job's encoded prompt (the text encoders' output), reusable by later jobs of the same
    model, prompt, negative prompt and guidance on/off: ``generate_frames(encoded_prompt=...)``
    then skips encoding (and, under a staged plan, loading the text encoders at all)."""

    key: tuple
    embeds: dict[str, Any]


def _prompt_key(source, job: JobSpec) -> tuple:
    """What an encoding depends on (every adapter encodes the text only)."""
    cfg = uses_cfg(job)
    return (source.cache_key, job.prompt, job.negative_prompt if cfg else None, cfg)


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

    @property
    def model(self) -> dict[str, Any]:
        """Where the model came from, as recorded in an output's metadata."""
        return self.source.describe()


@dataclass
class _Prepared:
    """A checked job before anything is loaded: its model, its images, its drawn seed."""

    job: JobSpec  # the caller's job with the seed fixed
    preload_job: JobSpec  # adapted to the family's rules (the real adaptation follows the load)
    source: Any
    facts: DeviceFacts
    images: dict[str, Any]
    inputs: dict[str, str]


def run(job: JobSpec, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
        manager: ModelManager | None = None, output_dir: str | Path | None = None,
        overwrite: bool = False, device_facts: DeviceFacts | None = None, budget_gb: float | None = None,
        ram_gb: float | None = None, memory_mode: str | None = None) -> Result:
    """Run one generation job end to end and return where its video is."""
    started = time.perf_counter()
    prepared = _prepare(job, None, device_facts)
    out_path, out_note = _output_path(prepared.job, output_dir, overwrite)
    made = _generate(prepared, progress, cancel or CancelToken(), manager or default_manager(),
                     budget_gb, ram_gb, memory_mode)
    job, frames, timings = made.job, made.frames, dict(made.timings)
    notes = made.notes + ([out_note] if out_note else [])
    metadata = {
        "kinetograph": {"version": __version__, "format": METADATA_FORMAT},
        "job": job.to_dict(),
        "model": made.model,
        "seed": job.seed,
        "versions": _versions(),
        "device": made.device.to_dict(),
        "memory": made.memory,
        "attempts": made.attempts,
        "notes": notes,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    t = time.perf_counter()
    progress("write", 0, 1)
    with VideoWriter(out_path, job.fps, metadata=metadata, overwrite=overwrite) as writer:
        writer.write(frames)
        timings["write"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
        writer.metadata["timings"] = dict(timings)
    final = writer.path  # closed (renamed into place) by the with block
    progress("write", 1, 1)
    return Result(path=final, fps=job.fps, frame_count=len(frames), width=job.width, height=job.height,
                  seed=job.seed, job=job, timings=timings, memory=made.memory, attempts=made.attempts, notes=notes)


def generate_frames(job: JobSpec, images: dict[str, Any] | None = None, progress: ProgressCallback = no_progress,
                    cancel: CancelToken | None = None, manager: ModelManager | None = None,
                    device_facts: DeviceFacts | None = None, budget_gb: float | None = None,
                    ram_gb: float | None = None, memory_mode: str | None = None,
                    encoded_prompt: EncodedPrompt | None = None) -> GeneratedFrames:
    """Run one generation job and return its frames in memory (nothing is written).

    ``images``: RGB uint8 ``H×W×3`` arrays for ``"image"`` and/or ``"last_image"``, used instead
    of reading files. The job must still name each of them (``JobSpec.check`` wants them for
    i2v / keyframes), but for a key given here that string is only a label (e.g. ``"frame 12 of
    clip.mp4"``): it is recorded with the job and never opened as a path. The result's
    ``inputs`` says which images came from arrays. Everything else is as in ``run``: same
    checks, memory planning, retries on out-of-memory, progress stages (load, encode, denoise,
    decode) and cancellation; the same job and seed give the same frames that ``run`` writes.

    ``encoded_prompt``: the ``encoded_prompt`` of an earlier result; when its model, prompt,
    negative prompt and guidance on/off match this job's, the prompt is not encoded again (a
    video made pair by pair encodes its prompt once); otherwise it is ignored.
    """
    prepared = _prepare(job, images, device_facts)
    return _generate(prepared, progress, cancel or CancelToken(), manager or default_manager(),
                     budget_gb, ram_gb, memory_mode, encoded_prompt)


def _prepare(job: JobSpec, given_images: dict[str, Any] | None, device_facts: DeviceFacts | None) -> _Prepared:
    """Check the job, resolve its model and read its images; nothing is loaded yet."""
    job.check()
    facts = device_facts or DeviceFacts.detect()
    source = resolve_model(job.model, job.task, prefer_cuda=facts.has_cuda, denoiser_file=job.transformer)
    images, inputs = _input_images(job, given_images)
    # Check against the family's rules before loading anything; keep the drawn seed for the real adaptation.
    preload_job = job.adapted_to(source.family)
    job = dataclasses.replace(job, seed=preload_job.seed)
    return _Prepared(job=job, preload_job=preload_job, source=source, facts=facts, images=images, inputs=inputs)


def _generate(prepared: _Prepared, progress: ProgressCallback, cancel: CancelToken, manager: ModelManager,
              budget_gb: float | None, ram_gb: float | None, memory_mode: str | None,
              encoded_prompt: EncodedPrompt | None = None) -> GeneratedFrames:
    """Load (or reuse) the model, encode, denoise, decode: the frames of a prepared job."""
    import torch

    timings: dict[str, float] = {}
    job, preload_job, source, facts = prepared.job, prepared.preload_job, prepared.source, prepared.facts
    cancel.raise_if_cancelled()

    # Plan before loading (from the files or the preset's size profile), so the plan can say how
    # components are loaded: a big model must not pass through host RAM whole when RAM is short.
    def make_ladder(sizes, spec: JobSpec):
        shape = JobShape(frames=spec.frames, height=spec.height, width=spec.width, cfg=spec.guidance > 1.0,
                         steps=spec.steps)
        if facts.has_cuda:
            return shape, plan_ladder(sizes, shape, facts, budget_gb=budget_gb, ram_gb=ram_gb, mode=memory_mode)
        # A VRAM budget means nothing without a GPU; the CPU plan still checks host RAM.
        return shape, plan_ladder(sizes, shape, facts, ram_gb=ram_gb)

    sizes = sizes_before_loading(source)
    shape, ladder = make_ladder(sizes, preload_job) if sizes is not None else (None, None)

    adapter = adapter_for(source.family.adapter)
    prompt_key = _prompt_key(source, preload_job)
    staged = bool(ladder and ladder[0].staged_load)
    # Embeddings ready before the model loads: reused from an earlier job, or (staged plan)
    # encoded by the encoders alone because host RAM cannot hold them and the denoiser at once.
    ready_embeds = encoded_prompt.embeds if encoded_prompt is not None and encoded_prompt.key == prompt_key else None
    if staged and ready_embeds is None:
        ready_embeds = _encode_with_encoders_alone(source, adapter, preload_job, ladder[0], progress, timings)
    progress("load", 0, 1)
    t = time.perf_counter()
    # The same skip as the first job's, so a reused prompt finds that job's cached pipeline.
    pipe = manager.get(source, ladder[0] if ladder else None, skip=TEXT_ENCODERS if staged else ())
    timings["load"] = time.perf_counter() - t
    progress("load", 1, 1)

    job = job.adapted_to(source.family, *adapter.model_rules(pipe))  # the loaded model's real ratios
    adapter.check_model(pipe, job)
    pil_images, image_notes = _prepare_images(prepared.images, job.width, job.height)
    if ladder is None or (job.frames, job.height, job.width) != (shape.frames, shape.height, shape.width):
        shape, ladder = make_ladder(measure_components(pipe), job)  # the model's rules changed the shape
    runner = StageRunner(ladder, apply=lambda plan: apply_plan(pipe, plan, facts),
                         after_stage=lambda stage, plan: finish_stage(pipe, plan, stage))
    runner.start()
    generator = torch.Generator("cpu").manual_seed(job.seed)
    _reset_peaks(facts)

    def on_step(pipe_, step: int, timestep, callback_kwargs):
        cancel.raise_if_cancelled()  # raising here is diffusers' clean hard stop
        progress("denoise", step + 1, pipe_.num_timesteps)
        return callback_kwargs

    def encode():
        if ready_embeds is not None:
            embeds = ready_embeds
        else:
            embeds = adapter.encode_prompt(pipe, job, runner.plan.text_encode_device)
        # The plan may encode on the CPU; the denoiser wants its inputs where it runs.
        return {k: v.to(facts.execution_device) if isinstance(v, torch.Tensor) else v for k, v in embeds.items()}

    def denoise():
        with torch.inference_mode():
            return pipe(
                **embeds, **adapter.task_inputs(pipe, job, pil_images), **adapter.call_kwargs(job),
                generator=generator, output_type="latent", callback_on_step_end=on_step,
            ).frames

    def decode():  # adapters run their encode/decode under inference_mode themselves
        return adapter.decode(pipe, latents, job, generator, chunk=runner.plan.decode_chunk_size)

    progress("encode", 0, 1)
    embeds = runner.run("encode", encode, generator=generator, timings=timings)
    progress("encode", 1, 1)
    cancel.raise_if_cancelled()
    latents = runner.run("denoise", denoise, generator=generator, timings=timings)
    cancel.raise_if_cancelled()
    progress("decode", 0, 1)
    decoded = runner.run("decode", decode, generator=generator, timings=timings)
    # Adapters decode to float 0..1 (diffusers' "np" output); convert once, as the writer would.
    frames = as_uint8_frames(decoded)
    del decoded
    progress("decode", 1, 1)
    cancel.raise_if_cancelled()

    memory = {
        "plan": runner.plan.to_dict(),
        "explanation": runner.plan.explain(),
        "predicted_peak_vram_bytes": runner.plan.predicted_peak_vram_bytes,
        "predicted_peak_ram_bytes": runner.plan.predicted_peak_ram_bytes,
        **_measured_peaks(facts),
    }
    return GeneratedFrames(frames=frames, job=job, source=source, device=facts, memory=memory,
                           attempts=runner.attempts, notes=[*job.adjustments, *image_notes, *runner.notes],
                           timings=timings, inputs=dict(prepared.inputs),
                           encoded_prompt=EncodedPrompt(prompt_key, embeds))


# ------------------------------------------------------------------------ helpers
def _encode_with_encoders_alone(source, adapter, job: JobSpec, plan, progress, timings) -> dict[str, Any]:
    """Staged loading: load only the text encoders, encode the prompt, release them."""
    from .memory.apply import place_text_encoders, release_memory

    progress("encode", 0, 1)
    t = time.perf_counter()
    encoder_pipe = load_pipeline(source, None, skip=HEAVY_COMPONENTS)
    place_text_encoders(encoder_pipe, plan)
    embeds = adapter.encode_prompt(encoder_pipe, job, plan.text_encode_device)
    del encoder_pipe
    release_memory()
    timings["encode"] = time.perf_counter() - t
    return embeds


def sizes_before_loading(source):
    """Component sizes without loading weights: a folder's safetensors headers, else the size profile
    of a known hub repo or preset, else a cached snapshot's files; None when nothing is on disk yet."""
    from .memory import measure_folder, profile_sizes
    from .memory.sizes import REPO_PROFILES

    if source.kind in ("tiny", "folder"):
        return measure_folder(source.location)
    if source.location in REPO_PROFILES:
        return profile_sizes(source.location)
    if source.preset is not None and source.preset.size_profile:
        return profile_sizes(source.preset.size_profile)
    try:
        return measure_folder(_local_folder(source))
    except KinetographError:
        return None  # loading will say what is missing


def _output_path(job: JobSpec, output_dir: str | Path | None, overwrite: bool) -> tuple[Path, str | None]:
    """Where the result goes; an existing file is never replaced unless asked."""
    if job.out:
        wanted = Path(job.out).expanduser()
        if wanted.suffix.lower() != ".mp4":
            raise KinetographError(f"Output {wanted} must end in .mp4 (Kinetograph writes H.264 mp4).")
    else:
        root = Path(output_dir) if output_dir else Path("outputs")
        stem = job.name or _slug(job.prompt) or job.task
        wanted = root / _dt.date.today().isoformat() / f"{stem}-{job.seed}.mp4"
    wanted.parent.mkdir(parents=True, exist_ok=True)
    if overwrite or not wanted.exists():
        return wanted, None
    free = unique_output_path(wanted)
    return free, f"{wanted} already exists, so this result is {free} (pass --overwrite to replace it)"


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def _prepare_images(images: dict[str, Any], width: int, height: int):
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


IMAGE_KEYS = ("image", "last_image")


def _input_images(job: JobSpec, given: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
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
                    f"that says where the array came from (e.g. 'frame 12 of clip.mp4'); it is recorded, not read."
                )
            array = given[key]
            if (not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3
                    or array.shape[2] != 3 or min(array.shape[:2]) < 1):
                what = f"{array.dtype} array of shape {array.shape}" if isinstance(array, np.ndarray) else \
                    type(array).__name__
                raise KinetographError(f"The {key} array must be RGB uint8 H×W×3, got a {what}.")
            images[key], inputs[key] = np.ascontiguousarray(array), "array"
        elif label:
            images[key], inputs[key] = read_image(label), "file"
    return images, inputs


def _reset_peaks(facts: DeviceFacts) -> None:
    if facts.has_cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()


def _measured_peaks(facts: DeviceFacts) -> dict[str, int | None]:
    import resource

    vram = None
    if facts.has_cuda:
        import torch

        vram = int(torch.cuda.max_memory_allocated())
    # ru_maxrss is the process's peak resident set in KiB on Linux.
    ram = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"measured_peak_vram_bytes": vram, "measured_peak_ram_bytes": int(ram)}


def _versions() -> dict[str, str]:
    import diffusers
    import torch
    import transformers

    return {"kinetograph": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__}


# ----------------------------------------------------------------------- planning
def plan_for_model(model: str, task: str = "t2v", frames: int | None = None, width: int | None = None,
                   height: int | None = None, steps: int | None = None, guidance: float | None = None,
                   facts: DeviceFacts | None = None, budget_gb: float | None = None, ram_gb: float | None = None,
                   mode: str | None = None):
    """The memory plan a job would get, without loading (or downloading) any weights.

    Presets and known hub repos are planned from their size profiles; built-in tiny models
    and local folders are measured from their safetensors headers.
    """
    from .memory import plan_memory, profile_sizes
    from .memory.sizes import REPO_PROFILES

    facts = facts or DeviceFacts.detect()
    if model in REPO_PROFILES:  # a known hub repo: planned from its profile, nothing fetched
        sizes, family = profile_sizes(model), resolve_family_of_profile(model)
    else:
        source = resolve_model(model, task, prefer_cuda=facts.has_cuda)
        family, sizes = source.family, sizes_before_loading(source)
        if sizes is None:
            _local_folder(source)  # raises the missing-model error (files needed, download command)
    # The job's shape with the family's defaults and rounding (no prompt or images needed to plan).
    shaped = JobSpec(task="t2v", model=model, prompt="plan", frames=frames, width=width, height=height,
                     steps=steps, guidance=guidance, seed=0).adapted_to(family)
    shape = JobShape(frames=shaped.frames, height=shaped.height, width=shaped.width, cfg=shaped.guidance > 1.0,
                     steps=shaped.steps)
    return plan_memory(sizes, shape, facts, budget_gb=budget_gb, ram_gb=ram_gb, mode=mode)


def resolve_family_of_profile(repo_id: str):
    from .families import PRESETS, get_family

    for preset in PRESETS.values():
        if repo_id in preset.repos.values():
            return get_family(preset.family)
    raise KinetographError(f"No preset uses {repo_id!r}; plan it through a local folder instead.")


def _local_folder(source) -> Path:
    if source.kind in ("tiny", "folder"):
        return Path(source.location)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source.location, local_files_only=True))
    except Exception as exc:
        from .models import missing_model_error

        raise missing_model_error(source.location, source.pipeline_class, exc) from None
