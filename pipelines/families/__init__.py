"""Model families and presets: data, not code paths.

A *family* says which diffusers pipeline class serves which task and what rules its
inputs obey (frame count k*m+1, size multiple, defaults), and holds everything else that
differs per family: the adapter (prompt encoding, decode tail, latent previews), the memory
planner's size profiles, the tiny test models and the presets. A *preset* is a name a user
types (``wan2.1-t2v-1.3b``, ``tiny-ltx``) that maps each task to a hub repo id (or a
built-in tiny model) and names the size profile the memory planner uses without
downloading anything.

Each family is one module here (``ltx.py``, ``wan.py``, ...) exporting ``FAMILY``; adding a
family is one new module plus its name in ``_FAMILY_MODULES`` below. This module is the
registry collected from them.
"""
from __future__ import annotations

from ..errors import KinetographError
from . import animatediff, ltx, skyreels, svd, wan
from .base import (
    TASK_LABELS,
    TASKS,
    FamilyAdapter,
    ModelFamily,
    ModelPreset,
    TinyModel,
    uses_cfg,
)

__all__ = [
    "FAMILIES", "PRESETS", "TASKS", "TASK_LABELS", "TINY_MODELS", "PIPELINE_CLASS_TO_FAMILY", "FamilyAdapter",
    "ModelFamily", "ModelPreset", "TinyModel", "adapter_for", "family_for_pipeline_class", "get_family",
    "pipeline_class_for", "presets_for_task", "uses_cfg",
]

_FAMILY_MODULES = (ltx, wan, animatediff, skyreels, svd)

FAMILIES: dict[str, ModelFamily] = {m.FAMILY.id: m.FAMILY for m in _FAMILY_MODULES}

# Built-in tiny models first (smoke tests), then the real models, each in family order.
PRESETS: dict[str, ModelPreset] = {
    p.id: p for p in sorted((p for f in FAMILIES.values() for p in f.presets), key=lambda p: not p.tiny)
}

# tiny model name -> builder (a TinyModel: calling it builds the pipeline; .pipeline_class, .description)
TINY_MODELS: dict[str, TinyModel] = {name: tiny for f in FAMILIES.values() for name, tiny in f.tiny_models.items()}

# diffusers pipeline class -> family, to recognise a local folder or hub repo by its model_index.json
PIPELINE_CLASS_TO_FAMILY: dict[str, str] = {
    cls: fam.id for fam in FAMILIES.values() for cls in fam.pipelines.values()
}


def _check_registry() -> None:
    """Names must be unique across families (a clash would silently shadow an entry)."""
    def clashes(names) -> list[str]:
        seen: set[str] = set()
        return sorted({n for n in names if n in seen or seen.add(n)})

    for what, names in (
        ("family id", [m.FAMILY.id for m in _FAMILY_MODULES]),
        ("preset id", [p.id for f in FAMILIES.values() for p in f.presets]),
        ("tiny model", [n for f in FAMILIES.values() for n in f.tiny_models]),
        ("size profile", [n for f in FAMILIES.values() for n in f.size_profiles]),
        ("denoiser class", [c for f in FAMILIES.values() for c in f.denoiser_classes]),
    ):
        if clashes(names):
            raise KinetographError(f"Model family registry: duplicate {what}: {', '.join(clashes(names))}")


_check_registry()


def get_family(family_id: str) -> ModelFamily:
    try:
        return FAMILIES[family_id]
    except KeyError:
        raise KinetographError(
            f"Unknown model family {family_id!r}. Known families: {', '.join(FAMILIES)}."
        ) from None


def family_for_pipeline_class(class_name: str) -> ModelFamily:
    family_id = PIPELINE_CLASS_TO_FAMILY.get(class_name)
    if family_id is None:
        raise KinetographError(
            f"Kinetograph does not know the diffusers pipeline {class_name!r}. Supported pipelines: "
            f"{', '.join(sorted(PIPELINE_CLASS_TO_FAMILY))}."
        )
    return FAMILIES[family_id]


def presets_for_task(task: str) -> list[str]:
    """Preset ids that can run ``task`` (their family has a pipeline for it and the preset a checkpoint)."""
    return [p.id for p in PRESETS.values() if task in p.repos and task in FAMILIES[p.family].pipelines]


def pipeline_class_for(family: ModelFamily, task: str) -> str:
    try:
        return family.pipelines[task]
    except KeyError:
        can = ", ".join(t for t in family.pipelines if t in TASKS) or "none of the generation tasks"
        raise KinetographError(
            f"The {family.label} family cannot do the task {task!r}; it can do: {can}. "
            f"Choose another task or another model."
        ) from None


# Adapter names of the old adapters.py registry, for callers that still pass them.
_OLD_ADAPTER_NAMES = {"unet": "animatediff"}


def adapter_for(name_or_family: str | ModelFamily | FamilyAdapter) -> FamilyAdapter:
    """The adapter of a family (given as the entry, its id, or an old adapter name: ltx/wan/unet/svd).
    New code reads ``family.adapter`` directly."""
    if isinstance(name_or_family, FamilyAdapter):
        return name_or_family
    if isinstance(name_or_family, ModelFamily):
        return name_or_family.adapter
    family_id = _OLD_ADAPTER_NAMES.get(name_or_family, name_or_family)
    if family_id in FAMILIES:
        return FAMILIES[family_id].adapter
    raise KinetographError(
        f"Generation with the {name_or_family!r} family adapter is not available in this version; "
        f"available: {', '.join(FAMILIES)}."
    )
