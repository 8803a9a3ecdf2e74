"""Built-in tiny models: real diffusers pipelines with small configs and random weights.

Each tiny model is written once as an ordinary diffusers folder (``model_index.json`` plus one
sub-folder per component, safetensors only) and is then loaded through the same
``from_pretrained(folder, local_files_only=True)`` path as a real model. They exist for tests
and smoke runs: everything is structurally real (the same classes, the same compression rules
as the real checkpoints where that costs nothing), so code that works on a tiny model works on
the real one. Their output is noise.

This module is the generic machinery: ``build_tiny_model(name, dest)`` looks the builder up
in the family registry (``pipelines.families.TINY_MODELS``) and writes its pipeline. Nothing
touches the network; heavy libraries (torch, diffusers, transformers) are imported inside
the builders so that listing the tiny models stays cheap.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import KinetographError
from .families import TINY_MODELS, TinyModel

__all__ = ["TINY_MODELS", "TinyModel", "build_tiny_model", "tiny_model_names"]

# The builders live in the family modules (``ModelFamily.tiny_models``); parts several
# families share (tokenizers, text and image encoders) in ``families/tiny_parts.py``.


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
        pipeline = TINY_MODELS[name]()
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
