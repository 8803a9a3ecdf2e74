"""Put a memory plan in place on a loaded diffusers pipeline, using diffusers' own hooks.

* fp8 storage: ``ModelMixin.enable_layerwise_casting`` (before any offloading, as diffusers requires)
* group offload (block or leaf level, CUDA streams, record_stream, low_cpu_mem_usage):
  ``ModelMixin.enable_group_offload`` / ``diffusers.hooks.apply_group_offloading``
* model offload and sequential offload: accelerate's ``cpu_offload_with_hook`` / ``cpu_offload``,
  exactly what ``DiffusionPipeline.enable_model_cpu_offload`` / ``enable_sequential_cpu_offload``
  call, but per component so that one plan can mix placements
* block split between GPU, RAM and disk: an explicit ``device_map`` at load time (``load_kwargs_for``)
* VAE tiling / slicing: the VAE's own ``enable_tiling`` / ``enable_slicing``
* attention backend: ``ModelMixin.set_attention_backend``

Without CUDA nothing is changed and the returned notes say so. Applying a second plan (what
out-of-memory recovery does) first removes the hooks of the previous one.
"""
from __future__ import annotations

from typing import Any

from ..errors import KinetographError
from .device import DeviceFacts, comfy_free_memory
from .planner import ComponentPlan, MemoryPlan

_HOOKS_ATTR = "_kinetograph_offload_hooks"
_RELEASED_ATTR = "_kinetograph_released"  # components dropped after use; the cache reloads the pipeline
# diffusers.hooks.group_offloading registers its hooks under these names (module constants there).
_GROUP_OFFLOAD_HOOK_NAMES = ("group_offloading", "layer_execution_tracker", "lazy_prefetch_group_offloading")


def apply_plan(pipe: Any, plan: MemoryPlan, device_facts: DeviceFacts | None = None,
               enforce_budget: bool = False) -> list[str]:
    """Place every component of ``pipe`` as ``plan`` says. Returns what was done, one line each.

    ``enforce_budget`` caps this process's CUDA allocator at the plan's VRAM budget
    (``torch.cuda.set_per_process_memory_fraction``), so exceeding it raises out-of-memory
    instead of using the rest of the card; it affects the whole process.
    """
    import torch

    facts = device_facts or DeviceFacts.detect()
    if not facts.has_cuda or not torch.cuda.is_available():
        return [f"no CUDA device: memory plan '{plan.name}' not applied; the pipeline stays on the CPU as loaded"]
    notes: list[str] = []
    if comfy_free_memory(plan.predicted_peak_vram_bytes):
        notes.append(f"asked ComfyUI to free {plan.predicted_peak_vram_bytes / 1e9:.1f} GB of GPU memory first")
    notes += enforce_vram_budget(plan, facts, enforce_budget or plan.budget_from_user)
    notes += place_components(pipe, plan, torch.device("cuda"))
    release_memory()
    return notes


_capped = {"fraction": None}  # the cap this process set on the CUDA allocator, if any


def enforce_vram_budget(plan: MemoryPlan, facts: DeviceFacts, enforce: bool) -> list[str]:
    """Cap this process's CUDA allocator at the plan's VRAM budget (``set_per_process_memory_fraction``),
    so a larger card does not run past a budget the user gave while offloaded blocks queue up ahead of
    the GPU: exceeding it raises out-of-memory, which steps down the ladder. A later plan without a
    budget lifts the cap again. Affects the whole process; a no-op without CUDA."""
    import torch

    if not facts.has_cuda or not torch.cuda.is_available() or not facts.total_vram:
        return []
    if enforce and plan.vram_budget_bytes < facts.total_vram:
        fraction = plan.vram_budget_bytes / facts.total_vram
        torch.cuda.set_per_process_memory_fraction(fraction)
        _capped["fraction"] = fraction
        return [f"CUDA allocator capped at {plan.vram_budget_bytes / 1e9:.1f} GB for this process"]
    if _capped["fraction"] is not None:
        torch.cuda.set_per_process_memory_fraction(1.0)
        _capped["fraction"] = None
        return ["CUDA allocator cap lifted (no VRAM budget for this plan)"]
    return []


