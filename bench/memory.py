#!/usr/bin/env python
"""Benchmark the memory planner on real-size model configurations with random weights.

Speed and memory do not depend on weight values, so each model is built from its real config
(``from_config`` under ``accelerate.init_empty_weights``) and materialised with random bf16
weights. For a fixed job (Wan: 81 frames at 480x832; LTX: 121 frames at 512x768) it times
transformer-only denoising steps (CUDA events) and records ``torch.cuda.max_memory_allocated``
and the process's peak RSS for:

* all on the GPU (where it fits) — the reference every ratio is measured against, same run;
* diffusers' model CPU offload (accelerate ``cpu_offload_with_hook``, as ``enable_model_cpu_offload``);
* diffusers' sequential CPU offload (accelerate ``cpu_offload``, as ``enable_sequential_cpu_offload``);
* the planner's plan under VRAM budgets of 24, 16, 12 and 8 GB (and 4 GB for Wan 1.3B), applied
  with ``apply_plan`` and run under ``StageRunner`` with the CUDA allocator capped at the budget,
  so a plan that does not fit runs out of memory and steps down the ladder, as in a real job;
* VAE decoding, tiled and untiled (``--skip-vae`` to leave out).

Every row carries the planner's prediction beside the measurement. Results go to
``bench/results/memory-<gpu>-<date>.json``. Without CUDA the script prints the planner's
predictions for the same matrix (for ``--gpu``, default an H100) and writes them marked as
predictions. ``--calibrate`` re-derives the activation coefficients on the CPU by running the real
modules on FakeTensors with a live-storage tracker and compares them with the planner's formula.

    python bench/memory.py                        # everything this machine can do
    python bench/memory.py --models wan-14b --steps 2
    python bench/memory.py --calibrate
    python bench/memory.py --gpu-check [--dry-run]   # issue 16: thresholds, pass/fail, exit status
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import re
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from pipelines.errors import KinetographError  # noqa: E402
from pipelines.memory import DeviceFacts, JobShape, StageRunner, apply_plan, plan_ladder, profile_sizes  # noqa: E402
from pipelines.memory.planner import evaluate_all  # noqa: E402

GB = 1e9
DEVICE = "cuda"  # the accelerator every measured run uses (a smoke test may point it elsewhere)

# Real configs (huggingface/diffusers scripts/convert_wan_to_diffusers.py, convert_ltx_to_diffusers.py).
_WAN_13B = dict(added_kv_proj_dim=None, attention_head_dim=128, cross_attn_norm=True, eps=1e-6, ffn_dim=8960,
                freq_dim=256, in_channels=16, num_attention_heads=12, num_layers=30, out_channels=16,
                patch_size=[1, 2, 2], qk_norm="rms_norm_across_heads", text_dim=4096)
_WAN_14B = dict(_WAN_13B, ffn_dim=13824, num_attention_heads=40, num_layers=40)
_LTX_090 = dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
                attention_head_dim=64, cross_attention_dim=2048, num_layers=28, activation_fn="gelu-approximate",
                qk_norm="rms_norm_across_heads", norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096,
                attention_bias=True, attention_out_bias=True)
_LTX_VAE_090 = dict(
    in_channels=3, out_channels=3, latent_channels=128, block_out_channels=(128, 256, 512, 512),
    down_block_types=("LTXVideoDownBlock3D",) * 4, decoder_block_out_channels=(128, 256, 512, 512),
    layers_per_block=(4, 3, 3, 3, 4), decoder_layers_per_block=(4, 3, 3, 3, 4),
    spatio_temporal_scaling=(True, True, True, False), decoder_spatio_temporal_scaling=(True, True, True, False),
    decoder_inject_noise=(False,) * 5, downsample_type=("conv",) * 4, upsample_residual=(False,) * 4,
    upsample_factor=(1,) * 4, patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6, scaling_factor=1.0,
    encoder_causal=True, decoder_causal=False, timestep_conditioning=False)

MODELS: dict[str, dict[str, Any]] = {
    "wan-1.3b": dict(profile="wan2.1-t2v-1.3b", cls="WanTransformer3DModel", config=_WAN_13B,
                     shape=JobShape(81, 480, 832, steps=30), vae_cls="AutoencoderKLWan", vae_config={},
                     budgets=(24, 16, 12, 8, 4)),
    "wan-14b": dict(profile="wan2.1-t2v-14b", cls="WanTransformer3DModel", config=_WAN_14B,
                    shape=JobShape(81, 480, 832, steps=30), vae_cls="AutoencoderKLWan", vae_config={},
                    budgets=(24, 16, 12, 8)),
    "ltx-0.9": dict(profile="ltx-video-0.9", cls="LTXVideoTransformer3DModel", config=_LTX_090,
                    shape=JobShape(121, 512, 768, steps=40), vae_cls="AutoencoderKLLTXVideo",
                    vae_config=_LTX_VAE_090, budgets=(24, 16, 12, 8)),
}
TARGETS = {  # issue 3: peak VRAM and slowdown against all-on-GPU for the planner's plan
    ("wan-14b", 8): (8.0, 1.25),
    ("wan-1.3b", 4): (4.0, 1.10),
}


# ============================================================================ helpers
class PeakRSS:
    """Samples the process's resident set (and its anonymous part) in a thread; keeps the peaks."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = self.peak_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.peak = max(self.peak, self._proc.memory_info().rss)
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_anon = max(self.peak_anon, int(line.split()[1]) * 1024)
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._sample()
        self.start = self.peak
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def gpu_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def free_cuda() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def build_transformer(spec: dict[str, Any], device: str):
    """Real-size model from its config: built on meta, materialised with random bf16 on ``device``.

    Random values are drawn on the GPU (fast) one tensor at a time and copied to the CPU when
    ``device`` is "cpu". Modules diffusers keeps in fp32 when loading (``_keep_in_fp32_modules``)
    stay in fp32 here too, so the bytes match a real load. ``init_empty_weights`` puts only the
    parameters on meta; buffers (rotary tables) are computed for real by the constructor.
    """
    import diffusers
    import torch
    from accelerate import init_empty_weights

    cls = getattr(diffusers, spec["cls"])
    with init_empty_weights():
        model = cls.from_config(spec["config"])
    keep = tuple(getattr(cls, "_keep_in_fp32_modules", None) or ())
    with torch.no_grad():
        for name, module in model.named_modules():
            dtype = torch.float32 if any(k in name.split(".") for k in keep) else torch.bfloat16
            for pname, param in list(module._parameters.items()):
                if param is None:
                    continue
                values = torch.empty(param.shape, dtype=dtype, device=DEVICE).normal_(0.0, 0.02)
                module._parameters[pname] = torch.nn.Parameter(values.to(device), requires_grad=False)
                del values
    model.to(device)
    model.eval()
    return model


