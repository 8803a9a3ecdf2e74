"""Model references -> loaded diffusers pipelines.

A model reference is one of:
- a preset id from the registry (``wan2.1-t2v-1.3b``, ``tiny-ltx``): a hub repo per task;
- a hub repo id in diffusers format (``Lightricks/LTX-Video-0.9.5``): normal HF cache,
  honours ``HF_HUB_OFFLINE``;
- a local diffusers folder (one with ``model_index.json``).

Built-in tiny models are written once to a cache folder and then loaded through the same
``from_pretrained`` call as real models. Loading is safetensors-only and never runs remote
code. Loaded pipelines are kept in a byte-bounded LRU cache (``memory.cache``).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KinetographError
from .families import (
    PRESETS,
    ModelFamily,
    ModelPreset,
    family_for_pipeline_class,
    get_family,
    pipeline_class_for,
)

# Bump when the tiny builders change, so stale cached tiny models are rebuilt.
TINY_CACHE_VERSION = "1"


def kinetograph_home() -> Path:
    """Where Kinetograph keeps its own files (tiny models); KINETOGRAPH_HOME overrides."""
    return Path(os.environ.get("KINETOGRAPH_HOME") or Path.home() / ".cache" / "kinetograph")


@dataclass(frozen=True)
class ModelSource:
    """Where the pipeline for one task of one model comes from."""

    ref: str  # what the user typed
    family: ModelFamily
    task: str
    location: str  # hub repo id or local folder
    kind: str  # "tiny" | "hub" | "folder"
    pipeline_class: str
    preset: ModelPreset | None = None
    dtype: str = "float32"
    component_dtypes: dict[str, str] = field(default_factory=dict)
    extra_repos: dict[str, str] = field(default_factory=dict)
    denoiser_file: str | None = None  # single-file checkpoint that replaces the denoiser's weights

    @property
    def cache_key(self) -> tuple:
        file_stamp = (self.denoiser_file, os.stat(self.denoiser_file).st_mtime_ns) if self.denoiser_file else None
        return (self.location, self.pipeline_class, self.dtype, tuple(sorted(self.component_dtypes.items())),
                file_stamp)

    @property
    def weights_key(self) -> tuple:
        """What the weights depend on: the cache key without the task's pipeline class."""
        key = self.cache_key
        return (key[0], *key[2:])

    def describe(self) -> dict[str, Any]:
        return {
            "ref": self.ref, "family": self.family.id, "task": self.task, "location": self.location,
            "kind": self.kind, "pipeline_class": self.pipeline_class, "dtype": self.dtype,
            "preset": self.preset.id if self.preset else None, "denoiser_file": self.denoiser_file,
        }


# ---------------------------------------------------------------------- resolving
def resolve_model(ref: str, task: str, *, prefer_cuda: bool = False, denoiser_file: str | None = None) -> ModelSource:
    """Turn what the user typed into a ModelSource for ``task``; no weights are loaded.

    ``denoiser_file``: a single-file .safetensors checkpoint of the transformer/UNet (a fine-tune,
    an original-format release); ``ref`` then supplies the text encoder, VAE and configs.
    """
    source = _resolve_ref(str(ref).strip(), task, prefer_cuda)
    if denoiser_file is None:
        return source
    path = Path(denoiser_file).expanduser()
    if not path.is_file():
        raise KinetographError(f"Transformer checkpoint {path} does not exist. Check the path.")
    if path.suffix != ".safetensors":
        raise KinetographError(f"{path} is not a .safetensors file. Kinetograph loads safetensors only "
                               f"(pickled .ckpt/.pt/.bin files can run code); convert it first.")
    return dataclasses.replace(source, denoiser_file=str(path.resolve()))


def _resolve_ref(ref: str, task: str, prefer_cuda: bool) -> ModelSource:
    if ref in PRESETS:
        return _source_from_preset(PRESETS[ref], task, prefer_cuda)
    path = Path(ref).expanduser()
    if path.exists():
        return _source_from_folder(ref, path, task, prefer_cuda)
    if _looks_like_repo_id(ref):
        return _source_from_hub(ref, task, prefer_cuda)
    raise KinetographError(
        f"Model {ref!r} is not a preset, an existing folder or a hub repo id (owner/name). "
        f"Presets: {', '.join(PRESETS)}. Run `python app.py models` to list them."
    )


