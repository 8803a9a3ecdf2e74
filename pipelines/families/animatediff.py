"""AnimateDiff: an SD 1.5 UNet with a motion adapter (ControlNet, FreeNoise)."""
from __future__ import annotations

from ..memory.sizes import CLIP_L_ARCH, SD_VAE, ComponentSize, DenoiserArch, ModelSizes
from .base import (
    Continuation,
    FamilyAdapter,
    ModelFamily,
    ModelPreset,
    TinyModel,
    _call_default,
    _inference,
    uses_cfg,
)
from .tiny_parts import TEXT_WIDTH, clip_text_encoder, clip_tokenizer, seeded


# =============================================================================== adapter
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

    # ------------------------------------------------------------------ continuation
    # One latent frame per frame (the SD VAE has no temporal compression): the latents of the frames a
    # segment continues from are those the last segment ended with, so no VAE round trip between segments.
    carries_latents = True

    def latent_frames(self, latents, start, end):
        return latents[:, :, start:end].clone()  # (B, C, T, h, w)

    def continuation(self, pipe, job, context, carried=None):
        """Text to video whose first ``len(context)`` frames are known: after every step their latents are put
        back, noised to the next step's level (the replacement method diffusers' inpainting pipelines use
        for UNets without an inpainting input). A segment longer than the motion modules' window runs
        FreeNoise (sliding windows over time, its rescheduled noise)."""
        if job.task != "continue":
            return super().continuation(pipe, job, context, carried)
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        known_count = len(context)
        generator = torch.Generator("cpu").manual_seed(job.seed)
        close = None
        if job.frames > FREE_NOISE_WINDOW:
            pipe.enable_free_noise(context_length=FREE_NOISE_WINDOW, context_stride=FREE_NOISE_STRIDE)
            close = pipe.disable_free_noise
            # FreeNoise's noise: one window of noise, shuffled into the later windows.
            noise = pipe._prepare_latents_free_noise(1, pipe.unet.config.in_channels, job.frames, job.height,
                                                     job.width, torch.float32, torch.device("cpu"), generator)
            # diffusers' FreeNoise call encodes the prompt itself and refuses embeddings; the engine encodes in
            # a stage of its own (the encoders may be released before denoising). With one prompt per segment
            # FreeNoise's per-frame prompt interpolation equals the embeddings repeated per frame, so the call
            # runs in plain mode (the pipeline's FreeNoise flag off) while the windowed blocks stay in.
            pipe._free_noise_context_length = None
        else:
            shape = (1, pipe.unet.config.in_channels, job.frames, job.height // pipe.vae_scale_factor,
                     job.width // pipe.vae_scale_factor)
            noise = randn_tensor(shape, generator=generator, dtype=torch.float32)
        noise = noise.to(pipe.unet.dtype)
        known = {"latents": carried}

        def put_back_known(pipe_, step, timestep, latents):
            if known["latents"] is None:  # a video's own frames: encoded once, under the memory plan
                known["latents"] = self.encode_frames(pipe_, context)
            clean = known["latents"].to(latents.device, latents.dtype)
            timesteps = pipe_.scheduler.timesteps
            if step + 1 < len(timesteps):  # the latents are now at the next step's noise level
                noisy = pipe_.scheduler.add_noise(clean, noise[:, :, :known_count].to(latents.device),
                                                  timesteps[step + 1:step + 2])
            else:
                noisy = clean  # the last step: the known frames exactly
            latents = latents.clone()
            latents[:, :, :known_count] = noisy
            return latents

        return Continuation({"latents": noise}, put_back_known, close)

    @_inference
    def encode_frames(self, pipe, frames):
        """PIL frames -> (1, C, T, h, w) latents (the VAE's mode, scaled as the UNet sees them)."""
        vae = pipe.vae
        pixels = pipe.video_processor.preprocess(list(frames))  # (T, 3, H, W) in -1..1
        param = next(vae.parameters())
        latent = vae.encode(pixels.to(param.device, vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
        return latent.permute(1, 0, 2, 3).unsqueeze(0)


# FreeNoise (Qiu et al. 2023) as diffusers implements it: motion attention in windows of the frames the
# motion modules were trained on, a window starting every FREE_NOISE_STRIDE frames (diffusers' defaults).
FREE_NOISE_WINDOW = 16
FREE_NOISE_STRIDE = 4


# ========================================================================= size profiles
# Numbers and their provenance: see the comment above the profiles in memory/sizes.py.
_UNET_MOTION_BLOCK = ((14745600, 4), (13107200, 4), (7372800, 1), (6553600, 4), (1638400, 38), (4878080, 1))

SIZE_PROFILES: dict[str, ModelSizes] = {
    "animatediff-sd15": ModelSizes(
        "animatediff-sd15",
        {"unet": ComponentSize("unet", "denoiser", 1_312_730_244, "float16", 8, 366_545_920, 29_492_480,
                               _UNET_MOTION_BLOCK),
         "text_encoder": ComponentSize("text_encoder", "text_encoder", 123_060_480, "float16", 12,
                                       7_087_872, 37_945_344),
         "vae": ComponentSize("vae", "vae", 83_653_863, "float16", 0, 0, 2_359_808)},
        # 2.03 GiB and 31.4 TFLOPs (+20% attention) for a CFG batch of 2 x 16 frames x 64 x 64 latents
        DenoiserArch("unet", 16, 1280, 8, 5120, text_len=77, cfg_batched=True,
                     unet_act_bytes_per_voxel=16_640, unet_flops_per_voxel=2.9e8, supports_fp8=False),
        SD_VAE, CLIP_L_ARCH, compute_dtype="float16", source="profile"),
}
REPO_PROFILES = {"emilianJR/epiCRealism": "animatediff-sd15"}


# ============================================================================ tiny model
_UNET_CHANNELS = (8, 16)


@seeded
def _sd_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=_UNET_CHANNELS,
        layers_per_block=1,
        sample_size=8,  # latent size: 64 px / VAE 8x, the pipelines' default height and width
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=2,
        norm_num_groups=4,
    )


@seeded
def _motion_adapter():
    from diffusers import MotionAdapter

    return MotionAdapter(
        block_out_channels=_UNET_CHANNELS,
        motion_layers_per_block=1,
        motion_norm_num_groups=4,
        motion_num_attention_heads=2,
    )


@seeded
def _sd_vae():
    from diffusers import AutoencoderKL

    # Four blocks, three downsamplings: 8x in space like the SD1.5 VAE.
    return AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )


def _animatediff_scheduler():
    from diffusers import DDIMScheduler

    # The scheduler settings AnimateDiff's examples use with SD1.5.
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="linear",
        clip_sample=False,
        timestep_spacing="linspace",
        steps_offset=1,
    )


