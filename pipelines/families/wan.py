"""Wan 2.1 / 2.2: T2V, I2V, first-last-frame (FLF2V), VACE, V2V.

SkyReels-V2 (skyreels.py) reuses this module's adapter, VAE, text parts and size helpers.
"""
from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from ..errors import KinetographError
from ..memory.sizes import (
    UMT5_ARCH,
    WAN_VAE,
    ComponentSize,
    DenoiserArch,
    ModelSizes,
    clip_vit_h,
    umt5_xxl,
)
from .base import FamilyAdapter, ModelFamily, ModelPreset, TinyModel, _inference
from .tiny_parts import (
    TEXT_WIDTH,
    clip_image_encoder,
    clip_image_processor,
    seeded,
    t5_text_encoder,
    t5_tokenizer,
)

NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, "
    "static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, "
    "extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, "
    "fused fingers, still picture, messy background, three legs, many people in the background, "
    "walking backwards"
)
VAE_FP32 = {"vae": "float32"}  # Wan's VAE loses detail in bf16 (diffusers' own Wan docs load it in fp32)


# =============================================================================== adapter
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

    def continuation_inputs(self, pipe, job, context):
        if job.task == "v2v" and type(pipe).__name__.startswith("SkyReelsV2DiffusionForcing"):
            # Diffusion forcing's long-video mode: what exists is history; the call returns the frames after it.
            # (Pixels, encoded by the call's own VAE pass: it takes no latents of the last segment.)
            return {"video": list(context), "overlap_history": len(context)}
        if job.task != "vace":
            return super().continuation_inputs(pipe, job, context)
        from PIL import Image

        # VACE: the known frames, then grey frames to generate; the mask is black where a frame is kept.
        # (Pixels, re-encoded by VACE's own VAE pass: its call takes no latents of the last segment.)
        size = context[0].size
        grey, keep, make = (Image.new("RGB", size, (128, 128, 128)), Image.new("L", size, 0),
                            Image.new("L", size, 255))
        rest = job.frames - len(context)
        return {"video": list(context) + [grey] * rest, "mask": [keep] * len(context) + [make] * rest}

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


# ========================================================================= size profiles
# Numbers and their provenance: see the comment above the profiles in memory/sizes.py.
_WAN_BLOCK_13B = ((13762560, 2), (2359296, 8), (41216, 1))  # FFN in/out, 8 attention projections
_WAN_BLOCK_14B = ((70778880, 2), (26214400, 8), (121344, 1))
_WAN_I2V_BLOCK = ((70778880, 2), (26214400, 10), (136704, 1))  # + image cross-attention k/v


def wan_arch(layers: int, heads: int, ffn: int) -> DenoiserArch:
    return DenoiserArch("wan", layers, heads * 128, heads, ffn, (1, 2, 2), text_len=512, cfg_batched=False)


def wan_components(transformer: ComponentSize, *extra: ComponentSize) -> dict[str, ComponentSize]:
    vae = ComponentSize("vae", "vae", 126_892_531, "float32", 0, 0, 3_981_696)
    return {c.name: c for c in (transformer, *extra, umt5_xxl(), vae)}


WAN_T13 = ComponentSize("transformer", "denoiser", 1_418_996_800, "float32", 30, 46_440_704, 14_164_992,
                        _WAN_BLOCK_13B)
WAN_T14 = ComponentSize("transformer", "denoiser", 14_288_491_584, "float32", 40, 351_394_304, 157_317_120,
                        _WAN_BLOCK_14B)

SIZE_PROFILES: dict[str, ModelSizes] = {
    p.name: p
    for p in [
        ModelSizes("wan2.1-t2v-1.3b", wan_components(WAN_T13), wan_arch(30, 12, 8960), WAN_VAE, UMT5_ARCH,
                   component_dtypes=VAE_FP32, source="profile"),
        ModelSizes("wan2.1-t2v-14b", wan_components(WAN_T14), wan_arch(40, 40, 13824), WAN_VAE, UMT5_ARCH,
                   component_dtypes=VAE_FP32, source="profile"),
        ModelSizes("wan2.1-i2v-14b",
                   wan_components(ComponentSize("transformer", "denoiser", 16_394_878_784, "float32", 40,
                                                403_838_464, 157_317_120, _WAN_I2V_BLOCK), clip_vit_h()),
                   wan_arch(40, 40, 13824), WAN_VAE, UMT5_ARCH, component_dtypes=VAE_FP32, source="profile"),
        ModelSizes("wan2.2-a14b",
                   wan_components(replace(WAN_T14, checkpoint_dtype="bfloat16"),
                                  replace(WAN_T14, name="transformer_2", checkpoint_dtype="bfloat16")),
                   wan_arch(40, 40, 13824), WAN_VAE, UMT5_ARCH, component_dtypes=VAE_FP32, source="profile"),
    ]
}
REPO_PROFILES = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": "wan2.1-t2v-1.3b",
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": "wan2.1-t2v-14b",
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": "wan2.1-i2v-14b",
    "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers": "wan2.1-i2v-14b",
    "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers": "wan2.1-i2v-14b",
    "Wan-AI/Wan2.2-T2V-A14B-Diffusers": "wan2.2-a14b",
}