def _source_from_preset(preset: ModelPreset, task: str, prefer_cuda: bool) -> ModelSource:
    family = get_family(preset.family)
    pipeline_class = pipeline_class_for(family, task)
    location = preset.repos.get(task)
    if location is None:
        can = ", ".join(t for t in preset.repos if t in family.pipelines)
        raise KinetographError(
            f"The preset {preset.id!r} has no checkpoint for the task {task!r}; it can do: {can}. "
            f"Choose another task, or a preset that does {task} (see `python app.py models`)."
        )
    if preset.tiny:
        return ModelSource(preset.id, family, task, str(ensure_tiny_model(location)), "tiny",
                           pipeline_class, preset, dtype="float32")
    # Real presets: bf16/fp16 where a GPU runs them; fp32 on CPU where half precision is slow or missing.
    dtype = preset.dtype if prefer_cuda else "float32"
    return ModelSource(preset.id, family, task, location, "hub", pipeline_class, preset, dtype=dtype,
                       component_dtypes=dict(preset.component_dtypes) if prefer_cuda else {},
                       extra_repos=dict(preset.extra_repos))


def _source_from_folder(ref: str, path: Path, task: str, prefer_cuda: bool) -> ModelSource:
    if path.is_file():
        if path.suffix != ".safetensors":
            raise KinetographError(
                f"{path} is a {path.suffix or 'extensionless'} file. Kinetograph loads safetensors only "
                f"(pickled .ckpt/.pt/.bin files can run code). Convert it to .safetensors, or pass a "
                f"diffusers folder."
            )
        raise KinetographError(
            f"{path} is a single-file checkpoint: it holds the transformer only. Pass it with "
            f"--transformer {path} and name the model that supplies the text encoder and VAE with --model "
            f"(a preset such as wan2.1-t2v-1.3b, a hub repo id or a diffusers folder)."
        )
    index = path / "model_index.json"
    if not index.is_file():
        raise KinetographError(
            f"{path} is not a diffusers model folder: it has no model_index.json. Point --model at the "
            f"folder that holds model_index.json (download one with `hf download <repo> --local-dir {path}`)."
        )
    class_name = _read_model_index(index)
    family = family_for_pipeline_class(class_name)
    dtype = "bfloat16" if prefer_cuda else "float32"
    return ModelSource(ref, family, task, str(path.resolve()), "folder", pipeline_class_for(family, task),
                       dtype=dtype)


def _source_from_hub(repo_id: str, task: str, prefer_cuda: bool) -> ModelSource:
    from huggingface_hub import hf_hub_download

    try:
        index = hf_hub_download(repo_id, "model_index.json")
    except Exception as exc:  # offline + not cached, unknown repo, no network: all need the same advice
        raise missing_model_error(repo_id, None, exc) from None
    family = family_for_pipeline_class(_read_model_index(Path(index)))
    dtype = "bfloat16" if prefer_cuda else "float32"
    return ModelSource(repo_id, family, task, repo_id, "hub", pipeline_class_for(family, task), dtype=dtype)


def _read_model_index(index: Path) -> str:
    try:
        class_name = json.loads(index.read_text())["_class_name"]
    except (OSError, ValueError, KeyError) as exc:
        raise KinetographError(f"{index} is not a valid diffusers model_index.json ({exc}). "
                               f"Re-download the model.") from None
    return class_name


def _looks_like_repo_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "~"))


