"""Built-in tiny models: real diffusers pipelines with small configs and random weights.

Each tiny model is written once as an ordinary diffusers folder (``model_index.json`` plus one
sub-folder per component, safetensors only) and is then loaded through the same
``from_pretrained(folder, local_files_only=True)`` path as a real model. They exist for tests
and smoke runs: everything is structurally real (the same classes, the same compression rules
as the real checkpoints where that costs nothing), so code that works on a tiny model works on
the real one. Their output is noise.

Nothing here touches the network: tokenizers are made in memory from a character vocabulary
that covers any ASCII prompt (other characters map to the unknown token).

Heavy libraries (torch, diffusers, transformers) are imported inside the builders so that
listing the tiny models stays cheap.
"""

from __future__ import annotations

import functools
import os
import shutil
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KinetographError

# One width for every tiny text encoder, because it must equal LTX `caption_channels`,
# Wan `text_dim` and the UNet `cross_attention_dim`.
TEXT_WIDTH = 32
# Prompts tokenise to characters; these are the characters with their own token.
_PROMPT_CHARACTERS = string.ascii_letters + string.digits + string.punctuation


@dataclass(frozen=True)
class TinyModelSpec:
    name: str  # the built-in model id, e.g. "tiny-wan-i2v"
    pipeline_class: str  # diffusers class written in model_index.json
    description: str


TINY_MODELS: dict[str, TinyModelSpec] = {
    spec.name: spec
    for spec in (
        TinyModelSpec(
            "tiny-ltx",
            "LTXPipeline",
            "LTX-Video (random weights): text-to-video; the same folder also loads as "
            "LTXImageToVideoPipeline and LTXConditionPipeline. VAE 32x space, 8x time like the real model.",
        ),
        TinyModelSpec(
            "tiny-wan",
            "WanPipeline",
            "Wan 2.1 text-to-video (random weights). VAE 8x space, 4x time like the real model.",
        ),
        TinyModelSpec(
            "tiny-wan-i2v",
            "WanImageToVideoPipeline",
            "Wan 2.1 image-to-video with a CLIP image encoder (random weights).",
        ),
        TinyModelSpec(
            "tiny-wan-flf2v",
            "WanImageToVideoPipeline",
            "Wan 2.1 first-last-frame-to-video (random weights): needs `last_image`.",
        ),
        TinyModelSpec(
            "tiny-wan-vace",
            "WanVACEPipeline",
            "Wan 2.1 VACE (random weights): video editing with video/mask/reference images.",
        ),
        TinyModelSpec(
            "tiny-animatediff",
            "AnimateDiffPipeline",
            "AnimateDiff: SD1.5-style UNet with a motion adapter (random weights). VAE 8x space.",
        ),
        TinyModelSpec(
            "tiny-svd",
            "StableVideoDiffusionPipeline",
            "Stable Video Diffusion image-to-video (random weights). VAE 8x space.",
        ),
        TinyModelSpec(
            "tiny-skyreels-df",
            "SkyReelsV2DiffusionForcingPipeline",
            "SkyReels-V2 diffusion forcing text-to-video (random weights); Wan VAE 8x space, 4x time.",
        ),
    )
}


def tiny_model_names() -> list[str]:
    return list(TINY_MODELS)


def build_tiny_model(name: str, dest: Path) -> Path:
    """Write the tiny model ``name`` as a complete diffusers folder at ``dest`` and return ``dest``.

    The folder is built beside ``dest`` and moved into place in one rename, so ``dest`` is
    never half-written; an existing ``dest`` is replaced. Weights are seeded: the same name
    gives byte-identical safetensors on every run.
    """
    if name not in TINY_MODELS:
        raise KinetographError(
            f"Unknown tiny model {name!r}; the built-in tiny models are: {', '.join(TINY_MODELS)}."
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
        pipeline = _PIPELINE_BUILDERS[name]()
        _record_canonical_image_processor_names(pipeline)
        pipeline.save_pretrained(staging, safe_serialization=True)
        _move_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _record_canonical_image_processor_names(pipeline) -> None:
    # Without torchvision, transformers hands out e.g. CLIPImageProcessorPil for CLIPImageProcessor.
    # Record the canonical name in model_index.json, as real checkpoints do, so the folder is the
    # same on every machine and loads with whichever image-processing backend is installed.
    for component_name, entry in dict(pipeline.config).items():
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] == "transformers":
            class_name = entry[1]
            if class_name and class_name.endswith("ImageProcessorPil"):
                pipeline.register_to_config(
                    **{component_name: ("transformers", class_name.removesuffix("Pil"))}
                )


def _move_into_place(staging: Path, dest: Path) -> None:
    # os.replace cannot rename over a non-empty folder: move the old one aside first.
    if not dest.exists():
        os.replace(staging, dest)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.replace(dest, retired / dest.name)
    os.replace(staging, dest)
    shutil.rmtree(retired, ignore_errors=True)


