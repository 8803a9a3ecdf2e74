"""engine.run(job): a typed job -> its task function -> an output with metadata -> Result.

One entry point for every front door (CLI, ComfyUI nodes, the web app, workflow files, the
worker): build a job, call ``run(job, events, cancel)``. The job is checked here, once; the
task function does the work and reports through ``events`` (see ``events.py``).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import KinetographError
from .events import Events, as_events
from .jobs import MemoryOptions, job_kind
from .jobspec import JobSpec
from .memory import DeviceFacts
from .models import ModelManager, resolve_model
from .progress import CancelToken
from .results import METADATA_FORMAT, Result, __version__
from .tasks.generate import (
    EncodedPrompt,
    GeneratedFrames,
    local_folder,
    sizes_before_loading,
)
from .tasks.generate import generate_frames as _generate_frames

__all__ = ["run", "generate_frames", "plan_for_model", "default_manager", "Result", "EncodedPrompt",
           "GeneratedFrames", "METADATA_FORMAT", "__version__"]

_default_manager: ModelManager | None = None


def default_manager() -> ModelManager:
    """One model cache per process, shared by every front door."""
    global _default_manager
    if _default_manager is None:
        _default_manager = ModelManager()
    return _default_manager


def run(job, events: Events | Callable[..., Any] | None = None, cancel: CancelToken | None = None,
        manager: ModelManager | None = None, *, output_dir: str | Path | None = None, overwrite: bool = False,
        device_facts: DeviceFacts | None = None, budget_gb: float | None = None, ram_gb: float | None = None,
        memory_mode: str | None = None, progress: Callable[..., Any] | None = None) -> Result:
    """Run one job of any kind end to end and return where its video is.

    ``events``: an ``Events`` (any number of subscribers), or a ``progress(stage, done, total)``
    function; ``progress=`` is the same, kept for callers of the first engine.
    ``output_dir``/``overwrite``: where default names go, and whether ``job.out`` may be replaced.
    ``budget_gb``/``ram_gb``/``memory_mode``/``device_facts``: memory planning (generation).
    """
    events = as_events(events if events is not None else progress)
    cancel = cancel or CancelToken()
    manager = manager or default_manager()
    kind = job_kind(job)
    job.check()
    memory = MemoryOptions(budget_gb=budget_gb, ram_gb=ram_gb, mode=memory_mode, device_facts=device_facts).check()
    cancel.raise_if_cancelled()
    if kind == "generate":
        from .tasks.generate import generate

        return generate(job, events, cancel, manager, output_dir=output_dir, overwrite=overwrite, memory=memory)
    if kind == "extend":
        from .tasks.extend import extend

        return extend(job, events, cancel, manager, output_dir=output_dir, overwrite=overwrite, memory=memory)
    from .tasks.interpolate import interpolate

    return interpolate(job, events, cancel, manager, overwrite=overwrite, device_facts=device_facts)


def generate_frames(job: JobSpec, images: dict[str, Any] | None = None, progress: Callable[..., Any] | None = None,
                    cancel: CancelToken | None = None, manager: ModelManager | None = None,
                    device_facts: DeviceFacts | None = None, budget_gb: float | None = None,
                    ram_gb: float | None = None, memory_mode: str | None = None,
                    encoded_prompt: EncodedPrompt | None = None, events: Events | None = None,
                    dtype: str | None = None) -> GeneratedFrames:
    """A generation's frames in memory, nothing written (see ``tasks.generate.generate_frames``).
    ``dtype``: load the weights in this dtype instead of the automatic choice (fp32 on the CPU)."""
    memory = MemoryOptions(budget_gb=budget_gb, ram_gb=ram_gb, mode=memory_mode, device_facts=device_facts,
                           dtype=dtype)
    return _generate_frames(job, images=images, events=events if events is not None else as_events(progress),
                            cancel=cancel, manager=manager, memory=memory, encoded_prompt=encoded_prompt)


def rerun(path: str | Path, out: str | None = None, **options) -> Result:
    """Re-run the job an output carries (inputs checked against their hashes); ``out``: the new file."""
    import dataclasses

    from .results import job_from_output

    job, _meta = job_from_output(path)
    if out is not None:
        job = dataclasses.replace(job, out=out)
    elif getattr(job, "out", None):
        job = dataclasses.replace(job, out=None)  # never aim at the original's name; a new one is chosen
    return run(job, **options)


# ----------------------------------------------------------------------- planning
def plan_for_model(model: str, task: str = "t2v", frames: int | None = None, width: int | None = None,
                   height: int | None = None, steps: int | None = None, guidance: float | None = None,
                   facts: DeviceFacts | None = None, budget_gb: float | None = None, ram_gb: float | None = None,
                   mode: str | None = None):
    """The memory plan a job would get, without loading (or downloading) any weights.

    Presets and known hub repos are planned from their size profiles; built-in tiny models,
    local folders and downloaded repos are measured from their safetensors headers; any other
    hub repo from the headers read over the network (``memory.hub_sizes``: nothing downloaded).
    """
    from .memory import JobShape, plan_memory, profile_sizes
    from .memory.sizes import REPO_PROFILES

    # The job's shape and the memory options are checked before anything is resolved or read.
    JobSpec(task="t2v", model=model, prompt="plan", frames=frames, width=width, height=height, steps=steps,
            guidance=guidance, seed=0).check()
    MemoryOptions(budget_gb=budget_gb, ram_gb=ram_gb, mode=mode).check()
    facts = facts or DeviceFacts.detect()
    if model in REPO_PROFILES:  # a known hub repo: planned from its profile, nothing fetched
        sizes, family = profile_sizes(model), resolve_family_of_profile(model)
    else:
        source = resolve_model(model, task, prefer_cuda=facts.has_cuda)
        family, sizes = source.family, sizes_before_loading(source)
        if sizes is None and source.kind == "hub":
            from .memory.hub_sizes import hub_sizes

            try:
                sizes = hub_sizes(source.location)
            except KinetographError:
                local_folder(source)  # offline: the missing-model error (files needed, download command)
                raise
    # The job's shape with the family's defaults and rounding (no prompt or images needed to plan).
    shaped = JobSpec(task="t2v", model=model, prompt="plan", frames=frames, width=width, height=height,
                     steps=steps, guidance=guidance, seed=0).check().adapted_to(family)
    shape = JobShape(frames=shaped.frames, height=shaped.height, width=shaped.width, cfg=shaped.guidance > 1.0,
                     steps=shaped.steps)
    return plan_memory(sizes, shape, facts, budget_gb=budget_gb, ram_gb=ram_gb, mode=mode)


def resolve_family_of_profile(repo_id: str):
    from .families import PRESETS, get_family

    for preset in PRESETS.values():
        if repo_id in preset.repos.values():
            return get_family(preset.family)
    raise KinetographError(f"No preset uses {repo_id!r}; plan it through a local folder instead.")