def hub_offline() -> bool:
    """Whether the hub may not be reached (HF_HUB_OFFLINE, as huggingface_hub itself reads it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def missing_model_error(repo_id: str, pipeline_class: str | None, exc: BaseException) -> KinetographError:
    """The error for a model that is not on disk: which files, and the command that fetches them."""
    files = "model_index.json and the component folders"
    if pipeline_class:
        components = _pipeline_components(pipeline_class)
        if components:
            files = "model_index.json and " + ", ".join(f"{c}/" for c in components)
    why = "the network is off (HF_HUB_OFFLINE=1)" if hub_offline() else f"it could not be fetched ({type(exc).__name__})"
    return KinetographError(
        f"Model {repo_id!r} is not in the local Hugging Face cache and {why}. It needs {files} "
        f"(safetensors weights). Download it where there is network with:\n"
        f"    .venv/bin/hf download {repo_id}\n"
        f"or copy a downloaded diffusers folder here and pass --model /path/to/folder."
    )


def _pipeline_components(pipeline_class: str) -> list[str]:
    import diffusers

    cls = getattr(diffusers, pipeline_class, None)
    if cls is None:
        return []
    params = inspect.signature(cls.__init__).parameters
    optional = set(getattr(cls, "_optional_components", []))
    return [name for name in params if name != "self" and name not in optional
            and params[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]


# -------------------------------------------------------------------- tiny models
def ensure_tiny_model(name: str) -> Path:
    """Build the named tiny model once into the cache folder; return its folder."""
    import diffusers

    from .tiny_models import build_tiny_model

    folder = kinetograph_home() / "tiny" / f"v{TINY_CACHE_VERSION}-diffusers{diffusers.__version__}" / name
    if not (folder / "model_index.json").is_file():
        _quiet_library_progress_bars()
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_tiny_model(name, folder)
    return folder


# ------------------------------------------------------------------------ loading
# Components an encoder-only load leaves out, and a denoise-only load's encoders (staged loading).
HEAVY_COMPONENTS = ("transformer", "transformer_2", "unet", "vae", "motion_adapter")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")


def load_pipeline(source: ModelSource, plan=None, skip: tuple[str, ...] = ()):
    """Load the diffusers pipeline for ``source``.

    Components are loaded into host RAM, except those the memory ``plan`` says must be loaded
    differently (``plan.load_kwargs``: straight onto the GPU, or split between GPU, RAM and disk
    with an accelerate device map) so their weights never all sit in RAM at once. Placement
    after loading is ``memory.apply_plan``'s job. ``skip``: components left out (None), for
    plans that load the encoders and the denoiser at different times.
    """
    import diffusers
    import torch

    cls = getattr(diffusers, source.pipeline_class)
    _quiet_library_progress_bars()  # every front door shows its own "load" progress instead
    dtype: Any = getattr(torch, source.dtype)
    if source.component_dtypes:
        dtype = {"default": dtype, **{k: getattr(torch, v) for k, v in source.component_dtypes.items()}}
    local_only = source.kind in ("tiny", "folder")
    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True}
    if local_only:
        kwargs["local_files_only"] = True
    present = set(_model_index(source)) if skip else set()
    kwargs.update({name: None for name in skip if name in present})
    try:
        for component, repo in source.extra_repos.items():
            if component not in skip:
                kwargs[component] = _load_extra_component(component, repo, dtype)
        for component in (plan.load_kwargs if plan is not None else {}):
            if component not in skip:
                kwargs[component] = _load_planned_component(source, component, plan, kwargs)
        if source.denoiser_file and not set(skip) & {"transformer", "unet"}:
            name, module = _load_single_file_denoiser(source, kwargs)
            kwargs[name] = module
        pipe = cls.from_pretrained(source.location, **kwargs)
    except KinetographError:
        raise
    except (OSError, ValueError) as exc:
        if source.kind == "hub" and _is_missing_files(exc):
            raise missing_model_error(source.location, source.pipeline_class, exc) from None
        raise KinetographError(
            f"Could not load {source.location} as {source.pipeline_class}: {exc}. Check that the folder or "
            f"repo is a complete diffusers {source.family.label} model for the task {source.task!r}."
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load_planned_component(source: ModelSource, component: str, plan, pipeline_kwargs: dict[str, Any]):
    """One component loaded with the from_pretrained arguments its memory plan asks for."""
    import importlib

    from .memory.apply import load_kwargs_for

    index = _model_index(source)
    if component not in index:
        raise KinetographError(f"The memory plan names a component {component!r} that {source.location} lacks.")
    library, class_name = index[component]
    model_class = getattr(importlib.import_module(library), class_name)
    common = {k: v for k, v in pipeline_kwargs.items() if k in ("use_safetensors", "local_files_only")}
    dtype = pipeline_kwargs["dtype"]
    if isinstance(dtype, dict):
        dtype = dtype.get(component, dtype["default"])
    config = model_class.load_config(source.location, subfolder=component, **{
        k: v for k, v in common.items() if k == "local_files_only"})
    return model_class.from_pretrained(source.location, subfolder=component, dtype=dtype, **common,
                                       **load_kwargs_for(plan, component, model_class, config))


def _load_single_file_denoiser(source: ModelSource, pipeline_kwargs: dict[str, Any]):
    """The transformer/UNet from a single .safetensors file, configured by the base model's folder.

    diffusers converts original-format keys (Wan, LTX releases) to its own layout on the way in."""
    import importlib

    index = _model_index(source)
    name = "transformer" if "transformer" in index else "unet"
    library, class_name = index[name]
    model_class = getattr(importlib.import_module(library), class_name)
    if not hasattr(model_class, "from_single_file"):
        raise KinetographError(f"diffusers cannot load a single-file {class_name}; use a diffusers folder.")
    dtype = pipeline_kwargs["dtype"]
    if isinstance(dtype, dict):
        dtype = dtype.get(name, dtype["default"])
    try:
        module = model_class.from_single_file(source.denoiser_file, config=source.location, subfolder=name, dtype=dtype,
                                              local_files_only=source.kind in ("tiny", "folder"))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise KinetographError(
            f"Could not load {source.denoiser_file} as the {class_name} of {source.ref}: {exc}. Check that the "
            f"file is a {source.family.label} transformer of the same size as that model."
        ) from None
    return name, module


def _model_index(source: ModelSource) -> dict[str, Any]:
    if source.kind in ("tiny", "folder"):
        path = Path(source.location) / "model_index.json"
    else:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(source.location, "model_index.json"))
    return json.loads(path.read_text())


def _quiet_library_progress_bars() -> None:
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _load_extra_component(component: str, repo: str, dtype: Any):
    import diffusers

    if component != "motion_adapter":
        raise KinetographError(f"Unknown extra component {component!r} in a preset.")
    try:
        return diffusers.MotionAdapter.from_pretrained(repo, dtype=dtype if not isinstance(dtype, dict)
                                                       else dtype["default"], use_safetensors=True)
    except OSError as exc:
        raise missing_model_error(repo, None, exc) from None


def _is_missing_files(exc: BaseException) -> bool:
    """Whether loading failed because files are not on disk and could not be fetched: huggingface_hub's
    own error types anywhere in the chain (diffusers wraps them in an OSError)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    missing = (EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError)
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, missing):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


