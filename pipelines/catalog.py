"""What models exist and which of them are on this machine (for `app.py models` and the UI)."""
from __future__ import annotations

from typing import Any

from .families import FAMILIES, PRESETS, TASKS, ModelPreset


def model_catalog() -> dict[str, list[dict[str, Any]]]:
    families = [
        {
            "id": f.id, "label": f.label, "tasks": [t for t in f.pipelines if t in TASKS] or list(f.pipelines),
            "frame_rule": f"{f.frame_multiple}k+1" if f.frame_multiple > 1 else "any count",
            "size_multiple": f.size_multiple, "default_size": f"{f.default_width}x{f.default_height}",
            "default_fps": f.default_fps, "default_frames": f.default_frames, "max_frames": f.max_frames,
        }
        for f in FAMILIES.values()
    ]
    presets = [
        {"id": p.id, "family": p.family, "tasks": list(p.repos), "repos": dict(p.repos),
         "description": p.description, "availability": availability(p), "tiny": p.tiny}
        for p in PRESETS.values()
    ]
    return {"families": families, "presets": presets}


def availability(preset: ModelPreset) -> str:
    """'built-in', or how many of the preset's task checkpoints are in the local HF cache."""
    if preset.tiny:
        return "built-in (random weights)"
    from huggingface_hub import try_to_load_from_cache

    repos = sorted(set(preset.repos.values()) | set(preset.extra_repos.values()))
    cached = [r for r in repos if isinstance(try_to_load_from_cache(r, "model_index.json"), str)
              or isinstance(try_to_load_from_cache(r, "config.json"), str)]
    if len(cached) == len(repos):
        return "downloaded"
    return f"not downloaded ({len(cached)}/{len(repos)} repos)"
