"""The memory planner: the fastest placement of a pipeline that fits GPU memory *and* host RAM.

Inputs: component sizes (``sizes.py``), the job's shape, the machine (``DeviceFacts``) and an
optional user budget or mode. The planner enumerates candidate plans — a placement tier for
the denoiser (resident, model offload, group offload at block or leaf level with or without
CUDA streams, sequential, a block split between GPU, RAM and disk), fp8 layerwise storage or
not, where the text encoder runs and whether it is released, VAE tiling or decode chunk size —
predicts for each the peak VRAM per stage (encode, denoise, decode), the peak host RAM and the
seconds per step from the cost model (``costs.py``), and keeps those that fit both budgets.

* ``plan_memory`` returns the fastest fitting plan (fp8 storage pays a small quality
  penalty in the ranking, so it is used when it fits where bf16 does not, or is clearly faster);
* ``plan_ladder`` returns the fitting plans from fastest to cheapest, each using strictly
  less predicted VRAM than the one before: the steps out-of-memory recovery walks down.

Every prediction is arithmetic on the assumptions printed by ``MemoryPlan.explain()``; no
weight is loaded and torch is not imported.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import KinetographError
from .costs import (  # noqa: F401  (re-exported: tests and bench import them from here)
    TIERS,
    JobShape,
    PlannerSettings,
    _attention_backend,
    _Ctx,
    _decode_peak,
    _decode_seconds,
    _denoiser_placement,
    _encoder_activation,
    _encoder_costs,
    _Job,
    _job_numbers,
    _pass_seconds,
    _Placement,
    _storage_bytes,
    has_bf16_flash,
    shard_transient_bytes,
    sizes_for_device,
)
from .device import GB, DeviceFacts
from .sizes import DenoiserArch, ModelSizes, measure_folder, profile_sizes

STAGES = ("encode", "denoise", "decode")

MODE_ALIASES = {"gpu": "resident", "all_gpu": "resident", "model": "model_offload", "group": "group_stream",
                "block": "group_stream", "lowmem": "group_stream_lowmem", "leaf": "leaf_stream",
                "sync": "group_sync", "sequential_offload": "sequential", "disk": "device_map",
                "disk_offload": "device_map", "auto": None}

# Encoder handling: (where it runs, what happens to it after encoding).
ENCODER_MODES = (("gpu", "keep_gpu"), ("gpu", "keep_cpu"), ("gpu", "release"), ("gpu_group", "keep_cpu"),
                 ("gpu_group", "release"), ("cpu", "keep_cpu"), ("cpu", "release"))



# ============================================================================ the plan
@dataclass
class ComponentPlan:
    name: str
    role: str
    placement: str  # gpu | model_offload | group_offload | leaf_offload | sequential_offload | disk_offload | cpu
    compute_dtype: str
    storage_dtype: str | None = None  # fp8 layerwise storage (diffusers enable_layerwise_casting)
    use_stream: bool = False
    record_stream: bool = False
    low_cpu_mem_usage: bool = False
    num_blocks_per_group: int | None = None
    after_use: str = "keep"  # encoders: keep_gpu | keep_cpu | release
    tiled: bool = False  # VAE: tiled decoding
    block_split: tuple[int, int, int] | None = None  # device_map: blocks on GPU / in RAM / on disk
    vram_bytes: int = 0  # on the GPU while it runs
    ram_bytes: int = 0  # in host RAM in steady state

    def describe(self) -> str:
        what = {
            "gpu": "resident on the GPU",
            "model_offload": "moved to the GPU while it runs (model CPU offload)",
            "group_offload": f"group offload, {self.num_blocks_per_group or 1} block per group",
            "leaf_offload": "group offload at leaf level (one layer at a time)",
            "sequential_offload": "sequential CPU offload (one layer at a time, synchronous)",
            "device_map": "split by whole blocks between GPU, host RAM and disk (accelerate device_map)",
            "cpu": "runs on the CPU",
        }[self.placement]
        if self.role in ("text_encoder", "image_encoder") and self.placement != "cpu":
            what = "runs on the GPU: " + what
        if self.tiled:
            what += ", tiled decoding"
        if self.use_stream:
            what += ", CUDA-stream prefetch" + (" (pinned on the fly)" if self.low_cpu_mem_usage else
                                                " (pre-pinned host copies)")
        if self.storage_dtype:
            what += f", stored in {self.storage_dtype} and computed in {self.compute_dtype}"
        if self.after_use == "release":
            what += "; released from memory after encoding"
        elif self.after_use == "keep_cpu" and self.role in ("text_encoder", "image_encoder"):
            what += "; kept in host RAM for the next job"
        return what


@dataclass
class MemoryPlan:
    name: str
    tier: str
    fp8: bool
    components: dict[str, ComponentPlan]
    vae_tiling: bool
    vae_slicing: bool
    decode_chunk_size: int | None
    attention_backend: str
    text_encode_device: str  # "cuda" or "cpu": where the engine should run the prompt encoders
    staged_load: bool  # load the encoders alone, encode, release them, then load the rest
    load_kwargs: dict[str, dict[str, Any]]  # per component from_pretrained kwargs this plan needs
    stage_vram: dict[str, int]
    stage_ram: dict[str, int]
    predicted_peak_vram_bytes: int
    predicted_peak_ram_bytes: int
    seconds_per_step: float
    reference_seconds_per_step: float  # all weights resident, same shape: the speed to compare with
    job_seconds: float
    score: float  # ranking key: job seconds x quality penalty (fp8)
    fits: bool
    vram_budget_bytes: int
    ram_budget_bytes: int
    model: str
    shape: JobShape
    device: str
    notes: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # faster plans that did not fit, and why
    assumptions: dict[str, Any] = field(default_factory=dict)
    breakdown: dict[str, float] = field(default_factory=dict)  # compute/transfer seconds per pass
    budget_from_user: bool = False  # the VRAM budget was given (--budget-gb): apply_plan enforces it
    device_note: str = ""  # what the GPU lacks that changed the plan (pre-Ampere: no bf16 / flash attention)

    def for_remaining_stages(self, finished: tuple[str, ...] | list[str]) -> MemoryPlan:
        """The same plan with the components of finished stages parked on the CPU (not moved back to
        the GPU when recovery re-applies a plan after encoding is done)."""
        if "encode" not in finished:
            return self
        comps = {name: (replace(c, placement="cpu", use_stream=False, record_stream=False, vram_bytes=0)
                        if c.role in ("text_encoder", "image_encoder") else c)
                 for name, c in self.components.items()}
        return replace(self, components=comps)

    @property
    def predicted_slowdown(self) -> float:
        return self.seconds_per_step / self.reference_seconds_per_step if self.reference_seconds_per_step else 1.0

    @property
    def predicted_peak_vram_gb(self) -> float:
        return self.predicted_peak_vram_bytes / GB

    @property
    def predicted_peak_ram_gb(self) -> float:
        return self.predicted_peak_ram_bytes / GB

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "tier": self.tier, "tier_description": TIERS.get(self.tier, self.tier),
            "fp8": self.fp8, "model": self.model, "device": self.device, "shape": asdict(self.shape),
            "fits": self.fits,
            "predicted_peak_vram_gb": round(self.predicted_peak_vram_gb, 3),
            "predicted_peak_ram_gb": round(self.predicted_peak_ram_gb, 3),
            "predicted_peak_vram_bytes": self.predicted_peak_vram_bytes,
            "predicted_peak_ram_bytes": self.predicted_peak_ram_bytes,
            "vram_budget_gb": round(self.vram_budget_bytes / GB, 3),
            "ram_budget_gb": round(self.ram_budget_bytes / GB, 3),
            "stages": {s: {"vram_gb": round(self.stage_vram[s] / GB, 3), "ram_gb": round(self.stage_ram[s] / GB, 3)}
                       for s in STAGES},
            "seconds_per_step": round(self.seconds_per_step, 4),
            "reference_seconds_per_step": round(self.reference_seconds_per_step, 4),
            "predicted_slowdown": round(self.predicted_slowdown, 3),
            "job_seconds": round(self.job_seconds, 2),
            "placement": {name: asdict(c) for name, c in self.components.items()},
            "vae_tiling": self.vae_tiling, "vae_slicing": self.vae_slicing,
            "decode_chunk_size": self.decode_chunk_size, "attention_backend": self.attention_backend,
            "text_encode_device": self.text_encode_device, "staged_load": self.staged_load,
            "load_kwargs": self.load_kwargs, "notes": list(self.notes), "rejected": list(self.rejected),
            "assumptions": dict(self.assumptions), "breakdown": dict(self.breakdown),
            "budget_from_user": self.budget_from_user, "device_note": self.device_note,
        }

    def explain(self) -> str:
        fit = "fits" if self.fits else "DOES NOT FIT"
        lines = [
            f"Memory plan '{self.name}' for {self.model}: {self.shape.describe()} on {self.device} "
            f"(budget {self.vram_budget_bytes / GB:.1f} GB VRAM, {self.ram_budget_bytes / GB:.1f} GB host RAM; {fit})",
        ]
        for comp in self.components.values():
            lines.append(f"  {comp.name}: {comp.describe()}")
        if self.decode_chunk_size:
            lines.append(f"  vae: decodes {self.decode_chunk_size} frames at a time")
        lines.append(f"  attention: {self.attention_backend}"
                     + (" (PyTorch SDPA: flash / memory-efficient kernels, no N x N matrix)"
                        if self.attention_backend == "native" and not self.device_note else ""))
        if self.device_note:
            lines.append(f"  {self.device_note}")
        if self.staged_load:
            lines.append("  loading: encoders first, released after encoding, then the denoiser and VAE")
        sv = ", ".join(f"{s} {self.stage_vram[s] / GB:.2f}" for s in STAGES)
        sr = ", ".join(f"{s} {self.stage_ram[s] / GB:.2f}" for s in STAGES)
        lines.append(f"Predicted peak VRAM {self.predicted_peak_vram_gb:.2f} GB ({sv}); "
                     f"peak host RAM {self.predicted_peak_ram_gb:.2f} GB ({sr})")
        b = self.breakdown
        where = "on the CPU" if self.tier == "cpu" else "all on the GPU"
        lines.append(f"Predicted speed: {self.seconds_per_step:.2f} s/step vs {self.reference_seconds_per_step:.2f} "
                     f"s/step {where} ({self.predicted_slowdown:.2f}x); per pass: compute "
                     f"{b.get('compute_s', 0):.2f} s, exposed transfers {b.get('exposed_transfer_s', 0):.2f} s"
                     + (f" (a block moves in {b['block_transfer_s'] * 1e3:.1f} ms and computes in "
                        f"{b['block_compute_s'] * 1e3:.1f} ms)" if b.get("block_transfer_s") else ""))
        lines.append(f"Predicted job time {self.job_seconds:.0f} s (encode + {self.shape.steps} steps + decode)")
        for why in self.rejected[:6]:
            lines.append(f"  not chosen: {why}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        a = self.assumptions
        if a:
            lines.append("Assumptions: " + ", ".join(f"{k}={v}" for k, v in a.items()))
        return "\n".join(lines)


# ============================================================================ candidates
@dataclass(frozen=True)
class _Candidate:
    tier: str
    fp8: bool
    encoder_device: str
    encoder_after: str
    vae_tiling: bool
    decode_chunk: int | None


def _candidates(sizes: ModelSizes, tiers: list[str]) -> list[_Candidate]:
    fp8_options = (False, True) if sizes.denoiser.supports_fp8 else (False,)
    has_encoders = bool(sizes.by_role("text_encoder") or sizes.by_role("image_encoder"))
    enc_modes = ENCODER_MODES if has_encoders else (("none", "keep_cpu"),)
    vae = sizes.vae
    if vae is not None and vae.decode == "chunked":
        chunks = sorted({vae.default_chunk, 8, 4, 2, 1}, reverse=True)
        vae_modes = [(False, c) for c in chunks] + ([(True, 1)] if vae.supports_tiling else [])
    else:
        vae_modes = [(False, None)] + ([(True, None)] if vae is not None and vae.supports_tiling else [])
    out = []
    for tier in tiers:
        # layerwise casting is a diffusers hook; accelerate's offload hooks (sequential, device_map) keep
        # their own copies of the weights, so the two are not combined
        for fp8 in fp8_options if tier not in ("sequential", "device_map") else (False,):
            for dev, after in enc_modes:
                if after == "keep_gpu" and tier != "resident":
                    continue  # keeping an encoder on the GPU only makes sense when everything stays there
                for tiled, chunk in vae_modes:
                    out.append(_Candidate(tier, fp8, dev, after, tiled, chunk))
    return out


def _evaluate(sizes: ModelSizes, shape: JobShape, facts: DeviceFacts, settings: PlannerSettings, job: _Job,
              cand: _Candidate, vram_budget: int, ram_budget: int) -> MemoryPlan | None:
    s = settings
    compute = sizes.compute_dtype
    storage = "float8_e4m3fn" if cand.fp8 else compute
    tier = cand.tier
    resident = tier == "resident"
    denoisers = sizes.by_role("denoiser")
    encoders = sizes.by_role("text_encoder") + sizes.by_role("image_encoder")
    vae_bytes = sizes.component_bytes("vae") if "vae" in sizes.components else 0
    others = [c for c in sizes.components.values() if c.role == "other"]
    other_bytes = sum(sizes.component_bytes(c.name) for c in others)
    rt, r0 = s.runtime_vram_bytes, s.runtime_ram_bytes

    # ---- compute time of one denoiser pass (all weights resident)
    ref_compute_s, compute_s = _pass_seconds(job, facts, s, cand.fp8)

    # ---- encoders (text and image): where they run and what happens after
    enc_b = sum(sizes.component_bytes(c.name) for c in encoders)
    enc_act = _encoder_activation(sizes) if encoders else 0
    enc_vram, enc_s = _encoder_costs(sizes, shape, facts, s, cand.encoder_device, cand.encoder_after)
    enc_keep_vram = enc_b if cand.encoder_after == "keep_gpu" else 0
    enc_keep_ram = enc_b if cand.encoder_after == "keep_cpu" else 0
    staged = cand.encoder_after == "release" and bool(encoders)

    # ---- loading: one checkpoint shard sits in host RAM beside the weights already loaded, for every
    # component loaded through host RAM (the resident tier loads the denoiser and VAE straight onto the
    # GPU; the device_map tier places the denoiser's blocks where they go, disk included)
    vae_via_ram = [sizes.components["vae"]] if "vae" in sizes.components and not resident else []
    enc_shard = shard_transient_bytes(encoders)
    rest_shard = shard_transient_bytes(vae_via_ram + others)
    den_shard = shard_transient_bytes(denoisers) if tier not in ("resident", "device_map") else 0

    # ---- decode
    decode_peak = _decode_peak(sizes, shape, cand.vae_tiling, cand.decode_chunk)
    decode_s = _decode_seconds(sizes, shape, facts, s, cand.vae_tiling)

    # ---- the denoiser's placement (device_map fills whatever room the other stages leave)
    vae_vram_always = vae_bytes if resident else 0
    needs = max(rt + enc_vram, rt + job.activation_bytes + job.latent_bytes,
                rt + vae_bytes + decode_peak + job.latent_bytes) + enc_keep_vram
    vram_room = int(vram_budget / (1 + s.vram_margin)) - needs
    ram_room = int(ram_budget / (1 + s.ram_margin)) - (r0 + vae_bytes + other_bytes + enc_keep_ram
                                                      + (0 if staged else enc_b)
                                                      + max(rest_shard, 0 if staged else enc_shard))
    ctx = _Ctx(denoisers, compute, storage, cand.fp8, compute_s, facts, s, vram_room, ram_room)
    place = _denoiser_placement(tier, ctx)
    if place.split is not None and place.split[0] == sum(c.num_blocks for c in denoisers):
        return None  # every block fits on the GPU: that is the resident tier without the hooks
    step_s = job.passes_per_step * (compute_s + place.exposed_s)
    ref_step_s = job.passes_per_step * ref_compute_s

    # ---- VRAM per stage
    always = place.resident_vram + vae_vram_always + enc_keep_vram + (other_bytes if resident else 0)
    stage_vram = {
        "encode": rt + enc_vram + always,
        "denoise": rt + job.activation_bytes + job.latent_bytes + max(place.weights_vram, place.resident_vram)
        + vae_vram_always + enc_keep_vram + (other_bytes if resident else 0),
        "decode": rt + vae_bytes + decode_peak + job.latent_bytes + (always - vae_vram_always),
    }

    # ---- host RAM per stage (loading counts: everything loaded into RAM sits there at once)
    vae_ram = 0 if resident else vae_bytes  # resident components load straight onto the GPU
    if staged:
        load_enc = r0 + enc_b + enc_shard
        load_rest = r0 + place.load_ram + vae_ram + other_bytes + max(rest_shard, den_shard)
    else:
        load_enc = load_rest = r0 + enc_b + place.load_ram + vae_ram + other_bytes \
            + max(enc_shard, rest_shard, den_shard)
    enc_running_ram = enc_b + enc_act if cand.encoder_device == "cpu" else \
        (enc_b if cand.encoder_device == "gpu_group" else 0)
    steady = r0 + vae_ram + other_bytes + enc_keep_ram + place.ram
    stage_ram = {
        "encode": int(max(load_enc, r0 + enc_running_ram + (0 if staged else place.load_ram + vae_ram))),
        "denoise": int(max(load_rest, steady + place.setup_ram)),
        "decode": int(steady + job.latent_bytes),
    }

    peak_vram = int(max(stage_vram.values()))
    peak_ram = int(max(stage_ram.values()))
    fits = peak_vram * (1 + s.vram_margin) <= vram_budget and peak_ram * (1 + s.ram_margin) <= ram_budget
    job_s = enc_s + shape.steps * step_s + decode_s + place.once_s
    score = job_s * (s.fp8_quality_penalty if cand.fp8 else 1.0)

    components = _component_plans(sizes, cand, tier, storage, place, enc_vram, vae_bytes)
    load_kwargs = {c.name: dict(place.load_kwargs) for c in denoisers} if place.load_kwargs else {}
    if resident and "vae" in sizes.components:
        load_kwargs["vae"] = {"device_map": "cuda"}
    notes = []
    if place.split:
        g, c, d = place.split
        notes.append(f"device_map: {g} blocks resident on the GPU, {c} in host RAM, {d} on disk; load the "
                     "denoiser with load_kwargs_for(plan, name) so the weights never all sit in RAM")
    if cand.fp8:
        notes.append("fp8 storage: weights are stored in float8_e4m3fn and upcast per layer; expect a small "
                     "quality change")
    ratio = max(denoisers, key=lambda c: c.params).pinned_ratio(storage)
    if tier in ("group_stream", "leaf_stream") and ratio > 1.05:
        notes.append(f"pinned host copies take {ratio:.2f}x the weights' bytes: torch rounds every pinned "
                     "tensor up to a power of two")
    big = max(denoisers, key=lambda c: c.params)
    breakdown = {"compute_s": compute_s, "exposed_transfer_s": place.exposed_s,
                 # the denoising stage with only the denoiser loaded (what bench/memory.py measures)
                 "denoiser_only_vram_bytes": rt + job.activation_bytes + job.latent_bytes
                 + max(place.weights_vram, place.resident_vram),
                 "denoiser_only_ram_bytes": r0 + place.ram + place.setup_ram,
                 "activation_bytes": job.activation_bytes, "tokens": job.tokens,
                 "block_transfer_s": place.block_transfer_s,
                 "block_compute_s": compute_s / max(1, big.num_blocks), "encode_s": enc_s, "decode_s": decode_s,
                 "once_s": place.once_s, "attention_scores_bytes": job.attention_scores_bytes,
                 "load_shard_bytes": max(enc_shard, rest_shard, den_shard)}
    name = _plan_name(tier, cand, place.split)
    return MemoryPlan(
        name=name, tier=tier, fp8=cand.fp8, components=components, vae_tiling=cand.vae_tiling,
        vae_slicing=shape.batch > 1, decode_chunk_size=cand.decode_chunk,
        attention_backend=_attention_backend(facts),
        text_encode_device="cpu" if cand.encoder_device == "cpu" else "cuda",
        staged_load=staged, load_kwargs=load_kwargs, stage_vram={k: int(v) for k, v in stage_vram.items()},
        stage_ram=stage_ram, predicted_peak_vram_bytes=peak_vram, predicted_peak_ram_bytes=peak_ram,
        seconds_per_step=step_s, reference_seconds_per_step=ref_step_s, job_seconds=job_s, score=score,
        fits=fits, vram_budget_bytes=int(vram_budget), ram_budget_bytes=int(ram_budget), model=sizes.name,
        shape=shape, device=facts.name, notes=notes, assumptions=_assumptions(facts, settings),
        breakdown=breakdown, device_note=_device_note(facts, sizes, job))


def _device_note(facts: DeviceFacts, sizes: ModelSizes, job: _Job) -> str:
    """Says what a pre-Ampere GPU changes: the compute dtype and the attention matrix it must hold."""
    if has_bf16_flash(facts):
        return ""
    major, minor = facts.compute_capability or (0, 0)
    dtype = {"float16": "fp16", "float32": "fp32", "bfloat16": "bf16"}.get(sizes.compute_dtype, sizes.compute_dtype)
    return (f"this GPU (sm_{major}{minor}) has no bf16/flash attention: {dtype} compute, attention needs "
            f"{job.attention_scores_bytes / GB:.1f} GB (the N x N scores of every head, counted in the denoise "
            f"stage)")


def _plan_name(tier: str, cand: _Candidate, split: tuple[int, int, int] | None) -> str:
    """Unique, readable: tier, fp8, block split, VAE decoding, encoder handling."""
    parts = [tier + (f"({split[0]}/{split[1]}/{split[2]})" if split else "")]
    if cand.fp8:
        parts.append("fp8")
    if cand.vae_tiling:
        parts.append("tiled")
    if cand.decode_chunk:
        parts.append(f"chunk{cand.decode_chunk}")
    if cand.encoder_device != "none":
        encoder = {"gpu": "te-gpu", "gpu_group": "te-offload", "cpu": "te-cpu"}[cand.encoder_device]
        parts.append(encoder + {"keep_gpu": "-resident", "keep_cpu": "", "release": "-release"}[cand.encoder_after])
    return "+".join(parts)


def _component_plans(sizes: ModelSizes, cand: _Candidate, tier: str, storage: str, place: _Placement,
                     enc_vram: int, vae_bytes: int) -> dict[str, ComponentPlan]:
    plans: dict[str, ComponentPlan] = {}
    for comp in sizes.components.values():
        dtype = sizes.dtype_of(comp.name)
        if comp.role == "denoiser":
            placement = {"resident": "gpu", "model_offload": "model_offload", "group_sync": "group_offload",
                         "sequential": "sequential_offload", "device_map": "device_map"}.get(
                tier, "leaf_offload" if tier.startswith("leaf") else "group_offload")
            stream = "stream" in tier
            plans[comp.name] = ComponentPlan(
                comp.name, comp.role, placement, dtype, storage_dtype=storage if cand.fp8 else None,
                use_stream=stream, record_stream=stream, low_cpu_mem_usage=tier.endswith("lowmem"),
                num_blocks_per_group=1 if placement == "group_offload" else None, block_split=place.split,
                vram_bytes=max(place.weights_vram, place.resident_vram), ram_bytes=place.ram)
        elif comp.role in ("text_encoder", "image_encoder"):
            placement = {"gpu": "gpu", "gpu_group": "leaf_offload", "cpu": "cpu"}[cand.encoder_device]
            plans[comp.name] = ComponentPlan(
                comp.name, comp.role, placement, dtype, after_use=cand.encoder_after,
                vram_bytes=enc_vram if placement != "cpu" else 0,
                ram_bytes=sizes.component_bytes(comp.name) if cand.encoder_after == "keep_cpu" else 0)
        elif comp.role == "vae":
            plans[comp.name] = ComponentPlan(comp.name, comp.role, "gpu" if tier == "resident" else "model_offload",
                                             dtype, tiled=cand.vae_tiling, vram_bytes=vae_bytes,
                                             ram_bytes=0 if tier == "resident" else vae_bytes)
        else:
            plans[comp.name] = ComponentPlan(comp.name, comp.role, "gpu" if tier == "resident" else "cpu", dtype,
                                             ram_bytes=sizes.component_bytes(comp.name))
    return plans



def _assumptions(facts: DeviceFacts, s: PlannerSettings) -> dict[str, Any]:
    return {
        "gpu_tflops": facts.gpu_tflops, "compute_efficiency": s.compute_efficiency,
        "h2d_pinned_gbps": facts.h2d_pinned_gbps, "h2d_pageable_gbps": facts.h2d_pageable_gbps,
        "d2h_gbps": facts.d2h_gbps, "host_copy_gbps": facts.host_copy_gbps, "disk_gbps": facts.disk_gbps,
        "cpu_tflops": facts.cpu_tflops, "bandwidth_measured": facts.bandwidth_measured,
        "vram_margin": s.vram_margin, "ram_margin": s.ram_margin,
        "runtime_vram_gb": s.runtime_vram_bytes / GB, "runtime_ram_gb": s.runtime_ram_bytes / GB,
        "fp8_quality_penalty": s.fp8_quality_penalty,
    }


# ================================================================================ CPU
def _cpu_plan(sizes: ModelSizes, shape: JobShape, facts: DeviceFacts, settings: PlannerSettings,
              ram_budget: int) -> MemoryPlan:
    """No CUDA: everything runs on the CPU; activations and the decode live in host RAM."""
    job = _job_numbers(sizes, shape)
    cpu = facts.cpu_tflops * 1e12
    step = job.passes_per_step * job.flops_per_pass / cpu
    weights = sizes.total_bytes
    decode = _decode_peak(sizes, shape, False, None)
    r0 = settings.cpu_runtime_ram_bytes
    load = r0 + weights + shard_transient_bytes(list(sizes.components.values()))  # from_pretrained reads a shard
    stage_ram = {"encode": max(load, r0 + weights + _encoder_activation(sizes)),
                 "denoise": r0 + weights + job.activation_bytes + job.latent_bytes,
                 "decode": r0 + weights + decode}
    comps = {c.name: ComponentPlan(c.name, c.role, "cpu", sizes.dtype_of(c.name), ram_bytes=sizes.component_bytes(c.name))
             for c in sizes.components.values()}
    peak_ram = int(max(stage_ram.values()))
    return MemoryPlan(
        name="cpu", tier="cpu", fp8=False, components=comps, vae_tiling=False, vae_slicing=False,
        decode_chunk_size=None, attention_backend="native", text_encode_device="cpu", staged_load=False,
        load_kwargs={}, stage_vram=dict.fromkeys(STAGES, 0), stage_ram={k: int(v) for k, v in stage_ram.items()},
        predicted_peak_vram_bytes=0, predicted_peak_ram_bytes=peak_ram, seconds_per_step=step,
        reference_seconds_per_step=step, job_seconds=shape.steps * step, score=shape.steps * step,
        fits=peak_ram * (1 + settings.ram_margin) <= ram_budget, vram_budget_bytes=0, ram_budget_bytes=ram_budget,
        model=sizes.name, shape=shape, device=facts.name,
        notes=["no CUDA device: the whole pipeline runs on the CPU (slow; fine for tiny models)"],
        assumptions={**_assumptions(facts, settings), "runtime_ram_gb": r0 / GB},
        breakdown={"compute_s": step / job.passes_per_step})


# ============================================================================ public API
def _budgets(facts: DeviceFacts, budget_gb: float | None, ram_gb: float | None) -> tuple[int, int]:
    vram = facts.free_vram if facts.has_cuda else 0
    if budget_gb is not None:
        if budget_gb <= 0:
            raise KinetographError(f"The VRAM budget must be positive (got {budget_gb} GB).")
        vram = min(vram, int(budget_gb * GB)) if facts.has_cuda else int(budget_gb * GB)
    ram = int(ram_gb * GB) if ram_gb is not None else facts.free_ram
    if ram_gb is not None and ram_gb <= 0:
        raise KinetographError(f"The host RAM budget must be positive (got {ram_gb} GB).")
    return vram, ram


def _forced_tier(mode: str | None) -> str | None:
    """The tier a user's mode names (None for automatic)."""
    if mode is None:
        return None
    key = mode.strip().lower().replace("-", "_")
    tier = MODE_ALIASES.get(key, key)
    if tier is not None and tier not in TIERS:
        raise KinetographError(f"Unknown memory mode {mode!r}. Choose one of: auto, {', '.join(TIERS)}.")
    return tier