# =========================================================================== tiny models
_WAN_LATENT_CHANNELS = 16  # the Wan VAE's latents_mean/std defaults have 16 entries
_WAN_HEADS, _WAN_HEAD_DIM = 2, 12  # rotary embedding splits the head dim over (t, h, w)
# Tiny CLIP image encoder of Wan I2V: 32 px in 8 px patches -> 16 patch tokens + 1 class token.
_WAN_IMAGE_SIZE, _WAN_IMAGE_PATCH, _WAN_IMAGE_WIDTH = 32, 8, 16
_WAN_IMAGE_TOKENS = (_WAN_IMAGE_SIZE // _WAN_IMAGE_PATCH) ** 2 + 1


def wan_transformer_config(**overrides: Any) -> dict[str, Any]:
    config = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=_WAN_HEADS,
        attention_head_dim=_WAN_HEAD_DIM,
        in_channels=_WAN_LATENT_CHANNELS,
        out_channels=_WAN_LATENT_CHANNELS,
        text_dim=TEXT_WIDTH,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    )
    return config | overrides


@seeded
def _wan_transformer(image_conditioned: bool = False, first_last_frame: bool = False):
    from diffusers import WanTransformer3DModel

    if not image_conditioned:
        return WanTransformer3DModel(**wan_transformer_config())
    # As in the real I2V/FLF2V checkpoints: the input also carries the 4-channel frame mask and
    # the conditioning latents, and CLIP image tokens get their own key/value projections.
    # (Those projections assume the text part is exactly 512 tokens, the pipelines' default.)
    return WanTransformer3DModel(
        **wan_transformer_config(
            in_channels=2 * _WAN_LATENT_CHANNELS + 4,
            image_dim=_WAN_IMAGE_WIDTH,
            added_kv_proj_dim=_WAN_HEADS * _WAN_HEAD_DIM,
            # FLF2V encodes first and last frame together: a learned position per image token.
            pos_embed_seq_len=2 * _WAN_IMAGE_TOKENS if first_last_frame else None,
        )
    )


@seeded
def _wan_vace_transformer():
    from diffusers import WanVACETransformer3DModel

    return WanVACETransformer3DModel(
        # VACE context: inactive + reactive latents (2 x 16) + the mask folded to 8x8 = 64 channels.
        **wan_transformer_config(num_layers=3, vace_layers=[0, 2], vace_in_channels=96)
    )


@seeded
def wan_vae():
    from diffusers import AutoencoderKLWan

    # Three spatial downsamplings, the last two also temporal: 8x space, 4x time like the real VAE.
    return AutoencoderKLWan(
        base_dim=4,
        z_dim=_WAN_LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def wan_scheduler(flow_shift: float = 3.0):
    from diffusers import UniPCMultistepScheduler

    # The scheduler the real Wan 2.1 / SkyReels-V2 diffusers checkpoints ship with.
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=flow_shift
    )


def wan_text_parts() -> dict[str, Any]:
    tokenizer = t5_tokenizer(model_max_length=512)
    return {"tokenizer": tokenizer, "text_encoder": t5_text_encoder("UMT5EncoderModel", len(tokenizer))}


def _wan_pipeline():
    from diffusers import WanPipeline

    return WanPipeline(
        transformer=_wan_transformer(), vae=wan_vae(), scheduler=wan_scheduler(), **wan_text_parts()
    )


def _wan_image_to_video_pipeline(first_last_frame: bool):
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline(
        transformer=_wan_transformer(image_conditioned=True, first_last_frame=first_last_frame),
        vae=wan_vae(),
        scheduler=wan_scheduler(),
        # The real checkpoints use CLIPVisionModel (its penultimate hidden states).
        image_encoder=clip_image_encoder(
            _WAN_IMAGE_SIZE, _WAN_IMAGE_PATCH, _WAN_IMAGE_WIDTH, with_projection=False
        ),
        image_processor=clip_image_processor(_WAN_IMAGE_SIZE),
        **wan_text_parts(),
    )


def _wan_vace_pipeline():
    from diffusers import WanVACEPipeline

    return WanVACEPipeline(
        transformer=_wan_vace_transformer(), vae=wan_vae(), scheduler=wan_scheduler(), **wan_text_parts()
    )


