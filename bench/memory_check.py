"""``python bench/memory.py --gpu-check [--dry-run]``: the issue-16 GPU check in one command.

With CUDA (one 80 GB GPU, random weights at real size; planned to take under 8 minutes):

1. Wan 2.1 14B transformer, 81x480x832, one forward per step, 8 GB budget, 64 GB RAM: the planner's
   plan runs under ``StageRunner`` with the CUDA allocator capped at the budget (``apply_plan`` enforces a
   user budget). Thresholds: no out-of-memory and no step down; reserved <= 8.0 GB; time per step <= 1.25x
   all-on-GPU (same run); within +-10% of the planner's prediction once the planner is fed the measured
   link / host-copy speeds and the measured all-on-GPU compute time; host RSS recorded.
2. One forward pass offloaded vs resident with the same weights: equal within bf16 tolerance.
3. The same ladder under a forced 6 GB cap: steps down and finishes.
4. A full engine job (``pipelines.engine.run``) under an 8 GB budget, peaks reset between stages:
   encode <= 3.0 GB, denoise <= 8 GB reserved, decode <= 3.0 GB, no retries; and again with a 40 GB RAM
   budget (the staged-encoder plan of bug 1). The model is ``--engine-model`` (default ``tiny-wan``: a
   real-size run needs a local real-size diffusers folder, e.g. Wan2.1-T2V-14B-Diffusers; the machine
   may have no network).

``--dry-run`` runs the same code end to end on the CPU at tiny size (the tiny-wan transformer under the
tier the real plan picks, the engine job on tiny-wan) and skips only what needs CUDA: those thresholds
are recorded as skipped. Results go to ``bench/results/memory-<gpu>-<date>.json`` (``--out``), one row per
threshold with pass/fail; the exit status is 1 if any threshold failed.
"""
from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

GB = 1e9
SKIP = "skipped (no CUDA: dry run)"


