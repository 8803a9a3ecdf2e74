"""Family adapters: the little that differs between diffusers pipeline families.

The engine runs every job in three stages so that an out-of-memory failure can retry one
stage without redoing the others: encode the prompt, denoise to latents
(``output_type="latent"``), decode the latents. diffusers does all three inside
``__call__``; an adapter exposes the first and last as separate calls, using the
pipeline's own ``encode_prompt`` and reproducing its decode tail exactly (the tests
compare against the pipeline's own output frame for frame).
"""
from __future__ import annotations

import inspect
from typing import Any

from .errors import KinetographError
from .jobspec import JobSpec


def _call_default(pipe, name: str, fallback: Any) -> Any:
    """A default of the pipeline's own __call__ (e.g. max_sequence_length differs per class)."""
    param = inspect.signature(pipe.__call__).parameters.get(name)
    return fallback if param is None or param.default is inspect.Parameter.empty else param.default


def _inference(method):
    """Run an adapter stage without autograd (callers may be tests or other front doors)."""
    import functools

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
    """Defaults shared by the transformer families; subclasses override what differs."""

    prompt_embed_names: tuple[str, ...] = ("prompt_embeds", "negative_prompt_embeds")

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

    def call_kwargs(self, job: JobSpec) -> dict[str, Any]:
        """The job's shape and sampling settings in the pipeline's own argument names."""
        return {"height": job.height, "width": job.width, "num_frames": job.frames,
                "num_inference_steps": job.steps, "guidance_scale": job.guidance}

    def decode(self, pipe, latents, job: JobSpec, generator, chunk: int | None = None):
        """Latents -> float frames (T, H, W, 3) in 0..1 as a numpy array.

        ``chunk``: frames decoded at a time, for VAEs that decode frame by frame (memory plan)."""
        raise NotImplementedError


class LTXAdapter(FamilyAdapter):
    prompt_embed_names = ("prompt_embeds", "prompt_attention_mask",
                          "negative_prompt_embeds", "negative_prompt_attention_mask")

    def model_rules(self, pipe) -> tuple[int, int]:
        return (pipe.vae_temporal_compression_ratio,
                pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size)

    def task_inputs(self, pipe, job, images):
        if job.task != "keyframes":
            return super().task_inputs(pipe, job, images)
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        # LTXConditionPipeline places each image at a frame index: first and last frame.
        return {"conditions": [LTXVideoCondition(image=images["image"], frame_index=0),
                               LTXVideoCondition(image=images["last_image"], frame_index=job.frames - 1)]}

    def call_kwargs(self, job):
        # LTX scales its rotary positions by the frame rate.
        return {**super().call_kwargs(job), "frame_rate": int(round(job.fps))}

    @_inference
    def decode(self, pipe, latents, job, generator, chunk=None):
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        if latents.ndim == 3:  # t2v / i2v return packed tokens; the condition pipeline unpacks itself
            latents = pipe._unpack_latents(
                latents,
                (job.frames - 1) // pipe.vae_temporal_compression_ratio + 1,
                job.height // pipe.vae_spatial_compression_ratio,
                job.width // pipe.vae_spatial_compression_ratio,
                pipe.transformer_spatial_patch_size,
                pipe.transformer_temporal_patch_size,
            )
        vae = pipe.vae
        latents = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        latents = latents.to(pipe.transformer.dtype)
        timestep = None
        if vae.config.timestep_conditioning:
            # Same draw as the pipeline's tail so results match it exactly.
            decode_timestep = _call_default(pipe, "decode_timestep", 0.0)
            noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
            timestep = torch.tensor([decode_timestep], device=latents.device, dtype=latents.dtype)
            scale = torch.tensor([decode_timestep], device=latents.device, dtype=latents.dtype)[:, None, None, None, None]
            latents = (1 - scale) * latents + scale * noise
        latents = latents.to(vae.dtype)
        video = vae.decode(latents, timestep, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


class WanAdapter(FamilyAdapter):
    def model_rules(self, pipe) -> tuple[int, int]:
        patch = pipe.transformer.config.patch_size
        return pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial * patch[1]

    def check_model(self, pipe, job):
        # Wan's first-last-frame (FLF2V) transformer has its own positional table for the two images;
        # each checkpoint only works with its own task and fails deep inside otherwise.
        if job.task not in ("i2v", "keyframes"):
            return
        first_last = getattr(pipe.transformer.config, "pos_embed_seq_len", None) is not None
        if job.task == "keyframes" and not first_last:
            raise KinetographError(
                "This Wan checkpoint is image-to-video only; first+last frame needs a first-last-frame "
                "(FLF2V) checkpoint, e.g. --model wan2.1-14b (uses Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers)."
            )
        if job.task == "i2v" and first_last:
            raise KinetographError(
                "This Wan checkpoint is a first-last-frame (FLF2V) model: use --task keyframes with "
                "--image and --last-image, or an image-to-video checkpoint for a start frame alone."
            )

    @_inference
    def decode(self, pipe, latents, job, generator, chunk=None):
        import torch

        vae = pipe.vae
        latents = latents.to(next(vae.parameters()).device, dtype=vae.dtype)
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
        video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
        return pipe.video_processor.postprocess_video(video, output_type="np")[0]


class UNetAdapter(FamilyAdapter):
    """AnimateDiff (SD 1.5 UNet + motion adapter)."""

    def model_rules(self, pipe) -> tuple[int, int]:
        return 1, pipe.vae_scale_factor

    @_inference
    def encode_prompt(self, pipe, job, device):
        embeds, negative = pipe.encode_prompt(
            job.prompt, device, 1, uses_cfg(job), job.negative_prompt if uses_cfg(job) else None
        )
        return {"prompt": None, "prompt_embeds": embeds, "negative_prompt_embeds": negative}

    @_inference
    def decode(self, pipe, latents, job, generator, chunk=None):
        video = pipe.decode_latents(latents, chunk or _call_default(pipe, "decode_chunk_size", 16))
        return pipe.video_processor.postprocess_video(video=video, output_type="np")[0]


class SVDAdapter(FamilyAdapter):
    """Stable Video Diffusion: image-only conditioning (no prompt), min/max guidance ramp."""

    def model_rules(self, pipe) -> tuple[int, int]:
        return 1, pipe.vae_scale_factor

    def encode_prompt(self, pipe, job, device):
        return {}  # SVD embeds the start image inside its own call; it has no text encoder

    def call_kwargs(self, job):
        return {"height": job.height, "width": job.width, "num_frames": job.frames,
                "num_inference_steps": job.steps, "max_guidance_scale": job.guidance,
                "fps": max(1, int(round(job.fps)) - 1)}  # SVD is conditioned on fps - 1 (its docs)

    @_inference
    def decode(self, pipe, latents, job, generator, chunk=None):
        chunk = chunk or _call_default(pipe, "decode_chunk_size", None) or job.frames
        frames = pipe.decode_latents(latents.to(pipe.vae.dtype), job.frames, chunk)
        return pipe.video_processor.postprocess_video(video=frames, output_type="np")[0]


ADAPTERS: dict[str, FamilyAdapter] = {"ltx": LTXAdapter(), "wan": WanAdapter(), "unet": UNetAdapter(),
                                      "svd": SVDAdapter()}


def adapter_for(adapter_name: str) -> FamilyAdapter:
    try:
        return ADAPTERS[adapter_name]
    except KeyError:
        raise KinetographError(
            f"Generation with the {adapter_name!r} family adapter is not available in this version; "
            f"available: {', '.join(ADAPTERS)}."
        ) from None
