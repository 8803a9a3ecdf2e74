"""LTX-Video 0.9.x: text/image to video and keyframes (LTXConditionPipeline)."""
from __future__ import annotations

from dataclasses import replace

from ..memory.sizes import LTX_VAE, T5_LTX_ARCH, ComponentSize, DenoiserArch, ModelSizes, t5_xxl
from .base import FamilyAdapter, ModelFamily, ModelPreset, TinyModel, _call_default, _inference
from .tiny_parts import TEXT_WIDTH, seeded, t5_text_encoder, t5_tokenizer

NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"


# =============================================================================== adapter
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

    def continuation_inputs(self, pipe, job, context):
        if job.task != "keyframes":
            return super().continuation_inputs(pipe, job, context)
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        # The condition pipeline encodes the context frames as a video at frame 0 (a pixel round trip
        # through the VAE: its call takes no latents of an earlier generation to carry over).
        return {"conditions": [LTXVideoCondition(video=list(context), frame_index=0)]}

    def check_model(self, pipe, job):
        # LTXPipeline and LTXImageToVideoPipeline pass sigmas linspace(1, 1/steps, steps); a scheduler with
        # shift_terminal stretches them so the last lands on the terminal value, which divides by zero for a
        # single step (diffusers then fails with an IndexError). LTXConditionPipeline has its own schedule.
        config = getattr(getattr(pipe, "scheduler", None), "config", None) or {}
        if job.task != "keyframes" and job.steps < 2 and config.get("shift_terminal"):
            from ..errors import KinetographError

            raise KinetographError(
                f"{{steps}} = {job.steps} is too few for {job.model} ({job.task}): its scheduler needs at least 2 "
                "steps (it stretches the timesteps to a terminal value). Use 2 or more.", fields=("steps",))

    def call_kwargs(self, job):
        # LTX scales its rotary positions by the frame rate.
        return {**super().call_kwargs(job), "frame_rate": int(round(job.fps))}

    @staticmethod
    def _unpack(pipe, latents, job):
        """Packed tokens (B, tokens, C) -> (B, C, T, h, w) at the job's size, as the pipelines' tail does."""
        return pipe._unpack_latents(
            latents,
            (job.frames - 1) // pipe.vae_temporal_compression_ratio + 1,
            job.height // pipe.vae_spatial_compression_ratio,
            job.width // pipe.vae_spatial_compression_ratio,
            pipe.transformer_spatial_patch_size,
            pipe.transformer_temporal_patch_size,
        )

    def preview_latents(self, pipe, latents, job):
        if latents.ndim == 3:  # packed tokens during denoising (all three LTX pipelines)
            frames = (job.frames - 1) // pipe.vae_temporal_compression_ratio + 1
            tokens = (frames // pipe.transformer_temporal_patch_size
                      * (job.height // pipe.vae_spatial_compression_ratio // pipe.transformer_spatial_patch_size)
                      * (job.width // pipe.vae_spatial_compression_ratio // pipe.transformer_spatial_patch_size))
            # LTXConditionPipeline puts the tokens of mid-video conditions in front of the video's own.
            latents = self._unpack(pipe, latents[:, latents.shape[1] - tokens:], job)
        return latents[0]

    @_inference
    def decode(self, pipe, latents, job, generator, chunk=None):
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        if latents.ndim == 3:  # t2v / i2v return packed tokens; the condition pipeline unpacks itself
            latents = self._unpack(pipe, latents, job)
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


# ========================================================================= size profiles
# Numbers and their provenance: see the comment above the profiles in memory/sizes.py.
_LTX_BLOCK_2B = ((16777216, 2), (4194304, 8), (47104, 1))
_LTX_BLOCK_13B = ((67108864, 2), (16777216, 8), (94208, 1))
# the LTX-Video 0.9.5+ VAE (bf16), shared by the 2B and 13B checkpoints
_LTX_VAE_095 = ComponentSize("vae", "vae", 1_246_913_522, "bfloat16", 0, 0, 113_250_304)


def _ltx(layers: int, heads: int, head_dim: int) -> DenoiserArch:
    d = heads * head_dim
    return DenoiserArch("ltx", layers, d, heads, 4 * d, (1, 1, 1), text_len=128, cfg_batched=True,
                        act_attn_bytes_per_dim=32.0)


_LTX_13B = ModelSizes("ltx-video-0.9.7-13b",
                      {"transformer": ComponentSize("transformer", "denoiser", 13_042_569_344, "bfloat16", 48,
                                                    268_529_664, 100_687_872, _LTX_BLOCK_13B),
                       "text_encoder": t5_xxl(),
                       "vae": _LTX_VAE_095},
                      _ltx(48, 32, 128), LTX_VAE, T5_LTX_ARCH, source="profile")
SIZE_PROFILES: dict[str, ModelSizes] = {
    p.name: p
    for p in [
        ModelSizes("ltx-video-0.9",
                   {"transformer": ComponentSize("transformer", "denoiser", 1_923_385_472, "float32", 28,
                                                 67_155_968, 25_178_112, _LTX_BLOCK_2B),
                    "text_encoder": t5_xxl(),
                    "vae": ComponentSize("vae", "vae", 419_193_649, "float32", 0, 0, 56_627_200)},
                   _ltx(28, 32, 64), LTX_VAE, T5_LTX_ARCH, source="profile"),
        ModelSizes("ltx-video-0.9.5",
                   {"transformer": ComponentSize("transformer", "denoiser", 1_923_385_472, "bfloat16", 28,
                                                 67_155_968, 25_178_112, _LTX_BLOCK_2B),
                    "text_encoder": t5_xxl(),
                    "vae": _LTX_VAE_095},
                   _ltx(28, 32, 64), LTX_VAE, T5_LTX_ARCH, source="profile"),
        _LTX_13B,
        replace(_LTX_13B, name="ltx-video-0.9.8-13b"),
    ]
}
REPO_PROFILES = {
    "Lightricks/LTX-Video": "ltx-video-0.9",
    "Lightricks/LTX-Video-0.9.5": "ltx-video-0.9.5",
    "Lightricks/LTX-Video-0.9.7-dev": "ltx-video-0.9.7-13b",
    "Lightricks/LTX-Video-0.9.7-distilled": "ltx-video-0.9.7-13b",
    "Lightricks/LTX-Video-0.9.8-13B-distilled": "ltx-video-0.9.8-13b",
}


# ============================================================================ tiny model
@seeded
def _ltx_transformer():
    from diffusers import LTXVideoTransformer3DModel

    return LTXVideoTransformer3DModel(
        in_channels=8,  # = VAE latent channels (patch size 1, as in the real model)
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=4 * 8,  # the attention width: heads x head dim
        num_layers=1,
        caption_channels=TEXT_WIDTH,
    )


@seeded
def _ltx_vae():
    from diffusers import AutoencoderKLLTXVideo

    # Patch size 4 and three space-time downsamplings: 32x in space, 8x in time, like the real
    # VAE, so the real rules hold (frames 8k+1, height/width multiples of 32).
    return AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )


def _ltx_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    # The real LTX-Video 0.9.5+ settings. No dynamic shifting: LTXConditionPipeline passes its own
    # timesteps and no `mu`, which a dynamically shifting scheduler refuses.
    return FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=False,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )


def _ltx_pipeline():
    from diffusers import LTXPipeline

    tokenizer = t5_tokenizer(model_max_length=128)
    return LTXPipeline(
        transformer=_ltx_transformer(),
        vae=_ltx_vae(),
        scheduler=_ltx_scheduler(),
        text_encoder=t5_text_encoder("T5EncoderModel", len(tokenizer)),
        tokenizer=tokenizer,
    )


# ======================================================================= latent previews
# ComfyUI comfy/latent_formats.py, class LTXV (commit 040a324): 128 latent channels -> RGB.
LATENT_RGB_FACTORS = (
    (1.1202e-02, -6.3815e-04, -1.0021e-02), (8.6031e-02, 6.5813e-02, 9.5409e-04),
    (-1.2576e-02, -7.5734e-03, -4.0528e-03), (9.4063e-03, -2.1688e-03, 2.6093e-03),
    (3.7636e-03, 1.2765e-02, 9.1548e-03), (2.1024e-02, -5.2973e-03, 3.4373e-03),
    (-8.8896e-03, -1.9703e-02, -1.8761e-02), (-1.3160e-02, -1.0523e-02, 1.9709e-03),
    (-1.5152e-03, -6.9891e-03, -7.5810e-03), (-1.7247e-03, 4.6560e-04, -3.3839e-03),
    (1.3617e-02, 4.7077e-03, -2.0045e-03), (1.0256e-02, 7.7318e-03, 1.3948e-02),
    (-1.6108e-02, -6.2151e-03, 1.1561e-03), (7.3407e-03, 1.5628e-02, 4.4865e-04),
    (9.5357e-04, -2.9518e-03, -1.4760e-02), (1.9143e-02, 1.0868e-02, 1.2264e-02),
    (4.4575e-03, 3.6682e-05, -6.8508e-03), (-4.5681e-04, 3.2570e-03, 7.7929e-03),
    (3.3902e-02, 3.3405e-02, 3.7454e-02), (-2.3001e-02, -2.4877e-03, -3.1033e-03),
    (5.0265e-02, 3.8841e-02, 3.3539e-02), (-4.1018e-03, -1.1095e-03, 1.5859e-03),
    (-1.2689e-01, -1.3107e-01, -2.1005e-01), (2.6276e-02, 1.4189e-02, -3.5963e-03),
    (-4.8679e-03, 8.8486e-03, 7.8029e-03), (-1.6610e-03, -4.8597e-03, -5.2060e-03),
    (-2.1010e-03, 2.3610e-03, 9.3796e-03), (-2.2482e-02, -2.1305e-02, -1.5087e-02),
    (-1.5753e-02, -1.0646e-02, -6.5083e-03), (-4.6975e-03, 5.0288e-03, -6.7390e-03),
    (1.1951e-02, 2.0712e-02, 1.6191e-02), (-6.3704e-03, -8.4827e-03, -9.5483e-03),
    (7.2610e-03, -9.9326e-03, -2.2978e-02), (-9.1904e-04, 6.2882e-03, 9.5720e-03),
    (-3.7178e-02, -3.7123e-02, -5.6713e-02), (-1.3373e-01, -1.0720e-01, -5.3801e-02),
    (-5.3702e-03, 8.1256e-03, 8.8397e-03), (-1.5247e-01, -2.1437e-01, -2.1843e-01),
    (3.1441e-02, 7.0335e-03, -9.7541e-03), (2.1528e-03, -8.9817e-03, -2.1023e-02),
    (3.8461e-03, -5.8957e-03, -1.5014e-02), (-4.3470e-03, -1.2940e-02, -1.5972e-02),
    (-5.4781e-03, -1.0842e-02, -3.0204e-03), (-6.5347e-03, 3.0806e-03, -1.0163e-02),
    (-5.0414e-03, -7.1503e-03, -8.9686e-04), (-8.5851e-03, -2.4351e-03, 1.0674e-03),
    (-9.0016e-03, -9.6493e-03, 1.5692e-03), (5.0914e-03, 1.2099e-02, 1.9968e-02),
    (1.3758e-02, 1.1669e-02, 8.1958e-03), (-1.0518e-02, -1.1575e-02, -4.1307e-03),
    (-2.8410e-02, -3.1266e-02, -2.2149e-02), (2.9336e-03, 3.6511e-02, 1.8717e-02),
    (-1.6703e-02, -1.6696e-02, -4.4529e-03), (4.8818e-02, 4.0063e-02, 8.7410e-03),
    (-1.5066e-02, -5.7328e-04, 2.9785e-03), (-1.7613e-02, -8.1034e-03, 1.3086e-02),
    (-9.2633e-03, 1.0803e-02, -6.3489e-03), (3.0851e-03, 4.7750e-04, 1.2347e-02),
    (-2.2785e-02, -2.3043e-02, -2.6005e-02), (-2.4787e-02, -1.5389e-02, -2.2104e-02),
    (-2.3572e-02, 1.0544e-03, 1.2361e-02), (-7.8915e-03, -1.2271e-03, -6.0968e-03),
    (-1.1478e-02, -1.2543e-03, 6.2679e-03), (-5.4229e-02, 2.6644e-02, 6.3394e-03),
    (4.4216e-03, -7.3338e-03, -1.0464e-02), (-4.5013e-03, 1.6082e-03, 1.4420e-02),
    (1.3673e-02, 8.8877e-03, 4.1253e-03), (-1.0145e-02, 9.0072e-03, 1.5695e-02),
    (-5.6234e-03, 1.1847e-03, 8.1261e-03), (-3.7171e-03, -5.3538e-03, 1.2590e-03),
    (2.9476e-02, 2.1424e-02, 3.0424e-02), (-3.4925e-02, -2.4340e-02, -2.5316e-02),
    (-3.4127e-02, -2.2406e-02, -1.0589e-02), (-1.7342e-02, -1.3249e-02, -1.0719e-02),
    (-2.1478e-03, -8.6051e-03, -2.9878e-03), (1.2089e-03, -4.2391e-03, -6.8569e-03),
    (9.0411e-04, -6.6886e-03, -6.7547e-05), (1.6048e-02, -1.0057e-02, -2.8929e-02),
    (1.2290e-03, 1.0163e-02, 1.8861e-02), (1.7264e-02, 2.7257e-04, 1.3785e-02),
    (-1.3482e-02, -3.6427e-03, 6.7481e-04), (4.6782e-03, -5.2423e-03, 2.4467e-03),
    (-5.9113e-03, -6.2244e-03, -1.8162e-03), (1.5496e-02, 1.4582e-02, 1.9514e-03),
    (7.4958e-03, 1.5886e-03, -8.2305e-03), (1.9086e-02, 1.6360e-03, -3.9674e-03),
    (-5.7021e-03, -2.7307e-03, -4.1066e-03), (1.7450e-03, 1.4602e-02, 2.5794e-02),
    (-8.2788e-04, 2.2902e-03, 4.5161e-03), (1.1632e-02, 8.9193e-03, -7.2813e-03),
    (7.5721e-03, 2.6784e-03, 1.1393e-02), (5.1939e-03, 3.6903e-03, 1.4049e-02),
    (-1.8383e-02, -2.2529e-02, -2.4477e-02), (5.8842e-04, -5.7874e-03, -1.4770e-02),
    (-1.6125e-02, -8.6101e-03, -1.4533e-02), (2.0540e-02, 2.0729e-02, 6.4338e-03),
    (3.3587e-03, -1.1226e-02, -1.6444e-02), (-1.4742e-03, -1.0489e-02, 1.7097e-03),
    (2.8130e-02, 2.3546e-02, 3.2791e-02), (-1.8532e-02, -1.2842e-02, -8.7756e-03),
    (-8.0533e-03, -1.0771e-02, -1.7536e-02), (-3.9009e-03, 1.6150e-02, 3.3359e-02),
    (-7.4554e-03, -1.4154e-02, -6.1910e-03), (3.4734e-03, -1.1370e-02, -1.0581e-02),
    (1.1476e-02, 3.9281e-03, 2.8231e-03), (7.1639e-03, -1.4741e-03, -3.8066e-03),
    (2.2250e-03, -8.7552e-03, -9.5719e-03), (2.4146e-02, 2.1696e-02, 2.8056e-02),
    (-5.4365e-03, -2.4291e-02, -1.7802e-02), (7.4263e-03, 1.0510e-02, 1.2705e-02),
    (6.2669e-03, 6.2658e-03, 1.9211e-02), (1.6378e-02, 9.4933e-03, 6.6971e-03),
    (1.7173e-02, 2.3601e-02, 2.3296e-02), (-1.4568e-02, -9.8279e-03, -1.1556e-02),
    (1.4431e-02, 1.4430e-02, 6.6362e-03), (-6.8230e-03, 1.8863e-02, 1.4555e-02),
    (6.1156e-03, 3.4700e-03, -2.6662e-03), (-2.6983e-03, -5.9402e-03, -9.2276e-03),
    (1.0235e-02, 7.4173e-03, -7.6243e-03), (-1.3255e-02, 1.9322e-02, -9.2153e-04),
    (2.4222e-03, -4.8039e-03, -1.5759e-02), (2.6244e-02, 2.5951e-02, 2.0249e-02),
    (1.5711e-02, 1.8498e-02, 2.7407e-03), (-2.1714e-03, 4.7214e-03, -2.2443e-02),
    (-7.4747e-03, 7.4166e-03, 1.4430e-02), (-8.3906e-03, -7.9776e-03, 9.7927e-03),
    (3.8321e-02, 9.6622e-03, -1.9268e-02), (-1.4605e-02, -6.7032e-03, 3.9675e-03),
)
LATENT_RGB_BIAS = (-0.0571, -0.1657, -0.2512)


# =============================================================================== entry
FAMILY = ModelFamily(
    id="ltx",
    label="LTX-Video 0.9.x",
    adapter=LTXAdapter(),
    continue_with=("keyframes", "i2v"),  # the condition pipeline takes a video at frame 0
    extend_context=9,  # 8k+1 frames: two latent frames of what exists
    extend_overlap=4,
    pipelines={
        "t2v": "LTXPipeline",
        "i2v": "LTXImageToVideoPipeline",
        "keyframes": "LTXConditionPipeline",
    },
    frame_multiple=8,
    size_multiple=32,
    default_width=768,
    default_height=512,
    default_frames=121,
    max_frames=257,
    default_fps=24,
    default_steps=40,
    default_guidance=3.0,
    default_negative_prompt=NEGATIVE_PROMPT,
    notes="keyframes use LTXConditionPipeline (0.9.5+ checkpoints) with images at frame indices",
    size_profiles=SIZE_PROFILES,
    repo_profiles=REPO_PROFILES,
    denoiser_classes=frozenset({"LTXVideoTransformer3DModel"}),
    denoiser_kind="ltx",
    tiny_models={
        "tiny-ltx": TinyModel(
            "tiny-ltx", "LTXPipeline",
            "LTX-Video (random weights): text-to-video; the same folder also loads as "
            "LTXImageToVideoPipeline and LTXConditionPipeline. VAE 32x space, 8x time like the real model.",
            _ltx_pipeline),
    },
    presets=(
        ModelPreset("tiny-ltx", "ltx", {"t2v": "tiny-ltx", "i2v": "tiny-ltx", "keyframes": "tiny-ltx"},
                    "tiny random LTX-Video (noise; for smoke tests)", dtype="float32", tiny=True),
        ModelPreset("ltx-video", "ltx",
                    {"t2v": "Lightricks/LTX-Video-0.9.5", "i2v": "Lightricks/LTX-Video-0.9.5",
                     "keyframes": "Lightricks/LTX-Video-0.9.5"},
                    "LTX-Video 0.9.5 (2B): fast, 768x512, 24 fps", size_profile="ltx-video-0.9.5"),
    ),
    latent_rgb_factors=LATENT_RGB_FACTORS,
    latent_rgb_bias=LATENT_RGB_BIAS,
)