class Checks:
    """Thresholds with their measurements and pass/fail."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, measured: Any, threshold: str, passed: bool | None, **extra: Any) -> None:
        status = SKIP if passed is None else ("pass" if passed else "FAIL")
        self.rows.append({"check": name, "measured": measured, "threshold": threshold, "status": status, **extra})
        shown = f"{measured:.3f}" if isinstance(measured, float) else str(measured)
        print(f"  [{status:>4}] {name}: {shown} (threshold {threshold})", flush=True)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "FAIL"]


def _gb(value: int | None) -> float | None:
    return None if value is None else round(value / GB, 3)


# ------------------------------------------------------------------------ the transformer
def _transformer(bench: Any, cuda: bool):
    """Real-size Wan 14B (random bf16) with CUDA; the tiny-wan transformer (its random weights) without.
    ``bench``: bench/memory.py (the real configs and the random-weight builder)."""
    import torch

    if cuda:
        return bench.build_transformer(bench.MODELS["wan-14b"], "cpu")
    import diffusers

    from pipelines.models import ensure_tiny_model

    model = diffusers.WanTransformer3DModel.from_pretrained(ensure_tiny_model("tiny-wan"), subfolder="transformer",
                                                            dtype=torch.bfloat16, local_files_only=True)
    return model.eval()


def _inputs(model: Any, shape: Any, sizes: Any, device: str) -> dict[str, Any]:
    import torch

    cfg = model.config
    vae = sizes.vae
    lf = (shape.frames - 1) // vae.temporal_ratio + 1
    lh, lw = shape.height // vae.spatial_ratio, shape.width // vae.spatial_ratio
    g = torch.Generator("cpu").manual_seed(0)
    bf = torch.bfloat16
    return dict(hidden_states=torch.randn(1, cfg.in_channels, lf, lh, lw, generator=g).to(device, bf),
                timestep=torch.tensor([500.0], device=device),
                encoder_hidden_states=torch.randn(1, 512, cfg.text_dim, generator=g).to(device, bf),
                return_dict=False)


def _forwards(model: Any, inputs: dict[str, Any], steps: int, cuda: bool) -> dict[str, Any]:
    """Seconds per forward after one warm-up forward, and the last output (on the CPU, float32)."""
    import torch

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with torch.inference_mode():
        out = model(**inputs)[0]
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            out = model(**inputs)[0]
        sync()
    return {"seconds_per_step": (time.perf_counter() - start) / max(1, steps), "output": out.float().cpu()}


def _runner(ladder: list, pipe: Any, facts: Any, cuda: bool, cap_gb: float | None = None):
    """A StageRunner that applies plans as a job does: ``apply_plan`` on CUDA (it enforces the user's
    budget), the same placement code with the CPU as onload device in a dry run (streams need CUDA)."""
    import torch

    from pipelines.memory import StageRunner, apply_plan
    from pipelines.memory.apply import place_components

    def apply(plan):
        if cuda:
            notes = apply_plan(pipe, plan, facts)
            if cap_gb is not None:
                torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gb * GB / facts.total_vram))
            return notes
        for comp in plan.components.values():
            comp.use_stream = comp.record_stream = False
        return place_components(pipe, plan, torch.device("cpu"))

    return StageRunner(ladder, apply=apply, stage_peaks=True, facts=facts)


def _uncap(cuda: bool) -> None:
    from pipelines.memory import apply as apply_mod
    from pipelines.memory.apply import release_memory

    if cuda:
        import torch

        torch.cuda.set_per_process_memory_fraction(1.0)
        apply_mod._capped["fraction"] = None
    release_memory()


def check_transformer(bench: Any, checks: Checks, facts: Any, cuda: bool, steps: int) -> dict[str, Any]:
    import torch

    from pipelines.memory import JobShape, PlannerSettings, plan_ladder, profile_sizes
    from pipelines.memory.apply import _remove_hooks_from
    from pipelines.memory.planner import evaluate_all
    from pipelines.memory.sizes import measure_components

    real_sizes, real_shape = profile_sizes("wan2.1-t2v-14b"), JobShape(81, 480, 832, cfg=False, steps=steps)
    real_ladder = plan_ladder(real_sizes, real_shape, facts, budget_gb=8, ram_gb=64)
    print(f"\n== Wan 2.1 14B transformer, {real_shape.describe()}, 8 GB budget, 64 GB RAM: plan "
          f"{real_ladder[0].name}", flush=True)
    model = _transformer(bench, cuda)
    pipe = SimpleNamespace(components={"transformer": model}, transformer=model)
    if cuda:
        sizes, shape, ladder = real_sizes, real_shape, real_ladder
    else:  # the same tiers on the tiny transformer (planned for a hypothetical 8 GB GPU)
        sizes, shape = measure_components(pipe), JobShape(9, 32, 32, cfg=False, steps=steps)
        ladder = [p for tier in dict.fromkeys(p.tier for p in real_ladder)
                  for p in plan_ladder(sizes, shape, facts, budget_gb=8, ram_gb=64, mode=tier)[:1]]
    device = "cuda" if cuda else "cpu"
    inputs = _inputs(model, shape, real_sizes, device)  # Wan VAE ratios (the tiny transformer alone has no VAE)
    # all on the GPU: the reference for speed and for the offloaded output
    _uncap(cuda)
    model.to(device)
    resident = _forwards(model, inputs, steps, cuda)
    model.to("cpu")
    _uncap(cuda)

    # the planner's plan under the 8 GB budget
    runner = _runner(ladder, pipe, facts, cuda)
    with bench.PeakRSS() as rss:
        planned = runner.run("denoise", lambda: _forwards(model, inputs, steps, cuda))
    record = runner.memory_record(budget_bytes=int(8 * GB))
    peaks = record["stage_peaks"]["denoise"]
    _remove_hooks_from(model)
    model.to("cpu")
    _uncap(cuda)

    checks.add("14B @ 8 GB: no OOM, no step down", [a["plan"] for a in runner.attempts],
               "one attempt, ok", len(runner.attempts) == 1 and runner.attempts[0]["ok"])
    reserved = _gb(peaks["max_reserved_bytes"])
    checks.add("14B @ 8 GB: reserved peak GB", reserved, "<= 8.0", None if reserved is None else reserved <= 8.0,
               allocated_gb=_gb(peaks["max_allocated_bytes"]), device_used_gb=_gb(peaks["device_used_bytes"]))
    ratio = planned["seconds_per_step"] / resident["seconds_per_step"]
    checks.add("14B @ 8 GB: time per step vs all on GPU", round(ratio, 3), "<= 1.25", ratio <= 1.25 if cuda else None,
               seconds_per_step=planned["seconds_per_step"], resident_seconds_per_step=resident["seconds_per_step"])
    # the planner fed what was measured: link and host-copy speeds (facts) and the resident compute time
    plan = runner.plan
    efficiency = PlannerSettings().compute_efficiency * plan.reference_seconds_per_step / resident["seconds_per_step"]
    fed = next((p for p in evaluate_all(sizes, shape, facts, budget_gb=8, ram_gb=64,
                                        settings=PlannerSettings(compute_efficiency=efficiency))
                if p.name == plan.name), plan)
    error = planned["seconds_per_step"] / fed.seconds_per_step - 1
    checks.add("14B @ 8 GB: time per step vs prediction (measured speeds)", round(error, 3), "within +-0.10",
               abs(error) <= 0.10 if cuda else None, predicted_seconds_per_step=fed.seconds_per_step)
    checks.add("14B @ 8 GB: host RSS peak GB (recorded)", round(rss.peak / GB, 3), "recorded", True,
               predicted_ram_gb=round(plan.breakdown["denoiser_only_ram_bytes"] / GB, 3))
    diff = (planned["output"] - resident["output"]).abs().max().item()
    scale = resident["output"].abs().max().item() or 1.0
    checks.add("offloaded vs resident forward: max |diff| / max |out|", round(diff / scale, 5), "<= 0.02 (bf16)",
               diff / scale <= 0.02)

    # a forced 6 GB cap: the ladder steps down and the stage finishes
    capped = _runner(ladder, pipe, facts, cuda, cap_gb=6.0)
    fails = {"left": 0 if cuda else 1}  # dry run: one simulated out-of-memory stands in for the cap

    def denoise():
        if fails["left"]:
            fails["left"] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory (simulated 6 GB cap, dry run)")
        return _forwards(model, inputs, 1, cuda)

    try:
        capped.run("denoise", denoise)
        finished = True
    except Exception as exc:  # a KinetographError when the ladder runs out
        finished = False
        print(f"  6 GB cap: {type(exc).__name__}: {exc}", flush=True)
    stepped = any(not a["ok"] for a in capped.attempts)
    checks.add("forced 6 GB cap: steps down and finishes", [(a["plan"], a["ok"]) for a in capped.attempts],
               "a step down, then ok", finished and stepped, simulated=not cuda)
    _remove_hooks_from(model)
    _uncap(cuda)
    return {"plan": plan.name, "ladder": [p.name for p in ladder], "memory": record, "attempts": runner.attempts,
            "capped_attempts": capped.attempts, "notes": runner.notes + capped.notes}


# ------------------------------------------------------------------------ the engine job
def run_engine_job(model: str, output_dir: str, budget_gb: float | None, ram_gb: float | None, **shape: Any):
    """One job through the engine's public API (kept in one function: its signature may change)."""
    from pipelines.engine import run
    from pipelines.jobspec import JobSpec

    job = JobSpec(task="t2v", model=model, prompt="a red fox running through snow", seed=0, **shape)
    return run(job, output_dir=output_dir, budget_gb=budget_gb, ram_gb=ram_gb, overwrite=True)


