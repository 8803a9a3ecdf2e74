"""Offload hooks on CPU (issue 16): staged encoders follow the plan, fp8 re-applied, leaf hooks removed.

The CPU stands in for the GPU as the onload device (as in test_memory's placement test): diffusers'
and accelerate's hooks are the same objects either way, only the copies go nowhere.
"""
from __future__ import annotations

import pytest

from pipelines.memory import DeviceFacts, JobShape, measure_components
from pipelines.memory.planner import evaluate_all

SHAPE = JobShape(9, 32, 32, steps=1)


@pytest.fixture
def fresh_wan():
    """A tiny bf16 Wan pipeline nobody else has hooked (each test gets its own)."""
    import diffusers
    import torch

    from pipelines.models import ensure_tiny_model

    pipe = diffusers.WanPipeline.from_pretrained(ensure_tiny_model("tiny-wan"), dtype=torch.bfloat16,
                                                 local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _plans(pipe):
    plans = evaluate_all(measure_components(pipe), SHAPE, DeviceFacts.gpu(8, 16))
    for p in plans:  # CUDA streams need CUDA; everything else is the real code path
        for c in p.components.values():
            c.use_stream = c.record_stream = False
    return plans


def _hook_counts(module) -> dict[str, int]:
    """Hooks by name over ``module`` and all its submodules (diffusers registries and accelerate)."""
    counts: dict[str, int] = {}
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        for name in (registry.hooks if registry is not None else {}):
            counts[name] = counts.get(name, 0) + 1
        if hasattr(sub, "_hf_hook"):
            counts["accelerate"] = counts.get("accelerate", 0) + 1
    return counts


# ------------------------------------------------------------------ bug 1
def test_staged_encoder_loading_places_the_encoder_as_the_plan_says(monkeypatch, fresh_wan):
    """Bug 1: the staged (encoders-alone) path moved the whole encoder to the GPU with ``.to(...)``
    although the plan offloads it layer by layer."""
    import torch

    from pipelines import engine
    from pipelines.memory import apply

    plan = next(p for p in _plans(fresh_wan)
                if p.components["text_encoder"].placement == "leaf_offload" and p.staged_load)
    assert plan.text_encode_device == "cuda"
    encoder_pipe = fresh_wan
    moved = []
    real_to = type(encoder_pipe).to

    def recording_to(self, *args, **kwargs):
        moved.append((args, kwargs))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(type(encoder_pipe), "to", recording_to)
    monkeypatch.setattr(engine, "load_pipeline", lambda source, plan_, skip=(): encoder_pipe)
    monkeypatch.setattr(apply, "_cuda_device", lambda facts=None: torch.device("cpu"))  # the CPU plays the GPU
    seen = {}

    class Adapter:
        def encode_prompt(self, pipe, job, device):
            seen["hooks"] = _hook_counts(pipe.text_encoder)
            seen["device"] = device
            return {"prompt_embeds": torch.zeros(1)}

    timings: dict[str, float] = {}
    embeds = engine._encode_with_encoders_alone(None, Adapter(), None, plan, lambda *a: None, timings)
    assert "prompt_embeds" in embeds and "encode" in timings
    assert not moved, f"the encoder pipeline was moved whole: {moved}"
    leaves = sum(1 for m in encoder_pipe.text_encoder.modules() if isinstance(m, torch.nn.Linear))
    assert seen["hooks"].get("group_offloading", 0) >= leaves  # leaf-level group offload, as planned
    assert seen["device"] == "cuda"


def test_place_text_encoders_follows_every_encoder_placement(monkeypatch, fresh_wan):
    import torch

    from pipelines.memory import apply

    monkeypatch.setattr(apply, "_cuda_device", lambda facts=None: torch.device("cpu"))
    plans = _plans(fresh_wan)
    for placement in ("leaf_offload", "gpu", "cpu"):
        plan = next(p for p in plans if p.components["text_encoder"].placement == placement)
        notes = apply.place_text_encoders(fresh_wan, plan)
        assert len(notes) == 1 and notes[0].startswith("text_encoder: ")
        hooks = _hook_counts(fresh_wan.text_encoder)
        assert bool(hooks.get("group_offloading")) == (placement == "leaf_offload"), (placement, hooks)
        assert not _hook_counts(fresh_wan.transformer)  # only the encoders are touched


def test_place_text_encoders_without_cuda_moves_nothing(fresh_wan):
    plan = next(p for p in _plans(fresh_wan) if p.components["text_encoder"].placement == "leaf_offload")
    from pipelines.memory.apply import place_text_encoders

    notes = place_text_encoders(fresh_wan, plan, DeviceFacts.detect())
    assert len(notes) == 1 and "no CUDA" in notes[0]
    assert not _hook_counts(fresh_wan.text_encoder)


# ------------------------------------------------------------------ bug 2
@pytest.mark.parametrize("tier", ["resident", "model_offload"])
def test_fp8_plan_applied_twice_to_a_cached_pipeline(fresh_wan, tier):
    """Bug 2: layerwise casting hooks sit on leaf layers; the second apply raised
    ``ValueError: Hook with name layerwise_casting already exists``."""
    import torch

    from pipelines.memory.apply import _remove_offloading, place_components

    plan = next(p for p in _plans(fresh_wan) if p.fp8 and p.tier == tier)
    first = place_components(fresh_wan, plan, torch.device("cpu"))
    assert any("float8_e4m3fn" in n for n in first)
    casting = _hook_counts(fresh_wan.transformer)["layerwise_casting"]
    second = place_components(fresh_wan, plan, torch.device("cpu"))  # a second job, or OOM recovery
    assert any("already stored in fp8" in n for n in second)
    assert _hook_counts(fresh_wan.transformer)["layerwise_casting"] == casting  # not doubled
    _remove_offloading(fresh_wan)
    embeds = fresh_wan.encode_prompt("a fox", negative_prompt="", device="cpu")
    latents = fresh_wan(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], num_frames=9, height=32,
                        width=32, num_inference_steps=1, output_type="latent").frames
    assert torch.isfinite(latents.float()).all()


# ------------------------------------------------------------------ bug 3
def test_a_later_plan_removes_leaf_level_offload_hooks(fresh_wan):
    """Bug 3: leaf-level group offload registers hooks on the leaves only; removal looked at the top
    module's registry and found nothing, so the encoder's hooks survived the next plan."""
    import torch

    from pipelines.memory.apply import place_components, release_text_encoder

    plans = _plans(fresh_wan)
    offloaded = next(p for p in plans if p.components["text_encoder"].placement == "leaf_offload"
                     and p.tier == "group_sync")
    place_components(fresh_wan, offloaded, torch.device("cpu"))
    assert getattr(fresh_wan.text_encoder, "_diffusers_hook", None) is None  # the premise: leaves only
    assert _hook_counts(fresh_wan.text_encoder).get("group_offloading")
    resident = next(p for p in plans if p.tier == "resident" and not p.fp8
                    and p.components["text_encoder"].placement == "gpu")
    place_components(fresh_wan, resident, torch.device("cpu"))
    assert not _hook_counts(fresh_wan.text_encoder)
    assert not _hook_counts(fresh_wan.transformer)
    # and release drops them too (the module may be referenced elsewhere)
    place_components(fresh_wan, offloaded, torch.device("cpu"))
    encoder = fresh_wan.text_encoder
    release_text_encoder(fresh_wan, offloaded, names=("text_encoder",))
    assert not _hook_counts(encoder)
