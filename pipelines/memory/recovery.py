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
from .planner import MemoryPlan

_OOM_MARKERS = ("cuda out of memory", "cuda error: out of memory", "cublas_status_alloc_failed",
                "cudnn_status_alloc_failed", "hip out of memory", "out of memory on device")


def is_out_of_memory(exc: BaseException | None) -> bool:
    """True for a GPU out-of-memory error (torch.OutOfMemoryError or its RuntimeError forms),
    also when wrapped by another exception. Host ``MemoryError`` is not recoverable here."""
    seen = 0
    while exc is not None and seen < 8:
        try:
            import torch

            if isinstance(exc, torch.OutOfMemoryError):
                return True
        except (ImportError, AttributeError):
            pass
        if isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


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

    def step_down(self, stage: str) -> MemoryPlan | None:
        """Move to the next plan predicting less VRAM for ``stage``; None when there is none."""
        current = self.plan.stage_vram.get(stage, self.plan.predicted_peak_vram_bytes)
        for i in range(self.index + 1, len(self.plans)):
            if self.plans[i].stage_vram.get(stage, self.plans[i].predicted_peak_vram_bytes) < current:
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
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.ladder = ladder if isinstance(ladder, LadderState) else LadderState(ladder)
        self._apply = apply
        self._release = release or _default_release
        self._after_stage = after_stage
        self._clock = clock
        self.attempts: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.results: dict[str, Any] = {}
        self.started = False

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
            t0 = self._clock()
            try:
                result = fn()
            except Exception as exc:
                seconds = self._clock() - t0
                spent += seconds
                error = f"{type(exc).__name__}: {_first_line(exc)}"
                self.attempts.append({"stage": stage, "plan": plan.name, "ok": False, "error": error,
                                      "seconds": round(seconds, 3)})
                if not is_out_of_memory(exc):
                    raise
                following = self.ladder.step_down(stage)
                if following is None:
                    raise KinetographError(self._exhausted_message(stage)) from exc
                # leave the except block before releasing: the traceback holds the failed stage's tensors
            else:
                seconds = self._clock() - t0
                spent += seconds
                self.attempts.append({"stage": stage, "plan": plan.name, "ok": True, "error": None,
                                      "seconds": round(seconds, 3)})
                if timings is not None:
                    timings[stage] = timings.get(stage, 0.0) + spent
                self.results[stage] = result
                if self._after_stage is not None:
                    self._after_stage(stage, self.plan)
                return result
            self._release()
            self.notes.append(f"out of GPU memory in {stage} under plan '{plan.name}'; retrying {stage} with "
                              f"'{following.name}' (predicted {following.stage_vram.get(stage, 0) / 1e9:.2f} GB "
                              f"for this stage)")
            self._apply_with_fallback(following, stage)
            if rng_state is not None:
                generator.set_state(rng_state)

    def _apply_with_fallback(self, plan: MemoryPlan, stage: str) -> None:
        """Apply ``plan``; if moving weights onto the GPU itself runs out of memory, keep stepping down."""
        while True:
            t0 = self._clock()
            try:
                notes = self._apply(plan.for_remaining_stages(tuple(self.results)))
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                label = "apply" if stage == "apply" else f"apply ({stage})"
                self.attempts.append({"stage": label, "plan": plan.name, "ok": False,
                                      "error": f"{type(exc).__name__}: {_first_line(exc)}",
                                      "seconds": round(self._clock() - t0, 3)})
                following = self.ladder.step_down(stage)
                if following is None:
                    raise KinetographError(self._exhausted_message(stage)) from exc
                plan = following
            else:
                break
            self._release()
        if isinstance(notes, list):
            self.notes += [f"plan {plan.name}: {n}" for n in notes if isinstance(n, str) and n.startswith("no CUDA")]

    def _exhausted_message(self, stage: str) -> str:
        tried = ", ".join(dict.fromkeys(a["plan"] for a in self.attempts if a["stage"] == stage))
        plan = self.plan
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