# ======================================================================= latent previews
# ComfyUI comfy/latent_formats.py, class Wan21: 16 latent channels -> RGB (also SkyReels-V2).
LATENT_RGB_FACTORS = (
    (-0.1299, -0.1692, 0.2932), (0.0671, 0.0406, 0.0442), (0.3568, 0.2548, 0.1747), (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328), (0.0296, -0.0956, -0.0665), (-0.3477, -0.4059, -0.2925), (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364), (-0.1293, 0.0740, 0.1636), (0.0680, 0.3019, 0.1128), (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699), (0.0060, -0.0633, 0.0005), (0.3477, 0.2275, 0.2950), (0.1984, 0.0913, 0.1861),
)
LATENT_RGB_BIAS = (-0.1835, -0.0868, -0.3360)


# =============================================================================== entry
FAMILY = ModelFamily(
    id="wan",
    label="Wan 2.1 / 2.2",
    adapter=WanAdapter(),
    continue_with=("vace", "i2v"),  # VACE keeps known frames by mask; else I2V from the last frame
    extend_context=5,  # 4k+1 frames: two latent frames
    extend_overlap=2,
    pipelines={
        "t2v": "WanPipeline",
        "i2v": "WanImageToVideoPipeline",
        "keyframes": "WanImageToVideoPipeline",  # needs a first-last-frame (FLF2V) transformer
        "vace": "WanVACEPipeline",
        "v2v": "WanVideoToVideoPipeline",
    },
    frame_multiple=4,
    size_multiple=16,
    default_width=832,
    default_height=480,
    default_frames=81,
    max_frames=161,
    default_fps=16,
    default_steps=30,
    default_guidance=5.0,
    default_negative_prompt=NEGATIVE_PROMPT,
    size_profiles=SIZE_PROFILES,
    repo_profiles=REPO_PROFILES,
    denoiser_classes=frozenset({"WanTransformer3DModel", "WanVACETransformer3DModel", "WanAnimateTransformer3DModel"}),
    denoiser_kind="wan",
    tiny_models={
        "tiny-wan": TinyModel(
            "tiny-wan", "WanPipeline",
            "Wan 2.1 text-to-video (random weights). VAE 8x space, 4x time like the real model.",
            _wan_pipeline),
        "tiny-wan-i2v": TinyModel(
            "tiny-wan-i2v", "WanImageToVideoPipeline",
            "Wan 2.1 image-to-video with a CLIP image encoder (random weights).",
            functools.partial(_wan_image_to_video_pipeline, first_last_frame=False)),
        "tiny-wan-flf2v": TinyModel(
            "tiny-wan-flf2v", "WanImageToVideoPipeline",
            "Wan 2.1 first-last-frame-to-video (random weights): needs `last_image`.",
            functools.partial(_wan_image_to_video_pipeline, first_last_frame=True)),
        "tiny-wan-vace": TinyModel(
            "tiny-wan-vace", "WanVACEPipeline",
            "Wan 2.1 VACE (random weights): video editing with video/mask/reference images.",
            _wan_vace_pipeline),
    },
    presets=(
        ModelPreset("tiny-wan", "wan",
                    {"t2v": "tiny-wan", "i2v": "tiny-wan-i2v", "keyframes": "tiny-wan-flf2v",
                     "vace": "tiny-wan-vace"},
                    "tiny random Wan 2.1 (noise; for smoke tests)", dtype="float32", tiny=True),
        ModelPreset("wan2.1-t2v-1.3b", "wan",
                    {"t2v": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "vace": "Wan-AI/Wan2.1-VACE-1.3B-diffusers"},
                    "Wan 2.1 1.3B text-to-video, 480p", size_profile="wan2.1-t2v-1.3b",
                    component_dtypes=VAE_FP32),
        ModelPreset("wan2.1-14b", "wan",
                    {"t2v": "Wan-AI/Wan2.1-T2V-14B-Diffusers", "i2v": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
                     "keyframes": "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
                     "vace": "Wan-AI/Wan2.1-VACE-14B-diffusers"},
                    "Wan 2.1 14B: T2V, I2V 480p, first-last-frame 720p, VACE",
                    size_profile="wan2.1-t2v-14b", component_dtypes=VAE_FP32),
        ModelPreset("wan2.2-a14b", "wan",
                    {"t2v": "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "i2v": "Wan-AI/Wan2.2-I2V-A14B-Diffusers"},
                    "Wan 2.2 A14B (two experts: high/low noise)", size_profile="wan2.2-a14b",
                    component_dtypes=VAE_FP32),
    ),
    latent_rgb_factors=LATENT_RGB_FACTORS,
    latent_rgb_bias=LATENT_RGB_BIAS,
)
