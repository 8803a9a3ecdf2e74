"""Out-of-memory recovery: retry the failed stage under the next cheaper plan, nothing else.

A job runs as stages (encode, denoise, decode). When a stage raises CUDA out-of-memory, the
runner releases memory (garbage collection, ``torch.cuda.empty_cache``), moves to the next
plan of the ladder that predicts less VRAM *for that stage*, applies it and runs the same
stage again. Finished stages are never re-run: their results (the prompt embeddings, the
latents) are kept, so a decode that runs out of memory does not cost the denoising. A random
generator passed in is rewound, so a retried stage draws the same noise. Every attempt is
recorded as ``{stage, plan, ok, error, seconds}``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import KinetographError
from .peaks import budget_check, job_peaks, measure_peaks, reset_peaks
from .planner import MemoryPlan

# accelerate's ``should_reduce_batch_size`` matches " out of memory." (torch.OutOfMemoryError for CUDA/HIP/XPU),
# MPS and CPU-allocator failures; these forms it misses still mean the GPU ran out: CUDA's own error string
# (no trailing period), torch.OutOfMemoryError with any message, cuBLAS/cuDNN workspace allocations, and any of them wrapped by another exception.
_EXTRA_OOM_MARKERS = ("cuda error: out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed",
                      "hip out of memory", "out of memory on device")
# Host-side allocation failures: a cheaper plan for VRAM does not help, one needing less host RAM does.
_HOST_MARKERS = ("defaultcpuallocator: can't allocate memory", "cachinghostallocator", "cudahostalloc",
                 "pinned memory", "pin_memory")
_PIN_FRAMES = ("pin_memory", "_pinned_memory_tensors", "_pin", "pinned")  # functions that pin host memory


def memory_error_kind(exc: BaseException | None) -> str | None:
    """``"vram"`` for a GPU out-of-memory, ``"host"`` for a failed host or pinned-memory allocation (CUDA
    reports a failed ``cudaHostAlloc`` with the same "out of memory" text, so one raised while pinning, by
    a frame whose name says so, counts as host), None for anything else. Looks through wrapping
    exceptions. Python's own ``MemoryError`` is not recoverable here (None)."""
    from accelerate.utils.memory import should_reduce_batch_size

    seen = 0
    while exc is not None and seen < 8:
        text = str(exc).lower()
        if isinstance(exc, RuntimeError) and any(m in text for m in _HOST_MARKERS):
            return "host"
        gpu = should_reduce_batch_size(exc) or _is_torch_oom(exc) or (
            isinstance(exc, RuntimeError) and any(m in text for m in _EXTRA_OOM_MARKERS))
        if gpu:
            return "host" if _raised_while_pinning(exc) else "vram"
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _is_torch_oom(exc: BaseException) -> bool:
    """torch.OutOfMemoryError whatever its text (accelerate matches messages only)."""
    try:
        import torch

        return isinstance(exc, torch.OutOfMemoryError)
    except (ImportError, AttributeError):
        return False


