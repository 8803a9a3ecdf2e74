"""What CUDA really holds, per stage: allocated, reserved and the device's used memory.

``torch.cuda.max_memory_allocated`` counts live tensors only. With CUDA-stream offloading
(``record_stream``) a block's memory stays reserved until the stream that used it moves on, and the
caching allocator keeps freed blocks reserved, so allocated under-counts what the card holds. A budget
counts as met only when the *reserved* peak of every stage stays within it and no stage had to step
down the plan ladder. ``mem_get_info`` adds what the whole device has in use (other processes, the
CUDA context) at the end of the stage.

Every function works without CUDA: the GPU fields are then None and only host RSS is recorded.
"""
from __future__ import annotations

import resource
from typing import Any

GB = 1e9


def _cuda() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def reset_peaks() -> None:
    """Start a new peak window (a no-op without CUDA; host RSS peaks cannot be reset)."""
    torch = _cuda()
    if torch is not None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def measure_peaks(facts: Any = None) -> dict[str, int | None]:
    """Peaks since the last ``reset_peaks``: ``max_allocated_bytes``, ``max_reserved_bytes`` and
    ``device_used_bytes`` (total minus free from ``mem_get_info``, now) — None without CUDA — and the
    process's peak host RSS so far (``peak_rss_bytes``, ru_maxrss). ``facts``: a ``DeviceFacts``; one
    without CUDA skips the GPU queries."""
    out: dict[str, int | None] = {"max_allocated_bytes": None, "max_reserved_bytes": None,
                                  "device_used_bytes": None}
    torch = _cuda() if facts is None or getattr(facts, "has_cuda", False) else None
    if torch is not None:
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        out.update(max_allocated_bytes=int(torch.cuda.max_memory_allocated()),
                   max_reserved_bytes=int(torch.cuda.max_memory_reserved()), device_used_bytes=int(total - free))
    out["peak_rss_bytes"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # KiB on Linux
    return out


def job_peaks(stage_peaks: dict[str, dict[str, int | None]]) -> dict[str, int | None]:
    """The largest value of each field over the stages (None where no stage measured it)."""
    keys = ("max_allocated_bytes", "max_reserved_bytes", "device_used_bytes", "peak_rss_bytes")
    out: dict[str, int | None] = {}
    for key in keys:
        values = [p[key] for p in stage_peaks.values() if p.get(key) is not None]
        out[key] = max(values) if values else None
    return out


def budget_check(stage_peaks: dict[str, dict[str, int | None]], budget_bytes: int | None,
                 attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether a job kept its VRAM budget: every stage's reserved peak within ``budget_bytes`` and no
    step down (no failed attempt). ``met`` is None when nothing was measured (no CUDA) or no budget."""
    stepped = [a for a in attempts if not a.get("ok")]
    over = {s: p["max_reserved_bytes"] for s, p in stage_peaks.items()
            if budget_bytes and p.get("max_reserved_bytes") is not None and p["max_reserved_bytes"] > budget_bytes}
    measured = any(p.get("max_reserved_bytes") is not None for p in stage_peaks.values())
    met = None if not budget_bytes or not measured else (not over and not stepped)
    return {"budget_bytes": budget_bytes, "met": met, "stages_over_budget": over,
            "stepped_down": bool(stepped)}
