"""SkyReels-V2 diffusion forcing: a Wan-architecture transformer with Wan's VAE and text encoder."""
from __future__ import annotations

from dataclasses import replace

from ..memory.sizes import UMT5_ARCH, WAN_VAE, ModelSizes
from .base import ModelFamily, ModelPreset, TinyModel
from .tiny_parts import seeded
from .wan import (
    LATENT_RGB_BIAS,
    LATENT_RGB_FACTORS,
    NEGATIVE_PROMPT,
    VAE_FP32,
    WAN_T13,
    WAN_T14,
    WanAdapter,
    wan_arch,
    wan_components,
    wan_scheduler,
    wan_text_parts,
    wan_transformer_config,
    wan_vae,
)

# ========================================================================= size profiles
SIZE_PROFILES: dict[str, ModelSizes] = {
    p.name: p
    for p in [
        ModelSizes("skyreels-v2-df-1.3b",
                   wan_components(replace(WAN_T13, params=1_435_525_696)),  # + sample-info embedding
                   wan_arch(30, 12, 8960), WAN_VAE, UMT5_ARCH, component_dtypes=VAE_FP32, source="profile"),
        ModelSizes("skyreels-v2-df-14b", wan_components(WAN_T14), wan_arch(40, 40, 13824), WAN_VAE, UMT5_ARCH,
                   component_dtypes=VAE_FP32, source="profile"),
    ]
}
REPO_PROFILES = {
    "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers": "skyreels-v2-df-1.3b",
    "Skywork/SkyReels-V2-DF-14B-540P-Diffusers": "skyreels-v2-df-14b",
    "Skywork/SkyReels-V2-DF-14B-720P-Diffusers": "skyreels-v2-df-14b",
}


# ============================================================================ tiny model
@seeded
def _skyreels_transformer():
    from diffusers import SkyReelsV2Transformer3DModel

    return SkyReelsV2Transformer3DModel(**wan_transformer_config())


def _skyreels_diffusion_forcing_pipeline():
    from diffusers import SkyReelsV2DiffusionForcingPipeline

    return SkyReelsV2DiffusionForcingPipeline(
        transformer=_skyreels_transformer(),
        vae=wan_vae(),
        scheduler=wan_scheduler(flow_shift=8.0),
        **wan_text_parts(),
    )


# =============================================================================== entry
FAMILY = ModelFamily(
    id="skyreels-df",
    label="SkyReels-V2 diffusion forcing",
    adapter=WanAdapter(),  # Wan-architecture transformer and VAE
    # Its own long-video mode: the video-to-video pipeline takes what exists as history (overlap_history)
    # and returns only the frames after it.
    continue_with=("v2v",),
    extend_context=17,  # 4k+1 frames of history (its examples use 17)
    extend_overlap=0,
    continuation_repeats_context=False,
    pipelines={
        "t2v": "SkyReelsV2DiffusionForcingPipeline",
        "i2v": "SkyReelsV2DiffusionForcingImageToVideoPipeline",
        "v2v": "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
    },
    frame_multiple=4,
    size_multiple=16,
    default_width=960,
    default_height=544,
    default_frames=97,
    max_frames=257,
    default_fps=24,
    default_steps=30,
    default_guidance=6.0,
    default_negative_prompt=NEGATIVE_PROMPT,
    size_profiles=SIZE_PROFILES,
    repo_profiles=REPO_PROFILES,
    denoiser_classes=frozenset({"SkyReelsV2Transformer3DModel"}),
    denoiser_kind="wan",
    tiny_models={
        "tiny-skyreels-df": TinyModel(
            "tiny-skyreels-df", "SkyReelsV2DiffusionForcingPipeline",
            "SkyReels-V2 diffusion forcing text-to-video (random weights); Wan VAE 8x space, 4x time.",
            _skyreels_diffusion_forcing_pipeline),
    },
    presets=(
        ModelPreset("tiny-skyreels-df", "skyreels-df", {"t2v": "tiny-skyreels-df", "v2v": "tiny-skyreels-df"},
                    "tiny random SkyReels-V2 diffusion forcing (noise; for smoke tests)", dtype="float32",
                    tiny=True),
        ModelPreset("skyreels-v2-df-1.3b", "skyreels-df",
                    {"t2v": "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers",
                     "i2v": "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers",
                     "v2v": "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"},
                    "SkyReels-V2 diffusion forcing 1.3B, 540p", size_profile="skyreels-v2-df-1.3b",
                    component_dtypes=VAE_FP32),
    ),
    latent_rgb_factors=LATENT_RGB_FACTORS,  # Wan's VAE
    latent_rgb_bias=LATENT_RGB_BIAS,
)
