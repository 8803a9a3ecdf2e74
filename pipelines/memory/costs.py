"""The memory planner's cost model: what a job and each placement cost in bytes and seconds.

Everything here is arithmetic on component sizes (``sizes.py``), the job's shape, the machine
(``DeviceFacts``) and the ``PlannerSettings`` assumptions; the planner (``planner.py``) builds
candidate plans from these numbers, adds them up per stage and ranks them.

* job numbers: latent shape, tokens, FLOPs per pass, activation and latent bytes (``_job_numbers``);
* peaks of the other stages: VAE decode (``_decode_peak``) and the prompt encoders (``_encoder_activation``);
* bytes of a denoiser as stored (bf16 or fp8 layerwise, ``_storage_bytes``);
* the time model: a denoiser pass costs FLOPs / (spec TFLOPS x efficiency) (``_pass_seconds``);
  encoders and decode likewise (``_encoder_costs``, ``_decode_seconds``);
* what each denoiser placement tier costs (``_denoiser_placement``): VRAM, host RAM while loading,
  setting up and in steady state, and the transfer time compute does not hide — with a CUDA
  stream, a block's copy overlaps the previous block's compute, so only max(0, copy - compute) per
  block shows; without one, every copy (in and back out) adds up. Host RAM counts what each
  placement keeps on the CPU, including pinned copies, which torch rounds up to a power of two
  per tensor.

No weight is loaded and torch is not imported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import KinetographError
from .device import GB, DeviceFacts
from .sizes import DTYPE_BYTES, ComponentSize, ModelSizes

# Denoiser placement tiers, fastest (and hungriest) first.
TIERS: dict[str, str] = {
    "resident": "all weights resident on the GPU",
    "model_offload": "whole components moved to the GPU while they run (model CPU offload)",
    "group_stream": "block-level group offload; the next block is prefetched on a CUDA stream from "
                    "pre-pinned host copies",
    "group_stream_lowmem": "block-level group offload with stream prefetch; blocks are pinned on the fly "
                           "(low_cpu_mem_usage) instead of keeping pinned copies",
    "group_sync": "block-level group offload without streams: one block on the GPU, synchronous copies",
    "leaf_stream": "leaf-level group offload (one layer at a time) with stream prefetch, pre-pinned",
    "leaf_stream_lowmem": "leaf-level group offload with stream prefetch, pinned on the fly",
    "sequential": "sequential CPU offload: every layer copied to the GPU when it runs (accelerate)",
    "device_map": "accelerate device_map by whole blocks: as many as fit stay on the GPU, the rest in host "
                  "RAM and, when RAM is short, in an offload folder on disk; copied in block by block",
}

# ============================================================ estimates that enter every plan
# Host RAM the process holds before any weight once CUDA is initialised: Python, torch, diffusers,
# transformers, the CUDA runtime and the cuBLAS / cuDNN kernel images it maps. 3-5 GB is typical
# with CUDA 12 wheels; the planner assumes the middle of that range.
CUDA_RUNTIME_RAM_BYTES = 4_000_000_000
# Without CUDA (the CPU plan) no CUDA context exists: Python, torch and the libraries only.
CPU_RUNTIME_RAM_BYTES = 2_000_000_000

# bf16 tensor cores and FlashAttention (torch SDPA's flash kernel, FlashAttention 2/3) start at
# Ampere, compute capability 8.0. Older GPUs (Turing sm_75, Volta sm_70, ...) compute in fp16 and
# the planner counts the attention matrix that a non-flash kernel materialises.
FLASH_BF16_MIN_CAPABILITY = (8, 0)


def has_bf16_flash(facts: DeviceFacts) -> bool:
    """True where the GPU has bf16 and flash attention (compute capability >= 8.0, or unknown)."""
    cc = facts.compute_capability
    return not facts.has_cuda or cc is None or tuple(cc) >= FLASH_BF16_MIN_CAPABILITY


def sizes_for_device(sizes: ModelSizes, facts: DeviceFacts) -> ModelSizes:
    """The model as this device will compute it: without bf16 (pre-Ampere) every bf16 compute dtype
    becomes fp16 (same bytes). fp32 components (Wan's VAE, tiny models) stay fp32, and fp8 layerwise
    storage stays available with fp16 compute."""
    if has_bf16_flash(facts):
        return sizes
    fp16 = {name: ("float16" if dtype == "bfloat16" else dtype) for name, dtype in sizes.component_dtypes.items()}
    compute = "float16" if sizes.compute_dtype == "bfloat16" else sizes.compute_dtype
    return replace(sizes, compute_dtype=compute, component_dtypes=fp16)


def attention_scores_bytes(sizes: ModelSizes, shape: JobShape, flash: bool) -> int:
    """Attention scores a non-flash kernel holds at once in the denoiser's largest attention.

    A flash kernel never forms the N x N matrix (0). Without one, SDPA's math path computes
    softmax(Q K^T) for every head of the batch in one matmul: tokens^2 x heads x batch elements in the
    compute dtype (the scores, then the softmax written beside them: x2). DiTs attend over all video
    tokens; UNets' largest is the spatial self-attention at full latent size, with frames as batch.
    """
    if flash:
        return 0
    den, vae = sizes.denoiser, sizes.vae
    sr, tr = (vae.spatial_ratio, vae.temporal_ratio) if vae else (8, 4)
    lf = (shape.frames - 1) // tr + 1 if tr > 1 else shape.frames
    lh, lw = max(1, shape.height // sr), max(1, shape.width // sr)
    batch = shape.batch * (2 if shape.cfg and den.cfg_batched else 1)
    item = DTYPE_BYTES[sizes.compute_dtype]
    if den.family == "unet":
        n, chunk = lh * lw, batch * lf * den.num_heads  # one attention per frame, every head at once
    else:
        pt, ph, pw = den.patch_size
        n = max(1, math.ceil(lf / pt)) * max(1, math.ceil(lh / ph)) * max(1, math.ceil(lw / pw))
        chunk = batch * den.num_heads
    return int(2 * n * n * chunk * item)


def shard_transient_bytes(components: list[ComponentSize]) -> int:
    """Host RAM that from_pretrained holds beside the weights already loaded while it reads a sharded
    safetensors checkpoint: one shard (its mapped pages, copied or cast into the model's tensors), the
    largest among the components loaded through host RAM (at most the component's own size; hub
    shards default to ``sizes.DEFAULT_SHARD_BYTES``, 5 GB)."""
    return max((min(c.largest_shard_bytes, c.nbytes(c.checkpoint_dtype)) for c in components), default=0)


@dataclass(frozen=True)
class JobShape:
    frames: int
    height: int
    width: int
    cfg: bool = True
    steps: int = 30
    batch: int = 1

    def describe(self) -> str:
        cfg = "CFG" if self.cfg else "no CFG"
        return f"{self.frames} frames at {self.width}x{self.height}, {cfg}, {self.steps} steps"


@dataclass(frozen=True)
class PlannerSettings:
    """Assumptions that are not facts about the device. Printed with every plan."""

    compute_efficiency: float = 0.5  # achieved fraction of spec TFLOPS in large matmuls/attention
    vram_margin: float = 0.10  # a plan fits when predicted peak x (1 + margin) <= usable VRAM
    ram_margin: float = 0.05
    runtime_vram_bytes: int = 300_000_000  # cuBLAS workspaces, latents, embeddings, small buffers
    runtime_ram_bytes: int = CUDA_RUNTIME_RAM_BYTES  # torch + CUDA libraries + Python, resident in host RAM
    cpu_runtime_ram_bytes: int = CPU_RUNTIME_RAM_BYTES  # the same without a CUDA context (the CPU plan)
    hook_overhead_s: float = 2.0e-4  # Python hook + stream bookkeeping per offloaded group per pass
    fp8_quality_penalty: float = 1.10  # ranking: fp8 storage must be >10% faster to beat bf16
    fp8_cast_overhead: float = 0.03  # upcasting fp8 weights to bf16 before each layer
    tiled_decode_slowdown: float = 1.4  # tile overlap is decoded twice
    flash3_attention_speedup: float = 1.3



# ====================================================================== job arithmetic
@dataclass(frozen=True)
class _Job:
    """Shape-derived numbers shared by every candidate."""

    latent_frames: int
    latent_h: int
    latent_w: int
    tokens: int
    batch_per_pass: int  # 2 when CFG is batched into one forward
    passes_per_step: int  # 2 when CFG runs cond and uncond separately
    flops_per_pass: float
    attention_flops_per_pass: float
    activation_bytes: int
    latent_bytes: int
    attention_scores_bytes: int = 0  # the N x N scores a non-flash kernel adds (0 with flash attention)


def _job_numbers(sizes: ModelSizes, shape: JobShape, flash: bool = True) -> _Job:
    den, vae = sizes.denoiser, sizes.vae
    sr, tr = (vae.spatial_ratio, vae.temporal_ratio) if vae else (8, 4)
    lf = (shape.frames - 1) // tr + 1 if tr > 1 else shape.frames
    lh, lw = max(1, shape.height // sr), max(1, shape.width // sr)
    pt, ph, pw = den.patch_size
    tokens = max(1, math.ceil(lf / pt)) * max(1, math.ceil(lh / ph)) * max(1, math.ceil(lw / pw))
    batched = shape.cfg and den.cfg_batched
    batch = shape.batch * (2 if batched else 1)
    passes = 2 if (shape.cfg and not den.cfg_batched) else 1
    item = DTYPE_BYTES[sizes.compute_dtype]
    if den.family == "unet":
        voxels = batch * lf * lh * lw
        act = den.unet_act_bytes_per_voxel * voxels * item / 2
        scores = attention_scores_bytes(sizes, shape, flash)
        act += scores  # the calibrated coefficient assumes a fused kernel: the scores come on top
        flops = den.unet_flops_per_voxel * voxels * 1.2  # +20%: attention is not in the measured count
        attn = flops * 0.2 / 1.2
    else:
        d, f, text = den.hidden_size, den.ffn_dim, den.text_len
        per_token = max(den.act_attn_bytes_per_dim * d, den.act_ffn_bytes_per_dim * d + 4 * f)
        act = batch * tokens * per_token * item / 2
        scores = attention_scores_bytes(sizes, shape, flash)
        if scores:  # the scores live during the attention phase only, beside its activations
            act = max(batch * tokens * den.act_attn_bytes_per_dim * d * item / 2 + scores,
                      batch * tokens * (den.act_ffn_bytes_per_dim * d + 4 * f) * item / 2)
        linear = 2 * tokens * (6 * d * d + 2 * d * f) + 2 * 2 * d * d * text
        attn = 4 * tokens * tokens * d + 4 * tokens * text * d
        flops = batch * den.num_layers * (linear + attn)
        attn = batch * den.num_layers * attn
    channels = vae.latent_channels if vae else 16
    latent_bytes = 4 * shape.batch * channels * lf * lh * lw * 4  # fp32 latents, noise, prediction, scratch
    return _Job(lf, lh, lw, tokens, batch, passes, flops, attn, int(act), int(latent_bytes), scores)


def _decode_peak(sizes: ModelSizes, shape: JobShape, tiled: bool, chunk: int | None) -> int:
    vae = sizes.vae
    if vae is None:
        return 0
    item = DTYPE_BYTES[sizes.dtype_of("vae")]
    scale = item / 2  # coefficients were measured in a 2-byte dtype
    h, w, frames = shape.height, shape.width, shape.frames
    out = frames * h * w * 3 * item * shape.batch
    th, tw = (min(h, vae.tile[0]), min(w, vae.tile[1])) if tiled else (h, w)
    if vae.decode == "framewise":
        factor = vae.tiled_output_factor if tiled else 1.0
        return int(vae.bytes_per_unit * th * tw * scale * shape.batch + factor * out)
    if vae.decode == "volume":
        if not tiled:
            return int(vae.bytes_per_unit * frames * h * w * scale * shape.batch)
        tf = min(frames, vae.tile_frames)
        return int(vae.bytes_per_unit * tf * th * tw * scale * shape.batch + vae.tiled_output_factor * out)
    chunk = min(chunk or vae.default_chunk, frames)
    return int(vae.bytes_per_unit * chunk * th * tw * scale + out)


def _encoder_activation(sizes: ModelSizes) -> int:
    arch = sizes.text_encoder
    if arch is None:
        return 200_000_000 if sizes.by_role("image_encoder") else 0
    n = arch.max_tokens
    # hidden states + gated FFN in bf16, plus fp32 attention scores and the position bias
    return int(n * (8 * arch.hidden_size + 8 * arch.ffn_dim) * 2 + arch.num_heads * n * n * 4 * 2)


# ============================================================================ time model
def _attention_backend(facts: DeviceFacts) -> str:
    return "_flash_3" if "_flash_3" in facts.attention_backends else "native"


def _pass_seconds(job: _Job, facts: DeviceFacts, s: PlannerSettings, fp8: bool) -> tuple[float, float]:
    """Compute seconds of one denoiser pass with all weights resident: (bf16 reference, this storage)."""
    tflops = facts.gpu_tflops * 1e12 * s.compute_efficiency
    attn_speedup = s.flash3_attention_speedup if _attention_backend(facts) == "_flash_3" else 1.0
    ref_compute_s = (job.flops_per_pass - job.attention_flops_per_pass) / tflops \
        + job.attention_flops_per_pass / tflops / attn_speedup
    compute_s = ref_compute_s * (1 + s.fp8_cast_overhead if fp8 else 1.0)
    return ref_compute_s, compute_s


def _encoder_costs(sizes: ModelSizes, shape: JobShape, facts: DeviceFacts, s: PlannerSettings, device: str,
                   after: str) -> tuple[int, float]:
    """The prompt / image encoders' VRAM while encoding and their seconds, for where they run
    (``gpu``, ``gpu_group``: leaf-level offload, ``cpu``) and what happens after (``keep_cpu`` moves them back)."""
    encoders = sizes.by_role("text_encoder") + sizes.by_role("image_encoder")
    tflops = facts.gpu_tflops * 1e12 * s.compute_efficiency
    h2d_u, d2h = facts.h2d_pageable_gbps * GB, facts.d2h_gbps * GB
    enc_b = sum(sizes.component_bytes(c.name) for c in encoders)
    enc_act = _encoder_activation(sizes) if encoders else 0
    prompts = 2 if shape.cfg else 1
    tokens = sizes.text_encoder.max_tokens if sizes.text_encoder else 77
    enc_flops = sum(2 * c.params * (tokens if c.role == "text_encoder" else 257) * prompts for c in encoders)
    enc_vram, enc_s = 0, 0.0
    if device == "gpu":
        enc_vram = enc_b + enc_act
        enc_s = enc_flops / tflops + enc_b / h2d_u + (enc_b / d2h if after == "keep_cpu" else 0)
    elif device == "gpu_group":
        # leaf-level group offload: the largest layer (often the token embedding) plus the next one
        enc_vram = max((c.largest_leaf_params + c.block_params // 4) * DTYPE_BYTES[sizes.dtype_of(c.name)]
                       for c in encoders) + enc_act
        enc_s = enc_flops / tflops + prompts * enc_b * (1 / h2d_u + 1 / d2h)
    elif device == "cpu":
        enc_s = enc_flops / (facts.cpu_tflops * 1e12)
    return enc_vram, enc_s


def _decode_seconds(sizes: ModelSizes, shape: JobShape, facts: DeviceFacts, s: PlannerSettings,
                    tiled: bool) -> float:
    tflops = facts.gpu_tflops * 1e12 * s.compute_efficiency
    voxels = shape.frames * shape.height * shape.width * shape.batch
    return (sizes.vae.decode_flops_per_voxel * voxels / tflops if sizes.vae else 0.0) \
        * (s.tiled_decode_slowdown if tiled else 1.0)


# ============================================================================ placements
def _storage_bytes(comp: ComponentSize, compute: str, fp8: bool) -> int:
    """Bytes of a denoiser after layerwise casting (blocks in fp8, embeddings/norms stay in compute dtype)."""
    if not fp8:
        return comp.nbytes(compute)
    return comp.num_blocks * comp.block_params + comp.non_block_params * DTYPE_BYTES[compute]


@dataclass
class _Placement:
    """What one denoiser tier costs: memory per place and transfer time per pass."""

    weights_vram: int  # denoiser weights on the GPU while denoising
    resident_vram: int = 0  # denoiser weights that stay on the GPU in every stage
    ram: int = 0  # denoiser bytes in host RAM in steady state
    setup_ram: int = 0  # extra host RAM while offload hooks are set up (originals + pinned copies)
    load_ram: int = 0  # denoiser bytes in host RAM while loading
    exposed_s: float = 0.0  # transfer time per pass that compute does not hide
    once_s: float = 0.0  # transfers paid once per job
    block_transfer_s: float = 0.0
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    split: tuple[int, int, int] | None = None  # device_map tier: blocks on GPU / in RAM / on disk


@dataclass(frozen=True)
class _Ctx:
    """Numbers every tier needs, computed once per candidate."""

    denoisers: list[ComponentSize]
    compute: str
    storage: str
    fp8: bool
    compute_s: float
    facts: DeviceFacts
    settings: PlannerSettings
    # for the device_map tier: room left on the GPU / in RAM after everything else
    vram_room: int
    ram_room: int


def _denoiser_placement(tier: str, ctx: _Ctx) -> _Placement:
    facts, s = ctx.facts, ctx.settings
    item = DTYPE_BYTES[ctx.compute]
    big = max(ctx.denoisers, key=lambda c: c.params)
    blocks = max(1, big.num_blocks)
    block_b = big.block_params * DTYPE_BYTES[ctx.storage] if big.num_blocks \
        else _storage_bytes(big, ctx.compute, ctx.fp8)
    nonblock_b = big.non_block_params * item if big.num_blocks else 0
    leaf_b = big.largest_leaf_params * DTYPE_BYTES[ctx.storage]
    all_b = sum(_storage_bytes(c, ctx.compute, ctx.fp8) for c in ctx.denoisers)
    load_b = sum(c.nbytes(ctx.compute) for c in ctx.denoisers)  # loaded in the compute dtype, cast afterwards
    one_b = _storage_bytes(big, ctx.compute, ctx.fp8)
    block_c = ctx.compute_s / blocks
    h2d_p, h2d_u = facts.h2d_pinned_gbps * GB, facts.h2d_pageable_gbps * GB
    d2h, pin, disk = facts.d2h_gbps * GB, facts.host_copy_gbps * GB, facts.disk_gbps * GB
    ratio = big.pinned_ratio(ctx.storage)
    per_block_leaves = sum(c for n, c in big.block_tensors if n >= 1 << 16) if big.block_tensors else 12
    leaves = blocks * max(4, per_block_leaves)
    hooks = s.hook_overhead_s
    upcast = big.largest_leaf_params * item if ctx.fp8 else 0  # one layer upcast to bf16 at a time
    blocks_all = sum(c.num_blocks * c.block_params for c in ctx.denoisers) * DTYPE_BYTES[ctx.storage]
    nonblock_all = sum(c.non_block_params for c in ctx.denoisers) * item

    if tier == "resident":
        # Loaded straight onto the GPU (device_map="cuda"): the weights never sit in host RAM.
        return _Placement(all_b + upcast, resident_vram=all_b + upcast, once_s=0.0,
                          load_kwargs={"device_map": "cuda"})
    if tier == "model_offload":
        return _Placement(one_b + upcast, ram=all_b, load_ram=load_b, once_s=2 * all_b / h2d_u)
    if tier in ("group_stream", "group_stream_lowmem"):
        t = block_b / h2d_p
        p = _Placement(nonblock_b + 3 * block_b + upcast, load_ram=load_b, block_transfer_s=t)
        if tier == "group_stream":
            # pinned copies replace the pageable weights, but both exist until the first forward
            p.ram, p.setup_ram = int(blocks_all * ratio) + nonblock_all, all_b
            p.exposed_s = blocks * max(0.0, t - block_c)
        else:
            p.ram = all_b + int(3 * block_b * ratio)
            p.exposed_s = blocks * max(0.0, block_b / pin + t - block_c)  # pinning is a host copy first
        p.exposed_s += nonblock_b / h2d_u + blocks * hooks  # the non-block group moves synchronously
        return p
    if tier == "group_sync":
        t = block_b / h2d_u + block_b / d2h  # without streams each block is copied in and back out
        return _Placement(nonblock_b + block_b + upcast, ram=all_b, load_ram=load_b, block_transfer_s=t,
                          exposed_s=blocks * (t + hooks) + nonblock_b * (1 / h2d_u + 1 / d2h))
    if tier in ("leaf_stream", "leaf_stream_lowmem"):
        t = block_b / h2d_p
        p = _Placement(3 * leaf_b + upcast, load_ram=load_b, block_transfer_s=t)
        if tier == "leaf_stream":
            p.ram, p.setup_ram = int(all_b * ratio), all_b
            p.exposed_s = blocks * max(0.0, t - block_c)
        else:
            p.ram = all_b + int(3 * leaf_b * ratio)
            p.exposed_s = blocks * max(0.0, block_b / pin + t - block_c)
        p.exposed_s += nonblock_b / h2d_p + leaves * hooks
        return p
    if tier == "sequential":
        return _Placement(leaf_b + upcast, ram=all_b, load_ram=load_b, block_transfer_s=block_b / h2d_u,
                          exposed_s=one_b / h2d_u + leaves * hooks * 1.5)
    if tier == "device_map":
        # accelerate places whole blocks: as many as fit stay on the GPU, then RAM, then disk.
        in_flight = nonblock_b + block_b
        n = blocks * len(ctx.denoisers)
        n_gpu = int(max(0, min(n, (ctx.vram_room - in_flight) // max(1, block_b))))
        n_cpu = int(max(0, min(n - n_gpu, ctx.ram_room // max(1, block_b))))
        n_disk = n - n_gpu - n_cpu
        streamed = (n_cpu * block_b / h2d_u + n_disk * block_b / disk) / len(ctx.denoisers)
        return _Placement(in_flight + n_gpu * block_b, resident_vram=in_flight + n_gpu * block_b,
                          ram=n_cpu * block_b, load_ram=n_cpu * block_b,
                          block_transfer_s=block_b / (disk if n_disk else h2d_u),
                          exposed_s=streamed + (n - n_gpu) / len(ctx.denoisers) * hooks * 4,
                          load_kwargs={"device_map": "blocks", "gpu_blocks": n_gpu, "cpu_blocks": n_cpu,
                                       "disk_blocks": n_disk},
                          split=(n_gpu, n_cpu, n_disk))
    raise KinetographError(f"Unknown memory mode {tier!r}. Known modes: {', '.join(TIERS)}.")
