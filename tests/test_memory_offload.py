"""Offload hooks on CPU (issue 16): staged encoders follow the plan, fp8 re-applied, leaf hooks removed.

The CPU stands in for the GPU as the onload device (as in test_memory's placement test): diffusers'
and accelerate's hooks are the same objects either way, only the copies go nowhere.
"""
from __future__ import annotations

import importlib

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

    from pipelines.memory import apply
    from pipelines.tasks import generate as engine  # the generation task holds the staged encode

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
    from pipelines.events import Events

    embeds = engine._encode_with_encoders_alone(None, Adapter(), None, plan, None, Events(), timings)
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


# ------------------------------------------------------------------ measuring and budgets (items 4, 6)
def _pin_memory_failure():
    """A failed cudaHostAlloc reads like a VRAM OOM; only the frame it is raised from tells them apart."""
    def pin_memory():
        raise RuntimeError("CUDA error: out of memory")

    try:
        pin_memory()
    except RuntimeError as exc:
        return exc


def test_memory_errors_are_told_apart():
    import torch

    from pipelines.memory import memory_error_kind

    assert memory_error_kind(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "vram"
    assert memory_error_kind(RuntimeError("CUDA error: out of memory")) == "vram"
    assert memory_error_kind(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate")) == "vram"
    assert memory_error_kind(_pin_memory_failure()) == "host"
    assert memory_error_kind(RuntimeError("[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't "
                                          "allocate memory: you tried to allocate 8 bytes.")) == "host"
    assert memory_error_kind(RuntimeError("shape mismatch")) is None
    assert memory_error_kind(MemoryError()) is None


def test_pinned_memory_failure_steps_the_ram_side_of_the_ladder():
    from pipelines.memory import StageRunner, plan_ladder, profile_sizes

    # 8 GB of VRAM and 96 GB of RAM: the first plan keeps pre-pinned copies (88 GB), a later one keeps less.
    # (At 40 GB loading the transformer, 4 + 28.6 + 0.5 GB + a 5 GB shard, is every rung's denoise peak.)
    ladder = plan_ladder(profile_sizes("wan2.1-t2v-14b"), JobShape(81, 480, 832, steps=30), DeviceFacts.gpu(8, 96))
    calls = []

    def denoise():
        calls.append(1)
        if len(calls) == 1:
            raise _pin_memory_failure()
        return "latents"

    runner = StageRunner(ladder, apply=lambda p: None)
    assert runner.run("denoise", denoise) == "latents"
    first, now = ladder[0], runner.plan
    assert now.stage_ram["denoise"] < first.stage_ram["denoise"]
    assert runner.attempts[0]["memory"] == "host" and "host RAM" in runner.notes[0]
    # the VRAM side steps to the next plan with less VRAM, which need not need less RAM
    vram = StageRunner(ladder, apply=lambda p: None)
    vram.ladder.step_down("denoise", "vram")
    assert vram.plan.stage_vram["denoise"] < first.stage_vram["denoise"]


def test_stage_peaks_are_recorded_per_stage_and_guarded_without_cuda():
    from pipelines.memory import StageRunner, measure_peaks, plan_ladder, profile_sizes

    peaks = measure_peaks(DeviceFacts.detect())
    assert peaks["max_reserved_bytes"] is None and peaks["peak_rss_bytes"] > 0  # CPU: host only
    ladder = plan_ladder(profile_sizes("wan2.1-t2v-14b"), JobShape(81, 480, 832, steps=30), DeviceFacts.gpu(24, 64),
                         budget_gb=8)
    assert all(p.budget_from_user for p in ladder)
    runner = StageRunner(ladder, apply=lambda p: None, stage_peaks=True)
    for stage in ("encode", "denoise", "decode"):
        runner.run(stage, lambda stage=stage: stage)
    record = runner.memory_record()
    assert set(record["stage_peaks"]) == {"encode", "denoise", "decode"}
    assert record["budget"]["budget_bytes"] == ladder[0].vram_budget_bytes
    assert record["budget"]["met"] is None  # nothing measured on the CPU: neither met nor missed


def test_budget_check_uses_reserved_and_step_downs():
    from pipelines.memory import budget_check

    within = {"denoise": {"max_allocated_bytes": 5 * 10**9, "max_reserved_bytes": 7 * 10**9}}
    over = {"denoise": {"max_allocated_bytes": 5 * 10**9, "max_reserved_bytes": 9 * 10**9}}
    ok = [{"stage": "denoise", "ok": True}]
    assert budget_check(within, 8 * 10**9, ok)["met"] is True
    assert budget_check(over, 8 * 10**9, ok)["met"] is False  # allocated fits; reserved does not
    assert budget_check(within, 8 * 10**9, [{"stage": "denoise", "ok": False}, *ok])["met"] is False


def test_budget_is_enforced_only_when_given(monkeypatch):
    import torch

    from pipelines.memory import apply, plan_ladder, profile_sizes

    fractions = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, *a: fractions.append(f))
    monkeypatch.setattr(apply, "_capped", {"fraction": None})
    facts = DeviceFacts.gpu(80, 64)
    sizes, shape = profile_sizes("wan2.1-t2v-14b"), JobShape(81, 480, 832, steps=30)
    budgeted = plan_ladder(sizes, shape, facts, budget_gb=8)[0]
    free = plan_ladder(sizes, shape, facts)[0]
    assert apply.enforce_vram_budget(free, facts, free.budget_from_user) == [] and fractions == []
    notes = apply.enforce_vram_budget(budgeted, facts, budgeted.budget_from_user)
    assert fractions == [pytest.approx(8 / 80)] and "capped at 8.0 GB" in notes[0]
    apply.enforce_vram_budget(free, facts, free.budget_from_user)
    assert fractions[-1] == 1.0  # the next job without a budget gets the whole card back


def test_host_copy_speed_is_measured_once_and_feeds_the_facts(monkeypatch):
    from pipelines.memory import device

    calls = []
    monkeypatch.setattr(device, "_MEASURED", {})
    monkeypatch.setattr(device, "_measure_host_copy_speed",
                        lambda mb, r: calls.append(1) or {"host_copy_gbps": 5.0, "pin_gbps": 3.0})
    assert device.measure_host_copy_speed() == {"host_copy_gbps": 5.0, "pin_gbps": 3.0}
    device.measure_host_copy_speed()
    assert calls == [1]  # cached, like the link speeds
    # the planner's speed model uses it: the low-RAM Wan 14B plan pins every block on the fly
    from pipelines.memory import plan_ladder, profile_sizes

    sizes, shape = profile_sizes("wan2.1-t2v-14b"), JobShape(81, 480, 832, steps=30)
    h100 = dict(name="NVIDIA H100 80GB HBM3", vram_gb=80, ram_gb=40)
    fast = plan_ladder(sizes, shape, DeviceFacts.gpu(**h100, host_copy_gbps=10.0), budget_gb=8)[0]
    assert fast.tier == "group_stream_lowmem" and fast.predicted_slowdown < 1.05
    slow = next(p for p in evaluate_all(sizes, shape, DeviceFacts.gpu(**h100, host_copy_gbps=5.0), budget_gb=8)
                if p.name == fast.name)
    assert slow.predicted_slowdown > 1.3  # the assumption decides the plan's speed: hence measured


def test_host_copy_probe_without_cuda_measures_nothing():
    import torch

    from pipelines.memory import device

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the real probe runs in bench/memory.py --gpu-check")
    assert device._measure_host_copy_speed(1, 1) == {}


# ------------------------------------------------------------------ hub repos from their headers
def test_any_hub_repo_is_planned_from_its_headers_without_weights(monkeypatch):
    """A fake hub serving the tiny-wan folder's headers gives the same sizes as the folder itself."""
    import huggingface_hub
    from huggingface_hub.utils._safetensors import SafetensorsFileMetadata, TensorInfo

    hub = importlib.import_module("pipelines.memory.hub_sizes")  # the module (the package exports the function)
    from pipelines.memory import measure_folder
    from pipelines.memory.sizes import read_safetensors_header
    from pipelines.models import ensure_tiny_model

    root = ensure_tiny_model("tiny-wan")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    fetched = []

    class FakeApi:
        def list_repo_files(self, repo_id, revision=None, token=None):
            return files

        def parse_safetensors_file_metadata(self, repo_id, filename, revision=None, token=None):
            fetched.append(filename)
            header = read_safetensors_header(root / filename)
            return SafetensorsFileMetadata(metadata={}, tensors={
                k: TensorInfo(dtype=v["dtype"], shape=v["shape"], data_offsets=tuple(v["data_offsets"]))
                for k, v in header.items()})

    monkeypatch.setattr(hub, "_api", FakeApi)
    monkeypatch.setattr(hub, "_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, **kw: str(root / name))
    sizes = hub.hub_sizes("someone/any-wan-repo")
    local = measure_folder(root)
    assert sizes.name == "someone/any-wan-repo" and "hub" in sizes.source
    assert {n: c.params for n, c in sizes.components.items()} == {n: c.params for n, c in local.components.items()}
    assert sizes.denoiser == local.denoiser
    assert fetched and all(f.endswith(".safetensors") for f in fetched)  # headers only, via the API
    # `app.py plan` takes the same path for a hub repo it has no profile of and has not downloaded
    from pipelines import engine

    headers_read = len(fetched)
    plan = engine.plan_for_model("someone/any-wan-repo", frames=9, width=64, height=64, budget_gb=8, ram_gb=16)
    assert plan.predicted_peak_vram_bytes > 0 and len(fetched) > headers_read


def test_hub_sizes_offline_fails_with_what_to_do(monkeypatch):
    from pipelines.errors import KinetographError
    hub = importlib.import_module("pipelines.memory.hub_sizes")  # the module (the package exports the function)

    monkeypatch.setattr(hub, "_offline", lambda: True)
    with pytest.raises(KinetographError, match="HF_HUB_OFFLINE.*hf download someone/repo"):
        hub.hub_sizes("someone/repo")

    class NoNetwork:
        def list_repo_files(self, *a, **k):
            raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(hub, "_offline", lambda: False)
    monkeypatch.setattr(hub, "_api", NoNetwork)
    with pytest.raises(KinetographError, match="ConnectionError.*local folder"):
        hub.hub_sizes("someone/repo")
