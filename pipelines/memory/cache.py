"""Loaded pipelines kept across jobs: least recently used first out, by bytes, under a RAM cap.

``PipelineCache.get(key, loader)`` returns the cached pipeline or loads it; before loading it
evicts least-recently-used entries until the new one (its size predicted by ``size_hint`` or
learnt after loading) fits under the cap. Sizes are measured with ``sizes.loaded_bytes``.
Inside ComfyUI the cache first asks ComfyUI's model manager to free memory
(``comfy.model_management.free_memory`` / ``soft_empty_cache``), so the two do not fight;
outside ComfyUI it works alone.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .apply import is_complete, release_memory
from .device import comfy_free_memory
from .sizes import loaded_bytes

DEFAULT_RAM_FRACTION = 0.6  # of total host RAM: leave room for activations, pinned copies and the OS


@dataclass
class _Entry:
    value: Any
    nbytes: int


def _default_cap() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total * DEFAULT_RAM_FRACTION)
    except ImportError:
        return 16 * 10**9


class PipelineCache:
    """LRU cache of loaded pipelines, bounded by their total bytes."""

    def __init__(self, cap_bytes: int | None = None, measure: Callable[[Any], int] = loaded_bytes,
                 free_foreign_memory: Callable[[int], None] | None = None) -> None:
        self.cap_bytes = int(cap_bytes if cap_bytes is not None else _default_cap())
        self._measure = measure
        self._free_foreign = free_foreign_memory or comfy_free_memory
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.RLock()
        self.evictions: list[str] = []

    # ---------------------------------------------------------------- queries
    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def keys(self) -> list[str]:
        """Least recently used first."""
        return list(self._entries)

    # ---------------------------------------------------------------- use
    def get(self, key: str, loader: Callable[[], Any], size_hint: int | None = None) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and is_complete(entry.value):
                self._entries.move_to_end(key)
                return entry.value
            if entry is not None:  # e.g. its text encoder was released after the last job: load again
                self.release(key)
            need = int(size_hint or 0)
            self._make_room(need)
            if need:
                self._free_foreign(need)
            value = loader()
            nbytes = int(self._measure(value))
            self._entries[key] = _Entry(value, nbytes)
            self._make_room(0, keep=key)  # the real size may exceed the hint
            return value

    def release(self, key: str) -> bool:
        """Drop one pipeline; True if it was cached."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            return False
        _drop(entry.value)
        del entry
        release_memory()
        return True

    def clear(self) -> None:
        with self._lock:
            keys = list(self._entries)
        for key in keys:
            self.release(key)

    # ---------------------------------------------------------------- internals
    def _make_room(self, need: int, keep: str | None = None) -> None:
        """Evict least recently used entries until ``need`` more bytes fit under the cap."""
        while self._entries and self.total_bytes + need > self.cap_bytes:
            oldest = next(iter(self._entries))
            if oldest == keep:
                if len(self._entries) == 1:
                    return  # a single pipeline bigger than the cap is allowed: the planner budgets it
                self._entries.move_to_end(oldest)
                oldest = next(iter(self._entries))
            self.evictions.append(oldest)
            self.release(oldest)


def _drop(pipe: Any) -> None:
    """Remove offload hooks so that pinned host copies and hook references die with the pipeline."""
    try:
        import torch

        from .apply import _remove_hooks_from

        for module in getattr(pipe, "components", {}).values():
            if isinstance(module, torch.nn.Module):
                _remove_hooks_from(module)
    except Exception:  # dropping must never fail a job
        pass