def _animatediff_pipeline():
    from diffusers import AnimateDiffPipeline

    tokenizer = clip_tokenizer()
    # The pipeline merges unet + motion adapter into a UNetMotionModel and saves that as `unet`.
    return AnimateDiffPipeline(
        unet=_sd_unet(),
        motion_adapter=_motion_adapter(),
        vae=_sd_vae(),
        scheduler=_animatediff_scheduler(),
        text_encoder=clip_text_encoder(tokenizer),
        tokenizer=tokenizer,
        feature_extractor=None,
        image_encoder=None,
    )


# ======================================================================= latent previews
# ComfyUI comfy/latent_formats.py, class SD15: 4 latent channels -> RGB (no bias). Also used by svd.py.
SD15_LATENT_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)


# =============================================================================== entry
FAMILY = ModelFamily(
    id="animatediff",
    label="AnimateDiff (SD 1.5 + motion adapter)",
    adapter=UNetAdapter(),
    pipelines={
        "t2v": "AnimateDiffPipeline",
        "v2v": "AnimateDiffVideoToVideoPipeline",
        "continue": "AnimateDiffPipeline",  # text to video with known first frames (extension)
    },
    frame_multiple=1,
    size_multiple=8,
    default_width=512,
    default_height=512,
    default_frames=16,
    max_frames=32,  # motion modules are trained on 16 frames; an extension segment over 16 runs FreeNoise
    default_fps=8,
    default_steps=25,
    default_guidance=7.5,
    default_negative_prompt="bad quality, worse quality, low resolution",
    layerwise_fp8=False,
    size_profiles=SIZE_PROFILES,
    repo_profiles=REPO_PROFILES,
    # UNetMotionModel: the loaded pipeline's unet (SD 1.5 UNet merged with the motion adapter).
    denoiser_classes=frozenset({"UNetMotionModel", "UNet2DConditionModel", "UNetControlNetXSModel"}),
    denoiser_kind="unet",
    tiny_models={
        "tiny-animatediff": TinyModel(
            "tiny-animatediff", "AnimateDiffPipeline",
            "AnimateDiff: SD1.5-style UNet with a motion adapter (random weights). VAE 8x space.",
            _animatediff_pipeline),
    },
    presets=(
        ModelPreset("tiny-animatediff", "animatediff", {"t2v": "tiny-animatediff", "continue": "tiny-animatediff"},
                    "tiny random AnimateDiff (noise; for smoke tests)", dtype="float32", tiny=True),
        ModelPreset("animatediff-sd15", "animatediff", {"t2v": "emilianJR/epiCRealism",
                                                         "continue": "emilianJR/epiCRealism"},
                    "AnimateDiff v1-5-2 motion adapter on an SD 1.5 checkpoint",
                    size_profile="animatediff-sd15", dtype="float16",
                    extra_repos={"motion_adapter": "guoyww/animatediff-motion-adapter-v1-5-2"}),
    ),
    latent_rgb_factors=SD15_LATENT_RGB_FACTORS,
    # Extension: 32-frame segments (FreeNoise windows of 16) continuing from the last 8 frames, 4 crossfaded.
    continue_with=("continue",),
    extend_context=8,
    extend_overlap=4,
    extend_segment_frames=32,
)