def _tiers_for(mode: str | None) -> list[str]:
    """A forced mode starts the ladder at its tier; cheaper tiers stay available for recovery."""
    forced = _forced_tier(mode)
    tiers = list(TIERS)
    return tiers[tiers.index(forced):] if forced else tiers


def evaluate_all(sizes: ModelSizes, shape: JobShape, facts: DeviceFacts, budget_gb: float | None = None,
                 ram_gb: float | None = None, mode: str | None = None,
                 settings: PlannerSettings | None = None) -> list[MemoryPlan]:
    """Every candidate plan with its predictions, fitting or not, best score first."""
    settings = settings or PlannerSettings()
    _check_shape(shape)
    vram_budget, ram_budget = _budgets(facts, budget_gb, ram_gb)
    sizes = sizes_for_device(sizes, facts)  # pre-Ampere: fp16 compute instead of bf16
    job = _job_numbers(sizes, shape, flash=has_bf16_flash(facts))
    plans = [p for c in _candidates(sizes, _tiers_for(mode))
             if (p := _evaluate(sizes, shape, facts, settings, job, c, vram_budget, ram_budget)) is not None]
    plans.sort(key=lambda p: (p.score, p.predicted_peak_vram_bytes))
    return plans


def plan_ladder(sizes: ModelSizes, shape: JobShape, facts: DeviceFacts | None = None,
                budget_gb: float | None = None, ram_gb: float | None = None, mode: str | None = None,
                settings: PlannerSettings | None = None, arch: Any = None) -> list[MemoryPlan]:
    """The fitting plans from fastest to cheapest; each uses strictly less predicted VRAM than the last.

    ``arch`` may be a ``DenoiserArch`` overriding the one in ``sizes`` (anything else is ignored,
    so ``arch=pipe`` is harmless). Raises KinetographError when nothing fits, saying what would.
    """
    facts = facts or DeviceFacts.detect()
    if isinstance(arch, DenoiserArch):
        sizes = replace(sizes, denoiser=arch)
    settings = settings or PlannerSettings()
    if not facts.has_cuda and budget_gb is None:
        _, ram_budget = _budgets(facts, None, ram_gb)
        plan = _cpu_plan(sizes, shape, facts, settings, ram_budget)
        if not plan.fits:
            raise KinetographError(
                f"{sizes.name} at {shape.describe()} needs about {plan.predicted_peak_ram_gb:.1f} GB of host RAM "
                f"on the CPU, but {ram_budget / GB:.1f} GB is free. Use a CUDA GPU, a smaller model, or fewer "
                f"frames / a lower resolution (or pass a VRAM budget to plan for a GPU of that size).")
        return [plan]
    if not facts.has_cuda:
        facts = DeviceFacts.gpu(budget_gb or 0, (ram_gb or facts.free_ram / GB), name=f"hypothetical "
                                f"{budget_gb:g} GB CUDA GPU (this machine has none)")
    plans = evaluate_all(sizes, shape, facts, budget_gb, ram_gb, mode, settings)
    fitting = [p for p in plans if p.fits]
    if not fitting:
        raise KinetographError(_nothing_fits_message(sizes, shape, facts, plans, budget_gb, ram_gb, mode,
                                                     settings))
    ladder = [fitting[0]]
    for plan in fitting[1:]:
        if plan.predicted_peak_vram_bytes < ladder[-1].predicted_peak_vram_bytes * 0.99:
            ladder.append(plan)
    _explain_rejections(ladder[0], plans)
    if budget_gb is not None:
        for plan in ladder:
            plan.budget_from_user = True
    forced = _forced_tier(mode)
    if forced and ladder[0].tier != forced:
        ladder[0].notes.append(f"the requested memory mode {mode!r} does not fit; using the next cheaper tier "
                               f"that does ({ladder[0].tier})")
    return ladder


