"""GPU memory orchestration: measure, plan, apply, recover, cache.

* ``sizes``    — component sizes from a profile, a local folder or a loaded pipeline
* ``hub_sizes`` — component sizes of any hub repo from its safetensors headers (no weights downloaded)
* ``device``   — ``DeviceFacts``: free VRAM / RAM and link speeds (detected or injected)
* ``costs``    — the cost model: job numbers, activation / decode / encoder peaks, seconds per pass,
  each placement tier's bytes and transfer time
* ``planner``  — ``plan_memory`` / ``plan_ladder``: ranks candidate plans built on ``costs``; the fastest
  plan that fits VRAM and RAM
* ``apply``    — ``apply_plan``: puts a plan in place with diffusers' own hooks
* ``recovery`` — ``StageRunner``: on CUDA out-of-memory, steps down the ladder and retries a stage
* ``peaks``    — ``measure_peaks``: allocated, reserved and device-used VRAM per stage, and the budget check
* ``cache``    — ``PipelineCache``: loaded pipelines kept LRU by bytes under a host-RAM cap
"""
from .apply import (
    apply_plan,
    enforce_vram_budget,
    finish_stage,
    load_kwargs_for,
    place_text_encoders,
    release_memory,
    release_text_encoder,
)
from .cache import PipelineCache
from .device import DeviceFacts
from .hub_sizes import hub_sizes, plan_for_hub_repo
from .peaks import budget_check, job_peaks, measure_peaks, reset_peaks
from .planner import (
    JobShape,
    MemoryPlan,
    PlannerSettings,
    plan_for_folder,
    plan_for_profile,
    plan_ladder,
    plan_memory,
)
from .recovery import LadderState, StageRunner, is_out_of_memory, memory_error_kind, run_stage
from .sizes import ModelSizes, measure_components, measure_folder, profile_sizes

__all__ = [
    "DeviceFacts", "JobShape", "LadderState", "MemoryPlan", "ModelSizes", "PipelineCache", "PlannerSettings",
    "StageRunner", "apply_plan", "finish_stage", "is_out_of_memory", "load_kwargs_for", "measure_components",
    "measure_folder", "plan_for_folder", "plan_for_profile", "plan_ladder", "plan_memory", "profile_sizes",
    "release_memory", "release_text_encoder", "run_stage",
    "budget_check", "enforce_vram_budget", "job_peaks", "measure_peaks", "memory_error_kind",
    "place_text_encoders", "reset_peaks", "hub_sizes", "plan_for_hub_repo",
]
