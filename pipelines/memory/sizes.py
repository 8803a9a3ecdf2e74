"""How big a model is, without (or with) loading it.

Three sources, one result type (``ModelSizes``):

* ``profile_sizes(name)`` — built-in SIZE PROFILES for the registry presets, so that
  ``app.py plan`` needs no weights (numbers and their provenance below);
* ``measure_folder(path)`` — a local diffusers folder, measured from its safetensors
  headers (dtype x shape of every tensor) and config files, without loading a weight;
* ``measure_components(pipe)`` — a loaded pipeline, measured from its modules.

Besides bytes, ``ModelSizes`` carries the architecture numbers the planner needs for its
activation, FLOP and VAE-decode estimates (``DenoiserArch``, ``VaeArch``, ``TextEncoderArch``).
"""
from __future__ import annotations

import json
import re
import struct
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import KinetographError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1,
               "float64": 8, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1}
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
                       "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
DEFAULT_SHARD_BYTES = 5_000_000_000  # Hub checkpoints are sharded at ~5 GB


# =============================================================================== types
@dataclass(frozen=True)
class DenoiserArch:
    """The numbers that drive activation memory and FLOPs of the denoiser.

    Activation model (DiT families), calibrated against diffusers 0.42.1 by running the real
    modules at real width on FakeTensors with a live-storage tracker (``bench/memory.py
    --calibrate`` repeats it): peak bytes per token in bf16 =
    ``max(act_attn_bytes_per_dim * D, act_ffn_bytes_per_dim * D + 4 * F)``. The first term is
    the attention/norm phase (fp32 norms and rotary embeddings), the second the feed-forward
    phase (two N x F bf16 tensors alive around the GELU). Which term wins depends on F / D.
    UNet families use a per-latent-voxel coefficient measured the same way.
    """

    family: str  # "wan" | "ltx" | "unet" | "dit" (unknown transformer, generic coefficients)
    num_layers: int
    hidden_size: int  # D
    num_heads: int
    ffn_dim: int  # F
    patch_size: tuple[int, int, int] = (1, 1, 1)  # latent cells per token (t, h, w)
    text_len: int = 512  # text tokens seen by cross-attention
    cfg_batched: bool = False  # True: cond + uncond in one batch of 2 (LTX, UNets); False: two passes (Wan)
    act_attn_bytes_per_dim: float = 22.3
    act_ffn_bytes_per_dim: float = 8.7
    unet_act_bytes_per_voxel: float = 0.0
    unet_flops_per_voxel: float = 0.0
    supports_fp8: bool = True  # layerwise fp8 storage with bf16 compute (diffusers enable_layerwise_casting)


@dataclass(frozen=True)
class VaeArch:
    """Compression ratios and the decode-peak model of the VAE.

    decode = "framewise": causal video VAE decoding one latent frame at a time (Wan): the
    peak depends on the frame size only: ``bytes_per_unit`` per output pixel.
    decode = "volume": decodes all frames at once (LTX): ``bytes_per_unit`` per output voxel.
    decode = "chunked": image VAE decoding ``default_chunk`` frames per batch (SD, SVD):
    ``bytes_per_unit`` per output pixel per frame in the chunk.
    The output video itself (frames x H x W x 3 in the VAE dtype) is added on top except for
    "volume", whose coefficient already includes it. Calibrated like ``DenoiserArch`` in bf16/fp16.
    """

    spatial_ratio: int
    temporal_ratio: int
    latent_channels: int
    decode: str
    bytes_per_unit: float
    supports_tiling: bool = True
    tile: tuple[int, int] = (256, 256)  # sample-space tile (h, w) of diffusers' enable_tiling defaults
    tile_frames: int = 17  # frames per temporal tile ("volume" VAEs with framewise decoding)
    tiled_output_factor: float = 1.4  # decoded tiles kept for blending, relative to the output
    default_chunk: int = 16  # "chunked" VAEs: frames per decode batch
    decode_flops_per_voxel: float = 2.0e6  # rough: only decides tiled vs untiled decode time


