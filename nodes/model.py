"""Kinetograph: Load Video Model: which model the generation nodes use, and how it may use memory.

It resolves the model (a preset, a diffusers folder in ComfyUI's models/diffusers, a hub repo id or a
path) and checks that its files are here, so a missing model is reported by this node with where to
put it. The weights load in the node that generates (Generate Video, Extend Video), once, cached
across runs by the engine's model manager; ComfyUI is asked to free its own models first.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..pipelines.errors import KinetographError
from ..pipelines.families import PRESETS, TASKS
from ..pipelines.memory.costs import TIERS
from ..pipelines.models import resolve_model
from . import _comfy

DTYPES = ["auto", "float32", "bfloat16", "float16"]
MEMORY_MODES = ["auto", *TIERS]


@dataclass(frozen=True)
class VideoModel:
    """What travels on a KINETOGRAPH_MODEL link: the model reference and the memory settings."""

    ref: str  # preset id, hub repo id, or a folder
    label: str  # what the user chose (for messages)
    family: str
    tasks: tuple[str, ...]  # tasks this model can do
    dtype: str | None = None  # None: automatic
    memory_mode: str | None = None  # None: the planner's choice
    budget_gb: float | None = None
    ram_gb: float | None = None

    def memory_options(self) -> dict:
        return {"budget_gb": self.budget_gb, "ram_gb": self.ram_gb, "memory_mode": self.memory_mode}


def model_choices() -> list[str]:
    return [*PRESETS, *_comfy.diffusers_folders()]


class KinetographLoadModel:
    """Choose a video model (and its memory settings) for the generation nodes."""

    @classmethod
    def INPUT_TYPES(cls):
        choices = model_choices()
        return {
            "required": {
                "model": (choices, {"default": "tiny-ltx",
                                    "tooltip": "A preset (tiny-* are random weights for smoke tests: they make "
                                               "noise), or a diffusers folder found in ComfyUI/models/diffusers "
                                               "(one folder per model, holding model_index.json)."}),
                "model_path": ("STRING", {"default": "",
                                          "tooltip": "Optional: a Hugging Face repo id in diffusers format "
                                                     "(owner/name) or the path of a diffusers folder; when set it "
                                                     "is used instead of 'model'."}),
                "dtype": (DTYPES, {"default": "auto",
                                   "tooltip": "Weights' precision. auto: the model's own (bf16/fp16) on a GPU, "
                                              "float32 on the CPU."}),
                "memory_mode": (MEMORY_MODES, {"default": "auto",
                                               "tooltip": "How the model is placed in GPU memory. auto: the fastest "
                                                          "plan that fits; the others force a plan (cheaper ones "
                                                          "stay available if memory runs out)."}),
                "vram_budget_gb": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1024.0, "step": 0.5,
                                             "tooltip": "GPU memory Kinetograph may use, in GB; 0: what is free "
                                                        "after ComfyUI has unloaded its own models."}),
                "ram_budget_gb": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 4096.0, "step": 1.0,
                                            "tooltip": "Host RAM Kinetograph may use, in GB; 0: what is free."}),
            },
        }

    RETURN_TYPES = (_comfy.MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model and its memory settings: connect it to Generate Video or Extend Video.",)
    FUNCTION = "load"
    CATEGORY = _comfy.CATEGORY
    DESCRIPTION = ("Chooses a video model: a preset, a diffusers folder in ComfyUI/models/diffusers, or a hub repo id. "
                   "The weights load once, when a generation node first needs them.")

    @_comfy.comfy_errors({"model": "model", "memory-mode": "memory_mode"})
    def load(self, model, model_path="", dtype="auto", memory_mode="auto", vram_budget_gb=0.0, ram_budget_gb=0.0):
        folders = _comfy.diffusers_folders()
        path = (model_path or "").strip() if isinstance(model_path, str) else model_path
        if path:
            ref, label = path, path
        elif model in folders:
            ref, label = folders[model], model
        elif model in PRESETS:
            ref, label = model, model
        else:
            raise KinetographError(f"'model' {model!r} is neither a preset nor a folder in "
                                   f"{_comfy.models_folder_hint()}; choose one from the list (refresh the page after "
                                   f"adding a folder).")
        if dtype not in DTYPES:
            raise KinetographError(f"'dtype' must be one of {', '.join(DTYPES)}, got {dtype!r}.")
        if memory_mode not in MEMORY_MODES:
            raise KinetographError(f"'memory_mode' must be one of {', '.join(MEMORY_MODES)}, got {memory_mode!r}.")
        for name, value in (("vram_budget_gb", vram_budget_gb), ("ram_budget_gb", ram_budget_gb)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise KinetographError(f"'{name}' must be a number of GB, 0 or more (0: automatic); got {value!r}.")
        sources = {}
        for task in TASKS:
            try:
                sources[task] = resolve_model(ref, task)
            except KinetographError as exc:
                last = exc
        if not sources:
            raise KinetographError(self._not_found(label, str(last)))
        first = next(iter(sources.values()))
        if first.kind == "hub":
            self._check_downloaded(first, label)
        return (VideoModel(ref=ref, label=label, family=first.family.id, tasks=tuple(sources),
                           dtype=None if dtype == "auto" else dtype,
                           memory_mode=None if memory_mode == "auto" else memory_mode,
                           budget_gb=float(vram_budget_gb) or None, ram_gb=float(ram_budget_gb) or None),)

    @staticmethod
    def _not_found(label: str, why: str) -> str:
        return (f"Model {label!r} cannot be used: {why} Put a diffusers model folder (the folder holding "
                f"model_index.json) in {_comfy.models_folder_hint()} and choose it in 'model', or give a hub repo id "
                f"in 'model_path'.")

    @staticmethod
    def _check_downloaded(source, label: str) -> None:
        """A hub model must be in the Hugging Face cache when offline; online it downloads on first use."""
        from ..pipelines.tasks.generate import local_folder

        try:
            local_folder(source)
        except KinetographError:
            if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on"):
                return  # it will be downloaded when the generation node first loads it
            name = source.location.split("/")[-1]
            raise KinetographError(
                f"Model {label!r} ({source.location}) is not downloaded and Hugging Face downloads are off "
                f"(HF_HUB_OFFLINE=1). Download it into ComfyUI's models folder with\n"
                f"    hf download {source.location} --local-dir {_comfy.models_folder_hint()}/{name}\n"
                f"then refresh the page and choose 'diffusers/{name}' in 'model'.") from None