def place_components(pipe: Any, plan: MemoryPlan, device: Any) -> list[str]:
    """The device-independent part of ``apply_plan`` (tests run it with the CPU as the onload device)."""
    import torch

    notes: list[str] = []
    _remove_offloading(pipe)
    chain = []  # model-offloaded components, hooked in the pipeline's execution order
    for name, comp in plan.components.items():
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        if comp.storage_dtype:
            notes.append(_enable_fp8(module, comp))
        if comp.placement == "model_offload":
            chain.append((name, module))
            continue
        notes.append(f"{name}: " + _place(module, comp, device))
    if chain:
        notes.append(_model_offload(pipe, sorted(chain, key=lambda item: _offload_order(pipe, item[0])), device))
    notes += _configure_vae(pipe, plan)
    notes += _set_attention_backend(pipe, plan)
    return notes


def place_text_encoders(pipe: Any, plan: MemoryPlan, device_facts: DeviceFacts | None = None) -> list[str]:
    """Place only the encoders of ``pipe`` exactly as ``plan`` says (staged loading: a pipeline that holds
    the encoders alone). A leaf-offloaded encoder gets diffusers' group-offload hooks and stays in host
    RAM, a "gpu" one moves to the GPU, a "cpu" one stays on the CPU. Without CUDA nothing moves."""
    import torch

    device = _cuda_device(device_facts)
    if device is None:
        return [f"no CUDA device: the encoders of plan '{plan.name}' stay on the CPU as loaded"]
    notes = []
    for name, comp in plan.components.items():
        module = getattr(pipe, name, None)
        if comp.role not in ("text_encoder", "image_encoder") or not isinstance(module, torch.nn.Module):
            continue
        _remove_hooks_from(module)
        notes.append(f"{name}: " + _place(module, comp, device))
    return notes


def _cuda_device(device_facts: DeviceFacts | None) -> Any:
    """The onload device, or None without CUDA (tests stand the CPU in for it)."""
    import torch

    if not torch.cuda.is_available() or (device_facts is not None and not device_facts.has_cuda):
        return None
    return torch.device("cuda")


def release_memory() -> None:
    """Give freed tensors back: Python garbage, then the device's caching allocator (accelerate)."""
    from accelerate.utils.memory import clear_device_cache

    clear_device_cache(garbage_collection=True)


# ------------------------------------------------------------------ stage transitions
def finish_stage(pipe: Any, plan: MemoryPlan, stage: str) -> list[str]:
    """What a plan does between stages: encoders move out or are released after ``encode``."""
    notes: list[str] = []
    if stage == "encode":
        for name, comp in plan.components.items():
            if comp.role not in ("text_encoder", "image_encoder"):
                continue
            if comp.after_use == "release":
                notes += release_text_encoder(pipe, plan, names=(name,))
            elif comp.after_use == "keep_cpu" and comp.placement == "gpu":
                module = getattr(pipe, name, None)
                if module is not None and _is_on_cuda(module):
                    module.to("cpu")
                    notes.append(f"{name}: moved back to host RAM after encoding")
    # Only where there is something to give back: a GPU's cached blocks, or what moved above
    # (release_text_encoder collects by itself). On the CPU a full gc.collect here costs ~0.2 s
    # per stage in a process holding torch + diffusers + transformers, and frees nothing.
    import torch

    if notes or torch.cuda.is_available():
        release_memory()
    return notes


def release_text_encoder(pipe: Any, plan: MemoryPlan | None = None,
                         names: tuple[str, ...] = ("text_encoder", "text_encoder_2", "image_encoder")) -> list[str]:
    """Drop encoders from the pipeline (GPU and RAM). The pipeline is then marked incomplete, and
    ``PipelineCache.get`` reloads it for the next job."""
    notes = []
    released = set(getattr(pipe, _RELEASED_ATTR, set()))
    for name in names:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        _remove_hooks_from(module)
        try:
            setattr(pipe, name, None)
        except Exception:  # a pipeline without that registered component
            continue
        released.add(name)
        notes.append(f"{name}: released after encoding")
    if released:
        try:
            object.__setattr__(pipe, _RELEASED_ATTR, released)
        except Exception:
            pass
    release_memory()
    return notes


def is_complete(pipe: Any) -> bool:
    """False after ``release_text_encoder``: the pipeline needs reloading before another job."""
    return not getattr(pipe, _RELEASED_ATTR, None)