def _raised_while_pinning(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_name.lower()
        if any(p in name for p in _PIN_FRAMES):
            return True
        tb = tb.tb_next
    return False


def is_out_of_memory(exc: BaseException | None) -> bool:
    """True for a GPU or host/pinned-memory allocation failure the ladder can step away from
    (accelerate's ``should_reduce_batch_size`` plus the forms it misses), also when wrapped."""
    return memory_error_kind(exc) is not None


class LadderState:
    """Where a job stands on its ladder of plans (fastest first, each cheaper than the last)."""

    def __init__(self, ladder: list[MemoryPlan]) -> None:
        if not ladder:
            raise KinetographError("No memory plan to run with: the ladder is empty.")
        self.plans = list(ladder)
        self.index = 0

    @property
    def plan(self) -> MemoryPlan:
        return self.plans[self.index]

    def step_down(self, stage: str, side: str = "vram") -> MemoryPlan | None:
        """Move to the next plan predicting less VRAM (``side="vram"``) or less host RAM (``side="host"``)
        for ``stage``; None when there is none."""
        def need(plan: MemoryPlan) -> int:
            if side == "host":
                return plan.stage_ram.get(stage, plan.predicted_peak_ram_bytes)
            return plan.stage_vram.get(stage, plan.predicted_peak_vram_bytes)

        current = need(self.plan)
        for i in range(self.index + 1, len(self.plans)):
            if need(self.plans[i]) < current:
                self.index = i
                return self.plans[i]
        return None


def _default_release() -> None:
    from .apply import release_memory

    release_memory()


class StageRunner:
    """Runs a job's stages under a ladder of plans, stepping down on out-of-memory.

    ``apply(plan)`` puts a plan in place (e.g. ``lambda p: apply_plan(pipe, p, facts)``);
    ``release()`` frees memory after a failure (default: gc + ``torch.cuda.empty_cache``);
    ``after_stage(stage, plan)`` runs after a stage succeeds (e.g. ``finish_stage``).
    """

    def __init__(self, ladder: list[MemoryPlan], apply: Callable[[MemoryPlan], Any],
                 release: Callable[[], None] | None = None,
                 after_stage: Callable[[str, MemoryPlan], Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter, stage_peaks: bool = False,
                 facts: Any = None) -> None:
        self.ladder = ladder if isinstance(ladder, LadderState) else LadderState(ladder)
        self._apply = apply
        self._release = release or _default_release
        self._after_stage = after_stage
        self._clock = clock
        self.attempts: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.results: dict[str, Any] = {}
        self.started = False
        # stage_peaks: reset CUDA's peak counters before each stage and record what it held
        # (peaks.measure_peaks: allocated, reserved, device used, host RSS) in self.peaks[stage]
        self._stage_peaks = stage_peaks
        self._facts = facts
        self.peaks: dict[str, dict[str, int | None]] = {}

    @property
    def plan(self) -> MemoryPlan:
        return self.ladder.plan

    def start(self) -> None:
        """Apply the first (fastest fitting) plan; if even placing it runs out of memory, step down."""
        self._apply_with_fallback(self.plan, "apply")
        self.started = True

    def run(self, stage: str, fn: Callable[[], Any], generator: Any = None,
            timings: dict[str, float] | None = None) -> Any:
        """Run ``fn()`` as ``stage``; on GPU out-of-memory retry it under cheaper plans."""
        if stage in self.results:  # finished stages are never re-run
            return self.results[stage]
        if not self.started:
            self.start()
        rng_state = generator.get_state() if generator is not None and hasattr(generator, "get_state") else None
        spent = 0.0
        while True:
            plan = self.plan
            if self._stage_peaks:
                reset_peaks()
            t0 = self._clock()
            try:
                result = fn()
            except Exception as exc:
                seconds = self._clock() - t0
                spent += seconds
                error = f"{type(exc).__name__}: {_first_line(exc)}"
                self.attempts.append({"stage": stage, "plan": plan.name, "ok": False, "error": error,
                                      "seconds": round(seconds, 3)})
                kind = memory_error_kind(exc)
                if kind is None:
                    raise
                self.attempts[-1]["memory"] = kind
                following = self.ladder.step_down(stage, kind)
                if following is None:
                    raise KinetographError(self._exhausted_message(stage, kind)) from exc
                # leave the except block before releasing: the traceback holds the failed stage's tensors
            else:
                seconds = self._clock() - t0
                spent += seconds
                self.attempts.append({"stage": stage, "plan": plan.name, "ok": True, "error": None,
                                      "seconds": round(seconds, 3)})
                if timings is not None:
                    timings[stage] = timings.get(stage, 0.0) + spent
                if self._stage_peaks:
                    self.peaks[stage] = measure_peaks(self._facts)
                self.results[stage] = result
                if self._after_stage is not None:
                    self._after_stage(stage, self.plan)
                return result
            self._release()
            what = "host RAM (pinned memory)" if kind == "host" else "GPU memory"
            self.notes.append(f"out of {what} in {stage} under plan '{plan.name}'; retrying {stage} with "
                              f"'{following.name}' (predicted {following.stage_vram.get(stage, 0) / 1e9:.2f} GB "
                              f"for this stage)")
            self._apply_with_fallback(following, stage)
            if rng_state is not None:
                generator.set_state(rng_state)

    def memory_record(self, budget_bytes: int | None = None) -> dict[str, Any]:
        """Measured memory of the stages run so far, for a job's metadata: per-stage peaks, the job's
        peaks (largest per field) and whether ``budget_bytes`` (default: the plan's budget when the user
        gave one) was kept: reserved within it in every stage and no step down."""
        if budget_bytes is None and self.plan.budget_from_user:
            budget_bytes = self.plan.vram_budget_bytes
        return {"stage_peaks": dict(self.peaks), "job_peaks": job_peaks(self.peaks),
                "budget": budget_check(self.peaks, budget_bytes, self.attempts)}

    def _apply_with_fallback(self, plan: MemoryPlan, stage: str) -> None:
        """Apply ``plan``; if moving weights onto the GPU itself runs out of memory, keep stepping down."""
        while True:
            t0 = self._clock()
            try:
                notes = self._apply(plan.for_remaining_stages(tuple(self.results)))
            except Exception as exc:
                kind = memory_error_kind(exc)
                if kind is None:
                    raise
                label = "apply" if stage == "apply" else f"apply ({stage})"
                self.attempts.append({"stage": label, "plan": plan.name, "ok": False,
                                      "error": f"{type(exc).__name__}: {_first_line(exc)}",
                                      "seconds": round(self._clock() - t0, 3), "memory": kind})
                following = self.ladder.step_down(stage, kind)
                if following is None:
                    raise KinetographError(self._exhausted_message(stage, kind)) from exc
                plan = following
            else:
                break
            self._release()
        if isinstance(notes, list):
            self.notes += [f"plan {plan.name}: {n}" for n in notes if isinstance(n, str) and n.startswith("no CUDA")]

    def _exhausted_message(self, stage: str, kind: str = "vram") -> str:
        tried = ", ".join(dict.fromkeys(a["plan"] for a in self.attempts if a["stage"] == stage))
        plan = self.plan
        if kind == "host":
            return (f"Out of host RAM (pinned or ordinary memory) in the {stage} stage even with the plan needing "
                    f"the least RAM, '{plan.name}' (tried: {tried}). Close other programs, add RAM or swap, or "
                    f"pass a smaller --ram-gb so the planner picks a plan that keeps less in host memory.")
        return (f"Out of GPU memory in the {stage} stage even with the cheapest memory plan '{plan.name}' "
                f"(tried: {tried}). Free GPU memory (close other GPU programs), or make the job smaller: fewer "
                f"frames or a lower resolution" + (" (decoding is the part that ran out: tiling is already on)"
                                                   if stage == "decode" and plan.vae_tiling else "") + ".")


def run_stage(name: str, fn: Callable[[], Any], ladder_state: LadderState, apply: Callable[[MemoryPlan], Any],
              release: Callable[[], None] | None = None, attempts: list[dict[str, Any]] | None = None) -> Any:
    """Function form of ``StageRunner.run`` for one stage; appends its attempts to ``attempts``."""
    runner = StageRunner(ladder_state, apply, release)  # type: ignore[arg-type]
    runner.started = True  # the caller applied the current plan already
    try:
        return runner.run(name, fn)
    finally:
        if attempts is not None:
            attempts.extend(runner.attempts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