def plan_memory(sizes: ModelSizes, shape: JobShape, facts: DeviceFacts | None = None,
                budget_gb: float | None = None, ram_gb: float | None = None, mode: str | None = None,
                settings: PlannerSettings | None = None, arch: Any = None) -> MemoryPlan:
    """The fastest plan that fits both the VRAM and the host-RAM budget."""
    return plan_ladder(sizes, shape, facts, budget_gb, ram_gb, mode, settings, arch)[0]


def plan_for_profile(profile_name: str, shape: JobShape, device_facts: DeviceFacts | None = None,
                     budget_gb: float | None = None, ram_gb: float | None = None, mode: str | None = None,
                     settings: PlannerSettings | None = None) -> MemoryPlan:
    """Plan a registry preset's model (profile name or hub repo id) without any weights."""
    return plan_memory(profile_sizes(profile_name), shape, device_facts, budget_gb, ram_gb, mode, settings)


def plan_for_folder(path: str | Path, shape: JobShape, device_facts: DeviceFacts | None = None,
                    budget_gb: float | None = None, ram_gb: float | None = None, mode: str | None = None,
                    settings: PlannerSettings | None = None) -> MemoryPlan:
    """Plan a local diffusers folder, measured from its safetensors headers (no weight loaded)."""
    return plan_memory(measure_folder(path), shape, device_facts, budget_gb, ram_gb, mode, settings)