# ------------------------------------------------------------------ loading
def load_kwargs_for(plan: MemoryPlan, component: str, model_class: Any = None,
                    config: dict[str, Any] | None = None, offload_root: str = "offload") -> dict[str, Any]:
    """``from_pretrained`` kwargs a component needs under ``plan`` ({} when nothing special).

    Resident components load straight onto the GPU (``device_map="cuda"``) so they never sit in
    host RAM. In the ``device_map`` tier the denoiser's blocks are split between GPU, RAM and an
    offload folder; building that map needs the model class and its config (it is instantiated
    on the meta device to read its module names; no weights are touched).
    """
    kwargs = dict(plan.load_kwargs.get(component, {}))
    if kwargs.get("device_map") != "blocks":
        return kwargs
    if model_class is None or config is None:
        raise KinetographError(f"Plan '{plan.name}' splits {component} between GPU, RAM and disk; loading it "
                               f"needs the model class and its config to build the device map.")
    device_map = block_device_map(model_class, config, kwargs["gpu_blocks"], kwargs["cpu_blocks"])
    out: dict[str, Any] = {"device_map": device_map}
    if kwargs.get("disk_blocks"):
        out["offload_folder"] = f"{offload_root}/{plan.model}/{component}"
        out["offload_state_dict"] = True
    return out


def block_device_map(model_class: Any, config: dict[str, Any], gpu_blocks: int, cpu_blocks: int) -> dict[str, Any]:
    """Explicit accelerate device map: every non-block module on GPU 0, blocks GPU -> cpu -> disk."""
    import torch
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = model_class.from_config(config)
    block_name, count = "", 0
    for name, child in model.named_children():
        if isinstance(child, torch.nn.ModuleList) and len(child) > count:
            block_name, count = name, len(child)
    if not block_name:
        raise KinetographError(f"{model_class.__name__} has no list of blocks to split between devices.")
    device_map: dict[str, Any] = {}
    for name, _ in model.named_children():
        if name != block_name:
            device_map[name] = 0
    for name, _ in model.named_parameters(recurse=False):
        device_map[name] = 0
    for name, _ in model.named_buffers(recurse=False):
        device_map[name] = 0
    for i in range(count):
        device_map[f"{block_name}.{i}"] = 0 if i < gpu_blocks else ("cpu" if i < gpu_blocks + cpu_blocks else "disk")
    return device_map


# ------------------------------------------------------------------ placements
def _place(module: Any, comp: ComponentPlan, device: Any) -> str:
    import torch

    placement = comp.placement
    if placement == "gpu":
        module.to(device)
        return "resident on the GPU"
    if placement == "cpu":
        module.to("cpu")
        return "on the CPU"
    if placement in ("group_offload", "leaf_offload"):
        leaf = placement == "leaf_offload" or comp.role in ("text_encoder", "image_encoder")
        kwargs: dict[str, Any] = dict(
            onload_device=device, offload_device=torch.device("cpu"),
            offload_type="leaf_level" if leaf else "block_level",
            num_blocks_per_group=None if leaf else (comp.num_blocks_per_group or 1),
            use_stream=comp.use_stream, record_stream=comp.record_stream and comp.use_stream,
            low_cpu_mem_usage=comp.low_cpu_mem_usage)
        module.to("cpu")
        if hasattr(module, "enable_group_offload"):
            module.enable_group_offload(**kwargs)
        else:  # transformers encoders: the same diffusers hook, applied directly
            from diffusers.hooks import apply_group_offloading

            apply_group_offloading(module, **kwargs)
        level = "leaf level" if leaf else "block level"
        stream = (", CUDA stream prefetch" + (", pinned on the fly" if comp.low_cpu_mem_usage else ", pre-pinned")
                  if comp.use_stream else "")
        return f"group offload at {level}{stream}"
    if placement == "sequential_offload":
        from accelerate import cpu_offload

        module.to("cpu")
        cpu_offload(module, device, offload_buffers=len(module._parameters) > 0)
        return "sequential CPU offload (accelerate cpu_offload)"
    if placement == "device_map":
        device_map = getattr(module, "hf_device_map", None) or {}
        on_gpu = sum(1 for key, dev in device_map.items() if dev in (0, "cuda", "cuda:0") and key[-1:].isdigit())
        if device_map and (comp.block_split is None or on_gpu == comp.block_split[0]):
            return "split between GPU, RAM and disk by its load-time device_map"
        raise KinetographError(
            f"Memory plan places {comp.name} with a device_map split, which is chosen at load time: reload the "
            f"model with load_kwargs_for(plan, {comp.name!r}, ...) (the plan needs less host RAM than loading "
            f"it whole).")
    raise KinetographError(f"Unknown placement {placement!r} for {comp.name}.")


