"""The shape of a family entry: ``ModelFamily``, ``ModelPreset``, ``TinyModel`` and ``FamilyAdapter``.

A family module (``ltx.py``, ``wan.py``, ...) fills in one ``ModelFamily``: which diffusers
pipeline class serves which task, the rules its inputs obey, its defaults, the adapter for
what its pipelines do differently, the memory planner's size profiles, its tiny test models
and its presets. ``pipelines.families`` collects them into the registry.

Nothing heavy is imported here: torch and diffusers are imported inside the methods that use them.
"""
from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import KinetographError

if TYPE_CHECKING:  # jobspec imports the registry: no import cycle at run time
    from ..jobspec import JobSpec

# Tasks every front door knows. Later issues add edit/extend/v2v entries to families.
TASKS = ("t2v", "i2v", "keyframes")
TASK_LABELS = {
    "t2v": "text to video",
    "i2v": "image to video (start frame)",
    "keyframes": "first and last frame to video",
}


# ============================================================================ adapters
def _call_default(pipe, name: str, fallback: Any) -> Any:
    """A default of the pipeline's own __call__ (e.g. max_sequence_length differs per class)."""
    param = inspect.signature(pipe.__call__).parameters.get(name)
    return fallback if param is None or param.default is inspect.Parameter.empty else param.default