def _seeded(build: Callable[..., Any]) -> Callable[..., Any]:
    """Seed torch before building a component, so its random weights are the same on every run."""

    @functools.wraps(build)
    def build_seeded(*args: Any, **kwargs: Any) -> Any:
        import torch

        torch.manual_seed(0)
        return build(*args, **kwargs)

    return build_seeded


# ---------------------------------------------------------------------------------------------
# Tokenizers and encoders shared between families


def _t5_tokenizer(model_max_length: int):
    """A T5/UMT5 (Unigram) tokenizer whose pieces are single characters, with and without the
    word-start marker, so any ASCII prompt tokenises without unknown tokens."""
    from transformers import T5Tokenizer

    # T5 layout: <pad>=0, </s>=1, <unk>=2. Word-start pieces score higher so words begin with one.
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -4.0)]
    vocab += [(f"▁{character}", -2.0) for character in _PROMPT_CHARACTERS]
    vocab += [(character, -3.0) for character in _PROMPT_CHARACTERS]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


@_seeded
def _t5_text_encoder(model_class_name: str, vocab_size: int):
    """A 2-layer T5-family encoder: "T5EncoderModel" (LTX) or "UMT5EncoderModel" (Wan, SkyReels)."""
    import transformers

    model_class = getattr(transformers, model_class_name)
    config = model_class.config_class(
        vocab_size=vocab_size,
        d_model=TEXT_WIDTH,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,  # deterministic even if someone switches it to training mode
    )
    return model_class(config).eval()