def transformer_inputs(key: str, shape: JobShape, sizes: Any, device: str) -> dict[str, Any]:
    import torch

    vae = sizes.vae
    lf = (shape.frames - 1) // vae.temporal_ratio + 1
    lh, lw = shape.height // vae.spatial_ratio, shape.width // vae.spatial_ratio
    bf = torch.bfloat16
    if key.startswith("wan"):
        return dict(hidden_states=torch.randn(1, 16, lf, lh, lw, dtype=bf, device=device),
                    timestep=torch.tensor([500.0], device=device),
                    encoder_hidden_states=torch.randn(1, 512, 4096, dtype=bf, device=device), return_dict=False)
    batch = 2 if shape.cfg else 1  # LTX batches CFG
    return dict(hidden_states=torch.randn(batch, lf * lh * lw, 128, dtype=bf, device=device),
                encoder_hidden_states=torch.randn(batch, 128, 4096, dtype=bf, device=device),
                timestep=torch.tensor([500.0] * batch, device=device),
                encoder_attention_mask=torch.ones(batch, 128, device=device), num_frames=lf, height=lh, width=lw,
                return_dict=False)


def time_steps(model: Any, inputs: dict[str, Any], passes: int, steps: int) -> dict[str, float]:
    """Seconds per denoising step (``passes`` forwards each), CUDA events; the first step is warm-up."""
    import torch

    times = []
    with torch.inference_mode():
        for _ in range(1 + steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(passes):
                model(**inputs)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
    return {"warmup_s": times[0], "seconds_per_step": sum(times[1:]) / max(1, len(times) - 1)}


# ============================================================================ GPU runs
def bench_model_gpu(key: str, args: argparse.Namespace, facts: DeviceFacts) -> dict[str, Any]:
    import torch
    from accelerate import cpu_offload, cpu_offload_with_hook
    from accelerate.hooks import remove_hook_from_module

    spec = MODELS[key]
    sizes = profile_sizes(spec["profile"])
    shape = replace(spec["shape"], steps=args.steps)
    job = evaluate_all(sizes, shape, facts)[0]
    passes = 2 if (shape.cfg and not sizes.denoiser.cfg_batched) else 1
    rows: list[dict[str, Any]] = []
    print(f"\n== {key}: {shape.describe()}  ({sizes.name}, {passes} pass(es) per step)", flush=True)

    state = {"model": build_transformer(spec, "cpu"), "pristine": True}
    inputs = transformer_inputs(key, shape, sizes, DEVICE)

    def fresh():
        if not state["pristine"]:
            state["model"] = None
            gc.collect()
            state["model"] = build_transformer(spec, "cpu")
            state["pristine"] = True
        return state["model"]

    def measure(label: str, kind: str, setup, teardown, predicted: Any = None, budget: float | None = None,
                destructive: bool = False) -> dict[str, Any]:
        print(f"  running {label} ({predicted.name if predicted else '-'})", flush=True)
        model = fresh()
        free_cuda()
        row: dict[str, Any] = {"model": key, "run": label, "kind": kind, "budget_gb": budget}
        try:
            with PeakRSS() as rss:
                extra = setup(model)
                extra = extra if isinstance(extra, dict) else {}
                timing = extra.pop("timing", None) or time_steps(model, inputs, passes, args.steps)
            row.update(timing)
            row.update(extra)
            row["measured_peak_vram_gb"] = torch.cuda.max_memory_allocated() / GB
            # the random weights already sit in host RAM when a run starts (a plain, non device_map load)
            row["rss_at_start_gb"] = rss.start / GB
            row["measured_peak_rss_gb"] = rss.peak / GB
            row["measured_peak_anon_gb"] = rss.peak_anon / GB
        except torch.OutOfMemoryError as exc:
            row.update(error=f"out of memory: {str(exc).splitlines()[0][:200]}")
        finally:
            try:
                teardown(model)
            except Exception as exc:  # a failed teardown only costs a rebuild
                row.setdefault("notes", []).append(f"teardown: {exc}")
                destructive = True
            if destructive:
                state["pristine"] = False
            torch.cuda.set_per_process_memory_fraction(1.0)
            free_cuda()
        if predicted is not None:
            row["plan"] = predicted.name
            row["predicted_peak_vram_gb"] = predicted.breakdown["denoiser_only_vram_bytes"] / GB
            row["predicted_peak_ram_gb"] = predicted.breakdown["denoiser_only_ram_bytes"] / GB
            row["predicted_seconds_per_step"] = predicted.seconds_per_step
        rows.append(row)
        return row

    def baseline_plan(tier: str):
        return next((p for p in evaluate_all(sizes, shape, facts, mode=tier) if p.tier == tier and not p.fp8), None)

    # -- baselines
    fits = baseline_plan("resident").breakdown["denoiser_only_vram_bytes"] < facts.free_vram * 0.95
    if fits:
        measure("all on GPU", "baseline", lambda m: m.to(DEVICE), lambda m: m.to("cpu"), baseline_plan("resident"))
    else:
        rows.append({"model": key, "run": "all on GPU", "kind": "baseline", "skipped": "does not fit this GPU"})

    hooks: dict[str, Any] = {}

    def model_offload(m):
        _, hooks["h"] = cpu_offload_with_hook(m, torch.device(DEVICE))

    def undo_model_offload(m):
        hooks["h"].offload()
        remove_hook_from_module(m, recurse=True)

    measure("diffusers model CPU offload", "baseline", model_offload, undo_model_offload,
            baseline_plan("model_offload"))
    if not args.skip_sequential:
        measure("diffusers sequential offload", "baseline",
                lambda m: cpu_offload(m, torch.device(DEVICE)), lambda m: remove_hook_from_module(m, recurse=True),
                baseline_plan("sequential"))

    # -- the planner's plans under budgets (each budget enforced on the CUDA allocator)
    budgets = args.budgets or spec["budgets"]
    done: dict[str, dict[str, Any]] = {}
    order = []
    for budget in budgets:
        try:
            ladder = plan_ladder(sizes, shape, facts, budget_gb=budget, ram_gb=args.ram_gb)
        except KinetographError as exc:
            rows.append({"model": key, "run": f"plan @ {budget} GB", "kind": "plan", "budget_gb": budget,
                         "error": str(exc)})
            continue
        order.append((budget, ladder))
    order.sort(key=lambda item: (item[1][0].fp8 or item[1][0].tier == "device_map", -item[0]))
    for budget, ladder in order:
        plan = ladder[0]
        placement = plan.name.split("+te-")[0].replace("+tiled", "")  # what a transformer-only run sees
        if placement in done:  # same placement under a larger budget: same measurement
            row = dict(done[placement], budget_gb=budget, run=f"plan @ {budget} GB", reused=True)
            rows.append(row)
            continue
        row = measure(f"plan @ {budget} GB", "plan", _plan_setup(ladder, facts, budget, inputs, passes, args),
                      _plan_teardown, plan, budget, destructive=plan.fp8 or plan.tier == "device_map")
        done[placement] = row

    reference = next((r for r in rows if r["run"] == "all on GPU" and "seconds_per_step" in r), None)
    for row in rows:
        if reference and "seconds_per_step" in row:
            row["ratio_vs_all_on_gpu"] = row["seconds_per_step"] / reference["seconds_per_step"]
        if "predicted_peak_vram_gb" in row and row.get("measured_peak_vram_gb"):
            row["vram_prediction_error"] = row["predicted_peak_vram_gb"] / row["measured_peak_vram_gb"] - 1
        if args.ram_gb and "measured_peak_rss_gb" in row:  # the planner was told this much RAM is free
            row["ram_within_told"] = row["measured_peak_rss_gb"] <= args.ram_gb
        target = TARGETS.get((key, row.get("budget_gb")))
        if target and row["kind"] == "plan" and "measured_peak_vram_gb" in row:
            row["target"] = {"max_vram_gb": target[0], "max_ratio": target[1],
                             "met": row["measured_peak_vram_gb"] <= target[0]
                             and row.get("ratio_vs_all_on_gpu", 99) <= target[1]}
    if not args.skip_vae:
        rows += bench_vae_gpu(key, spec, sizes, shape)
    print(f"-- {key} results (VRAM = torch.cuda.max_memory_allocated; ratios against all on GPU, same run)")
    for row in rows:
        _print_row(row)
    state["model"] = None
    gc.collect()
    return {"model": key, "profile": sizes.name, "shape": asdict(shape), "passes_per_step": passes,
            "predicted_tokens": job.breakdown.get("tokens"), "rows": rows}


def _plan_setup(ladder, facts, budget, inputs, passes, args):
    """Apply the plan as a job would (allocator capped at the budget) and time it under StageRunner."""
    import torch

    def setup(model):
        pipe = SimpleNamespace(components={"transformer": model}, transformer=model)
        if ladder[0].tier == "device_map":
            _dispatch_device_map(model, ladder[0])
        torch.cuda.set_per_process_memory_fraction(min(1.0, budget * GB / facts.total_vram))
        runner = StageRunner(ladder, apply=lambda plan: apply_plan(pipe, plan, facts))
        runner.start()
        timing = runner.run("denoise", lambda: time_steps(model, inputs, passes, args.steps))
        return {"timing": timing, "attempts": runner.attempts, "final_plan": runner.plan.name,
                "recovery_notes": runner.notes}

    return setup


def _plan_teardown(model) -> None:
    from pipelines.memory.apply import _remove_hooks_from

    _remove_hooks_from(model)
    model.to("cpu")


def _dispatch_device_map(model, plan) -> None:
    import tempfile

    from accelerate import dispatch_model

    from pipelines.memory.apply import block_device_map

    kw = plan.load_kwargs.get("transformer", {})
    device_map = block_device_map(type(model), dict(model.config), kw["gpu_blocks"], kw["cpu_blocks"])
    dispatch_model(model, device_map=device_map, offload_dir=tempfile.mkdtemp(prefix="kinetograph-offload-"))


def bench_vae_gpu(key: str, spec: dict[str, Any], sizes: Any, shape: JobShape) -> list[dict[str, Any]]:
    """Decode random latents with the real-size VAE, untiled and tiled; planner prediction beside."""
    import diffusers
    import torch

    from pipelines.memory.planner import _decode_peak

    dtype_name = sizes.dtype_of("vae")
    vae_cls = getattr(diffusers, spec["vae_cls"])
    vae = vae_cls.from_config(spec["vae_config"]) if spec["vae_config"] else vae_cls()
    vae = vae.to(device=DEVICE, dtype=getattr(torch, dtype_name)).eval()
    v = sizes.vae
    lf = (shape.frames - 1) // v.temporal_ratio + 1
    z = torch.randn(1, v.latent_channels, lf, shape.height // v.spatial_ratio, shape.width // v.spatial_ratio,
                    device=DEVICE, dtype=vae.dtype)
    rows = []
    for tiled in (False, True):
        if tiled:
            vae.enable_tiling()
            if hasattr(vae, "use_framewise_decoding"):
                vae.use_framewise_decoding = True
        free_cuda()
        base = torch.cuda.memory_allocated()
        row: dict[str, Any] = {"model": key, "run": f"vae decode {'tiled' if tiled else 'untiled'}", "kind": "vae"}
        try:
            start = time.perf_counter()
            with torch.inference_mode():
                vae.decode(z, return_dict=False)
            torch.cuda.synchronize()
            row["seconds"] = time.perf_counter() - start
            row["measured_peak_vram_gb"] = (torch.cuda.max_memory_allocated() - base) / GB
        except torch.OutOfMemoryError as exc:
            row["error"] = f"out of memory: {str(exc).splitlines()[0][:200]}"
        predicted = _decode_peak(sizes, shape, tiled, None)
        row["predicted_peak_vram_gb"] = predicted / GB
        if row.get("measured_peak_vram_gb"):
            row["vram_prediction_error"] = row["predicted_peak_vram_gb"] / row["measured_peak_vram_gb"] - 1
        row["dtype"] = dtype_name
        rows.append(row)
    del vae, z
    free_cuda()
    return rows


# ============================================================================ CPU: predictions
def predict_model(key: str, args: argparse.Namespace, facts: DeviceFacts) -> dict[str, Any]:
    spec = MODELS[key]
    sizes = profile_sizes(spec["profile"])
    shape = replace(spec["shape"], steps=args.steps)
    rows: list[dict[str, Any]] = []
    print(f"\n== {key}: {shape.describe()} on {facts.name} (PREDICTED by the planner; no CUDA here)")
    plans = evaluate_all(sizes, shape, facts)
    reference = next(p for p in plans if p.tier == "resident" and not p.fp8)
    for label, tier in (("all on GPU", "resident"), ("diffusers model CPU offload", "model_offload"),
                        ("diffusers sequential offload", "sequential")):
        plan = next(p for p in plans if p.tier == tier and not p.fp8)
        rows.append(_prediction_row(key, label, "baseline", None, plan, reference))
    for budget in args.budgets or spec["budgets"]:
        try:
            plan = plan_ladder(sizes, shape, facts, budget_gb=budget, ram_gb=args.ram_gb)[0]
        except KinetographError as exc:
            rows.append({"model": key, "run": f"plan @ {budget} GB", "kind": "plan", "budget_gb": budget,
                         "error": str(exc)})
            continue
        row = _prediction_row(key, f"plan @ {budget} GB", "plan", budget, plan, reference)
        target = TARGETS.get((key, budget))
        if target:
            row["target"] = {"max_vram_gb": target[0], "max_ratio": target[1],
                             "met_by_prediction": row["predicted_peak_vram_gb"] <= target[0]
                             and row["predicted_ratio_vs_all_on_gpu"] <= target[1]}
        rows.append(row)
    for row in rows:
        _print_row(row)
    return {"model": key, "profile": sizes.name, "shape": asdict(shape), "rows": rows}


def _prediction_row(key, label, kind, budget, plan, reference) -> dict[str, Any]:
    return {"model": key, "run": label, "kind": kind, "budget_gb": budget, "plan": plan.name,
            "predicted_peak_vram_gb": plan.breakdown["denoiser_only_vram_bytes"] / GB,
            "predicted_peak_ram_gb": plan.breakdown["denoiser_only_ram_bytes"] / GB,
            "predicted_job_peak_vram_gb": plan.predicted_peak_vram_gb,
            "predicted_job_peak_ram_gb": plan.predicted_peak_ram_gb,
            "predicted_seconds_per_step": plan.seconds_per_step,
            "predicted_ratio_vs_all_on_gpu": plan.seconds_per_step / reference.seconds_per_step}


# ============================================================================ calibration
def calibrate() -> list[dict[str, Any]]:
    """Trace real-width (2-layer) modules on FakeTensors; compare activation peaks with the formula."""
    import weakref

    import diffusers
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.weak import WeakIdKeyDictionary

    class LiveBytes(TorchDispatchMode):
        """Peak bytes of storages created while active (pre-existing ones — weights, inputs — excluded)."""

        def __init__(self, *existing: Any) -> None:
            super().__init__()
            self.live = self.peak = 0
            self.seen = WeakIdKeyDictionary()
            for obj in existing:
                tensors = (list(obj.parameters()) + list(obj.buffers())) if isinstance(obj, torch.nn.Module) \
                    else [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]
                for t in tensors:
                    self.seen[t.untyped_storage()] = 0

        def _free(self, n: int) -> None:
            self.live -= n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    st = t.untyped_storage()
                    if st not in self.seen:
                        n = st.nbytes()
                        self.seen[st] = n
                        self.live += n
                        weakref.finalize(st, self._free, n)
            self.peak = max(self.peak, self.live)
            return out

    rows = []
    for key, spec in MODELS.items():
        sizes = profile_sizes(spec["profile"])
        shape = spec["shape"]
        cls = getattr(diffusers, spec["cls"])
        keep = tuple(getattr(cls, "_keep_in_fp32_modules", None) or ())
        torch.set_default_dtype(torch.bfloat16)
        try:
            with FakeTensorMode():
                model = cls.from_config(dict(spec["config"], num_layers=2))
                for name, module in model.named_modules():
                    if any(k in name.split(".") for k in keep):
                        for pname, p in list(module._parameters.items()):
                            if p is not None:
                                module._parameters[pname] = torch.nn.Parameter(p.detach().float(),
                                                                               requires_grad=False)
                inputs = transformer_inputs(key, shape, sizes, "cpu")
                with torch.no_grad(), LiveBytes(model, inputs) as live:
                    model(**inputs)
        finally:
            torch.set_default_dtype(torch.float32)
        predicted = evaluate_all(sizes, shape, DeviceFacts.gpu(80, 128))[0].breakdown["activation_bytes"]
        row = {"model": key, "traced_activation_gb": live.peak / GB, "formula_activation_gb": predicted / GB,
               "error": predicted / live.peak - 1}
        print(f"{key:10s} traced {row['traced_activation_gb']:.3f} GB  formula {row['formula_activation_gb']:.3f} GB"
              f"  ({row['error']:+.1%})")
        rows.append(row)
    return rows


# ============================================================================ output
def _print_row(row: dict[str, Any]) -> None:
    def g(key: str, fmt: str = "{:.2f}") -> str:
        value = row.get(key)
        return fmt.format(value) if isinstance(value, (int, float)) else "-"

    if row.get("error") or row.get("skipped"):
        print(f"  {row['run']:30s} {row.get('plan', ''):26s} {row.get('error') or row['skipped']}"[:200], flush=True)
        return
    if row.get("kind") == "vae":
        print(f"  {row['run']:30s} {row.get('dtype', ''):26s} VRAM {g('measured_peak_vram_gb')} GB "
              f"(pred {g('predicted_peak_vram_gb')}, err {g('vram_prediction_error', '{:+.0%}')})  "
              f"{g('seconds')} s", flush=True)
        return
    measured = "measured" if "measured_peak_vram_gb" in row else "predicted"
    if measured == "measured":
        print(f"  {row['run']:30s} {row.get('plan', ''):26s} VRAM {g('measured_peak_vram_gb')} GB "
              f"(pred {g('predicted_peak_vram_gb')}, err {g('vram_prediction_error', '{:+.0%}')})  "
              f"s/step {g('seconds_per_step')} (pred {g('predicted_seconds_per_step')})  "
              f"x{g('ratio_vs_all_on_gpu')}  RSS {g('measured_peak_rss_gb')} GB (pred {g('predicted_peak_ram_gb')})"
              + ("  TARGET " + ("met" if row["target"]["met"] else "MISSED") if "target" in row else ""), flush=True)
    else:
        print(f"  {row['run']:30s} {row.get('plan', ''):26s} VRAM {g('predicted_peak_vram_gb')} GB  "
              f"RAM {g('predicted_peak_ram_gb')} GB  s/step {g('predicted_seconds_per_step')}  "
              f"x{g('predicted_ratio_vs_all_on_gpu')}  (job peak VRAM {g('predicted_job_peak_vram_gb')}, "
              f"RAM {g('predicted_job_peak_ram_gb')})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--budgets", nargs="*", type=float, help="VRAM budgets in GB (default per model)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run (after one warm-up step)")
    parser.add_argument("--ram-gb", type=float, default=None, help="host RAM the planner is told is free")
    parser.add_argument("--gpu", default="NVIDIA H100 80GB HBM3", help="GPU to predict for when there is no CUDA")
    parser.add_argument("--vram-gb", type=float, default=80.0, help="its memory, for predictions without CUDA")
    parser.add_argument("--skip-vae", action="store_true")
    parser.add_argument("--skip-sequential", action="store_true", help="leave out the (slow) sequential baseline")
    parser.add_argument("--calibrate", action="store_true", help="FakeTensor activation check on the CPU, then exit")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--gpu-check", action="store_true",
                        help="issue 16's pass/fail check (bench/memory_check.py): 14B at an 8 GB budget, the engine "
                             "job under an 8 GB cap, offloaded vs resident, a forced 6 GB cap; exits 1 on a failure")
    parser.add_argument("--dry-run", action="store_true", help="with --gpu-check: the same code on the CPU at tiny "
                                                               "size, CUDA measurements skipped")
    parser.add_argument("--engine-model", default="tiny-wan",
                        help="with --gpu-check: the model of the engine job (a real-size local folder on a GPU)")
    args = parser.parse_args(argv)

    if args.gpu_check:
        from memory_check import gpu_check

        return gpu_check(sys.modules[__name__], args.dry_run, args.out, steps=1, engine_model=args.engine_model)

    if args.calibrate:
        rows = calibrate()
        _write(args.out, "memory-calibration-faketensor", {"kind": "calibration", "rows": rows})
        return 0
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        facts = DeviceFacts.detect(probe_bandwidth=True)
        kind = "measured"
    else:
        ram = args.ram_gb or 64.0
        facts = DeviceFacts.gpu(args.vram_gb, ram, name=args.gpu)
        kind = "predictions"
    print(f"{kind} on {facts.describe()}")
    results = {"kind": kind, "device": facts.to_dict(), "ram_gb_told": args.ram_gb, "steps": args.steps,
               "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "versions": _versions(),
               "models": []}
    for key in args.models:
        results["models"].append(bench_model_gpu(key, args, facts) if cuda else predict_model(key, args, facts))
    suffix = "" if cuda else "-predicted"
    _write(args.out, f"memory-{gpu_slug(facts.name)}{suffix}", results)
    return 0


def _versions() -> dict[str, str]:
    import diffusers
    import torch

    return {"torch": torch.__version__, "diffusers": diffusers.__version__}


def _write(folder: str, stem: str, data: dict[str, Any]) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    sys.exit(main())
