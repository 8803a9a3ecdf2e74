"""Stable Video Diffusion: image to video, image-only conditioning (no prompt)."""
from __future__ import annotations

from dataclasses import replace

from ..memory.sizes import SVD_VAE, ComponentSize, DenoiserArch, ModelSizes, clip_vit_h
from .animatediff import SD15_LATENT_RGB_FACTORS
from .base import FamilyAdapter, ModelFamily, ModelPreset, TinyModel, _call_default, _inference
from .tiny_parts import clip_image_encoder, clip_image_processor, seeded


# =============================================================================== adapter
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

    def preview_latents(self, pipe, latents, job):
        return latents[0].permute(1, 0, 2, 3)  # SVD's latents are (B, T, C, h, w)

    @_inference
    def decode(self, pipe, latents, job, generator, chunk=None):
        chunk = chunk or _call_default(pipe, "decode_chunk_size", None) or job.frames
        frames = pipe.decode_latents(latents.to(pipe.vae.dtype), job.frames, chunk)
        return pipe.video_processor.postprocess_video(video=frames, output_type="np")[0]


# ========================================================================= size profiles
# Numbers and their provenance: see the comment above the profiles in memory/sizes.py.
_SVD_UNET_BLOCK = ((14745600, 4), (13107200, 6), (7372800, 1), (6553600, 10), (4915200, 4), (1638400, 32),
                   (1310720, 8), (994564, 1))

SIZE_PROFILES: dict[str, ModelSizes] = {
    "svd-xt": ModelSizes(
        "svd-xt",
        {"unet": ComponentSize("unet", "denoiser", 1_524_623_082, "float16", 8, 489_498_886, 29_492_480,
                               _SVD_UNET_BLOCK),
         "image_encoder": replace(clip_vit_h(), checkpoint_dtype="float16"),
         "vae": ComponentSize("vae", "vae", 97_742_847, "float16", 0, 0, 2_359_808)},
        # 7.73 GiB and 129 TFLOPs (+20% attention) for 2 x 25 frames x 72 x 128 latents
        DenoiserArch("unet", 16, 1280, 20, 5120, text_len=1, cfg_batched=True,
                     unet_act_bytes_per_voxel=18_000, unet_flops_per_voxel=3.3e8, supports_fp8=False),
        SVD_VAE, None, compute_dtype="float16", source="profile"),
}
REPO_PROFILES = {"stabilityai/stable-video-diffusion-img2vid-xt": "svd-xt"}


# ============================================================================ tiny model
_SVD_IMAGE_WIDTH = 32


@seeded
def _svd_unet():
    from diffusers import UNetSpatioTemporalConditionModel

    return UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),  # the spatio-temporal blocks use 32 norm groups
        layers_per_block=1,
        sample_size=8,  # latent size: 64 px / VAE 8x, the pipeline's default height and width
        in_channels=8,  # noisy latents + image latents
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=_SVD_IMAGE_WIDTH,
        num_attention_heads=2,
        # fps, motion bucket and noise strength, each embedded to addition_time_embed_dim.
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=3 * 8,
        num_frames=14,
    )


@seeded
def _svd_vae():
    from diffusers import AutoencoderKLTemporalDecoder

    return AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32, 32),  # 32 norm groups; four blocks give 8x in space
        down_block_types=("DownEncoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
    )


def _svd_scheduler():
    from diffusers import EulerDiscreteScheduler

    # The real SVD scheduler configuration.
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )


def _svd_pipeline():
    from diffusers import StableVideoDiffusionPipeline

    return StableVideoDiffusionPipeline(
        unet=_svd_unet(),
        vae=_svd_vae(),
        scheduler=_svd_scheduler(),
        # The pipeline resizes the conditioning image to 224 px itself, so the encoder must take 224.
        image_encoder=clip_image_encoder(224, 32, _SVD_IMAGE_WIDTH, with_projection=True),
        feature_extractor=clip_image_processor(224),
    )


# =============================================================================== entry
FAMILY = ModelFamily(
    id="svd",
    label="Stable Video Diffusion",
    adapter=SVDAdapter(),
    continue_with=("i2v",),
    pipelines={"i2v": "StableVideoDiffusionPipeline"},
    frame_multiple=1,
    size_multiple=8,
    default_width=1024,
    default_height=576,
    default_frames=25,
    max_frames=25,
    default_fps=7,
    default_steps=25,
    default_guidance=3.0,
    layerwise_fp8=False,
    notes="image-only conditioning: no prompt; its VAE does not support tiling",
    size_profiles=SIZE_PROFILES,
    repo_profiles=REPO_PROFILES,
    denoiser_classes=frozenset({"UNetSpatioTemporalConditionModel"}),
    denoiser_kind="unet",
    tiny_models={
        "tiny-svd": TinyModel(
            "tiny-svd", "StableVideoDiffusionPipeline",
            "Stable Video Diffusion image-to-video (random weights). VAE 8x space.",
            _svd_pipeline),
    },
    presets=(
        ModelPreset("tiny-svd", "svd", {"i2v": "tiny-svd"},
                    "tiny random Stable Video Diffusion (noise; for smoke tests)", dtype="float32", tiny=True),
        ModelPreset("svd-xt", "svd", {"i2v": "stabilityai/stable-video-diffusion-img2vid-xt"},
                    "Stable Video Diffusion XT: image to 25 frames", size_profile="svd-xt", dtype="float16"),
    ),
    latent_rgb_factors=SD15_LATENT_RGB_FACTORS,  # ComfyUI previews SVD with SD 1.5's factors
)