# ============================================================================ messages
def _check_shape(shape: JobShape) -> None:
    if shape.frames < 1 or shape.height < 8 or shape.width < 8 or shape.steps < 1 or shape.batch < 1:
        raise KinetographError(f"Cannot plan for {shape.describe()}: frames, size, steps and batch must be "
                               f"positive.")


def _explain_rejections(chosen: MemoryPlan, plans: list[MemoryPlan]) -> None:
    """Record, on the chosen plan, why the faster tiers were not chosen (one line per tier)."""
    seen: set[tuple[str, bool]] = {(chosen.tier, chosen.fp8)}
    for plan in plans:
        key = (plan.tier, plan.fp8)
        if plan.score >= chosen.score or key in seen:
            continue
        seen.add(key)
        best = min((p for p in plans if (p.tier, p.fp8) == key),
                   key=lambda p: (p.predicted_peak_vram_bytes, p.predicted_peak_ram_bytes))
        over = []
        if not _vram_ok(best):
            over.append(f"needs {best.predicted_peak_vram_gb:.1f} GB VRAM (+margin) of {best.vram_budget_bytes / GB:.1f}")
        if not _ram_ok(best):
            over.append(f"needs {best.predicted_peak_ram_gb:.1f} GB host RAM (+margin) of "
                        f"{best.ram_budget_bytes / GB:.1f}")
        if over:
            label = plan.tier + ("+fp8" if plan.fp8 else "")
            chosen.rejected.append(f"{label} ({plan.seconds_per_step:.2f} s/step): " + "; ".join(over))