# ------------------------------------------------------------------------ manager
class ModelManager:
    """Loads pipelines once and keeps them in a byte-bounded LRU cache across jobs.

    Pipelines of one checkpoint for different tasks (LTX t2v, i2v and keyframes read one folder)
    share their components: the second is made with diffusers' ``from_pipe``, not loaded again."""

    def __init__(self, cache=None) -> None:
        from .memory.cache import PipelineCache

        self.cache = cache if cache is not None else PipelineCache()
        # weights (source.weights_key) -> {cache key: how it was loaded (load signature, skipped components)}
        self._keys: dict[tuple, dict[str, tuple]] = {}

    def get(self, source: ModelSource, plan=None, skip: tuple[str, ...] = ()):
        """The loaded pipeline; ``plan`` says how components must be loaded, ``skip`` which are left out
        (see load_pipeline)."""
        load_signature = json.dumps(plan.load_kwargs, sort_keys=True, default=str) if plan is not None else "{}"
        loaded_as = (load_signature, tuple(sorted(skip)))
        key = repr((source.cache_key, *loaded_as))
        sibling = self._sibling(source, loaded_as) if key not in self.cache else None
        self._keys.setdefault(source.weights_key, {})[key] = loaded_as
        if sibling is not None:
            return self.cache.get(key, lambda: _from_pipe(source, sibling))
        return self.cache.get(key, lambda: load_pipeline(source, plan, skip))

    def _sibling(self, source: ModelSource, loaded_as: tuple):
        """A cached pipeline of the same weights, loaded the same way, for another task."""
        for key, how in list(self._keys.get(source.weights_key, {}).items()):
            if how == loaded_as and key in self.cache:
                return self.cache.get(key, lambda: None)
        return None

    def release(self, source: ModelSource | None = None) -> None:
        """Drop one model (every pipeline made from its weights), or all of them, from memory."""
        if source is None:
            self.cache.clear()
            self._keys.clear()
            return
        for key in self._keys.pop(source.weights_key, {}):
            self.cache.release(key)


def _from_pipe(source: ModelSource, sibling):
    """The pipeline for ``source``'s task built on a loaded sibling's components (no weights loaded)."""
    import diffusers

    pipe = getattr(diffusers, source.pipeline_class).from_pipe(sibling)
    pipe.set_progress_bar_config(disable=True)
    return pipe