@dataclass(frozen=True)
class TextEncoderArch:
    hidden_size: int
    num_layers: int
    ffn_dim: int
    num_heads: int
    max_tokens: int


@dataclass(frozen=True)
class ComponentSize:
    """One pipeline component: its parameters and how they are grouped into blocks."""

    name: str
    role: str  # "denoiser" | "text_encoder" | "image_encoder" | "vae" | "other"
    params: int
    checkpoint_dtype: str = "bfloat16"  # dtype stored in the files (load transient, download size)
    num_blocks: int = 0  # repeated blocks (what block-level group offload moves one at a time)
    block_params: int = 0  # the largest block
    largest_leaf_params: int = 0  # the largest Linear/Conv/Embedding (leaf-level offload unit)
    # (numel, count) of the tensors of the largest block: pinned host memory is allocated per
    # tensor and rounded up to a power of two by torch's CachingHostAllocator.
    block_tensors: tuple[tuple[int, int], ...] = ()
    largest_shard_bytes: int = DEFAULT_SHARD_BYTES

    @property
    def non_block_params(self) -> int:
        return max(0, self.params - self.num_blocks * self.block_params)

    def nbytes(self, dtype: str) -> int:
        return self.params * DTYPE_BYTES[dtype]

    def pinned_ratio(self, dtype: str) -> float:
        """Pinned bytes / real bytes for this component's blocks (power-of-two rounding)."""
        if not self.block_tensors:
            return 1.3  # unknown tensor sizes: typical waste of power-of-two rounding
        item = DTYPE_BYTES[dtype]
        real = sum(n * c * item for n, c in self.block_tensors)
        rounded = sum(c * _pow2_ceil(n * item) for n, c in self.block_tensors)
        return rounded / real if real else 1.0


@dataclass(frozen=True)
class ModelSizes:
    name: str
    components: dict[str, ComponentSize]
    denoiser: DenoiserArch
    vae: VaeArch | None
    text_encoder: TextEncoderArch | None = None
    compute_dtype: str = "bfloat16"
    component_dtypes: dict[str, str] = field(default_factory=dict)  # overrides, e.g. Wan VAE in float32
    source: str = ""

    def by_role(self, role: str) -> list[ComponentSize]:
        return [c for c in self.components.values() if c.role == role]

    def dtype_of(self, component: str) -> str:
        return self.component_dtypes.get(component, self.compute_dtype)

    def component_bytes(self, component: str) -> int:
        return self.components[component].nbytes(self.dtype_of(component))

    @property
    def total_bytes(self) -> int:
        return sum(self.component_bytes(n) for n in self.components)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_bytes"] = self.total_bytes
        return data