def _inference(method):
    """Run an adapter stage without autograd (callers may be tests or other front doors)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return method(*args, **kwargs)

    return wrapper


def uses_cfg(job: JobSpec) -> bool:
    # All supported pipelines switch classifier-free guidance on for guidance_scale > 1.
    return (job.guidance or 0.0) > 1.0


class FamilyAdapter:
    """The little that differs between diffusers pipeline families.

    The engine runs every job in three stages so that an out-of-memory failure can retry one
    stage without redoing the others: encode the prompt, denoise to latents
    (``output_type="latent"``), decode the latents. diffusers does all three inside
    ``__call__``; an adapter exposes the first and last as separate calls, using the
    pipeline's own ``encode_prompt`` and reproducing its decode tail exactly (the tests
    compare against the pipeline's own output frame for frame). ``preview`` turns the
    latents seen during denoising into small RGB frames.

    Defaults are those of the transformer families; subclasses override what differs.
    """

    prompt_embed_names: tuple[str, ...] = ("prompt_embeds", "negative_prompt_embeds")
    # Set from the family entry (ModelFamily.latent_rgb_factors / latent_rgb_bias).
    latent_rgb_factors: tuple[tuple[float, float, float], ...] | None = None
    latent_rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def model_rules(self, pipe) -> tuple[int, int]:
        """(frame multiple, size multiple) read from the loaded model, never hard-coded."""
        raise NotImplementedError

    def check_model(self, pipe, job: JobSpec) -> None:
        """Fail early when the loaded checkpoint cannot do the job's task."""

    @_inference
    def encode_prompt(self, pipe, job: JobSpec, device) -> dict[str, Any]:
        outputs = pipe.encode_prompt(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt if uses_cfg(job) else None,
            do_classifier_free_guidance=uses_cfg(job),
            num_videos_per_prompt=1,
            max_sequence_length=_call_default(pipe, "max_sequence_length", 128),
            device=device,
        )
        # prompt=None: some pipelines (SkyReels) take prompt as a required positional argument.
        return {"prompt": None, **dict(zip(self.prompt_embed_names, outputs, strict=True))}

    def task_inputs(self, pipe, job: JobSpec, images: dict[str, Any]) -> dict[str, Any]:
        """Image inputs of i2v / keyframes as the pipeline wants them (PIL images)."""
        inputs: dict[str, Any] = {}
        if "image" in images:
            inputs["image"] = images["image"]
        if "last_image" in images:
            inputs["last_image"] = images["last_image"]
        return inputs

    # Whether ``continuation`` can take the latents of the frames it continues from (``carried``) instead
    # of their pixels: the VAE round trip each segment is skipped (see ``Continuation``).
    carries_latents: bool = False

    def continuation(self, pipe, job: JobSpec, context: list[Any], carried=None) -> Continuation:
        """How ``job.task``'s pipeline continues a video whose last frames are ``context`` (PIL images at the
        job's size, oldest first). ``carried``: those frames' latents from the generation that made them
        (only for an adapter that ``carries_latents``; None: start from the pixels). Called before the memory
        plan is applied, so what it changes in the pipeline is placed by the plan. Default: the pipeline's
        own conditioning inputs (``continuation_inputs``)."""
        return Continuation(self.continuation_inputs(pipe, job, context))

    def latent_frames(self, latents, start: int, end: int):
        """Frames ``start:end`` of a generation's final latents, as ``continuation`` takes them back
        (adapters that ``carries_latents``)."""
        raise NotImplementedError

    def continuation_inputs(self, pipe, job: JobSpec, context: list[Any]) -> dict[str, Any]:
        """Inputs that make ``job.task``'s pipeline continue a video whose last frames are ``context``
        (PIL images at the job's size, oldest first): the generation's first ``len(context)`` frames
        repeat them. Default: image to video from the last frame (``context`` is that one frame)."""
        if job.task == "i2v":  # pixels: an image-to-video call starts from an image, never from latents
            return {"image": context[-1]}
        raise KinetographError(f"The {job.task!r} pipeline of this family cannot continue a video.")

    def call_kwargs(self, job: JobSpec) -> dict[str, Any]:
        """The job's shape and sampling settings in the pipeline's own argument names."""
        return {"height": job.height, "width": job.width, "num_frames": job.frames,
                "num_inference_steps": job.steps, "guidance_scale": job.guidance}

    def decode(self, pipe, latents, job: JobSpec, generator, chunk: int | None = None):
        """Latents -> float frames (T, H, W, 3) in 0..1 as a numpy array.

        ``chunk``: frames decoded at a time, for VAEs that decode frame by frame (memory plan)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ previews
    def preview_latents(self, pipe, latents, job: JobSpec):
        """The first video of the batch as a (C, T, h, w) tensor. Default layout: (B, C, T, h, w)."""
        return latents[0]

    def preview(self, pipe, latents, job: JobSpec):
        """A cheap RGB look at the latents the pipeline holds during denoising (as passed to
        ``callback_on_step_end`` in ``callback_kwargs["latents"]``): uint8 (T, h, w, 3) at latent
        resolution, by the family's linear latent-to-RGB factors (ComfyUI's latent previews).
        Latents whose channels do not match the factors (e.g. the tiny models) are shown by their
        first three channels, each stretched to its own min..max."""
        import torch

        with torch.no_grad():
            video = self.preview_latents(pipe, latents, job).detach().float()  # (C, T, h, w)
            return latents_to_rgb(video, self.latent_rgb_factors, self.latent_rgb_bias)

    def with_latent_rgb(self, factors, bias) -> FamilyAdapter:
        """This adapter with the given preview factors (a copy when they differ)."""
        bias = tuple(bias) if bias is not None else (0.0, 0.0, 0.0)
        if self.latent_rgb_factors == factors and self.latent_rgb_bias == bias:
            return self
        adapter = copy.copy(self)
        adapter.latent_rgb_factors, adapter.latent_rgb_bias = factors, bias
        return adapter


@dataclass
class Continuation:
    """What a pipeline call needs to continue a video (``FamilyAdapter.continuation``).

    ``inputs``: extra arguments of the call. ``on_step(pipe, step, timestep, latents)``: called after each
    denoising step with the latents the scheduler just made; returns them edited (e.g. the known frames
    put back) or as they are. ``close()``: undoes what was done to the pipeline for this call; the engine
    calls it once the call is over, however it ended."""

    inputs: dict[str, Any]
    on_step: Callable[[Any, int, Any, Any], Any] | None = None
    close: Callable[[], None] | None = None


def latents_to_rgb(video, factors=None, bias=None):
    """(C, T, h, w) float tensor -> uint8 numpy (T, h, w, 3)."""
    import torch

    channels = video.shape[0]
    if factors is not None and len(factors) == channels:
        weight = torch.tensor(factors, dtype=video.dtype, device=video.device)  # (C, 3)
        offset = torch.tensor(bias or (0.0, 0.0, 0.0), dtype=video.dtype, device=video.device)
        rgb = torch.einsum("cthw,cr->thwr", video, weight) + offset
        rgb = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)  # as ComfyUI's Latent2RGBPreviewer
    else:
        picked = video[[i % channels for i in range(3)]]  # first three channels (repeated if fewer)
        low = picked.amin(dim=(1, 2, 3), keepdim=True)
        span = picked.amax(dim=(1, 2, 3), keepdim=True) - low
        rgb = ((picked - low) / torch.where(span > 0, span, torch.ones_like(span))).permute(1, 2, 3, 0)
    return (rgb * 255.0).round().to(torch.uint8).cpu().numpy()


# ============================================================================== entries
@dataclass(frozen=True)
class ModelPreset:
    id: str
    family: str
    repos: dict[str, str]  # task -> hub repo id (or tiny model name when tiny=True)
    description: str
    size_profile: str | None = None  # key into the family's size_profiles (planning without weights)
    dtype: str = "bfloat16"
    component_dtypes: dict[str, str] = field(default_factory=dict)  # e.g. Wan VAE in float32
    extra_repos: dict[str, str] = field(default_factory=dict)  # e.g. AnimateDiff motion adapter
    tiny: bool = False


@dataclass(frozen=True)
class TinyModel:
    """A built-in tiny model: calling it builds the diffusers pipeline (random, seeded weights)."""

    name: str  # the built-in model id, e.g. "tiny-wan-i2v"
    pipeline_class: str  # diffusers class written in model_index.json
    description: str
    build: Callable[[], Any]

    def __call__(self) -> Any:
        return self.build()


@dataclass(frozen=True)
class ModelFamily:
    id: str
    label: str
    adapter: FamilyAdapter  # encodes prompts, decodes latents, previews: what differs per family
    pipelines: dict[str, str]  # task -> diffusers pipeline class name
    frame_multiple: int  # frames must be frame_multiple*k + 1 (the VAE's temporal compression)
    size_multiple: int  # width/height multiple (VAE spatial compression x transformer patch)
    default_width: int
    default_height: int
    default_frames: int
    max_frames: int  # longest single generation the family is meant for; longer = the extend task
    default_fps: float
    default_steps: int
    default_guidance: float
    default_negative_prompt: str = ""
    layerwise_fp8: bool = True  # transformer tolerates fp8 storage with bf16 compute
    notes: str = ""
    # Memory planner: size profile name -> ModelSizes (or a function returning one), and the
    # hub repo ids planned by those profiles without downloading anything.
    size_profiles: Mapping[str, Any] = field(default_factory=dict)
    repo_profiles: Mapping[str, str] = field(default_factory=dict)
    # Denoiser classes (model_index.json / config class names) of this family, and the
    # activation model the planner uses for them (DenoiserArch.family: "wan" | "ltx" | "unet").
    denoiser_classes: frozenset[str] = frozenset()
    denoiser_kind: str = "dit"
    tiny_models: Mapping[str, TinyModel] = field(default_factory=dict)  # tiny model name -> builder
    presets: tuple[ModelPreset, ...] = ()
    # Latent previews: C x 3 factors and an RGB bias (ComfyUI comfy/latent_formats.py).
    latent_rgb_factors: tuple[tuple[float, float, float], ...] | None = None
    latent_rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # Long-video extension: the tasks whose pipeline can continue a video, in order of preference
    # (the first the model has is used; see FamilyAdapter.continuation_inputs), the frames of what
    # exists each segment is conditioned on, and how many of those are crossfaded with the new ones.
    continue_with: tuple[str, ...] = ()
    extend_context: int = 1
    extend_overlap: int = 0
    continuation_repeats_context: bool = True  # its first len(context) frames repeat the context (else: new only)
    extend_segment_frames: int | None = None  # frames per extension segment (None: default_frames)

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapter", self.adapter.with_latent_rgb(self.latent_rgb_factors,
                                                                         self.latent_rgb_bias))