def _model_offload(pipe: Any, chain: list[tuple[str, Any]], device: Any) -> str:
    """accelerate's model offload hooks, chained in execution order (what enable_model_cpu_offload does)."""
    from accelerate import cpu_offload_with_hook

    hooks = []
    previous = None
    for _, module in chain:
        module.to("cpu")
        _, previous = cpu_offload_with_hook(module, device, prev_module_hook=previous)
        hooks.append(previous)
    try:
        object.__setattr__(pipe, _HOOKS_ATTR, hooks)
    except Exception:
        pass
    return "model offload (moved to the GPU while running): " + " -> ".join(name for name, _ in chain)


def _offload_order(pipe: Any, name: str) -> int:
    seq = (getattr(pipe, "model_cpu_offload_seq", None) or "").split("->")
    return seq.index(name) if name in seq else len(seq)


def _enable_fp8(module: Any, comp: ComponentPlan) -> str:
    import torch

    if not hasattr(module, "enable_layerwise_casting"):
        return f"{comp.name}: fp8 storage skipped (not a diffusers model)"
    # The casting hooks sit on the leaf layers, not on the model itself: look at every submodule.
    if _has_layerwise_casting(module):
        return f"{comp.name}: already stored in fp8"
    compute = getattr(torch, comp.compute_dtype)
    if compute == torch.float32:
        return f"{comp.name}: fp8 storage skipped (the model is float32; layerwise casting needs bf16/fp16)"
    module.enable_layerwise_casting(storage_dtype=getattr(torch, comp.storage_dtype), compute_dtype=compute)
    return f"{comp.name}: weights stored in {comp.storage_dtype}, computed in {comp.compute_dtype}"


def _has_layerwise_casting(module: Any) -> bool:
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is not None and registry.get_hook("layerwise_casting") is not None:
            return True
    return False


def _configure_vae(pipe: Any, plan: MemoryPlan) -> list[str]:
    vae = getattr(pipe, "vae", None)
    comp = plan.components.get("vae")
    if vae is None or comp is None:
        return []
    notes = []
    if comp.tiled and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
        if hasattr(vae, "use_framewise_decoding"):  # LTX: also tile in time (diffusers leaves it off)
            vae.use_framewise_decoding = True
        notes.append("vae: tiled decoding")
    elif hasattr(vae, "disable_tiling"):
        vae.disable_tiling()
    if plan.vae_slicing and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
        notes.append("vae: sliced decoding (one video of the batch at a time)")
    if plan.decode_chunk_size:
        notes.append(f"vae: decode {plan.decode_chunk_size} frames at a time (pass decode_chunk_size)")
    return notes


def _set_attention_backend(pipe: Any, plan: MemoryPlan) -> list[str]:
    if plan.attention_backend == "native":
        return []
    notes = []
    for name, comp in plan.components.items():
        module = getattr(pipe, name, None)
        if comp.role == "denoiser" and hasattr(module, "set_attention_backend"):
            try:
                module.set_attention_backend(plan.attention_backend)
                notes.append(f"{name}: attention backend {plan.attention_backend}")
            except Exception as exc:  # a kernel that fails its own checks: PyTorch SDPA stays
                notes.append(f"{name}: attention backend {plan.attention_backend} unavailable ({exc}); using SDPA")
    return notes


# ------------------------------------------------------------------ undo
def _remove_offloading(pipe: Any) -> None:
    """Undo a previous plan's hooks so that the next plan starts from plain modules."""
    import torch

    for hook in getattr(pipe, _HOOKS_ATTR, []) or []:
        try:
            hook.offload()
        except Exception:
            pass
    for module in getattr(pipe, "components", {}).values():
        if isinstance(module, torch.nn.Module):
            _remove_hooks_from(module)
    try:
        object.__setattr__(pipe, _HOOKS_ATTR, [])
    except Exception:
        pass


def _remove_hooks_from(module: Any) -> None:
    """Remove group-offload hooks (diffusers) and offload hooks (accelerate) from ``module`` and every
    submodule. Leaf-level group offload registers its hooks on the leaf layers only, so the top
    module may have no hook registry at all: every submodule is visited."""
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is None:
            continue
        for name in _GROUP_OFFLOAD_HOOK_NAMES:
            registry.remove_hook(name, recurse=False)
    if getattr(module, "hf_device_map", None):
        return  # a load-time device map is part of the model; its hooks stay
    try:
        from accelerate.hooks import remove_hook_from_module

        remove_hook_from_module(module, recurse=True)  # restores offloaded weights to their devices
    except ImportError:
        pass


def _is_on_cuda(module: Any) -> bool:
    try:
        return next(module.parameters()).device.type == "cuda"
    except StopIteration:
        return False