def _pow2_ceil(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


# ========================================================================= profiles
# The size profiles of the registry presets are in the family modules (pipelines/families/*.py).
# Where the numbers come from:
# * transformer / VAE configs: huggingface/diffusers scripts (commit 58eb52c, Aug 2026):
#   convert_wan_to_diffusers.py get_transformer_config("Wan-T2V-1.3B" | "Wan-T2V-14B" |
#   "Wan-I2V-14B-480p"), AutoencoderKLWan() defaults; convert_ltx_to_diffusers.py
#   get_transformer_config / get_vae_config ("0.9.0" default, "0.9.5", "0.9.7");
#   convert_skyreelsv2_to_diffusers.py ("SkyReels-V2-DF-1.3B-540P", "-14B-540P"); the Wan2.2
#   repo's wan/configs/wan_t2v_A14B.py (dim 5120, ffn 13824, 40 layers, Wan2.1 VAE).
#   Text encoders: google/umt5-xxl (Wan, SkyReels) and google/t5-v1_1-xxl (LTX) encoder
#   configs (d_model 4096, 24 layers, d_ff 10240, 64 heads); CLIP ViT-H/14
#   (laion/CLIP-ViT-H-14-laion2B-s32B-b79K) image encoders; SD 1.5 UNet + AnimateDiff
#   v1-5-2 motion adapter; SVD-XT UNet / temporal-decoder VAE.
# * parameter counts, blocks and tensor sizes: counted by instantiating each config on the
#   meta device (accelerate.init_empty_weights) with diffusers 0.42.1 / transformers 5.23
#   (UMT5/T5 with tied embeddings). Cross-checks against the Hub: Wan 14B text_encoder
#   11.4 GB in bf16 (5.68 B params), Wan 1.3B transformer 5.68 GB in fp32 (1.42 B),
#   LTX-Video transformer 7.69 GB in fp32 (1.92 B), LTX 0.9.7-dev transformer 26.1 GB in
#   bf16 (13.04 B), ComfyUI's wan2.1_t2v_14B_bf16 28.6 GB (14.29 B).
# * checkpoint dtypes: file sizes on the Hub (Wan-AI/*-Diffusers and Lightricks/LTX-Video
#   store fp32; LTX 0.9.7/0.9.8 13B store bf16; SkyReels assumed fp32).

_T5_BLOCK = ((41943040, 3), (16777216, 4), (10240, 1))  # gated-GELU FFN, q/k/v/o
_CLIP_H_BLOCK = ((6553600, 2), (1638400, 4), (16640, 1))


# Components and architectures several families share (the family modules in
# pipelines/families/ hold their own tables: transformers, UNets, their VAE components).
def umt5_xxl() -> ComponentSize:
    return ComponentSize("text_encoder", "text_encoder", 5_680_910_336, "float32", 24, 192_948_224,
                         1_050_148_864, _T5_BLOCK)  # the 256k-token embedding is the largest leaf


def t5_xxl() -> ComponentSize:
    return ComponentSize("text_encoder", "text_encoder", 4_762_310_656, "float32", 24, 192_948_224,
                         131_596_288, _T5_BLOCK)


def clip_vit_h(name: str = "image_encoder") -> ComponentSize:
    return ComponentSize(name, "image_encoder", 632_076_800, "float32", 32, 19_677_440, 6_558_720, _CLIP_H_BLOCK)


UMT5_ARCH = TextEncoderArch(hidden_size=4096, num_layers=24, ffn_dim=10240, num_heads=64, max_tokens=512)
T5_LTX_ARCH = TextEncoderArch(hidden_size=4096, num_layers=24, ffn_dim=10240, num_heads=64, max_tokens=128)
CLIP_L_ARCH = TextEncoderArch(hidden_size=768, num_layers=12, ffn_dim=3072, num_heads=12, max_tokens=77)

# Wan VAE decode: 10,130 bytes per output pixel (bf16, untiled, independent of the frame count:
# measured 3.95 GiB at 480x832, 9.11 GiB at 720x1280); tiled 256/192: 0.87 GiB at 480x832.
WAN_VAE = VaeArch(spatial_ratio=8, temporal_ratio=4, latent_channels=16, decode="framewise",
                  bytes_per_unit=10_130, tile=(256, 256), tiled_output_factor=1.4,
                  decode_flops_per_voxel=1.6e6)
# LTX VAE decode (0.9.0 and 0.9.5/0.9.7 decoders alike): 100 bytes per output voxel untiled
# (4.44 GiB for 121x512x768); tiled + framewise decoding: 0.90 GiB.
LTX_VAE = VaeArch(spatial_ratio=32, temporal_ratio=8, latent_channels=128, decode="volume",
                  bytes_per_unit=100, tile=(512, 512), tile_frames=17, tiled_output_factor=1.85,
                  decode_flops_per_voxel=0.6e6)
# SD 1.5 VAE: 1,536 bytes per output pixel per frame in a chunk (6.0 GiB for 16 frames at 512x512).
SD_VAE = VaeArch(spatial_ratio=8, temporal_ratio=1, latent_channels=4, decode="chunked", bytes_per_unit=1536,
                 tile=(512, 512), default_chunk=16, decode_flops_per_voxel=1.2e6)
# SVD temporal decoder: 2,048 bytes per pixel per frame (9.0 GiB for 8 frames at 576x1024); no tiling.
SVD_VAE = VaeArch(spatial_ratio=8, temporal_ratio=1, latent_channels=4, decode="chunked", bytes_per_unit=2048,
                  supports_tiling=False, default_chunk=25, decode_flops_per_voxel=1.5e6)


# The profiles themselves live in the family entries (``ModelFamily.size_profiles`` /
# ``repo_profiles``); they are collected on first use, because the family modules import this one.
def _collect_profiles() -> tuple[dict[str, ModelSizes], dict[str, str]]:
    from ..families import FAMILIES

    profiles: dict[str, ModelSizes] = {}
    repos: dict[str, str] = {}
    for family in FAMILIES.values():
        for name, sizes in family.size_profiles.items():
            profiles[name] = sizes() if callable(sizes) else sizes
        repos.update(family.repo_profiles)
    return profiles, repos


_profiles_cache: tuple[dict[str, ModelSizes], dict[str, str]] | None = None


def _profiles() -> tuple[dict[str, ModelSizes], dict[str, str]]:
    global _profiles_cache
    if _profiles_cache is None:
        _profiles_cache = _collect_profiles()
    return _profiles_cache


def __getattr__(name: str) -> Any:
    # SIZE_PROFILES (profile name -> ModelSizes) and REPO_PROFILES (hub repo id -> profile name),
    # so a preset or a repo id can be planned without downloading.
    if name == "SIZE_PROFILES":
        return _profiles()[0]
    if name == "REPO_PROFILES":
        return _profiles()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def profile_sizes(name: str) -> ModelSizes:
    """Sizes of a registry preset's model, from the built-in profile (or a hub repo id)."""
    profiles, repos = _profiles()
    key = repos.get(name, name)
    try:
        return profiles[key]
    except KeyError:
        raise KinetographError(
            f"No size profile named {name!r}. Known profiles: {', '.join(sorted(profiles))}; "
            f"or plan a local diffusers folder (it is measured from its files)."
        ) from None


# ============================================================== architecture from configs
# UNet video denoisers of no registered family, still measured as UNets (the families list their own).
_OTHER_UNET_CLASSES = frozenset({"UNet3DConditionModel", "I2VGenXLUNet"})
_denoiser_kinds_cache: dict[str, str] | None = None


def denoiser_kind(class_name: str) -> str:
    """The activation model of a denoiser class: "wan" | "ltx" | "unet" | "dit" (unknown transformer)."""
    global _denoiser_kinds_cache
    if _denoiser_kinds_cache is None:
        from ..families import FAMILIES

        kinds = {c: "unet" for c in _OTHER_UNET_CLASSES}
        kinds.update({c: f.denoiser_kind for f in FAMILIES.values() for c in f.denoiser_classes})
        _denoiser_kinds_cache = kinds
    return _denoiser_kinds_cache.get(class_name, "dit")


def denoiser_arch_from_config(class_name: str, config: dict[str, Any]) -> DenoiserArch:
    """Architecture numbers from a transformer/unet config.json (diffusers names)."""
    kind = denoiser_kind(class_name)
    if kind == "unet":
        channels = list(config.get("block_out_channels") or [320, 640, 1280, 1280])
        return DenoiserArch("unet", 16, channels[-1], 8, 4 * channels[-1], text_len=77, cfg_batched=True,
                            unet_act_bytes_per_voxel=17_000, unet_flops_per_voxel=3.0e8, supports_fp8=False)
    heads = int(config.get("num_attention_heads") or 16)
    head_dim = int(config.get("attention_head_dim") or 64)
    d = heads * head_dim
    layers = int(config.get("num_layers") or config.get("num_hidden_layers") or 28)
    if kind == "wan":
        patch = tuple(config.get("patch_size") or (1, 2, 2))
        return DenoiserArch("wan", layers, d, heads, int(config.get("ffn_dim") or 4 * d), patch,  # type: ignore[arg-type]
                            text_len=512, cfg_batched=False)
    if kind == "ltx":
        p, pt = int(config.get("patch_size") or 1), int(config.get("patch_size_t") or 1)
        return DenoiserArch("ltx", layers, d, heads, 4 * d, (pt, p, p), text_len=128, cfg_batched=True,
                            act_attn_bytes_per_dim=32.0)
    # Unknown transformer: generic DiT numbers (the larger of the two calibrated families).
    patch_raw = config.get("patch_size") or 2
    patch = tuple(patch_raw) if isinstance(patch_raw, (list, tuple)) else (1, int(patch_raw), int(patch_raw))
    return DenoiserArch("dit", layers, d, heads, int(config.get("ffn_dim") or 4 * d), patch,  # type: ignore[arg-type]
                        text_len=256, cfg_batched=True, act_attn_bytes_per_dim=32.0)


def vae_arch_from_config(class_name: str, config: dict[str, Any]) -> VaeArch:
    if class_name == "AutoencoderKLWan":
        down = list(config.get("temperal_downsample") or [False, True, True])
        spatial = int(config.get("scale_factor_spatial") or 2 ** len(down))
        temporal = int(config.get("scale_factor_temporal") or 2 ** sum(bool(x) for x in down))
        return replace(WAN_VAE, spatial_ratio=spatial, temporal_ratio=temporal,
                       latent_channels=int(config.get("z_dim") or 16))
    if class_name == "AutoencoderKLLTXVideo":
        scaling = list(config.get("spatio_temporal_scaling") or [True, True, True, False])
        p, pt = int(config.get("patch_size") or 4), int(config.get("patch_size_t") or 1)
        spatial = int(config.get("spatial_compression_ratio") or p * 2 ** sum(bool(x) for x in scaling))
        temporal = int(config.get("temporal_compression_ratio") or pt * 2 ** sum(bool(x) for x in scaling))
        return replace(LTX_VAE, spatial_ratio=spatial, temporal_ratio=temporal,
                       latent_channels=int(config.get("latent_channels") or 128))
    if class_name == "AutoencoderKLTemporalDecoder":
        return SVD_VAE
    channels = list(config.get("block_out_channels") or [128, 256, 512, 512])
    return replace(SD_VAE, spatial_ratio=2 ** (len(channels) - 1),
                   latent_channels=int(config.get("latent_channels") or 4))


def text_arch_from_config(config: dict[str, Any], max_tokens: int) -> TextEncoderArch:
    if "d_model" in config:  # T5 / UMT5
        return TextEncoderArch(int(config["d_model"]), int(config.get("num_layers") or 24),
                               int(config.get("d_ff") or 4 * config["d_model"]), int(config.get("num_heads") or 64),
                               max_tokens)
    text = config.get("text_config") or config
    hidden = int(text.get("hidden_size") or 768)
    return TextEncoderArch(hidden, int(text.get("num_hidden_layers") or 12),
                           int(text.get("intermediate_size") or 4 * hidden),
                           int(text.get("num_attention_heads") or 12), max_tokens)


def _text_tokens(denoiser: DenoiserArch) -> int:
    return {"wan": 512, "ltx": 128, "unet": 77}.get(denoiser.family, 256)


_ROLE_BY_NAME = {"transformer": "denoiser", "transformer_2": "denoiser", "unet": "denoiser",
                 "text_encoder": "text_encoder", "text_encoder_2": "text_encoder",
                 "image_encoder": "image_encoder", "vae": "vae"}


# ====================================================================== local folders
def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file: {tensor name: {dtype, shape, data_offsets}}."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100_000_000:
            raise KinetographError(f"{path} does not look like a safetensors file (header of {length} bytes).")
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return header


def measure_folder(path: str | Path) -> ModelSizes:
    """Measure a local diffusers folder from its files: no weight is loaded."""
    root = Path(path).expanduser()
    index_file = root / "model_index.json"
    if not index_file.is_file():
        raise KinetographError(f"{root} is not a diffusers model folder (no model_index.json).")
    index = json.loads(index_file.read_text())
    components: dict[str, ComponentSize] = {}
    configs: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or not (root / name).is_dir():
            continue
        files = sorted((root / name).glob("*.safetensors"))
        if not files:
            continue
        config_file = root / name / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        class_name = str(spec[1]) if len(spec) > 1 else ""
        configs[name] = (class_name, config)
        tensors = {}
        for file in files:
            for key, meta in read_safetensors_header(file).items():
                tensors[key] = (_SAFETENSORS_DTYPES.get(meta["dtype"], "float32"), _numel(meta["shape"]))
        components[name] = _component_from_tensors(name, _role(name, class_name), tensors,
                                                   max(f.stat().st_size for f in files))
    return _assemble(root.name, components, configs, source=f"folder {root}")


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _role(name: str, class_name: str) -> str:
    if name in _ROLE_BY_NAME:
        return _ROLE_BY_NAME[name]
    if denoiser_kind(class_name) == "unet" or class_name.endswith("Transformer3DModel"):
        return "denoiser"
    return "other"


_BLOCK_KEY = re.compile(r"^(?P<prefix>(?:[A-Za-z_]+\.)*?[A-Za-z_]+)\.(?P<index>\d+)\.")


def _component_from_tensors(name: str, role: str, tensors: dict[str, tuple[str, int]],
                            largest_file: int) -> ComponentSize:
    """Group tensor names like ``blocks.12.attn1.to_q.weight`` into repeated blocks."""
    params = sum(n for _, n in tensors.values())
    dtype_bytes: Counter[str] = Counter()
    groups: dict[str, dict[int, list[int]]] = {}
    for key, (dtype, n) in tensors.items():
        dtype_bytes[dtype] += n * DTYPE_BYTES.get(dtype, 4)
        m = _BLOCK_KEY.match(key)
        if m:
            groups.setdefault(m["prefix"], {}).setdefault(int(m["index"]), []).append(n)
    num_blocks = block_params = 0
    block_tensors: tuple[tuple[int, int], ...] = ()
    if groups:
        prefix = max(groups, key=lambda p: sum(sum(v) for v in groups[p].values()))
        blocks = groups[prefix]
        largest = max(blocks.values(), key=sum)
        num_blocks, block_params = len(blocks), sum(largest)
        block_tensors = tuple(sorted(Counter(largest).items(), reverse=True))
    largest_leaf = max((n for _, n in tensors.values()), default=0)
    stored = dtype_bytes.most_common(1)[0][0] if dtype_bytes else "float32"
    return ComponentSize(name, role, params, stored, num_blocks, block_params, largest_leaf, block_tensors,
                         largest_shard_bytes=largest_file)


def _assemble(name: str, components: dict[str, ComponentSize], configs: dict[str, tuple[str, dict[str, Any]]],
              source: str, compute_dtype: str = "bfloat16",
              component_dtypes: dict[str, str] | None = None) -> ModelSizes:
    denoisers = [c for c in components.values() if c.role == "denoiser"]
    if not denoisers:
        raise KinetographError(f"{source}: found no transformer or unet weights to plan for.")
    den_class, den_config = configs.get(denoisers[0].name, ("", {}))
    denoiser = denoiser_arch_from_config(den_class, den_config)
    vae = vae_arch_from_config(*configs["vae"]) if "vae" in configs else None
    text = None
    if "text_encoder" in configs:
        text = text_arch_from_config(configs["text_encoder"][1], _text_tokens(denoiser))
    if denoiser.family == "unet" and compute_dtype == "bfloat16":
        compute_dtype = "float16"  # SD-era UNets run in fp16
    return ModelSizes(name, components, denoiser, vae, text, compute_dtype=compute_dtype,
                      component_dtypes=dict(component_dtypes or {}), source=source)


# ==================================================================== loaded pipelines
def measure_components(pipe: Any) -> ModelSizes:
    """Measure a loaded diffusers pipeline from its modules (parameters + buffers)."""
    import torch

    components: dict[str, ComponentSize] = {}
    configs: dict[str, tuple[str, dict[str, Any]]] = {}
    dtypes: Counter[str] = Counter()
    per_component_dtype: dict[str, str] = {}
    for name, module in getattr(pipe, "components", {}).items():
        if not isinstance(module, torch.nn.Module):
            continue
        components[name] = measure_module(name, _role(name, type(module).__name__), module)
        config = getattr(module, "config", None)
        config_dict = dict(config) if isinstance(config, dict) else (config.to_dict() if config is not None else {})
        configs[name] = (type(module).__name__, config_dict)
        dtype = _module_dtype(module)
        per_component_dtype[name] = dtype
        dtypes[dtype] += components[name].params
    compute = dtypes.most_common(1)[0][0] if dtypes else "float32"
    overrides = {n: d for n, d in per_component_dtype.items() if d != compute}
    name = getattr(getattr(pipe, "config", None), "_name_or_path", None) or type(pipe).__name__
    return _assemble(str(name), components, configs, source="measured from the loaded pipeline",
                     compute_dtype=compute, component_dtypes=overrides)


def loaded_bytes(pipe: Any) -> int:
    """Bytes a loaded pipeline's modules hold (parameters + buffers, each in its own dtype)."""
    try:
        import torch
    except ImportError:
        return 0
    total = 0
    for module in getattr(pipe, "components", {}).values():
        if isinstance(module, torch.nn.Module):
            tensors = {id(t): t for t in list(module.parameters()) + list(module.buffers())}
            total += sum(t.numel() * t.element_size() for t in tensors.values())
    return total


def measure_module(name: str, role: str, module: Any) -> ComponentSize:
    import torch

    leaf_types = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
                  torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    tensors = list(module.parameters()) + list(module.buffers())
    params = sum(t.numel() for t in tensors)
    blocks = _repeated_blocks(module)
    block_sizes = [sum(p.numel() for p in b.parameters()) for b in blocks]
    largest = blocks[max(range(len(blocks)), key=block_sizes.__getitem__)] if blocks else None
    block_tensors = tuple(sorted(Counter(p.numel() for p in largest.parameters()).items(), reverse=True)) \
        if largest is not None else ()
    leaf = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in module.modules()
                if isinstance(m, leaf_types)), default=0)
    dtype = _module_dtype(module)
    return ComponentSize(name, role, params, dtype, len(blocks), max(block_sizes, default=0), leaf, block_tensors,
                         largest_shard_bytes=min(DEFAULT_SHARD_BYTES, params * DTYPE_BYTES.get(dtype, 4)))


def _repeated_blocks(module: Any) -> list[Any]:
    """The blocks block-level group offload will move: top-level ModuleLists, else the biggest nested one."""
    import torch

    blocks = [b for _, child in module.named_children()
              if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)) for b in child]
    if blocks:
        return blocks
    nested = [m for m in module.modules() if isinstance(m, torch.nn.ModuleList) and len(m) >= 2]
    if not nested:
        return []
    return list(max(nested, key=lambda m: sum(p.numel() for p in m.parameters())))


def _module_dtype(module: Any) -> str:
    """The dtype most parameters compute in; fp8 is a storage format (layerwise casting), not one."""
    counts: Counter[str] = Counter()
    for p in module.parameters():
        name = str(p.dtype).replace("torch.", "")
        counts["bfloat16" if name.startswith("float8") else name] += p.numel()
    return counts.most_common(1)[0][0] if counts else "float32"