def _with_stage_peaks(fn):
    """Run ``fn`` with the engine's StageRunner recording per-stage peaks; return (result, runners).
    (Until the engine stores ``runner.memory_record()`` itself, the bench asks for it here.)"""
    from pipelines.memory import StageRunner
    from pipelines.tasks import generate as engine  # the generation task builds the StageRunner

    runners = []
    original = engine.StageRunner

    def recording(*args, **kwargs):
        kwargs.setdefault("stage_peaks", True)
        runner = StageRunner(*args, **kwargs)
        runners.append(runner)
        return runner

    engine.StageRunner = recording
    try:
        return fn(), runners
    finally:
        engine.StageRunner = original


def check_engine(checks: Checks, cuda: bool, model: str, shape: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for ram_gb in (None, 40.0):
        label = "engine job @ 8 GB" + (f", {ram_gb:g} GB RAM" if ram_gb else "")
        print(f"\n== {label} ({model})", flush=True)
        _uncap(cuda)
        with tempfile.TemporaryDirectory(prefix="kinetograph-check-") as folder:
            result, runners = _with_stage_peaks(lambda ram_gb=ram_gb: run_engine_job(model, folder, 8.0 if cuda else None,
                                                                       ram_gb, **shape))
        runner = runners[-1]
        record = runner.memory_record(budget_bytes=int(8 * GB))
        peaks = record["stage_peaks"]
        for stage, limit, key in (("encode", 3.0, "max_reserved_bytes"), ("denoise", 8.0, "max_reserved_bytes"),
                                  ("decode", 3.0, "max_reserved_bytes")):
            value = _gb(peaks.get(stage, {}).get(key))
            checks.add(f"{label}: {stage} reserved GB", value, f"<= {limit}",
                       None if value is None else value <= limit,
                       allocated_gb=_gb(peaks.get(stage, {}).get("max_allocated_bytes")))
        checks.add(f"{label}: no retries", [(a["stage"], a["plan"], a["ok"]) for a in result.attempts],
                   "every attempt ok", all(a["ok"] for a in result.attempts))
        out.append({"run": label, "model": model, "plan": runner.plan.name, "staged": runner.plan.staged_load,
                    "memory": record, "attempts": result.attempts, "timings": result.timings,
                    "frames": result.frame_count})
        _uncap(cuda)
    return out


# ------------------------------------------------------------------------ entry
def gpu_check(bench: Any, dry_run: bool, out_dir: str, steps: int = 1, engine_model: str = "tiny-wan") -> int:
    """``bench``: the bench/memory.py module (its builders, RSS sampler and naming)."""
    import torch

    from pipelines.memory import DeviceFacts

    cuda = torch.cuda.is_available() and not dry_run
    if not cuda and not dry_run:
        print("--gpu-check needs a CUDA GPU; run it with --dry-run to check the script on the CPU.")
        return 2
    facts = DeviceFacts.detect(probe_bandwidth=True) if cuda else DeviceFacts.gpu(80, 64, name="NVIDIA H100 80GB HBM3")
    print(("GPU check on " if cuda else "GPU check, DRY RUN on the CPU (planning for ") + facts.describe()
          + ("" if cuda else ")"), flush=True)
    started = time.perf_counter()
    checks = Checks()
    transformer = check_transformer(bench, checks, facts, cuda, steps)
    shape = dict(frames=81, width=832, height=480, steps=steps + 1) if engine_model != "tiny-wan" \
        else dict(frames=9, width=32, height=32, steps=2)
    engine = check_engine(checks, cuda, engine_model, shape)
    seconds = time.perf_counter() - started
    checks.add("whole check: minutes", round(seconds / 60, 2), "<= 8", seconds <= 480 if cuda else None)
    name = facts.name if cuda else "cpu-dry-run"
    results = {"kind": "gpu-check" + ("" if cuda else " (dry run)"), "device": facts.to_dict(),
               "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "versions": bench._versions(), "checks": checks.rows, "transformer": transformer, "engine": engine,
               "passed": not checks.failed}
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"memory-{bench.gpu_slug(name)}-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {path}")
    if checks.failed:
        print("FAILED: " + "; ".join(r["check"] for r in checks.failed))
        return 1
    print("all thresholds met" + (" (CUDA measurements skipped: dry run)" if not cuda else ""))
    return 0