def _vram_ok(p: MemoryPlan) -> bool:
    margin = p.assumptions.get("vram_margin", 0.1)
    return p.predicted_peak_vram_bytes * (1 + margin) <= p.vram_budget_bytes


def _ram_ok(p: MemoryPlan) -> bool:
    margin = p.assumptions.get("ram_margin", 0.05)
    return p.predicted_peak_ram_bytes * (1 + margin) <= p.ram_budget_bytes


def _nothing_fits_message(sizes: ModelSizes, shape: JobShape, facts: DeviceFacts, plans: list[MemoryPlan],
                          budget_gb: float | None, ram_gb: float | None, mode: str | None,
                          settings: PlannerSettings) -> str:
    vram_budget, ram_budget = plans[0].vram_budget_bytes, plans[0].ram_budget_bytes
    ram_ok = [p for p in plans if _ram_ok(p)]
    parts = [f"No memory plan fits {sizes.name} at {shape.describe()} into "
             f"{vram_budget / GB:.1f} GB of VRAM and {ram_budget / GB:.1f} GB of host RAM."]
    if ram_ok:
        cheapest = min(ram_ok, key=lambda p: p.predicted_peak_vram_bytes)
        need = cheapest.predicted_peak_vram_bytes * (1 + settings.vram_margin) / GB
        parts.append(f"The cheapest plan ({cheapest.name}) needs {need:.1f} GB of VRAM: "
                     + ("raise --budget-gb to at least " + f"{math.ceil(need * 10) / 10:g}"
                        if budget_gb is not None and need * GB <= facts.free_vram
                        else "free GPU memory or use a bigger GPU") + ".")
    else:
        cheapest = min(plans, key=lambda p: p.predicted_peak_ram_bytes)
        need = cheapest.predicted_peak_ram_bytes * (1 + settings.ram_margin) / GB
        parts.append(f"Even the plan needing the least host RAM ({cheapest.name}) needs {need:.1f} GB of free RAM; "
                     f"close other programs or add RAM/swap" + (" (or raise --ram-gb)" if ram_gb is not None else "")
                     + ".")
    smaller = _smaller_shape_that_fits(sizes, shape, facts, budget_gb, ram_gb, mode, settings)
    if smaller is not None:
        parts.append(f"Or reduce the job: {smaller.describe()} fits.")
    if mode:
        parts.append(f"You forced the memory mode {mode!r}; 'auto' may find a cheaper plan.")
    return " ".join(parts)


def _smaller_shape_that_fits(sizes: ModelSizes, shape: JobShape, facts: DeviceFacts, budget_gb: float | None,
                             ram_gb: float | None, mode: str | None, settings: PlannerSettings) -> JobShape | None:
    vae = sizes.vae
    rule = vae.temporal_ratio if vae and vae.temporal_ratio > 1 else 1
    for frames_scale, size_scale in ((0.5, 1.0), (1.0, 0.75), (0.5, 0.75), (0.25, 0.5)):
        frames = max(1, int((shape.frames - 1) * frames_scale) // rule * rule + 1) if rule > 1 \
            else max(1, int(shape.frames * frames_scale))
        mult = 32
        h = max(mult, int(shape.height * size_scale) // mult * mult)
        w = max(mult, int(shape.width * size_scale) // mult * mult)
        candidate = replace(shape, frames=frames, height=h, width=w)
        if candidate == shape:
            continue
        if any(p.fits for p in evaluate_all(sizes, candidate, facts, budget_gb, ram_gb, mode, settings)):
            return candidate
    return None