def _clip_tokenizer():
    """A byte-level CLIP BPE tokenizer with no merges: every byte is a token, so anything tokenises."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    byte_symbols = sorted(ByteLevel.alphabet())
    # Same layout as the real CLIP vocabulary: bytes, bytes ending a word, then the two specials.
    tokens = (
        byte_symbols + [f"{symbol}</w>" for symbol in byte_symbols] + ["<|startoftext|>", "<|endoftext|>"]
    )
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


@_seeded
def _clip_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        # The pooled output is read at the end-of-text token, found by this id.
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


@_seeded
def _clip_image_encoder(image_size: int, patch_size: int, width: int, with_projection: bool):
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=width,
        projection_dim=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )
    model_class = CLIPVisionModelWithProjection if with_projection else CLIPVisionModel
    return model_class(config).eval()


def _clip_image_processor(image_size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


# ---------------------------------------------------------------------------------------------
# LTX-Video


@_seeded
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


@_seeded
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

    tokenizer = _t5_tokenizer(model_max_length=128)
    return LTXPipeline(
        transformer=_ltx_transformer(),
        vae=_ltx_vae(),
        scheduler=_ltx_scheduler(),
        text_encoder=_t5_text_encoder("T5EncoderModel", len(tokenizer)),
        tokenizer=tokenizer,
    )


# ---------------------------------------------------------------------------------------------
# Wan 2.1 (T2V, I2V, FLF2V, VACE) and SkyReels-V2, which share Wan's VAE and text encoder

_WAN_LATENT_CHANNELS = 16  # the Wan VAE's latents_mean/std defaults have 16 entries
_WAN_HEADS, _WAN_HEAD_DIM = 2, 12  # rotary embedding splits the head dim over (t, h, w)
# Tiny CLIP image encoder of Wan I2V: 32 px in 8 px patches -> 16 patch tokens + 1 class token.
_WAN_IMAGE_SIZE, _WAN_IMAGE_PATCH, _WAN_IMAGE_WIDTH = 32, 8, 16
_WAN_IMAGE_TOKENS = (_WAN_IMAGE_SIZE // _WAN_IMAGE_PATCH) ** 2 + 1


def _wan_transformer_config(**overrides: Any) -> dict[str, Any]:
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


@_seeded
def _wan_transformer(image_conditioned: bool = False, first_last_frame: bool = False):
    from diffusers import WanTransformer3DModel

    if not image_conditioned:
        return WanTransformer3DModel(**_wan_transformer_config())
    # As in the real I2V/FLF2V checkpoints: the input also carries the 4-channel frame mask and
    # the conditioning latents, and CLIP image tokens get their own key/value projections.
    # (Those projections assume the text part is exactly 512 tokens, the pipelines' default.)
    return WanTransformer3DModel(
        **_wan_transformer_config(
            in_channels=2 * _WAN_LATENT_CHANNELS + 4,
            image_dim=_WAN_IMAGE_WIDTH,
            added_kv_proj_dim=_WAN_HEADS * _WAN_HEAD_DIM,
            # FLF2V encodes first and last frame together: a learned position per image token.
            pos_embed_seq_len=2 * _WAN_IMAGE_TOKENS if first_last_frame else None,
        )
    )


@_seeded
def _wan_vace_transformer():
    from diffusers import WanVACETransformer3DModel

    return WanVACETransformer3DModel(
        # VACE context: inactive + reactive latents (2 x 16) + the mask folded to 8x8 = 64 channels.
        **_wan_transformer_config(num_layers=3, vace_layers=[0, 2], vace_in_channels=96)
    )


@_seeded
def _skyreels_transformer():
    from diffusers import SkyReelsV2Transformer3DModel

    return SkyReelsV2Transformer3DModel(**_wan_transformer_config())


@_seeded
def _wan_vae():
    from diffusers import AutoencoderKLWan

    # Three spatial downsamplings, the last two also temporal: 8x space, 4x time like the real VAE.
    return AutoencoderKLWan(
        base_dim=4,
        z_dim=_WAN_LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def _wan_scheduler(flow_shift: float = 3.0):
    from diffusers import UniPCMultistepScheduler

    # The scheduler the real Wan 2.1 / SkyReels-V2 diffusers checkpoints ship with.
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=flow_shift
    )


def _wan_text_parts() -> dict[str, Any]:
    tokenizer = _t5_tokenizer(model_max_length=512)
    return {"tokenizer": tokenizer, "text_encoder": _t5_text_encoder("UMT5EncoderModel", len(tokenizer))}


def _wan_pipeline():
    from diffusers import WanPipeline

    return WanPipeline(
        transformer=_wan_transformer(), vae=_wan_vae(), scheduler=_wan_scheduler(), **_wan_text_parts()
    )


def _wan_image_to_video_pipeline(first_last_frame: bool):
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline(
        transformer=_wan_transformer(image_conditioned=True, first_last_frame=first_last_frame),
        vae=_wan_vae(),
        scheduler=_wan_scheduler(),
        # The real checkpoints use CLIPVisionModel (its penultimate hidden states).
        image_encoder=_clip_image_encoder(
            _WAN_IMAGE_SIZE, _WAN_IMAGE_PATCH, _WAN_IMAGE_WIDTH, with_projection=False
        ),
        image_processor=_clip_image_processor(_WAN_IMAGE_SIZE),
        **_wan_text_parts(),
    )


def _wan_vace_pipeline():
    from diffusers import WanVACEPipeline

    return WanVACEPipeline(
        transformer=_wan_vace_transformer(), vae=_wan_vae(), scheduler=_wan_scheduler(), **_wan_text_parts()
    )


def _skyreels_diffusion_forcing_pipeline():
    from diffusers import SkyReelsV2DiffusionForcingPipeline

    return SkyReelsV2DiffusionForcingPipeline(
        transformer=_skyreels_transformer(),
        vae=_wan_vae(),
        scheduler=_wan_scheduler(flow_shift=8.0),
        **_wan_text_parts(),
    )


# ---------------------------------------------------------------------------------------------
# AnimateDiff (SD1.5 UNet + motion adapter) and Stable Video Diffusion

_UNET_CHANNELS = (8, 16)


@_seeded
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


@_seeded
def _motion_adapter():
    from diffusers import MotionAdapter

    return MotionAdapter(
        block_out_channels=_UNET_CHANNELS,
        motion_layers_per_block=1,
        motion_norm_num_groups=4,
        motion_num_attention_heads=2,
    )


@_seeded
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

    tokenizer = _clip_tokenizer()
    # The pipeline merges unet + motion adapter into a UNetMotionModel and saves that as `unet`.
    return AnimateDiffPipeline(
        unet=_sd_unet(),
        motion_adapter=_motion_adapter(),
        vae=_sd_vae(),
        scheduler=_animatediff_scheduler(),
        text_encoder=_clip_text_encoder(tokenizer),
        tokenizer=tokenizer,
        feature_extractor=None,
        image_encoder=None,
    )


_SVD_IMAGE_WIDTH = 32


@_seeded
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


@_seeded
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
        image_encoder=_clip_image_encoder(224, 32, _SVD_IMAGE_WIDTH, with_projection=True),
        feature_extractor=_clip_image_processor(224),
    )


_PIPELINE_BUILDERS: dict[str, Callable[[], Any]] = {
    "tiny-ltx": _ltx_pipeline,
    "tiny-wan": _wan_pipeline,
    "tiny-wan-i2v": functools.partial(_wan_image_to_video_pipeline, first_last_frame=False),
    "tiny-wan-flf2v": functools.partial(_wan_image_to_video_pipeline, first_last_frame=True),
    "tiny-wan-vace": _wan_vace_pipeline,
    "tiny-animatediff": _animatediff_pipeline,
    "tiny-svd": _svd_pipeline,
    "tiny-skyreels-df": _skyreels_diffusion_forcing_pipeline,
}
